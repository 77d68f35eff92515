#include "handoff/proxy/dispatch/idempotency_store.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace handoff::proxy {

namespace {

void add_field(EVP_MD_CTX* ctx, std::string_view s) {
    const std::uint64_t n = s.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    EVP_DigestUpdate(ctx, len, sizeof len);
    EVP_DigestUpdate(ctx, s.data(), s.size());
}

}  // namespace

request_fingerprint fingerprint(std::string_view method, std::string_view target, std::string_view body,
                                const std::vector<std::string>& taken) {
    request_fingerprint out{};
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    unsigned int len = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 unavailable");
    add_field(ctx.get(), method);
    add_field(ctx.get(), target);
    add_field(ctx.get(), body);
    for (const auto& t : taken) add_field(ctx.get(), t);
    EVP_DigestFinal_ex(ctx.get(), out.data(), &len);
    return out;
}

std::optional<std::string> parse_idempotency_key(std::string_view v) {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        // sf-string: printable ASCII; '\' escapes only '"' and '\'.
        std::string out;
        for (std::size_t i = 1; i + 1 < v.size(); ++i) {
            char c = v[i];
            if (c == '\\') {
                if (i + 2 >= v.size() || (v[i + 1] != '"' && v[i + 1] != '\\')) return std::nullopt;
                c = v[++i];
            } else if (c == '"') {
                return std::nullopt;
            }
            if (c < 0x20 || c > 0x7e) return std::nullopt;
            out.push_back(c);
        }
        if (out.empty() || out.size() > 255) return std::nullopt;
        return out;
    }
    if (v.empty() || v.size() > 255) return std::nullopt;
    for (char c : v) {
        if (c <= 0x20 || c > 0x7e) return std::nullopt;
    }
    return std::string(v);
}

idempotency_store::idempotency_store(std::size_t max_entries, std::size_t max_bytes, std::chrono::milliseconds ttl)
    : max_entries_(max_entries == 0 ? 1 : max_entries), max_bytes_(max_bytes), ttl_(ttl) {}

void idempotency_store::erase_locked(std::unordered_map<std::string, entry>::iterator it) {
    if (auto c = by_request_.find(it->second.request_id); c != by_request_.end() && c->second == it->first) {
        by_request_.erase(c);
    }
    bytes_ -= it->second.bytes;
    lru_.erase(it->second.lru);
    entries_.erase(it);
}

void idempotency_store::evict_locked(std::chrono::steady_clock::time_point now) {
    while (!lru_.empty()) {
        auto it = entries_.find(lru_.back());
        if (it == entries_.end()) {  // cannot happen; keeps the loop finite if it did
            lru_.pop_back();
            continue;
        }
        const bool expired = it->second.expires <= now;
        const bool over = entries_.size() > max_entries_ || (bytes_ > max_bytes_ && entries_.size() > 1);
        if (!expired && !over) break;
        erase_locked(it);
    }
}

idempotency_store::begin_result idempotency_store::begin(const std::string& scope, const std::string& key,
                                                         const request_fingerprint& fp, const std::string& request_id) {
    const auto now = std::chrono::steady_clock::now();
    std::string id;
    id.reserve(scope.size() + 1 + key.size());
    id.append(scope).push_back('\n');
    id.append(key);
    std::lock_guard lock(mutex_);
    evict_locked(now);
    if (auto it = entries_.find(id); it != entries_.end()) {
        entry& e = it->second;
        lru_.splice(lru_.begin(), lru_, e.lru);
        if (e.fp != fp) return {verdict::mismatch, nullptr, e.request_id};
        if (!e.response) return {verdict::in_flight, nullptr, e.request_id};
        return {verdict::replay, e.response, e.request_id};
    }
    lru_.push_front(id);
    entry e;
    e.fp = fp;
    e.request_id = request_id;
    e.expires = now + ttl_;
    e.lru = lru_.begin();
    e.bytes = sizeof(entry) + 2 * id.size() + 2 * request_id.size();
    bytes_ += e.bytes;
    by_request_[request_id] = id;
    entries_.emplace(std::move(id), std::move(e));
    evict_locked(now);
    return {verdict::fresh, nullptr, request_id};
}

void idempotency_store::complete(const std::string& request_id, stored_response response, bool final) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    const auto c = by_request_.find(request_id);
    if (c == by_request_.end()) return;
    const auto it = entries_.find(c->second);
    if (it == entries_.end() || it->second.final) return;
    entry& e = it->second;
    bytes_ -= e.bytes;
    e.bytes = sizeof(entry) + 2 * it->first.size() + 2 * request_id.size() + response.bytes();
    bytes_ += e.bytes;
    e.response = std::make_shared<const stored_response>(std::move(response));
    e.final = final;
    e.expires = now + ttl_;
    evict_locked(now);
}

void idempotency_store::release(const std::string& request_id) {
    std::lock_guard lock(mutex_);
    const auto c = by_request_.find(request_id);
    if (c == by_request_.end()) return;
    const auto it = entries_.find(c->second);
    if (it == entries_.end() || it->second.final) return;
    erase_locked(it);
}

std::size_t idempotency_store::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

std::size_t idempotency_store::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

}  // namespace handoff::proxy
