#include "handoff/proxy/dispatch/status_store.hpp"

#include "handoff/proxy/modes/record.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

namespace handoff::proxy {

namespace {

// nlohmann::json refuses to serialise a string that is not valid UTF-8 (error 316).
bool valid_utf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}

std::string base64(const std::string& s) {
    namespace b64 = boost::beast::detail::base64;
    std::string out(b64::encoded_size(s.size()), '\0');
    out.resize(b64::encode(out.data(), s.data(), s.size()));
    return out;
}

}  // namespace

const char* to_string(request_status::state s) noexcept {
    switch (s) {
        case request_status::state::accepted: return "accepted";
        case request_status::state::persisted: return "persisted";
        case request_status::state::failed: return "failed";
        case request_status::state::unknown: return "unknown";
        case request_status::state::replied: return "replied";
    }
    return "unknown";
}

status_store::status_store(std::size_t max_entries, std::size_t max_bytes, std::chrono::milliseconds ttl)
    : max_entries_(max_entries == 0 ? 1 : max_entries), max_bytes_(max_bytes), ttl_(ttl) {}

status_store::~status_store() {
    for (entry* e : entries_) delete e;
}

void status_store::entry::set_id(std::string_view v, std::size_t h) {
    hash = h;
    id_size = static_cast<std::uint32_t>(v.size());
    char* to = short_id;
    if (v.size() > inline_id) {
        long_id = std::make_unique_for_overwrite<char[]>(v.size());
        to = long_id.get();
    } else {
        long_id.reset();
    }
    std::copy(v.begin(), v.end(), to);
}

std::size_t status_store::cost(std::string_view id, const request_status& s) noexcept {
    std::size_t n = sizeof(entry) + 2 * id.size() + s.route.size() + s.topic.size() + s.reason.size();
    if (s.reply) n += s.reply->bytes();
    return n;
}

void status_store::unlink_locked(entry& e) noexcept {
    (e.newer ? e.newer->older : lru_newest_) = e.older;
    (e.older ? e.older->newer : lru_oldest_) = e.newer;
    e.newer = e.older = nullptr;
}

void status_store::erase_locked(entry& e) {
    unlink_locked(e);
    bytes_ -= e.bytes;
    entries_.erase(&e);
    if (spare_) {
        delete &e;
    } else {
        e.status.reply.reset();  // a stored reply is not kept alive by the spare
        spare_.reset(&e);
    }
}

status_store::entry* status_store::find_locked(const hashed_id& k) const {
    const auto it = entries_.find(k);
    return it == entries_.end() ? nullptr : *it;
}

void status_store::evict_locked(std::chrono::steady_clock::time_point now) {
    // Oldest writes sit at the back: drop expired ones, then enforce the entry and byte bounds.
    // The newest entry is always kept, even when it alone is over the byte bound.
    while (lru_oldest_) {
        entry& oldest = *lru_oldest_;
        const bool expired = oldest.expires <= now;
        const bool over = entries_.size() > max_entries_ || (bytes_ > max_bytes_ && entries_.size() > 1);
        if (!expired && !over) break;
        erase_locked(oldest);
    }
}

void status_store::touch_locked(entry& e, bool fresh, std::chrono::steady_clock::time_point now) {
    bytes_ -= e.bytes;
    e.bytes = cost(e.id(), e.status);
    bytes_ += e.bytes;
    e.expires = now + ttl_;
    if (!fresh) {
        if (lru_newest_ == &e) return;
        unlink_locked(e);
    }
    e.older = lru_newest_;
    (lru_newest_ ? lru_newest_->newer : lru_oldest_) = &e;
    lru_newest_ = &e;
}

void status_store::put(const std::string& id, request_status status) {
    const auto now = std::chrono::steady_clock::now();
    status.updated = std::chrono::system_clock::now();
    std::optional<request_status> stored;
    {
        std::lock_guard lock(mutex_);
        const entry& e = put_locked(id, std::move(status), now);
        if (publish_ && e.status.current != request_status::state::accepted) stored = e.status;
        evict_locked(now);
    }
    if (stored) publish_(id, *stored);
}

void status_store::put_remote(const std::string& id, request_status status,
                              std::chrono::system_clock::time_point written) {
    const auto age = std::chrono::system_clock::now() - written;
    if (age >= ttl_) return;
    const auto now = std::chrono::steady_clock::now();
    status.updated = written;
    std::lock_guard lock(mutex_);
    entry& e = put_locked(id, std::move(status), now);
    if (age > std::chrono::system_clock::duration::zero()) {
        e.expires = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(ttl_ - age);
    }
    evict_locked(now);
}

status_store::entry& status_store::put_locked(const std::string& id, request_status&& status,
                                              std::chrono::steady_clock::time_point now) {
    const hashed_id key(id);
    entry* e = find_locked(key);
    const bool fresh = e == nullptr;
    if (fresh) {
        e = spare_ ? spare_.release() : new entry;
        e->set_id(key.id, key.hash);
        e->status = std::move(status);
        e->bytes = 0;
        e->newer = e->older = nullptr;
        try {
            entries_.insert(e);
        } catch (...) {
            delete e;
            throw;
        }
    } else if (e->status.current == request_status::state::replied) {
        // A reply is final: a delivery report arriving after it only adds partition and offset.
        if (status.current == request_status::state::persisted) {
            e->status.partition = status.partition;
            e->status.offset = status.offset;
        }
    } else {
        e->status = std::move(status);
    }
    touch_locked(*e, fresh, now);
    return *e;
}

bool status_store::put_reply(const std::string& id, std::shared_ptr<const stored_response> reply) {
    const auto now = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    entry* e = find_locked(hashed_id(id));
    if (e == nullptr || e->expires <= now) return false;
    auto& s = e->status;
    s.current = request_status::state::replied;
    s.reason.clear();
    s.reply = std::move(reply);
    s.updated = std::chrono::system_clock::now();
    std::optional<request_status> stored;
    if (publish_) stored = s;
    touch_locked(*e, /*fresh=*/false, now);
    evict_locked(now);
    lock.unlock();
    if (stored) publish_(id, *stored);
    return true;
}

std::optional<request_status> status_store::get(const std::string& id) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    entry* e = find_locked(hashed_id(id));
    if (e == nullptr) return std::nullopt;
    if (e->expires <= now) {
        erase_locked(*e);
        return std::nullopt;
    }
    return e->status;
}

std::size_t status_store::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

std::size_t status_store::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

std::string status_store::to_json(const std::string& id, const request_status& s, bool reply_content) {
    nlohmann::json j = {{"request_id", id},
                        {"state", to_string(s.current)},
                        {"route", s.route},
                        {"topic", s.topic},
                        {"updated_at", rfc3339_millis(s.updated)}};
    if (s.offset >= 0) {
        j["partition"] = s.partition;
        j["offset"] = s.offset;
    }
    if (!s.reason.empty()) j["reason"] = s.reason;
    if (s.reply && !reply_content) {
        j["reply"] = {{"status", s.reply->status}};
    } else if (s.reply) {
        nlohmann::json headers = nlohmann::json::object();
        for (const auto& [k, v] : s.reply->headers) headers[k] = v;
        nlohmann::json reply = {{"status", s.reply->status}, {"headers", headers}};
        // A body that is not UTF-8 text is given as base64 (JSON strings cannot carry it).
        if (valid_utf8(s.reply->body)) {
            reply["body"] = s.reply->body;
        } else {
            reply["body_base64"] = base64(s.reply->body);
        }
        j["reply"] = std::move(reply);
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace handoff::proxy
