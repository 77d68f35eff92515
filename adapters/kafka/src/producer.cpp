#include "handoff/adapters/kafka/producer.hpp"

#include "producer_internal.hpp"

#include <handoff/adapters/kafka/stall_detector.hpp>

#include <handoff/common/log.hpp>
#include <handoff/config/kafka_rules.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <librdkafka/rdkafka.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

namespace handoff::adapters::kafka {

namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

using namespace producer_detail;

class producer_impl final : public kafka_producer, public fatal_listener {
public:
    // `stall_window`: kafka.stall_timeout (0: off). `pid_known`: statistics are on, so the
    // producer ID can be known (statistics.interval.ms=0 set by the user turns the PID check off).
    producer_impl(asio::io_context& ioc, conf_ptr conf, std::chrono::milliseconds stall_window, bool pid_known)
        : ioc_(ioc), conf_(std::move(conf)), stall_window_(stall_window), pid_known_(pid_known) {}

    // Second phase of construction: needs the owning shared_ptr for the generations' weak link.
    bool start(const std::shared_ptr<producer_impl>& self, std::string& error) {
        self_ = self;
        auto g = new_generation(error);
        if (!g) return false;
        {
            std::lock_guard lk(mu_);
            current_ = g;
        }
        arm(g);
        metadata_thread_ = std::thread([this] { metadata_loop(); });
        return true;
    }

    ~producer_impl() override {
        {
            std::lock_guard lk(mu_);
            stopping_ = true;
            accepting_ = false;
        }
        cv_.notify_all();
        if (metadata_thread_.joinable()) metadata_thread_.join();
        // Whatever is left is purged so that every handler runs exactly once, then destroyed.
        for (auto& g : take_generations()) {
            if (g->destroyed) continue;
            drain(*g, steady::now() + 30s, /*collect=*/false);
            if (g->pending > 0) {
                proxy::log::error("kafka producer destroyed with unreported records", {{"records", g->pending.load()}});
            }
            g->destroy_handle();
        }
        std::vector<std::thread> threads;
        {
            std::lock_guard lk(mu_);
            threads.swap(destroyers_);
        }
        for (auto& t : threads) t.join();
    }

    proxy::produce_error produce(proxy::kafka_record& record, proxy::delivery_handler on_delivery) override {
        if (!config::valid_topic_name(record.topic)) return proxy::produce_error::invalid_topic;
        std::lock_guard lk(mu_);
        if (!accepting_ || !current_) return proxy::produce_error::not_ready;
        generation& g = *current_;
        auto msg = std::make_unique<pending_message>();
        msg->record = std::move(record);
        msg->handler = std::move(on_delivery);
        msg->bytes = msg->record.value.size() + (msg->record.key ? msg->record.key->size() : 0);

        rd_kafka_headers_t* headers = nullptr;
        if (!msg->record.headers.empty()) {
            headers = rd_kafka_headers_new(msg->record.headers.size());
            for (const auto& h : msg->record.headers) {
                rd_kafka_header_add(headers, h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                                    static_cast<ssize_t>(h.value.size()));
            }
        }
        const auto& key = msg->record.key;
        // One in flight counted before producev: the delivery report can in principle be served
        // on another thread before producev returns.
        g.pending.fetch_add(1, std::memory_order_acq_rel);
        g.stats->in_flight.fetch_add(1, std::memory_order_relaxed);
        g.stats->bytes.fetch_add(msg->bytes, std::memory_order_relaxed);
        const rd_kafka_resp_err_t err =
            rd_kafka_producev(g.rk, RD_KAFKA_V_TOPIC(msg->record.topic.c_str()),
                              RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA), RD_KAFKA_V_MSGFLAGS(0),
                              RD_KAFKA_V_VALUE((msg->record.tombstone ? nullptr : msg->record.value.data()),
                                               (msg->record.tombstone ? 0 : msg->record.value.size())),
                              RD_KAFKA_V_KEY((key ? key->data() : nullptr), (key ? key->size() : 0)),
                              RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(msg.get()), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            g.stats->bytes.fetch_sub(msg->bytes, std::memory_order_relaxed);
            g.stats->in_flight.fetch_sub(1, std::memory_order_relaxed);
            g.pending.fetch_sub(1, std::memory_order_acq_rel);
            if (headers != nullptr) rd_kafka_headers_destroy(headers);  // not taken on failure
            record = std::move(msg->record);                            // contract: unchanged
            const auto mapped = map_produce_error(err);
            if (mapped != proxy::produce_error::queue_full) {
                proxy::log::debug("kafka produce refused",
                                  {{"error", rd_kafka_err2name(err)}, {"topic", record.topic}});
            }
            return mapped;
        }
        msg.release();  // owned by librdkafka until on_delivery
        return proxy::produce_error::ok;
    }

