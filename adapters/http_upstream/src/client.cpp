#include "handoff/adapters/http_upstream/client.hpp"

#include "handoff/common/http_rules.hpp"
#include "handoff/common/log.hpp"
#include "handoff/common/drain_aware_read.hpp"
#include "handoff/common/write_now.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace handoff::adapters::http_upstream {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
namespace log = handoff::proxy::log;
using proxy::upstream_error;
using proxy::upstream_result;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
// A connection to the service: its socket, read and written directly (no Beast stream), under
// one deadline per connect and per exchange (`deadline_guard`, below). The buffer holds what was
// read past the last response (nothing, when it is pooled: a connection with unsolicited bytes is
// not reused) and lives as long as the connection, so a keep-alive exchange allocates no buffer.
struct connection {
    explicit connection(const asio::any_io_executor& ex) : socket(ex), timer(ex) {}
    tcp::socket socket;
    beast::flat_buffer buffer;
    // The deadline of the connect or exchange in progress (deadline_guard). Guarded by
    // `deadline_mutex`: the timer's handler runs on the io_context, and with several io threads a
    // connection's next exchange may start on another thread.
    std::mutex deadline_mutex;
    asio::steady_timer timer;
    std::uint64_t operation = 0;   // the number of the connect or exchange in progress
    bool active = false;           // one is in progress
    steady::time_point deadline;   // its deadline
    asio::any_io_executor caller;  // its executor: where its socket operations run
    bool timer_pending = false;    // the timer is set, for `expiry`
    steady::time_point expiry;
    std::atomic<bool> expired{false};  // the deadline of the one in progress passed
};
// Shared: the deadline handler holds a weak_ptr, and may run after the connection is gone.
using connection_ptr = std::shared_ptr<connection>;

// The deadline of one connect or exchange on a connection, kept by one timer for the connection's
// life and set lazily, as the session's socket_deadline: a connect or exchange records its
// deadline, and the timer is only set again when that deadline comes before the time the timer is
// set to. Keep-alive exchanges with the same timeout have ever later deadlines, so an exchange
// costs no timer operation (setting and cancelling a timer per exchange, and running the cancelled
// wait's handler, was 3.5 % of a forwarded request's CPU: tests/bench/README.md). When the timer
// fires: nothing in progress, it is left unset (the next one sets it); a deadline not yet reached
// (a later exchange's), it is set for that; a deadline passed, the operation in progress is
// cancelled on the caller's executor — the strand where the caller starts each operation on the
// socket — so it either cancels the operation in progress or runs between two operations, where
// `expired()` is checked before the next one starts: an operation can never begin after its
// deadline passed and then wait unbounded. One that runs after its connect or exchange ended finds
// another number and does nothing.
class deadline_guard {
public:
    deadline_guard(const connection_ptr& c, steady::time_point at, const asio::any_io_executor& caller) : c_(*c) {
        std::lock_guard lock(c_.deadline_mutex);
        ++c_.operation;
        c_.active = true;
        c_.deadline = at;
        if (c_.caller != caller) c_.caller = caller;
        c_.expired.store(false);
        if (!c_.timer_pending || at < c_.expiry) set(c, at);
    }
    deadline_guard(const deadline_guard&) = delete;
    deadline_guard& operator=(const deadline_guard&) = delete;
    ~deadline_guard() {
        std::lock_guard lock(c_.deadline_mutex);
        ++c_.operation;  // a cancellation already on its way finds another number
        c_.active = false;
    }
    bool expired() const noexcept { return c_.expired.load(); }

private:
    // Sets the timer (which cancels the wait set before it). Holds the connection's deadline_mutex.
    static void set(const connection_ptr& c, steady::time_point at) {
        c->expiry = at;
        c->timer_pending = true;
        c->timer.expires_at(at);
        c->timer.async_wait([weak = std::weak_ptr<connection>(c)](const boost::system::error_code& ec) {
            if (ec) return;  // set again, or the connection is gone
            const auto conn = weak.lock();
            if (conn) fired(conn);
        });
    }
    static void fired(const connection_ptr& c) {
        std::unique_lock lock(c->deadline_mutex);
        c->timer_pending = false;
        if (!c->active) return;
        if (steady::now() < c->deadline) {
            set(c, c->deadline);
            return;
        }
        const auto number = c->operation;
        const auto caller = c->caller;
        lock.unlock();
        asio::post(caller, [weak = std::weak_ptr<connection>(c), number] {
            const auto conn = weak.lock();
            if (!conn) return;
            {
                std::lock_guard l(conn->deadline_mutex);
                if (conn->operation != number) return;
            }
            conn->expired.store(true);
            boost::system::error_code ignored;
            conn->socket.cancel(ignored);
        });
    }

