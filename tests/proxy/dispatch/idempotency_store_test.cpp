#include "handoff/proxy/dispatch/idempotency_store.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

using namespace handoff::proxy;
using verdict = idempotency_store::verdict;

namespace {

stored_response answer(unsigned status, std::string body) {
    stored_response r;
    r.status = status;
    r.headers = {{"Content-Type", "application/json"}};
    r.body = std::move(body);
    return r;
}

const auto fp_a = fingerprint("POST", "/orders", "a");

}  // namespace

TEST_CASE("Idempotency-Key values: tokens and sf-strings, 1-255 visible ASCII") {
    CHECK(parse_idempotency_key("8e03978e-40d5-43e8-bc93-6894a57f9324") == "8e03978e-40d5-43e8-bc93-6894a57f9324");
    CHECK(parse_idempotency_key("\"abc\"") == "abc");
    CHECK(parse_idempotency_key(R"("a\"b\\c")") == R"(a"b\c)");
    CHECK(parse_idempotency_key("\"a b\"") == "a b");
    CHECK_FALSE(parse_idempotency_key(""));
    CHECK_FALSE(parse_idempotency_key("\"\""));
    CHECK_FALSE(parse_idempotency_key("a b"));
    CHECK_FALSE(parse_idempotency_key("\"a\"b\""));
    CHECK_FALSE(parse_idempotency_key(R"("a\x")"));
    CHECK_FALSE(parse_idempotency_key(std::string("a\x7f", 2)));
    CHECK_FALSE(parse_idempotency_key("caf\xc3\xa9"));
    CHECK(parse_idempotency_key(std::string(255, 'k')));
    CHECK_FALSE(parse_idempotency_key(std::string(256, 'k')));
}

TEST_CASE("fingerprints differ by method, target and body, and fields cannot run into each other") {
    CHECK(fingerprint("POST", "/a", "x") == fingerprint("POST", "/a", "x"));
    CHECK(fingerprint("POST", "/a", "x") != fingerprint("PUT", "/a", "x"));
    CHECK(fingerprint("POST", "/a", "x") != fingerprint("POST", "/a?q", "x"));
    CHECK(fingerprint("POST", "/a", "x") != fingerprint("POST", "/a", "y"));
    CHECK(fingerprint("POST", "/ax", "") != fingerprint("POST", "/a", "x"));
}

TEST_CASE("fingerprints cover the values taken into the record: a header key, allow-listed headers, Content-Type") {
    const auto fp = [](std::vector<std::string> taken) { return fingerprint("POST", "/a", "x", taken); };
    CHECK(fp({"content-type=application/json", "x-tenant=eu"}) == fp({"content-type=application/json", "x-tenant=eu"}));
    CHECK(fp({"content-type=application/json", "x-tenant=eu"}) != fp({"content-type=application/json", "x-tenant=us"}));
    CHECK(fp({"content-type=application/json", "x-tenant=eu"}) != fp({"content-type=text/plain", "x-tenant=eu"}));
    CHECK(fp({"content-type", "x-tenant="}) != fp({"content-type", "x-tenant"}));  // empty vs absent
    CHECK(fp({"x-a=b", "x-c"}) != fp({"x-a", "=bx-c"}));                           // no running together
    CHECK(fp({}) == fingerprint("POST", "/a", "x"));
}

TEST_CASE("first request runs; a repeat in flight is 409; after completion the stored response is replayed") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    auto first = s.begin("orders", "k1", fp_a, "c1");
    CHECK(first.kind == verdict::fresh);
    auto again = s.begin("orders", "k1", fp_a, "c2");
    CHECK(again.kind == verdict::in_flight);
    CHECK(again.request_id == "c1");
    s.complete("c1", answer(201, "{}"), true);
    auto replay = s.begin("orders", "k1", fp_a, "c3");
    REQUIRE(replay.kind == verdict::replay);
    CHECK(replay.response->status == 201);
    CHECK(replay.request_id == "c1");
}

TEST_CASE("the same key with a different request is a mismatch, in flight or completed") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    s.begin("orders", "k", fp_a, "c1");
    CHECK(s.begin("orders", "k", fingerprint("POST", "/orders", "b"), "c2").kind == verdict::mismatch);
    s.complete("c1", answer(200, ""), true);
    CHECK(s.begin("orders", "k", fingerprint("POST", "/orders", "b"), "c3").kind == verdict::mismatch);
}

