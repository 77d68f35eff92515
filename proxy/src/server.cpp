#include "handoff/proxy/server.hpp"

#include "handoff/proxy/canary.hpp"
#include "handoff/proxy/errors.hpp"
#include "handoff/proxy/http_rules.hpp"
#include "handoff/proxy/ids.hpp"
#include "handoff/proxy/log.hpp"
#include "handoff/proxy/idempotency_store.hpp"
#include "handoff/proxy/record.hpp"
#include "handoff/proxy/replies.hpp"
#include "handoff/proxy/status_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <list>
#include <mutex>
#include <optional>
#include <tuple>

namespace handoff::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

using response = http::response<http::string_body>;

namespace {

// A live connection, as seen by drain: lets `stop_accepting` close it while it is idle.
struct session_handle {
    explicit session_handle(asio::any_io_executor e) : ex(std::move(e)) {}
    const asio::any_io_executor ex;       // the session's strand
    beast::tcp_stream* stream = nullptr;  // touched only on the session's strand
    bool idle = false;
};

}  // namespace

struct server::state {
    asio::io_context& ioc;
    std::atomic<std::shared_ptr<const route_table>> routes;
    std::shared_ptr<producer> kafka;
    std::shared_ptr<upstream_client> upstream;
    std::shared_ptr<metrics> stats;
    std::shared_ptr<status_store> statuses;
    std::shared_ptr<idempotency_store> keys;
    std::shared_ptr<reply_registry> replies;
    std::shared_ptr<reply_dispatcher> reply_listener;
    config::listen_config listen;
    std::atomic<std::size_t> inflight_commits{0};  // listener settings need a restart to change
    std::optional<tcp::acceptor> acceptor;
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> buffered_bodies{0};  // bytes reserved by body_reservation
    std::atomic<bool> closing{false};
    std::atomic<std::size_t> connections{0};
    std::mutex sessions_mutex;
    std::list<std::shared_ptr<session_handle>> sessions;

    state(asio::io_context& io, std::shared_ptr<const route_table> r, std::shared_ptr<producer> p,
          std::shared_ptr<upstream_client> u, std::shared_ptr<metrics> m)
        : ioc(io), routes(std::move(r)), kafka(std::move(p)), upstream(std::move(u)),
          stats(m ? std::move(m) : std::make_shared<metrics>()) {
        const auto& cfg = routes.load()->cfg();
        listen = cfg.listen;
        statuses = std::make_shared<status_store>(cfg.status.max_entries, cfg.status.max_bytes, cfg.status.ttl);
        keys = std::make_shared<idempotency_store>(cfg.idempotency.max_entries, cfg.idempotency.max_bytes,
                                                   cfg.idempotency.ttl);
        replies = std::make_shared<reply_registry>();
        reply_listener = std::make_shared<reply_dispatcher>(replies, statuses, keys, stats);
    }
};

