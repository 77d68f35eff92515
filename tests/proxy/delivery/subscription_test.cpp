// The receiving half's engine, in memory: a fake consumer, a fake local service and a fake
// producer. Backoffs are milliseconds; every wait is a condition with a deadline.
#include "handoff/proxy/delivery/subscription.hpp"

#include "handoff/common/log.hpp"

#include "fakes/fake_consumer.hpp"
#include "fakes/fake_producer.hpp"
#include "fakes/fake_upstream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace handoff;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using proxy::topic_partition;
using steady = std::chrono::steady_clock;

namespace {

bool run_until(asio::io_context& ioc, const std::function<bool()>& done, std::chrono::milliseconds within = 10s) {
    const auto deadline = steady::now() + within;
    while (!done() && steady::now() < deadline) {
        if (ioc.stopped()) ioc.restart();
        ioc.run_one_for(20ms);
    }
    return done();
}

// Runs for `d` of wall time (only to show that something does NOT happen within it).
void run_for(asio::io_context& ioc, std::chrono::milliseconds d) {
    const auto deadline = steady::now() + d;
    while (steady::now() < deadline) {
        if (ioc.stopped()) ioc.restart();
        ioc.run_one_for(5ms);
    }
}

using test::failure;
using test::fake_consumer;
using test::fake_producer;
using test::status;
using fake_service = test::fake_upstream;
using reply = test::scripted_reply;

config::subscription base_sub() {
    config::subscription s;
    s.name = "orders-in";
    s.topics = {"orders"};
    s.group = "g";
    s.concurrency = 4;
    s.timeout = 1s;
    s.retry.attempts = 5;
    s.retry.backoff_base = 5ms;
    s.retry.backoff_cap = 20ms;
    s.retry.jitter = config::jitter::none;
    return s;
}

const topic_partition p0{"orders", 0};
const topic_partition p1{"orders", 1};

struct env {
    asio::io_context ioc;
    std::shared_ptr<fake_consumer> consumer = std::make_shared<fake_consumer>();
    std::shared_ptr<fake_service> service = std::make_shared<fake_service>();
    std::shared_ptr<fake_producer> producer = std::make_shared<fake_producer>(ioc);
    std::unique_ptr<proxy::subscription> sub;

    explicit env(config::subscription cfg = base_sub(), proxy::subscription_options opts = {}) {
        proxy::log::set_level(proxy::log::level::error);
        if (!opts.random) opts.random = [] { return 0.5; };
        if (!opts.new_id) opts.new_id = [] { return std::string("reply-id-1"); };
        config::upstream_config up;
        up.host = "127.0.0.1";
        up.port = 8081;
        sub = std::make_unique<proxy::subscription>(asio::make_strand(ioc), std::move(cfg), up, consumer, service,
                                                    producer, std::move(opts));
        sub->start();
        REQUIRE(run_until(ioc, [&] { return consumer->listener != nullptr; }));
        consumer->assign({p0, p1});
    }
    void feed(const topic_partition& tp, std::int64_t offset, std::optional<std::string> key, std::string value,
              std::vector<proxy::record_header> headers = {}) {
        proxy::consumed_record r;
        r.topic = tp.topic;
        r.partition = tp.partition;
        r.offset = offset;
        r.key = std::move(key);
        r.value = std::move(value);
        r.headers = std::move(headers);
        if (r.headers.empty()) {
            r.headers = {{"ce_id", "cid-" + r.value},
                         {"ce_specversion", "1.0"},
                         {"handoff_method", "POST"},
                         {"handoff_path", "/orders"}};
        }
        asio::post(sub_strand(), [this, r = std::move(r)]() mutable { consumer->listener->on_record(std::move(r)); });
    }
    asio::any_io_executor sub_strand() { return ioc.get_executor(); }
};

proxy::consumed_record record_with(std::vector<proxy::record_header> headers, std::string value = "body") {
    proxy::consumed_record r;
    r.topic = "orders";
    r.partition = 3;
    r.offset = 42;
    r.key = "k";
    r.value = std::move(value);
    r.headers = std::move(headers);
    return r;
}

config::upstream_config local() {
    config::upstream_config u;
    u.host = "127.0.0.1";
    u.port = 8081;
    return u;
}

}  // namespace

// ---- pure rules -----------------------------------------------------------------------------

