// Cross-field rules, run after the sections they read: unique route names and path shapes, the
// Kafka durability guard, reply routes need replies.topic, the production profile, body limits
// against limits.max_buffered_body_bytes.
#include "loader.hpp"

#include "handoff/config/kafka_rules.hpp"
#include "handoff/config/reload.hpp"

#include <algorithm>

namespace handoff::config::detail {

// The production profile (X-4 in tests/CATALOGUE.md): every insecure Kafka setting is an error
// at the setting (or, for a missing security.protocol, at kafka.properties / kafka), unless
// kafka.allow_insecure is true.
void loader::check_profile(const config& c, const entry* profile) {
    if (c.profile != profile_kind::production || c.kafka.allow_insecure) return;
    const std::string where = profile ? " (line " + std::to_string(profile->value.Mark().line + 1) + ")" : "";
    for (auto s : insecure_kafka_settings(c)) {
        // c.subscriptions skips entries that failed to parse: name the entry of the file.
        if (std::size_t i = 0, end = 0; s.path.rfind("subscriptions[", 0) == 0 &&
                                        (end = s.path.find(']')) != std::string::npos &&
                                        (i = std::stoul(s.path.substr(14, end - 14))) < subscription_index_.size()) {
            s.path = "subscriptions[" + std::to_string(subscription_index_[i]) + s.path.substr(end);
        }
        fail(place_of(s.path), s.path,
             "not allowed with profile: production" + where + ": " + s.message +
                 "; set kafka.allow_insecure: true to run like this anyway");
    }
}

// A body over limits.max_buffered_body_bytes could never be read: every body limit fits it.
// Unset, the bound is the default (64MiB) or the largest body limit, whichever is larger.
void loader::check_body_bounds(config& c) {
    if (places_.find("limits.max_buffered_body_bytes") == places_.end()) {
        auto& bound = c.limits.max_buffered_body_bytes;
        bound = std::max(bound, c.listen.max_body_bytes);
        for (const auto& r : c.routes) bound = std::max(bound, r.max_body_bytes);
        return;
    }
    const auto bound = c.limits.max_buffered_body_bytes;
    const auto too_big = [&](std::size_t n, const std::string& what) {
        if (n <= bound) return;
        fail(place_of("limits.max_buffered_body_bytes"), "limits.max_buffered_body_bytes",
             std::to_string(bound) + " bytes is less than " + what + " (" + std::to_string(n) +
                 " bytes): such a body could never be read");
    };
    too_big(c.listen.max_body_bytes, "listen.max_body_bytes");
    for (const auto& r : c.routes) too_big(r.max_body_bytes, "the max_body_bytes of route '" + r.name + "'");
}

// state.shared: the topic is named, keeps entries at least as long as the views do (a replica that
// starts after an entry left the log would let a second request win its key), and is nobody
// else's topic (records of another kind on it would be skipped, and state records delivered).
void loader::check_state(const config& c) {
    const auto& s = c.state;
    if (!s.shared) return;
    if (s.topic.empty()) {
        fail(place_of("state"), "state",
             "missing required key 'topic' when shared is true (e.g. handoff.state.<service>)");
        return;
    }
    const auto too_short = [&](millis ttl, const char* what) {
        if (s.retention >= ttl) return;
        fail(place_of("state.retention"), "state.retention",
             std::to_string(s.retention.count()) + "ms is shorter than " + what + " (" + std::to_string(ttl.count()) +
                 "ms): an entry would leave the log while replicas still honour it");
    };
    too_short(c.idempotency.ttl, "idempotency.ttl");
    too_short(c.status.ttl, "status.ttl");
    // A claim older than claim_timeout is reported abandoned: a request that may legitimately still
    // be running (a commit or reply waiting up to its route's timeout) must not be.
    for (const auto& r : c.routes) {
        const auto t = r.timeout.count() > 0 ? r.timeout : c.defaults.timeout;
        if (s.claim_timeout >= t) continue;
        fail(place_of("state.claim_timeout"), "state.claim_timeout",
             std::to_string(s.claim_timeout.count()) + "ms is shorter than the timeout of route '" + r.name + "' (" +
                 std::to_string(t.count()) + "ms): a request still running would be reported abandoned");
        break;
    }
    const auto clash = [&](const std::string& other, const std::string& what) {
        if (other != s.topic) return;
        fail(place_of("state.topic"), "state.topic",
             "'" + s.topic + "' is also " + what + ": the state topic is its own");
    };
    clash(c.replies.topic, "replies.topic");
    for (const auto& r : c.routes) clash(r.topic, "the topic of route '" + r.name + "'");
    for (const auto& sub : c.subscriptions) {
        for (const auto& t : sub.topics) clash(t, "a topic of subscription '" + sub.name + "'");
        clash(sub.dead_letter_topic, "the dead-letter topic of subscription '" + sub.name + "'");
        clash(sub.reply_topic, "the reply topic of subscription '" + sub.name + "'");
    }
}

// Under trailing_slash: match, "/orders" and "/orders/" are one path.
void loader::check_unique(const std::vector<route>& routes, std::vector<route_info>& infos, trailing_slash slash) {
    if (slash == trailing_slash::match) {
        for (auto& info : infos) {
            if (info.shape.size() > 1 && info.shape.back() == '/') info.shape.pop_back();
        }
    }
    for (std::size_t b = 0; b < routes.size(); ++b) {
        for (std::size_t a = 0; a < b; ++a) {
            const auto where = [&](std::size_t i) { return "routes[" + std::to_string(infos[i].index) + "]"; };
            if (!routes[b].name.empty() && routes[a].name == routes[b].name) {
                fail(infos[b].name_node, where(b) + ".name",
                     "duplicate route name '" + routes[b].name + "' (also defined at line " +
                         std::to_string(routes[a].line) + ")");
            }
            if (!infos[a].path_valid || !infos[b].path_valid || infos[a].shape != infos[b].shape) continue;
            const auto& ma = routes[a].methods;
            const auto& mb = routes[b].methods;
            const bool overlap =
                ma.empty() || mb.empty() || std::any_of(ma.begin(), ma.end(), [&](const std::string& m) {
                    return std::find(mb.begin(), mb.end(), m) != mb.end();
                });
            if (overlap) {
                fail(infos[b].node, where(b),
                     "duplicate route: path '" + routes[b].path +
                         "' with overlapping methods is also defined at line " + std::to_string(routes[a].line) +
                         " (route '" + routes[a].name + "')");
            }
        }
    }
}

// Handoff always produces with the idempotent producer and acks=all (commit routes promise
// durability; event routes and dead-letter writes rely on it too), so a config that tries to
// weaken either is refused here, exactly as the producer would refuse it at start-up.
void loader::check_durability(const std::vector<route>& routes, const std::vector<route_info>& infos) {
    std::string names;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        if (!infos[i].mode_known || (routes[i].mode != mode::commit && routes[i].mode != mode::reply)) continue;
        names += (names.empty() ? "'" : ", '") + routes[i].name + "'";
    }
    const std::string why = names.empty() ? ": Handoff always produces with acks=all and enable.idempotence=true"
                                          : " conflicts with route(s) " + names +
                                                ": commit routes need acks=all and enable.idempotence=true";
    // The rule itself is weakened_durability (kafka_rules.hpp), which the producer asks too.
    for (const char* key : {"acks", "request.required.acks", "enable.idempotence"}) {
        const auto it = property_nodes_.find(key);
        if (it == property_nodes_.end()) continue;
        if (const auto v = weakened_durability(key, it->second.second)) {
            fail(it->second.first, std::string("kafka.properties.") + key, std::string(key) + "=" + *v + why);
        }
    }
}

// A route (or its canary) that answers with replies needs the reply topic this process consumes.
void loader::check_reply_topic(const config& c, const std::vector<route_info>& infos) {
    for (std::size_t i = 0; i < c.routes.size(); ++i) {
        const auto& r = c.routes[i];
        const bool replies = infos[i].mode_known && answers_with_replies(r);
        if (replies && c.replies.topic.empty()) {
            fail(infos[i].node, "routes[" + std::to_string(infos[i].index) + "]",
                 "route '" + r.name +
                     "' answers with replies: set replies.topic (the reply topic this process consumes)");
        }
    }
}

}  // namespace handoff::config::detail
