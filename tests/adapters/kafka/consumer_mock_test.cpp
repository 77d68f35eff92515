// The consumer adapter and a subscription against librdkafka's mock cluster: group membership,
// offsets committed only for resolved records, and a dead-letter write that keeps failing
// (fault injection) leaving the source offset uncommitted (tests/CATALOGUE.md, C-5); consumer lag()
// measured from the stored offset.
#include "handoff/adapters/kafka/consumer.hpp"

#include "handoff/adapters/kafka/embedded_cluster.hpp"
#include "handoff/adapters/kafka/producer.hpp"

#include <handoff/common/log.hpp>
#include <handoff/proxy/delivery/subscription.hpp>

#include "fakes/fake_upstream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace kafka = handoff::adapters::kafka;
namespace proxy = handoff::proxy;
namespace asio = boost::asio;
namespace config = handoff::config;
using steady = std::chrono::steady_clock;

namespace {

bool run_until(asio::io_context& ioc, const std::function<bool()>& done, std::chrono::milliseconds within = 30s) {
    const auto deadline = steady::now() + within;
    while (!done() && steady::now() < deadline) {
        if (ioc.stopped()) ioc.restart();
        ioc.run_one_for(20ms);
    }
    return done();
}

// The local service answers 200 unless a test scripts otherwise.
std::shared_ptr<handoff::test::fake_upstream> make_service(int status = 200) {
    auto svc = std::make_shared<handoff::test::fake_upstream>();
    svc->script = [status](const auto&, int) { return handoff::test::status(status); };
    return svc;
}

// The committed offset of `group` on topic/0, read with a separate client (no subscription).
std::int64_t committed(const std::string& bootstrap, const std::string& group, const std::string& topic) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    REQUIRE(rk);
    auto* l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic.c_str(), 0);
    const auto e = rd_kafka_committed(rk, l, 10000);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR);
    const std::int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return off;
}

struct env {
    asio::io_context ioc;
    std::unique_ptr<kafka::embedded_cluster> cluster;
    std::shared_ptr<proxy::producer> producer;

    env() {
        proxy::log::set_level(proxy::log::level::error);
        std::string error;
        cluster = kafka::embedded_cluster::start(1, error);
        REQUIRE_MESSAGE(cluster, error);
        config::kafka_config cfg;
        cfg.properties = {{"message.timeout.ms", "1500"}};
        producer = kafka::make_producer(ioc, cfg, cluster->bootstraps(), error);
        REQUIRE_MESSAGE(producer, error);
        REQUIRE(run_until(ioc, [&] { return producer->ready(); }));
    }
    ~env() {
        producer.reset();
        cluster.reset();
    }

    void seed(const std::string& topic, int n) {
        int persisted = 0;
        for (int i = 0; i < n; ++i) {
            proxy::kafka_record r;
            r.topic = topic;
            r.key = "k" + std::to_string(i % 3);
            r.value = "v" + std::to_string(i);
            r.headers = {{"ce_id", "id-" + std::to_string(i)}, {"handoff_method", "POST"}, {"handoff_path", "/in"}};
            REQUIRE(producer->produce(r, [&](const proxy::delivery_report& rep) {
                if (rep.status == proxy::delivery_status::persisted) ++persisted;
            }) == proxy::produce_error::ok);
        }
        REQUIRE(run_until(ioc, [&] { return persisted == n; }));
    }

    config::subscription sub(const std::string& topic, const std::string& group) {
        config::subscription s;
        s.name = "t";
        s.topics = {topic};
        s.group = group;
        s.dead_letter_topic = topic + ".dlq";
        s.retry.backoff_base = 20ms;
        s.retry.backoff_cap = 100ms;
        s.properties = {{"auto.commit.interval.ms", "200"}, {"session.timeout.ms", "6000"}};
        return s;
    }
};

}  // namespace

TEST_CASE("a subscription consumes in its group, delivers every record and commits up to the high watermark") {
    env e;
    e.cluster->create_topic("orders", 1);
    e.seed("orders", 50);
    auto svc = make_service();
    const auto cfg = e.sub("orders", "g-ok");
    std::string error;
    auto strand = asio::make_strand(e.ioc);
    auto consumer = kafka::make_consumer(strand, {}, cfg, e.cluster->bootstraps(), error);
    REQUIRE_MESSAGE(consumer, error);
    proxy::subscription sub(strand, cfg, {}, consumer, svc, e.producer);
    sub.start();
    REQUIRE(run_until(e.ioc, [&] { return sub.counters().offsets_stored > 0 && sub.counters().delivered == 50; }));
    CHECK(sub.counters().assignments >= 1);
    sub.begin_stop();
    REQUIRE(run_until(e.ioc, [&] { return sub.idle(); }));
    sub.close();
    CHECK(committed(e.cluster->bootstraps(), "g-ok", "orders") == 50);
}

