#include "handoff/proxy/modes/record.hpp"

#include "handoff/common/ids.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace handoff::proxy;
namespace http = boost::beast::http;
using handoff::config::key_kind;

namespace {

struct fixture {
    handoff::config::route route;
    handoff::config::defaults_config defaults;
    http::fields headers;
    std::string body = R"({"customer":{"id":"c-42","n":7}})";
    path_params params{{"region", "eu"}, {"id", "17"}};

    fixture() {
        route.name = "create-order";
        route.mode = handoff::config::mode::commit;
        route.topic = "orders.{region}";
        defaults.ce_source = "/handoff";
        headers.insert("Content-Type", "application/json");
        headers.insert("X-Tenant", "acme");
        headers.insert("Authorization", "Bearer secret");
        headers.insert("Cookie", "s=1");
        headers.insert("Proxy-Authorization", "Basic x");
    }

    record_result build() {
        request_view view{"POST", "/orders/eu", "a=1&b=2", headers};
        return build_record(route, defaults, view, body, params, request_ids{"rid-1", "cid-1"},
                            std::chrono::system_clock::time_point{std::chrono::milliseconds{1'700'000'000'123}});
    }
};

std::multimap<std::string, std::string> header_map(const kafka_record& r) {
    std::multimap<std::string, std::string> m;
    for (const auto& h : r.headers) m.emplace(h.name, h.value);
    return m;
}

}  // namespace

TEST_CASE("the record carries the body byte for byte and CloudEvents binary-mode headers") {
    fixture f;
    f.body = std::string("\x00\xff\x01 binary", 10);
    const auto expected = f.body;
    auto r = f.build();
    REQUIRE(r.record);
    CHECK(r.record->value == expected);
    CHECK(r.record->topic == "orders.eu");
    auto h = header_map(*r.record);
    CHECK(h.find("ce_specversion")->second == "1.0");
    CHECK(h.find("ce_id")->second == "rid-1");  // the request ID, never the caller's label
    CHECK(h.find("handoff_correlation_id")->second == "cid-1");
    CHECK(h.find("ce_source")->second == "/handoff");
    CHECK(h.find("ce_type")->second == "handoff.create-order");
    CHECK(h.find("ce_time")->second == "2023-11-14T22:13:20.123Z");
    CHECK(h.find("content-type")->second == "application/json");
    CHECK(h.find("handoff_method")->second == "POST");
    CHECK(h.find("handoff_path")->second == "/orders/eu");
    CHECK(h.find("handoff_query")->second == "a=1&b=2");
    CHECK(valid_traceparent(h.find("traceparent")->second));
    CHECK(r.record->correlation_id == "cid-1");
}

TEST_CASE("route CloudEvents type and source override the defaults") {
    fixture f;
    f.route.ce_type = "com.example.order.created";
    f.route.ce_source = "/orders";
    auto h = header_map(*f.build().record);
    CHECK(h.find("ce_type")->second == "com.example.order.created");
    CHECK(h.find("ce_source")->second == "/orders");
}

TEST_CASE("credentials never enter the record unless the route names them") {
    fixture f;
    auto h = header_map(*f.build().record);
    CHECK(h.count("authorization") == 0);
    CHECK(h.count("cookie") == 0);
    CHECK(h.count("proxy-authorization") == 0);
    CHECK(h.count("x-tenant") == 0);

    fixture g;
    g.route.headers = {"X-Tenant", "Authorization"};
    auto h2 = header_map(*g.build().record);
    CHECK(h2.find("x-tenant")->second == "acme");
    CHECK(h2.find("authorization")->second == "Bearer secret");
    CHECK(h2.count("cookie") == 0);
}

