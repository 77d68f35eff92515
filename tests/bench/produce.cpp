// handoff_bench_produce: the `commit` limit of the benchmark (README.md here) — librdkafka producing straight to the
// broker with the settings Handoff uses (idempotent, acks=all, linger.ms=1 unless overridden),
// latency measured per message from its scheduled produce time to its delivery report.
//
//   handoff_bench_produce --brokers 127.0.0.1:19392 --topic bench.direct --rate 5000 --duration 5
//   handoff_bench_produce --brokers ... --topic ... --rate 0 --duration 5     # peak: as fast as it goes
//
// At a fixed rate, message i is due at start + i / rate (open loop, as handoff_loadgen). At peak
// (--rate 0) messages are produced back to back, waiting only while the queue is full, and each
// one's latency runs from its own produce call. Prints one JSON object in the load generator's
// shape (`status` counts delivery reports as "persisted"/"failed"), plus the process's own CPU
// time per delivered message and its RSS idle (producer connected, nothing sent) and at the end.
// Exit 0 when the run happened, 1 when the producer could not be created or never got metadata.
#include "histogram.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <sys/resource.h>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct options {
    std::string brokers = "127.0.0.1:9092";
    std::string topic = "bench.direct";
    double rate = 1000;  // 0 = peak
    double duration = 5;
    double warmup = 1;
    std::size_t size = 100;
    std::string linger_ms = "1";
};

// Shared between the producing thread and the poll thread (which runs every delivery report).
struct run_state {
    std::int64_t measure_from_ns = 0;  // steady-clock ns; reports for messages due earlier are warm-up
    std::atomic<std::uint64_t> sent{0};
    handoff::bench::histogram latency;  // poll thread only
    std::uint64_t persisted = 0;        // poll thread only
    std::uint64_t failed = 0;           // poll thread only
    std::int64_t last_report_ns = 0;    // poll thread only
};

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return 0;
}

// Runs on the poll thread. The message's opaque is its due time in steady-clock ns.
void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto& st = *static_cast<run_state*>(opaque);
    auto due = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(m->_private));
    if (due < st.measure_from_ns) return;
    auto now = now_ns();
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_PERSISTED) {
        ++st.persisted;
        st.latency.record(static_cast<std::uint64_t>(now - due));
    } else {
        ++st.failed;
    }
    st.last_report_ns = now;
}

