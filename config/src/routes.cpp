// routes: name, match (methods, path), mode, canary, topic, key, cloudevents, success_status,
// headers, idempotency. The rules across routes are in rules.cpp.
#include "loader.hpp"

#include <algorithm>

namespace handoff::config::detail {

void loader::parse_routes(const YAML::Node& n, config& c) {
    if (n.IsNull()) return;
    if (!n.IsSequence()) {
        fail(n, "routes", "list expected");
        return;
    }
    std::vector<route_info> infos;
    for (std::size_t i = 0; i < n.size(); ++i) {
        route r;
        route_info info;
        info.index = i;
        info.node = n[i];
        if (parse_route(n[i], "routes[" + std::to_string(i) + "]", c, r, info)) {
            c.routes.push_back(std::move(r));
            infos.push_back(std::move(info));
        }
    }
    check_unique(c.routes, infos, c.routing.trailing_slash);
    check_durability(c.routes, infos);
    check_reply_topic(c, infos);
}

// False when the item is not a map at all (nothing to cross-check).
bool loader::parse_route(const YAML::Node& n, const std::string& p, const config& c, route& r, route_info& info) {
    const auto f = map(n, p,
                       {"name", "match", "mode", "topic", "key", "cloudevents", "timeout", "success_status",
                        "max_body_bytes", "headers", "idempotency", "canary"});
    if (!f || n.IsNull()) {
        if (n.IsNull()) fail(n, p, "map expected");
        return false;
    }
    r.line = n.Mark().line + 1;

    get_name(*f, n, p, "route", r.name, info.name_node);

    // match
    std::vector<std::string> params;
    if (const entry* e = find(*f, "match")) {
        parse_match(e->value, p + ".match", r, info, params);
    } else {
        fail(n, p, "missing required key 'match' (with at least 'path')");
    }

    // mode
    if (const entry* e = find(*f, "mode")) {
        if (auto v = scalar(e->value, p + ".mode")) {
            if (const auto m = value_of(mode_names, *v)) r.mode = *m, info.mode_known = true;
            if (!info.mode_known) {
                fail(e->value, p + ".mode",
                     "unknown mode '" + *v + "' (expected forward, event, commit, shadow or reply)");
            }
        }
    } else {
        fail(n, p, "missing required key 'mode' (forward, event, commit, shadow or reply)");
    }
    // canary: a second mode for a share of the traffic
    if (const entry* e = find(*f, "canary")) parse_canary(e->value, p + ".canary", r, info);
    // A forward route whose canary publishes needs everything a publishing route needs.
    const bool forward =
        info.mode_known && r.mode == mode::forward && !(r.canary_percent_bp > 0 && produces(r.canary_mode));
    const char* mode_name = to_string(r.mode == mode::forward ? r.canary_mode : r.mode);

    // keys that only Kafka-producing routes use
    for (const char* k : {"topic", "key", "cloudevents", "headers", "idempotency"}) {
        if (const entry* e = find(*f, k); e && forward) {
            fail(e->key, join(p, k), std::string(k) + " is not used by forward routes");
        }
    }
    const bool check_params = info.path_valid;

    // topic
    if (const entry* e = find(*f, "topic"); e && !forward) {
        if (auto v = scalar(e->value, p + ".topic")) {
            if (check_topic(e->value, p + ".topic", *v, params, check_params)) r.topic = std::move(*v);
        }
    } else if (!e && info.mode_known && !forward) {
        fail(n, p, std::string("missing required key 'topic' (") + mode_name + " routes publish to it)");
    }

    // key
    if (const entry* e = find(*f, "key"); e && !forward) {
        if (auto v = scalar(e->value, p + ".key")) parse_key(e->value, p + ".key", *v, params, check_params, r.key);
    }

    // cloudevents
    if (const entry* e = find(*f, "cloudevents"); e && !forward) {
        const std::string cp = p + ".cloudevents";
        if (const auto ce = map(e->value, cp, {"type", "source"})) {
            get_string(*ce, "type", cp, r.ce_type);
            get_string(*ce, "source", cp, r.ce_source);
        }
    }
    if (r.ce_source.empty() && !forward) r.ce_source = c.defaults.ce_source;

    get_duration(*f, "timeout", p, r.timeout);

    // idempotency: Idempotency-Key handling (always honoured when sent)
    if (const entry* e = find(*f, "idempotency"); e && !forward) {
        if (auto v = scalar(e->value, p + ".idempotency")) {
            if (*v == "required") {
                r.idempotency_required = true;
            } else if (*v != "optional") {
                fail(e->value, p + ".idempotency", "must be optional or required, got '" + *v + "'");
            }
        }
    }

    // success_status
    if (info.mode_known) {
        if (r.mode == mode::commit) r.success_status = 200;
        if (r.mode == mode::event) r.success_status = 202;
    }
    if (const entry* e = find(*f, "success_status"); e && info.mode_known) {
        const std::string sp = p + ".success_status";
        int status = 0;
        get_int(*f, "success_status", p, status, 100, 599);
        if (status != 0) {
            if (r.mode == mode::commit) {
                if (status == 200 || status == 201 || status == 202 || status == 204) {
                    r.success_status = status;
                } else {
                    fail(e->value, sp, "commit routes answer 200, 201, 202 or 204, got " + std::to_string(status));
                }
            } else if (r.mode == mode::event) {
                if (status != 202)
                    fail(e->value, sp,
                         "event routes answer 202 (accepted, not yet durable), got " + std::to_string(status));
            } else {
                fail(e->key, sp, std::string("success_status is not used by ") + mode_name + " routes");
            }
        }
    }

    get_size(*f, "max_body_bytes", p, r.max_body_bytes, max_body_limit);

    // headers
    if (!forward) get_header_names(*f, "headers", p, r.headers);
    return true;
}

// canary: {mode: event, percent: 10}
void loader::parse_canary(const YAML::Node& n, const std::string& p, route& r, const route_info& info) {
    const auto f = map(n, p, {"mode", "percent"});
    if (!f) return;
    bool mode_ok = false;
    if (const entry* e = find(*f, "mode")) {
        if (auto v = scalar(e->value, p + ".mode")) {
            if (const auto m = value_of(mode_names, *v)) r.canary_mode = *m, mode_ok = true;
            if (!mode_ok) {
                fail(e->value, p + ".mode",
                     "unknown mode '" + *v + "' (expected forward, event, commit, shadow or reply)");
            } else if (info.mode_known && r.canary_mode == r.mode) {
                fail(e->value, p + ".mode", "the canary mode must differ from the route's mode '" + *v + "'");
                mode_ok = false;
            }
        }
    } else {
        fail(n, p, "missing required key 'mode' (the mode the canary share takes)");
    }
    const entry* e = find(*f, "percent");
    if (!e) {
        fail(n, p, "missing required key 'percent' (0-100, the share of requests that take the canary mode)");
        return;
    }
    auto v = scalar(e->value, p + ".percent");
    if (!v) return;
    const auto s = std::string(trim(*v));
    // Basis points from a decimal with at most two fractional digits: "12.5" -> 1250.
    long long whole = 0, frac = 0;
    int frac_digits = 0;
    std::size_t i = 0;
    bool ok = !s.empty() && s.size() <= 6;
    for (; ok && i < s.size() && s[i] != '.'; ++i) {
        if (!is_digit(s[i]))
            ok = false;
        else
            whole = whole * 10 + (s[i] - '0');
    }
    if (ok && i < s.size()) {
        ++i;
        if (i == s.size()) ok = false;
        for (; ok && i < s.size(); ++i) {
            if (!is_digit(s[i]) || ++frac_digits > 2)
                ok = false;
            else
                frac = frac * 10 + (s[i] - '0');
        }
    }
    if (ok && s[0] == '.') ok = false;
    if (frac_digits == 1) frac *= 10;
    if (!ok) {
        fail(e->value, p + ".percent", "a number from 0 to 100 with at most two decimals expected, got '" + *v + "'");
        return;
    }
    const long long bp = whole * 100 + frac;
    if (bp > 10'000) {
        fail(e->value, p + ".percent", "must be between 0 and 100, got '" + *v + "'");
        return;
    }
    if (mode_ok) r.canary_percent_bp = static_cast<int>(bp);
}

void loader::parse_match(const YAML::Node& n, const std::string& p, route& r, route_info& info,
                         std::vector<std::string>& params) {
    const auto f = map(n, p, {"methods", "method", "path"});
    if (!f) return;
    const entry* many = find(*f, "methods");
    const entry* one = find(*f, "method");
    if (many && one) {
        fail(one->key, p + ".method", "use either 'method' or 'methods', not both");
    } else if (many || one) {
        std::vector<std::pair<YAML::Node, std::string>> items;
        if (many) {
            items = list(many->value, p + ".methods");
            if (many->value.IsSequence() && many->value.size() == 0) {
                fail(many->value, p + ".methods", "must not be empty (leave it out to match any method)");
            }
        } else if (auto v = scalar(one->value, p + ".method")) {
            items.emplace_back(one->value, std::move(*v));
        }
        for (auto& [node, m] : items) {
            if (!is_token(m)) {
                fail(node, p + (many ? ".methods" : ".method"), "invalid HTTP method '" + m + "'");
                continue;
            }
            auto u = upper(m);
            if (std::find(r.methods.begin(), r.methods.end(), u) == r.methods.end()) r.methods.push_back(std::move(u));
        }
    }
    const entry* e = find(*f, "path");
    if (!e) {
        fail(n, p, "missing required key 'path'");
        return;
    }
    auto v = scalar(e->value, p + ".path");
    if (!v) return;
    if (check_path(e->value, p + ".path", *v, params, info.shape)) {
        r.path = std::move(*v);
        info.path_valid = true;
    }
}

bool loader::check_path(const YAML::Node& n, const std::string& p, const std::string& path,
                        std::vector<std::string>& params, std::string& shape) {
    if (path.empty() || path[0] != '/') {
        fail(n, p, "path must start with '/', got '" + path + "'");
        return false;
    }
    bool ok = true;
    std::size_t start = 1;
    while (true) {
        const auto slash = path.find('/', start);
        const bool last = slash == std::string::npos;
        const std::string seg = path.substr(start, last ? std::string::npos : slash - start);
        shape += '/';
        if (seg.empty()) {
            if (!last) {
                fail(n, p, "empty path segment in '" + path + "'");
                ok = false;
            }
        } else if (seg.find_first_of("{}") != std::string::npos) {
            const std::string name = seg.substr(1, seg.size() - 2);
            if (seg.front() != '{' || seg.back() != '}' || !is_ident(name)) {
                fail(n, p,
                     "path segment '" + seg + "' must be a literal or exactly '{name}' (name: [A-Za-z_][A-Za-z0-9_]*)");
                ok = false;
            } else if (std::find(params.begin(), params.end(), name) != params.end()) {
                fail(n, p, "duplicate path parameter '" + name + "'");
                ok = false;
            } else {
                params.push_back(name);
                shape += "{}";
            }
        } else if (const auto bad = std::find_if_not(seg.begin(), seg.end(), is_pchar); bad != seg.end()) {
            fail(n, p, std::string("invalid character '") + *bad + "' in path segment '" + seg + "'");
            ok = false;
        } else if (auto why = literal_segment_problem(seg)) {
            fail(n, p, "path segment '" + seg + "': " + *why);
            ok = false;
        } else {
            shape += upper_escapes(seg);
        }
        if (last) break;
        start = slash + 1;
    }
    return ok;
}

void loader::parse_key(const YAML::Node& n, const std::string& p, const std::string& v,
                       const std::vector<std::string>& params, bool check_params, key_source& out) {
    const auto starts = [&](std::string_view prefix) { return v.rfind(prefix, 0) == 0; };
    if (v == "correlation") {
        out = {key_kind::correlation, ""};
    } else if (starts("path:")) {
        const auto name = v.substr(5);
        if (!is_ident(name)) {
            fail(n, p, "invalid path parameter name in key '" + v + "'");
        } else if (check_params && std::find(params.begin(), params.end(), name) == params.end()) {
            fail(n, p, "key path parameter '" + name + "' is not in the route's path");
        } else {
            out = {key_kind::path, name};
        }
    } else if (starts("header:")) {
        const auto name = v.substr(7);
        if (!is_token(name)) {
            fail(n, p, "invalid header name in key '" + v + "'");
        } else {
            out = {key_kind::header, name};
        }
    } else if (starts("body:")) {
        const auto ptr = v.substr(5);
        if (!valid_json_pointer(ptr)) {
            fail(n, p, "invalid JSON pointer in key '" + v + "' (RFC 6901: starts with '/', '~' only as ~0 or ~1)");
        } else {
            out = {key_kind::body, ptr};
        }
    } else {
        fail(n, p, "invalid key '" + v + "' (expected path:NAME, header:NAME, body:/json/pointer or correlation)");
    }
}

}  // namespace handoff::config::detail
