// The HTTP front's private declarations, shared by the files of proxy/src that make up the
// server (server/server.cpp, server/session.cpp, dispatch/dispatch.cpp, modes/forward.cpp, modes/produce.cpp,
// http/responses.cpp). Not part of the public API: nothing outside proxy/src includes it.
#pragma once

#include "handoff/proxy/http/errors.hpp"
#include "handoff/common/http_rules.hpp"
#include "handoff/proxy/dispatch/idempotency_store.hpp"
#include "handoff/proxy/dispatch/shared_registry.hpp"
#include "handoff/common/ids.hpp"
#include "handoff/proxy/modes/record.hpp"
#include "handoff/proxy/delivery/replies.hpp"
#include "handoff/proxy/server/server.hpp"
#include "handoff/proxy/dispatch/status_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace handoff::proxy {

namespace front {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

using response = http::response<http::string_body>;

// A live connection, as seen by drain: lets `stop_accepting` close it while it is idle.
struct session_handle {
    explicit session_handle(asio::any_io_executor e) : ex(std::move(e)) {}
    const asio::any_io_executor ex;       // the session's strand
    beast::tcp_stream* stream = nullptr;  // touched only on the session's strand
    bool idle = false;
    // The session's wait on its raw socket (session.cpp, socket_deadline). Touched only on the
    // session's strand.
    bool waiting = false;                            // a read or write under the deadline is in progress
    std::chrono::steady_clock::time_point deadline;  // when it is cancelled
    std::chrono::steady_clock::time_point expiry;    // when the timer fires
    bool timer_pending = false;                      // the timer is set to `expiry`
    // An HTTP/2 connection's way to stop (GOAWAY, then close once its streams are answered),
    // called on the session's strand by server::stop_accepting; unset on HTTP/1.1.
    std::function<void()> stop;
};

// A route table and its routes' metric instruments, resolved once when the table is installed
// (start, reload): a request's metrics then take no lock and look nothing up. Swapped as one, so
// a request never pairs one table's routes with another's instruments.
struct routing {
    struct route_metrics {
        metrics::route_instruments* served = nullptr;  // in the route's mode
        metrics::route_instruments* canary = nullptr;  // in its canary mode, when it has a canary
        metrics::topic_instruments* topic = nullptr;   // its topic template, when it has one
    };
    routing(std::shared_ptr<const route_table> t, metrics& stats);

    // The instruments of a request on `route` (null: matched none; `status_path`: /_handoff/)
    // answered in `mode`. A mode the table did not resolve falls back to metrics::route.
    metrics::route_instruments& instruments(metrics& stats, const config::route* route, bool status_path,
                                            config::mode mode) const;
    // The instruments of the route's topic template (the route has a topic). A route not of this
    // table falls back to metrics::topic.
    metrics::topic_instruments& topic(metrics& stats, const config::route& r) const;

    std::shared_ptr<const route_table> table;
    std::vector<route_metrics> by_route;  // by index in table->cfg().routes
    route_metrics unmatched, status;      // "(unmatched)" and "(status)", in defaults.mode
};

}  // namespace front

// Everything the server's sessions share; owned by `server` and by every session (shared_ptr), so
// it outlives the last connection. The stores are created from the route table's config at
// construction; listener settings need a restart to change.
struct server::state {
    boost::asio::io_context& ioc;
    std::atomic<std::shared_ptr<const front::routing>> routes;
    std::shared_ptr<producer> kafka;
    std::shared_ptr<upstream_client> upstream;
    std::shared_ptr<metrics> stats;
    std::shared_ptr<status_store> statuses;
    std::shared_ptr<idempotency_store> keys;  // this process's keys (unused with state.shared)
    std::shared_ptr<key_settlement> settle;   // where keyed requests complete: `keys`, or `shared`
    std::shared_ptr<shared_registry> shared;  // state.shared: claims and statuses through the state topic
    std::shared_ptr<reply_registry> replies;
    std::shared_ptr<reply_dispatcher> reply_listener;
    config::listen_config listen;
    std::atomic<std::size_t> inflight_commits{0};  // listener settings need a restart to change
    std::optional<boost::asio::ip::tcp::acceptor> acceptor;
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> buffered_bodies{0};  // bytes reserved by body_reservation
    std::atomic<bool> closing{false};
    std::atomic<std::size_t> connections{0};
    // handoff_http_connections_total by protocol, resolved once (a lookup takes the registry's lock).
    prometheus::Counter& http1_connections;
    prometheus::Counter& h2_connections;
    prometheus::Counter& h2c_upgrades;
    std::mutex sessions_mutex;
    std::list<std::shared_ptr<front::session_handle>> sessions;

