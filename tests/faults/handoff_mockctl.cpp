// handoff_mockctl: a librdkafka mock cluster in its own process, driven line by line from stdin,
// so that tests can run the real `handoff` binary against it and inject broker faults while a
// real Kafka client (Handoff's producer, and the test's confluent-kafka consumer) talks to it
// over loopback TCP.
//
//   handoff_mockctl [--brokers N]
//
// On start it prints one line: `bootstrap 127.0.0.1:p1,127.0.0.1:p2,...`. Then it reads commands,
// one per line, and answers each with exactly one line: `ok [value]` or `error <reason>`.
// End of input (or `quit`) destroys the cluster and exits 0.
//
// Commands (ERR is a librdkafka error name such as NOT_ENOUGH_REPLICAS or _TRANSPORT, or a
// number; API is a Kafka ApiKey name such as Produce or InitProducerId, or a number; BROKER -1
// means every broker):
//   topic_create TOPIC PARTITIONS [RF]
//   push_request_errors API ERR...                  cluster-wide error stack for API
//   clear_request_errors API
//   broker_push_request_error_rtts BROKER API ERR:RTT_MS...
//   partition_push_request_errors TOPIC PARTITION API ERR...
//   broker_error_stack_cnt BROKER API               -> ok N (errors not consumed yet)
//   broker_set_down BROKER | broker_set_up BROKER
//   broker_set_rtt BROKER MS
//   partition_set_leader TOPIC PARTITION BROKER
//   topic_set_error TOPIC ERR                       (ERR NO_ERROR clears it)
//   track_start | track_clear
//   requests API                                     -> ok N (requests of API seen since track_start)
//   ping                                             -> ok
//   quit
//
// Threading: librdkafka's mock API is thread-safe; this program is single-threaded anyway.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct api_name {
    const char* name;
    int16_t key;
};

// The ApiKeys a fault scenario is likely to need (Kafka protocol numbers).
constexpr api_name apis[] = {
    {"Produce", 0},         {"Fetch", 1},       {"ListOffsets", 2},      {"Metadata", 3},
    {"OffsetCommit", 8},    {"OffsetFetch", 9}, {"FindCoordinator", 10}, {"JoinGroup", 11},
    {"Heartbeat", 12},      {"LeaveGroup", 13}, {"SyncGroup", 14},       {"ApiVersions", 18},
    {"InitProducerId", 22},
};

std::optional<long> parse_long(const std::string& s) {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (errno != 0 || end == nullptr || *end != '\0') return std::nullopt;
    return v;
}

std::optional<int16_t> parse_api(const std::string& s) {
    for (const auto& a : apis) {
        if (s == a.name) return a.key;
    }
    if (auto n = parse_long(s); n && *n >= 0 && *n < 100) return static_cast<int16_t>(*n);
    return std::nullopt;
}

std::optional<rd_kafka_resp_err_t> parse_err(const std::string& s) {
    if (auto n = parse_long(s)) return static_cast<rd_kafka_resp_err_t>(*n);
    const struct rd_kafka_err_desc* descs = nullptr;
    size_t cnt = 0;
    rd_kafka_get_err_descs(&descs, &cnt);
    std::string want = s;
    if (want.rfind("RD_KAFKA_RESP_ERR_", 0) == 0) want = want.substr(std::strlen("RD_KAFKA_RESP_ERR_"));
    for (size_t i = 0; i < cnt; ++i) {
        if (descs[i].name != nullptr && want == descs[i].name) return static_cast<rd_kafka_resp_err_t>(descs[i].code);
    }
    if (want == "NO_ERROR") return RD_KAFKA_RESP_ERR_NO_ERROR;
    return std::nullopt;
}

class controller {
public:
    controller(rd_kafka_mock_cluster_t* c, int brokers) : cluster_(c), brokers_(brokers) {}

    // Executes one command line; returns the answer line (without newline).
    std::string execute(const std::vector<std::string>& a) {
        if (a.empty()) return "error empty command";
        const std::string& cmd = a[0];
        if (cmd == "ping") return "ok";
        if (cmd == "topic_create") return topic_create(a);
        if (cmd == "push_request_errors") return push_request_errors(a);
        if (cmd == "clear_request_errors") return clear_request_errors(a);
        if (cmd == "broker_push_request_error_rtts") return broker_push_rtts(a);
        if (cmd == "partition_push_request_errors") return partition_push(a);
        if (cmd == "broker_error_stack_cnt") return error_stack_cnt(a);
        if (cmd == "broker_set_down" || cmd == "broker_set_up") return broker_updown(a);
        if (cmd == "broker_set_rtt") return broker_set_rtt(a);
        if (cmd == "partition_set_leader") return partition_set_leader(a);
        if (cmd == "topic_set_error") return topic_set_error(a);
        if (cmd == "track_start") {
            rd_kafka_mock_start_request_tracking(cluster_);
            return "ok";
        }
        if (cmd == "track_clear") {
            rd_kafka_mock_clear_requests(cluster_);
            return "ok";
        }
        if (cmd == "requests") return requests(a);
        return "error unknown command '" + cmd + "'";
    }

private:
    static std::string result(rd_kafka_resp_err_t err) {
        return err == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : std::string("error ") + rd_kafka_err2name(err);
    }

