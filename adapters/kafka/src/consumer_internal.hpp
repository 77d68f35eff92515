// Private to adapters/kafka: the consumer behind `handoff::proxy::consumer`, shared by its two
// modes: consumer.cpp (a subscription: group membership, rebalances, offsets) and
// reply_consumer.cpp (the reply consumer: manual assignment of `replies.topic`, no group).
#pragma once

#include "handoff/adapters/kafka/fetch_watch.hpp"

#include <handoff/config/config.hpp>
#include <handoff/ports/consumer.hpp>

#include <handoff/common/ids.hpp>
#include <handoff/common/log.hpp>
#include <handoff/common/reply_topic.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <librdkafka/rdkafka.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

namespace handoff::adapters::kafka::consumer_detail {

namespace asio = boost::asio;
namespace log = proxy::log;
using namespace std::chrono_literals;

// How long a partition of the reply or state topic may read nothing while records wait past the
// point it read before its fetch is restarted there (fetch_watch.hpp).
inline constexpr std::chrono::milliseconds fetch_stall_after = 10s;

struct tpl_deleter {
    void operator()(rd_kafka_topic_partition_list_t* l) const noexcept { rd_kafka_topic_partition_list_destroy(l); }
};
using tpl_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, tpl_deleter>;

tpl_ptr to_list(const std::vector<proxy::topic_partition>& parts);
std::vector<proxy::topic_partition> from_list(const rd_kafka_topic_partition_list_t* l);
void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept;

// Producer-only properties from kafka.properties are not applied to consumers (librdkafka would
// warn about each one).
bool producer_only(const std::string& name);

using property_list = std::vector<std::pair<std::string, std::string>>;

// A consumer's configuration, in the order that decides which value wins: `defaults`, then the
// consumer properties of kafka.properties, then `own` (a subscription's properties), then `fixed`
// (what the mode needs to hold). Null with `error` set when librdkafka refuses one.
rd_kafka_conf_t* consumer_conf(const property_list& defaults, const std::map<std::string, std::string>& shared,
                               const std::map<std::string, std::string>& own, const property_list& fixed,
                               std::string& error);

class consumer_impl final : public proxy::consumer {
public:
    consumer_impl(asio::any_io_executor strand, std::string name, std::vector<std::string> topics)
        : strand_(strand), wake_(strand), keepalive_(strand), name_(std::move(name)), topics_(std::move(topics)) {}

    // The reply consumer: manual assignment of every partition of `replies.topic` (no group).
    // With `from_beginning` (the shared state topic, `what` = "state topic"): every partition read
    // from its beginning, and ready only once the end offsets read at the first assignment are
    // reached; `create_configs` are set on the topic when this process creates it.
    consumer_impl(asio::any_io_executor strand, config::replies_config replies, std::string what = "reply topic",
                  bool from_beginning = false, property_list create_configs = {})
        : strand_(strand),
          wake_(strand),
          keepalive_(strand),
          name_(from_beginning ? "state" : "replies"),
          topics_({replies.topic}),
          replies_(std::move(replies)),
          what_(std::move(what)),
          from_beginning_(from_beginning),
          create_configs_(std::move(create_configs)) {
        not_ready_ = "reading the metadata of the " + what_ + " '" + replies_->topic + "'";
    }

    ~consumer_impl() override { close(); }

    // The state topic: a compacted topic must not compact records younger than `lag`
    // (min.compaction.lag.ms); one that does keeps the consumer not ready. Before start().
    void require_compaction_lag(std::chrono::milliseconds lag) { compaction_lag_ = lag; }
    // The embedded mock cluster answers neither DescribeTopics nor DescribeConfigs (each would wait
    // for its timeout), and it cannot be replaced or misconfigured: neither is asked. Before start().
    void skip_topic_checks() { check_topic_ = false; }

    bool init(rd_kafka_conf_t* conf, std::string& error) {
        rd_kafka_conf_set_opaque(conf, this);
        rd_kafka_conf_set_rebalance_cb(conf, &consumer_impl::on_rebalance);
        rd_kafka_conf_set_log_cb(conf, &on_log);
        char errstr[512] = {};
        rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
        if (!rk_) {
            rd_kafka_conf_destroy(conf);
            error = std::string("cannot create the kafka consumer: ") + errstr;
            return false;
        }
        rd_kafka_poll_set_consumer(rk_);  // the main queue (errors, logs) is served by consumer_poll
        queue_ = rd_kafka_queue_get_consumer(rk_);
        const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            error = std::string("eventfd: ") + std::strerror(errno);
            return false;
        }
        wake_.assign(fd);
        static const std::uint64_t one = 1;
        rd_kafka_queue_io_event_enable(queue_, fd, &one, sizeof one);
        // The fd is signalled only when the queue goes from empty to one event: events queued
        // before enabling would wait for the keep-alive timer. Wake the first serve now.
        [[maybe_unused]] const auto written = ::write(fd, &one, sizeof one);
        std::lock_guard lock(lag_mutex_);
        lag_open_ = true;
        return true;
    }