TEST_CASE("the retry table retries connection errors, timeouts, 408, 429 and 5xx and dead-letters other statuses") {
    using proxy::classify;
    using proxy::upstream_error;
    using proxy::verdict;
    CHECK(classify(upstream_error::ok, 200) == verdict::done);
    CHECK(classify(upstream_error::ok, 201) == verdict::done);
    CHECK(classify(upstream_error::ok, 204) == verdict::done);
    CHECK(classify(upstream_error::ok, 299) == verdict::done);
    for (int s : {408, 429, 500, 502, 503, 504, 599}) CHECK(classify(upstream_error::ok, s) == verdict::retry);
    for (int s : {100, 300, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451})
        CHECK(classify(upstream_error::ok, s) == verdict::dead_letter);
    CHECK(classify(upstream_error::timeout, 0) == verdict::retry);
    CHECK(classify(upstream_error::bad_response, 0) == verdict::retry);  // reset mid-response
    CHECK(classify(upstream_error::refused, 0) == verdict::connection);
    CHECK(classify(upstream_error::pool_exhausted, 0) == verdict::connection);
}

TEST_CASE("backoff doubles from the base up to the cap, and full jitter stays within [0, delay]") {
    config::retry_policy p;
    p.backoff_base = 200ms;
    p.backoff_cap = 30s;
    p.jitter = config::jitter::none;
    CHECK(proxy::backoff(p, 1, 0.3) == 200ms);
    CHECK(proxy::backoff(p, 2, 0.3) == 400ms);
    CHECK(proxy::backoff(p, 3, 0.3) == 800ms);
    CHECK(proxy::backoff(p, 8, 0.3) == 25600ms);
    CHECK(proxy::backoff(p, 9, 0.3) == 30s);
    CHECK(proxy::backoff(p, 1000, 0.3) == 30s);  // no overflow
    p.jitter = config::jitter::full;
    CHECK(proxy::backoff(p, 3, 0.0) == 0ms);
    CHECK(proxy::backoff(p, 3, 0.5) == 400ms);
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int retry = 1; retry < 20; ++retry) {
        const auto ceiling = std::min<std::chrono::milliseconds>(200ms * (1ll << std::min(retry - 1, 20)), 30s);
        for (int i = 0; i < 50; ++i) {
            const auto d = proxy::backoff(p, retry, u(rng));
            CHECK(d >= 0ms);
            CHECK(d <= ceiling);
        }
    }
}

TEST_CASE("Retry-After is honoured as seconds or an HTTP date and capped at backoff_cap") {
    const auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
    CHECK(proxy::parse_retry_after("3", now) == 3000ms);
    CHECK(proxy::parse_retry_after(" 0 ", now) == 0ms);
    CHECK(proxy::parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == 10000ms);
    CHECK(proxy::parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now) == 0ms);
    CHECK_FALSE(proxy::parse_retry_after("soon", now));
    CHECK_FALSE(proxy::parse_retry_after("-1", now));
    CHECK_FALSE(proxy::parse_retry_after("1.5", now));
    CHECK_FALSE(proxy::parse_retry_after("", now));
    CHECK(proxy::parse_retry_after("99999999999999999999999", now).has_value());
    config::retry_policy p;
    p.backoff_base = 200ms;
    p.backoff_cap = 5s;
    p.jitter = config::jitter::full;
    CHECK(proxy::retry_delay(p, 1, 0.0, 3000ms) == 3000ms);  // not jittered
    CHECK(proxy::retry_delay(p, 1, 0.0, 3600s) == 5s);       // capped
    CHECK(proxy::retry_delay(p, 2, 0.5, std::nullopt) == 200ms);
}

TEST_CASE("the storable offset is the lowest unfinished one, whatever order records finish in") {
    proxy::offset_tracker t;
    for (std::int64_t o : {10, 11, 12, 14}) t.add(o);  // 13 is a gap (compaction / marker)
    CHECK(t.resolve(11) == std::optional<std::int64_t>(10));
    CHECK_FALSE(t.resolve(12));
    CHECK(t.resolve(10) == std::optional<std::int64_t>(14));
    CHECK(t.resolve(14) == std::optional<std::int64_t>(15));
    CHECK(t.open() == 0);
    t.add(15);
    CHECK(t.resolve(15) == std::optional<std::int64_t>(16));
}

