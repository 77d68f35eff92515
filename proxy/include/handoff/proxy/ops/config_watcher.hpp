// Watches the config file for changes (inotify on its directory) and reports them on the
// io_context. Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink in the
// directory, which never touches the file's own inode: watching the directory and comparing the
// file's content catches that as well as an editor's in-place write or rename.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

namespace handoff::proxy {

class config_watcher {
public:
    // `on_change` runs on the io_context after the file's content changed (debounced).
    config_watcher(boost::asio::io_context& ioc, std::string file, std::function<void()> on_change);
    ~config_watcher();

    // Returns false (and logs) when inotify is unavailable; reload by SIGHUP still works.
    bool start();
    void stop();

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace handoff::proxy
