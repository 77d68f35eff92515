#include "handoff/proxy/delivery/subscription_rules.hpp"

#include "handoff/common/http_rules.hpp"
#include "handoff/common/ids.hpp"
#include "handoff/config/kafka_rules.hpp"
#include "handoff/proxy/modes/record.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>

namespace handoff::proxy {

namespace {

namespace http = boost::beast::http;
using std::chrono::milliseconds;

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_pchar(char c) { return is_alnum(c) || (c != '\0' && std::strchr("-._~!$&'()*+,;=:@%", c) != nullptr); }

}  // namespace

const char* to_string(verdict v) noexcept {
    switch (v) {
        case verdict::done: return "done";
        case verdict::retry: return "retry";
        case verdict::connection: return "connection";
        case verdict::dead_letter: return "dead_letter";
    }
    return "unknown";
}

verdict classify(upstream_error error, int status) noexcept {
    switch (error) {
        case upstream_error::ok: break;
        case upstream_error::refused:
        case upstream_error::pool_exhausted: return verdict::connection;
        case upstream_error::timeout:
        case upstream_error::bad_response: return verdict::retry;
    }
    if (status >= 200 && status <= 299) return verdict::done;
    if (status == 408 || status == 429 || (status >= 500 && status <= 599)) return verdict::retry;
    return verdict::dead_letter;
}

milliseconds backoff(const config::retry_policy& policy, int retry, double unit_random) noexcept {
    const auto base = std::max<milliseconds::rep>(policy.backoff_base.count(), 1);
    const auto cap = std::max<milliseconds::rep>(policy.backoff_cap.count(), base);
    milliseconds::rep d = base;
    for (int i = 1; i < retry && d < cap; ++i) d = d > cap / 2 ? cap : d * 2;
    d = std::min(d, cap);
    if (policy.jitter == config::jitter::full) {
        const double u = std::clamp(unit_random, 0.0, 1.0);
        d = static_cast<milliseconds::rep>(std::floor(static_cast<double>(d) * u));
    }
    return milliseconds(d);
}

std::optional<milliseconds> parse_retry_after(std::string_view v, std::chrono::system_clock::time_point now) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        unsigned long long secs = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
        if (ec == std::errc::result_out_of_range)
            return milliseconds(std::numeric_limits<milliseconds::rep>::max() / 2);
        if (ec != std::errc{} || p != v.data() + v.size()) return std::nullopt;
        secs = std::min<unsigned long long>(secs, 100ull * 365 * 24 * 3600);
        return milliseconds(static_cast<milliseconds::rep>(secs) * 1000);
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    std::tm tm{};
    const std::string s(v);
    const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == nullptr || *end != '\0') return std::nullopt;
    const std::time_t t = timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    const auto at = std::chrono::system_clock::from_time_t(t);
    if (at <= now) return milliseconds(0);
    return std::chrono::duration_cast<milliseconds>(at - now);
}

milliseconds retry_delay(const config::retry_policy& policy, int retry, double unit_random,
                         std::optional<milliseconds> retry_after) noexcept {
    if (retry_after) return std::min(*retry_after, std::max(policy.backoff_cap, policy.backoff_base));
    return backoff(policy, retry, unit_random);
}

bool is_framing_header(std::string_view name) noexcept {
    static constexpr std::string_view names[] = {
        "host", "content-length", "transfer-encoding", "connection",       "upgrade",
        "te",   "trailer",        "keep-alive",        "proxy-connection", "expect"};
    return std::any_of(std::begin(names), std::end(names), [&](std::string_view n) { return iequals(n, name); });
}

// The same rules as the front's request targets (target_problem: dot segments raw or encoded,
// encoded '/', '\\' and NUL, malformed escapes, empty segments), on top of the characters an
// origin-form path may hold: a record cannot make the local service see a path that a caller of
// the front could not have sent.
bool safe_origin_path(std::string_view path) noexcept {
    if (path.empty() || path[0] != '/' || path.size() > 8192) return false;
    if (!std::all_of(path.begin(), path.end(), [](char c) { return c == '/' || is_pchar(c); })) return false;
    try {
        return !target_problem(path);
    } catch (...) {  // std::bad_alloc from the message: refuse
        return false;
    }
}

