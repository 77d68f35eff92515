#include "handoff/adapters/kafka/producer.hpp"

#include "read_back.hpp"

#include <handoff/common/log.hpp>

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace kafka = handoff::adapters::kafka;
namespace proxy = handoff::proxy;
using steady = std::chrono::steady_clock;

namespace {

std::string brokers() {
    const char* b = std::getenv("HANDOFF_TEST_BROKERS");
    return b ? b : "";
}

std::string body(int i) {
    std::string v("\0\xff", 2);
    v += "record-" + std::to_string(i);
    v.push_back('\0');
    v.push_back(static_cast<char>(0xff));
    return v;
}

}  // namespace

TEST_CASE("100 records to a real broker are all persisted with increasing offsets and read back byte for byte") {
    const std::string bootstrap = brokers();
    if (bootstrap.empty()) {
        MESSAGE("HANDOFF_TEST_BROKERS not set; skipped");
        return;
    }
    proxy::log::set_level(proxy::log::level::warn);
    boost::asio::io_context ioc;
    std::string error;
    handoff::config::kafka_config cfg;
    auto producer = kafka::make_producer(ioc, cfg, bootstrap, error);
    REQUIRE_MESSAGE(producer, error);

    const auto run_until = [&](auto done, std::chrono::milliseconds within) {
        const auto deadline = steady::now() + within;
        while (!done() && steady::now() < deadline) {
            if (ioc.stopped()) ioc.restart();
            ioc.run_one_for(50ms);
        }
        return done();
    };
    REQUIRE(run_until([&] { return producer->ready(); }, 30s));

    const std::string topic = "handoff-broker-test-" + std::to_string(steady::now().time_since_epoch().count());
    constexpr int n = 100;
    std::vector<proxy::delivery_report> reports;
    std::map<std::int32_t, std::vector<std::int64_t>> offsets_in_report_order;
    std::map<std::string, std::string> sent;  // key -> value
    for (int i = 0; i < n; ++i) {
        proxy::kafka_record rec;
        rec.topic = topic;
        rec.key = "key-" + std::to_string(i);
        rec.value = body(i);
        rec.headers = {{"ce_id", "cid-" + std::to_string(i)}};
        rec.correlation_id = "cid-" + std::to_string(i);
        sent[*rec.key] = rec.value;
        REQUIRE(producer->produce(rec, [&](const proxy::delivery_report& r) {
            reports.push_back(r);
            if (r.status == proxy::delivery_status::persisted) offsets_in_report_order[r.partition].push_back(r.offset);
        }) == proxy::produce_error::ok);
    }
    REQUIRE(run_until([&] { return reports.size() == n; }, 60s));
    for (const auto& r : reports) {
        CHECK_MESSAGE(r.status == proxy::delivery_status::persisted, r.error);
    }
    for (const auto& [partition, offsets] : offsets_in_report_order) {
        for (std::size_t i = 1; i < offsets.size(); ++i) CHECK(offsets[i] > offsets[i - 1]);
    }
    CHECK(producer->flush(5s).empty());

    auto records = handoff::test::read_back(bootstrap, topic, n, 30s);
    REQUIRE(records.size() == n);
    for (const auto& r : records) {
        REQUIRE(r.key);
        REQUIRE(sent.count(*r.key) == 1);
        CHECK(r.value == sent[*r.key]);
        REQUIRE(r.headers.size() == 1);
        CHECK(r.headers[0].first == "ce_id");
    }
}
