// The drain sequence on SIGTERM or SIGINT: readiness false at once, keep serving (every answer
// with Connection: close) for `delay` while Kubernetes removes the endpoint, then stop accepting
// and let in-flight work finish within `timeout`; then stop the admin listener and the
// io_context. What runs after the io_context stopped (closing consumers, flushing the producer)
// is the caller's.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>

namespace handoff::proxy {

class admin_server;
class server;

class drain_sequence {
public:
    // `admin` may be null. Hooks: `on_stop_accepting` stops other inputs (the config watcher,
    // subscriptions); `busy` tells whether other work still needs the io_context (in-flight
    // subscription deliveries).
    drain_sequence(boost::asio::io_context& ioc, server& front, admin_server* admin,
                   std::function<void()> on_stop_accepting, std::function<bool()> busy);

    // Starts the sequence once; later calls do nothing. Runs on an io thread.
    void start(std::chrono::milliseconds delay, std::chrono::milliseconds timeout);

private:
    void wait_for_connections();

    boost::asio::io_context& ioc_;
    server& server_;
    admin_server* admin_;
    std::function<void()> on_stop_accepting_;
    std::function<bool()> busy_;
    boost::asio::steady_timer timer_;
    std::chrono::steady_clock::time_point deadline_{};
    bool started_ = false;
};

}  // namespace handoff::proxy