namespace {

using state_ptr = std::shared_ptr<server::state>;

const std::string unmatched_label = "(unmatched)";
const std::string status_label = "(status)";

// What a handled request produced, for the response and the request log line.
struct outcome {
    response res;
    bool close = false;
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string error_code;
};

void set_json(response& res, std::string body) {
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
}

outcome make_error(error e, std::string_view message, const request_ids& ids, unsigned version) {
    const auto info = describe(e);
    outcome o;
    o.res = response{static_cast<http::status>(info.status), version};
    set_json(o.res, error_body(e, message, ids.correlation, ids.request));
    if (info.retry_after_seconds > 0) o.res.set(http::field::retry_after, std::to_string(info.retry_after_seconds));
    if (!ids.correlation.empty()) o.res.set("X-Correlation-ID", ids.correlation);
    o.close = info.close_connection;
    o.error_code = std::string(info.code);
    return o;
}

std::string status_url(const std::string& request_id) { return "/_handoff/requests/" + request_id; }

// The 504 for a request whose outcome is not known yet: the body says so and points at the
// status URL, where the final outcome appears.
outcome outcome_unknown(std::string_view message, const request_ids& ids, const std::string& topic,
                        unsigned version) {
    outcome o = make_error(error::outcome_unknown, message, ids, version);
    set_json(o.res, nlohmann::json{{"error", describe(error::outcome_unknown).code},
                                   {"message", message},
                                   {"correlation_id", ids.correlation},
                                   {"request_id", ids.request},
                                   {"outcome", "unknown"},
                                   {"status_url", status_url(ids.request)},
                                   {"topic", topic}}
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    o.res.set(http::field::location, status_url(ids.request));
    o.topic = topic;
    return o;
}

// A commit route's success, from the persisted delivery report.
outcome commit_success(int status, const request_ids& ids, const std::string& topic, const delivery_report& report,
                       unsigned version) {
    outcome o;
    o.topic = topic;
    o.partition = report.partition;
    o.offset = report.offset;
    o.res = response{static_cast<http::status>(status), version};
    o.res.set("X-Correlation-ID", ids.correlation);
    o.res.set(http::field::location, status_url(ids.request));
    if (status != 204) {
        // Keys in the order a JSON document would sort them; built directly (the hot path).
        std::string body;
        body.reserve(160 + ids.correlation.size() + ids.request.size() + topic.size());
        body += "{\"correlation_id\":";
        append_json_string(body, ids.correlation);
        body += ",\"offset\":";
        body += std::to_string(report.offset);
        body += ",\"outcome\":\"persisted\",\"partition\":";
        body += std::to_string(report.partition);
        body += ",\"request_id\":";
        append_json_string(body, ids.request);
        body += ",\"topic\":";
        append_json_string(body, topic);
        body += '}';
        set_json(o.res, std::move(body));
    }
    return o;
}

stored_response to_stored(const response& res) {
    stored_response s;
    s.status = res.result_int();
    for (const auto& f : res) s.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    s.body = res.body();
    return s;
}

response from_stored(const stored_response& s, unsigned version) {
    response res{static_cast<http::status>(s.status), version};
    for (const auto& [k, v] : s.headers) res.insert(k, v);
    res.body() = s.body;
    return res;
}

// The status a route answers in `mode` (its own success_status, or the canary mode's default).
int success_status(const config::route& route, config::mode mode) {
    if (mode == route.mode && route.success_status > 0) return route.success_status;
    return mode == config::mode::event ? 202 : 200;
}

// ---- forward ---------------------------------------------------------------------------------

// `cfg` is the config of the route table the request started with (not reloaded mid-request).
awaitable<outcome> handle_forward(const state_ptr& st, const config::config& cfg, const config::route* route,
                                  http::request<http::string_body>& req, const std::string& client_ip,
                                  const request_ids& ids) {
    auto up = upstream_request(req);
    // Set after the hop-by-hop pass, so a `Connection: X-Forwarded-For` cannot remove ours. In
    // `append` mode several X-Forwarded-For fields count as one comma-separated list (RFC 9110 5.3).
    std::string xff;
    if (cfg.upstream.forwarded_for == config::forwarded_for::append) {
        for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
            xff.append(it->value()).append(", ");
        }
    }
    xff += client_ip;
    up.set("X-Forwarded-For", xff);  // replaces every copied X-Forwarded-For field
    up.set("X-Forwarded-Proto", "http");
    up.set("X-Correlation-ID", ids.correlation);
    const bool had_body = req.has_content_length() || req.chunked();
    up.body() = std::move(req.body());
    if (had_body || !up.body().empty()) up.content_length(up.body().size());

    const auto timeout = (route && route->timeout.count() > 0) ? route->timeout : cfg.upstream.timeout;
    auto result = co_await st->upstream->send(std::move(up), timeout);
    if (result.error != upstream_error::ok) {
        st->stats->upstream_error(to_string(result.error)).Increment();
        co_return make_error(from_upstream_error(result.error),
                             std::string("the upstream service: ") + to_string(result.error), ids, req.version());
    }
    outcome o;
    o.res = std::move(result.response);
    o.res.version(req.version());
    remove_hop_by_hop(o.res);
    o.res.set("X-Correlation-ID", ids.correlation);
    const auto status = o.res.result_int();
    if (status < 200 || status == 204 || status == 304) {
        o.res.body().clear();
        if (status != 304) o.res.erase(http::field::content_length);
    } else if (req.method() != http::verb::head) {
        o.res.content_length(o.res.body().size());
    }
    co_return o;
}

// ---- event and commit ------------------------------------------------------------------------

// Waits for one delivery report on the session's strand, bounded by the route timeout. The state
// is shared with the delivery handler, so a report that arrives after the caller has gone (or
// after the deadline) touches only this object, never the session.
struct delivery_wait {
    explicit delivery_wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::optional<delivery_report> report;
    bool waiting = true;  // false once the session stopped waiting (answered or timed out)
};

// What every delivery report of an accepted record leaves behind: the request's state in the
// status store and the produce-outcome metric. Returns the outcome label.
const char* record_delivery(status_store& statuses, metrics& stats, const std::string& request_id,
                            const std::string& route_name, const std::string& topic, const std::string& topic_label,
                            const delivery_report& r) {
    request_status s{request_status::state::persisted, route_name, topic, r.partition, r.offset, {}, {}};
    const char* outcome = "persisted";
    if (r.status == delivery_status::not_persisted) {
        s.current = request_status::state::failed;
        s.reason = r.error;
        outcome = "not_persisted";
    } else if (r.status == delivery_status::possibly_persisted) {
        s.current = request_status::state::unknown;
        s.reason = "possibly persisted: " + r.error;
        outcome = "possibly_persisted";
    }
    statuses.put(request_id, std::move(s));
    stats.produce_outcome(topic_label, outcome);
    return outcome;
}

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
    std::shared_ptr<idempotency_store> keys;  // null unless the request holds an Idempotency-Key
    config::mode mode;
    int success;
    unsigned version;
    request_ids ids;
    std::string route_name;
    std::string topic;
    std::string topic_label;  // the route's topic template
    std::chrono::steady_clock::time_point produced = std::chrono::steady_clock::now();

    // Runs on the producer's io thread for every accepted record, whatever the caller got.
    void on_report(const delivery_report& r) const {
        record_delivery(*statuses, *stats, ids.request, route_name, topic, topic_label, r);
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
        stats->delivery_latency(topic_label,
                                std::chrono::duration<double>(std::chrono::steady_clock::now() - produced).count());
    }