    void start(proxy::consumer_listener& listener) override {
        listener_ = &listener;
        if (replies_) {
            control_ = std::thread([this] { control(); });
        } else {
            tpl_ptr topics(rd_kafka_topic_partition_list_new(static_cast<int>(topics_.size())));
            for (const auto& t : topics_)
                rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
            if (const auto err = rd_kafka_subscribe(rk_, topics.get())) {
                log::error("kafka subscribe failed", {{"subscription", name_}, {"error", rd_kafka_err2str(err)}});
            }
        }
        arm();
        tick();
        serve();
    }

    void pause(const std::vector<proxy::topic_partition>& parts) override {
        if (!rk_ || parts.empty()) return;
        auto l = to_list(parts);
        rd_kafka_pause_partitions(rk_, l.get());
        for (const auto& p : parts) paused_.insert(p);
    }

    void resume(const std::vector<proxy::topic_partition>& parts) override {
        if (!rk_) return;
        std::vector<proxy::topic_partition> mine;
        for (const auto& p : parts) {
            if (paused_.erase(p)) mine.push_back(p);  // never resume a partition we did not pause
        }
        if (mine.empty()) return;
        auto l = to_list(mine);
        rd_kafka_resume_partitions(rk_, l.get());
    }

    proxy::store_result store_offset(const proxy::topic_partition& tp, std::int64_t next) override {
        if (!rk_) return proxy::store_result::not_assigned;
        tpl_ptr l(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition)->offset = next;
        const auto err = rd_kafka_offsets_store(rk_, l.get());
        const auto perr = l->elems[0].err;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && perr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            std::lock_guard lock(lag_mutex_);
            if (auto it = assigned_.find(tp); it != assigned_.end()) it->second = next;
            return proxy::store_result::ok;
        }
        if (err == RD_KAFKA_RESP_ERR__STATE || perr == RD_KAFKA_RESP_ERR__STATE)
            return proxy::store_result::not_assigned;
        log::warn("kafka offsets_store failed",
                  {{"subscription", name_}, {"error", rd_kafka_err2name(err ? err : perr)}});
        return proxy::store_result::failed;
    }

    bool ready(std::string& reason) const override {
        if (!replies_) return proxy::consumer::ready(reason);
        std::lock_guard lock(ready_mutex_);
        reason = not_ready_;
        return reason.empty();
    }

    void close() override {
        if (!rk_ || closed_.exchange(true)) return;
        closing_ = true;
        if (control_.joinable()) {
            {
                std::lock_guard lock(control_mutex_);
                stop_control_ = true;
            }
            control_cv_.notify_all();
            control_.join();  // its Kafka calls are bounded (a few seconds at most)
        }
        if (reply_topic_) {
            rd_kafka_topic_destroy(reply_topic_);
            reply_topic_ = nullptr;
        }
        {
            std::lock_guard lock(lag_mutex_);  // lag() stops touching rk_ before it is destroyed
            lag_open_ = false;
            assigned_.clear();
        }
        boost::system::error_code ignored;
        keepalive_.cancel();
        // Commit what is stored, synchronously; _NO_OFFSET just means nothing new. The reply
        // consumer has no group and commits nothing.
        const auto err = replies_ ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_commit(rk_, nullptr, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            log::warn("kafka offset commit on close failed",
                      {{"subscription", name_}, {"error", rd_kafka_err2name(err)}});
        }
        // Leaves the group; the revocation callback runs here, on this thread.
        if (const auto cerr = rd_kafka_consumer_close(rk_)) {
            log::warn("kafka consumer close", {{"subscription", name_}, {"error", rd_kafka_err2name(cerr)}});
        }
        rd_kafka_queue_io_event_enable(queue_, -1, nullptr, 0);
        rd_kafka_queue_destroy(queue_);
        queue_ = nullptr;
        rd_kafka_destroy(rk_);
        rk_ = nullptr;
        wake_.close(ignored);  // after rd_kafka_destroy: librdkafka may write to it until then
        log::info("kafka consumer closed", {{"subscription", name_}});
    }

    std::uint64_t fetch_restarts() const override { return fetch_stalls_.load(std::memory_order_relaxed); }

    std::string member_id() const override {
        if (!rk_) return {};
        char* id = rd_kafka_memberid(rk_);
        std::string out = id ? id : "";
        if (id) rd_kafka_mem_free(rk_, id);
        return out;
    }

    // Any thread. Lag = high watermark - last offset stored via store_offset (what the next commit
    // carries), or - the consume position while nothing was stored for the partition since it was
    // assigned. Both values come from librdkafka's caches (the watermark is updated by fetch
    // responses; rd_kafka_position is local): nothing here blocks on the network.
    std::vector<proxy::partition_lag> lag() const override {
        std::vector<proxy::partition_lag> out;
        std::lock_guard lock(lag_mutex_);
        if (!lag_open_ || !rk_) return out;
        out.reserve(assigned_.size());
        for (const auto& [tp, stored] : assigned_) {
            std::int64_t low = RD_KAFKA_OFFSET_INVALID, high = RD_KAFKA_OFFSET_INVALID;
            if (rd_kafka_get_watermark_offsets(rk_, tp.topic.c_str(), tp.partition, &low, &high) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
                high < 0) {
                continue;  // not fetched yet: unknown
            }
            std::int64_t from = stored;
            if (from < 0) {
                tpl_ptr l(rd_kafka_topic_partition_list_new(1));
                rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition);
                if (rd_kafka_position(rk_, l.get()) != RD_KAFKA_RESP_ERR_NO_ERROR || l->elems[0].err ||
                    l->elems[0].offset < 0) {
                    continue;  // nothing consumed yet either
                }
                from = l->elems[0].offset;
            }
            out.push_back({tp.topic, tp.partition, std::max<std::int64_t>(0, high - from)});
        }
        return out;
    }

