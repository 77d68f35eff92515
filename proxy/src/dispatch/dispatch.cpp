// From a parsed request to its outcome: the answer of the sidecar's own status endpoint, the
// answers of a failed route match, the canary choice, the Idempotency-Key gate, the call of the
// mode handler, and the request log line.
#include "server/front.hpp"

#include "handoff/proxy/dispatch/canary.hpp"
#include "handoff/common/log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <vector>

namespace handoff::proxy::front {

namespace {

// The mode a request on a canary route takes (canary.hpp). A request whose key is missing takes
// the route's own mode (it would fail in a publishing mode; the same request always goes one way).
config::mode choose_mode(const route_table& table, const config::route& route,
                         const http::request<http::string_body>& req, std::string_view path, std::string_view query,
                         const path_params& params, const request_ids& ids) {
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

// What an Idempotency-Key covers besides method, target and body: the values of the request that
// the record or the answer takes (see fingerprint()). Names lower-case; an absent header is its
// name alone, a present one "name=value" (several fields of one name joined by newlines).
std::vector<std::string> fingerprinted_values(const config::route& route, const http::request<http::string_body>& req) {
    std::vector<std::string> out;
    const auto add = [&](std::string_view name) {
        std::string v(name);
        std::transform(v.begin(), v.end(), v.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
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
    st.stats->idempotency(route.name, result).Increment();
}

// The Idempotency-Key header's own checks: 400 when it is missing on a route that requires it, or
// malformed. Applied before a canary route chooses its mode, so every request of the route is
// held to them, whichever path it then takes.
std::optional<outcome> idempotency_key_problem(server::state& st, const config::route& route,
                                               const http::request<http::string_body>& req, const request_ids& ids) {
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

// The answers both gates give: the first request still runs (409, Location: its status), the key
// came with another request (422), the first request's stored answer (replayed).
outcome in_flight_answer(const http::request<http::string_body>& req, const request_ids& ids,
                         const std::string& holder) {
    auto o =
        make_error(error::idempotency_in_flight,
                   "a request with this Idempotency-Key is still being processed; retry later", ids, req.version());
    o.res.set(http::field::location, status_url(holder));
    return o;
}

outcome mismatch_answer(const http::request<http::string_body>& req, const request_ids& ids) {
    return make_error(error::idempotency_mismatch,
                      "this Idempotency-Key was used with a different request (method, target or body)", ids,
                      req.version());
}

outcome replay_answer(const http::request<http::string_body>& req, const stored_response& stored) {
    outcome o;
    o.res = from_stored(stored, req.version());
    o.res.set("Idempotent-Replayed", "true");
    return o;
}

// Idempotency-Key (idempotency_store.hpp): nullopt when the request runs (`keyed` tells whether
// it holds a key entry), else the answer: 400 (missing when required, or malformed), 409 (the
// first request is still running), 422 (the key came with another request), or the stored
// response of the first request with `Idempotent-Replayed: true`.
std::optional<outcome> idempotency_gate(server::state& st, const config::route& route,
                                        const http::request<http::string_body>& req, const request_ids& ids,
                                        bool& keyed) {
    const auto count = [&](const char* result) { count_idempotency(st, route, result); };
    if (auto problem = idempotency_key_problem(st, route, req, ids)) return problem;
    const auto it = req.find("Idempotency-Key");
    if (it == req.end()) return std::nullopt;
    const auto key = parse_idempotency_key(it->value());
    auto r = st.keys->begin(
        route.name, *key, fingerprint(req.method_string(), req.target(), req.body(), fingerprinted_values(route, req)),
        ids.request);
    switch (r.kind) {
        case idempotency_store::verdict::fresh: keyed = true; return std::nullopt;
        case idempotency_store::verdict::in_flight: count("in_flight"); return in_flight_answer(req, ids, r.request_id);
        case idempotency_store::verdict::mismatch: count("mismatch"); return mismatch_answer(req, ids);
        case idempotency_store::verdict::replay: count("replayed"); return replay_answer(req, *r.response);
    }
    return std::nullopt;
}

// The Idempotency-Key gate with state.shared: the key is claimed through the state topic, so every
// replica gives the same verdict. Besides the single-process answers: 503 state_unavailable when
// the claim could not be written and read back in time, 503 overloaded when the view is full, and
// 504 outcome_unknown (Location: the holder's status) when the request holding the key was not
// completed by its replica within state.claim_timeout, or its stored response was dropped.
awaitable<std::optional<outcome>> shared_idempotency_gate(server::state& st, const config::route& route,
                                                          const http::request<http::string_body>& req,
                                                          const request_ids& ids, bool& keyed) {
    const auto count = [&](const char* result) { count_idempotency(st, route, result); };
    if (auto problem = idempotency_key_problem(st, route, req, ids)) co_return problem;
    const auto it = req.find("Idempotency-Key");
    if (it == req.end()) co_return std::nullopt;
    const auto key = parse_idempotency_key(it->value());
    auto r = co_await st.shared->claim(
        route.name, *key, fingerprint(req.method_string(), req.target(), req.body(), fingerprinted_values(route, req)),
        ids.request, ids.correlation);
    using kind = shared_registry::claim_result::kind;
    using verdict = shared::key_view::verdict;
    if (r.result == kind::full) {
        count("full");
        co_return make_error(error::overloaded, "too many Idempotency-Keys are held by the replicas; retry later", ids,
                             req.version());
    }
    if (r.result == kind::unavailable) {
        count("unavailable");
        co_return make_error(error::state_unavailable,
                             "the Idempotency-Key could not be claimed through the state topic (" + r.reason +
                                 "); nothing was produced, retry later",
                             ids, req.version());
    }
    const auto& a = r.answer;
    switch (a.kind) {
        case verdict::fresh: keyed = true; co_return std::nullopt;
        case verdict::in_flight: count("in_flight"); co_return in_flight_answer(req, ids, a.request_id);
        case verdict::mismatch: count("mismatch"); co_return mismatch_answer(req, ids);
        case verdict::replay: count("replayed"); co_return replay_answer(req, *a.response);
        case verdict::abandoned:
        case verdict::evicted:
        case verdict::lost: {
            count(a.kind == verdict::evicted ? "evicted" : "abandoned");
            auto o = make_error(error::outcome_unknown,
                                a.kind == verdict::evicted
                                    ? "the request holding this Idempotency-Key completed, but its stored response "
                                      "was dropped (idempotency.max_bytes); its status is at Location"
                                    : "the request holding this Idempotency-Key was not completed by its replica "
                                      "within state.claim_timeout; its outcome is unknown, its status is at Location",
                                ids, req.version());
            o.res.set(http::field::location, status_url(a.request_id));
            co_return o;
        }
    }
    co_return std::nullopt;
}

// The millisecond timestamp of a UUIDv7 request ID; nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> uuid_v7_time(std::string_view id) {
    if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[14] != '7' || id[18] != '-' || id[23] != '-') {
        return std::nullopt;
    }
    std::uint64_t ms = 0;
    for (std::size_t i = 0; i < 13; ++i) {
        if (i == 8) continue;
        const char c = id[i];
        const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return std::nullopt;
        ms = ms << 4 | static_cast<std::uint64_t>(v);
    }
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

// How long a request may run before its outcome is published: the longest route timeout, plus the
// time to write and read the status back.
std::chrono::milliseconds pending_window(const config::config& cfg) {
    auto longest = cfg.defaults.timeout;
    for (const auto& r : cfg.routes) longest = std::max(longest, r.timeout);
    return longest + std::chrono::seconds(5);
}

}  // namespace

outcome status_endpoint(server::state& st, const config::config& cfg, const http::request<http::string_body>& req,
                        std::string_view path, const request_ids& ids) {
    constexpr std::string_view prefix = "/_handoff/requests/";
    const auto id = path.starts_with(prefix) ? std::string(path.substr(prefix.size())) : std::string();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        auto o = make_error(error::method_not_allowed, "the status endpoint is read-only", ids, req.version());
        o.res.set(http::field::allow, "GET, HEAD");
        return o;
    }
    if (auto s = id.empty() ? std::nullopt : st.statuses->get(id)) {
        outcome o;
        o.res = response{http::status::ok, req.version()};
        o.res.set(http::field::cache_control, "no-store");
        set_json(o.res, status_store::to_json(id, *s, cfg.status.reply_bodies));
        return o;
    }
    if (st.shared) {
        // Replicas learn each other's requests when they have an outcome: a request another replica
        // took a moment ago may still be running there. Its ID says when it began (UUIDv7).
        const auto began = uuid_v7_time(id);
        const auto age = std::chrono::system_clock::now() - began.value_or(std::chrono::system_clock::time_point{});
        if (began && age >= -std::chrono::seconds(5) && age < pending_window(cfg)) {
            auto o = make_error(error::not_found,
                                "this request ID is not known to this replica yet: a request's status reaches the "
                                "other replicas once it has an outcome, and this one began moments ago; retry",
                                ids, req.version());
            o.res.set(http::field::retry_after, "1");
            return o;
        }
    }
    return make_error(error::not_found, "no request with this request ID is known (unknown or expired)", ids,
                      req.version());
}

std::optional<outcome> match_problem(const route_match& match, const http::request<http::string_body>& req,
                                     const request_ids& ids) {
    if (match.result == route_match::kind::ambiguous) {
        return make_error(error::ambiguous_path, match.reason, ids, req.version());
    }
    if (match.result == route_match::kind::method_not_allowed) {
        auto o = make_error(error::method_not_allowed, "this path does not accept " + std::string(req.method_string()),
                            ids, req.version());
        o.res.set(http::field::allow, match.allow);
        return o;
    }
    return std::nullopt;
}

std::optional<outcome> admit_head(server::state& st, const route_table& routes, http::request<http::string_body>& req,
                                  std::optional<std::uint64_t> declared_length, request_ids& ids, admission& a) {
    const auto& cfg = routes.cfg();
    a.mode = cfg.defaults.mode;
    a.body_limit = st.listen.max_body_bytes;
    // A malformed head: answered, and an HTTP/1.1 connection is closed whatever follows.
    auto malformed = [&](error e, std::string_view message) {
        auto o = make_error(e, message, ids, req.version());
        o.close = true;
        return o;
    };
    if (auto problem = framing_problem(req.base())) return malformed(error::bad_request, *problem);
    if (!split_target(req.target(), a.path, a.query)) {
        return malformed(error::bad_request, "the request target must be a path (origin-form)");
    }
    if (auto it = req.find("X-Correlation-ID"); it != req.end()) {
        if (!valid_correlation_id(it->value())) {
            // The caller's label is unusable; the error carries the request ID instead.
            ids.correlation = ids.request;
            return malformed(error::invalid_correlation_id,
                             "X-Correlation-ID must be 1-128 characters of [A-Za-z0-9._:-]");
        }
        ids.correlation = std::string(it->value());
    } else {
        ids.correlation = ids.request;
    }
    if (a.path.starts_with("/_handoff/")) {
        // Reserved for the sidecar itself: never routed, never forwarded.
        return status_endpoint(st, cfg, req, a.path, ids);
    }
    a.match = routes.match(req.method_string(), a.path);
    auto problem = match_problem(a.match, req, ids);
    if (a.match.result == route_match::kind::matched) {
        a.route = a.match.route;
        a.mode = a.route->mode;
    }
    if (a.route && a.route->max_body_bytes > 0) a.body_limit = a.route->max_body_bytes;
    if (problem) return problem;
    if (declared_length && *declared_length > a.body_limit) {
        return make_error(error::body_too_large,
                          "the body is larger than this route's limit of " + std::to_string(a.body_limit) + " bytes",
                          ids, req.version());
    }
    if (auto ex = req.find(http::field::expect); ex != req.end() && !expects_continue(req.base())) {
        return make_error(error::expectation_failed, "only Expect: 100-continue is supported", ids, req.version());
    }
    return std::nullopt;
}

awaitable<void> answer_request(request_context& ctx, const route_table& routes, std::string_view path,
                               std::string_view query, config::mode& mode, outcome& o) {
    const auto* route = ctx.route;
    auto& req = ctx.req;
    const auto& ids = ctx.ids;
    try {
        std::optional<outcome> gate;
        if (route && route->canary_percent_bp > 0) {
            if (honours_idempotency(route->mode) || honours_idempotency(route->canary_mode)) {
                gate = idempotency_key_problem(*ctx.st, *route, req, ids);
            }
            if (!gate) mode = choose_mode(routes, *route, req, path, query, ctx.params, ids);
        }
        if (!gate && route && honours_idempotency(mode)) {
            // Not a conditional expression: GCC 12 miscompiles a co_await inside one (it destroys a
            // temporary it never built).
            if (ctx.st->shared) {
                auto shared_gate = co_await shared_idempotency_gate(*ctx.st, *route, req, ids, ctx.keyed);
                gate = std::move(shared_gate);
            } else {
                gate = idempotency_gate(*ctx.st, *route, req, ids, ctx.keyed);
            }
        }
        if (gate) {
            o = std::move(*gate);
        } else {
            switch (mode) {
                case config::mode::forward: co_await handle_forward(ctx, o); break;
                case config::mode::event: o = handle_event(ctx); break;
                case config::mode::commit: o = co_await handle_commit(ctx); break;
                case config::mode::reply: o = co_await handle_reply(ctx); break;
                case config::mode::shadow: o = co_await handle_shadow(ctx); break;
            }
        }
    } catch (const std::exception& ex) {
        log::error("request handler failed",
                   {{"request_id", ids.request}, {"correlation_id", ids.correlation}, {"error", ex.what()}});
        o = make_error(error::internal, "internal error", ids, req.version());
    }
    if (ctx.keyed) {
        // A request that definitely had no effect frees its key; 2xx and 504 (outcome
        // unknown) entries are settled by the handlers, delivery reports and replies.
        const auto status = o.res.result_int();
        if ((status < 200 || status > 299) && status != 504) ctx.st->settle->release(ids.request);
    }
}

void log_request(const http::request_header<>& req, std::string_view protocol, const config::route* route,
                 config::mode mode, const request_ids& ids, const outcome& o,
                 std::chrono::steady_clock::time_point started) {
    if (!log::enabled(log::level::info)) return;
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    // Built in place (log::line): this line is written for every request.
    log::line line(log::level::info, "request");
    line.str("request_id", ids.request)
        .str("correlation_id", ids.correlation)
        .str("method", {req.method_string().data(), req.method_string().size()})
        .str("protocol", protocol)
        .str("route", route ? std::string_view(route->name) : std::string_view())
        .str("mode", config::to_string(mode))
        .num("status", o.res.result_int())
        .millis("duration_ms", us);
    if (!o.topic.empty()) line.str("topic", o.topic);
    if (o.partition >= 0) line.num("partition", o.partition).num("offset", o.offset);
    if (!o.error_code.empty()) line.str("error", o.error_code);
    line.write();
}

}  // namespace handoff::proxy::front
