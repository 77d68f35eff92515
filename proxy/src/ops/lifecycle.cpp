#include "handoff/proxy/ops/lifecycle.hpp"

#include "handoff/common/log.hpp"
#include "handoff/proxy/ops/admin.hpp"
#include "handoff/proxy/server/server.hpp"

namespace handoff::proxy {

using namespace std::chrono_literals;

drain_sequence::drain_sequence(boost::asio::io_context& ioc, server& front, admin_server* admin,
                               std::function<void()> on_stop_accepting, std::function<bool()> busy)
    : ioc_(ioc),
      server_(front),
      admin_(admin),
      on_stop_accepting_(std::move(on_stop_accepting)),
      busy_(std::move(busy)),
      timer_(ioc) {}

void drain_sequence::start(std::chrono::milliseconds delay, std::chrono::milliseconds timeout) {
    if (started_) return;
    started_ = true;
    log::info(
        "draining",
        {{"connections", server_.active_connections()}, {"delay_ms", delay.count()}, {"timeout_ms", timeout.count()}});
    server_.begin_drain();
    timer_.expires_after(delay);
    timer_.async_wait([this, timeout](boost::system::error_code) {
        log::info("stopped accepting",
                  {{"connections", server_.active_connections()}, {"inflight_commits", server_.inflight_commits()}});
        server_.stop_accepting();
        if (on_stop_accepting_) on_stop_accepting_();
        deadline_ = std::chrono::steady_clock::now() + timeout;
        wait_for_connections();
    });
}

void drain_sequence::wait_for_connections() {
    // Shutdown only: a short periodic check of the connection count, never on the hot path.
    const bool idle = server_.active_connections() == 0 && !(busy_ && busy_());
    if (idle || std::chrono::steady_clock::now() >= deadline_) {
        if (server_.active_connections() > 0) {
            log::warn("drain timeout: closing remaining connections", {{"connections", server_.active_connections()}});
        }
        if (admin_) admin_->stop();
        ioc_.stop();
        return;
    }
    timer_.expires_after(20ms);
    timer_.async_wait([this](boost::system::error_code) { wait_for_connections(); });
}

}  // namespace handoff::proxy
