// shared_registry against a fake producer, with the test playing the state topic: what the registry
// produces is fed back to it as consumed records, in the order and at the time the test chooses.
#include "handoff/proxy/dispatch/shared_registry.hpp"

#include "fakes/fake_producer.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <optional>

using namespace handoff;
using namespace handoff::proxy;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using kind = shared_registry::claim_result::kind;
using verdict = shared::key_view::verdict;

namespace {

struct rig {
    asio::io_context ioc;
    std::shared_ptr<test::fake_producer> kafka = std::make_shared<test::fake_producer>(ioc);
    std::shared_ptr<status_store> statuses = std::make_shared<status_store>(1000, 1 << 20, std::chrono::minutes(10));
    std::shared_ptr<metrics> stats = std::make_shared<metrics>();
    std::shared_ptr<shared_registry> reg;
    std::size_t fed = 0;  // records of the fake producer given back to the registry so far

    explicit rig(std::chrono::milliseconds claim_wait = 2s, std::string replica = "r1") {
        config::state_config s;
        s.shared = true;
        s.topic = "state";
        s.claim_wait = claim_wait;
        s.claim_timeout = 30s;
        config::idempotency_config k;
        reg = std::make_shared<shared_registry>(s, k, kafka, statuses, stats, std::move(replica));
        reg->on_assigned({{"state", 0}, {"state", 1}, {"state", 2}});
    }

    // Starts a claim; its result lands in `out`.
    void start(std::optional<shared_registry::claim_result>& out, std::string key, std::string request_id,
               const request_fingerprint& fp) {
        asio::co_spawn(ioc, reg->claim("orders", std::move(key), fp, std::move(request_id), "corr"),
                       [&out](std::exception_ptr e, shared_registry::claim_result r) {
                           REQUIRE_FALSE(e);
                           out = std::move(r);
                       });
    }

    // Runs the io_context until `done` or 5 s.
    template <class Pred>
    void run_until(Pred done) {
        for (int i = 0; i < 500 && !done(); ++i) {
            ioc.restart();
            ioc.run_for(10ms);
        }
        REQUIRE(done());
    }

    // Gives the registry every record produced since the last call, as the state topic would:
    // partition 0, the offset the fake producer reported.
    void feed() {
        const auto all = kafka->records();
        for (; fed < all.size(); ++fed) {
            const auto& r = all[fed];
            if (r.topic != "state") continue;
            consumed_record c;
            c.topic = r.topic;
            c.partition = 0;
            c.offset = static_cast<std::int64_t>(fed);
            c.key = r.key;
            c.value = r.value;
            c.timestamp_ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(shared::clock::now().time_since_epoch()).count();
            reg->on_record(std::move(c));
        }
    }
};

const auto fp_a = fingerprint("POST", "/orders", "a");
const auto fp_b = fingerprint("POST", "/orders", "b");

std::string kind_of(const kafka_record& r) {
    const auto at = r.value.find("\"t\":\"");
    return at == std::string::npos ? std::string() : r.value.substr(at + 5, r.value.find('"', at + 5) - at - 5);
}

}  // namespace

TEST_CASE("shared registry: a claim read back wins; claims read back after it see it in flight, then replay") {
    rig t;
    std::optional<shared_registry::claim_result> first, second, third;
    t.start(first, "k", "req-1", fp_a);
    t.start(second, "k", "req-2", fp_a);
    t.run_until([&] { return t.kafka->count() == 2; });  // both claims written before either is read
    CHECK(first == std::nullopt);                        // nothing is decided before the read-back
    t.feed();
    t.run_until([&] { return first && second; });
    REQUIRE(first->result == kind::decided);
    CHECK(first->answer.kind == verdict::fresh);
    REQUIRE(second->result == kind::decided);
    CHECK(second->answer.kind == verdict::in_flight);
    CHECK(second->answer.request_id == "req-1");

    stored_response res;
    res.status = 201;
    res.body = "persisted";
    t.reg->complete("req-1", res, true);
    t.reg->complete("req-2", res, true);  // not a request that won: nothing written
    REQUIRE(t.kafka->count() == 3);
    CHECK(kind_of(t.kafka->record(2)) == "complete");
    t.feed();
    // Known now: decided from the view, without writing a claim.
    t.start(third, "k", "req-3", fp_a);
    t.run_until([&] { return third.has_value(); });
    CHECK(third->answer.kind == verdict::replay);
    CHECK(third->answer.response->body == "persisted");
    CHECK(t.kafka->count() == 3);
}