    proxy::producer_stats stats() const override {
        proxy::producer_stats s;
        std::lock_guard lk(mu_);
        // current_ is never destroyed while it is current_ (mu_ is held here). A retiring
        // generation may be destroyed on its own thread at any moment (retire()): its handle is
        // read under its handle_mu, and skipped while the destroyer (or a metadata call) holds it
        // rather than block a scrape, and the io thread behind mu_, for the length of a destroy.
        if (current_ && current_->rk) s.queued_messages += static_cast<std::uint64_t>(rd_kafka_outq_len(current_->rk));
        for (const auto& g : retiring_) {
            std::unique_lock hl(g->handle_mu, std::try_to_lock);
            if (hl && !g->destroyed && g->rk) s.queued_messages += static_cast<std::uint64_t>(rd_kafka_outq_len(g->rk));
        }
        s.queued_bytes = counters_->bytes.load(std::memory_order_relaxed);
        s.in_flight_handlers = counters_->in_flight.load(std::memory_order_relaxed);
        s.fatal = fatal_;
        s.recreated_after_fatal = counters_->recreated_fatal.load(std::memory_order_relaxed);
        s.recreated_after_stall = counters_->recreated_stalled.load(std::memory_order_relaxed);
        return s;
    }

    bool ready() const override { return not_ready_reason().empty(); }

    std::string not_ready_reason() const override {
        if (fatal_flag_.load()) return "kafka producer is being re-created";
        if (!metadata_ok_.load()) return "kafka is not reachable (no cluster metadata)";
        if (pid_known_) {
            std::lock_guard lk(mu_);
            if (!current_ || !current_->pid_assigned.load()) return "kafka idempotent producer has no producer ID yet";
        }
        return {};
    }