TEST_CASE("keys are scoped by route") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    CHECK(s.begin("orders", "k", fp_a, "c1").kind == verdict::fresh);
    CHECK(s.begin("payments", "k", fp_a, "c2").kind == verdict::fresh);
}

TEST_CASE("release forgets the key so that a retry runs again; a final completion cannot be released") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    s.begin("r", "k", fp_a, "c1");
    s.release("c1");
    CHECK(s.size() == 0);
    CHECK(s.begin("r", "k", fp_a, "c2").kind == verdict::fresh);
    s.complete("c2", answer(200, "done"), true);
    s.release("c2");
    CHECK(s.begin("r", "k", fp_a, "c3").kind == verdict::replay);
}

TEST_CASE("a provisional response is replayed until a final one replaces it; a final one is never replaced") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    s.begin("r", "k", fp_a, "c1");
    s.complete("c1", answer(504, "unknown"), false);
    CHECK(s.begin("r", "k", fp_a, "c2").response->status == 504);
    s.complete("c1", answer(200, "reply"), true);
    CHECK(s.begin("r", "k", fp_a, "c3").response->status == 200);
    s.complete("c1", answer(500, "later"), true);
    CHECK(s.begin("r", "k", fp_a, "c4").response->body == "reply");
}

TEST_CASE("completions for unknown request IDs change nothing") {
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    s.complete("nobody", answer(200, ""), true);
    s.release("nobody");
    CHECK(s.size() == 0);
}

TEST_CASE("a late release or completion of a request never touches a later request's entry for the same key") {
    // A `not persisted` report releases the key on the producer thread; a retry then begins the
    // key again; the first request's session releases (and a stray completion arrives) after that.
    // Both name the first request's ID, so the retry keeps its key in flight: no third attempt runs.
    idempotency_store s(100, 1 << 20, std::chrono::minutes(1));
    s.begin("r", "k", fp_a, "req-1");
    s.release("req-1");                                              // the report: not persisted
    CHECK(s.begin("r", "k", fp_a, "req-2").kind == verdict::fresh);  // the retry runs
    s.release("req-1");                                              // the first session's own release
    s.complete("req-1", answer(201, "stale"), true);
    const auto third = s.begin("r", "k", fp_a, "req-3");
    CHECK(third.kind == verdict::in_flight);
    CHECK(third.request_id == "req-2");
}

TEST_CASE("entries expire after the TTL") {
    idempotency_store s(100, 1 << 20, std::chrono::milliseconds(0));
    s.begin("r", "k", fp_a, "c1");
    s.complete("c1", answer(200, ""), true);
    CHECK(s.begin("r", "k", fp_a, "c2").kind == verdict::fresh);
}

TEST_CASE("the store is bounded in entries and in bytes, least recently used first") {
    idempotency_store s(3, 1 << 20, std::chrono::minutes(1));
    for (const char* k : {"a", "b", "c", "d"}) s.begin("r", k, fp_a, std::string("c-") + k);
    CHECK(s.size() == 3);
    CHECK(s.begin("r", "a", fp_a, "again").kind == verdict::fresh);  // "a" was evicted

    idempotency_store small(1000, 100 * 1024, std::chrono::minutes(1));
    for (int i = 0; i < 20; ++i) {
        const auto id = std::string("c").append(std::to_string(i));
        small.begin("r", std::string("k").append(std::to_string(i)), fp_a, id);
        small.complete(id, answer(200, std::string(10 * 1024, 'x')), true);
        CHECK(small.bytes() <= 100 * 1024 + 11 * 1024);
    }
    CHECK(small.size() < 20);
    CHECK(small.begin("r", "k19", fp_a, "z").kind == verdict::replay);
}

TEST_CASE("the store is safe under concurrent use") {
    idempotency_store s(500, 1 << 20, std::chrono::minutes(1));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&s, t] {
            for (int i = 0; i < 3000; ++i) {
                const auto id = std::to_string(t) + "-" + std::to_string(i);
                const auto r = s.begin("r", std::to_string(i % 200), fp_a, id);
                if (r.kind == verdict::fresh) {
                    if (i % 3 == 0) {
                        s.release(id);
                    } else {
                        s.complete(id, answer(200, "x"), i % 2 == 0);
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(s.size() <= 500);
}
