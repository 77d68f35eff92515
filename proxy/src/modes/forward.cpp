// The modes that answer with the upstream service's response: forward, and shadow (forward plus
// a copy published as an event that the caller never waits for).
#include "server/front.hpp"

#include "handoff/common/log.hpp"

#include <cstdint>
#include <string>

namespace handoff::proxy::front {

awaitable<void> handle_forward(const request_context& ctx, outcome& o) {
    const auto& st = ctx.st;
    const auto& cfg = ctx.cfg;
    const auto* route = ctx.route;
    auto& req = ctx.req;
    const auto& ids = ctx.ids;
    // In `append` mode several X-Forwarded-For fields count as one comma-separated list (RFC 9110
    // 5.3); the caller's X-Forwarded-For, X-Forwarded-Proto and X-Correlation-ID never pass as they
    // are, so a `Connection: X-Forwarded-For` cannot remove ours either.
    std::string xff;
    if (cfg.upstream.forwarded_for == config::forwarded_for::append) {
        for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
            xff.append(it->value()).append(", ");
        }
    }
    xff += ctx.client_ip;
    const bool had_body = req.has_content_length() || req.chunked();
    serialized_request up;
    up.method = req.method();
    up.head = upstream_request_head(req, xff, ids.correlation,
                                    had_body || !req.body().empty() ? std::optional(req.body().size()) : std::nullopt);
    up.body = std::move(req.body());

    const auto timeout = (route && route->timeout.count() > 0) ? route->timeout : cfg.upstream.timeout;
    // The service's head passes through as serialized bytes (its end-to-end fields); the response
    // itself carries only what the sidecar sets: X-Correlation-ID, Content-Length, Connection.
    auto result = co_await st->upstream->send(std::move(up), timeout, response_fields::forwarded);
    if (result.error != upstream_error::ok) {
        st->stats->upstream_error(to_string(result.error)).Increment();
        o = make_error(from_upstream_error(result.error),
                       std::string("the upstream service: ") + to_string(result.error), ids, req.version());
        co_return;
    }
    o.res = std::move(result.response);
    o.fields = std::move(result.fields);
    o.res.version(req.version());
    o.res.insert("X-Correlation-ID", ids.correlation);
    const auto status = o.res.result_int();
    if (status < 200 || status == 204 || status == 304) {
        o.res.body().clear();
        // A 304 keeps the Content-Length the service declared (of the representation it stands for).
        if (status == 304 && result.content_length)
            o.res.insert(http::field::content_length, std::to_string(*result.content_length));
    } else if (req.method() == http::verb::head) {
        // What a GET would carry, as the service said; no body follows.
        if (result.content_length) o.res.insert(http::field::content_length, std::to_string(*result.content_length));
    } else {
        o.res.insert(http::field::content_length, std::to_string(o.res.body().size()));
    }
}

// Forwards as `forward` does and publishes a copy of the request as an event. The copy is queued
// before the upstream call and never waited for: its failures (no key, queue full, not
// persisted) are counted and logged, never seen by the caller.
awaitable<outcome> handle_shadow(const request_context& ctx) {
    const auto& st = ctx.st;
    const auto& route = *ctx.route;
    auto& req = ctx.req;
    const auto& ids = ctx.ids;
    auto stats = st->stats;
    const auto failed = [stats, route_name = route.name, ids](const char* reason, const std::string& detail) {
        stats->shadow_failure(route_name, reason).Increment();
        log::warn("shadow copy not published", {{"request_id", ids.request},
                                                {"correlation_id", ids.correlation},
                                                {"route", route_name},
                                                {"reason", reason},
                                                {"detail", detail}});
    };
    std::string_view path, query;
    split_target(req.target(), path, query);
    std::string copy = req.body();  // the upstream gets the original
    auto built = build_record(route, ctx.cfg.defaults, request_view{req.method_string(), path, query, req.base()}, copy,
                              ctx.params, ids, std::chrono::system_clock::now());
    if (!built.record) {
        failed("record", built.message);
    } else {
        const std::string topic = built.record->topic;
        auto statuses = st->statuses;
        statuses->put(ids.request, request_status{request_status::state::accepted, route.name, topic, -1, -1, {}, {}});
        const auto* counters = ctx.topic_metrics;  // points into *stats, which `failed` keeps alive
        const auto err = st->kafka->produce(
            *built.record, [statuses, counters, failed, request_id = ids.request, route_name = route.name, topic,
                            produced = std::chrono::steady_clock::now()](const delivery_report& r) {
                const char* outcome = record_delivery(*statuses, *counters, request_id, route_name, topic, r);
                counters->delivery->observe(
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - produced).count());
                if (r.status != delivery_status::persisted) failed(outcome, r.error);
            });
        if (err != produce_error::ok) {
            stats->produce_outcome(route.topic, std::string("refused_") + to_string(err));
            statuses->put(ids.request, request_status{request_status::state::failed,
                                                      route.name,
                                                      topic,
                                                      -1,
                                                      -1,
                                                      std::string("refused before produce: ") + to_string(err),
                                                      {}});
            failed(to_string(err), "refused before produce");
        }
    }
    outcome o;
    co_await handle_forward(ctx, o);
    co_return o;
}

}  // namespace handoff::proxy::front
