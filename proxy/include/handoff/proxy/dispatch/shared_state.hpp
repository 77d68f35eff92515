// Replicas share Idempotency-Key claims and request statuses through a compacted Kafka topic (issue
// 17; the `state` section of the config). This is the pure part: the records on that topic and
// the view of Idempotency-Keys that every replica builds by applying them in log order. No I/O.
//
// Keys: one Kafka record key per entry, so that every record about an entry lands on the same
// partition and compaction keeps the newest: "i/<len(scope)>/<scope>/<key>" for an
// Idempotency-Key of a route (scope = route name; length-prefixed, so no pair of (scope, key)
// shares a record key whatever bytes the caller chose), "s/<request id>" for a request's status.
// A null value (tombstone) forgets the entry.
//
// Values: JSON with a version field "v": 1 and a kind "t": claim, complete, release, status.
// Bodies of stored responses are base64 (they may be any bytes). A record that does not decode
// is reported and skipped: it never stops the view.
//
// Who wins a key is decided by the log alone, so every replica decides the same: a claim wins when
// the entry is absent, released, or expired at the claim record's own timestamp (the entry's claim
// timestamp + ttl); otherwise it loses and changes nothing. Completions and releases only touch the
// entry of the request that won it. Entries are never evicted by memory pressure (a replica that
// forgot a live entry would let a second request win): beyond `max_entries` the view reports itself
// full, and the caller refuses new keyed requests until entries expire. Over `max_bytes`, stored
// response bodies are dropped oldest first; the entry and its verdict stay.
#pragma once

#include "handoff/proxy/dispatch/idempotency_store.hpp"
#include "handoff/proxy/dispatch/status_store.hpp"
#include "handoff/proxy/dispatch/stored_response.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace handoff::proxy::shared {

using clock = std::chrono::system_clock;

enum class record_kind { claim, complete, release, status };

struct record {
    record_kind kind = record_kind::claim;
    std::string request_id;  // the request the record is about
    // claim, complete, release: the route and the Idempotency-Key
    std::string scope;
    std::string key;
    request_fingerprint fp{};    // claim
    std::string correlation_id;  // claim: the caller's label of the claiming request
    std::string owner;           // the replica that wrote the record
    // complete
    std::shared_ptr<const stored_response> response;
    bool final = false;
    // status
    request_status status;
    // The record's timestamp (set by its producer); on decode, the one Kafka gives.
    clock::time_point timestamp{};
};

// The header of an expiry tombstone: the request ID whose entry it ends.
inline constexpr std::string_view expired_header = "handoff_expired";

std::string idempotency_record_key(std::string_view scope, std::string_view key);
std::string status_record_key(std::string_view request_id);
// The Kafka record key of `r`.
std::string record_key(const record& r);

std::string encode(const record& r);

struct decoded {
    std::optional<record> rec;  // set for a value of ours
    std::string error;          // why the value was skipped (not JSON, unknown kind or version, ...)
};
// `timestamp`: the Kafka record's. `value`: its bytes (a tombstone is not decoded: see
// key_view::forget).
decoded decode(std::string_view record_key, std::string_view value, clock::time_point timestamp);

// The Idempotency-Keys, as the log decided them.
class key_view {
public:
    struct limits {
        std::size_t max_entries = 100'000;
        std::size_t max_bytes = 64 * 1024 * 1024;
        std::chrono::milliseconds ttl{86'400'000};        // from the winning claim's timestamp
        std::chrono::milliseconds claim_timeout{30'000};  // in flight longer: abandoned
    };

    enum class verdict {
        fresh,      // the request won the key: run it
        in_flight,  // another request holds the key and is running: 409
        mismatch,   // the key was used with another request: 422
        replay,     // the holder completed: `response` is its answer
        evicted,    // the holder completed, but its response was dropped (max_bytes)
        abandoned,  // the holder's claim is older than claim_timeout without a completion: its
                    // replica may have died with the outcome unknown (never run again: 504)
        lost,       // the request's claim lost, and the entry that beat it is gone since
                    // (released or expired): claim again
    };
    struct answer {
        verdict kind = verdict::fresh;
        std::shared_ptr<const stored_response> response;  // replay
        std::string request_id;                           // of the holder
        std::string correlation_id;                       // of the holder
        clock::time_point claimed{};                      // the holder's claim timestamp
    };

    explicit key_view(limits l);

    // Applies a claim, complete or release record in its partition's order. Status records are not
    // for this view (ignored).
    void apply(const record& r);
    // A tombstone for `record_key`. With `request_id` (an expiry tombstone names the entry it ends):
    // only that request's entry is forgotten, never one that won the key since. Without: whatever
    // entry the key has (an operator's tombstone, to free a key by hand).
    void forget(std::string_view record_key, std::string_view request_id = {});

    // Before claiming: the verdict for a request with `fp` on (scope, key) if the view already has a
    // live entry for it; nullopt when the key is free (the request must claim it).
    std::optional<answer> peek(std::string_view scope, std::string_view key, const request_fingerprint& fp,
                               clock::time_point now) const;
    // After the request's own claim record was applied: did it win?
    answer decide(std::string_view scope, std::string_view key, const request_fingerprint& fp,
                  std::string_view request_id, clock::time_point now) const;

    // Drops the entries whose ttl has passed at `now`, and says which.
    struct expired {
        std::string record_key;
        std::string request_id;
        std::string owner;
    };
    std::vector<expired> expire(clock::time_point now);
    // Drops every entry (the log they were read from is gone).
    void clear();

    bool full() const;  // more live entries than max_entries: refuse new keyed requests
    std::size_t size() const;
    std::size_t bytes() const;

private:
    struct entry {
        std::string request_id;
        std::string correlation_id;
        std::string owner;
        request_fingerprint fp{};
        clock::time_point claimed{};
        std::shared_ptr<const stored_response> response;
        bool final = false;
        bool evicted = false;  // a response was dropped for max_bytes
        std::size_t bytes = 0;
    };
    using map_type = std::unordered_map<std::string, entry>;

    answer verdict_locked(const entry& e, const request_fingerprint& fp, clock::time_point now) const;
    void erase_locked(map_type::iterator it);
    void account_locked(entry& e, std::size_t new_bytes);
    void shed_bytes_locked();

    const limits limits_;
    mutable std::mutex mutex_;
    map_type entries_;                                              // by record key
    std::set<std::pair<clock::time_point, std::string>> by_claim_;  // oldest claim first
    std::size_t bytes_ = 0;
};

}  // namespace handoff::proxy::shared
