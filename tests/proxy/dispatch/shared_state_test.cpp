#include "handoff/proxy/dispatch/shared_state.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

using namespace handoff::proxy;
using namespace handoff::proxy::shared;
using verdict = key_view::verdict;
using namespace std::chrono_literals;

namespace {

const clock::time_point t0 = clock::time_point(std::chrono::hours(24 * 365 * 56));  // some day in 2026
const auto fp_a = fingerprint("POST", "/orders", "a");
const auto fp_b = fingerprint("POST", "/orders", "b");

key_view::limits small_limits() {
    key_view::limits l;
    l.max_entries = 100;
    l.max_bytes = 1 << 20;
    l.ttl = 1h;
    l.claim_timeout = 30s;
    return l;
}

record claim(std::string req, std::string key, const request_fingerprint& fp, clock::time_point at,
             std::string scope = "orders") {
    record r;
    r.kind = record_kind::claim;
    r.request_id = std::move(req);
    r.scope = std::move(scope);
    r.key = std::move(key);
    r.fp = fp;
    r.correlation_id = "corr-" + r.request_id;
    r.owner = "replica-1";
    r.timestamp = at;
    return r;
}

std::shared_ptr<const stored_response> response(unsigned status, std::string body) {
    auto r = std::make_shared<stored_response>();
    r->status = status;
    r->headers = {{"Content-Type", "application/json"}, {"Location", "/_handoff/requests/x"}};
    r->body = std::move(body);
    return r;
}

record complete(std::string req, std::string key, std::shared_ptr<const stored_response> res, bool final,
                clock::time_point at, std::string scope = "orders") {
    record r;
    r.kind = record_kind::complete;
    r.request_id = std::move(req);
    r.scope = std::move(scope);
    r.key = std::move(key);
    r.response = std::move(res);
    r.final = final;
    r.timestamp = at;
    return r;
}

record release(std::string req, std::string key, clock::time_point at) {
    record r;
    r.kind = record_kind::release;
    r.request_id = std::move(req);
    r.scope = "orders";
    r.key = std::move(key);
    r.timestamp = at;
    return r;
}

record round_trip(const record& r) {
    const auto d = decode(record_key(r), encode(r), r.timestamp);
    INFO(d.error);
    REQUIRE(d.rec);
    return *d.rec;
}

}  // namespace

TEST_CASE("state record keys: one per (route, key), whatever bytes the caller chose") {
    CHECK(idempotency_record_key("a", "b/c") != idempotency_record_key("a/b", "c"));
    CHECK(idempotency_record_key("a", "1/b") != idempotency_record_key("a/1", "b"));
    CHECK(idempotency_record_key("orders", "k") == "i/6/orders/k");
    CHECK(status_record_key("0193-abc") == "s/0193-abc");
    CHECK(idempotency_record_key("s", "x") != status_record_key("x"));
}

TEST_CASE("state records survive encode and decode, bodies byte for byte") {
    auto c = claim("r1", "key \"1\"", fp_a, t0);
    auto back = round_trip(c);
    CHECK(back.kind == record_kind::claim);
    CHECK(back.request_id == "r1");
    CHECK(back.scope == "orders");
    CHECK(back.key == "key \"1\"");
    CHECK(back.fp == fp_a);
    CHECK(back.correlation_id == "corr-r1");
    CHECK(back.owner == "replica-1");
    CHECK(back.timestamp == t0);

    std::string every_byte;
    for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(i);
    for (std::size_t n : {0u, 1u, 2u, 3u, 256u}) {
        auto res = response(201, every_byte.substr(0, n));
        auto done = round_trip(complete("r1", "k", res, true, t0));
        CHECK(done.kind == record_kind::complete);
        CHECK(done.final);
        REQUIRE(done.response);
        CHECK(done.response->status == 201);
        CHECK(done.response->body == res->body);
        CHECK(done.response->headers == res->headers);
    }

    CHECK(round_trip(release("r1", "k", t0)).kind == record_kind::release);

    record s;
    s.kind = record_kind::status;
    s.request_id = "r9";
    s.status.current = request_status::state::persisted;
    s.status.route = "orders";
    s.status.topic = "orders.eu";
    s.status.partition = 3;
    s.status.offset = 1234567890123;
    s.status.reply = response(200, std::string("\0\xff", 2));
    s.timestamp = t0;
    auto sb = round_trip(s);
    CHECK(sb.status.current == request_status::state::persisted);
    CHECK(sb.status.topic == "orders.eu");
    CHECK(sb.status.partition == 3);
    CHECK(sb.status.offset == 1234567890123);
    REQUIRE(sb.status.reply);
    CHECK(sb.status.reply->body == std::string("\0\xff", 2));
    CHECK(sb.status.updated == t0);
}