    // The producer refused the record before producing it.
    void refused(produce_error err) const {
        stats->produce_outcome(topic_label, std::string("refused_") + to_string(err));
        if (err == produce_error::queue_full) stats->shed("producer_queue_full").Increment();
        statuses->put(ids.request, request_status{request_status::state::failed, route_name, topic, -1, -1,
                                                  std::string("refused before produce: ") + to_string(err), {}});
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
prepared_record prepare_record(const state_ptr& st, const config::config& cfg, const config::route& route,
                               config::mode mode, http::request<http::string_body>& req, const path_params& params,
                               const request_ids& ids, bool keyed) {
    prepared_record out;
    std::string_view path, query;
    split_target(req.target(), path, query);
    const request_view view{req.method_string(), path, query, req.base()};
    auto built = build_record(route, cfg.defaults, view, req.body(), params, ids, std::chrono::system_clock::now());
    if (!built.record) {
        out.error = make_error(built.err, built.message, ids, req.version());
        return out;
    }
    if (mode == config::mode::reply) built.record->headers.push_back({"handoff_reply_topic", cfg.replies.topic});
    auto ctx = std::make_shared<produce_context>();
    ctx->statuses = st->statuses;
    ctx->stats = st->stats;
    if (keyed) ctx->keys = st->keys;
    ctx->mode = mode;
    ctx->success = success_status(route, mode);
    ctx->version = req.version();
    ctx->ids = ids;
    ctx->route_name = route.name;
    ctx->topic = built.record->topic;
    ctx->topic_label = route.topic;
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

// event: 202 as soon as the producer holds the record; its delivery report reaches the status
// store. No waiting, so no coroutine frame on the hot path.
outcome handle_event(const state_ptr& st, const config::config& cfg, const config::route& route,
                     http::request<http::string_body>& req, const path_params& params,
                     const request_ids& ids, bool keyed) {
    auto p = prepare_record(st, cfg, route, config::mode::event, req, params, ids, keyed);
    if (p.error) return std::move(*p.error);
    const auto& ctx = *p.ctx;
    const auto err = st->kafka->produce(*p.record, [c = p.ctx](const delivery_report& r) {
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
    o.res = response{http::status::accepted, req.version()};
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
awaitable<outcome> handle_reply(const state_ptr& st, const config::config& cfg, const config::route& route,
                                http::request<http::string_body>& req, const path_params& params,
                                const request_ids& ids, bool keyed) {
    auto p = prepare_record(st, cfg, route, config::mode::reply, req, params, ids, keyed);
    if (p.error) co_return std::move(*p.error);
    const context_ptr ctx = p.ctx;
    const unsigned version = ctx->version;
    auto guard = hold_slot::take(*st, cfg);
    if (!guard) co_return overloaded(*ctx, "requests");
    const auto ex = co_await asio::this_coro::executor;
    auto wait = std::make_shared<reply_wait>(ex);
    wait->timer.expires_after(route.timeout.count() > 0 ? route.timeout : cfg.defaults.timeout);
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
                       "the broker did not persist the request (" + wait->failure->error + "); safe to retry",
                       ids, version);
        o.topic = ctx->topic;
    } else {
        o = outcome_unknown("no reply within the route timeout; the request may or may not have been processed",
                            ids, ctx->topic, version);
        if (ctx->keys) ctx->keys->complete(ids.request, to_stored(o.res), /*final=*/false);  // a late reply replaces it
    }
    co_return o;
}

// commit: holds the caller until the broker's acks=all delivery report, or the route timeout.
// The number of callers held this way is bounded: beyond it, 503 at once (nothing produced).
awaitable<outcome> handle_commit(const state_ptr& st, const config::config& cfg, const config::route& route,
                                 http::request<http::string_body>& req, const path_params& params,
                                 const request_ids& ids, bool keyed) {
    auto p = prepare_record(st, cfg, route, config::mode::commit, req, params, ids, keyed);
    if (p.error) co_return std::move(*p.error);
    const context_ptr ctx = p.ctx;
    const unsigned version = ctx->version;
    auto guard = hold_slot::take(*st, cfg);
    if (!guard) co_return overloaded(*ctx, "commit requests");
    const auto ex = co_await asio::this_coro::executor;
    auto wait = std::make_shared<delivery_wait>(ex);
    wait->timer.expires_after(route.timeout.count() > 0 ? route.timeout : cfg.defaults.timeout);
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
            co_return outcome_unknown("the broker may have persisted the record (" + report->error + ")",
                                      ids, ctx->topic, version);
        }
        auto o = make_error(e, "the broker did not persist the record (" + report->error + "); safe to retry",
                            ids, version);
        o.topic = ctx->topic;
        co_return o;
    }
    co_return commit_success(ctx->success, ids, ctx->topic, *report, version);
}

// ---- shadow ----------------------------------------------------------------------------------

// Forwards as `forward` does and publishes a copy of the request as an event. The copy is queued
// before the upstream call and never waited for: its failures (no key, queue full, not
// persisted) are counted and logged, never seen by the caller.
awaitable<outcome> handle_shadow(const state_ptr& st, const config::config& cfg, const config::route& route,
                                 http::request<http::string_body>& req, const std::string& client_ip,
                                 const path_params& params, const request_ids& ids) {
    auto stats = st->stats;
    const auto failed = [stats, route_name = route.name, ids](const char* reason, const std::string& detail) {
        stats->counter("handoff_shadow_failures_total", "Shadow copies that were not published, by route and reason.",
                       {{"route", route_name}, {"reason", reason}})
            .Increment();
        log::warn("shadow copy not published",
                  {{"request_id", ids.request},
                   {"correlation_id", ids.correlation},
                   {"route", route_name},
                   {"reason", reason},
                   {"detail", detail}});
    };
    std::string_view path, query;
    split_target(req.target(), path, query);
    std::string copy = req.body();  // the upstream gets the original
    auto built = build_record(route, cfg.defaults, request_view{req.method_string(), path, query, req.base()}, copy,
                              params, ids, std::chrono::system_clock::now());
    if (!built.record) {
        failed("record", built.message);
    } else {
        const std::string topic = built.record->topic;
        auto statuses = st->statuses;
        statuses->put(ids.request, request_status{request_status::state::accepted, route.name, topic, -1, -1, {}, {}});
        const auto err = st->kafka->produce(
            *built.record, [statuses, stats, failed, request_id = ids.request, route_name = route.name, topic,
                            topic_label = route.topic](const delivery_report& r) {
                const char* outcome = record_delivery(*statuses, *stats, request_id, route_name, topic, topic_label, r);
                if (r.status != delivery_status::persisted) failed(outcome, r.error);
            });
        if (err != produce_error::ok) {
            stats->produce_outcome(route.topic, std::string("refused_") + to_string(err));
            statuses->put(ids.request, request_status{request_status::state::failed, route.name, topic, -1, -1,
                                                      std::string("refused before produce: ") + to_string(err), {}});
            failed(to_string(err), "refused before produce");
        }
    }
    co_return co_await handle_forward(st, cfg, &route, req, client_ip, ids);
}

// ---- the session -----------------------------------------------------------------------------

// The mode a request on a canary route takes (canary.hpp). A request whose key is missing takes
// the route's own mode (it would fail in a publishing mode; the same request always goes one way).
config::mode choose_mode(const route_table& table, const config::route& route, const http::request<http::string_body>& req,
                         std::string_view path, std::string_view query, const path_params& params,
                         const request_ids& ids) {
    if (route.key.kind == config::key_kind::none) {
        // No record key: a request with an Idempotency-Key is placed by that key, so that its
        // retries take the path the first attempt took; the others every n-th.
        if (const auto it = req.find("Idempotency-Key"); it != req.end() && req.count("Idempotency-Key") == 1) {
            if (const auto key = parse_idempotency_key(it->value())) {
                return canary_by_key(route.name, *key, route.canary_percent_bp) ? route.canary_mode : route.mode;
            }
        }
        return canary_by_sequence(table.next_sequence(route), route.canary_percent_bp) ? route.canary_mode : route.mode;
    }
    const auto k = extract_key(route, request_view{req.method_string(), path, query, req.base()}, req.body(), params,
                               ids.correlation);
    if (!k.key) return route.mode;
    return canary_by_key(route.name, *k.key, route.canary_percent_bp) ? route.canary_mode : route.mode;
}

// Idempotency-Key (idempotency_store.hpp): nullopt when the request runs (`keyed` tells whether
// it holds a key entry), else the answer: 400 (missing when required, or malformed), 409 (the
// first request is still running), 422 (the key came with another request), or the stored
// response of the first request with `Idempotent-Replayed: true`.
// What an Idempotency-Key covers besides method, target and body: the values of the request that
// the record or the answer takes (see fingerprint()). Names lower-case; an absent header is its
// name alone, a present one "name=value" (several fields of one name joined by newlines).
std::vector<std::string> fingerprinted_values(const config::route& route, const http::request<http::string_body>& req) {
    std::vector<std::string> out;
    const auto add = [&](std::string_view name) {
        std::string v(name);
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        bool first = true;
        for (const auto& f : req.base()) {
            if (!beast::iequals(f.name_string(), name)) continue;
            v += first ? '=' : '\n';
            v += f.value();
            first = false;
        }
        out.push_back(std::move(v));
    };
    add("Content-Type");
    if (route.key.kind == config::key_kind::header) add(route.key.name);
    for (const auto& h : route.headers) add(h);
    return out;
}

// The modes that honour an Idempotency-Key (shadow and forward answer with the upstream's response).
bool honours_idempotency(config::mode m) noexcept {
    return m == config::mode::event || m == config::mode::commit || m == config::mode::reply;
}

void count_idempotency(server::state& st, const config::route& route, const char* result) {
    st.stats->counter("handoff_idempotency_total", "Requests with an Idempotency-Key, by route and result.",
                      {{"route", route.name}, {"result", result}})
        .Increment();
}

// The Idempotency-Key header's own checks: 400 when it is missing on a route that requires it, or
// malformed. Applied before a canary route chooses its mode, so every request of the route is
// held to them, whichever path it then takes.
std::optional<outcome> idempotency_key_problem(server::state& st, const config::route& route,
                                               const http::request<http::string_body>& req,
                                               const request_ids& ids) {
    const auto it = req.find("Idempotency-Key");
    if (it == req.end()) {
        if (!route.idempotency_required) return std::nullopt;
        count_idempotency(st, route, "missing");
        return make_error(error::idempotency_key_missing, "this route requires an Idempotency-Key header", ids,
                          req.version());
    }
    if (req.count("Idempotency-Key") != 1 || !parse_idempotency_key(it->value())) {
        count_idempotency(st, route, "invalid");
        return make_error(error::idempotency_key_invalid,
                          "Idempotency-Key must appear once, as 1-255 visible ASCII characters (or a quoted string)",
                          ids, req.version());
    }
    return std::nullopt;
}

std::optional<outcome> idempotency_gate(server::state& st, const config::route& route,
                                        const http::request<http::string_body>& req, const request_ids& ids,
                                        bool& keyed) {
    const auto count = [&](const char* result) { count_idempotency(st, route, result); };
    if (auto problem = idempotency_key_problem(st, route, req, ids)) return problem;
    const auto it = req.find("Idempotency-Key");
    if (it == req.end()) return std::nullopt;
    const auto key = parse_idempotency_key(it->value());
    auto r = st.keys->begin(route.name, *key,
                            fingerprint(req.method_string(), req.target(), req.body(), fingerprinted_values(route, req)),
                            ids.request);
    switch (r.kind) {
        case idempotency_store::verdict::fresh:
            keyed = true;
            return std::nullopt;
        case idempotency_store::verdict::in_flight: {
            count("in_flight");
            auto o = make_error(error::idempotency_in_flight,
                                "a request with this Idempotency-Key is still being processed; retry later",
                                ids, req.version());
            o.res.set(http::field::location, status_url(r.request_id));
            return o;
        }
        case idempotency_store::verdict::mismatch:
            count("mismatch");
            return make_error(error::idempotency_mismatch,
                              "this Idempotency-Key was used with a different request (method, target or body)",
                              ids, req.version());
        case idempotency_store::verdict::replay: {
            count("replayed");
            outcome o;
            o.res = from_stored(*r.response, req.version());
            o.res.set("Idempotent-Replayed", "true");
            return o;
        }
    }
    return std::nullopt;
}

bool expects_continue(const http::request_header<>& h) {
    auto it = h.find(http::field::expect);
    return it != h.end() && iequals(it->value(), "100-continue");
}

void log_request(const http::request_header<>& req, const config::route* route, config::mode mode,
                 const request_ids& ids, const outcome& o, std::chrono::steady_clock::time_point started) {
    if (!log::enabled(log::level::info)) return;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    nlohmann::json f = {{"request_id", ids.request},
                        {"correlation_id", ids.correlation},
                        {"method", std::string(req.method_string())},
                        {"route", route ? route->name : std::string()},
                        {"mode", config::to_string(mode)},
                        {"status", o.res.result_int()},
                        {"duration_ms", static_cast<double>(us) / 1000.0}};
    if (!o.topic.empty()) f["topic"] = o.topic;
    if (o.partition >= 0) {
        f["partition"] = o.partition;
        f["offset"] = o.offset;
    }
    if (!o.error_code.empty()) f["error"] = o.error_code;
    log::write(log::level::info, "request", std::move(f));
}

// A request body's share of limits.max_buffered_body_bytes, taken before the body is read and
// given back when the request's iteration of the session loop ends (its answer written).
class body_reservation {
public:
    explicit body_reservation(std::atomic<std::size_t>& total) noexcept : total_(total) {}
    body_reservation(const body_reservation&) = delete;
    body_reservation& operator=(const body_reservation&) = delete;
    ~body_reservation() {
        if (held_ > 0) total_.fetch_sub(held_);
    }
    bool take(std::size_t n, std::size_t limit) noexcept {
        auto cur = total_.load();
        do {
            if (n > limit || cur > limit - n) return false;
        } while (!total_.compare_exchange_weak(cur, cur + n));
        held_ = n;
        return true;
    }

private:
    std::atomic<std::size_t>& total_;
    std::size_t held_ = 0;
};

// The response as one gathered write: its head serialized into `wire` (reused per connection),
// then the body where it is. The answer to a HEAD request is the head alone (RFC 9110 §9.3.2): its
// Content-Length says what a GET would carry, and not one body byte follows, or the next response
// on the connection would start inside it.
std::array<asio::const_buffer, 2> wire_buffers(const response& res, std::string& wire, bool head_request) {
    wire.clear();
    if (wire.capacity() > 64 * 1024) wire.shrink_to_fit();  // after an unusually large head
    serialize_response_head(res, wire);
    return {asio::buffer(wire), head_request ? asio::const_buffer() : asio::buffer(res.body())};
}

// Feeds what is already buffered to the parser, without I/O: a request usually arrives whole in
// the read that ended the idle wait, and an asynchronous read of bytes already here costs a post,
// a deadline and a coroutine frame. `until_header`: stop once the head is parsed (the body limit
// is set after routing). Returns the bytes consumed; `ec` is the parser's error (need_more is not
// one: the caller then reads, as Beast's read would).
std::size_t parse_buffered(http::request_parser<http::string_body>& parser, beast::flat_buffer& buffer,
                           bool until_header, boost::system::error_code& ec) {
    std::size_t used = 0;
    ec = {};
    while (buffer.size() > 0 && !(until_header ? parser.is_header_done() : parser.is_done())) {
        const auto n = parser.put(buffer.data(), ec);
        buffer.consume(n);
        used += n;
        if (ec == http::error::need_more) {
            ec = {};
            break;
        }
        if (ec || n == 0) break;
    }
    return used;
}

awaitable<void> write_and_close(beast::tcp_stream& stream, outcome o, const config::listen_config& listen,
                                bool head_request) {
    o.res.keep_alive(false);
    o.res.prepare_payload();
    stream.expires_after(listen.write_timeout);
    std::string wire;
    co_await asio::async_write(stream, wire_buffers(o.res, wire, head_request), tuple_awaitable);
}

awaitable<void> run_session(state_ptr st, tcp::socket socket) {
    const auto& listen = st->listen;
    std::string client_ip;
    {
        boost::system::error_code ec;
        const auto ep = socket.remote_endpoint(ec);
        client_ip = ec ? "unknown" : ep.address().to_string();
    }
    auto handle = std::make_shared<session_handle>(socket.get_executor());
    beast::tcp_stream stream(std::move(socket));
    // Bounded: a chunk line, a trailer or pipelined requests can never grow it past this
    // (buffer_overflow -> 400); pipelined requests beyond it wait in the socket (TCP back-pressure).
    beast::flat_buffer buffer(listen.max_header_bytes + 64 * 1024);
    std::string wire;  // response heads, serialized here
    handle->stream = &stream;
    std::list<std::shared_ptr<session_handle>>::iterator registration;
    {
        std::lock_guard lock(st->sessions_mutex);
        registration = st->sessions.insert(st->sessions.end(), handle);
    }

    std::size_t served = 0;
    for (;;) {
        // Idle between requests: wait for the first byte of the next one. Once the listener has
        // stopped, a connection that was already served is closed here; one accepted from the
        // backlog still gets its first request answered (its client sent it before we stopped).
        if (buffer.size() == 0) {
            if (st->closing.load() && served > 0) break;
            handle->idle = true;
            stream.expires_after(listen.idle_timeout);
            auto [ec, n] = co_await stream.async_read_some(buffer.prepare(8192), tuple_awaitable);
            handle->idle = false;
            if (ec) break;
            buffer.commit(n);
        }
        const auto started = std::chrono::steady_clock::now();
        // RFC 9112 §2.2: empty lines before a request line are ignored (B-18).
        buffer.consume(leading_empty_lines({static_cast<const char*>(buffer.data().data()), buffer.size()}));
        // Beast 1.81 does not bound chunk extensions (B-7); declared before the parser, which refers to it.
        auto chunk_ext_check = [](std::uint64_t, std::string_view ext, boost::system::error_code& ec) {
            if (chunk_extension_too_long(ext)) ec = http::error::bad_chunk_extension;
        };
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(listen.max_header_bytes, UINT32_MAX)));
        parser.on_chunk_header(chunk_ext_check);
        // Beast would refuse a Content-Length over its default 1 MB while reading the head (as a
        // 400); the limit is the route's, known after routing and set before the body is read.
        parser.body_limit(boost::none);
        // The head is usually here already, whole, from the read that ended the idle wait.
        boost::system::error_code hec;
        std::size_t hn = parse_buffered(parser, buffer, /*until_header=*/true, hec);
        if (!hec && !parser.is_header_done()) {
            stream.expires_after(listen.header_timeout);
            auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
            hec = rec;
            hn += rn;
        }
        // Beast 1.81 applies header_limit to the request line and to the fields separately; the
        // limit is for the whole head (L-4): hn is what the parser consumed for this head.
        if (!hec && hn > listen.max_header_bytes) hec = http::error::header_limit;
        if (hec) {
            if (hec == http::error::end_of_stream || hec == asio::error::eof || hec == asio::error::connection_reset ||
                hec == asio::error::operation_aborted) {
                break;
            }
            error e = error::bad_request;
            std::string message = "malformed request: " + hec.message();
            // Beast fills in the target only once the whole request line is parsed.
            if (hec == http::error::header_limit && parser.get().target().empty()) {
                e = error::uri_too_long;
                message = "the request line is longer than " + std::to_string(listen.max_header_bytes) + " bytes";
            } else if (hec == http::error::header_limit) {
                e = error::headers_too_large;
                message = "the request head is larger than " + std::to_string(listen.max_header_bytes) + " bytes";
            } else if (hec == beast::error::timeout) {
                e = error::request_timeout;
                message = "the request head did not arrive in time";
            } else if (hec == http::error::bad_version) {
                e = error::bad_request;
            }
            const request_ids none;  // named: a braced temporary in a co_await expression trips GCC 12
            co_await write_and_close(stream, make_error(e, message, none, 11), listen, false);
            break;
        }

        auto& req = parser.get();
        const bool head_request = req.method() == http::verb::head;
        const auto routes = st->routes.load();  // this request keeps the table it started with
        const auto& cfg = routes->cfg();
        // Every request gets its own request ID; the caller's X-Correlation-ID is only a label
        // (set below, once the head is known to be usable).
        request_ids ids{make_uuid_v7(), {}};
        config::mode mode = cfg.defaults.mode;
        const config::route* route = nullptr;
        std::string_view path, query;
        auto finish = [&](outcome o) -> outcome {
            const auto& name = route ? route->name : (path.starts_with("/_handoff/") ? status_label : unmatched_label);
            st->stats->observe(st->stats->route(name, mode), o.res.result_int(),
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            if (cfg.log.requests) log_request(req, route, mode, ids, o, started);
            return o;
        };

        if (req.version() != 11 && req.version() != 10) {
            co_await write_and_close(stream, finish(make_error(error::unsupported_version, "only HTTP/1.0 and HTTP/1.1 are served", ids, 11)), listen, head_request);
            break;
        }
        if (auto problem = framing_problem(req.base())) {
            co_await write_and_close(stream, finish(make_error(error::bad_request, *problem, ids, req.version())), listen, head_request);
            break;
        }
        if (!split_target(req.target(), path, query)) {
            co_await write_and_close(stream, finish(make_error(error::bad_request, "the request target must be a path (origin-form)", ids, req.version())), listen, head_request);
            break;
        }
        if (auto it = req.find("X-Correlation-ID"); it != req.end()) {
            if (!valid_correlation_id(it->value())) {
                // The caller's label is unusable; the error carries the request ID instead.
                ids.correlation = ids.request;
                auto o = make_error(error::invalid_correlation_id,
                                    "X-Correlation-ID must be 1-128 characters of [A-Za-z0-9._:-]", ids, req.version());
                o.close = o.close || !parser.is_done();
                co_await write_and_close(stream, finish(std::move(o)), listen, head_request);
                break;
            }
            ids.correlation = std::string(it->value());
        } else {
            ids.correlation = ids.request;
        }

        std::optional<outcome> early;
        route_match match;
        if (path.starts_with("/_handoff/")) {
            // Reserved for the sidecar itself: never routed, never forwarded.
            constexpr std::string_view prefix = "/_handoff/requests/";
            const auto id = path.starts_with(prefix) ? std::string(path.substr(prefix.size())) : std::string();
            if (req.method() != http::verb::get && req.method() != http::verb::head) {
                early = make_error(error::method_not_allowed, "the status endpoint is read-only", ids, req.version());
                early->res.set(http::field::allow, "GET, HEAD");
            } else if (auto s = id.empty() ? std::nullopt : st->statuses->get(id)) {
                outcome o;
                o.res = response{http::status::ok, req.version()};
                o.res.set(http::field::cache_control, "no-store");
                set_json(o.res, status_store::to_json(id, *s, cfg.status.reply_bodies));
                early = std::move(o);
            } else {
                early = make_error(error::not_found, "no request with this request ID is known (unknown or expired)",
                                   ids, req.version());
            }
        } else {
            match = routes->match(req.method_string(), path);
        }
        if (!early && match.result == route_match::kind::ambiguous) {
            early = make_error(error::ambiguous_path, match.reason, ids, req.version());
        } else if (!early && match.result == route_match::kind::method_not_allowed) {
            early = make_error(error::method_not_allowed, "this path does not accept " + std::string(req.method_string()),
                               ids, req.version());
            early->res.set(http::field::allow, match.allow);
        } else if (match.result == route_match::kind::matched) {
            route = match.route;
            mode = route->mode;
        }
        const std::size_t body_limit =
            (route && route->max_body_bytes > 0) ? route->max_body_bytes : listen.max_body_bytes;
        if (!early) {
            if (auto cl = parser.content_length(); cl && *cl > body_limit) {
                early = make_error(error::body_too_large,
                                   "the body is larger than this route's limit of " + std::to_string(body_limit) + " bytes",
                                   ids, req.version());
            } else if (auto ex = req.find(http::field::expect); ex != req.end() && !expects_continue(req.base())) {
                early = make_error(error::expectation_failed, "only Expect: 100-continue is supported", ids,
                                   req.version());
            }
        }
        if (early) {
            // The body (if any) was not read: the connection cannot be reused.
            if (!parser.is_done()) early->close = true;
            auto o = finish(std::move(*early));
            if (o.close) {
                co_await write_and_close(stream, std::move(o), listen, head_request);
                break;
            }
            o.res.keep_alive(req.keep_alive() && !st->draining.load());
            o.res.prepare_payload();
            stream.expires_after(listen.write_timeout);
            auto [wec, wn] = co_await asio::async_write(stream, wire_buffers(o.res, wire, head_request), tuple_awaitable);
            if (wec || !o.res.keep_alive()) break;
            continue;
        }

        body_reservation body_share(st->buffered_bodies);
        if (!parser.is_done()) {
            // Bodies are bounded all together too (limits.max_buffered_body_bytes): each
            // connection may hold up to its route's limit, and there may be max_connections.
            const auto declared = parser.content_length();
            if (!body_share.take(declared ? static_cast<std::size_t>(*declared) : body_limit,
                                 cfg.limits.max_buffered_body_bytes)) {
                st->stats->shed("buffered_bodies").Increment();
                co_await write_and_close(stream,
                                         finish(make_error(error::overloaded,
                                                           "too many request bodies are being received; retry later",
                                                           ids, req.version())),
                                         listen, head_request);
                break;
            }
            if (expects_continue(req.base())) {
                http::response<http::empty_body> cont{http::status::continue_, req.version()};
                stream.expires_after(listen.write_timeout);
                auto [cec, cn] = co_await http::async_write(stream, cont, tuple_awaitable);
                if (cec) break;
            }
            parser.body_limit(body_limit);
            // Beast adds trailer fields to the header (next to a same-named field, not at the end):
            // keep the head as it was, so trailers are never applied, forwarded or copied (B-8).
            std::optional<http::fields> head_fields;
            if (req.chunked()) head_fields.emplace(static_cast<const http::fields&>(req));
            parser.eager(true);
            boost::system::error_code bec;
            parse_buffered(parser, buffer, /*until_header=*/false, bec);
            if (!bec && !parser.is_done()) {
                stream.expires_after(listen.body_timeout);
                std::tie(bec, std::ignore) = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
            }
            if (bec) {
                error e = error::bad_request;
                std::string message = "malformed request body: " + bec.message();
                if (bec == http::error::body_limit) {
                    e = error::body_too_large;
                    message = "the body is larger than this route's limit of " + std::to_string(body_limit) + " bytes";
                } else if (bec == beast::error::timeout) {
                    e = error::request_timeout;
                    message = "the request body did not arrive in time";
                } else if (bec == asio::error::eof || bec == http::error::partial_message ||
                           bec == asio::error::connection_reset) {
                    break;
                }
                co_await write_and_close(stream, finish(make_error(e, message, ids, req.version())), listen, head_request);
                break;
            }
            // Framing, routing and authentication fields in a trailer refuse the request (400 + close).
            if (head_fields) {
                const bool forbidden = has_forbidden_trailer(*head_fields, req);
                static_cast<http::fields&>(req) = std::move(*head_fields);
                if (forbidden) {
                    co_await write_and_close(stream, finish(make_error(error::bad_request, "a trailer carries a framing, routing or authentication field",
                                                                       ids, req.version())), listen, head_request);
                    break;
                }
            }
        }

        outcome o;
        bool keyed = false;  // this request holds an Idempotency-Key entry
        try {
            std::optional<outcome> gate;
            if (route && route->canary_percent_bp > 0) {
                if (honours_idempotency(route->mode) || honours_idempotency(route->canary_mode)) {
                    gate = idempotency_key_problem(*st, *route, req, ids);
                }
                if (!gate) mode = choose_mode(*routes, *route, req, path, query, match.params, ids);
            }
            if (!gate && route && honours_idempotency(mode)) gate = idempotency_gate(*st, *route, req, ids, keyed);
            if (gate) {
                o = std::move(*gate);
            } else {
                switch (mode) {
                    case config::mode::forward:
                        o = co_await handle_forward(st, cfg, route, req, client_ip, ids);
                        break;
                    case config::mode::event:
                        o = handle_event(st, cfg, *route, req, match.params, ids, keyed);
                        break;
                    case config::mode::commit:
                        o = co_await handle_commit(st, cfg, *route, req, match.params, ids, keyed);
                        break;
                    case config::mode::reply:
                        o = co_await handle_reply(st, cfg, *route, req, match.params, ids, keyed);
                        break;
                    case config::mode::shadow:
                        o = co_await handle_shadow(st, cfg, *route, req, client_ip, match.params, ids);
                        break;
                }
            }
        } catch (const std::exception& ex) {
            log::error("request handler failed",
                       {{"request_id", ids.request}, {"correlation_id", ids.correlation}, {"error", ex.what()}});
            o = make_error(error::internal, "internal error", ids, req.version());
        }
        if (keyed) {
            // A request that definitely had no effect frees its key; 2xx and 504 (outcome
            // unknown) entries are settled by the handlers, delivery reports and replies.
            const auto status = o.res.result_int();
            if ((status < 200 || status > 299) && status != 504) st->keys->release(ids.request);
        }
        o = finish(std::move(o));
        const bool keep = !o.close && req.keep_alive() && !st->draining.load() && !st->closing.load();
        o.res.keep_alive(keep);
        if (req.method() != http::verb::head || (mode != config::mode::forward && mode != config::mode::shadow)) {
            if (!o.res.has_content_length() && o.res.result_int() >= 200 && o.res.result_int() != 204 &&
                o.res.result_int() != 304) {
                o.res.content_length(o.res.body().size());
            }
        }
        stream.expires_after(listen.write_timeout);
        auto [wec, wn] = co_await asio::async_write(stream, wire_buffers(o.res, wire, head_request), tuple_awaitable);
        ++served;
        if (wec || !keep) break;
    }

    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    handle->stream = nullptr;
    {
        std::lock_guard lock(st->sessions_mutex);
        st->sessions.erase(registration);
    }
    st->connections.fetch_sub(1);
}

awaitable<void> accept_loop(state_ptr st) {
    for (;;) {
        // Accept into a socket made beforehand, on its own strand: Boost 1.81's move-accept with
        // an executor argument and as_tuple frees the strand twice (seen under ASan, 2 threads).
        // With one io thread every handler is already serialized: no strand (it costs a queue
        // and a lock per handler).
        tcp::socket socket = st->listen.threads > 1 ? tcp::socket(asio::make_strand(st->ioc))
                                                    : tcp::socket(st->ioc.get_executor());
        auto [ec] = co_await st->acceptor->async_accept(socket, tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted || !st->acceptor->is_open()) co_return;
            log::warn("accept failed", {{"error", ec.message()}});
            continue;
        }
        if (st->connections.load() >= st->listen.max_connections) {
            // Connection cap: refuse at once rather than queue (TEST-CATALOGUE L-6).
            boost::system::error_code ignored;
            socket.close(ignored);
            st->stats->shed("connections").Increment();
            continue;
        }
        st->connections.fetch_add(1);
        boost::system::error_code nodelay_ec;  // a client already gone must not end the accept loop
        socket.set_option(tcp::no_delay(true), nodelay_ec);
        auto ex = socket.get_executor();
        asio::co_spawn(ex, run_session(st, std::move(socket)), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error("session failed", {{"error", ex.what()}});
            }
        });
    }
}

}  // namespace

