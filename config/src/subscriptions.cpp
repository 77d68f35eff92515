// subscriptions: the receiving half (README, "Receiving half"), each entry a consumer group delivering to the
// local service.
#include "handoff/config/kafka_rules.hpp"
#include "loader.hpp"

#include <algorithm>
#include <iterator>

namespace handoff::config::detail {

void loader::parse_subscriptions(const YAML::Node& n, config& c) {
    if (n.IsNull()) return;
    if (!n.IsSequence()) {
        fail(n, "subscriptions", "list expected");
        return;
    }
    std::vector<YAML::Node> name_nodes;
    for (std::size_t i = 0; i < n.size(); ++i) {
        subscription s;
        YAML::Node name_node;
        if (!parse_subscription(n[i], "subscriptions[" + std::to_string(i) + "]", s, name_node)) continue;
        for (std::size_t j = 0; j < c.subscriptions.size(); ++j) {
            if (!s.name.empty() && c.subscriptions[j].name == s.name) {
                fail(name_node, "subscriptions[" + std::to_string(i) + "].name",
                     "duplicate subscription name '" + s.name + "' (also defined at line " +
                         std::to_string(c.subscriptions[j].line) + ")");
            }
        }
        c.subscriptions.push_back(std::move(s));
        subscription_index_.push_back(i);
    }
}

// An origin-form path for target.path / target.fallback_path: starts with '/', pchar and '/'
// only, not '//' (which a client could read as an authority).
bool loader::check_target_path(const YAML::Node& n, const std::string& p, const std::string& v) {
    if (v.empty() || v[0] != '/' || v.rfind("//", 0) == 0) {
        fail(n, p, "path must start with a single '/', got '" + v + "'");
        return false;
    }
    if (const auto bad = std::find_if(v.begin(), v.end(), [](char ch) { return ch != '/' && !is_pchar(ch); });
        bad != v.end()) {
        fail(n, p, std::string("invalid character '") + *bad + "' in path '" + v + "'");
        return false;
    }
    return true;
}

bool loader::parse_subscription(const YAML::Node& n, const std::string& p, subscription& s, YAML::Node& name_node) {
    const auto f =
        map(n, p,
            {"name", "topics", "group", "target", "ordering", "concurrency", "timeout", "retry", "dead_letter_topic",
             "reply_topic", "reply_topics", "reply_headers", "auto_offset_reset", "headers", "properties"});
    if (!f || n.IsNull()) {
        if (n.IsNull()) fail(n, p, "map expected");
        return false;
    }
    s.line = n.Mark().line + 1;
    get_name(*f, n, p, "subscription", s.name, name_node);
    if (const entry* e = find(*f, "topics")) {
        const auto tp = p + ".topics";
        for (auto& [node, t] : list(e->value, tp)) {
            if (t.find('{') != std::string::npos) {
                fail(node, tp, "topic templates are not allowed in subscriptions");
            } else if (check_topic(node, tp, t, {}, false) &&
                       std::find(s.topics.begin(), s.topics.end(), t) == s.topics.end()) {
                s.topics.push_back(t);
            }
        }
        if (e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 0))
            fail(e->value, tp, "must not be empty");
    } else {
        fail(n, p, "missing required key 'topics' (a list of topic names)");
    }
    if (find(*f, "group")) {
        get_string(*f, "group", p, s.group);
    } else {
        fail(n, p, "missing required key 'group' (the Kafka consumer group id)");
    }
    if (const entry* e = find(*f, "target")) {
        const auto tp = p + ".target";
        if (const auto t = map(e->value, tp, {"method", "path", "fallback_path"})) {
            if (const entry* m = find(*t, "method")) {
                if (auto v = scalar(m->value, tp + ".method")) {
                    if (*v == "original") {
                        s.target.method.clear();
                    } else if (!is_token(*v)) {
                        fail(m->value, tp + ".method", "invalid HTTP method '" + *v + "' (or 'original')");
                    } else {
                        s.target.method = upper(*v);
                    }
                }
            }
            if (const entry* m = find(*t, "path")) {
                if (auto v = scalar(m->value, tp + ".path")) {
                    if (*v == "original") {
                        s.target.path.clear();
                    } else if (check_target_path(m->value, tp + ".path", *v)) {
                        s.target.path = *v;
                    }
                }
            }
            if (const entry* m = find(*t, "fallback_path")) {
                if (auto v = scalar(m->value, tp + ".fallback_path")) {
                    if (check_target_path(m->value, tp + ".fallback_path", *v)) s.target.fallback_path = *v;
                }
                if (!s.target.path.empty()) {
                    fail(m->key, tp + ".fallback_path", "fallback_path is only used with path: original");
                }
            }
        }
    }
    get_enum(*f, "ordering", p, s.ordering, ordering_names);
    get_int(*f, "concurrency", p, s.concurrency, 1, 10'000);
    get_duration(*f, "timeout", p, s.timeout);
    if (const entry* e = find(*f, "retry")) {
        const auto rp = p + ".retry";
        if (const auto r = map(e->value, rp, {"attempts", "backoff_base", "backoff_cap", "jitter"})) {
            get_int(*r, "attempts", rp, s.retry.attempts, 1, 1'000'000);
            get_duration(*r, "backoff_base", rp, s.retry.backoff_base);
            get_duration(*r, "backoff_cap", rp, s.retry.backoff_cap);
            get_enum(*r, "jitter", rp, s.retry.jitter, jitter_names);
            if (s.retry.backoff_cap < s.retry.backoff_base) {
                if (const entry* c = find(*r, "backoff_cap")) {
                    fail(c->value, rp + ".backoff_cap", "must not be smaller than backoff_base");
                } else if (const entry* b = find(*r, "backoff_base")) {
                    fail(b->value, rp + ".backoff_base", "must not be larger than backoff_cap (30s by default)");
                }
            }
        }
    }
    get_topic(*f, "dead_letter_topic", p, s.dead_letter_topic);
    get_topic(*f, "reply_topic", p, s.reply_topic);
    for (const char* t : {"dead_letter_topic", "reply_topic"}) {
        const entry* e = find(*f, t);
        const std::string& v = std::string(t) == "reply_topic" ? s.reply_topic : s.dead_letter_topic;
        if (e && !v.empty() && std::find(s.topics.begin(), s.topics.end(), v) != s.topics.end()) {
            fail(e->value, join(p, t), std::string(t) + " must not be one of the subscribed topics (it would loop)");
        }
    }
    if (const entry* e = find(*f, "reply_topics")) {
        const auto path = join(p, "reply_topics");
        for (auto& [node, t] : list(e->value, path)) {
            // A pattern: a topic name in which '*' stands for any run of topic characters.
            std::string probe = t;
            std::replace(probe.begin(), probe.end(), '*', 'x');
            if (t.find('{') != std::string::npos) {
                fail(node, path, "topic templates are not allowed here");
            } else if (check_topic(node, path, probe, {}, false)) {
                s.reply_topics.push_back(t);
            }
        }
    }
    // Without reply_topic, reply_headers still apply to replies that `reply` routes ask for.
    get_header_names(*f, "reply_headers", p, s.reply_headers);
    get_enum(*f, "auto_offset_reset", p, s.auto_offset_reset, offset_reset_names);
    get_header_names(*f, "headers", p, s.headers);
    if (const entry* e = find(*f, "properties"); e && !e->value.IsNull()) {
        const std::string pp = p + ".properties";
        if (!e->value.IsMap()) {
            fail(e->value, pp, "map expected");
        } else {
            for (auto it = e->value.begin(); it != e->value.end(); ++it) {
                if (!it->first.IsScalar()) {
                    fail(it->first, pp, "property names must be plain strings");
                    continue;
                }
                const std::string name = it->first.Scalar();
                static const char* owned[] = {"bootstrap.servers", "metadata.broker.list", "group.id",
                                              "enable.auto.offset.store", "auto.offset.reset"};
                if (name == "enable.auto.commit") {
                    // Off, nothing would ever commit the offsets Handoff stores after each
                    // delivery (only the shutdown commit would).
                    fail(it->first, pp + "." + name,
                         "'enable.auto.commit' is set by Handoff: it stores an offset once a record is delivered "
                         "and commits the stored offsets every auto.commit.interval.ms (set that instead)");
                    continue;
                }
                if (std::find(std::begin(owned), std::end(owned), name) != std::end(owned)) {
                    fail(it->first, pp + "." + name,
                         "'" + name + "' is set by Handoff (use the subscription's own keys)");
                    continue;
                }
                if (auto v = scalar(it->second, pp + "." + name)) {
                    if (const auto why = unsupported_sasl_mechanism(name, *v)) fail(it->second, pp + "." + name, *why);
                    s.properties[name] = std::move(*v);
                }
                places_.emplace(pp + "." + name, it->second);
            }
        }
    }
    return true;
}

}  // namespace handoff::config::detail