    connection& c_;
};

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t header_limit = 64 * 1024;

// Methods whose repetition has the same effect as one request (RFC 9110 §9.2.2).
bool is_idempotent(http::verb m) noexcept {
    switch (m) {
        case http::verb::get:
        case http::verb::head:
        case http::verb::put:
        case http::verb::delete_:
        case http::verb::options:
        case http::verb::trace: return true;
        default: return false;
    }
}

// True when an idle pooled connection still looks usable: nothing to read and no EOF/reset.
// A non-blocking MSG_PEEK never waits. Bytes pending on an idle connection are unsolicited (for
// example a 408 the server sent before closing) and make it unusable as well.
bool looks_alive(connection& c) noexcept {
    auto& s = c.socket;
    if (!s.is_open()) return false;
    // One non-blocking peek: nothing to read means the peer has not closed it. MSG_DONTWAIT
    // rather than toggling the socket's mode, which costs two ioctls here and one more in Asio's
    // next operation.
    char byte = 0;
    const auto n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// One caller waiting for a pool slot. `granted` is written under pool::mutex_; the channel (a
// thread-safe, buffered wake-up) lets a releaser on another thread wake the waiter without a
// lost-wakeup race: try_send stores the signal even if the waiter has not started to wait yet.
struct waiter {
    explicit waiter(asio::any_io_executor ex) : wake(std::move(ex), 1) {}
    asio::experimental::concurrent_channel<void(boost::system::error_code)> wake;
    bool granted = false;
};

// What an exchange writes: a chunked request through Beast's serializer, or a serialized head
// and the body in one gathered write. Views into storage the caller's coroutine frame owns.
struct outgoing {
    http::verb method = http::verb::get;
    const request* chunked = nullptr;
    std::string_view head;
    std::string_view body;
};

upstream_result failed(upstream_error e) {
    upstream_result r;
    r.error = e;
    return r;
}

// What an exchange leaves: the caller's result, built in place (never moved between coroutines).
struct exchange_result {
    upstream_result out;
    bool response_started = false;  // at least one response byte arrived
    bool reusable = false;          // keep-alive and fully read: may go back to the pool
};

// A response parser for response_fields::forwarded: the head's end-to-end fields are serialized
// as they are parsed (no field container, no copy per field into one), the body is appended to
// the response's string. Fields in a chunked body's trailer are dropped: a trailer is not a head.
class forwarding_parser final : public http::basic_parser<false> {
public:
    response& get() noexcept { return res_; }
    response release() { return std::move(res_); }
    std::string take_fields() { return fields_.take(); }

private:
    void on_request_impl(http::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
    void on_response_impl(int code, beast::string_view reason, int version, beast::error_code&) override {
        res_.result(code);
        res_.reason(reason);
        res_.version(version);
    }
    void on_field_impl(http::field f, beast::string_view name, beast::string_view value, beast::error_code&) override {
        if (!is_header_done()) fields_.add(f, name, value);
    }
    void on_header_impl(beast::error_code& ec) override { ec = {}; }
    void on_body_init_impl(const boost::optional<std::uint64_t>& length, beast::error_code& ec) override {
        ec = {};
        if (length) res_.body().reserve(static_cast<std::size_t>(*length));  // within body_limit
    }
    std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override {
        ec = {};
        res_.body().append(body.data(), body.size());
        return body.size();
    }
    void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code& ec) override { ec = {}; }
    std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code& ec) override {
        return on_body_impl(body, ec);
    }
    void on_finish_impl(beast::error_code& ec) override { ec = {}; }

    response res_;
    proxy::end_to_end_fields fields_;
};