TEST_CASE("the delivery request carries CloudEvents binary headers, correlation id, trace context and the body") {
    auto sub = base_sub();
    sub.headers = {"X-Tenant"};
    const auto r = record_with({{"ce_specversion", "1.0"},
                                {"ce_id", "cid-7"},
                                {"ce_source", "/orders"},
                                {"ce_type", "com.example.order.created"},
                                {"ce_time", "2026-01-01T00:00:00.000Z"},
                                {"content-type", "application/json"},
                                {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                                {"tracestate", "a=b"},
                                {"handoff_method", "PUT"},
                                {"handoff_path", "/orders/7"},
                                {"handoff_query", "x=1&y=2"},
                                {"x-tenant", "acme"},
                                {"x-other", "not allow-listed"}},
                               "{\"a\":1}\x00\xff");
    auto out = proxy::build_delivery_request(sub, local(), r);
    REQUIRE(out.request);
    auto& q = *out.request;
    CHECK(q.method() == http::verb::put);
    CHECK(q.target() == "/orders/7?x=1&y=2");
    CHECK(q[http::field::host] == "127.0.0.1:8081");
    CHECK(q["ce-id"] == "cid-7");
    CHECK(q["ce-specversion"] == "1.0");
    CHECK(q["ce-source"] == "/orders");
    CHECK(q["ce-type"] == "com.example.order.created");
    CHECK(q["ce-time"] == "2026-01-01T00:00:00.000Z");
    CHECK(q[http::field::content_type] == "application/json");
    CHECK(q["X-Correlation-ID"] == "cid-7");  // no label in the record: the request ID
    CHECK(q["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    CHECK(q["tracestate"] == "a=b");
    CHECK(q["X-Tenant"] == "acme");
    CHECK(q.find("x-other") == q.end());
    CHECK(q.find("handoff_path") == q.end());
    CHECK(q.body() == r.value);
    CHECK(q[http::field::content_length] == std::to_string(r.value.size()));
}

TEST_CASE("the delivery request's X-Correlation-ID is the caller's label; ce-id stays the request ID") {
    const auto r = record_with({{"ce_id", "rid-7"},
                                {"handoff_correlation_id", "order-flow.42"},
                                {"handoff_method", "POST"},
                                {"handoff_path", "/orders"}});
    auto out = proxy::build_delivery_request(base_sub(), local(), r);
    REQUIRE(out.request);
    CHECK((*out.request)["ce-id"] == "rid-7");
    CHECK((*out.request)["X-Correlation-ID"] == "order-flow.42");
    // A label that is not a valid correlation ID is not sent; the request ID stands in.
    const auto bad = record_with({{"ce_id", "rid-8"},
                                  {"handoff_correlation_id", "bad label\r\n"},
                                  {"handoff_method", "POST"},
                                  {"handoff_path", "/orders"}});
    auto out2 = proxy::build_delivery_request(base_sub(), local(), bad);
    REQUIRE(out2.request);
    CHECK((*out2.request)["X-Correlation-ID"] == "rid-8");
}

TEST_CASE("record headers with CR, LF or NUL and framing header names are never emitted") {
    auto sub = base_sub();
    sub.headers = {"X-Evil", "Host", "Transfer-Encoding", "Content-Length", "Connection", "X-Nul", "ce-id", "X-Ok"};
    const auto r = record_with({{"ce_id", "cid-1"},
                                {"ce_type", "t\r\nX-Injected: 1"},
                                {"handoff_path", "/a"},
                                {"x-evil", "v\r\nX-Injected: yes"},
                                {"x-nul", std::string("a\0b", 3)},
                                {"host", "evil.example"},
                                {"transfer-encoding", "chunked"},
                                {"content-length", "0"},
                                {"connection", "close"},
                                {"ce-id", "spoofed"},
                                {"content-type", "text/plain\nX-Injected: ct"},
                                {"x-ok", "fine"}});
    auto out = proxy::build_delivery_request(sub, local(), r);
    REQUIRE(out.request);
    auto& q = *out.request;
    CHECK(q[http::field::host] == "127.0.0.1:8081");
    CHECK(q.count(http::field::host) == 1);
    CHECK(q.find(http::field::transfer_encoding) == q.end());
    CHECK(q[http::field::content_length] == "4");
    CHECK(q.find(http::field::connection) == q.end());
    CHECK(q.find("X-Evil") == q.end());
    CHECK(q.find("X-Nul") == q.end());
    CHECK(q.find("ce-type") == q.end());
    CHECK(q.find(http::field::content_type) == q.end());
    CHECK(q["ce-id"] == "cid-1");
    CHECK(q["X-Ok"] == "fine");
    CHECK(out.dropped_headers >= 4);
    for (const auto& f : q) {
        const auto v = f.value();
        CHECK(v.find('\r') == std::string::npos);
        CHECK(v.find('\n') == std::string::npos);
        CHECK(v.find('\0') == std::string::npos);
    }
}

TEST_CASE("only origin-form paths from the record are used; otherwise the fallback path or a dead-letter reason") {
    CHECK(proxy::safe_origin_path("/"));
    CHECK(proxy::safe_origin_path("/orders/7"));
    CHECK(proxy::safe_origin_path("/a%20b/c@d:e/"));
    // The front's rules: encoded dots, separators and NUL, malformed escapes, empty segments.
    for (std::string_view bad : {"",
                                 "orders",
                                 "//evil.example/x",
                                 "http://169.254.169.254/",
                                 "/a b",
                                 "/a\r\nb",
                                 "/a/../admin",
                                 "/..",
                                 "/./x",
                                 "/a?b",
                                 "/a#b",
                                 "/a\\b",
                                 "\t/a",
                                 "/a%2fb",
                                 "/%2e%2e/admin",
                                 "/a/%2E%2e",
                                 "/a/.%2e/b",
                                 "/a%5cb",
                                 "/a%00b",
                                 "/a%zz",
                                 "/a%2",
                                 "/a//b",
                                 "/%c0%ae%c0%ae/x"}) {
        INFO(bad);
        CHECK_FALSE(proxy::safe_origin_path(bad));
    }
    CHECK(proxy::safe_query("a=1&b=%20&c=../x"));
    CHECK_FALSE(proxy::safe_query("a=%zz"));
    CHECK_FALSE(proxy::safe_query("a=%2"));
    auto sub = base_sub();
    auto out = proxy::build_delivery_request(sub, local(), record_with({{"handoff_path", "//evil.example/x"}}));
    CHECK_FALSE(out.request);
    CHECK(out.problem.find("handoff_path") != std::string::npos);
    out = proxy::build_delivery_request(sub, local(), record_with({}));
    CHECK_FALSE(out.request);
    sub.target.fallback_path = "/inbox";
    out = proxy::build_delivery_request(sub, local(), record_with({{"handoff_path", "http://169.254.169.254/latest"}}));
    REQUIRE(out.request);
    CHECK(out.request->target() == "/inbox");
    CHECK(out.request->method() == http::verb::post);  // no handoff_method
    CHECK((*out.request)[http::field::host] == "127.0.0.1:8081");
    out = proxy::build_delivery_request(
        sub, local(), record_with({{"handoff_path", "/ok"}, {"handoff_query", "a=1 HTTP/1.1\r\nHost: x"}}));
    REQUIRE(out.request);
    CHECK(out.request->target() == "/ok");  // unsafe query dropped
    sub.target.path = "/fixed";
    sub.target.method = "PATCH";
    out = proxy::build_delivery_request(sub, local(),
                                        record_with({{"handoff_path", "/x"}, {"handoff_method", "DELETE"}}));
    REQUIRE(out.request);
    CHECK(out.request->target() == "/fixed");
    CHECK(out.request->method() == http::verb::patch);
}

TEST_CASE("a dead-letter record keeps key, value and headers and adds where it came from and why") {
    auto r = record_with({{"ce_id", "cid-9"}, {"x-a", "1"}, {"handoff_dlq_topic", "old"}}, "payload");
    const auto d = proxy::make_dead_letter(r, "orders.dlq", 3, 503, "retries exhausted");
    CHECK(d.topic == "orders.dlq");
    CHECK(d.key == std::optional<std::string>("k"));
    CHECK(d.value == "payload");
    std::map<std::string, std::string> h;
    for (auto& x : d.headers) {
        CHECK(h.count(x.name) == 0);
        h[x.name] = x.value;
    }
    CHECK(h["ce_id"] == "cid-9");
    CHECK(h["x-a"] == "1");
    CHECK(h["handoff_dlq_topic"] == "orders");
    CHECK(h["handoff_dlq_partition"] == "3");
    CHECK(h["handoff_dlq_offset"] == "42");
    CHECK(h["handoff_dlq_attempts"] == "3");
    CHECK(h["handoff_dlq_status"] == "503");
    CHECK(h["handoff_dlq_error"] == "retries exhausted");
}

// ---- the engine --------------------------------------------------------------------------------

TEST_CASE("one key failing three times holds back only that key; other keys flow; order per key is kept") {
    env e;
    e.service->script = [](const auto& req, int nth) {
        return req.body() == "m1" && nth <= 3 ? status(503) : status(200);
    };
    e.feed(p0, 0, "A", "m1");
    e.feed(p0, 1, "A", "m2");
    e.feed(p0, 2, "B", "m3");
    e.feed(p1, 0, "A", "m4");  // same key, other partition: not held
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 3 && e.consumer->stored_at(p1) == 1; }));
    const auto b = e.service->bodies();
    CHECK(e.service->count("m1") == 4);
    CHECK(e.service->count("m2") == 1);
    const auto pos = [&](const std::string& x) { return std::find(b.begin(), b.end(), x) - b.begin(); };
    const auto last_m1 = std::find(b.rbegin(), b.rend(), "m1").base() - b.begin() - 1;
    CHECK(pos("m2") > last_m1);  // m2 only after m1 resolved
    CHECK(pos("m3") < last_m1);  // m3 did not wait
    CHECK(pos("m4") < last_m1);
    CHECK(e.sub->counters().retries == 3);
    CHECK(e.sub->counters().delivered == 4);
    CHECK(e.producer->records().empty());
}