bool safe_query(std::string_view q) noexcept {
    if (q.size() > 8192 ||
        !std::all_of(q.begin(), q.end(), [](char c) { return c == '/' || c == '?' || is_pchar(c); })) {
        return false;
    }
    try {
        return !target_problem("/?" + std::string(q));  // every '%' a valid escape
    } catch (...) {
        return false;
    }
}

const std::string* find_header(const consumed_record& r, std::string_view name) noexcept {
    for (const auto& h : r.headers) {
        if (iequals(h.name, name)) return &h.value;
    }
    return nullptr;
}

delivery_request build_delivery_request(const config::subscription& sub, const config::upstream_config& upstream,
                                        const consumed_record& r) {
    delivery_request out;
    // method
    std::string method = sub.target.method;
    if (method.empty()) {
        const auto* m = find_header(r, "handoff_method");
        method = (m && is_token(*m) && m->size() <= 32) ? *m : "POST";
    }
    // target
    std::string target;
    if (!sub.target.path.empty()) {
        target = sub.target.path;
    } else {
        const auto* p = find_header(r, "handoff_path");
        if (p && safe_origin_path(*p)) {
            target = *p;
            if (const auto* q = find_header(r, "handoff_query"); q && !q->empty() && safe_query(*q)) target += "?" + *q;
        } else if (!sub.target.fallback_path.empty()) {
            target = sub.target.fallback_path;
        } else {
            out.problem = p ? "unsafe handoff_path header (not an origin-form path)"
                            : "no handoff_path header and no fallback_path";
            return out;
        }
    }
    http::request<http::string_body> req;
    const http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
        req.method_string(method);
    } else {
        req.method(verb);
    }
    req.target(target);
    req.version(11);
    req.set(http::field::host, upstream.host.find(':') != std::string::npos
                                   ? "[" + upstream.host + "]:" + std::to_string(upstream.port)
                                   : upstream.host + ":" + std::to_string(upstream.port));

    // Names we set ourselves; a record header never overrides them.
    const auto reserved = [](std::string_view n) {
        return (n.size() > 3 && iequals(n.substr(0, 3), "ce-")) || iequals(n, "content-type") ||
               iequals(n, "x-correlation-id") || iequals(n, "traceparent") || iequals(n, "tracestate") ||
               iequals(n, "baggage");
    };
    // CloudEvents HTTP binary mode: every ce_<attr> record header becomes ce-<attr>.
    for (const auto& h : r.headers) {
        const std::string n = lower(h.name);
        if (n.size() > 3 && n.compare(0, 3, "ce_") == 0) {
            const std::string attr = n.substr(3);
            if (attr.size() > 20 ||
                !std::all_of(attr.begin(), attr.end(),
                             [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }) ||
                !safe_header_value(h.value) || req.find("ce-" + attr) != req.end()) {
                ++out.dropped_headers;
                continue;
            }
            req.set("ce-" + attr, h.value);
        }
    }
    if (const auto* ct = find_header(r, "content-type")) {
        if (safe_header_value(*ct))
            req.set(http::field::content_type, *ct);
        else
            ++out.dropped_headers;
    }
    // The caller's label when the record carries a usable one, else the request ID.
    if (const auto* label = find_header(r, "handoff_correlation_id"); label && valid_correlation_id(*label)) {
        req.set("X-Correlation-ID", *label);
    } else if (const auto* id = find_header(r, "ce_id"); id && valid_correlation_id(*id)) {
        req.set("X-Correlation-ID", *id);
    }
    if (const auto* tp = find_header(r, "traceparent"); tp && valid_traceparent(*tp)) {
        req.set("traceparent", *tp);
        if (const auto* ts = find_header(r, "tracestate"); ts && safe_header_value(*ts)) req.set("tracestate", *ts);
    }
    if (const auto* bg = find_header(r, "baggage"); bg && safe_header_value(*bg)) req.set("baggage", *bg);

    for (const auto& name : sub.headers) {
        if (!is_token(name) || is_framing_header(name) || is_hop_by_hop(name) || reserved(name)) continue;
        for (const auto& h : r.headers) {
            if (!iequals(h.name, name)) continue;
            if (!safe_header_value(h.value)) {
                ++out.dropped_headers;
                continue;
            }
            req.insert(name, h.value);
        }
    }
    req.body() = r.value;
    req.prepare_payload();
    out.request = std::move(req);
    return out;
}