TEST_CASE("every key source gives the expected key") {
    SUBCASE("path parameter") {
        fixture f;
        f.route.key = {key_kind::path, "id"};
        CHECK(f.build().record->key == "17");
    }
    SUBCASE("header") {
        fixture f;
        f.route.key = {key_kind::header, "x-tenant"};
        CHECK(f.build().record->key == "acme");
    }
    SUBCASE("JSON pointer to a string is the raw string") {
        fixture f;
        f.route.key = {key_kind::body, "/customer/id"};
        CHECK(f.build().record->key == "c-42");
    }
    SUBCASE("JSON pointer to a number is its JSON text") {
        fixture f;
        f.route.key = {key_kind::body, "/customer/n"};
        CHECK(f.build().record->key == "7");
    }
    SUBCASE("correlation id: the caller's label (the request ID when the caller sent none)") {
        fixture f;
        f.route.key = {key_kind::correlation, ""};
        CHECK(f.build().record->key == "cid-1");
    }
    SUBCASE("none") {
        fixture f;
        CHECK_FALSE(f.build().record->key.has_value());
    }
}

TEST_CASE("a missing key source is a 400 missing_key and leaves the body untouched") {
    SUBCASE("header absent") {
        fixture f;
        f.route.key = {key_kind::header, "X-Missing"};
        auto r = f.build();
        CHECK_FALSE(r.record);
        CHECK(r.err == error::missing_key);
        CHECK(r.message.find("X-Missing") != std::string::npos);
    }
    SUBCASE("body not JSON") {
        fixture f;
        f.body = "not json";
        f.route.key = {key_kind::body, "/customer/id"};
        auto r = f.build();
        CHECK(r.err == error::missing_key);
        CHECK(f.body == "not json");
    }
    SUBCASE("pointer absent") {
        fixture f;
        f.route.key = {key_kind::body, "/customer/zip"};
        CHECK(f.build().err == error::missing_key);
    }
    SUBCASE("pointer through an array with a non-index") {
        fixture f;
        f.body = R"({"customer":[1,2]})";
        f.route.key = {key_kind::body, "/customer/id"};
        CHECK(f.build().err == error::missing_key);
    }
}

TEST_CASE("a caller's valid traceparent, tracestate and baggage are carried") {
    fixture f;
    f.headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    f.headers.insert("tracestate", "k=v");
    f.headers.insert("baggage", "user=1");
    auto h = header_map(*f.build().record);
    CHECK(h.find("traceparent")->second == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    CHECK(h.find("tracestate")->second == "k=v");
    CHECK(h.find("baggage")->second == "user=1");
}

TEST_CASE("an invalid traceparent is replaced and its tracestate dropped") {
    fixture f;
    f.headers.insert("traceparent", "garbage");
    f.headers.insert("tracestate", "k=v");
    auto h = header_map(*f.build().record);
    CHECK(h.find("traceparent")->second != "garbage");
    CHECK(valid_traceparent(h.find("traceparent")->second));
    CHECK(h.count("tracestate") == 0);
}

TEST_CASE("topic templates are rendered and validated against Kafka's rules") {
    CHECK(render_topic("orders.{region}", {{"region", "eu"}}) == "orders.eu");
    CHECK_FALSE(render_topic("orders.{region}", {{"region", "e/u"}}));
    CHECK_FALSE(render_topic("{x}", {{"x", ".."}}));
    CHECK_FALSE(render_topic("orders.{missing}", {}));
    CHECK_FALSE(render_topic("t{x}", {{"x", std::string(249, 'a')}}));
    fixture f;
    f.params = {{"region", "a b"}};
    auto r = f.build();
    CHECK(r.err == error::invalid_topic);
}

TEST_CASE("rfc3339_millis: milliseconds within one second, the next second, and back") {
    using namespace std::chrono;
    const system_clock::time_point base{seconds{1700000000}};
    CHECK(rfc3339_millis(base) == "2023-11-14T22:13:20.000Z");
    CHECK(rfc3339_millis(base + milliseconds{7}) == "2023-11-14T22:13:20.007Z");
    CHECK(rfc3339_millis(base + milliseconds{999}) == "2023-11-14T22:13:20.999Z");
    CHECK(rfc3339_millis(base + milliseconds{1000}) == "2023-11-14T22:13:21.000Z");
    CHECK(rfc3339_millis(base) == "2023-11-14T22:13:20.000Z");  // going back re-formats
    CHECK(rfc3339_millis(system_clock::time_point{seconds{0}} + milliseconds{42}) == "1970-01-01T00:00:00.042Z");
    CHECK(rfc3339_millis(system_clock::time_point{milliseconds{-750}}) == "1969-12-31T23:59:59.250Z");
}