TEST_CASE("an offset is stored only up to the lowest unfinished record of the partition") {
    env e;
    e.service->script = [](const auto& req, int nth) {
        // Long enough that b and c finish first on a loaded machine too.
        return req.body() == "slow" && nth == 1 ? reply{1s, status(200).result} : status(200);
    };
    e.feed(p0, 0, "A", "slow");
    e.feed(p0, 1, "B", "b");
    e.feed(p0, 2, "C", "c");
    REQUIRE(run_until(e.ioc, [&] { return e.service->count("c") == 1 && e.service->count("b") == 1; }));
    run_for(e.ioc, 20ms);
    CHECK(e.consumer->stored_at(p0) <= 0);  // 1 and 2 are done, 0 is not
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 3; }));
    for (auto& [tp, off] : e.consumer->stores) CHECK(off <= 3);
}

TEST_CASE("at most `concurrency` deliveries are in flight") {
    auto cfg = base_sub();
    cfg.concurrency = 3;
    cfg.ordering = config::ordering::none;
    env e(cfg);
    e.service->script = [](const auto&, int) { return reply{5ms, status(200).result}; };
    for (int i = 0; i < 30; ++i)
        e.feed(i % 2 ? p1 : p0, i / 2, std::to_string(i), std::string("v").append(std::to_string(i)));
    REQUIRE(run_until(e.ioc, [&] { return e.sub->counters().delivered == 30; }));
    CHECK(e.service->max_active == 3);
    CHECK(e.consumer->stored_at(p0) == 15);
    CHECK(e.consumer->stored_at(p1) == 15);
}

