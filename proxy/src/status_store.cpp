#include "handoff/proxy/status_store.hpp"

#include "handoff/proxy/record.hpp"

#include <nlohmann/json.hpp>

namespace handoff::proxy {

const char* to_string(request_status::state s) noexcept {
    switch (s) {
        case request_status::state::accepted: return "accepted";
        case request_status::state::persisted: return "persisted";
        case request_status::state::failed: return "failed";
        case request_status::state::unknown: return "unknown";
    }
    return "unknown";
}

status_store::status_store(std::size_t max_entries, std::chrono::milliseconds ttl)
    : max_entries_(max_entries == 0 ? 1 : max_entries), ttl_(ttl) {}

void status_store::evict_locked(std::chrono::steady_clock::time_point now) {
    // Oldest writes sit at the back: drop expired ones, then enforce the entry bound.
    while (!lru_.empty()) {
        auto it = entries_.find(lru_.back());
        const bool expired = it == entries_.end() || it->second.expires <= now;
        if (!expired && entries_.size() <= max_entries_) break;
        if (it != entries_.end()) entries_.erase(it);
        lru_.pop_back();
    }
}

void status_store::put(const std::string& id, request_status status) {
    const auto now = std::chrono::steady_clock::now();
    status.updated = std::chrono::system_clock::now();
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
        lru_.erase(it->second.lru);
        it->second.status = std::move(status);
        it->second.expires = now + ttl_;
    } else {
        it = entries_.emplace(id, entry{std::move(status), now + ttl_, {}}).first;
    }
    lru_.push_front(id);
    it->second.lru = lru_.begin();
    evict_locked(now);
}

std::optional<request_status> status_store::get(const std::string& id) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return std::nullopt;
    if (it->second.expires <= now) {
        lru_.erase(it->second.lru);
        entries_.erase(it);
        return std::nullopt;
    }
    return it->second.status;
}

std::size_t status_store::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

std::string status_store::to_json(const std::string& id, const request_status& s) {
    nlohmann::json j = {{"correlation_id", id},
                        {"state", to_string(s.current)},
                        {"route", s.route},
                        {"topic", s.topic},
                        {"updated_at", rfc3339_millis(s.updated)}};
    if (s.current == request_status::state::persisted) {
        j["partition"] = s.partition;
        j["offset"] = s.offset;
    }
    if (!s.reason.empty()) j["reason"] = s.reason;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace handoff::proxy