TEST_CASE("state records that are not ours are refused with a reason, never applied") {
    const auto key = idempotency_record_key("orders", "k");
    CHECK(decode(key, "not json", t0).error == "not a JSON object");
    CHECK(decode(key, "[1,2]", t0).error == "not a JSON object");
    CHECK(decode(key, R"({"v":2,"t":"claim"})", t0).error == "unknown format version");
    CHECK(decode(key, R"({"v":1,"t":"grab","req":"r"})", t0).error == "unknown record kind");
    CHECK(decode(key, R"({"v":1,"t":"claim","req":"r","scope":"orders","key":"k","fp":"xyz"})", t0).error ==
          "fingerprint is not 64 hex digits");
    CHECK_FALSE(decode(key, R"({"v":1,"t":"claim","req":"r"})", t0).rec);  // fields missing
    CHECK_FALSE(decode(key, R"({"v":1,"t":"claim","req":5,"scope":"orders","key":"k"})", t0).rec);
    // A claim copied under another entry's key does not touch that entry.
    const auto moved = decode(idempotency_record_key("orders", "other"), encode(claim("r1", "k", fp_a, t0)), t0);
    CHECK_FALSE(moved.rec);
    CHECK(moved.error == "the record's key does not match its content");
    auto bad_body = complete("r1", "k", response(200, "x"), true, t0);
    auto text = encode(bad_body);
    const auto at = text.find("\"body\":\"");
    REQUIRE(at != std::string::npos);
    text.replace(at + 8, 4, "!!!!");
    CHECK(decode(key, text, t0).error.find("base64") != std::string::npos);
    auto bad_status = encode(complete("r1", "k", response(200, "x"), true, t0));
    bad_status.replace(bad_status.find("\"status\":200"), 12, "\"status\":17");
    CHECK(decode(key, bad_status, t0).error.find("status out of range") != std::string::npos);
}

TEST_CASE("key view: the first claim in the log wins, later ones see it in flight") {
    key_view v(small_limits());
    CHECK_FALSE(v.peek("orders", "k", fp_a, t0));
    v.apply(claim("r1", "k", fp_a, t0));
    v.apply(claim("r2", "k", fp_a, t0 + 1ms));  // written by another replica a moment later
    CHECK(v.decide("orders", "k", fp_a, "r1", t0 + 2ms).kind == verdict::fresh);
    const auto second = v.decide("orders", "k", fp_a, "r2", t0 + 2ms);
    CHECK(second.kind == verdict::in_flight);
    CHECK(second.request_id == "r1");
    CHECK(second.correlation_id == "corr-r1");
    CHECK(v.decide("orders", "k", fp_b, "r3", t0 + 2ms).kind == verdict::mismatch);
    // Another route's key of the same name is another entry.
    v.apply(claim("r4", "k", fp_b, t0, "payments"));
    CHECK(v.decide("payments", "k", fp_b, "r4", t0 + 2ms).kind == verdict::fresh);
    CHECK(v.size() == 2);
}

TEST_CASE("key view: completions replay, provisional answers are replaced, settled ones are not") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    v.apply(complete("r2", "k", response(500, "not the holder"), true, t0));  // not the holder: ignored
    CHECK(v.peek("orders", "k", fp_a, t0 + 1s)->kind == verdict::in_flight);
    v.apply(complete("r1", "k", response(504, "unknown"), false, t0 + 1s));
    CHECK(v.peek("orders", "k", fp_a, t0 + 2s)->response->status == 504);
    v.apply(complete("r1", "k", response(201, "persisted"), true, t0 + 2s));
    auto a = v.peek("orders", "k", fp_a, t0 + 3s);
    CHECK(a->kind == verdict::replay);
    CHECK(a->response->status == 201);
    v.apply(complete("r1", "k", response(504, "late"), false, t0 + 3s));
    CHECK(v.peek("orders", "k", fp_a, t0 + 4s)->response->status == 201);
    CHECK(v.peek("orders", "k", fp_b, t0 + 4s)->kind == verdict::mismatch);
}

