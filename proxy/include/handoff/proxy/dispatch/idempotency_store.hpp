// Idempotency-Key (README, "Idempotency-Key"; IETF httpapi "The Idempotency-Key HTTP Header Field"): the first
// request with a key runs; a repeat while it runs gets 409; a repeat after it completed gets the
// stored response and produces nothing; the same key with a different request gets 422.
//
// Keys are scoped by route name. A request's fingerprint is a SHA-256 over its method, target
// and body. An entry is *in flight* from `begin` until `complete` or `release`:
//   - `complete(id, response, final=true)`: repeats replay `response` from now on;
//   - `complete(id, response, final=false)`: repeats replay `response`, but a later `complete`
//     replaces it (a 504 outcome-unknown that a late delivery report or reply may still settle);
//   - `release(id)`: the key is forgotten (the request definitely had no effect: a retry may
//     run it again).
// Entries are found by the request ID of the request that began them (unique per request, never
// the caller's correlation label), so completions can come from delivery reports and reply
// records, not only from the session, and a completion or release only ever touches its own
// request's entry.
//
// Bounded in entries and bytes (stored responses), LRU-evicted, expired after the TTL. An
// evicted in-flight entry loses its protection (a repeat then runs again); the bounds are
// sized so that this happens only under abuse. Thread-safe.
#pragma once

#include "handoff/proxy/dispatch/stored_response.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace handoff::proxy {

using request_fingerprint = std::array<std::uint8_t, 32>;

// SHA-256 over method, target, body and `taken`: the other values of the request that shape the
// record or the answer (the header a route's key comes from, the allow-listed headers,
// Content-Type; dispatch.cpp lists them), each as given there (e.g. "x-tenant=eu", or "x-tenant"
// when the header is absent). Every field is length-prefixed, so none can run into another.
request_fingerprint fingerprint(std::string_view method, std::string_view target, std::string_view body,
                                const std::vector<std::string>& taken = {});

// The header value, or nullopt when it is not 1-255 visible ASCII characters. An RFC 8941
// sf-string ("...") is unquoted (the draft's syntax); a bare token is accepted as-is.
std::optional<std::string> parse_idempotency_key(std::string_view value);

// Where the completion or release of a keyed request goes: this process's idempotency_store, or
// the shared state topic (shared_registry) when replicas share their keys.
class key_settlement {
public:
    virtual ~key_settlement() = default;
    virtual void complete(const std::string& request_id, stored_response response, bool final) = 0;
    virtual void release(const std::string& request_id) = 0;
};

class idempotency_store final : public key_settlement {
public:
    enum class verdict { fresh, in_flight, mismatch, replay };
    struct begin_result {
        verdict kind = verdict::fresh;
        std::shared_ptr<const stored_response> response;  // replay: what to answer
        std::string request_id;                           // of the first request (in_flight, replay)
    };

    idempotency_store(std::size_t max_entries, std::size_t max_bytes, std::chrono::milliseconds ttl);

    // `scope` is the route name; `request_id` the new request's (remembered when fresh).
    begin_result begin(const std::string& scope, const std::string& key, const request_fingerprint& fp,
                       const std::string& request_id);
    void complete(const std::string& request_id, stored_response response, bool final) override;
    void release(const std::string& request_id) override;

    std::size_t size() const;
    std::size_t bytes() const;

private:
    struct entry {
        request_fingerprint fp{};
        std::string request_id;
        std::shared_ptr<const stored_response> response;  // null while in flight
        bool final = false;
        std::chrono::steady_clock::time_point expires;
        std::list<std::string>::iterator lru;
        std::size_t bytes = 0;
    };
    void erase_locked(std::unordered_map<std::string, entry>::iterator it);
    void evict_locked(std::chrono::steady_clock::time_point now);

    const std::size_t max_entries_;
    const std::size_t max_bytes_;
    const std::chrono::milliseconds ttl_;
    mutable std::mutex mutex_;
    std::size_t bytes_ = 0;
    std::list<std::string> lru_;                               // front = most recently used
    std::unordered_map<std::string, entry> entries_;           // scope + '\n' + key
    std::unordered_map<std::string, std::string> by_request_;  // request id -> entries_ key
};

}  // namespace handoff::proxy