TEST_CASE("shared registry: a claim not read back within claim_wait is refused and released") {
    rig t(200ms);
    std::optional<shared_registry::claim_result> r;
    t.start(r, "k", "req-1", fp_a);
    t.run_until([&] { return r.has_value(); });  // never fed: the state topic is unreachable
    CHECK(r->result == kind::unavailable);
    CHECK(r->reason.find("claim_wait") != std::string::npos);
    REQUIRE(t.kafka->count() == 2);
    CHECK(kind_of(t.kafka->record(0)) == "claim");
    CHECK(kind_of(t.kafka->record(1)) == "release");
    // If the claim landed after all, the release frees the key again.
    t.feed();
    std::optional<shared_registry::claim_result> again;
    t.start(again, "k", "req-2", fp_a);
    t.run_until([&] { return t.kafka->count() == 3; });
    t.feed();
    t.run_until([&] { return again.has_value(); });
    CHECK(again->answer.kind == verdict::fresh);
}

TEST_CASE("shared registry: a claim the broker did not persist, or the producer refused, is unavailable") {
    rig t;
    t.kafka->mode = test::fake_producer::policy::fail;
    std::optional<shared_registry::claim_result> r;
    t.start(r, "k", "req-1", fp_a);
    t.run_until([&] { return r.has_value(); });
    CHECK(r->result == kind::unavailable);
    CHECK(r->reason.find("did not persist") != std::string::npos);

    t.kafka->mode = test::fake_producer::policy::persist;
    t.kafka->refuse = produce_error::queue_full;
    std::optional<shared_registry::claim_result> refused;
    const auto before = t.kafka->count();
    t.start(refused, "k", "req-2", fp_a);
    t.run_until([&] { return refused.has_value(); });
    CHECK(refused->result == kind::unavailable);
    CHECK(refused->reason.find("queue_full") != std::string::npos);
    CHECK(t.kafka->count() == before);
}

TEST_CASE("shared registry: a key used with another request is a mismatch on every replica") {
    rig t;
    std::optional<shared_registry::claim_result> first, other;
    t.start(first, "k", "req-1", fp_a);
    t.run_until([&] { return t.kafka->count() == 1; });
    t.feed();
    t.run_until([&] { return first.has_value(); });
    t.start(other, "k", "req-2", fp_b);
    t.run_until([&] { return other.has_value(); });
    CHECK(other->answer.kind == verdict::mismatch);
}

TEST_CASE("shared registry: outcomes are published, other replicas' are stored, and foreign records are skipped") {
    rig a;
    rig b(2s, "r2");
    a.statuses->set_publisher([&](const std::string& id, const request_status& s) { a.reg->publish_status(id, s); });
    a.statuses->put("req-1", request_status{request_status::state::accepted, "orders", "t", -1, -1, {}, {}});
    CHECK(a.kafka->count() == 0);  // a beginning is not published
    a.statuses->put("req-1", request_status{request_status::state::persisted, "orders", "t", 2, 42, {}, {}});
    REQUIRE(a.kafka->count() == 1);
    CHECK(kind_of(a.kafka->record(0)) == "status");

    // Replica b reads a's record: it knows req-1 now.
    const auto rec = a.kafka->record(0);
    consumed_record c;
    c.topic = "state";
    c.partition = 1;
    c.offset = 7;
    c.key = rec.key;
    c.value = rec.value;
    c.timestamp_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(shared::clock::now().time_since_epoch()).count();
    b.reg->on_record(c);
    const auto s = b.statuses->get("req-1");
    REQUIRE(s);
    CHECK(s->current == request_status::state::persisted);
    CHECK(s->offset == 42);
    // Its own record read back changes nothing in a (its store may be ahead).
    a.statuses->put("req-1", request_status{request_status::state::unknown, "orders", "t", -1, -1, "x", {}});
    a.reg->on_record(c);
    CHECK(a.statuses->get("req-1")->current == request_status::state::unknown);
    // Something that is not a state record is skipped and counted; the position still advances.
    consumed_record junk = c;
    junk.offset = 8;
    junk.value = "not json";
    b.reg->on_record(junk);
    CHECK(b.stats->serialize().find("handoff_state_records_skipped_total 1") != std::string::npos);
    bool applied = false;
    b.reg->when_applied(1, 8, [&](bool ok) { applied = ok; });
    CHECK(applied);
    b.reg->when_applied(1, 9, [&](bool) { applied = false; });
    CHECK(applied);  // not yet: offset 9 is still ahead
}