    // Broker ids are 1..N; -1 means all of them.
    std::optional<std::vector<int32_t>> brokers(const std::string& s) const {
        auto n = parse_long(s);
        if (!n) return std::nullopt;
        std::vector<int32_t> out;
        if (*n == -1) {
            for (int32_t i = 1; i <= brokers_; ++i) out.push_back(i);
        } else if (*n >= 1 && *n <= brokers_) {
            out.push_back(static_cast<int32_t>(*n));
        } else {
            return std::nullopt;
        }
        return out;
    }

    std::string topic_create(const std::vector<std::string>& a) {
        if (a.size() < 3 || a.size() > 4) return "error usage: topic_create TOPIC PARTITIONS [RF]";
        auto parts = parse_long(a[2]);
        auto rf = a.size() == 4 ? parse_long(a[3]) : std::optional<long>(std::min(3, brokers_));
        if (!parts || !rf || *parts < 1 || *rf < 1) return "error bad number";
        return result(
            rd_kafka_mock_topic_create(cluster_, a[1].c_str(), static_cast<int>(*parts), static_cast<int>(*rf)));
    }

    std::string push_request_errors(const std::vector<std::string>& a) {
        if (a.size() < 3) return "error usage: push_request_errors API ERR...";
        auto api = parse_api(a[1]);
        if (!api) return "error unknown api '" + a[1] + "'";
        std::vector<rd_kafka_resp_err_t> errs;
        for (size_t i = 2; i < a.size(); ++i) {
            auto e = parse_err(a[i]);
            if (!e) return "error unknown error '" + a[i] + "'";
            errs.push_back(*e);
        }
        rd_kafka_mock_push_request_errors_array(cluster_, *api, errs.size(), errs.data());
        return "ok";
    }

    std::string clear_request_errors(const std::vector<std::string>& a) {
        if (a.size() != 2) return "error usage: clear_request_errors API";
        auto api = parse_api(a[1]);
        if (!api) return "error unknown api '" + a[1] + "'";
        rd_kafka_mock_clear_request_errors(cluster_, *api);
        return "ok";
    }

    std::string broker_push_rtts(const std::vector<std::string>& a) {
        if (a.size() < 4) return "error usage: broker_push_request_error_rtts BROKER API ERR:RTT...";
        auto ids = brokers(a[1]);
        auto api = parse_api(a[2]);
        if (!ids) return "error bad broker '" + a[1] + "'";
        if (!api) return "error unknown api '" + a[2] + "'";
        std::vector<std::pair<rd_kafka_resp_err_t, int>> pairs;
        for (size_t i = 3; i < a.size(); ++i) {
            const auto colon = a[i].rfind(':');
            if (colon == std::string::npos) return "error expected ERR:RTT_MS, got '" + a[i] + "'";
            auto e = parse_err(a[i].substr(0, colon));
            auto rtt = parse_long(a[i].substr(colon + 1));
            if (!e || !rtt || *rtt < 0) return "error bad ERR:RTT_MS '" + a[i] + "'";
            pairs.emplace_back(*e, static_cast<int>(*rtt));
        }
        for (int32_t id : *ids) {
            // One pair per call: the stack is FIFO, so this keeps the given order.
            for (const auto& [err, rtt] : pairs) {
                auto r = rd_kafka_mock_broker_push_request_error_rtts(cluster_, id, *api, 1, err, rtt);
                if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return result(r);
            }
        }
        return "ok";
    }

    std::string partition_push(const std::vector<std::string>& a) {
        if (a.size() < 5) return "error usage: partition_push_request_errors TOPIC PARTITION API ERR...";
        auto part = parse_long(a[2]);
        auto api = parse_api(a[3]);
        if (!part || !api) return "error bad partition or api";
        for (size_t i = 4; i < a.size(); ++i) {
            auto e = parse_err(a[i]);
            if (!e) return "error unknown error '" + a[i] + "'";
            auto r = rd_kafka_mock_partition_push_request_errors(cluster_, a[1].c_str(), static_cast<int32_t>(*part),
                                                                 *api, 1, *e);
            if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return result(r);
        }
        return "ok";
    }

