// The HTTP front over loopback with fakes for Kafka and the upstream: status codes, ordering,
// limits and framing, without a broker. (Kafka behaviour itself is tested against a real broker
// in tests/integration.)
#include "handoff/proxy/server/server.hpp"

#include "fakes/loopback.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace handoff;
using namespace std::chrono_literals;

namespace {

using test::closed_by_server;
using test::fake_producer;
using test::read_response;
using test::roundtrip;

std::shared_ptr<config::config> base_config() {
    auto cfg = std::make_shared<config::config>();
    cfg->listen.max_header_bytes = 4096;
    cfg->listen.max_body_bytes = 1024;
    cfg->defaults.timeout = 300ms;
    cfg->routes.push_back(test::make_route("read", {"GET", "HEAD"}, "/orders/{id}", config::mode::forward));
    auto commit = test::make_route("create", {"POST"}, "/orders/{region}", config::mode::commit, "orders.{region}");
    commit.success_status = 201;
    commit.key = {config::key_kind::path, "region"};
    cfg->routes.push_back(commit);
    auto event = test::make_route("audit", {"POST"}, "/audit", config::mode::event, "audit");
    event.max_body_bytes = 16;
    cfg->routes.push_back(event);
    auto keyed = test::make_route("keyed", {"POST"}, "/keyed", config::mode::event, "keyed");
    keyed.key = {config::key_kind::header, "X-Tenant"};
    cfg->routes.push_back(keyed);
    return cfg;
}

struct harness : test::loopback_server {
    harness() : loopback_server(base_config()) {}
};

}  // namespace