// The shared state behind a client. Lives as long as the client or any `send` in flight.
//
// Threading: a std::mutex guards the slot count, the idle list and the waiter queue. It is held
// only for O(1) bookkeeping, never across a co_await and never around a syscall. A connection is
// owned exclusively by one `send` while leased, so its I/O needs no lock.
class pool {
public:
    pool(asio::any_io_executor ex, const config::upstream_config& cfg)
        : ex_(std::move(ex)), cfg_(cfg), max_connections_(std::max<std::size_t>(cfg.max_connections, 1)) {
        boost::system::error_code ec;
        auto addr = asio::ip::make_address(cfg_.host, ec);
        if (!ec) endpoint_ = tcp::endpoint(addr, cfg_.port);
    }

    // One send, from the pool slot to the response. Holds the pool and the request (its head and
    // body; `chunked`, when not null, is written instead and outlives the send).
    static asio::awaitable<upstream_result> send(std::shared_ptr<pool> self, proxy::serialized_request req,
                                                 const request* chunked, std::chrono::milliseconds timeout,
                                                 proxy::response_fields form);

private:
    // A leased pool slot: returns the slot (and possibly the connection) when destroyed, on
    // every path including exceptions and coroutine-frame destruction.
    class lease {
    public:
        explicit lease(pool* p) : pool_(p) {}
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        ~lease() { pool_->release(std::move(keep_)); }
        void keep(connection_ptr c) noexcept { keep_ = std::move(c); }

    private:
        pool* pool_;
        connection_ptr keep_;
    };

    // Takes a free slot, if any, at once (no coroutine frame: the common case).
    bool try_take_slot();
    // After try_take_slot found none: waits for one of max_connections_ slots in FIFO order, up to
    // connect_timeout (and the request deadline). Returns ok with the slot held, pool_exhausted or
    // timeout.
    asio::awaitable<upstream_error> acquire_slot(steady::time_point deadline);
    // Removes a waiter from the queue; true when it had already been granted a slot.
    bool withdraw(const std::shared_ptr<waiter>& w);
    connection_ptr take_idle();
    void release(connection_ptr keep) noexcept;
    asio::awaitable<std::pair<upstream_error, connection_ptr>> connect(steady::time_point deadline);
    // Writes the request and reads the final response (interim 1xx ones skipped) with a parser of
    // type Parser, into r.
    template <class Parser>
    asio::awaitable<void> exchange(const connection_ptr& c, const outgoing& out, steady::time_point deadline,
                                   exchange_result& r);

    asio::any_io_executor ex_;
    const config::upstream_config cfg_;
    const std::size_t max_connections_;
    std::optional<tcp::endpoint> endpoint_;  // set when cfg_.host is a numeric address

    std::mutex mutex_;
    std::size_t in_use_ = 0;  // leased slots (connecting or exchanging)
    struct idle_connection {
        connection_ptr c;
        steady::time_point since;  // returned to the pool
    };
    // LIFO at the back (the most recently used is reused first); the front holds the oldest,
    // closed once idle for upstream.idle_timeout.
    std::deque<idle_connection> idle_;
    std::deque<std::shared_ptr<waiter>> waiters_;  // FIFO
};

asio::awaitable<upstream_error> pool::acquire_slot(steady::time_point deadline) {
    const auto wait_until = std::min(deadline, steady::now() + cfg_.connect_timeout);
    const auto failure = wait_until < deadline ? upstream_error::pool_exhausted : upstream_error::timeout;
    if (wait_until <= steady::now()) co_return failure;

    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(ex);
    {
        std::lock_guard lock(mutex_);
        // While waiters exist every slot is taken (release hands slots over directly), so a
        // newcomer cannot overtake the queue.
        if (in_use_ < max_connections_) {
            ++in_use_;
            co_return upstream_error::ok;
        }
        waiters_.push_back(w);
    }
    // Leaves the queue on every exit path, including an exception or the frame being destroyed
    // while suspended; a slot granted meanwhile is given back.
    struct queued {
        pool* p;
        std::shared_ptr<waiter> w;
        bool settled = false;
        ~queued() {
            if (!settled && p->withdraw(w)) p->release(nullptr);
        }
    } q{this, w};
    {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer timer(ex, wait_until);
        co_await (w->wake.async_receive(use_tuple) || timer.async_wait(use_tuple));
    }
    q.settled = true;
    if (withdraw(w)) co_return upstream_error::ok;  // a slot was handed over, even if just now
    co_return failure;
}

bool pool::try_take_slot() {
    std::lock_guard lock(mutex_);
    if (in_use_ >= max_connections_) return false;
    ++in_use_;
    return true;
}

