#include "handoff/proxy/delivery/subscription.hpp"

#include "delivery/subscription_job.hpp"

#include "handoff/common/ids.hpp"
#include "handoff/common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <exception>
#include <utility>

namespace handoff::proxy {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

nlohmann::json names(const std::vector<topic_partition>& parts) {
    auto out = nlohmann::json::array();
    for (const auto& p : parts) out.push_back(p.topic + "/" + std::to_string(p.partition));
    return out;
}

}  // namespace

subscription::subscription(asio::any_io_executor strand, config::subscription cfg, config::upstream_config upstream,
                           std::shared_ptr<consumer> consumer, std::shared_ptr<upstream_client> client,
                           std::shared_ptr<producer> producer, subscription_options options)
    : strand_(std::move(strand)),
      cfg_(std::move(cfg)),
      upstream_(std::move(upstream)),
      consumer_(std::move(consumer)),
      client_(std::move(client)),
      producer_(std::move(producer)),
      options_(std::move(options)),
      rng_(std::random_device{}()) {
    if (!options_.new_id) options_.new_id = [] { return make_uuid_v7(); };
}

subscription::~subscription() = default;

double subscription::random() {
    if (options_.random) return options_.random();
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void subscription::start() {
    asio::post(strand_, [this] {
        if (started_) return;
        started_ = true;
        consumer_->start(*this);
        log::info("subscription started",
                  {{"subscription", cfg_.name}, {"topics", cfg_.topics}, {"group", cfg_.group}});
    });
}

void subscription::begin_stop() {
    stopping_ = true;
    asio::post(strand_, [this] {
        std::size_t dropped = 0;
        for (auto& [tp, s] : partitions_) {
            for (auto& [offset, j] : s->jobs) {
                if (j->done || j->active) continue;
                abandon(j);
                ++dropped;
            }
            update_pause(tp, *s);
        }
        ready_.clear();
        parked_.clear();
        log::info(
            "subscription stopping",
            {{"subscription", cfg_.name}, {"in_flight", counters_.in_flight.load()}, {"abandoned_unstarted", dropped}});
    });
}

void subscription::close() {
    consumer_->close();
    log::info("subscription closed", {{"subscription", cfg_.name},
                                      {"delivered", counters_.delivered.load()},
                                      {"dead_lettered", counters_.dead_lettered.load()},
                                      {"abandoned", counters_.abandoned.load()},
                                      {"offsets_stored", counters_.offsets_stored.load()}});
}

subscription::partition_state* subscription::state_of(const job& j) {
    const auto it = partitions_.find(j.tp);
    if (it == partitions_.end() || it->second->epoch != j.epoch) return nullptr;
    return it->second.get();
}

// ---- consumer callbacks ---------------------------------------------------------------------

void subscription::on_assigned(const std::vector<topic_partition>& parts) {
    for (const auto& tp : parts) {
        auto s = std::make_unique<partition_state>();
        s->epoch = next_epoch_++;
        auto& ref = *s;
        partitions_[tp] = std::move(s);
        update_pause(tp, ref);
    }
    const auto n = counters_.assignments.fetch_add(1) + 1;
    log::info("subscription partitions assigned", {{"subscription", cfg_.name},
                                                   {"partitions", names(parts)},
                                                   {"assigned_total", partitions_.size()},
                                                   {"member_id", consumer_->member_id()},
                                                   {"assignments", n}});
}

void subscription::on_revoked(const std::vector<topic_partition>& parts, bool lost) {
    std::size_t dropped = 0;
    for (const auto& tp : parts) {
        const auto it = partitions_.find(tp);
        if (it == partitions_.end()) continue;
        auto& s = *it->second;
        for (auto& [offset, j] : s.jobs) {
            if (j->done) continue;
            // In-flight work is abandoned, never stored: its completion finds no partition state.
            abandon(j);
            ++dropped;
        }
        if (s.paused) consumer_->resume({tp});  // we paused it; leave it clean for a re-assignment
        partitions_.erase(it);
    }
    log::info("subscription partitions revoked", {{"subscription", cfg_.name},
                                                  {"partitions", names(parts)},
                                                  {"lost", lost},
                                                  {"abandoned", dropped},
                                                  {"member_id", consumer_->member_id()}});
    pump();
}

void subscription::on_record(consumed_record record) {
    counters_.received.fetch_add(1, std::memory_order_relaxed);
    topic_partition tp{record.topic, record.partition};
    const auto it = partitions_.find(tp);
    if (it == partitions_.end() || stopping_) return;  // not stored: it will be consumed again
    auto& s = *it->second;
    auto j = std::make_shared<job>();
    j->tp = std::move(tp);
    j->epoch = s.epoch;
    switch (cfg_.ordering) {
        case config::ordering::key: j->order_key = record.key; break;
        case config::ordering::partition: j->order_key = std::string(); break;
        case config::ordering::none: break;
    }
    j->record = std::move(record);
    s.offsets.add(j->record.offset);
    s.jobs[j->record.offset] = j;
    counters_.buffered.fetch_add(1, std::memory_order_relaxed);
    if (j->order_key) {
        auto& q = s.keys[*j->order_key];
        q.push_back(j);
        if (q.size() == 1) ready_.push_back(j);
    } else {
        ready_.push_back(j);
    }
    update_pause(j->tp, s);
    pump();
}

// ---- scheduling -----------------------------------------------------------------------------

void subscription::update_pause(const topic_partition& tp, partition_state& s) {
    const std::size_t n = s.jobs.size();
    const bool full = n >= options_.partition_buffer || (s.paused && n > options_.partition_buffer / 2);
    const bool want = stopping_ || circuit_open_ || full;
    if (want == s.paused) return;
    s.paused = want;
    if (want) {
        consumer_->pause({tp});
    } else {
        consumer_->resume({tp});
    }
}

void subscription::pump() {
    if (stopping_ || circuit_open_) return;
    while (http_in_flight_ < cfg_.concurrency && !ready_.empty()) {
        auto j = std::move(ready_.front());
        ready_.pop_front();
        if (j->done || j->active || !state_of(*j)) continue;
        start_attempt(std::move(j));
    }
}

void subscription::start_attempt(job_ptr j) {
    j->active = true;
    ++http_in_flight_;
    counters_.in_flight.fetch_add(1);
    counters_.attempts.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(strand_, attempt(std::move(j)), [](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log::error("subscription delivery failed unexpectedly", {{"error", ex.what()}});
        } catch (...) {
            log::error("subscription delivery failed unexpectedly", {{"error", "unknown"}});
        }
    });
}

