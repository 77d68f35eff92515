// Pure response builders: errors, the 504 "outcome unknown", a commit's success, and the stored
// form of a response (Idempotency-Key replays, replies). No I/O, no shared state.
#include "server/front.hpp"

#include <nlohmann/json.hpp>

namespace handoff::proxy::front {

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

outcome outcome_unknown(std::string_view message, const request_ids& ids, const std::string& topic, unsigned version) {
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

}  // namespace handoff::proxy::front
