// The composition root: the only place that sees config, core and adapters together.
//
//   handoff run --config FILE        serve
//   handoff validate --config FILE   print every config error; exit 78 when invalid
//   handoff version
//   handoff routes init --openapi SPEC [--output FILE] [--force]   a starting config from OpenAPI 3
#include "handoff/adapters/http_upstream/client.hpp"
#include "handoff/adapters/kafka/consumer.hpp"
#include "handoff/adapters/kafka/embedded_cluster.hpp"
#include "handoff/adapters/kafka/producer.hpp"
#include "handoff/adapters/kafka/version.hpp"
#include "handoff/config/load.hpp"
#include "handoff/config/reload.hpp"
#include "handoff/config/openapi.hpp"
#include "handoff/proxy/ops/admin.hpp"
#include "handoff/proxy/ops/config_watcher.hpp"
#include "handoff/proxy/ops/lifecycle.hpp"
#include "handoff/proxy/ops/metrics_export.hpp"
#include "handoff/proxy/ops/readiness.hpp"
#include "handoff/common/ids.hpp"
#include "handoff/proxy/ops/metrics.hpp"
#include "handoff/common/log.hpp"
#include "handoff/proxy/dispatch/route_table.hpp"
#include "handoff/proxy/server/server.hpp"
#include "handoff/proxy/delivery/subscription.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <nlohmann/json.hpp>
#if HANDOFF_MIMALLOC
#include <mimalloc.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace log = handoff::proxy::log;
using namespace std::chrono_literals;

constexpr int exit_config = 78;  // EX_CONFIG
constexpr const char* version_string = "0.1.0";

// The allocator serving this process, for the start-up log line (see HANDOFF_MIMALLOC).
std::string allocator_name() {
#if HANDOFF_MIMALLOC
    const int v = mi_version();
    return "mimalloc " + std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) + "." + std::to_string(v % 10);
#else
    return "libc";
#endif
}

// The Asio backend this binary was built with (HANDOFF_IO_URING in CMakeLists.txt), for
// `handoff version` and the start-up log line.
constexpr const char* io_backend() {
#if defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
    return "io_uring";
#elif defined(BOOST_ASIO_HAS_EPOLL)
    return "epoll";
#else
    return "select";
#endif
}

void print_errors(const std::vector<handoff::config::config_error>& errors) {
    for (const auto& e : errors) std::cerr << handoff::config::format(e) << '\n';
}

void print_warnings(const std::vector<handoff::config::config_error>& warnings) {
    for (const auto& w : warnings) std::cerr << "warning: " << handoff::config::format(w) << '\n';
}

void log_warnings(const std::vector<handoff::config::config_error>& warnings) {
    for (const auto& w : warnings) log::warn("config warning", {{"warning", handoff::config::format(w)}});
}

// This process's name in the state topic's records: the host name (the pod's name in Kubernetes)
// and a random suffix, so that a restarted process is never taken for the one before it.
std::string default_replica_name() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "handoff");
    return std::string(host) + "-" + handoff::proxy::make_uuid_v7().substr(24);
}

log::level parse_level(const std::string& s) {
    if (s == "debug") return log::level::debug;
    if (s == "warn") return log::level::warn;
    if (s == "error") return log::level::error;
    return log::level::info;
}

int validate(const std::string& file) {
    auto loaded = handoff::config::load_file(file);
    print_warnings(loaded.warnings);
    if (!loaded.value) {
        print_errors(loaded.errors);
        std::cerr << file << ": " << loaded.errors.size() << " error(s)\n";
        return exit_config;
    }
    std::cout << file << ": valid (" << loaded.value->routes.size() << " routes)\n";
    return 0;
}

