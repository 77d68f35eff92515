#include "handoff/proxy/modes/record.hpp"

#include "handoff/common/ids.hpp"
#include "handoff/config/kafka_rules.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace handoff::proxy {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

const std::string* find_param(const path_params& params, std::string_view name) {
    for (const auto& [k, v] : params) {
        if (k == name) return &v;
    }
    return nullptr;
}

}  // namespace

std::optional<std::string> render_topic(std::string_view tmpl, const path_params& params) {
    std::string out;
    out.reserve(tmpl.size() + 16);
    std::size_t i = 0;
    while (i < tmpl.size()) {
        if (tmpl[i] == '{') {
            const auto close = tmpl.find('}', i);
            if (close == std::string_view::npos) return std::nullopt;
            const auto* v = find_param(params, tmpl.substr(i + 1, close - i - 1));
            if (!v) return std::nullopt;
            out += *v;
            i = close + 1;
        } else {
            out.push_back(tmpl[i++]);
        }
    }
    if (!config::valid_topic_name(out)) return std::nullopt;
    return out;
}

std::string rfc3339_millis(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto secs = floor<seconds>(t);  // before 1970 too: milliseconds are never negative
    const auto ms = static_cast<int>(duration_cast<milliseconds>(t - secs).count());
    // The date and time of day change once a second: formatted then, per thread (the hot path
    // stamps every record).
    thread_local std::time_t cached_second = -1;
    thread_local char cached[64];  // "YYYY-MM-DDTHH:MM:SS" and its NUL
    const std::time_t tt = system_clock::to_time_t(secs);
    if (tt != cached_second) {
        std::tm tm{};
        gmtime_r(&tt, &tm);
        // system_clock counts nanoseconds in 64 bits: years 1677-2262, always four digits.
        std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_second = tt;
    }
    std::string out;
    out.reserve(24);
    out.append(cached, 19);
    out += '.';
    out += static_cast<char>('0' + ms / 100);
    out += static_cast<char>('0' + ms / 10 % 10);
    out += static_cast<char>('0' + ms % 10);
    out += 'Z';
    return out;
}

key_result extract_key(const config::route& route, const request_view& req, std::string_view body,
                       const path_params& params, const std::string& correlation_id) {
    key_result out;
    out.err = error::missing_key;
    switch (route.key.kind) {
        case config::key_kind::none: break;
        case config::key_kind::correlation: out.key = correlation_id; break;
        case config::key_kind::path: {
            const auto* v = find_param(params, route.key.name);
            if (!v) {
                out.message = "path parameter '" + route.key.name + "' is missing";
                return out;
            }
            out.key = *v;
            break;
        }
        case config::key_kind::header: {
            const auto it = req.headers.find(route.key.name);
            if (it == req.headers.end()) {
                out.message = "header '" + route.key.name + "' is required by this route as the record key";
                return out;
            }
            out.key = std::string(it->value());
            break;
        }
        case config::key_kind::body: {
            const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
            if (doc.is_discarded()) {
                out.message = "the body must be JSON: the record key comes from " + route.key.name;
                return out;
            }
            try {
                const nlohmann::json::json_pointer ptr(route.key.name);
                if (!doc.contains(ptr)) {
                    out.message = "the body has no value at " + route.key.name + " for the record key";
                    return out;
                }
                const auto& v = doc.at(ptr);
                out.key = v.is_string() ? v.get<std::string>()
                                        : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            } catch (const nlohmann::json::exception&) {
                out.message = "the body has no value at " + route.key.name + " for the record key";
                return out;
            }
            break;
        }
    }
    return out;
}

record_result build_record(const config::route& route, const config::defaults_config& defaults, const request_view& req,
                           std::string& body, const path_params& params, const request_ids& ids,
                           std::chrono::system_clock::time_point now) {
    record_result out;
    kafka_record rec;

    auto topic = render_topic(route.topic, params);
    if (!topic) {
        out.err = error::invalid_topic;
        out.message = "the request's path parameters do not make a legal Kafka topic name from '" + route.topic + "'";
        return out;
    }
    rec.topic = std::move(*topic);

    auto key = extract_key(route, req, body, params, ids.correlation);
    if (!key.message.empty()) {
        out.err = key.err;
        out.message = std::move(key.message);
        return out;
    }
    rec.key = std::move(key.key);

    auto& h = rec.headers;
    h.reserve(13 + route.headers.size());
    h.push_back({"ce_specversion", "1.0"});
    h.push_back({"ce_id", ids.request});
    h.push_back({"ce_source", route.ce_source.empty() ? defaults.ce_source : route.ce_source});
    h.push_back({"ce_type", route.ce_type.empty() ? "handoff." + route.name : route.ce_type});
    h.push_back({"ce_time", rfc3339_millis(now)});
    namespace http = boost::beast::http;
    if (auto it = req.headers.find(http::field::content_type); it != req.headers.end()) {
        h.push_back({"content-type", std::string(it->value())});
    }
    const auto tp = req.headers.find("traceparent");
    if (tp != req.headers.end() && valid_traceparent(tp->value())) {
        h.push_back({"traceparent", std::string(tp->value())});
        if (auto ts = req.headers.find("tracestate"); ts != req.headers.end()) {
            h.push_back({"tracestate", std::string(ts->value())});
        }
    } else {
        h.push_back({"traceparent", make_traceparent()});
    }
    if (auto bg = req.headers.find("baggage"); bg != req.headers.end()) {
        h.push_back({"baggage", std::string(bg->value())});
    }
    h.push_back({"handoff_correlation_id", ids.correlation});
    h.push_back({"handoff_method", std::string(req.method)});
    h.push_back({"handoff_path", std::string(req.path)});
    if (!req.query.empty()) h.push_back({"handoff_query", std::string(req.query)});

    // The allow-list is the only way request headers enter an event; credentials are never
    // copied unless the route names them, because they are on this list only when named.
    for (const auto& name : route.headers) {
        const auto lname = lower(name);
        for (auto [it, end] = req.headers.equal_range(name); it != end; ++it) {
            h.push_back({lname, std::string(it->value())});
        }
    }

    rec.value = std::move(body);
    rec.correlation_id = ids.correlation;
    out.record = std::move(rec);
    return out;
}

}  // namespace handoff::proxy
