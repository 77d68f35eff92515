// Prometheus metrics (prometheus-cpp core), served as text on the admin listener's /metrics.
// Every metric name and help text of the process is declared in metrics.cpp, nowhere else.
//
// Instruments are created on first use and cached; label values come only from config (route
// names, topic templates, fixed outcome words), never from requests, so cardinality is bounded.
// Every member is thread-safe.
//
// The request path takes no lock and looks nothing up: the server resolves each route's
// instruments (route(), topic()) when it installs a route table, and a request updates them
// through the returned pointers. Counters are prometheus-cpp's (an atomic); the latency
// histograms are this file's latency_series (relaxed atomics per bucket), since prometheus-cpp
// 1.0's Histogram takes a mutex on every Observe.
#pragma once

#include "handoff/config/config.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace handoff::proxy {

// One labelled series of a latency histogram (seconds), observed without a lock. A scrape reads
// the buckets and the sum one by one, so it may count an observation in its bucket and not yet
// in the sum; Prometheus tolerates that, and the next scrape is exact.
class latency_series {
public:
    static constexpr std::size_t bucket_count = 17;  // upper bounds: metrics.cpp, latency_buckets
    void observe(double seconds) noexcept;
    std::uint64_t in_bucket(std::size_t i) const noexcept {  // i == bucket_count: above the last bound
        return counts_[i].load(std::memory_order_relaxed);
    }
    double sum_seconds() const noexcept { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9; }

private:
    std::array<std::atomic<std::uint64_t>, bucket_count + 1> counts_{};  // per bucket, not cumulative
    std::atomic<std::uint64_t> sum_ns_{0};
};

class metrics {
public:
    metrics();

    // Per route and mode: requests by status class and a duration histogram.
    struct route_instruments {
        std::array<prometheus::Counter*, 6> by_class{};  // index = status / 100 (0 unused)
        latency_series* duration = nullptr;
    };
    // Resolves (creating on first use) under a lock: call it once per route table, not per request.
    route_instruments& route(const std::string& route_name, config::mode mode);
    static void observe(route_instruments& r, unsigned status, double seconds) noexcept;

    // Per topic template: the produce outcomes every delivery report counts, and delivery-report
    // latency. Resolved under a lock, like route().
    struct topic_instruments {
        prometheus::Counter* persisted = nullptr;
        prometheus::Counter* not_persisted = nullptr;
        prometheus::Counter* possibly_persisted = nullptr;
        latency_series* delivery = nullptr;
    };
    topic_instruments& topic(const std::string& topic_template);

    // Any produce outcome (refused_<reason> as well) by topic template: locks and looks up, for
    // the rare outcomes.
    void produce_outcome(const std::string& topic, std::string_view outcome);

    prometheus::Counter& shed(std::string_view reason);           // 503s from bounds
    prometheus::Counter& upstream_error(std::string_view kind);   // forward failures
    prometheus::Counter& config_reload(std::string_view result);  // ok | rejected
    prometheus::Counter& undelivered();                           // not flushed at shutdown

    prometheus::Gauge& inflight_commits() { return *inflight_commits_; }
    prometheus::Gauge& connections() { return *connections_; }
    prometheus::Gauge& producer_queue_messages() { return *queue_messages_; }
    prometheus::Gauge& producer_queue_bytes() { return *queue_bytes_; }
    prometheus::Gauge& status_entries() { return *status_entries_; }

    // Gauges sampled at each scrape from the server's stores and bounds.
    prometheus::Gauge& status_bytes();
    prometheus::Gauge& idempotency_entries();
    prometheus::Gauge& idempotency_bytes();
    prometheus::Gauge& buffered_body_bytes();
    prometheus::Gauge& reply_waiting();

    prometheus::Counter& idempotency(const std::string& route, std::string_view result);
    prometheus::Counter& shadow_failure(const std::string& route, std::string_view reason);
    prometheus::Counter& http_connections(std::string_view protocol);  // http/1.1 | h2 | h2c-upgrade
    prometheus::Counter& http2_event(std::string_view kind);
    prometheus::Counter& reply_record(std::string_view outcome);         // records read from replies.topic
    prometheus::Counter& producer_recreations(std::string_view reason);  // fatal | stalled