TEST_CASE("a non-retryable status is dead-lettered at once and the offset stored only after the write persisted") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(404); };
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    CHECK(e.service->count("m1") == 1);
    REQUIRE(e.producer->records().size() == 1);
    const auto d = e.producer->record(0);
    CHECK(d.topic == "orders.dlq");
    std::map<std::string, std::string> h;
    for (auto& x : d.headers) h[x.name] = x.value;
    CHECK(h["handoff_dlq_status"] == "404");
    CHECK(h["handoff_dlq_attempts"] == "1");
    CHECK(h["handoff_dlq_offset"] == "0");
    CHECK(h["handoff_dlq_error"].find("404") != std::string::npos);
    CHECK(e.sub->counters().dead_lettered == 1);
}

TEST_CASE("retries are exhausted into the dead-letter topic after `attempts`, honouring Retry-After") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.attempts = 3;
    cfg.retry.backoff_cap = 200ms;
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(429, {{"Retry-After", "0"}}); };
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    CHECK(e.service->count("m1") == 3);
    REQUIRE(e.producer->records().size() == 1);
    std::map<std::string, std::string> h;
    const auto rec = e.producer->record(0);
    for (const auto& x : rec.headers) h[x.name] = x.value;
    CHECK(h["handoff_dlq_attempts"] == "3");
    CHECK(h["handoff_dlq_status"] == "429");
    // Retry-After: 1 second is capped at backoff_cap (200ms), not the 5ms backoff and not 1s.
    env f(cfg);
    f.service->script = [](const auto&, int nth) {
        return nth == 1 ? status(503, {{"Retry-After", "1"}}) : status(200);
    };
    f.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(f.ioc, [&] { return f.consumer->stored_at(p0) == 1; }));
    REQUIRE(f.service->calls.size() == 2);
    const auto gap = f.service->calls[1].at - f.service->calls[0].at;
    CHECK(gap >= 190ms);
    CHECK(gap < 900ms);
}

TEST_CASE("a failing dead-letter write leaves the source offset unstored and is retried") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    env e(cfg);
    e.producer->mode = fake_producer::policy::fail;
    e.service->script = [](const auto&, int) { return status(400); };
    e.feed(p0, 0, "A", "m1");
    e.feed(p0, 1, "B", "m2");
    REQUIRE(run_until(e.ioc, [&] { return e.sub->counters().dead_letter_failures >= 3; }));
    CHECK(e.consumer->stored_at(p0) <= 0);
    CHECK(e.sub->counters().dead_lettered == 0);
    e.producer->mode = fake_producer::policy::persist;
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 2; }));
    CHECK(e.service->count("m1") == 1);  // the HTTP delivery is not repeated, only the write
}

TEST_CASE("without a dead-letter topic a poison record is retried and holds its key, never stored") {
    env e;
    e.service->script = [](const auto& req, int) { return req.body() == "poison" ? status(400) : status(200); };
    e.feed(p0, 0, "A", "poison");
    e.feed(p0, 1, "A", "next");
    e.feed(p0, 2, "B", "other");
    REQUIRE(run_until(e.ioc, [&] { return e.service->count("poison") >= 3; }));
    CHECK(e.service->count("next") == 0);
    CHECK(e.service->count("other") == 1);
    CHECK(e.consumer->stored_at(p0) <= 0);
}