int run(const std::string& file) {
    auto loaded = handoff::config::load_file(file);
    if (!loaded.value) {
        print_warnings(loaded.warnings);
        print_errors(loaded.errors);
        return exit_config;
    }
    auto cfg = std::make_shared<const handoff::config::config>(std::move(*loaded.value));
    log::set_level(parse_level(cfg->log.level));
    log::info("starting", {{"version", version_string},
                           {"librdkafka", handoff::adapters::kafka::librdkafka_version()},
                           {"allocator", allocator_name()},
                           {"io", io_backend()},
                           {"config", file},
                           {"profile", handoff::config::to_string(cfg->profile)},
                           {"routes", cfg->routes.size()},
                           {"threads", cfg->listen.threads}});
    log_warnings(loaded.warnings);
    // The production profile refuses these at load time unless kafka.allow_insecure is set: then
    // say so loudly, once, naming each setting (config/README.md, "Profiles").
    if (cfg->profile == handoff::config::profile_kind::production && cfg->kafka.allow_insecure) {
        std::vector<std::string> insecure;
        for (const auto& s : handoff::config::insecure_kafka_settings(*cfg))
            insecure.push_back(s.path + ": " + s.message);
        if (!insecure.empty()) {
            log::warn(
                "INSECURE KAFKA CONNECTION: kafka.allow_insecure lets the production profile run with settings "
                "that send data unencrypted or trust an unverified broker",
                {{"settings", insecure}});
        }
    }

    const int threads = std::max(1, cfg->listen.threads);
    asio::io_context ioc(threads);

    std::unique_ptr<handoff::adapters::kafka::embedded_cluster> embedded;
    std::string bootstrap = cfg->kafka.brokers;
    if (cfg->kafka.embedded) {
        std::string err;
        embedded = handoff::adapters::kafka::embedded_cluster::start(cfg->kafka.embedded_brokers, err);
        if (!embedded) {
            log::error("embedded broker failed to start", {{"error", err}});
            return 1;
        }
        bootstrap = embedded->bootstraps();
        for (const auto& r : cfg->routes) {
            if (!r.topic.empty() && r.topic.find('{') == std::string::npos) embedded->create_topic(r.topic, 3);
        }
        if (!cfg->replies.topic.empty()) embedded->create_topic(cfg->replies.topic, 3);
        log::warn(
            "EMBEDDED BROKER: librdkafka's in-process mock cluster is serving Kafka. It is NOT DURABLE: "
            "everything is lost when handoff exits. For trying Handoff out only.",
            {{"bootstrap_servers", bootstrap}});
    }

    std::string err;
    auto producer = handoff::adapters::kafka::make_producer(ioc, cfg->kafka, bootstrap, err);
    if (!producer) {
        log::error("kafka producer could not be created", {{"error", err}});
        return exit_config;
    }
    auto upstream = handoff::adapters::http_upstream::make_client(ioc.get_executor(), cfg->upstream);
    auto routes = handoff::proxy::route_table::create(cfg);
    auto stats = std::make_shared<handoff::proxy::metrics>();
    handoff::proxy::server server(ioc, routes, producer, upstream, stats);

    // The config in force: replaced on a successful reload.
    std::atomic<std::shared_ptr<const handoff::config::config>> current{cfg};
    // reply routes: this process's own consumer of replies.topic (created below, before the
    // io_context runs).
    std::shared_ptr<handoff::proxy::consumer> reply_consumer;
    handoff::proxy::readiness ready(server, producer, !cfg->replies.topic.empty());
    std::unique_ptr<handoff::proxy::admin_server> admin;
    if (cfg->admin.enabled) {
        handoff::proxy::admin_hooks hooks;
        hooks.ready = [&ready](std::string& reason) { return ready.check(reason); };
        hooks.config_json = [&current] { return handoff::config::to_redacted_json(*current.load()); };
        hooks.metrics = [stats] { return stats->serialize(); };
        admin = std::make_unique<handoff::proxy::admin_server>(ioc, cfg->admin, std::move(hooks));
    }

    try {
        server.start();
        if (admin) admin->start();
    } catch (const std::exception& e) {
        log::error("cannot listen", {{"error", e.what()}});
        return 1;
    }
    log::info("listening", {{"address", server.local_endpoint().address().to_string()},
                            {"port", server.local_endpoint().port()},
                            {"admin_port", admin ? admin->local_endpoint().port() : 0}});

    // Reload (SIGHUP or a change of the file): validate, then swap the route table atomically;
    // requests in flight finish on the table they started with. Invalid -> keep the old one.
    auto reload = [&](const char* trigger) {
        auto next = handoff::config::load_file(file);
        log_warnings(next.warnings);
        if (!next.value) {
            std::vector<std::string> messages;
            for (const auto& e : next.errors) messages.push_back(handoff::config::format(e));
            stats->config_reload("rejected").Increment();
            log::error("config reload rejected; keeping the running config",
                       {{"trigger", trigger}, {"errors", messages}});
            return;
        }
        auto plan = handoff::config::plan_reload(*current.load(), std::move(*next.value));
        if (!plan.in_force) {
            stats->config_reload("rejected").Increment();
            log::error("config reload rejected; keeping the running config",
                       {{"trigger", trigger}, {"errors", plan.errors}});
            return;
        }
        const auto& fresh = plan.in_force;
        const auto& need_restart = plan.restart_needed;
        server.swap_routes(handoff::proxy::route_table::create(fresh));
        current.store(fresh);
        log::set_level(parse_level(fresh->log.level));
        stats->config_reload("ok").Increment();
        log::info("config reloaded", {{"trigger", trigger}, {"routes", fresh->routes.size()}});
        if (!need_restart.empty()) {
            log::warn("config changes that need a restart to take effect were not applied",
                      {{"sections", need_restart}});
        }
    };
    handoff::proxy::config_watcher watcher(ioc, file, [&] { reload("file"); });
    watcher.start();

    // subscriptions: the receiving half. Created after the producer (dead letters and replies go
    // through it); at SIGTERM they stop fetching at once and the io_context keeps running until
    // their in-flight deliveries finished (bounded by the drain timeout); closed (offsets
    // committed) after the io_context stopped and before the producer flush.
    std::vector<std::unique_ptr<handoff::proxy::subscription>> subscriptions;
    for (const auto& s : cfg->subscriptions) {
        if (embedded) {
            for (const auto& t : s.topics) embedded->create_topic(t, 3);
        }
        auto strand = asio::make_strand(ioc);
        auto consumer = handoff::adapters::kafka::make_consumer(strand, cfg->kafka, s, bootstrap, err);
        if (!consumer) {
            log::error("kafka consumer could not be created", {{"error", err}});
            return exit_config;
        }
        subscriptions.push_back(
            std::make_unique<handoff::proxy::subscription>(strand, s, cfg->upstream, consumer, upstream, producer));
        subscriptions.back()->start();
    }
    // state.shared: Idempotency-Keys and request statuses shared with the other replicas through
    // the state topic, read from its beginning; readiness waits until it is read up to its end
    // offsets at start. Before the reply consumer: replies complete keyed requests through it.
    std::shared_ptr<handoff::proxy::consumer> state_consumer;
    if (cfg->state.shared) {
        if (embedded) embedded->create_topic(cfg->state.topic, cfg->state.partitions);
        const auto replica = cfg->state.replica.empty() ? default_replica_name() : cfg->state.replica;
        auto& listener = server.share_state(cfg->state, replica);
        state_consumer = handoff::adapters::kafka::make_state_consumer(asio::make_strand(ioc), cfg->kafka, cfg->state,
                                                                       cfg->idempotency.ttl, bootstrap, err);
        if (!state_consumer) {
            log::error("kafka state consumer could not be created", {{"error", err}});
            return exit_config;
        }
        ready.set_state_consumer(state_consumer);
        state_consumer->start(listener);
        std::weak_ptr<handoff::proxy::consumer> weak = state_consumer;
        // The hook lives in `stats` itself: a raw pointer, not a shared_ptr (that would be a cycle).
        stats->on_scrape([weak, m = stats.get()] {
            if (auto c = weak.lock()) {
                std::int64_t lag = 0;
                for (const auto& p : c->lag()) lag += p.lag;
                m->state_lag().Set(static_cast<double>(lag));
            }
        });
        handoff::proxy::export_fetch_restarts(*stats, state_consumer, "state");
        log::info("sharing Idempotency-Keys and request statuses through the state topic",
                  {{"topic", cfg->state.topic}, {"replica", replica}});
    }
    // reply routes: every partition of replies.topic assigned by hand (no consumer group, nothing
    // committed), created first when missing (replies.create), read from the end offsets found
    // before readiness turns true, positions kept in memory across reconnects; partitions added
    // later are read from their beginning (make_reply_consumer). Readiness waits for it.
    if (!cfg->replies.topic.empty()) {
        reply_consumer = handoff::adapters::kafka::make_reply_consumer(asio::make_strand(ioc), cfg->kafka, cfg->replies,
                                                                       bootstrap, err);
        if (!reply_consumer) {
            log::error("kafka reply consumer could not be created", {{"error", err}});
            return exit_config;
        }
        ready.set_reply_consumer(reply_consumer);
        reply_consumer->start(server.reply_listener());
        handoff::proxy::export_fetch_restarts(*stats, reply_consumer, "replies");
        log::info("consuming replies", {{"topic", cfg->replies.topic}});
    }
    std::vector<const handoff::proxy::subscription*> exported;
    for (const auto& sub : subscriptions) exported.push_back(sub.get());
    handoff::proxy::export_subscription_metrics(*stats, std::move(exported));
    handoff::proxy::export_producer_metrics(*stats, producer);
    asio::signal_set subscription_signals(ioc, SIGTERM, SIGINT);
    subscription_signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec)
            for (auto& s : subscriptions) s->begin_stop();
    });
    const auto subscriptions_busy = [&] {
        return std::any_of(subscriptions.begin(), subscriptions.end(), [](const auto& s) { return !s->idle(); });
    };

    handoff::proxy::drain_sequence drain(
        ioc, server, admin.get(), [&] { watcher.stop(); }, subscriptions_busy);
    asio::signal_set stop_signals(ioc, SIGTERM, SIGINT);
    stop_signals.async_wait([&](boost::system::error_code ec, int sig) {
        if (ec) return;
        // producer_queued_records: accepted records not yet reported by the broker. If a SIGKILL
        // follows (a grace period too short), these are what can be lost (README, "Reliability").
        log::info("signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                                      {"producer_queued_records", producer->stats().queued_messages}});
        // The drain settings in force now (they may have been reloaded since start-up).
        drain.start(current.load()->drain.delay, current.load()->drain.timeout);
    });
    asio::signal_set reload_signal(ioc, SIGHUP);
    std::function<void(boost::system::error_code, int)> on_reload = [&](boost::system::error_code ec, int) {
        if (ec) return;
        reload("SIGHUP");
        reload_signal.async_wait(on_reload);
    };
    reload_signal.async_wait(on_reload);

    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : pool) t.join();

    reload_signal.cancel();
    stop_signals.cancel();
    subscription_signals.cancel();  // subscriptions
    for (auto& s : subscriptions) s->close();
    if (reply_consumer) reply_consumer->close();
    if (state_consumer) state_consumer->close();
    const auto undelivered = producer->flush(cfg->kafka.flush_timeout);
    if (!undelivered.empty()) {
        stats->undelivered().Increment(static_cast<double>(undelivered.size()));
        log::error("records not delivered before exit",
                   {{"count", undelivered.size()}, {"correlation_ids", undelivered}});
    }
    log::info("stopped", {{"undelivered", undelivered.size()}});
    return 0;
}

}  // namespace

