// The producer's librdkafka callbacks, served by rd_kafka_poll on whichever thread serves the
// main queue. None of them throws.
#include "producer_internal.hpp"

#include <handoff/common/log.hpp>

#include <nlohmann/json.hpp>

#include <exception>
#include <string_view>

namespace handoff::adapters::kafka::producer_detail {

proxy::produce_error map_produce_error(rd_kafka_resp_err_t err) noexcept {
    switch (err) {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL: return proxy::produce_error::queue_full;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE: return proxy::produce_error::message_too_large;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return proxy::produce_error::unknown_topic;
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR__INVALID_ARG: return proxy::produce_error::invalid_topic;
        default: return proxy::produce_error::not_ready;  // __FATAL, __STATE, anything else
    }
}

// The only place a librdkafka outcome becomes a delivery status. `persisted` requires both
// no error and librdkafka's PERSISTED status.
proxy::delivery_report make_report(const rd_kafka_message_t* m) noexcept {
    proxy::delivery_report r;
    const rd_kafka_msg_status_t status = rd_kafka_message_status(m);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && status == RD_KAFKA_MSG_STATUS_PERSISTED) {
        r.status = proxy::delivery_status::persisted;
        r.partition = m->partition;
        r.offset = m->offset;
        return r;
    }
    r.status = status == RD_KAFKA_MSG_STATUS_NOT_PERSISTED ? proxy::delivery_status::not_persisted
                                                           : proxy::delivery_status::possibly_persisted;
    r.partition = m->partition;
    try {
        r.error = m->err ? rd_kafka_err2name(m->err) : "not_persisted";
    } catch (...) {}
    return r;
}

// dr_msg_cb: runs inside rd_kafka_poll, i.e. on the io_context thread serving the wake-up fd
// (or the shutdown thread in flush/destructor). Never throws.
void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    auto* g = static_cast<generation*>(opaque);
    std::unique_ptr<pending_message> msg(static_cast<pending_message*>(m->_private));
    if (!msg) return;
    try {
        if (g->collect_purged.load(std::memory_order_relaxed) &&
            (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
            std::lock_guard lk(g->purged_mu);
            g->purged.push_back(msg->record.correlation_id);
        }
    } catch (...) {}
    const proxy::delivery_report report = make_report(m);
    if (report.status == proxy::delivery_status::persisted) g->persisted.fetch_add(1, std::memory_order_relaxed);
    g->stats->bytes.fetch_sub(msg->bytes, std::memory_order_relaxed);
    try {
        if (msg->handler) msg->handler(report);
    } catch (const std::exception& e) {
        proxy::log::error("delivery handler threw", {{"error", e.what()}});
    } catch (...) {
        proxy::log::error("delivery handler threw", {{"error", "unknown exception"}});
    }
    msg.reset();
    g->stats->in_flight.fetch_sub(1, std::memory_order_relaxed);
    g->pending.fetch_sub(1, std::memory_order_acq_rel);
}

namespace {

// Repeats of one transient client error are logged once per interval (log::throttle).
proxy::log::throttle client_errors{std::chrono::seconds(10)};

}  // namespace

// error_cb: served by rd_kafka_poll like delivery reports. Only records the fatal state; the
// wake-up handler acts on it after the poll loop (purge and re-creation must not run inside a
// librdkafka callback).
void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) noexcept {
    auto* g = static_cast<generation*>(opaque);
    try {
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            char buf[512] = {};
            rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
            proxy::log::error("kafka producer fatal error; re-creating the producer",
                              {{"error", rd_kafka_err2name(orig)}, {"reason", buf}});
            g->fatal = true;
            return;
        }
        // Transient errors (broker down, all brokers down, ...) are retried by librdkafka, which
        // reports them again on every attempt: one line per error code per 10 s, with a count.
        std::uint64_t held_back = 0;
        if (!proxy::log::enabled(proxy::log::level::warn) || !client_errors.admit(err, held_back)) return;
        nlohmann::json fields = {{"error", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))},
                                 {"reason", reason ? reason : ""}};
        if (held_back > 0) fields["repeated"] = held_back;
        proxy::log::warn("kafka client error", std::move(fields));
    } catch (...) {}
}

// stats_cb: served by rd_kafka_poll like delivery reports (statistics.interval.ms). Only the
// idempotent producer's state is read: "Assigned" means it has its producer ID, the condition for
// readiness and for anything to be accepted by a broker. The "eos" object comes after "topics"
// in librdkafka's output (a topic may be named "eos"), so the last match is the right one.
int on_stats(rd_kafka_t*, char* json, size_t len, void* opaque) noexcept {
    auto* g = static_cast<generation*>(opaque);
    try {
        const std::string_view s(json, len);
        const auto key = s.rfind("\"eos\"");
        if (key == std::string_view::npos) return 0;
        const auto open = s.find('{', key);
        const auto close = open == std::string_view::npos ? open : s.find('}', open);
        if (close == std::string_view::npos) return 0;
        const auto eos = nlohmann::json::parse(s.substr(open, close - open + 1));
        const bool assigned =
            eos.value("idemp_state", std::string()) == "Assigned" && eos.value("producer_id", -1) >= 0;
        if (g->pid_assigned.exchange(assigned) != assigned) {
            proxy::log::info("kafka idempotent producer state",
                             {{"idemp_state", eos.value("idemp_state", std::string())},
                              {"producer_id", eos.value("producer_id", -1)},
                              {"producer_epoch", eos.value("producer_epoch", -1)}});
        }
    } catch (...) {}
    return 0;  // librdkafka frees `json`
}

// log_cb: librdkafka's own log lines as JSON (called from librdkafka threads; log is thread-safe).
void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept {
    try {
        // librdkafka logs broker connection failures at LOG_ERR (3); they are transient and
        // retried, so they are warnings here. Fatal errors are logged by on_error.
        const auto l = level <= 2   ? proxy::log::level::error
                       : level <= 4 ? proxy::log::level::warn
                       : level <= 6 ? proxy::log::level::info
                                    : proxy::log::level::debug;
        if (!proxy::log::enabled(l)) return;
        proxy::log::write(l, "librdkafka", {{"facility", fac ? fac : ""}, {"detail", buf ? buf : ""}});
    } catch (...) {}
}

}  // namespace handoff::adapters::kafka::producer_detail
