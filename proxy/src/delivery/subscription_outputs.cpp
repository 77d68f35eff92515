// A subscription's outputs other than the HTTP delivery: dead-letter records and replies.
#include "handoff/proxy/delivery/subscription.hpp"

#include "delivery/subscription_job.hpp"
#include "handoff/common/log.hpp"

#include <boost/asio/post.hpp>

#include <utility>

namespace handoff::proxy {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// ---- dead letters and replies ------------------------------------------------------------------

void subscription::dead_letter(const job_ptr& j, std::string reason) {
    j->dead_letter_reason = std::move(reason);
    if (cfg_.dead_letter_topic.empty()) {
        // No dead-letter topic: the record keeps being retried at the cap, holding its key.
        log::error("record cannot be delivered and there is no dead_letter_topic; retrying",
                   {{"subscription", cfg_.name},
                    {"topic", j->tp.topic},
                    {"partition", j->tp.partition},
                    {"offset", j->record.offset},
                    {"reason", j->dead_letter_reason}});
        counters_.retries.fetch_add(1, std::memory_order_relaxed);
        schedule(j, std::max(cfg_.retry.backoff_cap, cfg_.retry.backoff_base), &subscription::retry_now);
        return;
    }
    write_dead_letter(j);
}

produce_error subscription::produce_output(const job_ptr& j, kafka_record& rec,
                                           void (subscription::*on_report)(const job_ptr&, const delivery_report&)) {
    j->active = true;
    counters_.in_flight.fetch_add(1);
    const auto err = producer_->produce(
        rec, [this, j, on_report, ex = strand_, alive = std::weak_ptr<int>(alive_)](const delivery_report& rep) {
            asio::post(ex, [this, j, on_report, rep, alive] {
                if (!alive.lock()) return;
                j->active = false;
                struct release {
                    subscription_counters& c;
                    ~release() { c.in_flight.fetch_sub(1); }
                } guard{counters_};
                if (j->done || !state_of(*j)) return;
                (this->*on_report)(j, rep);
            });
        });
    if (err != produce_error::ok) {
        j->active = false;
        counters_.in_flight.fetch_sub(1);
    }
    return err;
}

void subscription::write_dead_letter(const job_ptr& j) {
    auto rec = make_dead_letter(j->record, cfg_.dead_letter_topic, j->attempts, j->last_status, j->dead_letter_reason);
    if (const auto err = produce_output(j, rec, &subscription::on_dead_letter_report); err != produce_error::ok) {
        counters_.dead_letter_failures.fetch_add(1, std::memory_order_relaxed);
        log::error("dead-letter write refused; retrying", {{"subscription", cfg_.name}, {"error", to_string(err)}});
        schedule(j, backoff(cfg_.retry, ++j->dead_letter_writes, random()), &subscription::write_dead_letter);
    }
}

void subscription::on_dead_letter_report(const job_ptr& j, const delivery_report& rep) {
    if (rep.status == delivery_status::persisted) {
        counters_.dead_lettered.fetch_add(1, std::memory_order_relaxed);
        log::warn("record dead-lettered", {{"subscription", cfg_.name},
                                           {"topic", j->tp.topic},
                                           {"partition", j->tp.partition},
                                           {"offset", j->record.offset},
                                           {"dead_letter_topic", cfg_.dead_letter_topic},
                                           {"attempts", j->attempts},
                                           {"reason", j->dead_letter_reason}});
        resolve(j);
        return;
    }
    counters_.dead_letter_failures.fetch_add(1, std::memory_order_relaxed);
    log::error("dead-letter write failed; the source offset stays unstored and the write is retried",
               {{"subscription", cfg_.name}, {"offset", j->record.offset}, {"error", rep.error}});
    if (stopping_) {
        abandon(j);
        return;
    }
    schedule(j, backoff(cfg_.retry, ++j->dead_letter_writes, random()), &subscription::write_dead_letter);
}

// The service's last answer was final and not a success (a 4xx, or a 5xx once retries are
// exhausted). A caller waiting on a reply topic gets that answer as its reply; then the record is
// dead-lettered as before. With no dead-letter topic the record is resolved once the reply is
// persisted (its caller has the answer; delivering it again would not change it); without a reply
// topic nothing changes: dead-lettered, or retried at the cap when there is no dead-letter topic.
void subscription::final_answer(const job_ptr& j, http::response<http::string_body> response, std::string reason) {
    if (reply_topic_for(cfg_, j->record).empty()) {
        dead_letter(j, std::move(reason));
        return;
    }
    j->response = std::move(response);
    j->dead_letter_reason = std::move(reason);
    j->dead_letter_after_reply = true;
    write_reply(j);
}

void subscription::after_reply(const job_ptr& j) {
    if (!j->dead_letter_after_reply) {
        resolve(j);
    } else if (cfg_.dead_letter_topic.empty()) {
        log::warn("final non-2xx answer replied; no dead_letter_topic", {{"subscription", cfg_.name},
                                                                         {"topic", j->tp.topic},
                                                                         {"partition", j->tp.partition},
                                                                         {"offset", j->record.offset},
                                                                         {"reason", j->dead_letter_reason}});
        resolve(j);
    } else {
        write_dead_letter(j);
    }
}

void subscription::write_reply(const job_ptr& j) {
    auto rec = make_reply(cfg_, j->record, j->response, options_.new_id(), std::chrono::system_clock::now());
    if (produce_output(j, rec, &subscription::on_reply_report) != produce_error::ok) {
        counters_.reply_failures.fetch_add(1, std::memory_order_relaxed);
        if (stopping_) {
            abandon(j);
            return;
        }
        reply_failed(j, "not accepted by the producer");
    }
}

void subscription::on_reply_report(const job_ptr& j, const delivery_report& rep) {
    if (rep.status == delivery_status::persisted) {
        counters_.replies.fetch_add(1, std::memory_order_relaxed);
        after_reply(j);
        return;
    }
    counters_.reply_failures.fetch_add(1, std::memory_order_relaxed);
    log::error("reply write failed; retrying", {{"subscription", cfg_.name}, {"error", rep.error}});
    if (stopping_) {
        abandon(j);
        return;
    }
    reply_failed(j, rep.error);
}

// A reply that cannot be written (its topic gone, not authorised) must not hold the partition
// forever: retry.attempts writes, then the source record is dead-lettered with the reason.
void subscription::reply_failed(const job_ptr& j, const std::string& error) {
    if (++j->reply_writes >= cfg_.retry.attempts) {
        j->dead_letter_after_reply = false;
        dead_letter(j, "the reply could not be written to " + reply_topic_for(cfg_, j->record) + " after " +
                           std::to_string(j->reply_writes) + " attempts: " + error);
        return;
    }
    schedule(j, backoff(cfg_.retry, j->reply_writes, random()), &subscription::write_reply);
}

}  // namespace handoff::proxy
