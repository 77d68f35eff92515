// The top-level sections other than routes and subscriptions: listen, admin, upstream, defaults,
// routing, drain, limits, status, idempotency, replies, log and kafka.
#include "handoff/config/kafka_rules.hpp"
#include "loader.hpp"

namespace handoff::config::detail {

void loader::parse_listen(const YAML::Node& n, listen_config& l) {
    const std::string p = "listen";
    const auto f = map(n, p,
                       {"address", "port", "threads", "max_connections", "max_header_bytes", "max_body_bytes",
                        "max_pipelined", "header_timeout", "body_timeout", "idle_timeout", "write_timeout", "http2"});
    if (!f) return;
    get_ip(*f, "address", p, l.address);
    get_port(*f, "port", p, l.port);
    get_int(*f, "threads", p, l.threads, 1, 256);
    get_int(*f, "max_connections", p, l.max_connections, 1, 10'000'000);
    get_size(*f, "max_header_bytes", p, l.max_header_bytes);
    get_size(*f, "max_body_bytes", p, l.max_body_bytes, max_body_limit);
    // Deprecated: requests on a connection are read and answered one at a time, so nothing is
    // ever buffered ahead of the request being answered. Accepted (old configs keep loading), unused.
    if (const auto* e = find(*f, "max_pipelined")) {
        warn(e->value, p + ".max_pipelined",
             "deprecated and ignored: requests on a connection are read and answered one at a time, in order, "
             "so no pipelined request is ever buffered; remove the setting");
    }
    get_duration(*f, "header_timeout", p, l.header_timeout);
    get_duration(*f, "body_timeout", p, l.body_timeout);
    get_duration(*f, "idle_timeout", p, l.idle_timeout);
    get_duration(*f, "write_timeout", p, l.write_timeout);
    if (const entry* e = find(*f, "http2")) {
        const std::string h = p + ".http2";
        if (const auto g = map(e->value, h, {"enabled", "max_concurrent_streams", "initial_window_bytes"})) {
            get_bool(*g, "enabled", h, l.http2.enabled);
            get_int(*g, "max_concurrent_streams", h, l.http2.max_concurrent_streams, 1, 10'000);
            std::size_t window = l.http2.initial_window_bytes;
            get_size(*g, "initial_window_bytes", h, window);
            if (window < 65'535 || window > 0x7fffffff) {
                fail(find(*g, "initial_window_bytes")->value, h + ".initial_window_bytes",
                     "must be between 65535 bytes and 2GiB-1 (RFC 9113 §6.9.2)");
            } else {
                l.http2.initial_window_bytes = static_cast<std::uint32_t>(window);
            }
        }
    }
}

void loader::parse_admin(const YAML::Node& n, admin_config& a) {
    const std::string p = "admin";
    const auto f = map(n, p, {"enabled", "address", "port"});
    if (!f) return;
    get_bool(*f, "enabled", p, a.enabled);
    get_ip(*f, "address", p, a.address);
    get_port(*f, "port", p, a.port);
}

void loader::parse_upstream(const YAML::Node& n, upstream_config& u) {
    const std::string p = "upstream";
    const auto f = map(n, p,
                       {"host", "port", "max_connections", "max_idle", "idle_timeout", "connect_timeout", "timeout",
                        "max_response_bytes", "forwarded_for"});
    if (!f) return;
    get_string(*f, "host", p, u.host);
    get_port(*f, "port", p, u.port);
    get_int(*f, "max_connections", p, u.max_connections, 1, 1'000'000);
    // Unset, every connection the pool opened may stay open: closing connections that the next
    // burst opens again costs the service an accept and a close per request.
    u.max_idle = u.max_connections;
    get_int(*f, "max_idle", p, u.max_idle, 0, 1'000'000);
    get_duration(*f, "idle_timeout", p, u.idle_timeout);
    get_duration(*f, "connect_timeout", p, u.connect_timeout);
    get_duration(*f, "timeout", p, u.timeout);
    get_size(*f, "max_response_bytes", p, u.max_response_bytes);
    get_enum(*f, "forwarded_for", p, u.forwarded_for, forwarded_for_names);
}

void loader::parse_defaults(const YAML::Node& n, defaults_config& d) {
    const std::string p = "defaults";
    const auto f = map(n, p, {"mode", "timeout", "ce_source"});
    if (!f) return;
    if (const entry* e = find(*f, "mode")) {
        if (auto v = scalar(e->value, p + ".mode"); v && *v != "forward") {
            fail(e->value, p + ".mode",
                 "defaults.mode must be forward (unmatched requests have no topic to publish to), got '" + *v + "'");
        }
    }
    get_duration(*f, "timeout", p, d.timeout);
    get_string(*f, "ce_source", p, d.ce_source);
}

void loader::parse_routing(const YAML::Node& n, routing_config& r) {
    const auto f = map(n, "routing", {"trailing_slash"});
    if (!f) return;
    get_enum(*f, "trailing_slash", "routing", r.trailing_slash, trailing_slash_names);
}

void loader::parse_drain(const YAML::Node& n, drain_config& d) {
    const std::string p = "drain";
    const auto f = map(n, p, {"delay", "timeout"});
    if (!f) return;
    get_duration(*f, "delay", p, d.delay, /*allow_zero=*/true);
    get_duration(*f, "timeout", p, d.timeout);
}

void loader::parse_limits(const YAML::Node& n, limits_config& l) {
    const std::string p = "limits";
    const auto f = map(n, p, {"max_inflight_commits", "max_buffered_body_bytes"});
    if (!f) return;
    places_.emplace(p, n);
    get_int(*f, "max_inflight_commits", p, l.max_inflight_commits, 1, 10'000'000);
    get_size(*f, "max_buffered_body_bytes", p, l.max_buffered_body_bytes);
    if (const entry* e = find(*f, "max_buffered_body_bytes")) places_.emplace(p + ".max_buffered_body_bytes", e->value);
}

void loader::parse_status(const YAML::Node& n, status_config& s) {
    const std::string p = "status";
    const auto f = map(n, p, {"max_entries", "max_bytes", "ttl", "reply_bodies"});
    if (!f) return;
    get_int(*f, "max_entries", p, s.max_entries, 1, 100'000'000);
    get_size(*f, "max_bytes", p, s.max_bytes);
    get_duration(*f, "ttl", p, s.ttl);
    get_bool(*f, "reply_bodies", p, s.reply_bodies);
}

void loader::parse_idempotency(const YAML::Node& n, idempotency_config& i) {
    const std::string p = "idempotency";
    const auto f = map(n, p, {"max_entries", "max_bytes", "ttl"});
    if (!f) return;
    get_int(*f, "max_entries", p, i.max_entries, 1, 100'000'000);
    get_size(*f, "max_bytes", p, i.max_bytes);
    get_duration(*f, "ttl", p, i.ttl);
}

void loader::parse_replies(const YAML::Node& n, replies_config& r) {
    const std::string p = "replies";
    if (n.IsNull()) return;  // "replies:" with nothing: no reply topic
    const auto f = map(n, p, {"topic", "create", "refresh_interval"});
    if (!f) return;
    if (find(*f, "topic")) {
        get_topic(*f, "topic", p, r.topic);
    } else {
        fail(n, p, "missing required key 'topic' (the reply topic this process consumes)");
    }
    get_duration(*f, "refresh_interval", p, r.refresh_interval);
    if (r.refresh_interval < millis(100)) {
        fail(find(*f, "refresh_interval")->value, p + ".refresh_interval", "must be at least 100ms");
    }
    const entry* e = find(*f, "create");
    if (!e) return;
    // create: true | false | {enabled, partitions, replication_factor, retention}
    if (e->value.IsScalar()) {
        get_bool(*f, "create", p, r.create.enabled);
        return;
    }
    const auto cp = p + ".create";
    const auto c = map(e->value, cp, {"enabled", "partitions", "replication_factor", "retention"});
    if (!c) return;
    get_bool(*c, "enabled", cp, r.create.enabled);
    get_int(*c, "partitions", cp, r.create.partitions, 1, 100'000);
    get_int(*c, "replication_factor", cp, r.create.replication_factor, -1, 32'767);
    if (r.create.replication_factor == 0) {
        fail(find(*c, "replication_factor")->value, cp + ".replication_factor",
             "must be -1 (the broker's default) or at least 1, got 0");
    }
    get_duration(*c, "retention", cp, r.create.retention);
}

void loader::parse_state(const YAML::Node& n, state_config& s) {
    const std::string p = "state";
    const auto f = map(n, p,
                       {"shared", "topic", "partitions", "replication_factor", "retention", "claim_timeout",
                        "claim_wait", "refresh_interval", "replica"});
    if (!f) return;
    get_bool(*f, "shared", p, s.shared);
    if (find(*f, "topic")) get_topic(*f, "topic", p, s.topic);
    get_int(*f, "partitions", p, s.partitions, 1, 100'000);
    get_int(*f, "replication_factor", p, s.replication_factor, -1, 32'767);
    if (s.replication_factor == 0) {
        fail(find(*f, "replication_factor")->value, p + ".replication_factor",
             "must be -1 (the broker's default) or at least 1, got 0");
    }
    get_duration(*f, "retention", p, s.retention);
    get_duration(*f, "claim_timeout", p, s.claim_timeout);
    get_duration(*f, "claim_wait", p, s.claim_wait);
    get_duration(*f, "refresh_interval", p, s.refresh_interval);
    get_string(*f, "replica", p, s.replica);
    const auto at_least = [&](const char* key, millis v, millis min, const char* what) {
        if (const auto* e = find(*f, key); e && v < min) fail(e->value, p + "." + key, what);
    };
    at_least("claim_timeout", s.claim_timeout, millis(1000), "must be at least 1s");
    at_least("claim_wait", s.claim_wait, millis(100), "must be at least 100ms");
    at_least("refresh_interval", s.refresh_interval, millis(100), "must be at least 100ms");
    if (s.replica.size() > 200) fail(find(*f, "replica")->value, p + ".replica", "must be at most 200 characters");
}

void loader::parse_log(const YAML::Node& n, log_config& l) {
    const auto f = map(n, "log", {"level", "requests"});
    if (!f) return;
    get_bool(*f, "requests", "log", l.requests);
    const entry* e = find(*f, "level");
    if (!e) return;
    auto v = scalar(e->value, "log.level");
    if (!v) return;
    if (*v != "debug" && *v != "info" && *v != "warn" && *v != "error") {
        fail(e->value, "log.level", "must be debug, info, warn or error, got '" + *v + "'");
        return;
    }
    l.level = *v;
}

// `n` is the root when the section is absent (so "brokers is required" has a place).
void loader::parse_kafka(const YAML::Node& n, bool present, kafka_config& k) {
    const std::string p = "kafka";
    if (!present) {
        fail(n, p, "missing required section 'kafka' with 'brokers' (a bootstrap list, or 'embedded')");
        return;
    }
    places_.emplace(p, n);
    const auto f =
        map(n, p, {"brokers", "embedded_brokers", "flush_timeout", "stall_timeout", "properties", "allow_insecure"});
    if (!f) return;
    get_bool(*f, "allow_insecure", p, k.allow_insecure);
    if (const entry* e = find(*f, "brokers")) {
        places_.emplace(p + ".brokers", e->value);
        if (auto v = scalar(e->value, p + ".brokers")) {
            if (trim(*v) == "embedded") {
                k.embedded = true;
            } else if (trim(*v).empty()) {
                fail(e->value, p + ".brokers",
                     "must not be empty (a bootstrap list like '127.0.0.1:9092', or 'embedded')");
            } else {
                k.brokers = std::string(trim(*v));
            }
        }
    } else {
        fail(n, p, "missing required key 'brokers' (a bootstrap list like '127.0.0.1:9092', or 'embedded')");
    }
    get_int(*f, "embedded_brokers", p, k.embedded_brokers, 1, 16);
    get_duration(*f, "flush_timeout", p, k.flush_timeout);
    get_duration(*f, "stall_timeout", p, k.stall_timeout, /*allow_zero=*/true);

    const entry* props = find(*f, "properties");
    if (!props || props->value.IsNull()) return;
    const std::string pp = p + ".properties";
    places_.emplace(pp, props->value);
    if (!props->value.IsMap()) {
        fail(props->value, pp, "map expected");
        return;
    }
    for (auto it = props->value.begin(); it != props->value.end(); ++it) {
        if (!it->first.IsScalar()) {
            fail(it->first, pp, "property names must be plain strings");
            continue;
        }
        const std::string name = it->first.Scalar();
        const std::string path = pp + "." + name;
        if (name == "bootstrap.servers" || name == "metadata.broker.list") {
            fail(it->first, path, "set the brokers with kafka.brokers, not in properties");
            continue;
        }
        if (k.properties.count(name)) {
            fail(it->first, path, "duplicate property '" + name + "'");
            continue;
        }
        auto v = scalar(it->second, path);
        if (!v) continue;
        if (const auto why = unsupported_sasl_mechanism(name, *v)) fail(it->second, path, *why);
        property_nodes_.emplace(name, std::make_pair(it->second, *v));
        places_.emplace(path, it->second);
        k.properties.emplace(name, std::move(*v));
        if (is_secret_property(name)) k.secret_properties.push_back(name);
    }
}

}  // namespace handoff::config::detail