    // Serves the queue from the calling thread (see header). After `timeout`, purges what is
    // left; the purged records' handlers run (not_persisted / possibly_persisted) before this
    // returns, and their correlation IDs are returned.
    std::vector<std::string> flush(std::chrono::milliseconds timeout) override {
        {
            std::lock_guard lk(mu_);
            accepting_ = false;
        }
        const auto deadline = steady::now() + timeout;
        std::vector<std::shared_ptr<generation>> gens;
        {
            std::lock_guard lk(mu_);
            if (current_) gens.push_back(current_);
            gens.insert(gens.end(), retiring_.begin(), retiring_.end());
        }
        for (auto& g : gens) {
            if (g->destroyed) continue;
            // rd_kafka_flush serves the main queue (our dr_msg_cb) from this thread.
            while (g->pending > 0 && steady::now() < deadline) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
                rd_kafka_flush(g->rk, static_cast<int>(std::clamp<std::int64_t>(left.count(), 1, 100)));
                g->serve(1 << 20);
            }
        }
        std::vector<std::string> undelivered;
        for (auto& g : gens) {
            if (g->destroyed) continue;
            drain(*g, steady::now() + 10s, /*collect=*/true);
            std::lock_guard lk(g->purged_mu);
            undelivered.insert(undelivered.end(), g->purged.begin(), g->purged.end());
            g->purged.clear();
        }
        return undelivered;
    }

    void inject_fatal_error_for_test() override {
        std::lock_guard lk(mu_);
        if (current_ && current_->rk) {
            rd_kafka_test_fatal_error(current_->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "test");
        }
    }

    // On g's strand (on_wake for a fatal error, on_stall for a stall), once per generation.
    void on_fatal(const std::shared_ptr<generation>& g) override {
        {
            std::lock_guard lk(mu_);
            if (current_ == g) current_.reset();
            retiring_.push_back(g);
            fatal_ = true;
            fatal_flag_ = true;
            metadata_ok_ = false;
        }
        g->retiring = true;
        rd_kafka_purge(g->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
        schedule_recreate();
    }

    // Posted by the probe thread onto g's strand when the stall detector gave a verdict: the same
    // retirement as a fatal error. The purge reports every record: never sent -> not persisted
    // (_PURGE_QUEUE), sent and unanswered -> possibly persisted (_PURGE_INFLIGHT).
    static void on_stall(std::shared_ptr<generation> g, stall_verdict verdict, std::chrono::milliseconds window) {
        if (g->fatal_handled || g->destroyed) return;
        auto owner = std::static_pointer_cast<producer_impl>(g->owner.lock());
        if (!owner) return;
        {
            std::lock_guard lk(owner->mu_);
            if (owner->current_ != g || owner->stopping_) return;
        }
        g->fatal_handled = true;
        g->stats->recreated_stalled.fetch_add(1, std::memory_order_relaxed);
        {
            std::lock_guard lk(owner->mu_);
            owner->last_retired_stalled_ = true;
        }
        proxy::log::error("kafka producer made no progress while the cluster answers; re-creating the producer",
                          {{"stall", to_string(verdict)},
                           {"stall_timeout_ms", window.count()},
                           {"pending_records", g->pending.load()},
                           {"producer_id_assigned", g->pid_assigned.load()}});
        owner->on_fatal(g);
        // Nothing pending: no report will wake the strand to retire the handle, so retire it now
        // (pending cannot grow: the generation is no longer current).
        if (g->pending == 0) retire(std::move(g));
    }

private:
    // Purges `g` and serves its queue on the calling thread until every handler ran.
    static void drain(generation& g, steady::time_point deadline, bool collect) {
        if (g.pending == 0) return;
        g.collect_purged = collect;
        rd_kafka_purge(g.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (g.pending > 0 && steady::now() < deadline) {
            rd_kafka_poll(g.rk, 50);
        }
        g.collect_purged = false;
    }

    std::shared_ptr<generation> new_generation(std::string& error) {
        conf_ptr conf(rd_kafka_conf_dup(conf_.get()));
        auto g = std::make_shared<generation>(ioc_, counters_);
        g->owner = std::static_pointer_cast<fatal_listener>(self_.lock());
        rd_kafka_conf_set_opaque(conf.get(), g.get());
        rd_kafka_conf_set_dr_msg_cb(conf.get(), &on_delivery);
        rd_kafka_conf_set_error_cb(conf.get(), &on_error);
        rd_kafka_conf_set_log_cb(conf.get(), &on_log);
        rd_kafka_conf_set_stats_cb(conf.get(), &on_stats);
        char errstr[512] = {};
        g->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
        if (g->rk == nullptr) {
            error = std::string("cannot create the kafka producer: ") + errstr;
            return nullptr;
        }
        conf.release();  // owned by rk now
        const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            error = std::string("eventfd: ") + std::strerror(errno);
            return nullptr;  // ~generation destroys rk
        }
        g->wake.assign(fd);
        g->main_queue = rd_kafka_queue_get_main(g->rk);
        static const std::uint64_t one = 1;  // eventfd requires 8-byte writes
        rd_kafka_queue_io_event_enable(g->main_queue, fd, &one, sizeof one);
        // librdkafka signals the fd only when the queue goes from empty to one event. Events
        // queued before the line above (a refused connection right after rd_kafka_new) would
        // never be signalled, and nothing queued after them either: wake the first serve
        // ourselves.
        [[maybe_unused]] const auto written = ::write(fd, &one, sizeof one);
        return g;
    }

    // The wake-up loop: one async_wait per generation at a time, completed on its strand, so one
    // thread serves it and a stall's retirement (on_stall, same strand) never runs alongside.
    static void arm(std::shared_ptr<generation> g) {
        auto& wake = g->wake;
        auto strand = g->strand;
        wake.async_wait(asio::posix::stream_descriptor::wait_read,
                        asio::bind_executor(strand, [g = std::move(g)](boost::system::error_code ec) mutable {
                            on_wake(std::move(g), ec);
                        }));
    }

    static void on_wake(std::shared_ptr<generation> g, boost::system::error_code ec) {
        if (ec || g->retired || g->destroyed) return;
        std::uint64_t count = 0;
        while (::read(g->wake.native_handle(), &count, sizeof count) > 0) {}
        // Bounded so a flood of reports cannot starve the io_context; the rest is re-posted
        // because librdkafka only re-signals the fd after the queue was served empty.
        const bool drained = g->serve(1024);
        if (g->fatal && !g->fatal_handled) {
            g->fatal_handled = true;
            g->stats->recreated_fatal.fetch_add(1, std::memory_order_relaxed);
            if (auto owner = std::static_pointer_cast<producer_impl>(g->owner.lock())) {
                {
                    std::lock_guard lk(owner->mu_);
                    owner->last_retired_stalled_ = false;
                }
                owner->on_fatal(g);
            } else {
                rd_kafka_purge(g->rk,
                               RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
            }
        }
        if (g->retiring && g->pending == 0) {
            retire(std::move(g));
            return;
        }
        if (!drained) {
            auto strand = g->strand;
            asio::post(strand, [g = std::move(g)]() mutable { on_wake(std::move(g), {}); });
            return;
        }
        arm(std::move(g));
    }

    // All handlers of a fatal generation ran: destroy its handle off the io_context (it may
    // block while librdkafka's threads stop). The fd is closed only after rd_kafka_destroy,
    // since librdkafka may still write to it until then.
    static void retire(std::shared_ptr<generation> g) {
        // release() completes an outstanding async_wait with operation_aborted (on_wake ignores it,
        // as it ignores a re-posted serve that was queued on the strand before this ran).
        g->retired = true;
        const int fd = g->wake.release();
        auto owner = std::static_pointer_cast<producer_impl>(g->owner.lock());
        std::thread t([g, fd] {
            g->destroy_handle();
            ::close(fd);
            proxy::log::info("retired kafka producer handle destroyed");
        });
        if (owner) {
            std::lock_guard lk(owner->mu_);
            std::erase(owner->retiring_, g);
            owner->destroyers_.push_back(std::move(t));
        } else {
            t.detach();  // producer already gone; the thread owns everything it touches
        }
    }

    void schedule_recreate() {
        const auto now = steady::now();
        if (now - last_fatal_ > 60s) backoff_ = 250ms;
        last_fatal_ = now;
        auto timer = std::make_shared<asio::steady_timer>(ioc_, backoff_);
        backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, 30s);
        timer->async_wait([timer, weak = self_](boost::system::error_code ec) {
            if (ec) return;
            if (auto self = weak.lock()) self->recreate();
        });
    }

    // On the io_context: rd_kafka_new does not block on the network.
    void recreate() {
        std::string error;
        auto g = new_generation(error);
        if (!g) {
            proxy::log::error("kafka producer re-creation failed; retrying", {{"error", error}});
            schedule_recreate();
            return;
        }
        bool after_stall = false;
        {
            std::lock_guard lk(mu_);
            if (stopping_) return;  // ~generation destroys the handle
            current_ = g;
            fatal_ = false;
            fatal_flag_ = false;
            after_stall = last_retired_stalled_;
        }
        arm(g);
        cv_.notify_all();  // fetch metadata for the new handle now
        proxy::log::info(after_stall ? "kafka producer re-created after a stall"
                                     : "kafka producer re-created after fatal error");
    }

    std::vector<std::shared_ptr<generation>> take_generations() {
        std::lock_guard lk(mu_);
        std::vector<std::shared_ptr<generation>> gens;
        if (current_) gens.push_back(std::move(current_));
        gens.insert(gens.end(), retiring_.begin(), retiring_.end());
        retiring_.clear();
        return gens;
    }

    // Not the hot path: readiness only. Holds the generation's handle_mu so the handle cannot be
    // destroyed under rd_kafka_metadata.
    // Also the stall probe: each round feeds the detector what the current generation did.
    void metadata_loop() {
        stall_detector detector(stall_window_);
        std::shared_ptr<generation> observed;
        std::unique_lock lk(mu_);
        while (!stopping_) {
            auto g = current_;
            if (g != observed) {
                detector.reset();
                observed = g;
            }
            lk.unlock();
            bool ok = false;
            if (g) {
                std::lock_guard hl(g->handle_mu);
                if (g->rk != nullptr && !g->destroyed) {
                    const rd_kafka_metadata_t* md = nullptr;
                    ok = rd_kafka_metadata(g->rk, 0, nullptr, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR;
                    if (md != nullptr) rd_kafka_metadata_destroy(md);
                }
            }
            if (g) {
                const stall_observation o{
                    .pending = static_cast<std::uint64_t>(std::max<std::int64_t>(g->pending.load(), 0)),
                    .persisted = g->persisted.load(),
                    .reachable = ok,
                    .pid_assigned = !pid_known_ || g->pid_assigned.load()};
                const auto verdict = detector.observe(steady::now(), o);
                if (verdict != stall_verdict::progressing) {
                    detector.reset();
                    auto strand = g->strand;
                    asio::post(strand, [g, verdict, w = stall_window_] { on_stall(g, verdict, w); });
                }
            }
            lk.lock();
            const bool still_current = g && g == current_;
            if (metadata_ok_.exchange(ok && still_current) != (ok && still_current)) {
                proxy::log::info("kafka reachability changed", {{"reachable", ok && still_current}});
            }
            // A new generation wakes us early (cv_) so ready() turns true quickly.
            cv_.wait_for(lk, ok ? 2s : 500ms, [&] { return stopping_ || current_ != g; });
        }
    }

    asio::io_context& ioc_;
    conf_ptr conf_;  // template for every generation
    const std::chrono::milliseconds stall_window_;
    const bool pid_known_;
    std::shared_ptr<counters> counters_ = std::make_shared<counters>();
    std::weak_ptr<producer_impl> self_;

    mutable std::mutex mu_;  // guards everything below
    std::condition_variable cv_;
    std::shared_ptr<generation> current_;  // nullptr while re-creating
    std::vector<std::shared_ptr<generation>> retiring_;
    std::vector<std::thread> destroyers_;
    bool accepting_ = true;
    bool stopping_ = false;
    bool fatal_ = false;
    bool last_retired_stalled_ = false;  // what the next re-creation follows (for its log line)
    std::atomic<bool> fatal_flag_{false};
    std::atomic<bool> metadata_ok_{false};
    std::thread metadata_thread_;

    // io_context only.
    std::chrono::milliseconds backoff_{250};
    steady::time_point last_fatal_{};
};

}  // namespace

std::shared_ptr<proxy::producer> make_producer(boost::asio::io_context& ioc, const config::kafka_config& cfg,
                                               const std::string& bootstrap_servers, std::string& error_out) {
    conf_ptr conf = build_conf(cfg, bootstrap_servers, error_out);
    if (!conf) return nullptr;
    // statistics.interval.ms=0 (set by the user) leaves the producer ID unknown: no PID check.
    const auto stats_prop = cfg.properties.find("statistics.interval.ms");
    const bool pid_known = stats_prop == cfg.properties.end() || stats_prop->second != "0";
    auto p = std::make_shared<producer_impl>(ioc, std::move(conf), cfg.stall_timeout, pid_known);
    if (!p->start(p, error_out)) return nullptr;
    proxy::log::info("kafka producer started",
                     {{"bootstrap_servers", bootstrap_servers}, {"librdkafka", rd_kafka_version_str()}});
    return p;
}

}  // namespace handoff::adapters::kafka
