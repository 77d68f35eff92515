#include "handoff/adapters/kafka/fetch_watch.hpp"

#include <doctest/doctest.h>

#include <optional>

using namespace std::chrono_literals;
using handoff::adapters::kafka::fetch_watch;

namespace {
const auto t0 = fetch_watch::clock::time_point{} + 1000s;

// The partition's offsets as its leader would answer, counting the asks.
struct leader {
    std::optional<fetch_watch::offsets> now{fetch_watch::offsets{0, 0}};
    int asked = 0;
    fetch_watch::offsets_fn fn() {
        return [this] {
            ++asked;
            return now;
        };
    }
};
}  // namespace

TEST_CASE("records past the point read and nothing read for the window: restart the fetch where reading stopped") {
    fetch_watch w(10s);
    leader l;
    l.now = fetch_watch::offsets{0, 12};
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 9s, l.fn()));
    CHECK(l.asked == 0);  // the leader is not asked while the window runs
    CHECK(w.observe(0, 7, t0 + 10s, l.fn()) == 7);
    CHECK(l.asked == 1);
    CHECK(w.restarts(0) == 1);
}

TEST_CASE("an idle partition is not stalled, and is asked about once per window only") {
    fetch_watch w(10s);
    leader l;
    l.now = fetch_watch::offsets{0, 7};
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 10s, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 11s, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 19s, l.fn()));
    CHECK(l.asked == 1);
    CHECK_FALSE(w.observe(0, 7, t0 + 20s, l.fn()));
    CHECK(l.asked == 2);
    CHECK(w.restarts(0) == 0);
}

TEST_CASE("progress restarts the window") {
    fetch_watch w(10s);
    leader l;
    l.now = fetch_watch::offsets{0, 100};
    CHECK_FALSE(w.observe(0, 1, t0, l.fn()));
    CHECK_FALSE(w.observe(0, 2, t0 + 9s, l.fn()));
    CHECK_FALSE(w.observe(0, 2, t0 + 18s, l.fn()));
    CHECK(w.observe(0, 2, t0 + 19s, l.fn()) == 2);
    CHECK(l.asked == 1);
}

TEST_CASE("offsets that cannot be read (the broker is down) are an outage, not a stall") {
    fetch_watch w(10s);
    leader l;
    l.now = std::nullopt;
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 10s, l.fn()));
    CHECK_FALSE(w.observe(0, 7, t0 + 60s, l.fn()));
    CHECK(w.restarts(0) == 0);
    // Back, and the records wait: the next look restarts.
    l.now = fetch_watch::offsets{0, 9};
    CHECK(w.observe(0, 7, t0 + 70s, l.fn()) == 7);
}

TEST_CASE("records removed by retention past the point read: restart at the log's start") {
    fetch_watch w(10s);
    leader l;
    l.now = fetch_watch::offsets{40, 50};
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK(w.observe(0, 7, t0 + 10s, l.fn()) == 40);
    // Everything up to the end removed: nothing to read, nothing to restart.
    fetch_watch v(10s);
    l.now = fetch_watch::offsets{50, 50};
    CHECK_FALSE(v.observe(0, 7, t0, l.fn()));
    CHECK_FALSE(v.observe(0, 7, t0 + 10s, l.fn()));
}

TEST_CASE("a restart that does not help is retried after twice the time, up to the bound") {
    fetch_watch w(10s, 35s);
    leader l;
    l.now = fetch_watch::offsets{0, 9};
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK(w.observe(0, 7, t0 + 10s, l.fn()) == 7);  // first: after the window
    CHECK_FALSE(w.observe(0, 7, t0 + 19s, l.fn()));
    CHECK(w.observe(0, 7, t0 + 20s, l.fn()) == 7);  // second: 10 s later
    CHECK_FALSE(w.observe(0, 7, t0 + 39s, l.fn()));
    CHECK(w.observe(0, 7, t0 + 40s, l.fn()) == 7);  // third: 20 s later
    CHECK_FALSE(w.observe(0, 7, t0 + 74s, l.fn()));
    CHECK(w.observe(0, 7, t0 + 75s, l.fn()) == 7);  // then every 35 s (the bound)
    CHECK(w.observe(0, 7, t0 + 110s, l.fn()) == 7);
    CHECK(w.restarts(0) == 5);
    // Reading again resets the count: the next stall waits the window only.
    CHECK_FALSE(w.observe(0, 9, t0 + 111s, l.fn()));
    CHECK(w.restarts(0) == 0);
    l.now = fetch_watch::offsets{0, 12};
    CHECK(w.observe(0, 9, t0 + 121s, l.fn()) == 9);
}

TEST_CASE("partitions are watched apart; after clear() each starts over") {
    fetch_watch w(10s);
    leader l;
    l.now = fetch_watch::offsets{0, 9};
    CHECK_FALSE(w.observe(0, 7, t0, l.fn()));
    CHECK_FALSE(w.observe(1, 3, t0 + 5s, l.fn()));
    CHECK(w.observe(0, 7, t0 + 10s, l.fn()) == 7);
    CHECK_FALSE(w.observe(1, 3, t0 + 10s, l.fn()));  // its own window: 5 s old
    CHECK(w.observe(1, 3, t0 + 15s, l.fn()) == 3);
    w.clear();
    CHECK(w.restarts(0) == 0);
    CHECK(w.restarts(1) == 0);
    CHECK_FALSE(w.observe(0, 7, t0 + 16s, l.fn()));  // first sight again: a full window
    CHECK_FALSE(w.observe(0, 7, t0 + 25s, l.fn()));
    CHECK(w.observe(0, 7, t0 + 26s, l.fn()) == 7);
}
