// Replicas sharing Idempotency-Keys and request statuses through the state topic (state.shared;
// README, "Running several replicas"). The registry writes this process's records to the topic
// through the producer port, and reads every replica's records back through the consumer port
// (every partition, from the beginning), applying them in each partition's order to the key view
// (shared_state.hpp) and to the status store.
//
// A claim: the request's claim record is produced (acks=all), then the request waits until the
// reader has applied its partition up to that record's offset; the view then says whether it won,
// and every replica says the same. A claim not written and read back within state.claim_wait is
// given up: a release is written for it (best effort) and the request is refused with 503, nothing
// produced.
//
// Threading: `on_record` and the other listener callbacks run on the state consumer's strand;
// `claim` on the calling session's executor; `complete`, `release` and `publish_status` on any
// thread. Shared state (the view, the applied positions and their waiters, this process's own
// keyed requests) is under locks of its own; nothing blocks.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/ports/consumer.hpp"
#include "handoff/ports/producer.hpp"
#include "handoff/proxy/dispatch/shared_state.hpp"
#include "handoff/proxy/dispatch/status_store.hpp"
#include "handoff/proxy/ops/metrics.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

namespace handoff::proxy {

class shared_registry final : public key_settlement,
                              public consumer_listener,
                              public std::enable_shared_from_this<shared_registry> {
public:
    struct claim_result {
        enum class kind {
            decided,      // `answer` says what to do (fresh: run the request)
            full,         // the view holds more than idempotency.max_entries live keys: 503
            unavailable,  // the claim was not written and read back in time (or refused): 503
        };
        kind result = kind::unavailable;
        shared::key_view::answer answer;
        std::string reason;  // unavailable: why
    };

    shared_registry(const config::state_config& state, const config::idempotency_config& keys,
                    std::shared_ptr<producer> kafka, std::shared_ptr<status_store> statuses,
                    std::shared_ptr<metrics> stats, std::string replica);

    // Claims (scope = route name, key) for `request_id`, or learns who holds it. On the caller's
    // executor.
    boost::asio::awaitable<claim_result> claim(std::string scope, std::string key, request_fingerprint fp,
                                               std::string request_id, std::string correlation_id);

    // key_settlement: this process's keyed requests, written to the topic.
    void complete(const std::string& request_id, stored_response response, bool final) override;
    void release(const std::string& request_id) override;

    // The status store's publisher: an outcome of one of this process's requests, written to the topic.
    void publish_status(const std::string& request_id, const request_status& status);

    // consumer_listener (the state consumer's strand). The state consumer revokes every partition
    // when the topic is gone or replaced (deleted and created again, or a new cluster under the same
    // address): what was read from it no longer describes the log, so the view is cleared, the
    // applied positions are forgotten and the claims waiting on them fail. Until partitions are
    // assigned again, claims are refused (503) and nothing is written.
    void on_assigned(const std::vector<topic_partition>& parts) override;
    void on_revoked(const std::vector<topic_partition>& parts, bool lost) override;
    void on_record(consumed_record record) override;
    void on_idle() override { sweep(shared::clock::now()); }

    // Expires the view's entries at `now`, and writes a tombstone for each one this replica owned
    // (its claim won the key), so that compaction removes the key's records. A tombstone names the
    // request whose entry it ends (header handoff_expired): applied after a newer claim won the key,
    // it changes nothing. Entries of a replica that is gone leave with the topic's retention.
    void sweep(shared::clock::time_point now);

    const std::string& replica() const noexcept { return replica_; }
    std::size_t view_size() const { return view_.size(); }
    std::size_t view_bytes() const { return view_.bytes(); }

    // Calls `fn(true)` (on the strand that applies records) once the record at (partition, offset)
    // of the state topic has been applied, or at once if it already has been; `fn(false)` when the
    // partition is revoked first (that record is not in the log being read).
    void when_applied(std::int32_t partition, std::int64_t offset, std::function<void(bool applied)> fn);

    // Partitions of the state topic are assigned: claims and writes can go to it.
    bool reading() const noexcept { return reading_.load(std::memory_order_acquire); }

private:
    struct own_request {
        std::string scope;
        std::string key;
        std::chrono::steady_clock::time_point expires;
    };
    kafka_record to_kafka(const shared::record& r) const;
    void write(const shared::record& r, const char* kind);
    // Every state record goes through here: refused while no partition is read; failures counted
    // and logged. True when queued for the broker.
    bool produce(kafka_record rec, const char* kind, const std::string& request_id);
    void write_release(const std::string& request_id, const std::string& scope, const std::string& key);
    void write_tombstone(const shared::key_view::expired& e);
    void remember(const std::string& request_id, const std::string& scope, const std::string& key);
    std::optional<own_request> forget(const std::string& request_id, bool final);

    const config::state_config cfg_;
    const std::chrono::milliseconds key_ttl_;
    std::shared_ptr<producer> kafka_;
    std::shared_ptr<status_store> statuses_;
    std::shared_ptr<metrics> stats_;
    const std::string replica_;
    shared::key_view view_;
    // Claim metrics, resolved at construction: by verdict, and the two results without one.
    std::array<prometheus::Counter*, 7> verdict_counters_{};
    prometheus::Counter* full_counter_ = nullptr;
    prometheus::Counter* unavailable_counter_ = nullptr;
    latency_series* claim_latency_ = nullptr;

    std::mutex applied_mutex_;
    std::set<std::int32_t> assigned_;               // partitions being read
    std::map<std::int32_t, std::int64_t> applied_;  // partition -> the last offset applied
    std::map<std::int32_t, std::multimap<std::int64_t, std::function<void(bool)>>> waiters_;
    std::atomic<bool> reading_{false};  // !assigned_.empty()
    std::atomic<std::uint64_t> unwritten_logged_{0};

    std::mutex own_mutex_;
    std::unordered_map<std::string, own_request> own_;                                     // by request ID
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> own_order_;  // expiry order
    std::atomic<std::uint64_t> skipped_logged_{0};
};

}  // namespace handoff::proxy
