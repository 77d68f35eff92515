#include "handoff/adapters/kafka/producer.hpp"

#include "handoff/adapters/kafka/embedded_cluster.hpp"
#include "handoff/config/kafka_rules.hpp"
#include "handoff/config/load.hpp"
#include "read_back.hpp"

#include <handoff/common/log.hpp>

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace kafka = handoff::adapters::kafka;
namespace proxy = handoff::proxy;
using steady = std::chrono::steady_clock;

namespace {

// Runs the io_context until `done()` or the deadline; returns done(). Never sleeps.
bool run_until(boost::asio::io_context& ioc, const std::function<bool()>& done,
               std::chrono::milliseconds within = 20s) {
    const auto deadline = steady::now() + within;
    while (!done() && steady::now() < deadline) {
        if (ioc.stopped()) ioc.restart();
        ioc.run_one_for(50ms);
    }
    return done();
}

using props = std::map<std::string, std::string>;

struct env {
    boost::asio::io_context ioc;
    std::unique_ptr<kafka::embedded_cluster> cluster;
    std::shared_ptr<proxy::producer> producer;

    explicit env(std::map<std::string, std::string> props = {}, bool wait_ready = true) {
        proxy::log::set_level(proxy::log::level::warn);
        std::string error;
        cluster = kafka::embedded_cluster::start(1, error);
        REQUIRE_MESSAGE(cluster, error);
        handoff::config::kafka_config cfg;
        cfg.properties = std::move(props);
        producer = kafka::make_producer(ioc, cfg, cluster->bootstraps(), error);
        REQUIRE_MESSAGE(producer, error);
        if (wait_ready) REQUIRE(run_until(ioc, [&] { return producer->ready(); }));
    }
    ~env() {
        producer.reset();  // purges and runs remaining handlers before the cluster goes away
        cluster.reset();
    }
    void broker_down() { REQUIRE(rd_kafka_mock_broker_set_down(cluster->handle(), 1) == RD_KAFKA_RESP_ERR_NO_ERROR); }
    void broker_up() { REQUIRE(rd_kafka_mock_broker_set_up(cluster->handle(), 1) == RD_KAFKA_RESP_ERR_NO_ERROR); }
};

proxy::kafka_record make_record(std::string topic, std::string value, std::string cid = "cid-1") {
    proxy::kafka_record r;
    r.topic = std::move(topic);
    r.value = std::move(value);
    r.correlation_id = std::move(cid);
    return r;
}

}  // namespace

TEST_CASE(
    "a produced record gets a persisted report with partition and offset, once, on the io_context, never inline") {
    env e;
    auto rec = make_record("orders", "hello");
    int calls = 0;
    bool on_io_thread = false;
    proxy::delivery_report got;
    auto err = e.producer->produce(rec, [&](const proxy::delivery_report& r) {
        ++calls;
        on_io_thread = e.ioc.get_executor().running_in_this_thread();
        got = r;
    });
    REQUIRE(err == proxy::produce_error::ok);
    CHECK(calls == 0);         // never inline from produce
    CHECK(rec.value.empty());  // moved from on ok
    REQUIRE(run_until(e.ioc, [&] { return calls > 0; }));
    CHECK(on_io_thread);
    CHECK(got.status == proxy::delivery_status::persisted);
    CHECK(got.partition >= 0);
    CHECK(got.offset >= 0);
    CHECK(got.error.empty());
    e.ioc.run_for(200ms);  // nothing else may arrive
    CHECK(calls == 1);
    CHECK(e.producer->stats().in_flight_handlers == 0);
    CHECK(e.producer->stats().queued_bytes == 0);
}

TEST_CASE("key, binary value and headers round-trip through the mock cluster") {
    env e;
    REQUIRE(e.cluster->create_topic("roundtrip", 2));
    const std::string value("a\0b\xff\x01z", 6);
    auto rec = make_record("roundtrip", value);
    rec.key = std::string("key\0x", 5);
    rec.headers = {{"ce_id", "cid-1"}, {"bin", std::string("\0\xff", 2)}, {"empty", ""}};
    proxy::delivery_report got;
    bool done = false;
    REQUIRE(e.producer->produce(rec, [&](const proxy::delivery_report& r) {
        got = r;
        done = true;
    }) == proxy::produce_error::ok);
    REQUIRE(run_until(e.ioc, [&] { return done; }));
    REQUIRE(got.status == proxy::delivery_status::persisted);

    auto records = handoff::test::read_back(e.cluster->bootstraps(), "roundtrip", 1, 20s);
    REQUIRE(records.size() == 1);
    CHECK(records[0].partition == got.partition);
    CHECK(records[0].offset == got.offset);
    CHECK(records[0].value == value);
    REQUIRE(records[0].key);
    CHECK(*records[0].key == std::string("key\0x", 5));
    REQUIRE(records[0].headers.size() == 3);
    CHECK(records[0].headers[0] == std::pair<std::string, std::string>("ce_id", "cid-1"));
    CHECK(records[0].headers[1] == std::pair<std::string, std::string>("bin", std::string("\0\xff", 2)));
    CHECK(records[0].headers[2] == std::pair<std::string, std::string>("empty", ""));
}