    state(boost::asio::io_context& io, std::shared_ptr<const route_table> r, std::shared_ptr<producer> p,
          std::shared_ptr<upstream_client> u, std::shared_ptr<metrics> m);
};

namespace front {

using state_ptr = std::shared_ptr<server::state>;

// What a handled request produced, for the response and the request log line.
struct outcome {
    response res;
    // A forwarded response's own fields, serialized; written after res's (the sidecar's) fields.
    std::string fields;
    bool close = false;
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string error_code;
};

// One request on its way through a mode handler. Every member refers to something the session
// loop owns for the request's iteration (or longer), so a handler must not keep the context past
// its own completion. Build it as a named variable: GCC 12 miscompiles a braced temporary passed
// inside a co_await expression.
struct request_context {
    const state_ptr& st;
    const config::config& cfg;   // the config of the route table the request started with
    const config::route* route;  // null only for a forwarded request that matched no route
    http::request<http::string_body>& req;
    const path_params& params;
    const std::string& client_ip;
    const request_ids& ids;
    metrics::topic_instruments* topic_metrics = nullptr;  // set when the route has a topic
    bool keyed = false;  // the request holds an Idempotency-Key entry (set by the gate)
};

// ---- http/responses.cpp: pure response builders----------------------------------------------

void set_json(response& res, std::string body);
outcome make_error(error e, std::string_view message, const request_ids& ids, unsigned version);
std::string status_url(const std::string& request_id);
// The 504 for a request whose outcome is not known yet: the body says so and points at the
// status URL, where the final outcome appears.
outcome outcome_unknown(std::string_view message, const request_ids& ids, const std::string& topic, unsigned version);
// A commit route's success, from the persisted delivery report.
outcome commit_success(int status, const request_ids& ids, const std::string& topic, const delivery_report& report,
                       unsigned version);
stored_response to_stored(const response& res);
response from_stored(const stored_response& s, unsigned version);

// ---- modes/forward.cpp and modes/produce.cpp: the mode handlers-----------------------------

// Fills `o` in place: returned, an outcome is moved at least twice per coroutine frame it passes
// through (into the promise, out of it), each move a field container and four strings.
awaitable<void> handle_forward(const request_context& ctx, outcome& o);
awaitable<outcome> handle_shadow(const request_context& ctx);
outcome handle_event(const request_context& ctx);
awaitable<outcome> handle_commit(const request_context& ctx);
awaitable<outcome> handle_reply(const request_context& ctx);

// What every delivery report of an accepted record leaves behind: the request's state in the
// status store and the produce-outcome metric. Returns the outcome label.
const char* record_delivery(status_store& statuses, const metrics::topic_instruments& counters,
                            const std::string& request_id, const std::string& route_name, const std::string& topic,
                            const delivery_report& r);

// ---- dispatch/dispatch.cpp: from a parsed head to an outcome ------------------------------------------

// The answer of the sidecar's own endpoint (a path under /_handoff/): the request status.
outcome status_endpoint(server::state& st, const config::config& cfg, const http::request<http::string_body>& req,
                        std::string_view path, const request_ids& ids);

// The answer to a path that matched no route in a usable way (ambiguous, or not for this
// method); nullopt when the request goes on (matched, or not found: forwarded).
std::optional<outcome> match_problem(const route_match& match, const http::request<http::string_body>& req,
                                     const request_ids& ids);

// What every request head is checked against and routed by, on HTTP/1.1 and HTTP/2 alike
// (admit_head).
struct admission {
    std::string_view path, query;  // into the request's target
    route_match match;
    const config::route* route = nullptr;  // matched; null: forwarded unmatched, or answered here
    config::mode mode = config::mode::forward;
    std::size_t body_limit = 0;  // the route's, else listen.max_body_bytes
};

// The checks of a request head, in order: framing and fields (framing_problem), the target's form,
// X-Correlation-ID (sets ids.correlation), the sidecar's own /_handoff/ paths (answered here),
// route matching (ambiguous, method not allowed), a declared body length over the route's limit,
// and Expect. Returns the answer when the request stops here, nullopt when its body is to be read
// and the request handled. An answer with `close` set is for a malformed head: HTTP/1.1 closes
// the connection after it, whatever follows.
std::optional<outcome> admit_head(server::state& st, const route_table& routes, http::request<http::string_body>& req,
                                  std::optional<std::uint64_t> declared_length, request_ids& ids, admission& a);

inline bool expects_continue(const http::request_header<>& h) {
    auto it = h.find(http::field::expect);
    return it != h.end() && iequals(it->value(), "100-continue");
}

// Runs a request whose body has been read: the canary choice, the Idempotency-Key gate, then
// the handler of the mode taken. `mode` comes in as the route's (or the default) and leaves as
// the one taken. Exceptions become a 500 here. The answer is written into `o` (not returned: no
// move of it between coroutine frames).
awaitable<void> answer_request(request_context& ctx, const route_table& routes, std::string_view path,
                               std::string_view query, config::mode& mode, outcome& o);

// `protocol`: "HTTP/1.1", "HTTP/1.0" or "HTTP/2", the log line's field of that name.
void log_request(const http::request_header<>& req, std::string_view protocol, const config::route* route,
                 config::mode mode, const request_ids& ids, const outcome& o,
                 std::chrono::steady_clock::time_point started);

// ---- server/session.cpp ----------------------------------------------------------------------------

// A request body's share of limits.max_buffered_body_bytes, taken before the body is read and
// given back when the request is done with (HTTP/1.1: its answer written; HTTP/2: its stream
// closed and its handler finished).
class body_reservation {
public:
    explicit body_reservation(std::atomic<std::size_t>& total) noexcept : total_(total) {}
    body_reservation(const body_reservation&) = delete;
    body_reservation& operator=(const body_reservation&) = delete;
    ~body_reservation() {
        if (held_ > 0) total_.fetch_sub(held_);
    }
    bool take(std::size_t n, std::size_t limit) noexcept {
        auto cur = total_.load();
        do {
            if (n > limit || cur > limit - n) return false;
        } while (!total_.compare_exchange_weak(cur, cur + n));
        held_ = n;
        return true;
    }

private:
    std::atomic<std::size_t>& total_;
    std::size_t held_ = 0;
};

// One connection, from its accept to its close; runs on the socket's executor (its strand).
awaitable<void> run_session(state_ptr st, tcp::socket socket);

// ---- server/h2_session.cpp ---------------------------------------------------------------------

// An HTTP/1.1 request that asked to switch to HTTP/2 (Upgrade: h2c), read whole, with its
// HTTP2-Settings value; the 101 has been written. It is answered as stream 1.
struct h2_upgrade {
    std::string settings;
    http::request<http::string_body> req;
};

// A connection served in HTTP/2 from here on, until it closes; `buffered`: bytes already read
// from it (the client preface onwards). Runs on the socket's strand, as run_session.
awaitable<void> run_h2_session(state_ptr st, tcp::socket socket, std::string client_ip,
                               std::shared_ptr<session_handle> handle, std::string buffered,
                               std::optional<h2_upgrade> upgrade);

}  // namespace front

}  // namespace handoff::proxy
