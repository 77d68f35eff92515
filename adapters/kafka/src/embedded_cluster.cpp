#include "handoff/adapters/kafka/embedded_cluster.hpp"

#include <handoff/common/log.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace handoff::adapters::kafka {

namespace {

// The hosting handle has no bootstrap.servers on purpose; its notices are debug-level noise.
void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept {
    try {
        const auto l = level <= 4 ? proxy::log::level::warn : proxy::log::level::debug;
        if (proxy::log::enabled(l))
            proxy::log::write(l, "librdkafka (embedded cluster)",
                              {{"facility", fac ? fac : ""}, {"detail", buf ? buf : ""}});
    } catch (...) {}
}

}  // namespace

std::unique_ptr<embedded_cluster> embedded_cluster::start(int brokers, std::string& error) {
    if (brokers < 1) {
        error = "embedded cluster needs at least one broker";
        return nullptr;
    }
    char errstr[512] = {};
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // The handle only hosts the mock cluster's thread; it never connects anywhere.
    if (rd_kafka_conf_set(conf, "client.id", "handoff-embedded", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        error = errstr;
        return nullptr;
    }
    rd_kafka_conf_set_log_cb(conf, &on_log);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == nullptr) {  // conf is freed by rd_kafka_new only on success
        rd_kafka_conf_destroy(conf);
        error = std::string("cannot create the embedded cluster's handle: ") + errstr;
        return nullptr;
    }
    rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (cluster == nullptr) {
        rd_kafka_destroy(rk);
        error = "rd_kafka_mock_cluster_new failed";
        return nullptr;
    }
    auto self = std::unique_ptr<embedded_cluster>(new embedded_cluster(rk, cluster));
    proxy::log::warn("embedded Kafka mock cluster started: NOT DURABLE, for trying Handoff out only",
                     {{"bootstrap_servers", self->bootstraps()}, {"brokers", brokers}});
    return self;
}

embedded_cluster::~embedded_cluster() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(rk_);
}

std::string embedded_cluster::bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

bool embedded_cluster::create_topic(const std::string& topic, int partitions) {
    // Replication factor 1: the mock cluster does not replicate anyway.
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        proxy::log::warn("embedded cluster: cannot create topic",
                         {{"topic", topic}, {"error", rd_kafka_err2name(err)}});
        return false;
    }
    return true;
}

}  // namespace handoff::adapters::kafka