TEST_CASE("an event request is answered 202 with its request id, correlation id and status URL once queued") {
    harness h;
    auto res = roundtrip(h, "POST /audit?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    CHECK(res.result_int() == 202);
    // No X-Correlation-ID from the caller: the label is the request ID.
    const auto id = std::string(res["X-Correlation-ID"]);
    CHECK(id.size() == 36);
    CHECK(res[http::field::location] == "/_handoff/requests/" + id);
    auto j = nlohmann::json::parse(res.body());
    CHECK(j["correlation_id"] == id);
    CHECK(j["request_id"] == id);
    CHECK(j["topic"] == "audit");
    REQUIRE(h.kafka->count() == 1);
    CHECK(h.kafka->record(0).value == "hello");
}

TEST_CASE("a commit request is answered 2xx with partition and offset only after a persisted report") {
    harness h;
    auto res = roundtrip(h, "POST /orders/eu HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(res.result_int() == 201);
    auto j = nlohmann::json::parse(res.body());
    CHECK(j["outcome"] == "persisted");
    CHECK(j["topic"] == "orders.eu");
    CHECK(j["partition"] == 0);
    CHECK(j["offset"] == 0);
    CHECK(h.kafka->record(0).key == "eu");
}

TEST_CASE("commit answers 503 with Retry-After when the broker did not persist the record") {
    harness h;
    h.kafka->mode = fake_producer::policy::fail;
    auto res = roundtrip(h, "POST /orders/eu HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(res.result_int() == 503);
    CHECK(res[http::field::retry_after] == "1");
    CHECK(nlohmann::json::parse(res.body())["error"] == "delivery_failed");
}

TEST_CASE("commit answers 504 with outcome unknown for a possibly persisted record") {
    harness h;
    h.kafka->mode = fake_producer::policy::possibly;
    auto res = roundtrip(h, "POST /orders/eu HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(res.result_int() == 504);
    CHECK(nlohmann::json::parse(res.body())["outcome"] == "unknown");
}

TEST_CASE(
    "commit route answers 504 with outcome unknown when no delivery report arrives in time, and a late report only "
    "updates the status") {
    harness h;
    h.kafka->mode = fake_producer::policy::hold;
    auto res =
        roundtrip(h, "POST /orders/eu HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: late-1\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(res.result_int() == 504);
    auto j = nlohmann::json::parse(res.body());
    CHECK(j["outcome"] == "unknown");
    CHECK(j["correlation_id"] == "late-1");
    const std::string url = j["status_url"];
    CHECK(url == "/_handoff/requests/" + j["request_id"].get<std::string>());
    CHECK(res[http::field::location] == url);
    auto before = nlohmann::json::parse(roundtrip(h, "GET " + url + " HTTP/1.1\r\nHost: a\r\n\r\n").body());
    CHECK(before["state"] == "accepted");
    h.kafka->release_held();
    h.kafka->settle();
    auto after = nlohmann::json::parse(roundtrip(h, "GET " + url + " HTTP/1.1\r\nHost: a\r\n\r\n").body());
    CHECK(after["state"] == "persisted");
}

TEST_CASE("a full producer queue gives 503 with Retry-After and never 202") {
    harness h;
    h.kafka->refuse = proxy::produce_error::queue_full;
    auto res = roundtrip(h, "POST /audit HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
    CHECK(res.result_int() == 503);
    CHECK(res.count(http::field::retry_after) == 1);
    CHECK(nlohmann::json::parse(res.body())["error"] == "queue_full");
}

TEST_CASE("forward passes the request upstream without hop-by-hop headers and returns its response") {
    harness h;
    auto res = roundtrip(h,
                         "GET /orders/7?q=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n"
                         "X-End: e\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
    CHECK(res.result_int() == 200);
    CHECK(res.body() == "GET /orders/7?q=1 ");
    CHECK(res["X-Upstream"] == "yes");
    CHECK(res.count("X-Drop-Me") == 0);
    CHECK(res.count("X-Correlation-ID") == 1);
    REQUIRE(h.upstream->count() == 1);
    const auto up = h.upstream->request(0);
    CHECK(up.count("X-Secret") == 0);
    CHECK(up.count(http::field::connection) == 0);
    CHECK(up["X-End"] == "e");
    CHECK(up["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1");
    CHECK(up["X-Forwarded-Proto"] == "http");
    CHECK(up["X-Correlation-ID"] == res["X-Correlation-ID"]);
}

TEST_CASE("forward maps upstream failures to 502 and 504") {
    harness h;
    h.upstream->script = [](const auto&, int) { return test::failure(proxy::upstream_error::refused); };
    CHECK(roundtrip(h, "GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n").result_int() == 502);
    h.upstream->script = [](const auto&, int) { return test::failure(proxy::upstream_error::timeout); };
    CHECK(roundtrip(h, "GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n").result_int() == 504);
}

TEST_CASE("pipelined requests of every mode are answered in order on one connection") {
    harness h;
    auto s = h.connect();
    const std::string raw =
        "GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /audit HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
        "POST /orders/us HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
        "GET /orders/2 HTTP/1.1\r\nHost: a\r\n\r\n";
    asio::write(s, asio::buffer(raw));
    beast::flat_buffer buf;
    CHECK(read_response(s, buf).body() == "GET /orders/1 ");
    CHECK(read_response(s, buf).result_int() == 202);
    CHECK(read_response(s, buf).result_int() == 201);
    CHECK(read_response(s, buf).body() == "GET /orders/2 ");
}

TEST_CASE("a declared body over the route limit gets 413 before anything is produced, and the connection closes") {
    harness h;
    auto s = h.connect();
    asio::write(s, asio::buffer(std::string("POST /audit HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n")));
    beast::flat_buffer buf;
    CHECK(read_response(s, buf).result_int() == 413);
    CHECK(closed_by_server(s));
    CHECK(h.kafka->count() == 0);
}

TEST_CASE("a chunked body over the limit is cut off with 413") {
    harness h;
    auto res = roundtrip(h,
                         "POST /audit HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "10\r\n0123456789abcdef\r\n5\r\n01234\r\n0\r\n\r\n");
    CHECK(res.result_int() == 413);
    CHECK(h.kafka->count() == 0);
}

TEST_CASE("Content-Length with Transfer-Encoding gets 400, the connection closes and nothing is forwarded") {
    harness h;
    auto s = h.connect();
    asio::write(s, asio::buffer(std::string(
                       "POST /orders/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /orders/2 HTTP/1.1\r\nHost: a\r\n\r\n")));
    beast::flat_buffer buf;
    CHECK(read_response(s, buf).result_int() == 400);
    CHECK(closed_by_server(s));
    CHECK(h.upstream->count() == 0);
}

TEST_CASE("an invalid correlation id is refused with 400") {
    harness h;
    auto res =
        roundtrip(h, "POST /audit HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: bad id!\r\nContent-Length: 1\r\n\r\nx");
    CHECK(res.result_int() == 400);
    CHECK(nlohmann::json::parse(res.body())["error"] == "invalid_correlation_id");
    CHECK(h.kafka->count() == 0);
}

TEST_CASE("a caller's correlation id is a label: echoed and carried, never the request's key") {
    harness h;
    const std::string raw =
        "POST /audit HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: my-id.1\r\nContent-Length: 1\r\n\r\nx";
    auto a = roundtrip(h, raw);
    auto b = roundtrip(h, raw);
    REQUIRE(a.result_int() == 202);
    REQUIRE(b.result_int() == 202);
    CHECK(a["X-Correlation-ID"] == "my-id.1");
    CHECK(b["X-Correlation-ID"] == "my-id.1");
    // Two requests, two request IDs: own status URL, own CloudEvents id.
    const auto ja = nlohmann::json::parse(a.body());
    const auto jb = nlohmann::json::parse(b.body());
    CHECK(ja["correlation_id"] == "my-id.1");
    CHECK(ja["request_id"] != jb["request_id"]);
    CHECK(a[http::field::location] == "/_handoff/requests/" + ja["request_id"].get<std::string>());
    CHECK(b[http::field::location] == "/_handoff/requests/" + jb["request_id"].get<std::string>());
    REQUIRE(h.kafka->count() == 2);
    CHECK(test::header_of(h.kafka->record(0), "ce_id") == ja["request_id"]);
    CHECK(test::header_of(h.kafka->record(1), "ce_id") == jb["request_id"]);
    CHECK(test::header_of(h.kafka->record(0), "handoff_correlation_id") == "my-id.1");
    CHECK(test::header_of(h.kafka->record(1), "handoff_correlation_id") == "my-id.1");
    // The label names no status entry.
    CHECK(roundtrip(h, "GET /_handoff/requests/my-id.1 HTTP/1.1\r\nHost: a\r\n\r\n").result_int() == 404);
}

TEST_CASE("two commits that share a correlation id keep their own Idempotency-Key outcomes") {
    // Both time out waiting for their report (504), then both are persisted: each key must then
    // replay its own record's offset. Keyed by the correlation ID, A's report settled B's key with
    // A's offset and key A stayed in flight for good.
    harness h;
    h.kafka->mode = fake_producer::policy::hold;
    const auto commit = [&](const std::string& key) {
        return roundtrip(h, "POST /orders/eu HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: shared\r\nIdempotency-Key: " +
                                key + "\r\nContent-Length: 2\r\n\r\n{}");
    };
    REQUIRE(commit("key-a").result_int() == 504);
    REQUIRE(commit("key-b").result_int() == 504);
    h.kafka->release_held();
    h.kafka->settle();
    auto a = commit("key-a");
    auto b = commit("key-b");
    CHECK(a.result_int() == 201);
    CHECK(b.result_int() == 201);
    CHECK(a["Idempotent-Replayed"] == "true");
    CHECK(b["Idempotent-Replayed"] == "true");
    CHECK(nlohmann::json::parse(a.body())["offset"] == 0);
    CHECK(nlohmann::json::parse(b.body())["offset"] == 1);
    CHECK(h.kafka->count() == 2);  // neither retry produced again
}

TEST_CASE("a path that matches with another method gives 405 with Allow") {
    harness h;
    auto res = roundtrip(h, "DELETE /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(res.result_int() == 405);
    CHECK(res[http::field::allow] == "GET, HEAD, POST");
}

TEST_CASE("a percent-encoded or slashed spelling of an event route's path is served by that route") {
    harness h;
    auto res = roundtrip(h, "POST /%61udit/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
    CHECK(res.result_int() == 202);
    CHECK(h.kafka->count() == 1);
    CHECK(h.upstream->count() == 0);
}

TEST_CASE(
    "a path-parameter or letter-case spelling of an event route's path is 400 ambiguous_path, the connection stays "
    "usable") {
    harness h;
    auto s = h.connect();
    asio::write(s, asio::buffer(std::string("POST /audit;x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                                            "POST /AUDIT HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                                            "GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n")));
    beast::flat_buffer buf;
    for (int i = 0; i < 2; ++i) {
        const auto res = read_response(s, buf);
        CHECK(res.result_int() == 400);
        const auto j = nlohmann::json::parse(res.body());
        CHECK(j["error"] == "ambiguous_path");
        CHECK(j["correlation_id"].is_string());
    }
    CHECK(read_response(s, buf).result_int() == 200);
    CHECK(h.kafka->count() == 0);
    CHECK(h.upstream->count() == 1);
}

TEST_CASE("a forwarded request keeps its target byte for byte, whatever route normalisation chose") {
    harness h;
    const auto res = roundtrip(h, "GET /%6Frders/%34%32;v=1?q=%6F HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(res.result_int() == 200);
    REQUIRE(h.upstream->count() == 1);
    CHECK(h.upstream->request(0).target() == "/%6Frders/%34%32;v=1?q=%6F");
}

TEST_CASE("a missing key header is 400 missing_key and nothing is produced") {
    harness h;
    auto res = roundtrip(h, "POST /keyed HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
    CHECK(res.result_int() == 400);
    CHECK(nlohmann::json::parse(res.body())["error"] == "missing_key");
    CHECK(h.kafka->count() == 0);
}

TEST_CASE("a request head over the limit gets 431 and the connection closes") {
    harness h;
    auto s = h.connect();
    asio::write(s, asio::buffer("GET /orders/1 HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(5000, 'a') + "\r\n\r\n"));
    beast::flat_buffer buf;
    CHECK(read_response(s, buf).result_int() == 431);
    CHECK(closed_by_server(s));
}

TEST_CASE("the status endpoint reports a persisted event and 404 for unknown ids") {
    harness h;
    auto res = roundtrip(h, "POST /audit HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: st-1\r\nContent-Length: 1\r\n\r\nx");
    REQUIRE(res.result_int() == 202);
    h.kafka->settle();
    const std::string url(res[http::field::location]);
    auto j = nlohmann::json::parse(roundtrip(h, "GET " + url + " HTTP/1.1\r\nHost: a\r\n\r\n").body());
    CHECK(url == "/_handoff/requests/" + j["request_id"].get<std::string>());
    CHECK(j["state"] == "persisted");
    CHECK(j["offset"] == 0);
    CHECK(roundtrip(h, "GET /_handoff/requests/nope HTTP/1.1\r\nHost: a\r\n\r\n").result_int() == 404);
    CHECK(h.upstream->count() == 0);
}

TEST_CASE("HTTP versions other than 1.0 and 1.1 are refused") {
    harness h;
    auto s = h.connect();
    asio::write(s, asio::buffer(std::string("GET /orders/1 HTTP/2.0\r\nHost: a\r\n\r\n")));
    beast::flat_buffer buf;
    const auto status = read_response(s, buf).result_int();
    CHECK((status == 400 || status == 505));
    CHECK(closed_by_server(s));
    CHECK(h.upstream->count() == 0);
}
