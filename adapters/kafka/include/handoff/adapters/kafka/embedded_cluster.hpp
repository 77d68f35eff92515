// An in-process Kafka stand-in: librdkafka's mock cluster (`kafka.brokers: embedded`).
//
// NOT durable: everything lives in this process's memory and disappears with it. It speaks the
// Kafka protocol on loopback TCP ports (127.0.0.1, ephemeral), so kcat and any client can use
// `bootstraps()`. Topics are auto-created on a producer's first metadata request for them
// (librdkafka producers send AllowAutoTopicCreation=true) with 4 partitions and replication
// factor min(3, brokers); `create_topic` creates one with a chosen partition count beforehand.
// Thread-safe per librdkafka's mock API.
#pragma once

#include <memory>
#include <string>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;

namespace handoff::adapters::kafka {

class embedded_cluster {
public:
    // Starts `brokers` mock brokers on its own librdkafka handle. nullptr + `error` on failure.
    static std::unique_ptr<embedded_cluster> start(int brokers, std::string& error);

    ~embedded_cluster();
    embedded_cluster(const embedded_cluster&) = delete;
    embedded_cluster& operator=(const embedded_cluster&) = delete;

    // Comma-separated "127.0.0.1:port" list for bootstrap.servers.
    std::string bootstraps() const;

    // Creates `topic` with `partitions` partitions (replication factor 1).
    // Returns false (and logs) when the mock cluster refuses, e.g. the topic already exists.
    bool create_topic(const std::string& topic, int partitions);

    // Escape hatch for fault-injection tests (include <librdkafka/rdkafka_mock.h> to use it).
    rd_kafka_mock_cluster_t* handle() const noexcept { return cluster_; }

private:
    embedded_cluster(rd_kafka_t* rk, rd_kafka_mock_cluster_t* cluster) noexcept : rk_(rk), cluster_(cluster) {}
    rd_kafka_t* rk_;
    rd_kafka_mock_cluster_t* cluster_;
};

}  // namespace handoff::adapters::kafka
