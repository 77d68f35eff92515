// The main listener: accepts connections and runs one coroutine per connection (the coroutine
// owns its session: stream, buffer, parser). Requests are read one at a time, so pipelined
// requests are answered in order; every read and write has a deadline.
//
// Threading: any number of io_context threads; each connection runs on its own strand. The
// route table is swapped atomically (hot reload); a request keeps the table it started with.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/ports/consumer.hpp"
#include "handoff/proxy/ops/metrics.hpp"
#include "handoff/ports/producer.hpp"
#include "handoff/proxy/dispatch/route_table.hpp"
#include "handoff/ports/upstream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <memory>

namespace handoff::proxy {

class server {
public:
    // `stats` may be null (a private registry is used then).
    server(boost::asio::io_context& ioc, std::shared_ptr<const route_table> routes, std::shared_ptr<producer> producer,
           std::shared_ptr<upstream_client> upstream, std::shared_ptr<metrics> stats = nullptr);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds listen.address:port and starts accepting. Throws std::system_error when binding fails.
    void start();

    // The bound endpoint (useful with port 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    // From now on every response carries `Connection: close`; readiness reports false.
    void begin_drain();
    bool draining() const noexcept;

    // Stops accepting and closes connections that are idle between requests. In-flight
    // requests finish and then close. Safe to call from any thread.
    void stop_accepting();

    std::size_t active_connections() const noexcept;
    std::size_t inflight_commits() const noexcept;

    // Swaps the route table used by requests that start after this call.
    void swap_routes(std::shared_ptr<const route_table> routes);

    // `reply` routes: the listener for this process's reply consumer (replies.topic), which the
    // composition root creates; `replies_ready` once that consumer has its partitions.
    consumer_listener& reply_listener() noexcept;

    // state.shared: Idempotency-Keys and request statuses shared with the other replicas through
    // the state topic (shared_registry.hpp); `replica` names this process in its records. Called
    // once, before start() and before reply_listener(); the returned listener is the state
    // consumer's.
    consumer_listener& share_state(const config::state_config& state, std::string replica);
    bool replies_ready() const noexcept;

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace handoff::proxy
