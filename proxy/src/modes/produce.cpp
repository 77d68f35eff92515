// The modes that publish the request as a record: event (202 once the producer holds it), commit
// (held until the broker's delivery report) and reply (held until the reply record arrives). Also
// what they share: the produce_context each delivery report reaches, and hold_slot, the bound on
// held requests.
#include "server/front.hpp"

#include "handoff/common/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

namespace handoff::proxy::front {

const char* record_delivery(status_store& statuses, const metrics::topic_instruments& counters,
                            const std::string& request_id, const std::string& route_name, const std::string& topic,
                            const delivery_report& r) {
    request_status s{request_status::state::persisted, route_name, topic, r.partition, r.offset, {}, {}};
    const char* outcome = "persisted";
    prometheus::Counter* counter = counters.persisted;
    if (r.status == delivery_status::not_persisted) {
        s.current = request_status::state::failed;
        s.reason = r.error;
        outcome = "not_persisted";
        counter = counters.not_persisted;
    } else if (r.status == delivery_status::possibly_persisted) {
        s.current = request_status::state::unknown;
        s.reason = "possibly persisted: " + r.error;
        outcome = "possibly_persisted";
        counter = counters.possibly_persisted;
    }
    statuses.put(request_id, std::move(s));
    counter->Increment();
    return outcome;
}

namespace {

// The status a route answers in `mode` (its own success_status, or the canary mode's default).
int success_status(const config::route& route, config::mode mode) {
    if (mode == route.mode && route.success_status > 0) return route.success_status;
    return mode == config::mode::event ? 202 : 200;
}

// Waits for one delivery report on the session's strand, bounded by the route timeout. The state
// is shared with the delivery handler, so a report that arrives after the caller has gone (or
// after the deadline) touches only this object, never the session.
struct delivery_wait {
    explicit delivery_wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::optional<delivery_report> report;
    bool waiting = true;  // false once the session stopped waiting (answered or timed out)
};

// A request held for Kafka (commit: the delivery report; reply: the reply). Their number is
// bounded by limits.max_inflight_commits: beyond it, 503 at once (nothing produced).
class hold_slot {
public:
    static std::unique_ptr<hold_slot> take(server::state& st, const config::config& cfg) {
        if (st.inflight_commits.fetch_add(1) >= cfg.limits.max_inflight_commits) {
            st.inflight_commits.fetch_sub(1);
            st.stats->shed("inflight_commits").Increment();
            return nullptr;
        }
        return std::unique_ptr<hold_slot>(new hold_slot(st));
    }
    ~hold_slot() {
        st_.inflight_commits.fetch_sub(1);
        st_.stats->inflight_commits().Decrement();
    }
    hold_slot(const hold_slot&) = delete;
    hold_slot& operator=(const hold_slot&) = delete;

private:
    explicit hold_slot(server::state& st) : st_(st) { st_.stats->inflight_commits().Increment(); }
    server::state& st_;
};

struct reply_wait {
    explicit reply_wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::shared_ptr<const stored_response> reply;
    std::optional<delivery_report> failure;  // not persisted: the request never reached the service
    bool waiting = true;
};

// What event, commit and reply requests share: the record, built from the request, and what every
// delivery report of it leaves behind (the status store, the metrics, the Idempotency-Key entry).
// One allocation per request, shared by the delivery handler and the session.
struct produce_context {
    std::shared_ptr<status_store> statuses;
    std::shared_ptr<metrics> stats;
    std::shared_ptr<key_settlement> keys;  // null unless the request holds an Idempotency-Key
    config::mode mode;
    int success;
    unsigned version;
    request_ids ids;
    std::string route_name;
    std::string topic;
    std::string topic_label;                               // the route's topic template
    const metrics::topic_instruments* counters = nullptr;  // topic_label's
    std::chrono::steady_clock::time_point produced = std::chrono::steady_clock::now();

    // Runs on the producer's io thread for every accepted record, whatever the caller got.
    void on_report(const delivery_report& r) const {
        record_delivery(*statuses, *counters, ids.request, route_name, topic, r);
        if (keys) {
            // Idempotency-Key: a definite failure frees the key (a retry may run again); a commit
            // is settled by its report, whatever its caller was told meanwhile.
            if (r.status == delivery_status::not_persisted) {
                keys->release(ids.request);
            } else if (mode == config::mode::commit && r.status == delivery_status::persisted) {
                keys->complete(ids.request, to_stored(commit_success(success, ids, topic, r, version).res), true);
            } else if (mode == config::mode::commit) {
                keys->complete(ids.request,
                               to_stored(outcome_unknown("the broker may have persisted the record (" + r.error + ")",
                                                         ids, topic, version)
                                             .res),
                               true);
            }
        }
        counters->delivery->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - produced).count());
    }