TEST_CASE("a full producer queue answers queue_full, leaves the record unchanged and never calls the handler") {
    int first_calls = 0;
    proxy::delivery_report first_report;
    {
        env e(props{{"queue.buffering.max.messages", "1"}});
        e.broker_down();
        auto first = make_record("orders", "one");
        REQUIRE(e.producer->produce(first, [&](const proxy::delivery_report& r) {
            ++first_calls;
            first_report = r;
        }) == proxy::produce_error::ok);
        auto second = make_record("orders", "two", "cid-2");
        bool second_called = false;
        CHECK(e.producer->produce(second, [&](const proxy::delivery_report&) { second_called = true; }) ==
              proxy::produce_error::queue_full);
        CHECK(second.value == "two");
        CHECK(second.topic == "orders");
        CHECK(second.correlation_id == "cid-2");
        e.ioc.run_for(200ms);
        CHECK_FALSE(second_called);
        CHECK(first_calls == 0);
        CHECK(e.producer->stats().in_flight_handlers == 1);
    }
    // Destroying the producer purged the first record: its handler ran once, not persisted.
    CHECK(first_calls == 1);
    CHECK(first_report.status != proxy::delivery_status::persisted);
}

TEST_CASE("persistent produce errors until message timeout are never reported as persisted") {
    env e(props{{"message.timeout.ms", "2000"}, {"retry.backoff.ms", "50"}, {"retry.backoff.max.ms", "100"}});
    // Make sure the topic and producer id exist first, so only Produce requests fail.
    {
        auto warm = make_record("orders", "warm-up");
        bool done = false;
        REQUIRE(e.producer->produce(warm, [&](const proxy::delivery_report&) { done = true; }) ==
                proxy::produce_error::ok);
        REQUIRE(run_until(e.ioc, [&] { return done; }));
    }
    std::vector<rd_kafka_resp_err_t> errors(500, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    rd_kafka_mock_push_request_errors_array(e.cluster->handle(), 0 /* Produce */, errors.size(), errors.data());

    auto rec = make_record("orders", "doomed");
    bool done = false;
    proxy::delivery_report got;
    REQUIRE(e.producer->produce(rec, [&](const proxy::delivery_report& r) {
        got = r;
        done = true;
    }) == proxy::produce_error::ok);
    REQUIRE(run_until(
        e.ioc, [&] { return done; }, 15s));
    CHECK(got.status != proxy::delivery_status::persisted);
    CHECK_FALSE(got.error.empty());
    MESSAGE("status=" << static_cast<int>(got.status) << " error=" << got.error);
    rd_kafka_mock_clear_request_errors(e.cluster->handle(), 0);
}

TEST_CASE("a fatal error reports every pending record as not persisted and the producer recovers") {
    env e;
    auto* kp = dynamic_cast<kafka::kafka_producer*>(e.producer.get());
    REQUIRE(kp != nullptr);
    e.broker_down();
    constexpr int n = 5;
    int calls = 0;
    int persisted = 0;
    for (int i = 0; i < n; ++i) {
        auto rec = make_record("orders", std::string("v").append(std::to_string(i)),
                               std::string("cid-").append(std::to_string(i)));
        REQUIRE(e.producer->produce(rec, [&](const proxy::delivery_report& r) {
            ++calls;
            if (r.status == proxy::delivery_status::persisted) ++persisted;
        }) == proxy::produce_error::ok);
    }
    kp->inject_fatal_error_for_test();
    REQUIRE(run_until(e.ioc, [&] { return calls == n; }));
    CHECK(persisted == 0);
    CHECK(e.producer->stats().fatal);
    CHECK_FALSE(e.producer->ready());
    // Until re-creation the producer refuses (not_ready); afterwards it accepts again.
    e.broker_up();
    bool delivered = false;
    proxy::delivery_report got;
    REQUIRE(run_until(
        e.ioc,
        [&] {
            if (delivered) return true;
            auto rec = make_record("orders", "after");
            auto err = e.producer->produce(rec, [&](const proxy::delivery_report& r) {
                got = r;
                delivered = true;
            });
            if (err != proxy::produce_error::ok) CHECK(err == proxy::produce_error::not_ready);
            return false;
        },
        30s));
    CHECK(got.status == proxy::delivery_status::persisted);
    CHECK(calls == n);
    CHECK_FALSE(e.producer->stats().fatal);
    REQUIRE(run_until(e.ioc, [&] { return e.producer->ready(); }));
}

TEST_CASE("an invalid topic name answers invalid_topic and the handler never runs") {
    env e;
    for (std::string topic : {std::string(), std::string("."), std::string(".."), std::string("bad topic"),
                              std::string("orders/eu"), std::string(250, 'a'), std::string("ümlaut")}) {
        auto rec = make_record(topic, "body");
        bool called = false;
        CHECK(e.producer->produce(rec, [&](const proxy::delivery_report&) { called = true; }) ==
              proxy::produce_error::invalid_topic);
        CHECK(rec.value == "body");
        e.ioc.run_for(20ms);
        CHECK_FALSE(called);
    }
    // The rule itself (config::valid_topic_name) is tested with the config (kafka_rules_test.cpp).
}

TEST_CASE("flush returns the correlation ids of records never delivered when the broker is down") {
    env e;
    e.broker_down();
    std::set<std::string> expected;
    int calls = 0;
    int persisted = 0;
    for (int i = 0; i < 3; ++i) {
        auto rec = make_record("orders", "v", "cid-" + std::to_string(i));
        expected.insert(rec.correlation_id);
        REQUIRE(e.producer->produce(rec, [&](const proxy::delivery_report& r) {
            ++calls;
            if (r.status == proxy::delivery_status::persisted) ++persisted;
        }) == proxy::produce_error::ok);
    }
    const auto start = steady::now();
    auto undelivered = e.producer->flush(500ms);
    CHECK(steady::now() - start < 5s);
    CHECK(std::set<std::string>(undelivered.begin(), undelivered.end()) == expected);
    CHECK(undelivered.size() == 3);
    CHECK(calls == 3);  // their handlers ran (purged), none persisted
    CHECK(persisted == 0);
    auto late = make_record("orders", "late");
    CHECK(e.producer->produce(late, [](const proxy::delivery_report&) {}) == proxy::produce_error::not_ready);
}

TEST_CASE("flush returns nothing when everything was delivered") {
    env e;
    int calls = 0;
    for (int i = 0; i < 10; ++i) {
        auto rec = make_record("orders", "v", "cid-" + std::to_string(i));
        REQUIRE(e.producer->produce(rec, [&](const proxy::delivery_report&) { ++calls; }) == proxy::produce_error::ok);
    }
    CHECK(e.producer->flush(10s).empty());
    CHECK(calls == 10);
}

TEST_CASE("make_producer rejects unknown properties and weakened durability, naming the property") {
    boost::asio::io_context ioc;
    std::string error;
    handoff::config::kafka_config cfg;
    cfg.properties = {{"no.such.property", "1"}};
    CHECK(kafka::make_producer(ioc, cfg, "127.0.0.1:1", error) == nullptr);
    CHECK(error.find("no.such.property") != std::string::npos);
    for (auto [name, value] : {std::pair{"acks", "1"}, std::pair{"enable.idempotence", "false"}}) {
        error.clear();
        cfg.properties = {{name, value}};
        CHECK(kafka::make_producer(ioc, cfg, "127.0.0.1:1", error) == nullptr);
        CHECK(error.find(name) != std::string::npos);
    }
    error.clear();
    cfg.properties = {{"acks", "all"}, {"linger.ms", "5"}};
    CHECK(kafka::make_producer(ioc, cfg, "127.0.0.1:1", error) != nullptr);
    CHECK(error.empty());
}

TEST_CASE("the producer's durability guard and the config loader's agree on every spelling") {
    // Both ask config::weakened_durability: what the loader refuses, start-up refuses, and the
    // other way round (librdkafka may still refuse a spelling of its own, e.g. " all").
    const auto loader_refuses = [](const std::string& name, const std::string& value) {
        const auto r =
            handoff::config::load_string("kafka: {brokers: b, properties: {" + name + ": \"" + value +
                                             "\"}}\nroutes:\n  - {name: e, match: {path: /e}, mode: event, topic: e}\n",
                                         "test.yaml", [](const std::string&) { return std::nullopt; });
        return std::any_of(r.errors.begin(), r.errors.end(),
                           [&](const auto& e) { return e.path == "kafka.properties." + name; });
    };
    boost::asio::io_context ioc;
    for (const char* name : {"acks", "request.required.acks", "enable.idempotence"}) {
        for (const char* value : {" all", "ALL", "-1", "1", "0", "false", "False", " true ", "true", "t rue"}) {
            INFO(name << " = '" << value << "'");
            handoff::config::kafka_config cfg;
            cfg.properties = {{name, value}};
            std::string error;
            auto p = kafka::make_producer(ioc, cfg, "127.0.0.1:1", error);
            const bool producer_refuses = error.find("is not allowed: Handoff requires") != std::string::npos;
            CHECK(producer_refuses == loader_refuses(name, value));
            CHECK(producer_refuses == handoff::config::weakened_durability(name, value).has_value());
            if (producer_refuses) CHECK(p == nullptr);
        }
    }
}

TEST_CASE("a record larger than message.max.bytes answers message_too_large") {
    env e(props{{"message.max.bytes", "10000"}});
    auto rec = make_record("orders", std::string(20000, 'x'));
    CHECK(e.producer->produce(rec, [](const proxy::delivery_report&) {}) == proxy::produce_error::message_too_large);
    CHECK(rec.value.size() == 20000);
}
