#include "handoff/proxy/ops/metrics_export.hpp"

#include "handoff/proxy/delivery/subscription.hpp"
#include "handoff/proxy/ops/metrics.hpp"

#include <map>
#include <set>
#include <string>
#include <tuple>

namespace handoff::proxy {
namespace {

using counter_field = std::atomic<std::uint64_t> subscription_counters::*;

// Each counter of subscription_counters, by the word in its metric name.
constexpr std::pair<const char*, counter_field> subscription_counter_fields[] = {
    {"received", &subscription_counters::received},
    {"attempts", &subscription_counters::attempts},
    {"delivered", &subscription_counters::delivered},
    {"retries", &subscription_counters::retries},
    {"connection_failures", &subscription_counters::connection_failures},
    {"dead_lettered", &subscription_counters::dead_lettered},
    {"dead_letter_failures", &subscription_counters::dead_letter_failures},
    {"replies", &subscription_counters::replies},
    {"reply_failures", &subscription_counters::reply_failures},
    {"offsets_stored", &subscription_counters::offsets_stored},
    {"abandoned", &subscription_counters::abandoned},
    {"dropped_headers", &subscription_counters::dropped_headers},
    {"circuit_opened", &subscription_counters::circuit_opened},
    {"assignments", &subscription_counters::assignments},
};

struct exported_counter {
    prometheus::Counter* metric;
    const std::atomic<std::uint64_t>* source;
    std::uint64_t last = 0;
};

// Touched only by the scrape hook (scrapes are serialised: metrics::on_scrape).
struct exported_subscriptions {
    std::vector<exported_counter> counters;
    std::vector<std::pair<prometheus::Gauge*, const std::atomic<std::int64_t>*>> gauges;
    std::vector<const subscription*> sources;
    std::map<std::tuple<std::string, std::string, std::int32_t>, prometheus::Gauge*> lag;
};

}  // namespace

void export_subscription_metrics(metrics& stats, std::vector<const subscription*> subscriptions) {
    auto state = std::make_shared<exported_subscriptions>();
    for (const auto* sub : subscriptions) {
        const auto& name = sub->settings().name;
        const auto& c = sub->counters();
        for (const auto& [what, field] : subscription_counter_fields) {
            state->counters.push_back({&stats.subscription_counter(what, name), &(c.*field)});
        }
        state->gauges.emplace_back(&stats.subscription_in_flight(name), &c.in_flight);
        state->gauges.emplace_back(&stats.subscription_buffered(name), &c.buffered);
    }
    state->sources = std::move(subscriptions);
    // A raw pointer: the hook is owned by `stats` itself.
    stats.on_scrape([state, m = &stats] {
        for (auto& e : state->counters) {
            const auto now = e.source->load();
            if (now > e.last) e.metric->Increment(static_cast<double>(now - e.last));
            e.last = now;
        }
        for (auto& [g, source] : state->gauges) g->Set(static_cast<double>(source->load()));
        std::set<prometheus::Gauge*> reported;
        for (const auto* sub : state->sources) {
            const auto& name = sub->settings().name;
            for (const auto& p : sub->lag()) {
                auto& g = state->lag[{name, p.topic, p.partition}];
                if (!g) g = &m->subscription_lag(name, p.topic, p.partition);
                g->Set(static_cast<double>(p.lag));
                reported.insert(g);
            }
        }
        for (auto& [key, g] : state->lag) {
            if (!reported.count(g)) g->Set(0);
        }
    });
}

void export_producer_metrics(metrics& stats, std::shared_ptr<const producer> kafka) {
    struct exported {  // touched only by the scrape hook
        prometheus::Counter* fatal;
        prometheus::Counter* stalled;
        std::uint64_t last_fatal = 0, last_stalled = 0;
    };
    auto state = std::make_shared<exported>();
    state->fatal = &stats.producer_recreations("fatal");
    state->stalled = &stats.producer_recreations("stalled");
    stats.on_scrape([state, kafka = std::move(kafka)] {
        const auto s = kafka->stats();
        if (s.recreated_after_fatal > state->last_fatal) {
            state->fatal->Increment(static_cast<double>(s.recreated_after_fatal - state->last_fatal));
        }
        if (s.recreated_after_stall > state->last_stalled) {
            state->stalled->Increment(static_cast<double>(s.recreated_after_stall - state->last_stalled));
        }
        state->last_fatal = s.recreated_after_fatal;
        state->last_stalled = s.recreated_after_stall;
    });
}

void export_fetch_restarts(metrics& stats, std::weak_ptr<const consumer> source, std::string name) {
    struct exported {  // touched only by the scrape hook
        prometheus::Counter* restarts;
        std::uint64_t last = 0;
    };
    auto state = std::make_shared<exported>(exported{&stats.fetch_restarts(name)});
    stats.on_scrape([state, source = std::move(source)] {
        const auto c = source.lock();
        if (!c) return;
        const auto now = c->fetch_restarts();
        if (now > state->last) state->restarts->Increment(static_cast<double>(now - state->last));
        state->last = now;
    });
}

}  // namespace handoff::proxy