    // The producer refused the record before producing it.
    void refused(produce_error err) const {
        stats->produce_outcome(topic_label, std::string("refused_") + to_string(err));
        if (err == produce_error::queue_full) stats->shed("producer_queue_full").Increment();
        statuses->put(ids.request, request_status{request_status::state::failed,
                                                  route_name,
                                                  topic,
                                                  -1,
                                                  -1,
                                                  std::string("refused before produce: ") + to_string(err),
                                                  {}});
    }

    void failed(std::string reason) const {
        statuses->put(ids.request,
                      request_status{request_status::state::failed, route_name, topic, -1, -1, std::move(reason), {}});
    }
};
using context_ptr = std::shared_ptr<const produce_context>;

struct prepared_record {
    std::optional<kafka_record> record;
    context_ptr ctx;
    std::optional<outcome> error;  // the request cannot make a record (4xx)
};

// Builds the record of an event, commit or reply request and records it as accepted.
prepared_record prepare_record(const request_context& rc, config::mode mode) {
    const auto& st = rc.st;
    const auto& cfg = rc.cfg;
    const auto& route = *rc.route;
    auto& req = rc.req;
    const auto& ids = rc.ids;
    prepared_record out;
    std::string_view path, query;
    split_target(req.target(), path, query);
    const request_view view{req.method_string(), path, query, req.base()};
    auto built = build_record(route, cfg.defaults, view, req.body(), rc.params, ids, std::chrono::system_clock::now());
    if (!built.record) {
        out.error = make_error(built.err, built.message, ids, req.version());
        return out;
    }
    if (mode == config::mode::reply) built.record->headers.push_back({"handoff_reply_topic", cfg.replies.topic});
    auto ctx = std::make_shared<produce_context>();
    ctx->statuses = st->statuses;
    ctx->stats = st->stats;
    if (rc.keyed) ctx->keys = st->settle;
    ctx->mode = mode;
    ctx->success = success_status(route, mode);
    ctx->version = req.version();
    ctx->ids = ids;
    ctx->route_name = route.name;
    ctx->topic = built.record->topic;
    ctx->topic_label = route.topic;
    ctx->counters = rc.topic_metrics;
    ctx->statuses->put(ids.request,
                       request_status{request_status::state::accepted, route.name, ctx->topic, -1, -1, {}, {}});
    out.record = std::move(built.record);
    out.ctx = std::move(ctx);
    return out;
}

// The 503 (or 4xx) for a record the producer refused; nothing was produced.
outcome refusal(const produce_context& ctx, produce_error err, std::string_view what) {
    ctx.refused(err);
    auto o = make_error(from_produce_error(err), std::string(what) + to_string(err), ctx.ids, ctx.version);
    o.topic = ctx.topic;
    return o;
}

// The 503 for a commit or reply request beyond limits.max_inflight_commits (nothing produced).
outcome overloaded(const produce_context& ctx, const std::string& what) {
    ctx.failed("refused: too many " + what + " waiting");
    return make_error(error::overloaded, "too many " + what + " are waiting for Kafka; retry later", ctx.ids,
                      ctx.version);
}

}  // namespace

// event: 202 as soon as the producer holds the record; its delivery report reaches the status
// store. No waiting, so no coroutine frame on the hot path.
outcome handle_event(const request_context& rc) {
    const auto& ids = rc.ids;
    auto p = prepare_record(rc, config::mode::event);
    if (p.error) return std::move(*p.error);
    const auto& ctx = *p.ctx;
    const auto err = rc.st->kafka->produce(*p.record, [c = p.ctx](const delivery_report& r) {
        c->on_report(r);
        if (r.status != delivery_status::persisted) {
            log::warn("event not persisted", {{"request_id", c->ids.request},
                                              {"correlation_id", c->ids.correlation},
                                              {"topic", c->topic},
                                              {"error", r.error},
                                              {"possibly_persisted", r.status == delivery_status::possibly_persisted}});
        }
    });
    if (err != produce_error::ok) return refusal(ctx, err, "the event was not accepted: ");
    outcome o;
    o.topic = ctx.topic;
    o.res = response{http::status::accepted, rc.req.version()};
    const auto url = status_url(ids.request);
    o.res.set("X-Correlation-ID", ids.correlation);
    o.res.set(http::field::location, url);
    std::string body;
    body.reserve(96 + ids.correlation.size() + 2 * ids.request.size() + ctx.topic.size());
    body += "{\"correlation_id\":";
    append_json_string(body, ids.correlation);
    body += ",\"request_id\":";
    append_json_string(body, ids.request);
    body += ",\"status_url\":";
    append_json_string(body, url);
    body += ",\"topic\":";
    append_json_string(body, ctx.topic);
    body += '}';
    set_json(o.res, std::move(body));
    if (ctx.keys) ctx.keys->complete(ids.request, to_stored(o.res), /*final=*/false);  // until not_persisted
    return o;
}