    // Shared state (state.shared): claims of Idempotency-Keys through the state topic, by result,
    // and their latency (claim written and read back); the view's size and bytes, the reader's lag
    // (sampled at each scrape); state records skipped (not decodable) and state writes that failed.
    prometheus::Counter& state_claim(std::string_view result);
    latency_series& state_claim_latency();
    prometheus::Gauge& state_entries();
    prometheus::Gauge& state_bytes();
    prometheus::Gauge& state_lag();
    prometheus::Counter& state_records_skipped();
    prometheus::Counter& state_tombstones();  // expiry tombstones this replica wrote
    prometheus::Counter& state_write_failed(std::string_view kind);
    // Partitions of the state topic ("state") or the reply topic ("replies") whose fetch was
    // restarted after reading nothing while records waited (sampled at each scrape).
    prometheus::Counter& fetch_restarts(std::string_view consumer);

    // The receiving half, by subscription name: handoff_subscription_<what>_total, where `what`
    // names a field of subscription_counters (metrics_export.cpp lists them).
    prometheus::Counter& subscription_counter(std::string_view what, const std::string& subscription);
    prometheus::Gauge& subscription_in_flight(const std::string& subscription);
    prometheus::Gauge& subscription_buffered(const std::string& subscription);
    prometheus::Gauge& subscription_lag(const std::string& subscription, const std::string& topic,
                                        std::int32_t partition);

    // Runs before each scrape (to sample queue depths and the like). Scrapes are serialised
    // (serialize holds a lock across the hooks), so a hook's own state needs no lock.
    void on_scrape(std::function<void()> f);

    // Prometheus text exposition format 0.0.4.
    std::string serialize();

    std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

private:
    prometheus::Gauge& gauge(const std::string& name, const std::string& help, const prometheus::Labels& labels);
    prometheus::Counter& counter(const std::string& name, const std::string& help, const prometheus::Labels& labels);
    template <class T>
    T& cached(prometheus::Family<T>& family, std::map<prometheus::Labels, T*>& cache, const prometheus::Labels& labels);
    topic_instruments& topic_locked(const std::string& topic_template);
    prometheus::Counter& outcome_locked(const std::string& topic_template, std::string_view outcome);

    // A histogram family of latency_series, exported beside the registry's families.
    struct latency_family {
        std::string name, help;
        std::deque<std::pair<prometheus::Labels, latency_series>> series;  // stable addresses
        latency_series& add(prometheus::Labels labels);
        prometheus::MetricFamily collect() const;
    };

    std::shared_ptr<prometheus::Registry> registry_;
    std::mutex mutex_;         // guards the caches and scrape hooks; never held on the request path once cached
    std::mutex scrape_mutex_;  // serialises scrapes
    prometheus::Family<prometheus::Counter>& requests_;
    latency_family durations_;
    prometheus::Family<prometheus::Counter>& produce_;
    latency_family delivery_;
    latency_family claims_;
    latency_series* claim_latency_ = nullptr;
    prometheus::Family<prometheus::Counter>& shed_;
    prometheus::Family<prometheus::Counter>& upstream_errors_;
    prometheus::Family<prometheus::Counter>& reloads_;
    prometheus::Family<prometheus::Counter>& undelivered_;
    prometheus::Gauge* inflight_commits_;
    prometheus::Gauge* connections_;
    prometheus::Gauge* queue_messages_;
    prometheus::Gauge* queue_bytes_;
    prometheus::Gauge* status_entries_;
    std::map<std::pair<std::string, int>, route_instruments> routes_;
    std::map<prometheus::Labels, prometheus::Counter*> shed_cache_, upstream_cache_, reload_cache_;
    // Per topic template: the instruments a delivery report updates, and every outcome counter.
    struct topic_entry {
        topic_instruments fixed;
        std::map<std::string, prometheus::Counter*, std::less<>> outcomes;
    };
    std::map<std::string, topic_entry, std::less<>> topics_;
    std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauge_families_;
    std::map<std::string, prometheus::Family<prometheus::Counter>*> counter_families_;
    std::vector<std::function<void()>> scrape_hooks_;
};

}  // namespace handoff::proxy