    std::string error_stack_cnt(const std::vector<std::string>& a) {
        if (a.size() != 3) return "error usage: broker_error_stack_cnt BROKER API";
        auto ids = brokers(a[1]);
        auto api = parse_api(a[2]);
        if (!ids || !api) return "error bad broker or api";
        size_t total = 0;
        for (int32_t id : *ids) {
            size_t cnt = 0;
            auto r = rd_kafka_mock_broker_error_stack_cnt(cluster_, id, *api, &cnt);
            if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return result(r);
            total += cnt;
        }
        return "ok " + std::to_string(total);
    }

    std::string broker_updown(const std::vector<std::string>& a) {
        if (a.size() != 2) return "error usage: " + a[0] + " BROKER";
        auto ids = brokers(a[1]);
        if (!ids) return "error bad broker '" + a[1] + "'";
        for (int32_t id : *ids) {
            auto r = a[0] == "broker_set_down" ? rd_kafka_mock_broker_set_down(cluster_, id)
                                               : rd_kafka_mock_broker_set_up(cluster_, id);
            if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return result(r);
        }
        return "ok";
    }

    std::string broker_set_rtt(const std::vector<std::string>& a) {
        if (a.size() != 3) return "error usage: broker_set_rtt BROKER MS";
        auto ids = brokers(a[1]);
        auto ms = parse_long(a[2]);
        if (!ids || !ms || *ms < 0) return "error bad broker or rtt";
        for (int32_t id : *ids) {
            auto r = rd_kafka_mock_broker_set_rtt(cluster_, id, static_cast<int>(*ms));
            if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return result(r);
        }
        return "ok";
    }

    std::string partition_set_leader(const std::vector<std::string>& a) {
        if (a.size() != 4) return "error usage: partition_set_leader TOPIC PARTITION BROKER";
        auto part = parse_long(a[2]);
        auto id = parse_long(a[3]);
        if (!part || !id) return "error bad number";
        return result(rd_kafka_mock_partition_set_leader(cluster_, a[1].c_str(), static_cast<int32_t>(*part),
                                                         static_cast<int32_t>(*id)));
    }

    std::string topic_set_error(const std::vector<std::string>& a) {
        if (a.size() != 3) return "error usage: topic_set_error TOPIC ERR";
        auto e = parse_err(a[2]);
        if (!e) return "error unknown error '" + a[2] + "'";
        rd_kafka_mock_topic_set_error(cluster_, a[1].c_str(), *e);
        return "ok";
    }

    std::string requests(const std::vector<std::string>& a) {
        if (a.size() != 2) return "error usage: requests API";
        auto api = parse_api(a[1]);
        if (!api) return "error unknown api '" + a[1] + "'";
        size_t cnt = 0;
        rd_kafka_mock_request_t** reqs = rd_kafka_mock_get_requests(cluster_, &cnt);
        size_t n = 0;
        for (size_t i = 0; i < cnt; ++i) {
            if (rd_kafka_mock_request_api_key(reqs[i]) == *api) ++n;
        }
        rd_kafka_mock_request_destroy_array(reqs, cnt);
        return "ok " + std::to_string(n);
    }

    rd_kafka_mock_cluster_t* cluster_;
    int brokers_;
};

std::vector<std::string> split(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

// The hosting handle never connects anywhere; its log lines go to stderr only when they matter.
void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) {
    if (level <= 4) std::fprintf(stderr, "mockctl librdkafka %s: %s\n", fac ? fac : "", buf ? buf : "");
}

}  // namespace

int main(int argc, char** argv) {
    int brokers = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--brokers" && i + 1 < argc) {
            auto n = parse_long(argv[++i]);
            if (!n || *n < 1 || *n > 16) {
                std::fprintf(stderr, "handoff_mockctl: --brokers must be 1..16\n");
                return 2;
            }
            brokers = static_cast<int>(*n);
        } else {
            std::fprintf(stderr, "usage: handoff_mockctl [--brokers N]   (commands on stdin; see the source)\n");
            return 2;
        }
    }
    char errstr[512] = {};
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "client.id", "handoff-mockctl", errstr, sizeof errstr);
    rd_kafka_conf_set_log_cb(conf, &on_log);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == nullptr) {
        rd_kafka_conf_destroy(conf);
        std::fprintf(stderr, "handoff_mockctl: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (cluster == nullptr) {
        rd_kafka_destroy(rk);
        std::fprintf(stderr, "handoff_mockctl: rd_kafka_mock_cluster_new failed\n");
        return 1;
    }
    std::cout << "bootstrap " << rd_kafka_mock_cluster_bootstraps(cluster) << std::endl;
    controller ctl(cluster, brokers);
    for (std::string line; std::getline(std::cin, line);) {
        const auto words = split(line);
        if (words.empty()) continue;
        if (words[0] == "quit") {
            std::cout << "ok" << std::endl;
            break;
        }
        std::cout << ctl.execute(words) << std::endl;
    }
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 0;
}
