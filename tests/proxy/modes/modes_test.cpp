// The HTTP front's shadow, canary, reply and Idempotency-Key behaviour over loopback, with the
// shared fakes (tests/fakes) for Kafka and the upstream service.
#include "handoff/proxy/server/server.hpp"

#include "fakes/loopback.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace handoff;
using namespace std::chrono_literals;
using test::fake_producer;
using test::roundtrip;

namespace {

std::string post(const std::string& target, const std::string& body, const std::string& extra_headers = "") {
    return "POST " + target + " HTTP/1.1\r\nHost: a\r\n" + extra_headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string status_url_of(const proxy::kafka_record& r) { return "/_handoff/requests/" + test::header_of(r, "ce_id"); }

// --- shadow -----------------------------------------------------------------------------------

struct shadow_server : test::loopback_server {
    shadow_server() : loopback_server(make_config()) {
        // The same answer whatever the target: only the route's mode differs between the two.
        upstream->script = [](const auto&, int) {
            return test::status(200, {{"Content-Type", "text/plain"}, {"X-Upstream", "yes"}}, "service says hi");
        };
    }
    static std::shared_ptr<config::config> make_config() {
        auto cfg = std::make_shared<config::config>();
        cfg->defaults.timeout = 5s;
        cfg->routes.push_back(test::make_route("plain", {"POST"}, "/forward/{id}", config::mode::forward));
        cfg->routes.push_back(test::make_route("copied", {"POST"}, "/shadow/{id}", config::mode::shadow, "copies"));
        return cfg;
    }
    // One request with a fixed correlation id and `Connection: close`; every byte of the answer.
    std::string ask(const std::string& path) {
        return test::raw_roundtrip(*this, post(path, "hello", "X-Correlation-ID: same-1\r\nConnection: close\r\n"));
    }
};

}  // namespace

TEST_CASE("a shadow route answers the caller byte for byte as forward does, and publishes a copy of the request") {
    shadow_server h;
    const auto forwarded = h.ask("/forward/1");
    REQUIRE(forwarded.find("service says hi") != std::string::npos);
    CHECK(h.kafka->count() == 0);
    const auto shadowed = h.ask("/shadow/1");
    CHECK(shadowed == forwarded);
    REQUIRE(h.kafka->wait_for_count(1));
    const auto copy = h.kafka->record(0);
    CHECK(copy.topic == "copies");
    CHECK(copy.value == "hello");
    CHECK(test::header_of(copy, "handoff_correlation_id") == "same-1");
    REQUIRE(h.upstream->count() == 2);
    CHECK(h.upstream->request(1).body() == "hello");
    CHECK(h.upstream->request(1).target() == "/shadow/1");
}

TEST_CASE("a shadow copy the producer refuses or the broker loses does not change the caller's answer") {
    shadow_server h;
    const auto forwarded = h.ask("/forward/1");
    h.kafka->refuse = proxy::produce_error::queue_full;
    CHECK(h.ask("/shadow/1") == forwarded);
    CHECK(h.kafka->count() == 0);
    h.kafka->refuse = proxy::produce_error::ok;
    h.kafka->mode = fake_producer::policy::fail;
    CHECK(h.ask("/shadow/2") == forwarded);
    CHECK(h.kafka->count() == 1);
    CHECK(h.upstream->count() == 3);
}

// --- canary -----------------------------------------------------------------------------------

namespace {

// A forward route whose canary publishes events instead.
std::shared_ptr<config::config> canary_config(int basis_points) {
    auto cfg = std::make_shared<config::config>();
    cfg->defaults.timeout = 5s;
    auto r = test::make_route("pay", {"POST"}, "/pay", config::mode::forward, "payments");
    r.canary_mode = config::mode::event;
    r.canary_percent_bp = basis_points;
    cfg->routes.push_back(r);
    return cfg;
}

}  // namespace

TEST_CASE("a canary route sends its share of keyless requests to the canary mode and the rest to the route's mode") {
    test::loopback_server h(canary_config(2'500));
    int forwarded = 0, published = 0;
    for (int i = 0; i < 20; ++i) {
        const auto res = roundtrip(h, post("/pay", "r" + std::to_string(i)));
        if (res.result_int() == 200) ++forwarded;
        if (res.result_int() == 202) ++published;
    }
    CHECK(published == 5);
    CHECK(forwarded == 15);
    CHECK(h.kafka->count() == 5);
    CHECK(h.upstream->count() == 15);
}

TEST_CASE("a retry with the same Idempotency-Key on a keyless canary route takes the path of the first attempt") {
    // Half the traffic to the canary: were the path chosen per request, back-to-back attempts
    // would alternate.
    test::loopback_server h(canary_config(5'000));
    int by_canary = 0, by_route = 0;
    for (int i = 0; i < 12; ++i) {
        const auto raw =
            post("/pay", "body-" + std::to_string(i), "Idempotency-Key: key-" + std::to_string(i) + "\r\n");
        const auto first = roundtrip(h, raw);
        const auto retry = roundtrip(h, raw);
        CAPTURE(i);
        REQUIRE((first.result_int() == 200 || first.result_int() == 202));
        CHECK(retry.result_int() == first.result_int());
        if (first.result_int() == 202) {
            ++by_canary;
            CHECK(retry["Idempotent-Replayed"] == "true");
            CHECK(retry.body() == first.body());
        } else {
            ++by_route;
        }
    }
    // Both paths were exercised, and the canary's retries were replays: one record per key.
    CHECK(by_canary > 0);
    CHECK(by_route > 0);
    CHECK(h.kafka->count() == static_cast<std::size_t>(by_canary));
    CHECK(h.upstream->count() == static_cast<std::size_t>(2 * by_route));
}

// --- reply ------------------------------------------------------------------------------------

namespace {

std::shared_ptr<config::config> reply_config(std::chrono::milliseconds timeout) {
    auto cfg = std::make_shared<config::config>();
    cfg->defaults.timeout = 5s;
    cfg->replies.topic = "handoff.replies";
    auto r = test::make_route("ask", {"POST"}, "/ask", config::mode::reply, "questions");
    r.timeout = timeout;
    cfg->routes.push_back(r);
    return cfg;
}

}  // namespace

TEST_CASE(
    "a reply delivered through the server's reply listener completes the held request with the service's answer") {
    test::loopback_server h(reply_config(10s));
    auto s = h.connect();
    asio::write(s, asio::buffer(post("/ask", "what?", "X-Correlation-ID: q-1\r\n")));
    REQUIRE(h.kafka->wait_for_count(1));
    const auto question = h.kafka->record(0);
    CHECK(question.topic == "questions");
    CHECK(test::header_of(question, "handoff_reply_topic") == "handoff.replies");

    proxy::consumed_record reply;
    reply.topic = "handoff.replies";
    reply.partition = 0;
    reply.offset = 7;
    reply.value = R"({"answer":42})";
    reply.headers = {{"handoff_request_id", test::header_of(question, "ce_id")},
                     {"handoff_reply_status", "201"},
                     {"content-type", "application/json"},
                     {"handoff_reply_header_X-Service", "billing"}};
    h.srv->reply_listener().on_record(std::move(reply));

    boost::beast::flat_buffer buf;
    const auto res = test::read_response(s, buf);
    CHECK(res.result_int() == 201);
    CHECK(res.body() == R"({"answer":42})");
    CHECK(res[http::field::content_type] == "application/json");
    CHECK(res["X-Service"] == "billing");
    CHECK(res["X-Correlation-ID"] == "q-1");
    CHECK(h.upstream->count() == 0);
}

TEST_CASE("a reply route answers 504 outcome unknown with a status URL when no reply arrives in time") {
    test::loopback_server h(reply_config(200ms));
    const auto res = roundtrip(h, post("/ask", "what?"));
    CHECK(res.result_int() == 504);
    const auto j = nlohmann::json::parse(res.body());
    CHECK(j["outcome"] == "unknown");
    REQUIRE(h.kafka->count() == 1);
    const auto url = status_url_of(h.kafka->record(0));
    CHECK(j["status_url"] == url);
    CHECK(res[http::field::location] == url);
}

TEST_CASE("a reply route answers 503 with Retry-After when the broker does not persist the request record") {
    test::loopback_server h(reply_config(10s));
    h.kafka->mode = fake_producer::policy::fail;
    const auto res = roundtrip(h, post("/ask", "what?"));
    CHECK(res.result_int() == 503);
    CHECK(res.count(http::field::retry_after) == 1);
    CHECK(nlohmann::json::parse(res.body())["error"] == "delivery_failed");
}

// --- Idempotency-Key --------------------------------------------------------------------------

namespace {

std::shared_ptr<config::config> idempotency_config() {
    auto cfg = std::make_shared<config::config>();
    cfg->defaults.timeout = 10s;
    cfg->routes.push_back(test::make_route("audit", {"POST"}, "/audit", config::mode::event, "audit"));
    cfg->routes.push_back(test::make_route("pay", {"POST"}, "/pay", config::mode::commit, "payments"));
    auto tenant = test::make_route("tenant", {"POST"}, "/tenant", config::mode::event, "tenants");
    tenant.key = {config::key_kind::header, "X-Tenant"};
    cfg->routes.push_back(tenant);
    return cfg;
}

}  // namespace

TEST_CASE("a repeat after completion replays the first answer with Idempotent-Replayed and produces nothing") {
    test::loopback_server h(idempotency_config());
    const auto raw = post("/audit", "once", "Idempotency-Key: k-1\r\n");
    const auto first = roundtrip(h, raw);
    REQUIRE(first.result_int() == 202);
    CHECK(first.count("Idempotent-Replayed") == 0);
    h.kafka->settle();
    const auto again = roundtrip(h, raw);
    CHECK(again.result_int() == 202);
    CHECK(again["Idempotent-Replayed"] == "true");
    CHECK(again.body() == first.body());
    CHECK(again[http::field::location] == first[http::field::location]);
    CHECK(h.kafka->count() == 1);
}

TEST_CASE("a repeat while the first request is in flight is 409 with Retry-After and the first request's Location") {
    test::loopback_server h(idempotency_config());
    h.kafka->mode = fake_producer::policy::hold;
    const auto raw = post("/pay", "{}", "Idempotency-Key: k-2\r\n");
    auto first = h.connect();
    asio::write(first, asio::buffer(raw));
    REQUIRE(h.kafka->wait_for_count(1));
    const auto url = status_url_of(h.kafka->record(0));

    const auto second = roundtrip(h, raw);
    CHECK(second.result_int() == 409);
    CHECK(second.count(http::field::retry_after) == 1);
    CHECK(second[http::field::location] == url);
    CHECK(nlohmann::json::parse(second.body())["error"] == "idempotency_in_flight");
    CHECK(h.kafka->count() == 1);

    h.kafka->release_held();
    boost::beast::flat_buffer buf;
    CHECK(test::read_response(first, buf).result_int() == 200);
}

TEST_CASE("the same Idempotency-Key with a different body is 422 and produces nothing") {
    test::loopback_server h(idempotency_config());
    REQUIRE(roundtrip(h, post("/audit", "first", "Idempotency-Key: k-3\r\n")).result_int() == 202);
    h.kafka->settle();
    const auto res = roundtrip(h, post("/audit", "other", "Idempotency-Key: k-3\r\n"));
    CHECK(res.result_int() == 422);
    CHECK(nlohmann::json::parse(res.body())["error"] == "idempotency_key_reused");
    CHECK(h.kafka->count() == 1);
}

TEST_CASE("the same Idempotency-Key with another value of the route's header key source is 422") {
    test::loopback_server h(idempotency_config());
    const auto as = [](const std::string& tenant) {
        return post("/tenant", "same", "Idempotency-Key: k-4\r\nX-Tenant: " + tenant + "\r\n");
    };
    REQUIRE(roundtrip(h, as("t1")).result_int() == 202);
    h.kafka->settle();
    CHECK(roundtrip(h, as("t2")).result_int() == 422);
    // The same tenant again is a plain repeat: the header alone made the difference.
    const auto again = roundtrip(h, as("t1"));
    CHECK(again.result_int() == 202);
    CHECK(again["Idempotent-Replayed"] == "true");
    CHECK(h.kafka->count() == 1);
    CHECK(h.kafka->record(0).key == "t1");
}
