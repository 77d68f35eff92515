// The admin listener (README, "Running it"): /healthz, /readyz, /config, /metrics.
//
// Bound to 127.0.0.1 by default, never the pod IP unless configured. Read-only: it has no
// mutating endpoints. Hooks are called on the admin connection's strand and must be thread-safe.
#pragma once

#include "handoff/config/config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>

namespace handoff::proxy {

struct admin_hooks {
    std::function<bool(std::string& reason)> ready;  // false + reason -> 503
    std::function<std::string()> config_json;        // effective config, secrets redacted
    std::function<std::string()> metrics;            // Prometheus text format; empty -> 404
};

class admin_server {
public:
    admin_server(boost::asio::io_context& ioc, config::admin_config cfg, admin_hooks hooks);
    ~admin_server();

    // Binds and starts accepting; throws std::system_error when binding fails.
    void start();
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace handoff::proxy