TEST_CASE("key view: a release frees the key; a claim that lost before it must claim again") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    v.apply(claim("r2", "k", fp_a, t0 + 1ms));
    v.apply(release("r2", "k", t0 + 2ms));  // not the holder: nothing
    CHECK(v.size() == 1);
    v.apply(release("r1", "k", t0 + 3ms));
    CHECK(v.size() == 0);
    CHECK(v.decide("orders", "k", fp_a, "r2", t0 + 4ms).kind == verdict::lost);
    v.apply(claim("r2", "k", fp_a, t0 + 5ms));
    CHECK(v.decide("orders", "k", fp_a, "r2", t0 + 6ms).kind == verdict::fresh);
}

TEST_CASE("key view: expiry is decided by the claim record's timestamp, not by the reader's clock") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    v.apply(complete("r1", "k", response(201, "one"), true, t0 + 1s));
    // Read long after: whether r2 won depends only on the records.
    v.apply(claim("r2", "k", fp_a, t0 + 59min));
    CHECK(v.decide("orders", "k", fp_a, "r2", t0 + 5h).kind == verdict::replay);
    v.apply(claim("r3", "k", fp_a, t0 + 1h));  // exactly at the ttl: r1's entry has expired
    CHECK(v.decide("orders", "k", fp_a, "r3", t0 + 5h).kind == verdict::fresh);
    // The reader's clock only hides entries from peek and expire().
    CHECK(v.peek("orders", "k", fp_a, t0 + 1h + 1s)->kind == verdict::in_flight);
    CHECK_FALSE(v.peek("orders", "k", fp_a, t0 + 2h));
    v.expire(t0 + 2h);
    CHECK(v.size() == 0);
    CHECK(v.bytes() == 0);
}

TEST_CASE("key view: a claim without completion for claim_timeout is abandoned, and stays unanswered by a rerun") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    CHECK(v.peek("orders", "k", fp_a, t0 + 29s)->kind == verdict::in_flight);
    auto a = v.peek("orders", "k", fp_a, t0 + 30s);
    CHECK(a->kind == verdict::abandoned);
    CHECK(a->request_id == "r1");
    // A new claim during the ttl still loses: the first request's record may exist.
    v.apply(claim("r2", "k", fp_a, t0 + 31s));
    CHECK(v.decide("orders", "k", fp_a, "r2", t0 + 32s).kind == verdict::abandoned);
    // Its replica completes after all: the answer is known again.
    v.apply(complete("r1", "k", response(201, "late but persisted"), true, t0 + 40s));
    CHECK(v.peek("orders", "k", fp_a, t0 + 41s)->kind == verdict::replay);
}

TEST_CASE("key view: tombstones forget an entry") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    v.forget(idempotency_record_key("orders", "other"));
    CHECK(v.size() == 1);
    v.forget(idempotency_record_key("orders", "k"));
    CHECK(v.size() == 0);
    CHECK(v.bytes() == 0);
}

TEST_CASE("key view: an expiry tombstone forgets only the entry it names; expire says what it dropped") {
    key_view v(small_limits());
    v.apply(claim("r1", "k", fp_a, t0));
    v.apply(claim("r9", "other", fp_a, t0 + 10min));
    const auto gone = v.expire(t0 + 1h);  // r1's ttl ends; r9's not yet
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].record_key == idempotency_record_key("orders", "k"));
    CHECK(gone[0].request_id == "r1");
    CHECK(gone[0].owner == "replica-1");
    CHECK(v.size() == 1);
    // The key won again by r2 before r1's tombstone is read: the tombstone ends r1's entry, not r2's.
    v.apply(claim("r2", "k", fp_b, t0 + 1h + 1s));
    v.forget(idempotency_record_key("orders", "k"), "r1");
    CHECK(v.decide("orders", "k", fp_b, "r2", t0 + 1h + 2s).kind == verdict::fresh);
    v.forget(idempotency_record_key("orders", "k"), "r2");
    CHECK(v.peek("orders", "k", fp_b, t0 + 1h + 3s) == std::nullopt);
    CHECK(v.expire(t0 + 2h).size() == 1);  // r9
    CHECK(v.size() == 0);
}