TEST_CASE("a revocation abandons in-flight deliveries of the partition and never stores their offsets") {
    env e;
    // Long enough that the revocation lands while both deliveries are in flight, on a loaded machine too.
    e.service->script = [](const auto&, int) { return reply{1s, status(200).result}; };
    e.feed(p0, 0, "A", "m1");
    e.feed(p1, 0, "A", "m2");
    REQUIRE(run_until(e.ioc, [&] { return e.service->calls.size() == 2; }));
    asio::post(e.ioc, [&] { e.consumer->revoke({p0}); });
    REQUIRE(run_until(e.ioc, [&] { return e.sub->counters().delivered == 1 && e.service->active == 0; }));
    run_for(e.ioc, 30ms);
    CHECK(e.consumer->stored_at(p0) == -1);
    CHECK(e.consumer->stored_at(p1) == 1);
    CHECK(e.sub->counters().abandoned == 1);
    // Re-assigned later: starts clean, the redelivered record is handled normally.
    asio::post(e.ioc, [&] { e.consumer->assign({p0}); });
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    CHECK(e.consumer->resumes_of_unpaused == 0);
}

TEST_CASE("a revocation during a retry wait drops the record without a store or a dead-letter") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.backoff_base = 50ms;
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(503); };
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.service->calls.size() == 1; }));
    asio::post(e.ioc, [&] { e.consumer->revoke({p0}); });
    run_for(e.ioc, 150ms);
    CHECK(e.service->calls.size() == 1);
    CHECK(e.producer->records().empty());
    CHECK(e.consumer->stored_at(p0) == -1);
}

TEST_CASE("the local service down opens the circuit: partitions pause, no attempts are burnt, it recovers") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.attempts = 2;
    proxy::subscription_options opts;
    opts.circuit_threshold = 3;
    opts.probe_interval = 30ms;
    env e(cfg, opts);
    bool down = true;
    e.service->script = [&](const auto&, int) { return down ? failure(proxy::upstream_error::refused) : status(200); };
    for (int i = 0; i < 4; ++i) e.feed(p0, i, std::to_string(i), "m" + std::to_string(i));
    REQUIRE(run_until(e.ioc, [&] { return e.sub->counters().circuit_opened == 1; }));
    CHECK(e.consumer->paused.count(p0) == 1);
    CHECK(e.consumer->paused.count(p1) == 1);
    const auto before = e.service->calls.size();
    REQUIRE(run_until(e.ioc, [&] { return e.service->calls.size() > before; }));  // a probe comes
    const auto first = e.service->calls.size();
    run_for(e.ioc, 300ms);
    const auto probes = e.service->calls.size() - first;
    CHECK(probes <= 300 / 30 + 2);  // one probe per interval (30 ms), not a retry storm
    CHECK(e.producer->records().empty());
    CHECK(e.consumer->stored_at(p0) == -1);
    down = false;
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 4; }));
    CHECK(e.consumer->paused.empty());
    CHECK(e.consumer->resumes_of_unpaused == 0);
    CHECK(e.producer->records().empty());
}

TEST_CASE("replies are published with the request id before the offset is stored") {
    auto cfg = base_sub();
    cfg.reply_topic = "orders.replies";
    cfg.reply_headers = {"Location"};
    env e(cfg);
    e.service->script = [](const auto&, int) {
        return status(201, {{"Location", "/orders/9"}, {"Content-Type", "application/json"}, {"X-Secret", "s"}},
                      "{\"id\":9}");
    };
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    REQUIRE(e.producer->records().size() == 1);
    const auto r = e.producer->record(0);
    CHECK(r.topic == "orders.replies");
    CHECK(r.key == std::optional<std::string>("cid-m1"));
    CHECK(r.value == "{\"id\":9}");
    std::map<std::string, std::string> h;
    for (auto& x : r.headers) h[x.name] = x.value;
    CHECK(h["ce_id"] == "reply-id-1");
    CHECK(h["handoff_request_id"] == "cid-m1");      // the request record's ce_id: what the caller matches
    CHECK(h["handoff_correlation_id"] == "cid-m1");  // the record carries no label: the request ID
    CHECK(h["handoff_reply_status"] == "201");
    CHECK(h["content-type"] == "application/json");
    CHECK(h["handoff_reply_header_location"] == "/orders/9");
    CHECK(h.count("handoff_reply_header_x-secret") == 0);
    CHECK(e.sub->counters().replies == 1);
}