kafka_record make_dead_letter(const consumed_record& r, const std::string& dlq_topic, int attempts, int last_status,
                              const std::string& error) {
    kafka_record k;
    k.topic = dlq_topic;
    k.key = r.key;
    k.value = r.value;
    k.headers.reserve(r.headers.size() + 6);
    for (const auto& h : r.headers) {
        if (h.name.rfind("handoff_dlq_", 0) == 0) continue;
        k.headers.push_back(h);
    }
    k.headers.push_back({"handoff_dlq_topic", r.topic});
    k.headers.push_back({"handoff_dlq_partition", std::to_string(r.partition)});
    k.headers.push_back({"handoff_dlq_offset", std::to_string(r.offset)});
    k.headers.push_back({"handoff_dlq_attempts", std::to_string(attempts)});
    k.headers.push_back({"handoff_dlq_status", last_status > 0 ? std::to_string(last_status) : std::string()});
    k.headers.push_back({"handoff_dlq_error", error});
    if (const auto* label = find_header(r, "handoff_correlation_id")) {
        k.correlation_id = *label;
    } else if (const auto* id = find_header(r, "ce_id")) {
        k.correlation_id = *id;
    }
    return k;
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
    // '*' matches any run (empty included); everything else matches itself. Iterative with one
    // backtrack point: linear in practice, never exponential.
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < topic.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (p < pattern.size() && pattern[p] == topic[t]) {
            ++p;
            ++t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

std::optional<std::string> reply_topic_problem(const config::subscription& sub, const consumed_record& r) {
    const auto* t = find_header(r, "handoff_reply_topic");
    if (t == nullptr) return std::nullopt;
    if (!config::valid_topic_name(*t)) return "handoff_reply_topic is not a legal topic name";
    if (std::find(sub.topics.begin(), sub.topics.end(), *t) != sub.topics.end()) {
        return "handoff_reply_topic names a subscribed topic (it would loop)";
    }
    if (*t == sub.reply_topic) return std::nullopt;
    for (const auto& pattern : sub.reply_topics) {
        if (topic_matches(pattern, *t)) return std::nullopt;
    }
    return "handoff_reply_topic '" + *t + "' is not among this subscription's reply_topics";
}

std::string reply_topic_for(const config::subscription& sub, const consumed_record& r) {
    if (const auto* t = find_header(r, "handoff_reply_topic"); t && !reply_topic_problem(sub, r)) return *t;
    return sub.reply_topic;
}

kafka_record make_reply(const config::subscription& sub, const consumed_record& r,
                        const http::response<http::string_body>& response, const std::string& reply_id,
                        std::chrono::system_clock::time_point now) {
    kafka_record k;
    k.topic = reply_topic_for(sub, r);
    const auto* id = find_header(r, "ce_id");
    const std::string request_id = id ? *id : std::string();
    const auto* label = find_header(r, "handoff_correlation_id");
    if (!request_id.empty()) k.key = request_id;
    k.value = response.body();
    k.correlation_id = label ? *label : request_id;
    auto& h = k.headers;
    h.push_back({"ce_specversion", "1.0"});
    h.push_back({"ce_id", reply_id});
    h.push_back({"ce_source", "/handoff/subscriptions/" + sub.name});
    h.push_back({"ce_type", "handoff.reply"});
    h.push_back({"ce_time", rfc3339_millis(now)});
    h.push_back({"handoff_request_id", request_id});
    h.push_back({"handoff_correlation_id", k.correlation_id});
    h.push_back({"handoff_reply_status", std::to_string(response.result_int())});
    if (auto it = response.find(http::field::content_type); it != response.end()) {
        h.push_back({"content-type", std::string(it->value())});
    }
    if (const auto* tp = find_header(r, "traceparent")) h.push_back({"traceparent", *tp});
    for (const auto& name : sub.reply_headers) {
        const auto ln = lower(name);
        for (auto [it, end] = response.equal_range(name); it != end; ++it) {
            h.push_back({"handoff_reply_header_" + ln, std::string(it->value())});
        }
    }
    return k;
}

void offset_tracker::add(std::int64_t offset) {
    open_.insert(offset);
    high_ = std::max(high_, offset);
}

std::optional<std::int64_t> offset_tracker::resolve(std::int64_t offset) {
    open_.erase(offset);
    const std::int64_t next = open_.empty() ? high_ + 1 : *open_.begin();
    if (next > stored_) {
        stored_ = next;
        return next;
    }
    return std::nullopt;
}

}  // namespace handoff::proxy
