#include "handoff/proxy/ops/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace handoff::proxy;

namespace {

// The value of the exposition line that starts with `series` (name and labels, as written).
double sample(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    FAIL("no sample " << series);
    return -1;
}

bool has_line(const std::string& text, const std::string& prefix) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(prefix, 0) == 0) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("a latency series counts each observation in the first bucket whose bound it does not exceed") {
    latency_series s;
    s.observe(0.0001);  // exactly the first bound: le="0.0001"
    s.observe(0.00010001);
    s.observe(30);
    s.observe(31);  // above the last bound: +Inf only
    s.observe(-1);  // a clock step backwards counts as zero
    s.observe(std::numeric_limits<double>::quiet_NaN());
    s.observe(std::numeric_limits<double>::infinity());
    CHECK(s.in_bucket(0) == 3);
    CHECK(s.in_bucket(1) == 1);
    CHECK(s.in_bucket(latency_series::bucket_count - 1) == 1);
    CHECK(s.in_bucket(latency_series::bucket_count) == 2);
    CHECK(s.sum_seconds() == doctest::Approx(0.0001 + 0.00010001 + 30 + 31 + 1e9).epsilon(1e-9));
}

TEST_CASE("latency observations from several threads are all counted") {
    latency_series s;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&s, t] {
            for (int i = 0; i < 50000; ++i) s.observe(0.001 * (t + 1));
        });
    }
    for (auto& t : threads) t.join();
    std::uint64_t total = 0;
    for (std::size_t i = 0; i <= latency_series::bucket_count; ++i) total += s.in_bucket(i);
    CHECK(total == 200000);
    CHECK(s.sum_seconds() == doctest::Approx(50000 * (0.001 + 0.002 + 0.003 + 0.004)));
}

TEST_CASE("route and topic instruments are resolved once and exported as cumulative histograms") {
    metrics m;
    auto& r = m.route("orders", handoff::config::mode::event);
    CHECK(&m.route("orders", handoff::config::mode::event) == &r);
    CHECK(&m.route("orders", handoff::config::mode::commit) != &r);
    metrics::observe(r, 202, 0.0002);
    metrics::observe(r, 202, 0.003);
    metrics::observe(r, 503, 0.003);
    metrics::observe(r, 999, 0.003);  // no status class: counted with 5xx

    auto& t = m.topic("orders.{id}");
    CHECK(&m.topic("orders.{id}") == &t);
    t.persisted->Increment();
    t.delivery->observe(0.002);

    const auto text = m.serialize();
    const std::string labels = "mode=\"event\",route=\"orders\"";
    CHECK(sample(text, "handoff_requests_total{" + labels + ",status_class=\"2xx\"}") == 2);
    CHECK(sample(text, "handoff_requests_total{" + labels + ",status_class=\"5xx\"}") == 2);
    CHECK(sample(text, "handoff_request_duration_seconds_bucket{" + labels + ",le=\"0.0001\"}") == 0);
    CHECK(sample(text, "handoff_request_duration_seconds_bucket{" + labels + ",le=\"0.00025\"}") == 1);
    CHECK(sample(text, "handoff_request_duration_seconds_bucket{" + labels + ",le=\"0.0025\"}") == 1);
    CHECK(sample(text, "handoff_request_duration_seconds_bucket{" + labels + ",le=\"0.005\"}") == 4);
    CHECK(sample(text, "handoff_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"}") == 4);
    CHECK(sample(text, "handoff_request_duration_seconds_count{" + labels + "}") == 4);
    CHECK(sample(text, "handoff_request_duration_seconds_sum{" + labels + "}") == doctest::Approx(0.0092));
    CHECK(has_line(text, "# TYPE handoff_request_duration_seconds histogram"));
    CHECK(has_line(text, "# TYPE handoff_delivery_report_seconds histogram"));

    // Every outcome a delivery report can have is exported from the start, at zero until seen.
    CHECK(sample(text, "handoff_produce_total{outcome=\"persisted\",topic=\"orders.{id}\"}") == 1);
    CHECK(sample(text, "handoff_produce_total{outcome=\"not_persisted\",topic=\"orders.{id}\"}") == 0);
    CHECK(sample(text, "handoff_produce_total{outcome=\"possibly_persisted\",topic=\"orders.{id}\"}") == 0);
    CHECK(sample(text, "handoff_delivery_report_seconds_count{topic=\"orders.{id}\"}") == 1);

    // The locked path for rare outcomes shares the topic's counters.
    m.produce_outcome("orders.{id}", "persisted");
    m.produce_outcome("orders.{id}", "refused_queue_full");
    const auto again = m.serialize();
    CHECK(sample(again, "handoff_produce_total{outcome=\"persisted\",topic=\"orders.{id}\"}") == 2);
    CHECK(sample(again, "handoff_produce_total{outcome=\"refused_queue_full\",topic=\"orders.{id}\"}") == 1);
}