TEST_CASE("a record may name only the reply topics its subscription allows") {
    CHECK(proxy::topic_matches("quotes.replies.*", "quotes.replies.pod-1"));
    CHECK(proxy::topic_matches("quotes.replies.*", "quotes.replies."));
    CHECK(proxy::topic_matches("*", "anything"));
    CHECK(proxy::topic_matches("a*b*c", "a-x-b-y-c"));
    CHECK_FALSE(proxy::topic_matches("quotes.replies.*", "payments.commands"));
    CHECK_FALSE(proxy::topic_matches("quotes.replies", "quotes.replies.pod-1"));
    CHECK_FALSE(proxy::topic_matches("a*b", "a-b-c"));
    auto sub = base_sub();
    const auto naming = [](std::string topic) {
        return record_with({{"ce_id", "c"}, {"handoff_path", "/q"}, {"handoff_reply_topic", std::move(topic)}});
    };
    CHECK_FALSE(proxy::reply_topic_problem(sub, record_with({{"ce_id", "c"}})));  // names none
    CHECK(proxy::reply_topic_problem(sub, naming("quotes.replies.pod-1")));       // default: none allowed
    sub.reply_topics = {"quotes.replies.*"};
    CHECK_FALSE(proxy::reply_topic_problem(sub, naming("quotes.replies.pod-1")));
    CHECK(proxy::reply_topic_problem(sub, naming("payments.commands"))->find("not among") != std::string::npos);
    CHECK(proxy::reply_topic_problem(sub, naming("orders"))->find("loop") != std::string::npos);
    CHECK(proxy::reply_topic_problem(sub, naming("bad topic!")));
    sub.reply_topics.clear();
    sub.reply_topic = "orders.replies";
    CHECK_FALSE(proxy::reply_topic_problem(sub, naming("orders.replies")));  // its own reply_topic
    CHECK(proxy::reply_topic_for(sub, naming("payments.commands")) == "orders.replies");
}

TEST_CASE("a record naming a reply topic the subscription does not allow is dead-lettered, not delivered") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    cfg.reply_topics = {"quotes.replies.*"};
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(200, {}, "done"); };
    e.feed(p0, 0, "A", "aimed",
           {{"ce_id", "c1"}, {"handoff_path", "/q"}, {"handoff_reply_topic", "payments.commands"}});
    e.feed(p0, 1, "B", "fine", {{"ce_id", "c2"}, {"handoff_path", "/q"}, {"handoff_reply_topic", "quotes.replies.p1"}});
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 2; }));
    CHECK(e.service->count("aimed") == 0);
    CHECK(e.service->count("fine") == 1);
    std::vector<std::string> topics;
    for (const auto& r : e.producer->records()) topics.push_back(r.topic);
    std::sort(topics.begin(), topics.end());
    CHECK(topics == std::vector<std::string>{"orders.dlq", "quotes.replies.p1"});
}

std::map<std::string, std::string> headers_of(const proxy::kafka_record& r) {
    std::map<std::string, std::string> h;
    for (const auto& x : r.headers) h[x.name] = x.value;
    return h;
}

TEST_CASE("a final non-2xx answer is published as the reply, then the record is dead-lettered") {
    auto cfg = base_sub();
    cfg.reply_topic = "orders.replies";
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.attempts = 3;
    env e(cfg);
    e.service->script = [](const auto& req, int) {
        if (req.body() == "bad")
            return status(404, {{"Content-Type", "application/json"}}, R"({"error":"no such order"})");
        return status(503, {}, "busy");
    };
    e.feed(p0, 0, "A", "bad");   // 4xx: final at once
    e.feed(p1, 0, "B", "busy");  // 5xx: final once the retries are exhausted
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1 && e.consumer->stored_at(p1) == 1; }));
    CHECK(e.service->count("bad") == 1);
    CHECK(e.service->count("busy") == 3);
    std::map<std::string, std::vector<std::string>> by_topic;  // topic -> request ids, in write order
    for (const auto& r : e.producer->records()) {
        const auto h = headers_of(r);
        by_topic[r.topic].push_back(r.topic == "orders.replies" ? h.at("handoff_request_id") + ":" +
                                                                      h.at("handoff_reply_status") + ":" + r.value
                                                                : r.value);
    }
    CHECK(by_topic["orders.replies"] ==
          std::vector<std::string>{R"(cid-bad:404:{"error":"no such order"})", "cid-busy:503:busy"});
    CHECK(by_topic["orders.dlq"] == std::vector<std::string>{"bad", "busy"});
    // The reply of each record is written before its dead letter.
    for (const std::string body : {"bad", "busy"}) {
        std::size_t reply_at = 0, dlq_at = 0;
        const auto records = e.producer->records();
        for (std::size_t i = 0; i < records.size(); ++i) {
            const auto& r = records[i];
            if (r.topic == "orders.replies" && headers_of(r).at("handoff_request_id") == "cid-" + body)
                reply_at = i + 1;
            if (r.topic == "orders.dlq" && r.value == body) dlq_at = i + 1;
        }
        CHECK(reply_at > 0);
        CHECK(dlq_at > reply_at);
    }
}