asio::awaitable<void> subscription::attempt(job_ptr j) {
    auto built = build_delivery_request(cfg_, upstream_, j->record);
    if (built.dropped_headers) counters_.dropped_headers.fetch_add(built.dropped_headers, std::memory_order_relaxed);
    if (built.request) {
        if (auto why = reply_topic_problem(cfg_, j->record)) {
            built.request.reset();
            built.problem = *why;
        }
    }
    upstream_result result;
    if (!built.request) {
        --http_in_flight_;
        j->active = false;
        j->last_error = built.problem;
        if (state_of(*j) && !j->done && !stopping_)
            dead_letter(j, "invalid target: " + built.problem);
        else if (!j->done)
            abandon(j);
        counters_.in_flight.fetch_sub(1);
        pump();
        co_return;
    }
    try {
        result = co_await client_->send(std::move(*built.request), cfg_.timeout, response_fields::parsed);
    } catch (const std::exception& e) {
        result = upstream_result{};
        result.error = upstream_error::bad_response;
        log::error("upstream client threw", {{"subscription", cfg_.name}, {"error", e.what()}});
    }
    on_attempt(j, std::move(result));
}

void subscription::on_attempt(const job_ptr& j, upstream_result r) {
    --http_in_flight_;
    j->active = false;
    // in_flight is decremented last, so that `idle()` never sees a gap before a reply write.
    struct release {
        subscription_counters& c;
        ~release() { c.in_flight.fetch_sub(1); }
    } release_guard{counters_};

    if (j->done || !state_of(*j)) {
        pump();
        return;
    }
    const int status = r.error == upstream_error::ok ? r.response.result_int() : 0;
    const verdict v = classify(r.error, status);
    j->last_status = status;
    j->last_error = r.error == upstream_error::ok ? "HTTP " + std::to_string(status) : to_string(r.error);
    if (v != verdict::connection) {
        consecutive_connection_failures_ = 0;
        if (circuit_open_) close_circuit();
    }
    log::debug("subscription attempt", {{"subscription", cfg_.name},
                                        {"topic", j->tp.topic},
                                        {"partition", j->tp.partition},
                                        {"offset", j->record.offset},
                                        {"verdict", to_string(v)},
                                        {"status", status},
                                        {"error", j->last_error}});
    if (v == verdict::done) {
        ++j->attempts;
        counters_.delivered.fetch_add(1, std::memory_order_relaxed);
        if (!reply_topic_for(cfg_, j->record).empty()) {
            j->response = std::move(r.response);
            write_reply(j);
        } else {
            resolve(j);
        }
        pump();
        return;
    }
    if (stopping_) {  // never retried or dead-lettered because of shutdown
        abandon(j);
        return;
    }
    switch (v) {
        case verdict::connection: {
            counters_.connection_failures.fetch_add(1, std::memory_order_relaxed);
            ++j->connection_failures;
            if (++consecutive_connection_failures_ >= options_.circuit_threshold && !circuit_open_) open_circuit();
            if (circuit_open_) {
                parked_.push_back(j);
                probe();
            } else {
                schedule(j, backoff(cfg_.retry, j->connection_failures, random()), &subscription::retry_now);
            }
            break;
        }
        case verdict::retry: {
            ++j->attempts;
            if (j->attempts >= cfg_.retry.attempts) {
                auto reason = "retries exhausted after " + std::to_string(j->attempts) + " attempts: " + j->last_error;
                if (r.error == upstream_error::ok) {
                    final_answer(j, std::move(r.response), std::move(reason));
                } else {
                    dead_letter(j, std::move(reason));
                }
                break;
            }
            std::optional<milliseconds> retry_after;
            if (r.error == upstream_error::ok) {
                if (auto it = r.response.find(http::field::retry_after); it != r.response.end()) {
                    retry_after = parse_retry_after(it->value(), std::chrono::system_clock::now());
                }
            }
            counters_.retries.fetch_add(1, std::memory_order_relaxed);
            schedule(j, retry_delay(cfg_.retry, j->attempts, random(), retry_after), &subscription::retry_now);
            break;
        }
        case verdict::dead_letter:
            ++j->attempts;
            final_answer(j, std::move(r.response), "HTTP status " + std::to_string(status) + " is not retried");
            break;
        case verdict::done: break;
    }
    pump();
}