TEST_CASE("key view: beyond max_entries it reports full and still forgets nothing") {
    auto l = small_limits();
    l.max_entries = 3;
    key_view v(l);
    for (int i = 0; i < 4; ++i) v.apply(claim("r" + std::to_string(i), "k" + std::to_string(i), fp_a, t0));
    CHECK(v.full());
    CHECK(v.size() == 4);
    for (int i = 0; i < 4; ++i) {
        v.apply(claim("x" + std::to_string(i), "k" + std::to_string(i), fp_a, t0 + 1s));
        CHECK(v.decide("orders", "k" + std::to_string(i), fp_a, "x" + std::to_string(i), t0 + 2s).kind ==
              verdict::in_flight);
    }
    v.apply(release("r0", "k0", t0 + 3s));
    CHECK_FALSE(v.full());
}

TEST_CASE("key view: over max_bytes the oldest responses are dropped, the entries and verdicts stay") {
    auto l = small_limits();
    l.max_bytes = 40'000;
    key_view v(l);
    for (int i = 0; i < 5; ++i) {
        const auto id = "r" + std::to_string(i);
        v.apply(claim(id, "k" + std::to_string(i), fp_a, t0 + std::chrono::seconds(i)));
        v.apply(complete(id, "k" + std::to_string(i), response(201, std::string(10'000, 'x')), true,
                         t0 + std::chrono::seconds(i)));
    }
    CHECK(v.bytes() <= l.max_bytes);
    CHECK(v.size() == 5);
    CHECK(v.peek("orders", "k0", fp_a, t0 + 10s)->kind == verdict::evicted);
    CHECK(v.peek("orders", "k4", fp_a, t0 + 10s)->kind == verdict::replay);
    CHECK(v.peek("orders", "k0", fp_b, t0 + 10s)->kind == verdict::mismatch);
    // An evicted entry still holds its key.
    v.apply(claim("x0", "k0", fp_a, t0 + 20s));
    CHECK(v.decide("orders", "k0", fp_a, "x0", t0 + 21s).kind == verdict::evicted);
}

TEST_CASE("key view: every replica decides the same, however the partitions interleave") {
    // Records for 8 keys, several requests per key, in per-key (per-partition) order. Two views
    // read them with different interleavings of the keys, as two replicas reading several
    // partitions at different speeds would; every decision must agree.
    std::mt19937 rng(17);
    std::vector<std::vector<record>> per_key(8);
    int n = 0;
    for (int step = 0; step < 400; ++step) {
        const int k = static_cast<int>(rng() % 8);
        const auto key = "k" + std::to_string(k);
        const auto at = t0 + std::chrono::minutes(step);
        const auto id = "r" + std::to_string(n++);
        switch (rng() % 4) {
            case 0:
            case 1: per_key[k].push_back(claim(id, key, rng() % 5 ? fp_a : fp_b, at)); break;
            case 2:
                if (!per_key[k].empty())
                    per_key[k].push_back(complete(per_key[k].back().request_id, key, response(201, id), rng() % 2, at));
                break;
            case 3:
                if (!per_key[k].empty()) per_key[k].push_back(release(per_key[k].back().request_id, key, at));
                break;
        }
    }
    auto play = [&](unsigned seed) {
        key_view v(small_limits());
        std::vector<std::size_t> next(8, 0);
        std::mt19937 order(seed);
        std::vector<std::string> decisions;
        for (;;) {
            std::vector<int> ready;
            for (int k = 0; k < 8; ++k) {
                if (next[k] < per_key[k].size()) ready.push_back(k);
            }
            if (ready.empty()) break;
            const int k = ready[order() % ready.size()];
            const auto& r = per_key[k][next[k]++];
            v.apply(r);
            if (r.kind == record_kind::claim) {
                const auto a = v.decide(r.scope, r.key, r.fp, r.request_id, r.timestamp);
                decisions.push_back(r.request_id + ":" + std::to_string(static_cast<int>(a.kind)) + ":" + a.request_id);
            }
        }
        std::sort(decisions.begin(), decisions.end());
        return decisions;
    };
    const auto a = play(1), b = play(2), c = play(3);
    CHECK(a.size() > 100);
    CHECK(a == b);
    CHECK(a == c);
    // The sequence exercises winners, losers and replays, not one verdict only.
    auto count = [&](verdict k) {
        const auto tag = ":" + std::to_string(static_cast<int>(k)) + ":";
        return std::count_if(a.begin(), a.end(),
                             [&](const std::string& d) { return d.find(tag) != std::string::npos; });
    };
    CHECK(count(verdict::fresh) > 20);
    CHECK(count(verdict::in_flight) + count(verdict::abandoned) > 20);
    CHECK(count(verdict::replay) > 5);
}
