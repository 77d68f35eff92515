// The calling side of `reply` routes (README, "Reply routes"): the request record names this process's reply
// topic in `handoff_reply_topic`; the receiving sidecar delivers it to its service and publishes
// the service's response there (subscription_rules.hpp, make_reply) with the request's ID (the
// request record's ce_id). This process consumes the reply topic with its own consumer and
// completes the held request. Replies are matched by request ID only: the caller's correlation
// label (handoff_correlation_id) is never a key, so a reply cannot reach another caller who
// happens to share it.
//
// A reply record: value = the response body; headers handoff_request_id, handoff_reply_status,
// content-type and handoff_reply_header_<lower-case name>.
#pragma once

#include "handoff/ports/consumer.hpp"
#include "handoff/proxy/dispatch/idempotency_store.hpp"
#include "handoff/proxy/ops/metrics.hpp"
#include "handoff/proxy/dispatch/status_store.hpp"
#include "handoff/proxy/dispatch/stored_response.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace handoff::proxy {

struct reply_record {
    std::string request_id;
    stored_response response;
};

// Reads a reply record. nullopt with `why` set when it lacks the request ID or a valid status
// (100-599 is accepted, 1xx is refused: an interim response cannot complete a request). Reply
// headers that would change the framing or the connection (Content-Length, Transfer-Encoding,
// Connection and the other hop-by-hop names) and values with CR, LF or NUL are dropped.
std::optional<reply_record> parse_reply(const consumed_record& r, std::string& why);

// Request ID -> the session waiting for its reply. Thread-safe. A waiter is called at most
// once, on the thread that delivers (the reply consumer's strand); it must only post.
class reply_registry {
public:
    using waiter = std::function<void(std::shared_ptr<const stored_response>)>;
    void add(const std::string& request_id, waiter w);
    void remove(const std::string& request_id);
    // False when nobody waits for this ID (a late reply, or one for another process).
    bool deliver(const std::string& request_id, const std::shared_ptr<const stored_response>& response);
    std::size_t size() const;

private:
    mutable std::mutex mutex_;
    std::unordered_map<std::string, waiter> waiters_;
};

// The reply consumer's listener: completes waiting sessions, records every reply of a known
// request in the status store (late ones included) and settles its Idempotency-Key.
class reply_dispatcher final : public consumer_listener {
public:
    reply_dispatcher(std::shared_ptr<reply_registry> registry, std::shared_ptr<status_store> statuses,
                     std::shared_ptr<key_settlement> keys, std::shared_ptr<metrics> stats);

    void on_assigned(const std::vector<topic_partition>& partitions) override;
    void on_revoked(const std::vector<topic_partition>& partitions, bool lost) override;
    void on_record(consumed_record record) override;

    // True once the reply consumer assigned the reply topic's partitions (replies can be read).
    bool ready() const noexcept { return assigned_.load(); }

private:
    std::shared_ptr<reply_registry> registry_;
    std::shared_ptr<status_store> statuses_;
    std::shared_ptr<key_settlement> keys_;
    std::shared_ptr<metrics> stats_;
    std::atomic<bool> assigned_{false};
};

}  // namespace handoff::proxy