bool pool::withdraw(const std::shared_ptr<waiter>& w) {
    std::lock_guard lock(mutex_);
    if (w->granted) return true;
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), w), waiters_.end());
    return false;
}

connection_ptr pool::take_idle() {
    for (;;) {
        idle_connection idle;
        {
            std::lock_guard lock(mutex_);
            if (idle_.empty()) return nullptr;
            idle = std::move(idle_.back());
            idle_.pop_back();
        }
        // Idle past upstream.idle_timeout: the service may be closing it right now (its own
        // keep-alive timeout), and a request sent on it then fails with nothing to retry it safely.
        if (steady::now() - idle.since >= cfg_.idle_timeout) {
            log::debug("upstream connection idle past upstream.idle_timeout; closed");
            continue;
        }
        if (looks_alive(*idle.c)) return std::move(idle.c);
        log::debug("upstream idle connection closed by peer; discarded");
    }
}

void pool::release(connection_ptr keep) noexcept {
    std::shared_ptr<waiter> next;
    std::vector<connection_ptr> expired;  // closed outside the lock
    {
        std::lock_guard lock(mutex_);
        const auto now = steady::now();
        // The oldest idle connections are at the front: close those past idle_timeout, so that
        // connections the LIFO never reaches do not linger half-closed by the service.
        while (!idle_.empty() && now - idle_.front().since >= cfg_.idle_timeout) {
            try {
                expired.push_back(std::move(idle_.front().c));
            } catch (...) {}
            idle_.pop_front();
        }
        if (keep && idle_.size() < cfg_.max_idle) {
            try {
                idle_.push_back({std::move(keep), now});
            } catch (...) {}
        }
        if (!waiters_.empty()) {
            // Hand the slot over: in_use_ stays the same.
            next = std::move(waiters_.front());
            waiters_.pop_front();
            next->granted = true;
        } else {
            --in_use_;
        }
    }
    if (next) next->wake.try_send(boost::system::error_code{});
    // `keep`, when not pooled, closes here, outside the lock.
}

asio::awaitable<std::pair<upstream_error, connection_ptr>> pool::connect(steady::time_point deadline) {
    const auto connect_deadline = std::min(deadline, steady::now() + cfg_.connect_timeout);
    const auto caller = co_await asio::this_coro::executor;
    // The socket on the io_context's executor, whatever thread: completions run on the caller's
    // executor (the awaitable's), and the deadline handler too (deadline_guard).
    auto c = std::make_shared<connection>(ex_);
    boost::system::error_code ec;
    if (endpoint_) {
        deadline_guard d(c, connect_deadline, caller);
        std::tie(ec) = co_await c->socket.async_connect(*endpoint_, use_tuple);
        if (d.expired()) co_return std::pair{upstream_error::timeout, connection_ptr{}};
    } else {
        using namespace asio::experimental::awaitable_operators;
        tcp::resolver resolver(caller);
        asio::steady_timer timer(caller, connect_deadline);
        auto r = co_await (resolver.async_resolve(cfg_.host, std::to_string(cfg_.port), use_tuple) ||
                           timer.async_wait(use_tuple));
        if (r.index() == 1) co_return std::pair{upstream_error::timeout, connection_ptr{}};
        auto [rec, results] = std::get<0>(std::move(r));
        if (rec) {
            log::warn("upstream host name did not resolve", {{"host", cfg_.host}, {"reason", rec.message()}});
            co_return std::pair{upstream_error::refused, connection_ptr{}};
        }
        deadline_guard d(c, connect_deadline, caller);
        std::tie(ec, std::ignore) = co_await asio::async_connect(c->socket, results, use_tuple);
        if (d.expired()) co_return std::pair{upstream_error::timeout, connection_ptr{}};
    }
    if (ec) co_return std::pair{upstream_error::refused, connection_ptr{}};
    c->socket.set_option(tcp::no_delay(true), ec);
    c->socket.non_blocking(true, ec);  // for write_now
    if (ec) co_return std::pair{upstream_error::refused, connection_ptr{}};
    co_return std::pair{upstream_error::ok, std::move(c)};
}

// What a failed read or write of an exchange means for the caller.
upstream_error exchange_error(const deadline_guard& d, bool response_started) {
    if (d.expired()) return upstream_error::timeout;
    return response_started ? upstream_error::bad_response : upstream_error::refused;
}