// reply: holds the caller until the reply record arrives, or the route timeout. Held requests
// count against the same bound as commit requests.
awaitable<outcome> handle_reply(const request_context& rc) {
    const auto& st = rc.st;
    const auto& ids = rc.ids;
    auto p = prepare_record(rc, config::mode::reply);
    if (p.error) co_return std::move(*p.error);
    const context_ptr ctx = p.ctx;
    const unsigned version = ctx->version;
    auto guard = hold_slot::take(*st, rc.cfg);
    if (!guard) co_return overloaded(*ctx, "requests");
    const auto ex = co_await asio::this_coro::executor;
    auto wait = std::make_shared<reply_wait>(ex);
    wait->timer.expires_after(rc.route->timeout.count() > 0 ? rc.route->timeout : rc.cfg.defaults.timeout);
    // Both handlers post to the session's executor; the first to arrive wins.
    st->replies->add(ids.request, [wait](std::shared_ptr<const stored_response> r) {
        asio::post(wait->timer.get_executor(), [wait, r = std::move(r)] {
            if (!wait->waiting || wait->reply) return;
            wait->reply = r;
            wait->timer.cancel();
        });
    });
    const auto err = st->kafka->produce(*p.record, [wait, ctx](const delivery_report& r) {
        ctx->on_report(r);
        if (r.status != delivery_status::not_persisted) return;
        asio::post(wait->timer.get_executor(), [wait, r] {
            if (!wait->waiting || wait->reply) return;
            wait->failure = r;
            wait->timer.cancel();
        });
    });
    if (err != produce_error::ok) {
        st->replies->remove(ids.request);
        co_return refusal(*ctx, err, "the request was not accepted: ");
    }
    co_await wait->timer.async_wait(tuple_awaitable);
    wait->waiting = false;
    st->replies->remove(ids.request);  // a reply from now on is late: status store only
    outcome o;
    o.topic = ctx->topic;
    if (wait->reply) {
        o.res = from_stored(*wait->reply, version);
        o.res.set("X-Correlation-ID", ids.correlation);
    } else if (wait->failure) {
        o = make_error(error::delivery_failed,
                       "the broker did not persist the request (" + wait->failure->error + "); safe to retry", ids,
                       version);
        o.topic = ctx->topic;
    } else {
        o = outcome_unknown("no reply within the route timeout; the request may or may not have been processed", ids,
                            ctx->topic, version);
        if (ctx->keys) ctx->keys->complete(ids.request, to_stored(o.res), /*final=*/false);  // a late reply replaces it
    }
    co_return o;
}

// commit: holds the caller until the broker's acks=all delivery report, or the route timeout.
// The number of callers held this way is bounded: beyond it, 503 at once (nothing produced).
awaitable<outcome> handle_commit(const request_context& rc) {
    const auto& st = rc.st;
    const auto& ids = rc.ids;
    auto p = prepare_record(rc, config::mode::commit);
    if (p.error) co_return std::move(*p.error);
    const context_ptr ctx = p.ctx;
    const unsigned version = ctx->version;
    auto guard = hold_slot::take(*st, rc.cfg);
    if (!guard) co_return overloaded(*ctx, "commit requests");
    const auto ex = co_await asio::this_coro::executor;
    auto wait = std::make_shared<delivery_wait>(ex);
    wait->timer.expires_after(rc.route->timeout.count() > 0 ? rc.route->timeout : rc.cfg.defaults.timeout);
    const auto err = st->kafka->produce(*p.record, [wait, ctx](const delivery_report& r) {
        ctx->on_report(r);
        // Runs on the producer's io thread: hand the report to the session's executor.
        asio::post(wait->timer.get_executor(), [wait, ctx, r] {
            if (wait->waiting) {
                wait->report = r;
                wait->timer.cancel();
            } else {
                log::info("late delivery report", {{"request_id", ctx->ids.request},
                                                   {"correlation_id", ctx->ids.correlation},
                                                   {"topic", ctx->topic},
                                                   {"persisted", r.status == delivery_status::persisted},
                                                   {"partition", r.partition},
                                                   {"offset", r.offset}});
            }
        });
    });
    if (err != produce_error::ok) co_return refusal(*ctx, err, "the record was not accepted: ");
    co_await wait->timer.async_wait(tuple_awaitable);
    wait->waiting = false;  // a report arriving from now on is only logged
    const std::optional<delivery_report> report = wait->report;

    if (!report) {
        co_return outcome_unknown("no delivery report within the route timeout; the record may or may not be in Kafka",
                                  ids, ctx->topic, version);
    }
    if (report->status != delivery_status::persisted) {
        const auto e = from_delivery_status(report->status);
        if (e == error::outcome_unknown) {
            co_return outcome_unknown("the broker may have persisted the record (" + report->error + ")", ids,
                                      ctx->topic, version);
        }
        auto o =
            make_error(e, "the broker did not persist the record (" + report->error + "); safe to retry", ids, version);
        o.topic = ctx->topic;
        co_return o;
    }
    co_return commit_success(ctx->success, ids, ctx->topic, *report, version);
}

}  // namespace handoff::proxy::front
