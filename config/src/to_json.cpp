// The config as JSON: `to_redacted_json` (admin /config) and the comparison behind
// `sections_needing_restart` (reload.cpp). Durations print as "5000ms", sizes as integers, enums by their
// names in values.hpp.
#include "handoff/config/load.hpp"

#include "to_json.hpp"
#include "values.hpp"

#include <algorithm>

namespace handoff::config {
namespace {

using namespace detail;  // the enum name tables, is_secret_property

std::string ms(millis d) { return std::to_string(d.count()) + "ms"; }

nlohmann::ordered_json key_json(const key_source& k) {
    switch (k.kind) {
        case key_kind::none: return nullptr;
        case key_kind::path: return "path:" + k.name;
        case key_kind::header: return "header:" + k.name;
        case key_kind::body: return "body:" + k.name;
        case key_kind::correlation: return "correlation";
    }
    return nullptr;
}

}  // namespace

nlohmann::ordered_json detail::config_json(const config& c, bool redact) {
    using json = nlohmann::ordered_json;
    json j;
    j["file"] = c.file;
    const auto& l = c.listen;
    j["listen"] = {{"address", l.address},
                   {"port", l.port},
                   {"threads", l.threads},
                   {"max_connections", l.max_connections},
                   {"max_header_bytes", l.max_header_bytes},
                   {"max_body_bytes", l.max_body_bytes},
                   {"header_timeout", ms(l.header_timeout)},
                   {"body_timeout", ms(l.body_timeout)},
                   {"idle_timeout", ms(l.idle_timeout)},
                   {"write_timeout", ms(l.write_timeout)},
                   {"http2",
                    {{"enabled", l.http2.enabled},
                     {"max_concurrent_streams", l.http2.max_concurrent_streams},
                     {"initial_window_bytes", l.http2.initial_window_bytes}}}};
    j["admin"] = {{"enabled", c.admin.enabled}, {"address", c.admin.address}, {"port", c.admin.port}};
    const auto& u = c.upstream;
    j["upstream"] = {{"host", u.host},
                     {"port", u.port},
                     {"max_connections", u.max_connections},
                     {"max_idle", u.max_idle},
                     {"idle_timeout", ms(u.idle_timeout)},
                     {"connect_timeout", ms(u.connect_timeout)},
                     {"timeout", ms(u.timeout)},
                     {"max_response_bytes", u.max_response_bytes},
                     {"forwarded_for", name_of(forwarded_for_names, u.forwarded_for)}};
    const auto& k = c.kafka;
    json props = json::object();
    for (const auto& [name, value] : k.properties) {
        const bool secret =
            std::find(k.secret_properties.begin(), k.secret_properties.end(), name) != k.secret_properties.end();
        props[name] = secret && redact ? "<redacted>" : value;
    }
    j["profile"] = name_of(profile_names, c.profile);
    j["kafka"] = {{"brokers", k.embedded ? "embedded" : k.brokers},
                  {"embedded", k.embedded},
                  {"embedded_brokers", k.embedded_brokers},
                  {"flush_timeout", ms(k.flush_timeout)},
                  {"stall_timeout", ms(k.stall_timeout)},
                  {"allow_insecure", k.allow_insecure},
                  {"properties", props}};
    j["defaults"] = {{"mode", name_of(mode_names, c.defaults.mode)},
                     {"timeout", ms(c.defaults.timeout)},
                     {"ce_source", c.defaults.ce_source}};
    j["routing"] = {{"trailing_slash", name_of(trailing_slash_names, c.routing.trailing_slash)}};
    j["log"] = {{"level", c.log.level}, {"requests", c.log.requests}};
    j["drain"] = {{"delay", ms(c.drain.delay)}, {"timeout", ms(c.drain.timeout)}};
    j["limits"] = {{"max_inflight_commits", c.limits.max_inflight_commits},
                   {"max_buffered_body_bytes", c.limits.max_buffered_body_bytes}};
    j["status"] = {{"max_entries", c.status.max_entries},
                   {"max_bytes", c.status.max_bytes},
                   {"ttl", ms(c.status.ttl)},
                   {"reply_bodies", c.status.reply_bodies}};
    j["idempotency"] = {{"max_entries", c.idempotency.max_entries},
                        {"max_bytes", c.idempotency.max_bytes},
                        {"ttl", ms(c.idempotency.ttl)}};
    j["state"] = {{"shared", c.state.shared},
                  {"topic", c.state.topic},
                  {"partitions", c.state.partitions},
                  {"replication_factor", c.state.replication_factor},
                  {"retention", ms(c.state.retention)},
                  {"claim_timeout", ms(c.state.claim_timeout)},
                  {"claim_wait", ms(c.state.claim_wait)},
                  {"refresh_interval", ms(c.state.refresh_interval)},
                  {"replica", c.state.replica}};
    if (!c.replies.topic.empty()) {
        j["replies"] = {{"topic", c.replies.topic},
                        {"create",
                         {{"enabled", c.replies.create.enabled},
                          {"partitions", c.replies.create.partitions},
                          {"replication_factor", c.replies.create.replication_factor},
                          {"retention", ms(c.replies.create.retention)}}},
                        {"refresh_interval", ms(c.replies.refresh_interval)}};
    }
    json routes = json::array();
    for (const auto& r : c.routes) {
        json m = {{"path", r.path}};
        if (!r.methods.empty()) m["methods"] = r.methods;
        json jr = {{"name", r.name}, {"match", m}, {"mode", name_of(mode_names, r.mode)}};
        if (!r.topic.empty()) jr["topic"] = r.topic;
        if (r.key.kind != key_kind::none) jr["key"] = key_json(r.key);
        if (!r.ce_type.empty() || !r.ce_source.empty()) {
            jr["cloudevents"] = json::object();
            if (!r.ce_type.empty()) jr["cloudevents"]["type"] = r.ce_type;
            if (!r.ce_source.empty()) jr["cloudevents"]["source"] = r.ce_source;
        }
        // Unset (0) timeouts and limits mean "the section default"; they are left out here.
        if (r.timeout.count() > 0) jr["timeout"] = ms(r.timeout);
        if (r.success_status) jr["success_status"] = r.success_status;
        if (r.max_body_bytes) jr["max_body_bytes"] = r.max_body_bytes;
        if (!r.headers.empty()) jr["headers"] = r.headers;
        if (r.idempotency_required) jr["idempotency"] = "required";
        if (r.canary_percent_bp > 0) {
            jr["canary"] = {{"mode", name_of(mode_names, r.canary_mode)}, {"percent", r.canary_percent_bp / 100.0}};
        }
        jr["line"] = r.line;
        routes.push_back(std::move(jr));
    }
    j["routes"] = std::move(routes);
    // subscriptions
    json subs = json::array();
    for (const auto& s : c.subscriptions) {
        json props = json::object();
        for (const auto& [name, value] : s.properties)
            props[name] = redact && is_secret_property(name) ? "<redacted>" : value;
        json js = {{"name", s.name},
                   {"topics", s.topics},
                   {"group", s.group},
                   {"target",
                    {{"method", s.target.method.empty() ? "original" : s.target.method},
                     {"path", s.target.path.empty() ? "original" : s.target.path}}},
                   {"ordering", name_of(ordering_names, s.ordering)},
                   {"concurrency", s.concurrency},
                   {"timeout", ms(s.timeout)},
                   {"retry",
                    {{"attempts", s.retry.attempts},
                     {"backoff_base", ms(s.retry.backoff_base)},
                     {"backoff_cap", ms(s.retry.backoff_cap)},
                     {"jitter", name_of(jitter_names, s.retry.jitter)}}},
                   {"auto_offset_reset", name_of(offset_reset_names, s.auto_offset_reset)},
                   {"headers", s.headers},
                   {"properties", props},
                   {"line", s.line}};
        if (!s.target.fallback_path.empty()) js["target"]["fallback_path"] = s.target.fallback_path;
        if (!s.dead_letter_topic.empty()) js["dead_letter_topic"] = s.dead_letter_topic;
        if (!s.reply_topic.empty()) js["reply_topic"] = s.reply_topic;
        if (!s.reply_topics.empty()) js["reply_topics"] = s.reply_topics;
        if (!s.reply_headers.empty()) js["reply_headers"] = s.reply_headers;
        subs.push_back(std::move(js));
    }
    j["subscriptions"] = std::move(subs);
    return j;
}

std::string to_redacted_json(const config& c) { return detail::config_json(c, /*redact=*/true).dump(2); }

}  // namespace handoff::config
