// What happened to each converted request, by correlation ID (DESIGN §2 "Correlation IDs and
// status"): bounded in entries, LRU-evicted, expired after a TTL. Thread-safe: written from
// sessions and from delivery handlers, read by GET /_handoff/requests/{id}.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace handoff::proxy {

struct request_status {
    enum class state { accepted, persisted, failed, unknown };
    state current = state::accepted;
    std::string route;
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string reason;  // failed/unknown: librdkafka's error name or a short explanation
    std::chrono::system_clock::time_point updated{};
};

const char* to_string(request_status::state s) noexcept;

class status_store {
public:
    status_store(std::size_t max_entries, std::chrono::milliseconds ttl);

    void put(const std::string& correlation_id, request_status status);
    std::optional<request_status> get(const std::string& correlation_id);
    std::size_t size() const;

    // JSON for the status endpoint.
    static std::string to_json(const std::string& correlation_id, const request_status& s);

private:
    struct entry {
        request_status status;
        std::chrono::steady_clock::time_point expires;
        std::list<std::string>::iterator lru;
    };
    void evict_locked(std::chrono::steady_clock::time_point now);

    const std::size_t max_entries_;
    const std::chrono::milliseconds ttl_;
    mutable std::mutex mutex_;
    std::list<std::string> lru_;  // front = most recently written
    std::unordered_map<std::string, entry> entries_;
};

}  // namespace handoff::proxy
