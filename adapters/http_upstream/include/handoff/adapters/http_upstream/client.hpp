// HTTP/1.1 implementation of proxy::upstream_client: a bounded keep-alive connection pool to
// one upstream host:port.
//
// Contract: `send` may be called concurrently from coroutines on any threads of the io_context
// that owns `ex` (each session on its own strand); it completes on the caller's executor and never
// throws for network outcomes. The returned client must outlive every `send` in flight; idle
// pooled connections are closed when it is destroyed.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/ports/upstream.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>

namespace handoff::adapters::http_upstream {

// Creates the client. Does no I/O: connections are opened on demand. A numeric `cfg.host` is
// parsed once here; a host name is resolved on every new connection.
// `ex` is the io_context executor; sockets and timers live on it, and completions (the deadline
// handlers included) run on each caller's executor.
std::shared_ptr<proxy::upstream_client> make_client(boost::asio::any_io_executor ex,
                                                    const config::upstream_config& cfg);

}  // namespace handoff::adapters::http_upstream
