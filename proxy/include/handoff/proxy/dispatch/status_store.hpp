// What happened to each converted request, by request ID (README, "Request IDs, correlation
// IDs and the status endpoint"): bounded in entries and bytes, LRU-evicted, expired after a TTL. Thread-safe:
// written from sessions and from delivery handlers, read by GET /_handoff/requests/{id}.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include "handoff/proxy/dispatch/stored_response.hpp"

#include <boost/unordered/unordered_flat_set.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace handoff::proxy {

struct request_status {
    enum class state { accepted, persisted, failed, unknown, replied };
    state current = state::accepted;
    std::string route;
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string reason;                            // failed/unknown: librdkafka's error name or a short explanation
    std::shared_ptr<const stored_response> reply;  // replied: the reply's status, headers, body
    std::chrono::system_clock::time_point updated{};
};

const char* to_string(request_status::state s) noexcept;

class status_store {
public:
    status_store(std::size_t max_entries, std::size_t max_bytes, std::chrono::milliseconds ttl);
    ~status_store();
    status_store(const status_store&) = delete;
    status_store& operator=(const status_store&) = delete;

    void put(const std::string& request_id, request_status status);
    // Shared state (state.shared): `publish` runs after every put and put_reply of this process's
    // own requests, outside the lock, with the status as stored, except for `accepted` (other
    // replicas learn a request's outcome, not that it began). Set once, before any put.
    using publisher = std::function<void(const std::string& request_id, const request_status&)>;
    void set_publisher(publisher publish) { publish_ = std::move(publish); }
    // A status another replica published, written at `written`: stored without publishing, and
    // kept until `written` + ttl (nothing when that has passed).
    void put_remote(const std::string& request_id, request_status status,
                    std::chrono::system_clock::time_point written);
    // Like `put`, but keeps partition and offset already known (a reply arriving after the
    // delivery report): the state becomes `replied` with `reply`. False when the ID is unknown
    // or expired (nothing is stored then: a reply for a request this process never saw).
    bool put_reply(const std::string& request_id, std::shared_ptr<const stored_response> reply);
    std::optional<request_status> get(const std::string& request_id);
    std::size_t size() const;
    std::size_t bytes() const;

    // JSON for the status endpoint.
    // `reply_content`: include a stored reply's headers and body (status.reply_bodies); without
    // it a reply shows its status code only.
    static std::string to_json(const std::string& request_id, const request_status& s, bool reply_content);

private:
    // One heap object per request ID, at a stable address; the LRU list runs through the entries
    // themselves (no list nodes to allocate). The index is an open-addressing set of entry
    // pointers (boost::unordered_flat_set, 8 bytes a slot): a lookup or an erase touches one group
    // of slots, not a bucket chain, which matters at 100,000 entries written twice per request.
    // A full store evicts one entry per new request, and the evicted memory is long cold:
    // - the entry keeps its ID's hash, so evicting it hashes nothing, and its ID inline (a UUID
    //   or a ULID fits; a longer one has an allocation of its own), in the cache lines the
    //   eviction reads anyway;
    // - the evicted entry is kept as `spare_` for the next new ID, so a request at the bound
    //   neither frees nor allocates here (what it would allocate is the block just freed,
    //   cache-cold).
    struct entry {
        static constexpr std::size_t inline_id = 48;
        entry* newer = nullptr;  // towards lru_newest_
        entry* older = nullptr;  // towards lru_oldest_
        std::chrono::steady_clock::time_point expires;
        std::size_t hash = 0;  // of id()
        std::size_t bytes = 0;
        std::uint32_t id_size = 0;
        char short_id[inline_id];
        std::unique_ptr<char[]> long_id;  // set when the ID is longer than inline_id
        request_status status;

        std::string_view id() const noexcept { return {long_id ? long_id.get() : short_id, id_size}; }
        void set_id(std::string_view v, std::size_t h);
    };
    // A lookup key: an ID and its hash, computed once per call.
    struct hashed_id {
        std::string_view id;
        std::size_t hash;
        explicit hashed_id(std::string_view v) : id(v), hash(std::hash<std::string_view>{}(v)) {}
    };
    struct index_hash {
        using is_transparent = void;
        std::size_t operator()(const entry* e) const noexcept { return e->hash; }
        std::size_t operator()(const hashed_id& k) const noexcept { return k.hash; }
    };
    struct index_equal {
        using is_transparent = void;
        bool operator()(const entry* a, const entry* b) const noexcept { return a == b; }
        bool operator()(const hashed_id& k, const entry* e) const noexcept {
            return k.hash == e->hash && k.id == e->id();
        }
        bool operator()(const entry* e, const hashed_id& k) const noexcept { return (*this)(k, e); }
    };
    using index = boost::unordered_flat_set<entry*, index_hash, index_equal>;

    static std::size_t cost(std::string_view id, const request_status& s) noexcept;
    // Recomputes the entry's cost and expiry and makes it the most recently written. `fresh`: the
    // entry has no place in the LRU list yet.
    void touch_locked(entry& e, bool fresh, std::chrono::steady_clock::time_point now);
    void unlink_locked(entry& e) noexcept;
    void erase_locked(entry& e);
    void evict_locked(std::chrono::steady_clock::time_point now);

    entry* find_locked(const hashed_id& k) const;
    // Stores the status and makes it the newest; the caller evicts (evict_locked) once it has
    // read what it needs of the entry.
    entry& put_locked(const std::string& id, request_status&& status, std::chrono::steady_clock::time_point now);

    const std::size_t max_entries_;
    const std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    publisher publish_;
    const std::chrono::milliseconds ttl_;
    mutable std::mutex mutex_;
    entry* lru_newest_ = nullptr;
    entry* lru_oldest_ = nullptr;
    std::unique_ptr<entry> spare_;  // the last evicted entry, reused by the next new ID
    index entries_;                 // owns its entries (deleted by erase_locked and the destructor)
};

}  // namespace handoff::proxy