server::server(asio::io_context& ioc, std::shared_ptr<const route_table> routes, std::shared_ptr<producer> producer,
               std::shared_ptr<upstream_client> upstream, std::shared_ptr<metrics> stats)
    : state_(std::make_shared<state>(ioc, std::move(routes), std::move(producer), std::move(upstream), std::move(stats))) {
    std::weak_ptr<state> weak = state_;
    state_->stats->on_scrape([weak] {
        if (auto s = weak.lock()) {
            s->stats->connections().Set(static_cast<double>(s->connections.load()));
            s->stats->status_entries().Set(static_cast<double>(s->statuses->size()));
            s->stats->gauge("handoff_status_bytes", "Bytes held by the request status store.", {})
                .Set(static_cast<double>(s->statuses->bytes()));
            s->stats->gauge("handoff_idempotency_entries", "Idempotency-Key entries held.", {})
                .Set(static_cast<double>(s->keys->size()));
            s->stats->gauge("handoff_idempotency_bytes", "Bytes held by the Idempotency-Key store.", {})
                .Set(static_cast<double>(s->keys->bytes()));
            s->stats->gauge("handoff_buffered_body_bytes",
                            "Request body bytes reserved against limits.max_buffered_body_bytes.", {})
                .Set(static_cast<double>(s->buffered_bodies.load()));
            s->stats->gauge("handoff_reply_waiting", "Requests on reply routes waiting for their reply.", {})
                .Set(static_cast<double>(s->replies->size()));
            const auto ps = s->kafka->stats();
            s->stats->producer_queue_messages().Set(static_cast<double>(ps.queued_messages));
            s->stats->producer_queue_bytes().Set(static_cast<double>(ps.queued_bytes));
        }
    });
}

