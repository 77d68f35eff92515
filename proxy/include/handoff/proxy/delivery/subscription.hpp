// One subscription (README, "Receiving half"): consumes records through the consumer port and delivers each to
// the local service through the upstream port, at least once, in order per key.
//
// Rules (the README "Subscriptions" section is the user-facing version):
// - An offset is stored only when every earlier record of its partition is resolved: 2xx (and,
//   with reply_topic, the reply persisted), or written to the dead-letter topic with a persisted
//   delivery report. Shutdown and revocation never resolve anything.
// - Ordering `key`: a record waits while an earlier record with the same key (same partition) is
//   unresolved; `partition`: one record at a time per partition; `none`: no waiting. Records
//   without a key are never held behind each other.
// - At most `concurrency` HTTP attempts are in flight. Each partition buffers at most
//   `partition_buffer` records; beyond that it is paused (we keep polling, so a long retry never
//   gets the member evicted) and resumed at half.
// - Retry table: `classify`. Counted retries back off exponentially with jitter (Retry-After
//   wins, capped). After `retry.attempts` counted attempts the record is dead-lettered; without a
//   dead_letter_topic it keeps being retried at the backoff cap, holding its key.
// - Circuit breaker: connection failures (refused, reset before any byte) never count as
//   attempts. After `circuit_threshold` in a row (no HTTP response in between) the circuit opens:
//   every partition is paused, nothing new is attempted, and one parked record is tried every
//   `probe_interval`; the first HTTP response closes it and resumes what it paused.
// - Shutdown (`begin_stop`): pause every partition, start nothing new (no retry, dead-letter or
//   new delivery), let in-flight HTTP attempts finish (a 2xx still resolves and stores). `idle()`
//   turns true when nothing is in flight; then the io_context may stop and `close()` commits.
//
// Threading: everything runs on `strand`, the same strand the consumer adapter calls back on.
// `counters()`, `idle()` and `lag()` may be read from any thread. The object must outlive the io_context's
// run (handlers refer to it); destroy it after the io_context stopped.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/ports/consumer.hpp"
#include "handoff/ports/producer.hpp"
#include "handoff/proxy/delivery/subscription_rules.hpp"
#include "handoff/ports/upstream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace handoff::proxy {

// Exposed for metrics (another issue) and tests. Monotonic unless noted.
struct subscription_counters {
    std::atomic<std::uint64_t> received{0};
    std::atomic<std::uint64_t> attempts{0};   // HTTP attempts started
    std::atomic<std::uint64_t> delivered{0};  // 2xx
    std::atomic<std::uint64_t> retries{0};    // counted retries scheduled
    std::atomic<std::uint64_t> connection_failures{0};
    std::atomic<std::uint64_t> dead_lettered{0};  // dead-letter writes persisted
    std::atomic<std::uint64_t> dead_letter_failures{0};
    std::atomic<std::uint64_t> replies{0};  // replies persisted
    std::atomic<std::uint64_t> reply_failures{0};
    std::atomic<std::uint64_t> offsets_stored{0};
    std::atomic<std::uint64_t> abandoned{0};        // dropped by revocation or shutdown, not stored
    std::atomic<std::uint64_t> dropped_headers{0};  // unsafe record headers not emitted
    std::atomic<std::uint64_t> circuit_opened{0};
    std::atomic<std::uint64_t> assignments{0};  // assignment callbacks
    std::atomic<std::int64_t> in_flight{0};     // gauge: HTTP attempts + produces in progress
    std::atomic<std::int64_t> buffered{0};      // gauge: records received, not resolved
};

struct subscription_options {
    std::size_t partition_buffer = 1000;
    int circuit_threshold = 5;
    std::chrono::milliseconds probe_interval{2000};
    std::function<double()> random;       // [0,1); default: a seeded mt19937_64
    std::function<std::string()> new_id;  // reply ce_id; default make_uuid_v7
};

class subscription final : public consumer_listener {
public:
    subscription(boost::asio::any_io_executor strand, config::subscription cfg, config::upstream_config upstream,
                 std::shared_ptr<consumer> consumer, std::shared_ptr<upstream_client> client,
                 std::shared_ptr<producer> producer, subscription_options options = {});
    ~subscription() override;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;

    // Subscribes (posted onto the strand).
    void start();

    // Shutdown, step 1 (posted onto the strand): stop fetching and starting work.
    void begin_stop();
    // True once begin_stop ran and nothing is in flight. Any thread.
    bool idle() const noexcept { return stopping_.load() && counters_.in_flight.load() == 0; }
    // Shutdown, step 2, after the io_context stopped: commit stored offsets, leave the group.
    void close();

    const subscription_counters& counters() const noexcept { return counters_; }
    const config::subscription& settings() const noexcept { return cfg_; }
    // Per assigned partition (consumer::lag). Any thread; non-blocking.
    std::vector<partition_lag> lag() const { return consumer_->lag(); }

    // consumer_listener (on the strand)
    void on_assigned(const std::vector<topic_partition>& partitions) override;
    void on_revoked(const std::vector<topic_partition>& partitions, bool lost) override;
    void on_record(consumed_record record) override;

private:
    struct job;
    struct partition_state;
    using job_ptr = std::shared_ptr<job>;

    partition_state* state_of(const job& j);
    void pump();
    void start_attempt(job_ptr j);
    boost::asio::awaitable<void> attempt(job_ptr j);
    void on_attempt(const job_ptr& j, upstream_result result);
    void schedule(const job_ptr& j, std::chrono::milliseconds delay, void (subscription::*then)(const job_ptr&));
    void retry_now(const job_ptr& j);
    void dead_letter(const job_ptr& j, std::string reason);
    // A dead letter or a reply for `j`: the job is active and in flight until the report, which
    // reaches `on_report` on the strand unless the job or the subscription is gone by then.
    produce_error produce_output(const job_ptr& j, kafka_record& rec,
                                 void (subscription::*on_report)(const job_ptr&, const delivery_report&));
    void write_dead_letter(const job_ptr& j);
    void on_dead_letter_report(const job_ptr& j, const delivery_report& rep);
    void final_answer(const job_ptr& j, boost::beast::http::response<boost::beast::http::string_body> response,
                      std::string reason);
    void write_reply(const job_ptr& j);
    void on_reply_report(const job_ptr& j, const delivery_report& rep);
    void after_reply(const job_ptr& j);
    void reply_failed(const job_ptr& j, const std::string& error);
    void resolve(const job_ptr& j);
    void abandon(const job_ptr& j);
    void update_pause(const topic_partition& tp, partition_state& s);
    void open_circuit();
    void close_circuit();
    void probe();
    double random();

    boost::asio::any_io_executor strand_;
    config::subscription cfg_;
    config::upstream_config upstream_;
    std::shared_ptr<consumer> consumer_;
    std::shared_ptr<upstream_client> client_;
    std::shared_ptr<producer> producer_;
    subscription_options options_;
    std::mt19937_64 rng_;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // weakly held by late callbacks

    // strand only
    std::map<topic_partition, std::unique_ptr<partition_state>> partitions_;
    std::deque<job_ptr> ready_;
    std::deque<job_ptr> parked_;  // connection failures while the circuit is open
    std::size_t http_in_flight_ = 0;
    std::uint64_t next_epoch_ = 1;
    int consecutive_connection_failures_ = 0;
    bool circuit_open_ = false;
    bool probe_scheduled_ = false;
    bool started_ = false;
    std::atomic<bool> stopping_{false};
    subscription_counters counters_;
};

}  // namespace handoff::proxy