TEST_CASE(
    "a dead-letter write that keeps failing leaves the source offset uncommitted; once it succeeds it is committed") {
    env e;
    e.cluster->create_topic("src", 1);
    e.cluster->create_topic("src.dlq", 1);
    e.seed("src", 1);
    auto svc = make_service(400);  // dead-letter at once
    // Every Produce fails (retriable) until message.timeout.ms: the write is not persisted.
    rd_kafka_resp_err_t errs[64];
    for (auto& x : errs) x = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    rd_kafka_mock_push_request_errors_array(e.cluster->handle(), 0 /* Produce */, 64, errs);

    const auto cfg = e.sub("src", "g-dlq");
    std::string error;
    auto strand = asio::make_strand(e.ioc);
    auto consumer = kafka::make_consumer(strand, {}, cfg, e.cluster->bootstraps(), error);
    REQUIRE_MESSAGE(consumer, error);
    auto sub = std::make_unique<proxy::subscription>(strand, cfg, config::upstream_config{}, consumer, svc, e.producer);
    sub->start();
    REQUIRE(run_until(
        e.ioc, [&] { return sub->counters().dead_letter_failures >= 2; }, 40s));
    CHECK(sub->counters().dead_lettered == 0);
    CHECK(sub->counters().offsets_stored == 0);
    CHECK(svc->count() == 1);  // the delivery is not repeated, only the write
    sub->begin_stop();
    REQUIRE(run_until(e.ioc, [&] { return sub->idle(); }));
    sub->close();
    CHECK(committed(e.cluster->bootstraps(), "g-dlq", "src") < 0);  // RD_KAFKA_OFFSET_INVALID: nothing committed

    // Restart with the broker healthy: the record is consumed again, dead-lettered and committed.
    rd_kafka_mock_clear_request_errors(e.cluster->handle(), 0);
    auto consumer2 = kafka::make_consumer(strand, {}, cfg, e.cluster->bootstraps(), error);
    REQUIRE_MESSAGE(consumer2, error);
    proxy::subscription sub2(strand, cfg, config::upstream_config{}, consumer2, svc, e.producer);
    sub2.start();
    REQUIRE(run_until(
        e.ioc, [&] { return sub2.counters().dead_lettered == 1 && sub2.counters().offsets_stored > 0; }, 40s));
    sub2.begin_stop();
    REQUIRE(run_until(e.ioc, [&] { return sub2.idle(); }));
    sub2.close();
    CHECK(committed(e.cluster->bootstraps(), "g-dlq", "src") == 1);
}

TEST_CASE("lag() reports high watermark - stored offset per assigned partition, from cached values") {
    env e;
    e.cluster->create_topic("lagged", 1);
    constexpr int n = 20;
    constexpr int k = 7;
    e.seed("lagged", n);

    struct listener final : proxy::consumer_listener {
        std::vector<proxy::topic_partition> assigned;
        int records = 0;
        void on_assigned(const std::vector<proxy::topic_partition>& ps) override {
            assigned.insert(assigned.end(), ps.begin(), ps.end());
        }
        void on_revoked(const std::vector<proxy::topic_partition>&, bool) override {}
        void on_record(proxy::consumed_record) override { ++records; }
    } l;
    const auto cfg = e.sub("lagged", "g-lag");
    std::string error;
    auto strand = asio::make_strand(e.ioc);
    auto consumer = kafka::make_consumer(strand, {}, cfg, e.cluster->bootstraps(), error);
    REQUIRE_MESSAGE(consumer, error);
    CHECK(consumer->lag().empty());  // nothing assigned yet
    asio::post(strand, [&] { consumer->start(l); });

    const auto lag_of_partition0 = [&]() -> std::int64_t {
        for (const auto& p : consumer->lag()) {
            if (p.topic == "lagged" && p.partition == 0) return p.lag;
        }
        return -1;
    };
    // Everything consumed, nothing stored: the position-based fallback says 0 left to consume.
    REQUIRE(run_until(e.ioc, [&] { return l.records == n && lag_of_partition0() == 0; }));
    // Stored (processed) up to k: lag is measured from the stored offset.
    proxy::store_result stored = proxy::store_result::failed;
    asio::post(strand, [&] { stored = consumer->store_offset({"lagged", 0}, k); });
    REQUIRE(run_until(e.ioc, [&] { return stored == proxy::store_result::ok; }));
    REQUIRE(run_until(
        e.ioc, [&] { return lag_of_partition0() == n - k; }, 10s));
    const auto lags = consumer->lag();
    REQUIRE(lags.size() == 1);
    CHECK(lags[0].lag == n - k);

    consumer->close();
    CHECK(consumer->lag().empty());
}