namespace {

// `handoff routes init --openapi SPEC [--output FILE] [--force]`: a starting config from an
// OpenAPI 3.x document, on stdout or into FILE (never over an existing file without --force).
// Exit 65 (EX_DATAERR) when the document cannot be read or is not usable OpenAPI 3.x, 73
// (EX_CANTCREAT) when the output cannot be written; 78 stays reserved for an invalid Handoff config.
int routes_init(const std::string& spec, const std::string& output, bool force) {
    constexpr int exit_dataerr = 65;
    constexpr int exit_cantcreat = 73;
    const auto r = handoff::config::init_routes_from_file(spec);
    if (!r.yaml) {
        print_errors(r.errors);
        return exit_dataerr;
    }
    if (output.empty()) {
        std::cout << *r.yaml << std::flush;
        return 0;
    }
    std::error_code ec;
    if (!force && std::filesystem::exists(output, ec)) {
        std::cerr << output << ": already exists (use --force to overwrite)\n";
        return exit_cantcreat;
    }
    std::ofstream out(output, std::ios::binary | std::ios::trunc);
    out << *r.yaml;
    out.close();
    if (!out) {
        std::cerr << output << ": cannot write the file: " << std::strerror(errno) << '\n';
        return exit_cantcreat;
    }
    std::cout << output << ": " << r.routes << " routes from " << spec << " (" << r.suggestions
              << " with an event/commit suggestion in comments, " << r.skipped << " operations not converted)\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Handoff: a sidecar that turns REST calls into Kafka events"};
    app.require_subcommand(1);
    std::string config_file;
    auto* run_cmd = app.add_subcommand("run", "serve with a config file");
    run_cmd->add_option("-c,--config", config_file, "config file (YAML)")->required();
    auto* validate_cmd = app.add_subcommand("validate", "check a config file; exit 78 when invalid");
    validate_cmd->add_option("-c,--config", config_file, "config file (YAML)")->required();
    auto* version_cmd = app.add_subcommand("version", "print the version");
    auto* routes_cmd = app.add_subcommand("routes", "route helpers");
    routes_cmd->require_subcommand(1);
    auto* routes_init_cmd = routes_cmd->add_subcommand("init", "write a starting config from an OpenAPI 3.x document");
    std::string openapi_file, output_file;
    bool force = false;
    routes_init_cmd->add_option("--openapi", openapi_file, "OpenAPI 3.x document (YAML or JSON)")->required();
    routes_init_cmd->add_option("-o,--output", output_file, "write the config here instead of to stdout");
    routes_init_cmd->add_flag("--force", force, "overwrite --output when it exists");
    CLI11_PARSE(app, argc, argv);

    try {
        if (*version_cmd) {
            std::cout << "handoff " << version_string << " (librdkafka "
                      << handoff::adapters::kafka::librdkafka_version() << ", asio " << io_backend() << ")\n";
            return 0;
        }
        if (*validate_cmd) return validate(config_file);
        if (*routes_init_cmd) return routes_init(openapi_file, output_file, force);
        return run(config_file);
    } catch (const std::exception& e) {
        log::error("fatal", {{"error", e.what()}});
        return 1;
    }
}