private:
    // ---- the reply consumer's control thread (never an io_context thread: every call below
    // blocks, each for a bounded time). Owns reply_assigned_; talks to the strand only by posting.

    enum class topic_state { exists, missing, error };
    struct topic_identity {
        std::string cluster_id;
        std::string topic_id;
        // Both known on each side and one of them different.
        bool replaced_by(const topic_identity& now) const;
        void update(const topic_identity& now);  // keeps what `now` does not know
    };

    void control();
    topic_state read_partition_count(std::int32_t& count, std::string& error_name, std::string& error_text);
    // CreateTopics; true when created (or created meanwhile by someone else).
    bool create_topic(std::string& error_name, std::string& error_text);
    // One Admin API request on a queue of its own: `issue(options, queue)` sends it; the answer is
    // waited for up to `wait`, in 250 ms slices that end early when the control thread stops. Null:
    // no answer.
    struct event_deleter {
        void operator()(rd_kafka_event_t* e) const noexcept { rd_kafka_event_destroy(e); }
    };
    using event_ptr = std::unique_ptr<rd_kafka_event_t, event_deleter>;
    event_ptr admin_request(rd_kafka_admin_op_t op, int request_timeout_ms, int operation_timeout_ms,
                            std::chrono::milliseconds wait,
                            const std::function<void(rd_kafka_AdminOptions_t*, rd_kafka_queue_t*)>& issue);
    topic_identity read_identity();
    void drop_assignment();
    bool check_compaction(std::string& unsafe);
    // Adds `parts` to the assignment: from their end offsets, read now (the first assignment, before
    // readiness: a reply written after /readyz turned true is after them), or from their beginning
    // (partitions created after start hold only replies written since).
    bool assign(const std::vector<std::int32_t>& parts, bool from_end, std::string& error_name);

    // The reply consumer's fetch watch (control thread): a partition that reads nothing while records
    // wait past the point it read is restarted there (fetch_watch.hpp).
    void watch_fetch();
    void restart_fetch(std::int32_t partition, std::int64_t at);
    // On the strand: the next offset to read of a partition of the reply topic.
    void reached(std::int32_t partition, std::int64_t next) {
        std::lock_guard lock(progress_mutex_);
        if (const auto it = progress_.find(partition); it != progress_.end()) it->second = std::max(it->second, next);
    }

    void set_not_ready(std::string reason) {
        std::lock_guard lock(ready_mutex_);
        not_ready_ = std::move(reason);
    }

    // On the strand, after serving (from_beginning only): ready once every partition's position has
    // reached the end offset it had at the first assignment (catch_up_, filled by assign()).
    void check_caught_up() {
        if (!from_beginning_ || caught_up_) return;
        std::map<std::int32_t, std::int64_t> targets;
        {
            std::lock_guard lock(ready_mutex_);
            if (!catch_up_started_) return;
            targets = catch_up_;
        }
        tpl_ptr l(rd_kafka_topic_partition_list_new(static_cast<int>(targets.size())));
        for (const auto& [p, end] : targets) rd_kafka_topic_partition_list_add(l.get(), replies_->topic.c_str(), p);
        if (rd_kafka_position(rk_, l.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
        for (int i = 0; i < l->cnt; ++i) {
            const auto p = l->elems[i].partition;
            const auto end = targets[p];
            if (end <= 0) continue;  // nothing to read
            // The position is the last consumed offset + 1; a partition whose records up to its end
            // were removed (retention, compaction) reports its end through an EOF event instead.
            const bool consumed = !l->elems[i].err && l->elems[i].offset >= end;
            const auto eof = at_end_.find(p);
            if (!consumed && (eof == at_end_.end() || eof->second < end)) return;
        }
        caught_up_ = true;
        set_not_ready({});
        log::info(
            "the state topic is read up to its end offsets at start",
            {{"topic", replies_->topic},
             {"partitions", targets.size()},
             {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - catch_up_since_).count()}});
    }

    bool stopping() {
        std::lock_guard lock(control_mutex_);
        return stop_control_;
    }

    void wait(std::chrono::milliseconds d) {
        std::unique_lock lock(control_mutex_);
        control_cv_.wait_for(lock, d, [this] { return stop_control_; });
    }

    void arm() {
        if (closing_) return;
        wake_.async_wait(asio::posix::stream_descriptor::wait_read,
                         [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
                             if (ec || !alive.lock() || closing_) return;
                             std::uint64_t count = 0;
                             while (::read(wake_.native_handle(), &count, sizeof count) > 0) {}
                             serve();
                             arm();
                         });
    }

    // Not the hot path: only guarantees a poll call at least every 500 ms (max.poll.interval.ms,
    // rebalances while idle) and serves anything a lost wake-up would have left.
    void tick() {
        if (closing_) return;
        keepalive_.expires_after(500ms);
        keepalive_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
            if (ec || !alive.lock() || closing_) return;
            serve();
            if (listener_ && !closing_) {
                try {
                    listener_->on_idle();
                } catch (const std::exception& e) {
                    log::error("consumer listener threw", {{"subscription", name_}, {"error", e.what()}});
                }
            }
            tick();
        });
    }

    // On the strand. Bounded; the rest is re-posted (librdkafka signals the fd again only after
    // the queue was served empty).
    void serve() {
        if (!rk_ || closing_) return;
        for (int budget = 1024; budget > 0; --budget) {
            rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0);
            if (!m) {
                check_caught_up();
                return;
            }
            handle(m);
            rd_kafka_message_destroy(m);
            if (closing_) return;
        }
        check_caught_up();
        asio::post(strand_, [this, alive = std::weak_ptr<int>(alive_)] {
            if (alive.lock()) serve();
        });
    }

    void handle(const rd_kafka_message_t* m) {
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (from_beginning_) at_end_[m->partition] = m->offset;  // read up to this end offset
                if (replies_) reached(m->partition, m->offset);
                return;
            }
            const bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
            log::write(fatal ? log::level::error : log::level::warn, "kafka consumer error",
                       {{"subscription", name_},
                        {"error", rd_kafka_err2name(m->err)},
                        {"reason", rd_kafka_message_errstr(m)}});
            return;
        }
        if (replies_) reached(m->partition, m->offset + 1);
        proxy::consumed_record r;
        r.topic = rd_kafka_topic_name(m->rkt);
        r.partition = m->partition;
        r.offset = m->offset;
        if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
        if (m->payload) r.value.assign(static_cast<const char*>(m->payload), m->len);
        r.null_value = m->payload == nullptr;
        rd_kafka_timestamp_type_t tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        const std::int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) r.timestamp_ms = ts;
        rd_kafka_headers_t* hdrs = nullptr;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
            const char* name = nullptr;
            const void* value = nullptr;
            size_t size = 0;
            for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
                 ++i) {
                r.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
            }
        }
        try {
            if (listener_) listener_->on_record(std::move(r));
        } catch (const std::exception& e) {
            log::error("subscription listener threw", {{"subscription", name_}, {"error", e.what()}});
        }
    }

    static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                             void* opaque) noexcept {
        auto* self = static_cast<consumer_impl*>(opaque);
        try {
            self->rebalance(rk, err, parts);
        } catch (const std::exception& e) {
            log::error("kafka rebalance handling threw", {{"error", e.what()}});
        } catch (...) {}
    }

    void rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
        const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        const auto list = from_list(parts);
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            rd_kafka_error_t* e = nullptr;
            if (cooperative) {
                e = rd_kafka_incremental_assign(rk, parts);
            } else {
                if (const auto aerr = rd_kafka_assign(rk, parts)) {
                    log::error("kafka assign failed", {{"subscription", name_}, {"error", rd_kafka_err2name(aerr)}});
                }
            }
            if (e) {
                log::error("kafka incremental assign failed",
                           {{"subscription", name_}, {"error", rd_kafka_error_string(e)}});
                rd_kafka_error_destroy(e);
            }
            for (const auto& p : list) paused_.erase(p);  // a fresh assignment starts fetching
            {
                std::lock_guard lock(lag_mutex_);
                if (!cooperative) assigned_.clear();  // eager: the list is the whole assignment
                for (const auto& p : list) assigned_.insert_or_assign(p, -1);
            }
            if (listener_) listener_->on_assigned(list);
            return;
        }
        // Revocation (or an error): the listener abandons in-flight work first, so nothing is
        // stored for these partitions after they are given up. librdkafka commits the offsets
        // already stored (auto commit) as part of the unassign.
        const bool lost = rd_kafka_assignment_lost(rk) != 0;
        if (listener_) listener_->on_revoked(list, lost);
        for (const auto& p : list) paused_.erase(p);
        {
            std::lock_guard lock(lag_mutex_);
            for (const auto& p : list) assigned_.erase(p);
        }
        if (cooperative) {
            if (auto* e = rd_kafka_incremental_unassign(rk, parts)) {
                log::error("kafka incremental unassign failed",
                           {{"subscription", name_}, {"error", rd_kafka_error_string(e)}});
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, nullptr);
        }
    }

    asio::any_io_executor strand_;
    asio::posix::stream_descriptor wake_;
    asio::steady_timer keepalive_;
    std::string name_;
    std::vector<std::string> topics_;
    rd_kafka_t* rk_ = nullptr;
    rd_kafka_queue_t* queue_ = nullptr;
    proxy::consumer_listener* listener_ = nullptr;
    std::set<proxy::topic_partition> paused_;  // paused by us (strand only)
    // For lag(), read from any thread: assigned partitions -> last stored offset (-1: none yet).
    mutable std::mutex lag_mutex_;
    std::map<proxy::topic_partition, std::int64_t> assigned_;
    bool lag_open_ = false;  // rk_ is usable by lag()
    std::atomic<bool> closed_{false};
    std::atomic<bool> closing_{false};
    // The reply consumer (make_reply_consumer) only.
    std::optional<config::replies_config> replies_;
    std::thread control_;
    std::mutex control_mutex_;
    std::condition_variable control_cv_;
    bool stop_control_ = false;
    rd_kafka_topic_t* reply_topic_ = nullptr;      // control thread (and close, after joining it)
    std::set<std::int32_t> reply_assigned_;        // control thread
    std::string what_ = "reply topic";             // "reply topic" or "state topic", for logs and reasons
    bool from_beginning_ = false;                  // the state topic: read from the beginning, catch up first
    property_list create_configs_;                 // topic configs set when this process creates the topic
    std::chrono::milliseconds compaction_lag_{0};  // > 0: a compacted topic must keep records this long
    bool check_topic_ = true;                      // read the topic's identity and configs
    // The state topic's catch-up: end offsets at the first assignment (under ready_mutex_), and
    // whether the strand saw them reached.
    bool catch_up_started_ = false;
    std::map<std::int32_t, std::int64_t> catch_up_;
    std::chrono::steady_clock::time_point catch_up_since_ = std::chrono::steady_clock::now();
    bool caught_up_ = false;                       // strand
    std::map<std::int32_t, std::int64_t> at_end_;  // strand: the offset of each partition's last EOF event
    // The reply topic's partitions: the next offset to read (set at assignment by the control thread,
    // advanced by the strand), and the watch over them (control thread).
    std::mutex progress_mutex_;
    std::map<std::int32_t, std::int64_t> progress_;
    fetch_watch fetch_watch_{fetch_stall_after};
    std::atomic<std::uint64_t> fetch_stalls_{0};  // restarts done (fetch_restarts())
    mutable std::mutex ready_mutex_;
    std::string not_ready_;  // empty: ready
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace handoff::adapters::kafka::consumer_detail