TEST_CASE("shared registry: a replaced state topic clears the view and fails the claims waiting on the old one") {
    rig t;
    const auto read_back = [&t](std::size_t index) {  // the new topic's record, at the offset the fake reported
        consumed_record c;
        c.topic = "state";
        c.partition = 0;
        c.offset = static_cast<std::int64_t>(index);
        c.key = t.kafka->record(index).key;
        c.value = t.kafka->record(index).value;
        c.timestamp_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(shared::clock::now().time_since_epoch()).count();
        t.reg->on_record(std::move(c));
    };
    std::optional<shared_registry::claim_result> held, refused, waiting, after;
    t.start(held, "k", "req-1", fp_a);
    t.run_until([&] { return t.kafka->count() == 1; });
    t.feed();
    t.run_until([&] { return held.has_value(); });
    REQUIRE(held->answer.kind == verdict::fresh);
    REQUIRE(t.reg->view_size() == 1);
    // The old topic was read far ahead (other replicas' records).
    consumed_record far;
    far.topic = "state";
    far.partition = 0;
    far.offset = 1000;
    far.value = "not a state record";
    t.reg->on_record(far);

    // The topic goes: some partitions first (the view stands), then the last.
    t.reg->on_revoked({{"state", 1}, {"state", 2}}, /*lost=*/true);
    CHECK(t.reg->view_size() == 1);
    CHECK(t.reg->reading());
    t.reg->on_revoked({{"state", 0}}, /*lost=*/true);
    CHECK(t.reg->view_size() == 0);
    CHECK_FALSE(t.reg->reading());

    // Nothing is claimed or written while no partition is read.
    const auto written = t.kafka->count();
    t.start(refused, "k", "req-2", fp_a);
    t.run_until([&] { return refused.has_value(); });
    CHECK(refused->result == kind::unavailable);
    CHECK(refused->reason.find("not being read") != std::string::npos);
    stored_response res;
    res.status = 202;
    t.reg->complete("req-1", res, true);
    CHECK(t.kafka->count() == written);

    // The new topic: its offsets start again, below the position the old one had reached (1000).
    // A claim there waits for its own record; here the topic is replaced again first: it fails.
    t.reg->on_assigned({{"state", 0}});
    t.start(waiting, "k", "req-3", fp_a);
    t.run_until([&] { return t.kafka->count() == written + 1; });
    t.ioc.restart();
    t.ioc.run_for(20ms);
    CHECK_FALSE(waiting.has_value());  // not decided by the old topic's position
    t.reg->on_revoked({{"state", 0}}, /*lost=*/true);
    t.run_until([&] { return waiting.has_value(); });
    CHECK(waiting->result == kind::unavailable);
    CHECK(waiting->reason.find("replaced") != std::string::npos);

    // And on the topic after that, a claim read back wins: the old key went with the old topic.
    t.reg->on_assigned({{"state", 0}});
    const auto base = t.kafka->count();
    t.start(after, "k", "req-4", fp_b);
    t.run_until([&] { return t.kafka->count() == base + 1; });
    read_back(base);
    t.run_until([&] { return after.has_value(); });
    REQUIRE(after->result == kind::decided);
    CHECK(after->answer.kind == verdict::fresh);
}

TEST_CASE("shared registry: a key it owned gets a tombstone naming its request when it expires; others' do not") {
    rig mine(2s, "r1");
    std::optional<shared_registry::claim_result> won;
    mine.start(won, "k", "req-1", fp_a);
    mine.run_until([&] { return mine.kafka->count() == 1; });
    mine.feed();
    mine.run_until([&] { return won.has_value(); });
    REQUIRE(won->answer.kind == verdict::fresh);
    // Another replica's view of the same record: it does not own the key.
    rig other(2s, "r2");
    consumed_record c;
    c.topic = "state";
    c.partition = 0;
    c.offset = 0;
    c.key = mine.kafka->record(0).key;
    c.value = mine.kafka->record(0).value;
    c.timestamp_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(shared::clock::now().time_since_epoch()).count();
    other.reg->on_record(c);
    REQUIRE(other.reg->view_size() == 1);

    const auto later = shared::clock::now() + 25h;  // past idempotency.ttl (24 h by default)
    mine.reg->sweep(shared::clock::now());
    CHECK(mine.kafka->count() == 1);  // not expired yet: nothing written
    mine.reg->sweep(later);
    other.reg->sweep(later);
    CHECK(mine.reg->view_size() == 0);
    CHECK(other.reg->view_size() == 0);
    REQUIRE(mine.kafka->count() == 2);
    const auto& t = mine.kafka->record(1);
    CHECK(t.tombstone);
    CHECK(t.key == mine.kafka->record(0).key);
    REQUIRE(t.headers.size() == 1);
    CHECK(t.headers[0].name == "handoff_expired");
    CHECK(t.headers[0].value == "req-1");
    CHECK(other.kafka->count() == 0);

    // Read back by a replica where the key was won again since: that entry stays.
    rig third(2s, "r3");
    consumed_record again = c;
    again.value = mine.kafka->record(0).value;
    third.reg->on_record(again);
    consumed_record tomb;
    tomb.topic = "state";
    tomb.partition = 0;
    tomb.offset = 1;
    tomb.key = t.key;
    tomb.null_value = true;
    tomb.headers = {{"handoff_expired", "req-0"}};  // ends an older request's entry
    third.reg->on_record(tomb);
    CHECK(third.reg->view_size() == 1);
    tomb.offset = 2;
    tomb.headers = {};  // an operator's tombstone: frees the key whoever holds it
    third.reg->on_record(tomb);
    CHECK(third.reg->view_size() == 0);
}
