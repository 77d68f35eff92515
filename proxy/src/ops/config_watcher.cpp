#include "handoff/proxy/ops/config_watcher.hpp"

#include "handoff/common/log.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace handoff::proxy {

namespace asio = boost::asio;

struct config_watcher::state : std::enable_shared_from_this<config_watcher::state> {
    state(asio::io_context& io, std::string f, std::function<void()> cb)
        : ioc(io), file(std::move(f)), on_change(std::move(cb)), fd(io), debounce(io) {}
    asio::io_context& ioc;
    std::string file;
    std::function<void()> on_change;
    asio::posix::stream_descriptor fd;
    asio::steady_timer debounce;
    std::optional<std::string> last_content;
    bool stopped = false;

    static std::optional<std::string> read(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) return std::nullopt;
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    }

    void arm() {
        fd.async_wait(asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](boost::system::error_code ec) {
                          if (ec || self->stopped) return;
                          char buf[4096];
                          while (::read(self->fd.native_handle(), buf, sizeof buf) > 0) {}
                          // Several events arrive for one update (a symlink swap is create + rename + delete):
                          // settle for a moment, then compare the content once.
                          self->debounce.expires_after(std::chrono::milliseconds(150));
                          self->debounce.async_wait([self](boost::system::error_code tec) {
                              if (tec || self->stopped) return;
                              auto now = read(self->file);
                              if (now && now != self->last_content) {
                                  self->last_content = std::move(now);
                                  self->on_change();
                              }
                          });
                          self->arm();
                      });
    }
};

config_watcher::config_watcher(asio::io_context& ioc, std::string file, std::function<void()> on_change)
    : state_(std::make_shared<state>(ioc, std::move(file), std::move(on_change))) {}

config_watcher::~config_watcher() { stop(); }

bool config_watcher::start() {
    const int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0) {
        log::warn("config file watching unavailable (inotify); reload with SIGHUP", {{"errno", errno}});
        return false;
    }
    auto dir = std::filesystem::path(state_->file).parent_path();
    if (dir.empty()) dir = ".";
    const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;
    if (inotify_add_watch(ifd, dir.c_str(), mask) < 0) {
        ::close(ifd);
        log::warn("config file watching unavailable; reload with SIGHUP", {{"directory", dir.string()}});
        return false;
    }
    state_->fd.assign(ifd);
    state_->last_content = state::read(state_->file);
    state_->arm();
    return true;
}

void config_watcher::stop() {
    if (!state_ || state_->stopped) return;
    state_->stopped = true;
    boost::system::error_code ignored;
    state_->debounce.cancel();
    state_->fd.cancel(ignored);
    state_->fd.close(ignored);
}

}  // namespace handoff::proxy