bool set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
    char err[256];
    if (rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        std::cerr << "handoff_bench_produce: " << name << ": " << err << '\n';
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i], v = argv[i + 1];
        if (a == "--brokers")
            o.brokers = v;
        else if (a == "--topic")
            o.topic = v;
        else if (a == "--rate")
            o.rate = std::stod(v);
        else if (a == "--duration")
            o.duration = std::stod(v);
        else if (a == "--warmup")
            o.warmup = std::stod(v);
        else if (a == "--size")
            o.size = std::stoul(v);
        else if (a == "--linger-ms")
            o.linger_ms = v;
        else {
            std::cerr << "usage: handoff_bench_produce --brokers B --topic T [--rate R|0] [--duration S] [--warmup S]"
                         " [--size N] [--linger-ms MS]\n";
            return 2;
        }
    }
    run_state st;
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // The same producer settings as Handoff's adapter (adapters/kafka/src/producer.cpp).
    if (!set(conf, "bootstrap.servers", o.brokers) || !set(conf, "client.id", "handoff-bench") ||
        !set(conf, "enable.idempotence", "true") || !set(conf, "acks", "all") || !set(conf, "linger.ms", o.linger_ms) ||
        !set(conf, "queue.buffering.max.messages", "100000") || !set(conf, "queue.buffering.max.kbytes", "65536") ||
        !set(conf, "message.timeout.ms", "30000"))
        return 1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &st);
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        std::cerr << "handoff_bench_produce: " << err << '\n';
        return 1;
    }
    // Metadata for the topic (auto-created by the broker on first request), bounded.
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, o.topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    bool ready = false;
    for (int attempt = 0; attempt < 30 && !ready; ++attempt) {
        if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ready = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    md->topics[0].partition_cnt > 0;
            rd_kafka_metadata_destroy(md);
        }
        if (!ready) std::this_thread::sleep_for(200ms);
    }
    rd_kafka_topic_destroy(rkt);
    if (!ready) {
        std::cerr << "handoff_bench_produce: no metadata for topic " << o.topic << " from " << o.brokers << '\n';
        rd_kafka_destroy(rk);
        return 1;
    }
    std::this_thread::sleep_for(500ms);
    const long rss_idle = rss_kb();

    std::atomic<bool> stop{false};
    std::thread poller([&] {
        while (!stop.load() || rd_kafka_outq_len(rk) > 0) rd_kafka_poll(rk, 50);
    });

    std::string payload = "{\"bench\":\"";
    while (payload.size() + 2 < o.size) payload.push_back('x');
    payload += "\"}";

    const bool peak = o.rate <= 0;
    const std::int64_t start = now_ns() + 10'000'000;
    st.measure_from_ns = start + static_cast<std::int64_t>(o.warmup * 1e9);
    const std::int64_t end = st.measure_from_ns + static_cast<std::int64_t>(o.duration * 1e9);
    const double interval = peak ? 0.0 : 1e9 / o.rate;
    double cpu_start = -1;
    std::uint64_t queue_full = 0;
    for (std::uint64_t i = 0;; ++i) {
        std::int64_t due = peak ? now_ns() : start + static_cast<std::int64_t>(interval * static_cast<double>(i));
        if (due >= end) break;
        if (!peak) {
            auto wait = due - now_ns();
            if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
        }
        if (cpu_start < 0 && due >= st.measure_from_ns) cpu_start = cpu_seconds();
        for (;;) {
            auto e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(o.topic.c_str()), RD_KAFKA_V_VALUE(payload.data(), payload.size()),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::intptr_t>(due))), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                std::cerr << "handoff_bench_produce: produce: " << rd_kafka_err2str(e) << '\n';
                break;
            }
            ++queue_full;
            std::this_thread::sleep_for(100us);
        }
        if (due >= st.measure_from_ns) st.sent.fetch_add(1);
    }
    rd_kafka_flush(rk, 30000);
    stop = true;
    poller.join();
    const double cpu = cpu_seconds() - (cpu_start < 0 ? cpu_seconds() : cpu_start);
    const long rss_load = rss_kb();
    rd_kafka_destroy(rk);

    double window = std::max(static_cast<double>(st.last_report_ns - st.measure_from_ns) / 1e9, o.duration);
    double achieved = st.persisted / window;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::printf(
        "{\"target_rate\":%.1f,\"achieved_rate\":%.1f,\"duration_s\":%.2f,\"sent\":%llu,\"completed\":%llu,"
        "\"errors\":%llu,\"error_kinds\":{\"queue_full_retries\":%llu},\"status\":{\"persisted\":%llu,\"failed\":%llu},"
        "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
        "\"cpu_us_per_req\":%.2f,\"rss_idle_kb\":%ld,\"rss_load_kb\":%ld}\n",
        o.rate, achieved, o.duration, static_cast<unsigned long long>(st.sent.load()),
        static_cast<unsigned long long>(st.persisted + st.failed), static_cast<unsigned long long>(st.failed),
        static_cast<unsigned long long>(queue_full), static_cast<unsigned long long>(st.persisted),
        static_cast<unsigned long long>(st.failed), us(st.latency.quantile(0.5)), us(st.latency.quantile(0.9)),
        us(st.latency.quantile(0.99)), us(st.latency.quantile(0.999)), us(st.latency.max()), st.latency.mean() / 1000.0,
        st.persisted ? cpu * 1e6 / static_cast<double>(st.persisted) : 0.0, rss_idle, rss_load);
    return 0;
}