TEST_CASE("a final non-2xx answer with no dead-letter topic is replied and the record resolved") {
    auto cfg = base_sub();
    cfg.reply_topic = "orders.replies";
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(409, {}, "conflict"); };
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    REQUIRE(e.producer->records().size() == 1);
    CHECK(headers_of(e.producer->records()[0]).at("handoff_reply_status") == "409");
    CHECK(e.service->count("m1") == 1);
}

TEST_CASE("a reply that cannot be written is retried retry.attempts times, then the record is dead-lettered") {
    auto cfg = base_sub();
    cfg.reply_topic = "orders.replies";
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.attempts = 3;
    env e(cfg);
    e.service->script = [](const auto&, int) { return status(200, {}, "ok"); };
    e.producer->mode = fake_producer::policy::fail;  // every write fails ...
    e.feed(p0, 0, "A", "m1");
    REQUIRE(run_until(e.ioc, [&] {
        const auto records = e.producer->records();
        return std::count_if(records.begin(), records.end(), [](const auto& r) { return r.topic == "orders.dlq"; }) >=
               1;
    }));
    e.producer->mode = fake_producer::policy::persist;  // ... until the dead letter
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 1; }));
    const auto records = e.producer->records();
    const auto replies =
        std::count_if(records.begin(), records.end(), [](const auto& r) { return r.topic == "orders.replies"; });
    CHECK(replies == 3);
    const auto& dead = records.back();
    CHECK(dead.topic == "orders.dlq");
    bool reason_named = false;
    for (const auto& [k, v] : headers_of(dead)) {
        if (v.find("the reply could not be written to orders.replies after 3 attempts") != std::string::npos)
            reason_named = true;
    }
    CHECK(reason_named);
    CHECK(e.service->count("m1") == 1);
}

TEST_CASE("shutdown pauses everything, finishes in-flight deliveries, abandons retries and never dead-letters") {
    auto cfg = base_sub();
    cfg.dead_letter_topic = "orders.dlq";
    cfg.retry.backoff_base = 20ms;
    cfg.retry.backoff_cap = 20ms;
    env e(cfg);
    e.service->script = [](const auto& req, int) {
        if (req.body() == "failing") return status(500);
        return reply{80ms, status(200).result};
    };
    e.feed(p0, 0, "A", "failing");
    e.feed(p1, 0, "B", "slow");
    REQUIRE(run_until(e.ioc, [&] { return e.service->count("slow") == 1 && e.service->count("failing") >= 1; }));
    e.sub->begin_stop();
    e.feed(p1, 1, "C", "after-stop");  // arrives after stop: not delivered, not stored
    REQUIRE(run_until(e.ioc, [&] { return e.sub->idle(); }));
    run_for(e.ioc, 60ms);
    CHECK(e.consumer->stored_at(p1) == 1);   // the in-flight 2xx finished and was stored
    CHECK(e.consumer->stored_at(p0) == -1);  // the retrying one was not
    CHECK(e.producer->records().empty());    // nothing dead-lettered because of shutdown
    CHECK(e.service->count("after-stop") == 0);
    CHECK(e.consumer->paused.count(p0) == 1);
    CHECK(e.consumer->paused.count(p1) == 1);
    e.sub->close();
    CHECK(e.consumer->closed);
}

TEST_CASE("a partition whose buffer is full is paused, polling goes on, and it is resumed at half") {
    auto cfg = base_sub();
    cfg.ordering = config::ordering::partition;
    proxy::subscription_options opts;
    opts.partition_buffer = 4;
    env e(cfg, opts);
    bool fail = true;
    e.service->script = [&](const auto&, int) { return fail ? status(503) : status(200); };
    for (int i = 0; i < 6; ++i) e.feed(p0, i, std::nullopt, std::string("m").append(std::to_string(i)));
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->paused.count(p0) == 1; }));
    CHECK(e.service->count("m1") == 0);  // partition ordering: one at a time
    fail = false;
    REQUIRE(run_until(e.ioc, [&] { return e.consumer->stored_at(p0) == 6; }));
    CHECK(e.consumer->paused.count(p0) == 0);
    CHECK(e.consumer->resumes_of_unpaused == 0);
    const auto b = e.service->bodies();
    std::vector<std::string> firsts;
    for (auto& x : b)
        if (firsts.empty() || firsts.back() != x) firsts.push_back(x);
    CHECK(firsts == std::vector<std::string>{"m0", "m1", "m2", "m3", "m4", "m5"});
}