server::~server() = default;

void server::start() {
    const auto& l = state_->listen;
    const tcp::endpoint ep{asio::ip::make_address(l.address), l.port};
    state_->acceptor.emplace(state_->ioc);
    state_->acceptor->open(ep.protocol());
    state_->acceptor->set_option(asio::socket_base::reuse_address(true));
    state_->acceptor->bind(ep);
    state_->acceptor->listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(state_->ioc, accept_loop(state_), asio::detached);
}

tcp::endpoint server::local_endpoint() const { return state_->acceptor->local_endpoint(); }

void server::begin_drain() { state_->draining.store(true); }
bool server::draining() const noexcept { return state_->draining.load(); }

void server::stop_accepting() {
    state_->draining.store(true);
    state_->closing.store(true);
    asio::post(state_->ioc, [st = state_] {
        if (!st->acceptor || !st->acceptor->is_open()) return;
        // Connections the kernel already completed sit in the backlog; closing the listener now
        // would reset them. Take them (non-blocking) and serve their request before closing.
        boost::system::error_code ec;
        st->acceptor->non_blocking(true, ec);
        for (;;) {
            tcp::socket socket(asio::make_strand(st->ioc));
            st->acceptor->accept(socket, ec);
            if (ec) break;
            st->connections.fetch_add(1);
            socket.set_option(tcp::no_delay(true), ec);
            auto ex = socket.get_executor();
            asio::co_spawn(ex, run_session(st, std::move(socket)), asio::detached);
        }
        st->acceptor->close(ec);
    });
    std::lock_guard lock(state_->sessions_mutex);
    for (auto& h : state_->sessions) {
        // Runs on the session's strand, where `stream` and `idle` are owned. A connection whose
        // next request has already arrived is left to finish it.
        asio::post(h->ex, [h] {
            if (!h->stream || !h->idle) return;
            boost::system::error_code ec;
            if (h->stream->socket().available(ec) > 0 && !ec) return;
            h->stream->cancel();
        });
    }
}

std::size_t server::active_connections() const noexcept { return state_->connections.load(); }
std::size_t server::inflight_commits() const noexcept { return state_->inflight_commits.load(); }

void server::swap_routes(std::shared_ptr<const route_table> routes) { state_->routes.store(std::move(routes)); }

consumer_listener& server::reply_listener() noexcept { return *state_->reply_listener; }
bool server::replies_ready() const noexcept { return state_->reply_listener->ready(); }

}  // namespace handoff::proxy