void subscription::schedule(const job_ptr& j, milliseconds delay, void (subscription::*then)(const job_ptr&)) {
    j->timer = std::make_shared<asio::steady_timer>(strand_, delay);
    j->timer->async_wait([this, j, then, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (ec || !alive.lock()) return;
        j->timer.reset();
        if (j->done) return;
        if (stopping_ || !state_of(*j)) {
            abandon(j);
            return;
        }
        (this->*then)(j);
    });
}

void subscription::retry_now(const job_ptr& j) {
    if (circuit_open_) {
        parked_.push_back(j);
        probe();
        return;
    }
    ready_.push_front(j);
    pump();
}

// ---- circuit breaker --------------------------------------------------------------------------

void subscription::open_circuit() {
    circuit_open_ = true;
    counters_.circuit_opened.fetch_add(1, std::memory_order_relaxed);
    log::warn("local service unreachable: pausing the subscription (circuit open)",
              {{"subscription", cfg_.name},
               {"consecutive_connection_failures", consecutive_connection_failures_},
               {"probe_interval_ms", options_.probe_interval.count()}});
    for (auto& [tp, s] : partitions_) update_pause(tp, *s);
}

void subscription::close_circuit() {
    circuit_open_ = false;
    consecutive_connection_failures_ = 0;
    log::info("local service reachable again: resuming the subscription (circuit closed)",
              {{"subscription", cfg_.name}});
    // Parked records go first, in the order they failed.
    for (auto it = parked_.rbegin(); it != parked_.rend(); ++it) ready_.push_front(*it);
    parked_.clear();
    for (auto& [tp, s] : partitions_) update_pause(tp, *s);
}

// Schedules one probe attempt after probe_interval (at most one pending).
void subscription::probe() {
    if (probe_scheduled_) return;
    probe_scheduled_ = true;
    auto timer = std::make_shared<asio::steady_timer>(strand_, options_.probe_interval);
    timer->async_wait([this, timer, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (ec || !alive.lock()) return;
        probe_scheduled_ = false;
        if (!circuit_open_ || stopping_) return;
        job_ptr j;
        while (!parked_.empty() && !j) {
            auto c = std::move(parked_.front());
            parked_.pop_front();
            if (!c->done && state_of(*c)) j = std::move(c);
        }
        while (ready_.size() && !j) {
            auto c = std::move(ready_.front());
            ready_.pop_front();
            if (!c->done && !c->active && state_of(*c)) j = std::move(c);
        }
        if (!j) {
            close_circuit();  // nothing left to try: let new records decide
            pump();
            return;
        }
        start_attempt(std::move(j));
    });
}

// ---- resolution -------------------------------------------------------------------------------

void subscription::resolve(const job_ptr& j) {
    auto* s = state_of(*j);
    if (j->done || !s) return;
    j->done = true;
    counters_.buffered.fetch_sub(1, std::memory_order_relaxed);
    if (const auto next = s->offsets.resolve(j->record.offset)) {
        switch (consumer_->store_offset(j->tp, *next)) {
            case store_result::ok: counters_.offsets_stored.fetch_add(1, std::memory_order_relaxed); break;
            case store_result::not_assigned:
                log::debug("offset not stored: partition no longer assigned",
                           {{"subscription", cfg_.name}, {"topic", j->tp.topic}, {"partition", j->tp.partition}});
                break;
            case store_result::failed:
                log::warn("offset store failed", {{"subscription", cfg_.name},
                                                  {"topic", j->tp.topic},
                                                  {"partition", j->tp.partition},
                                                  {"offset", *next}});
                break;
        }
    }
    s->jobs.erase(j->record.offset);
    if (j->order_key) {
        const auto it = s->keys.find(*j->order_key);
        if (it != s->keys.end()) {
            auto& q = it->second;
            if (!q.empty() && q.front() == j) q.pop_front();
            if (q.empty()) {
                s->keys.erase(it);
            } else {
                ready_.push_back(q.front());
            }
        }
    }
    update_pause(j->tp, *s);
    pump();
}

void subscription::abandon(const job_ptr& j) {
    if (j->done) return;
    j->done = true;
    if (j->timer) j->timer->cancel();
    counters_.abandoned.fetch_add(1, std::memory_order_relaxed);
    counters_.buffered.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace handoff::proxy