template <class Parser>
asio::awaitable<void> pool::exchange(const connection_ptr& cp, const outgoing& out, steady::time_point deadline,
                                     exchange_result& r) {
    auto& conn = *cp;
    auto& sock = conn.socket;
    auto& buf = conn.buffer;
    // One deadline for the whole exchange: when it passes, the socket's pending operation is
    // cancelled and the exchange fails as a timeout.
    const deadline_guard d(cp, deadline, co_await asio::this_coro::executor);
    boost::system::error_code wec;
    if (out.chunked) {
        std::tie(wec, std::ignore) = co_await http::async_write(sock, *out.chunked, use_tuple);
    } else {
        // Head and body in one gathered write, made on the spot while the socket takes it (a
        // request usually fits its send buffer whole); the rest, if any, asynchronously.
        std::array<asio::const_buffer, 2> bufs{asio::buffer(out.head), asio::buffer(out.body)};
        if (proxy::write_now(sock, bufs, wec) > 0 && !wec) {
            std::tie(wec, std::ignore) = co_await asio::async_write(sock, bufs, use_tuple);
        }
    }
    if (wec || d.expired()) {
        r.out.error = exchange_error(d, false);
        co_return;
    }
    buf.clear();
    if (buf.capacity() > 64 * 1024) buf.shrink_to_fit();  // after an unusually large response
    const bool head_request = out.method == http::verb::head;
    // The first read of the answer waits for the socket's readiness without trying it first when
    // the last exchange's read drained it (drain_aware): a reused connection was found open and
    // empty since (looks_alive), so only the answer can make it readable. Every later read tries
    // the socket at once (read_now) and waits only when it is empty: a read that came back short
    // may have left an end of stream behind the bytes it took (a body delimited by the close, a
    // service that dropped the connection mid-answer), and that raises no new readiness event.
    bool first_read = true;
    for (;;) {
        Parser p;
        p.header_limit(header_limit);
        p.body_limit(cfg_.max_response_bytes);
        p.eager(true);
        if (head_request) p.skip(true);  // a response to HEAD has headers only, whatever Content-Length says
        // Parses what is buffered, reads when the parser needs more: Beast's parser driven in
        // place, without its composed read operations.
        boost::system::error_code ec;
        while (!p.is_done()) {
            if (buf.size() > 0) {
                const auto n = p.put(buf.data(), ec);
                buf.consume(n);
                if (ec == http::error::need_more) {
                    ec = {};
                } else if (ec) {
                    break;
                } else if (n > 0) {
                    continue;
                }
            }
            if (d.expired()) {
                r.out.error = upstream_error::timeout;
                co_return;
            }
            const auto space = buf.prepare(beast::read_size(buf, 65536));
            boost::system::error_code rec;
            std::size_t n = 0;
            if (!first_read) n = proxy::read_now(sock, space, rec);
            if (first_read || rec == asio::error::would_block) {
                std::tie(rec, n) = co_await sock.async_read_some(proxy::drain_aware(space), use_tuple);
            }
            first_read = false;
            if (n > 0) {
                buf.commit(n);
                r.response_started = true;
            }
            if (rec == asio::error::eof && !d.expired()) {
                if (!r.response_started) {
                    r.out.error = upstream_error::refused;  // closed before a response byte
                    co_return;
                }
                p.put_eof(ec);  // ends a body delimited by the close; otherwise a truncated response
                break;
            }
            if (rec) {
                r.out.error = exchange_error(d, r.response_started);
                co_return;
            }
        }
        if (ec) {
            r.out.error = upstream_error::bad_response;  // unparsable, truncated or oversized
            co_return;
        }
        const unsigned status = p.get().result_int();
        if (status == 101) {
            // Upgrade was stripped from the request (hop-by-hop); switching protocols is a violation.
            r.out.error = upstream_error::bad_response;
            co_return;
        }
        if (status >= 100 && status < 200) continue;  // interim (100 Continue, 103): skip
        r.reusable = p.keep_alive() && buf.size() == 0;
        if constexpr (std::is_same_v<Parser, forwarding_parser>) {
            r.out.fields = p.take_fields();
            if (const auto declared = p.content_length()) r.out.content_length = *declared;
        }
        r.out.response = p.release();
        r.out.error = upstream_error::ok;
        co_return;
    }
}

