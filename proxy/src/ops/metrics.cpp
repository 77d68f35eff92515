#include "handoff/proxy/ops/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace handoff::proxy {

namespace {
// Seconds; request latencies of a sidecar sit between tens of microseconds and seconds.
constexpr std::array<double, latency_series::bucket_count> latency_buckets{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const char* class_label(int c) {
    static const char* names[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    return names[c];
}
}  // namespace

void latency_series::observe(double seconds) noexcept {
    if (!(seconds > 0)) seconds = 0;  // NaN and negative durations count as zero
    std::size_t i = 0;
    while (i < latency_buckets.size() && seconds > latency_buckets[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    // Nanoseconds in 64 bits: 584 years of summed latency before it wraps.
    sum_ns_.fetch_add(static_cast<std::uint64_t>(std::llround(std::min(seconds, 1e9) * 1e9)),
                      std::memory_order_relaxed);
}

latency_series& metrics::latency_family::add(prometheus::Labels labels) {
    auto& s = series.emplace_back(std::piecewise_construct, std::forward_as_tuple(std::move(labels)),
                                  std::forward_as_tuple());
    return s.second;
}

prometheus::MetricFamily metrics::latency_family::collect() const {
    prometheus::MetricFamily f{name, help, prometheus::MetricType::Histogram, {}};
    f.metric.reserve(series.size());
    for (const auto& [labels, s] : series) {
        prometheus::ClientMetric m;
        for (const auto& [k, v] : labels) m.label.push_back({k, v});
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= latency_buckets.size(); ++i) {
            cumulative += s.in_bucket(i);
            m.histogram.bucket.push_back({cumulative, i < latency_buckets.size()
                                                          ? latency_buckets[i]
                                                          : std::numeric_limits<double>::infinity()});
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = s.sum_seconds();
        f.metric.push_back(std::move(m));
    }
    return f;
}

metrics::metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("handoff_requests_total")
                    .Help("HTTP requests answered, by route, mode and status class")
                    .Register(*registry_)),
      durations_{
          "handoff_request_duration_seconds", "Time from the request head to the response, by route and mode", {}},
      produce_(prometheus::BuildCounter()
                   .Name("handoff_produce_total")
                   .Help("Records handed to Kafka, by topic (template) and outcome")
                   .Register(*registry_)),
      delivery_{"handoff_delivery_report_seconds",
                "Time from produce to the broker's delivery report, by topic (template)",
                {}},
      claims_{"handoff_state_claim_seconds",
              "Time to claim an Idempotency-Key through the state topic (claim written, then read back)",
              {}},
      shed_(prometheus::BuildCounter()
                .Name("handoff_shed_total")
                .Help("Requests or connections refused by a bound, by reason")
                .Register(*registry_)),
      upstream_errors_(prometheus::BuildCounter()
                           .Name("handoff_upstream_errors_total")
                           .Help("Forwarded requests that failed at the upstream, by kind")
                           .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("handoff_config_reloads_total")
                   .Help("Config reloads, by result (ok, rejected)")
                   .Register(*registry_)),
      undelivered_(prometheus::BuildCounter()
                       .Name("handoff_undelivered_records_total")
                       .Help("Accepted records still undelivered when the producer flush deadline passed")
                       .Register(*registry_)) {
    auto gauge = [this](const char* name, const char* help) {
        return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
    };
    inflight_commits_ = gauge("handoff_inflight_commits", "Commit requests waiting for a delivery report");
    connections_ = gauge("handoff_connections", "Open client connections on the main listener");
    queue_messages_ = gauge("handoff_producer_queue_messages", "Records in the producer queue, not yet reported");
    queue_bytes_ = gauge("handoff_producer_queue_bytes", "Bytes of record values in the producer queue");
    status_entries_ = gauge("handoff_status_entries", "Entries in the request status store");
    for (auto* f : {&undelivered_}) f->Add({});
}

template <class T>
T& metrics::cached(prometheus::Family<T>& family, std::map<prometheus::Labels, T*>& cache,
                   const prometheus::Labels& labels) {
    std::lock_guard lock(mutex_);
    auto it = cache.find(labels);
    if (it != cache.end()) return *it->second;
    T* m = &family.Add(labels);
    cache.emplace(labels, m);
    return *m;
}

metrics::route_instruments& metrics::route(const std::string& name, config::mode mode) {
    std::lock_guard lock(mutex_);
    const auto key = std::make_pair(name, static_cast<int>(mode));
    auto it = routes_.find(key);
    if (it != routes_.end()) return it->second;
    route_instruments r;
    const std::string mode_name = config::to_string(mode);
    for (int c = 1; c <= 5; ++c) {
        r.by_class[c] = &requests_.Add({{"route", name}, {"mode", mode_name}, {"status_class", class_label(c)}});
    }
    r.by_class[0] = r.by_class[5];
    r.duration = &durations_.add({{"route", name}, {"mode", mode_name}});
    return routes_.emplace(key, r).first->second;
}

void metrics::observe(route_instruments& r, unsigned status, double seconds) noexcept {
    const unsigned c = status / 100;
    r.by_class[c >= 1 && c <= 5 ? c : 0]->Increment();
    r.duration->observe(seconds);
}

prometheus::Counter& metrics::outcome_locked(const std::string& topic, std::string_view outcome) {
    auto t = topics_.find(topic);
    if (t == topics_.end()) t = topics_.emplace(topic, topic_entry{}).first;
    auto o = t->second.outcomes.find(outcome);
    if (o == t->second.outcomes.end()) {
        o = t->second.outcomes
                .emplace(std::string(outcome), &produce_.Add({{"topic", topic}, {"outcome", std::string(outcome)}}))
                .first;
    }
    return *o->second;
}

metrics::topic_instruments& metrics::topic_locked(const std::string& topic) {
    auto& fixed = topics_[topic].fixed;
    if (!fixed.delivery) {
        fixed.persisted = &outcome_locked(topic, "persisted");
        fixed.not_persisted = &outcome_locked(topic, "not_persisted");
        fixed.possibly_persisted = &outcome_locked(topic, "possibly_persisted");
        fixed.delivery = &delivery_.add({{"topic", topic}});
    }
    return fixed;
}

metrics::topic_instruments& metrics::topic(const std::string& topic_template) {
    std::lock_guard lock(mutex_);
    return topic_locked(topic_template);
}

void metrics::produce_outcome(const std::string& topic, std::string_view outcome) {
    prometheus::Counter* c = nullptr;
    {
        std::lock_guard lock(mutex_);
        c = &outcome_locked(topic, outcome);
    }
    c->Increment();
}

prometheus::Counter& metrics::shed(std::string_view reason) {
    return cached(shed_, shed_cache_, {{"reason", std::string(reason)}});
}

prometheus::Counter& metrics::upstream_error(std::string_view kind) {
    return cached(upstream_errors_, upstream_cache_, {{"kind", std::string(kind)}});
}

prometheus::Counter& metrics::config_reload(std::string_view result) {
    return cached(reloads_, reload_cache_, {{"result", std::string(result)}});
}

prometheus::Counter& metrics::undelivered() { return undelivered_.Add({}); }

prometheus::Gauge& metrics::gauge(const std::string& name, const std::string& help, const prometheus::Labels& labels) {
    std::lock_guard lock(mutex_);
    auto it = gauge_families_.find(name);
    if (it == gauge_families_.end()) {
        it = gauge_families_.emplace(name, &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_)).first;
    }
    return it->second->Add(labels);
}

prometheus::Counter& metrics::counter(const std::string& name, const std::string& help,
                                      const prometheus::Labels& labels) {
    std::lock_guard lock(mutex_);
    auto it = counter_families_.find(name);
    if (it == counter_families_.end()) {
        it = counter_families_.emplace(name, &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_))
                 .first;
    }
    return it->second->Add(labels);
}

prometheus::Gauge& metrics::status_bytes() {
    return gauge("handoff_status_bytes", "Bytes held by the request status store.", {});
}

prometheus::Gauge& metrics::idempotency_entries() {
    return gauge("handoff_idempotency_entries", "Idempotency-Key entries held.", {});
}

prometheus::Gauge& metrics::idempotency_bytes() {
    return gauge("handoff_idempotency_bytes", "Bytes held by the Idempotency-Key store.", {});
}

prometheus::Gauge& metrics::buffered_body_bytes() {
    return gauge("handoff_buffered_body_bytes", "Request body bytes reserved against limits.max_buffered_body_bytes.",
                 {});
}

prometheus::Gauge& metrics::reply_waiting() {
    return gauge("handoff_reply_waiting", "Requests on reply routes waiting for their reply.", {});
}

prometheus::Counter& metrics::state_claim(std::string_view result) {
    return counter("handoff_state_claims_total", "Idempotency-Key claims through the state topic, by result.",
                   {{"result", std::string(result)}});
}

latency_series& metrics::state_claim_latency() {
    std::lock_guard lock(mutex_);
    if (!claim_latency_) claim_latency_ = &claims_.add({});
    return *claim_latency_;
}

prometheus::Gauge& metrics::state_entries() {
    return gauge("handoff_state_entries", "Idempotency-Key entries in the shared state view.", {});
}

prometheus::Gauge& metrics::state_bytes() {
    return gauge("handoff_state_bytes", "Bytes held by the shared state view.", {});
}

prometheus::Gauge& metrics::state_lag() {
    return gauge("handoff_state_lag", "State topic records not yet read by this replica, all partitions.", {});
}

prometheus::Counter& metrics::state_records_skipped() {
    return counter("handoff_state_records_skipped_total", "State topic records that were not ours or did not decode.",
                   {});
}

prometheus::Counter& metrics::state_tombstones() {
    return counter("handoff_state_tombstones_total",
                   "Tombstones this replica wrote to the state topic for the keys it owned when they expired.", {});
}

prometheus::Counter& metrics::state_write_failed(std::string_view kind) {
    return counter("handoff_state_write_failures_total",
                   "State records (claim, complete, release, status) the broker did not persist, by kind.",
                   {{"kind", std::string(kind)}});
}

prometheus::Counter& metrics::fetch_restarts(std::string_view consumer) {
    return counter("handoff_kafka_fetch_restarts_total",
                   "Partitions of the state or reply topic whose fetch was restarted: they read nothing for 10 s "
                   "while records waited past the point read (a stuck librdkafka fetch, e.g. after a broker restart).",
                   {{"consumer", std::string(consumer)}});
}

prometheus::Counter& metrics::idempotency(const std::string& route, std::string_view result) {
    return counter("handoff_idempotency_total", "Requests with an Idempotency-Key, by route and result.",
                   {{"route", route}, {"result", std::string(result)}});
}

prometheus::Counter& metrics::shadow_failure(const std::string& route, std::string_view reason) {
    return counter("handoff_shadow_failures_total", "Shadow copies that were not published, by route and reason.",
                   {{"route", route}, {"reason", std::string(reason)}});
}

prometheus::Counter& metrics::reply_record(std::string_view outcome) {
    return counter("handoff_replies_total", "Reply records read from the reply topic, by outcome.",
                   {{"outcome", std::string(outcome)}});
}

prometheus::Counter& metrics::http_connections(std::string_view protocol) {
    return counter("handoff_http_connections_total",
                   "Connections on the main listener, by the protocol they were served in: http/1.1, h2 (prior "
                   "knowledge) or h2c-upgrade (switched from HTTP/1.1; also counted as http/1.1)",
                   {{"protocol", std::string(protocol)}});
}

prometheus::Counter& metrics::http2_event(std::string_view kind) {
    return counter("handoff_http2_events_total",
                   "HTTP/2 refusals and errors, by kind: stream_refused (the bound on streams, requests being "
                   "handled included), header_list_too_large, connection_error (GOAWAY sent with an error: a "
                   "protocol violation or a flood), timeout",
                   {{"kind", std::string(kind)}});
}

prometheus::Counter& metrics::producer_recreations(std::string_view reason) {
    return counter("handoff_kafka_producer_recreations_total",
                   "Kafka producer handles re-created: after a fatal idempotent-producer error, or after no "
                   "progress while the cluster answered (kafka.stall_timeout)",
                   {{"reason", std::string(reason)}});
}

prometheus::Counter& metrics::subscription_counter(std::string_view what, const std::string& subscription) {
    const std::string w(what);
    return counter("handoff_subscription_" + w + "_total", "Subscription " + w, {{"subscription", subscription}});
}

prometheus::Gauge& metrics::subscription_in_flight(const std::string& subscription) {
    return gauge("handoff_subscription_in_flight", "Deliveries, dead-letter writes and replies in progress",
                 {{"subscription", subscription}});
}

prometheus::Gauge& metrics::subscription_buffered(const std::string& subscription) {
    return gauge("handoff_subscription_buffered", "Records received and not yet resolved",
                 {{"subscription", subscription}});
}

prometheus::Gauge& metrics::subscription_lag(const std::string& subscription, const std::string& topic,
                                             std::int32_t partition) {
    return gauge("handoff_subscription_lag",
                 "Records in assigned partitions not yet processed (high watermark - stored offset)",
                 {{"subscription", subscription}, {"topic", topic}, {"partition", std::to_string(partition)}});
}

void metrics::on_scrape(std::function<void()> f) {
    std::lock_guard lock(mutex_);
    scrape_hooks_.push_back(std::move(f));
}

std::string metrics::serialize() {
    // One scrape at a time: hooks keep state (last exported values) between scrapes.
    std::lock_guard scrape(scrape_mutex_);
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(mutex_);
        hooks = scrape_hooks_;
    }
    for (auto& h : hooks) h();
    auto families = registry_->Collect();
    {
        std::lock_guard lock(mutex_);  // the latency families' series lists grow under it
        families.push_back(durations_.collect());
        families.push_back(delivery_.collect());
        if (claim_latency_) families.push_back(claims_.collect());
    }
    return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace handoff::proxy
