#include "handoff/adapters/kafka/stall_detector.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using handoff::adapters::kafka::stall_detector;
using handoff::adapters::kafka::stall_observation;
using handoff::adapters::kafka::stall_verdict;

namespace {
const auto t0 = stall_detector::clock::time_point{} + 1000s;

stall_observation busy(std::uint64_t persisted = 0) {
    return {.pending = 10, .persisted = persisted, .reachable = true, .pid_assigned = true};
}
}  // namespace

TEST_CASE("records pending while the cluster answers and nothing is persisted for the window is a stall") {
    stall_detector d(30s);
    CHECK(d.observe(t0, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 29s, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 30s, busy()) == stall_verdict::no_deliveries);
}

TEST_CASE("a persisted delivery report restarts the window") {
    stall_detector d(30s);
    CHECK(d.observe(t0, busy(5)) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 20s, busy(6)) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 49s, busy(6)) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 50s, busy(6)) == stall_verdict::no_deliveries);
}

TEST_CASE("an outage is not a stall: the window counts only time in which the cluster answers") {
    stall_detector d(30s);
    auto down = busy();
    down.reachable = false;
    CHECK(d.observe(t0, down) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 300s, down) == stall_verdict::progressing);
    // The cluster is back (a new one behind the same address): the window starts now.
    CHECK(d.observe(t0 + 301s, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 330s, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 331s, busy()) == stall_verdict::no_deliveries);
}

TEST_CASE("an idle producer never stalls, and work arriving after idleness gets a full window") {
    stall_detector d(30s);
    stall_observation idle{.pending = 0, .persisted = 7, .reachable = true, .pid_assigned = true};
    CHECK(d.observe(t0, idle) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 600s, idle) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 601s, busy(7)) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 630s, busy(7)) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 631s, busy(7)) == stall_verdict::no_deliveries);
}

TEST_CASE("failed or timed-out reports are not progress") {
    // Pending drops as records time out, but nothing is persisted: still a stall.
    stall_detector d(30s);
    auto o = busy(3);
    CHECK(d.observe(t0, o) == stall_verdict::progressing);
    o.pending = 4;
    CHECK(d.observe(t0 + 15s, o) == stall_verdict::progressing);
    o.pending = 1;
    CHECK(d.observe(t0 + 30s, o) == stall_verdict::no_deliveries);
}

TEST_CASE("no producer ID for the window while the cluster answers is a stall, even with nothing pending") {
    stall_detector d(30s);
    stall_observation o{.pending = 0, .persisted = 0, .reachable = true, .pid_assigned = false};
    CHECK(d.observe(t0, o) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 29s, o) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 30s, o) == stall_verdict::no_producer_id);
    // Without an answering cluster, waiting for a producer ID is the outage, not a stall.
    stall_detector e(30s);
    o.reachable = false;
    CHECK(e.observe(t0, o) == stall_verdict::progressing);
    CHECK(e.observe(t0 + 100s, o) == stall_verdict::progressing);
}

TEST_CASE("after reset every window starts again") {
    stall_detector d(10s);
    CHECK(d.observe(t0, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 10s, busy()) == stall_verdict::no_deliveries);
    d.reset();
    CHECK(d.observe(t0 + 11s, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 20s, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 21s, busy()) == stall_verdict::no_deliveries);
}

TEST_CASE("a zero window disables detection") {
    stall_detector d(0ms);
    CHECK(d.observe(t0, busy()) == stall_verdict::progressing);
    CHECK(d.observe(t0 + 3600s, busy()) == stall_verdict::progressing);
}