asio::awaitable<upstream_result> pool::send(std::shared_ptr<pool> self, proxy::serialized_request req,
                                            const request* chunked, std::chrono::milliseconds timeout,
                                            proxy::response_fields form) {
    const outgoing out{req.method, chunked, req.head, req.body};
    auto& p = *self;
    // What escapes a send (cancellation, an unexpected exception) is `refused`.
    try {
        const auto deadline = steady::now() + timeout;
        if (!p.try_take_slot()) {
            if (auto e = co_await p.acquire_slot(deadline); e != upstream_error::ok) co_return failed(e);
        }
        lease slot(&p);

        connection_ptr c = p.take_idle();
        const bool reused = c != nullptr;
        exchange_result r;
        for (int attempt = 0;; ++attempt) {
            if (!c) {
                auto [e, fresh] = co_await p.connect(deadline);
                if (e != upstream_error::ok) co_return failed(e);
                c = std::move(fresh);
            }
            // Not a conditional expression: GCC 12 miscompiles a co_await inside one.
            if (form == proxy::response_fields::forwarded) {
                co_await p.exchange<forwarding_parser>(c, out, deadline, r);
            } else {
                co_await p.exchange<http::response_parser<http::string_body>>(c, out, deadline, r);
            }
            // The stale keep-alive race: the server closed an idle connection while we were
            // sending on it. Only then is one retry on a fresh connection safe, and only for
            // idempotent methods: the server may have received and acted on the request before
            // closing, and repeating a POST or PATCH could apply it twice, so those surface as
            // `refused` and the caller decides.
            if (attempt == 0 && r.out.error == upstream_error::refused && !r.response_started && reused &&
                is_idempotent(out.method)) {
                log::debug("upstream keep-alive connection was stale; retrying on a fresh connection",
                           {{"method", std::string(http::to_string(out.method))}});
                c.reset();
                r = exchange_result{};
                continue;
            }
            break;
        }
        if (r.out.error != upstream_error::ok) co_return failed(r.out.error);
        if (r.reusable) slot.keep(std::move(c));
        co_return std::move(r.out);
    } catch (const boost::system::system_error& e) {
        // The caller's coroutine was cancelled (it throws on resumption after cancellation).
        if (e.code() == asio::error::operation_aborted) {
            log::debug("upstream send cancelled");
        } else {
            log::error("upstream send failed unexpectedly", {{"reason", e.what()}});
        }
    } catch (const std::exception& e) {
        log::error("upstream send failed unexpectedly", {{"reason", e.what()}});
    }
    co_return failed(upstream_error::refused);
}

// A request given whole (subscriptions): serialized here, or written by Beast's serializer when
// chunked. Holds the request for the send.
asio::awaitable<upstream_result> send_request(std::shared_ptr<pool> p, request req, std::chrono::milliseconds timeout,
                                              proxy::response_fields form) {
    proxy::serialized_request s;
    s.method = req.method();
    if (req.chunked()) {
        co_return co_await pool::send(std::move(p), std::move(s), &req, timeout, form);
    }
    if (!req.has_content_length() && !req.body().empty()) req.prepare_payload();
    proxy::serialize_request_head(req, s.head);
    s.body = std::move(req.body());
    co_return co_await pool::send(std::move(p), std::move(s), nullptr, timeout, form);
}

class client final : public proxy::upstream_client {
public:
    explicit client(std::shared_ptr<pool> p) : pool_(std::move(p)) {}

    asio::awaitable<upstream_result> send(request req, std::chrono::milliseconds timeout,
                                          proxy::response_fields form) override {
        return send_request(pool_, std::move(req), timeout, form);
    }
    asio::awaitable<upstream_result> send(proxy::serialized_request req, std::chrono::milliseconds timeout,
                                          proxy::response_fields form) override {
        return pool::send(pool_, std::move(req), nullptr, timeout, form);
    }

private:
    std::shared_ptr<pool> pool_;
};

}  // namespace

std::shared_ptr<proxy::upstream_client> make_client(boost::asio::any_io_executor ex,
                                                    const config::upstream_config& cfg) {
    return std::make_shared<client>(std::make_shared<pool>(std::move(ex), cfg));
}

}  // namespace handoff::adapters::http_upstream
