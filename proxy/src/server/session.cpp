// One connection's session: the loop that reads a request, answers it and waits for the next one,
// the request reader (head, then body, each bounded in size and time) with its mapping of read
// errors to answers, and the helpers that put a response on the wire.
#include "server/front.hpp"
#include "server/h2.hpp"

#include "handoff/common/drain_aware_read.hpp"
#include "handoff/common/log.hpp"
#include "handoff/common/write_now.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <tuple>

namespace handoff::proxy::front {

namespace {

using request_parser = http::request_parser<http::string_body>;

// The deadline of the session's waits on its raw socket: the idle wait for a request, and the
// write of an answer when the socket did not take it whole at once (write_now). Beast's tcp_stream
// arms a timer and cancels it around every operation, through its own composed operations; here
// the socket is read and written directly under one timer per connection, set lazily: arming
// records the deadline, and the timer is only set again when the new deadline comes before the
// time it is set to. A keep-alive connection arms the same idle timeout for every request, each
// deadline later than the last, so a request costs no timer operation: when the timer fires
// before the current deadline, it is set to that deadline. When the deadline passes, the socket's
// pending operation is cancelled. The other reads and writes (a head or body still on its way,
// 100 Continue, an answer before closing) stay on Beast's stream with its own deadlines.
class socket_deadline {
public:
    socket_deadline(const asio::any_io_executor& ex, std::shared_ptr<session_handle> h)
        : timer_(std::make_shared<asio::steady_timer>(ex)), handle_(std::move(h)) {}
    socket_deadline(const socket_deadline&) = delete;
    socket_deadline& operator=(const socket_deadline&) = delete;
    ~socket_deadline() { timer_->cancel(); }

    void arm(std::chrono::steady_clock::duration d) {
        auto& h = *handle_;
        h.waiting = true;
        h.deadline = std::chrono::steady_clock::now() + d;
        if (!h.timer_pending || h.deadline < h.expiry) set(h.deadline);
    }
    // The wait is over: a deadline that passes from now on does nothing.
    void done() noexcept { handle_->waiting = false; }

private:
    // Sets the timer (which cancels the wait set before it). Its handler runs on the session's
    // strand (the timer's executor), where the handle's fields are owned; it holds the timer, so
    // a handler that runs after the session ended finds it alive.
    void set(std::chrono::steady_clock::time_point at) {
        auto& h = *handle_;
        h.expiry = at;
        h.timer_pending = true;
        timer_->expires_at(at);
        timer_->async_wait([timer = timer_, weak = std::weak_ptr<session_handle>(handle_)](
                               const boost::system::error_code& ec) { fired(ec, timer, weak); });
    }
    static void fired(const boost::system::error_code& ec, const std::shared_ptr<asio::steady_timer>& timer,
                      const std::weak_ptr<session_handle>& weak) {
        if (ec) return;  // set again, or the session ended
        const auto h = weak.lock();
        if (!h || !h->stream) return;
        h->timer_pending = false;
        if (!h->waiting) return;  // nothing to bound; the next arm sets the timer
        if (std::chrono::steady_clock::now() < h->deadline) {
            // Armed again since the timer was set, for later: wait for that deadline.
            h->expiry = h->deadline;
            h->timer_pending = true;
            timer->expires_at(h->deadline);
            timer->async_wait([timer, weak](const boost::system::error_code& e) { fired(e, timer, weak); });
            return;
        }
        boost::system::error_code ignored;
        h->stream->socket().cancel(ignored);
    }

    std::shared_ptr<asio::steady_timer> timer_;
    std::shared_ptr<session_handle> handle_;
};

// The response as one gathered write: its head serialized into `wire` (reused per connection),
// then the body where it is. The answer to a HEAD request is the head alone (RFC 9110 §9.3.2): its
// Content-Length says what a GET would carry, and not one body byte follows, or the next response
// on the connection would start inside it.
std::array<asio::const_buffer, 2> wire_buffers(const outcome& o, std::string& wire, bool head_request) {
    wire.clear();
    if (wire.capacity() > 64 * 1024) wire.shrink_to_fit();  // after an unusually large head
    serialize_response_head(o.res, o.fields, wire);
    return {asio::buffer(wire), head_request ? asio::const_buffer() : asio::buffer(o.res.body())};
}

// What write_now left of an answer, written asynchronously under the write deadline (a
// coroutine of its own: the common case, an answer the socket took whole, never makes its frame).
awaitable<boost::system::error_code> write_rest(tcp::socket& socket, std::array<asio::const_buffer, 2> bufs,
                                                socket_deadline& deadline,
                                                std::chrono::steady_clock::duration timeout) {
    deadline.arm(timeout);
    auto [ec, n] = co_await asio::async_write(socket, bufs, tuple_awaitable);
    deadline.done();
    co_return ec;
}

// Readies a read of more of a request (its preface, head or body) through Beast's stream, bounded
// by `until`. `drained`: the idle read (drain_aware) came back short, so the reactor reads the
// socket again only after its next readiness event, and a close that arrived with the bytes that
// read took raises none. The read then first waits until the socket is readable with its
// registration re-armed (Asio's epoll reactor starts a wait with EPOLL_CTL_MOD, and the kernel
// reports readiness that is already there). A wait that passes `until` is Beast's timeout, as the
// read it stands for would have been.
awaitable<boost::system::error_code> ready_to_read(beast::tcp_stream& stream, socket_deadline& deadline, bool& drained,
                                                   std::chrono::steady_clock::time_point until) {
    if (drained) {
        drained = false;
        deadline.arm(until - std::chrono::steady_clock::now());
        auto [ec] = co_await stream.socket().async_wait(tcp::socket::wait_read, tuple_awaitable);
        deadline.done();
        if (ec == asio::error::operation_aborted && std::chrono::steady_clock::now() >= until) {
            co_return beast::error::timeout;
        }
        if (ec) co_return ec;
    }
    stream.expires_at(until);
    co_return boost::system::error_code{};
}

// Feeds what is already buffered to the parser, without I/O: a request usually arrives whole in
// the read that ended the idle wait, and an asynchronous read of bytes already here costs a post,
// a deadline and a coroutine frame. `until_header`: stop once the head is parsed (the body limit
// is set after routing). Returns the bytes consumed; `ec` is the parser's error (need_more is not
// one: the caller then reads, as Beast's read would).
std::size_t parse_buffered(http::request_parser<http::string_body>& parser, beast::flat_buffer& buffer,
                           bool until_header, boost::system::error_code& ec) {
    std::size_t used = 0;
    ec = {};
    while (buffer.size() > 0 && !(until_header ? parser.is_header_done() : parser.is_done())) {
        const auto n = parser.put(buffer.data(), ec);
        buffer.consume(n);
        used += n;
        if (ec == http::error::need_more) {
            ec = {};
            break;
        }
        if (ec || n == 0) break;
    }
    return used;
}

// Whether the connection starts with HTTP/2's client preface, reading what more of it is needed
// (bounded by the head's timeout): a client that sent "PRI * HTTP/2.0" and stopped is waited for.
// False: the peer went, or the preface did not complete in time. `drained`: the idle read came
// back short (see ready_to_read).
awaitable<bool> read_preface(beast::tcp_stream& stream, beast::flat_buffer& buffer, socket_deadline& deadline,
                             std::chrono::steady_clock::duration timeout, bool& drained, bool& h2) {
    auto buffered = [&] { return std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size()); };
    while (buffer.size() < h2_preface.size() && h2_preface.starts_with(buffered())) {
        if (co_await ready_to_read(stream, deadline, drained, std::chrono::steady_clock::now() + timeout)) {
            co_return false;
        }
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(h2_preface.size()), tuple_awaitable);
        if (ec) co_return false;
        buffer.commit(n);
    }
    stream.expires_never();
    h2 = buffered().starts_with(h2_preface);
    co_return true;
}

std::string take(beast::flat_buffer& buffer) {
    std::string out(static_cast<const char*>(buffer.data().data()), buffer.size());
    buffer.consume(buffer.size());
    return out;
}

// An Upgrade to h2c that can be honoured (RFC 7540 §3.2): "h2c" among the Upgrade tokens, exactly
// one HTTP2-Settings field holding a valid SETTINGS payload, and both named in Connection.
bool wants_h2c(const http::request<http::string_body>& req) {
    const auto up = req.find(http::field::upgrade);
    if (up == req.end() || !has_token(up->value(), "h2c")) return false;
    if (req.count("HTTP2-Settings") != 1) return false;
    bool upgrade = false, settings = false;
    for (auto [it, end] = req.equal_range(http::field::connection); it != end; ++it) {
        upgrade = upgrade || has_token(it->value(), "Upgrade");
        settings = settings || has_token(it->value(), "HTTP2-Settings");
    }
    return upgrade && settings && h2_connection::valid_settings(req["HTTP2-Settings"]);
}

// Answers 101 to a request that asked for h2c (wants_h2c), read whole, and serves the connection
// in HTTP/2 from here, the request as stream 1. Returns when the connection is done with.
awaitable<void> switch_to_h2(const state_ptr& st, beast::tcp_stream& stream, beast::flat_buffer& buffer,
                             request_parser& parser, const std::string& client_ip,
                             const std::shared_ptr<session_handle>& handle, const config::listen_config& listen) {
    static constexpr std::string_view switching =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    h2_upgrade up{std::string(parser.get()["HTTP2-Settings"]), parser.release()};
    for (const auto* name : {"Upgrade", "HTTP2-Settings", "Connection"}) up.req.erase(name);
    stream.expires_after(listen.write_timeout);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(switching), tuple_awaitable);
    if (ec) co_return;
    stream.expires_never();
    st->h2c_upgrades.Increment();
    handle->stream = nullptr;
    co_await run_h2_session(st, stream.release_socket(), client_ip, handle, take(buffer), std::move(up));
}

awaitable<void> write_and_close(beast::tcp_stream& stream, outcome o, const config::listen_config& listen,
                                bool head_request) {
    o.res.keep_alive(false);
    o.res.prepare_payload();
    stream.expires_after(listen.write_timeout);
    std::string wire;
    co_await asio::async_write(stream, wire_buffers(o, wire, head_request), tuple_awaitable);
}

// What a failed read answers, for the head and for the body alike. nullopt: the peer has gone
// (or the listener is closing the connection); close without an answer.
enum class read_phase { head, body };
struct read_failure {
    error e;
    std::string message;
};

std::optional<read_failure> read_error_answer(const boost::system::error_code& ec, read_phase phase,
                                              const request_parser& parser, std::size_t limit) {
    if (phase == read_phase::head) {
        if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
            ec == asio::error::operation_aborted) {
            return std::nullopt;
        }
        // Beast fills in the target only once the whole request line is parsed.
        if (ec == http::error::header_limit && parser.get().target().empty()) {
            return read_failure{error::uri_too_long,
                                "the request line is longer than " + std::to_string(limit) + " bytes"};
        }
        if (ec == http::error::header_limit) {
            return read_failure{error::headers_too_large,
                                "the request head is larger than " + std::to_string(limit) + " bytes"};
        }
        if (ec == beast::error::timeout) {
            return read_failure{error::request_timeout, "the request head did not arrive in time"};
        }
        return read_failure{error::bad_request, "malformed request: " + ec.message()};
    }
    if (ec == asio::error::eof || ec == http::error::partial_message || ec == asio::error::connection_reset) {
        return std::nullopt;
    }
    if (ec == http::error::body_limit) {
        return read_failure{error::body_too_large,
                            "the body is larger than this route's limit of " + std::to_string(limit) + " bytes"};
    }
    if (ec == beast::error::timeout) {
        return read_failure{error::request_timeout, "the request body did not arrive in time"};
    }
    return read_failure{error::bad_request, "malformed request body: " + ec.message()};
}

}  // namespace

awaitable<void> run_session(state_ptr st, tcp::socket socket) {
    const auto& listen = st->listen;
    std::string client_ip;
    {
        boost::system::error_code ec;
        const auto ep = socket.remote_endpoint(ec);
        client_ip = ec ? "unknown" : ep.address().to_string();
    }
    {
        boost::system::error_code ec;
        socket.non_blocking(true, ec);  // for write_now; asynchronous operations are unaffected
        if (ec) {
            st->connections.fetch_sub(1);
            co_return;
        }
    }
    auto handle = std::make_shared<session_handle>(socket.get_executor());
    beast::tcp_stream stream(std::move(socket));
    socket_deadline deadline(stream.get_executor(), handle);
    // Bounded: a chunk line, a trailer or pipelined requests can never grow it past this
    // (buffer_overflow -> 400); pipelined requests beyond it wait in the socket (TCP back-pressure).
    beast::flat_buffer buffer(listen.max_header_bytes + 64 * 1024);
    std::string wire;  // response heads, serialized here
    handle->stream = &stream;
    std::list<std::shared_ptr<session_handle>>::iterator registration;
    {
        std::lock_guard lock(st->sessions_mutex);
        registration = st->sessions.insert(st->sessions.end(), handle);
    }

    std::size_t served = 0;
    bool protocol_known = false;
    // The last read was the idle read and it came back short: the socket was drained, and the
    // reactor reads it again only after its next readiness event (drain_aware_read.hpp). That is
    // what the idle read wants (no recv that finds nothing), but a read of more of a request first
    // waits with the registration re-armed (ready_to_read). The one case this leaves is a client
    // that half-closes its side in the same moment as it sends a whole request: it is answered,
    // and the connection is then closed at idle_timeout, not at once.
    bool drained = false;
    for (;;) {
        // Idle between requests: wait for the first byte of the next one. Once the listener has
        // stopped, a connection that was already served is closed here; one accepted from the
        // backlog still gets its first request answered (its client sent it before we stopped).
        if (buffer.size() == 0) {
            if (st->closing.load() && served > 0) break;
            handle->idle = true;
            deadline.arm(listen.idle_timeout);
            auto [ec, n] = co_await stream.socket().async_read_some(drain_aware(buffer.prepare(8192)), tuple_awaitable);
            deadline.done();
            handle->idle = false;
            if (ec) break;
            buffer.commit(n);
            drained = n < 8192;
        }
        if (served == 0 && !protocol_known) {
            protocol_known = true;
            // HTTP/2 with prior knowledge: the connection starts with the client preface.
            bool h2 = false;
            if (!co_await read_preface(stream, buffer, deadline, listen.header_timeout, drained, h2)) break;
            if (h2 && listen.http2.enabled) {
                handle->stream = nullptr;
                co_await run_h2_session(st, stream.release_socket(), client_ip, handle, take(buffer), std::nullopt);
                break;
            }
            if (h2) {
                // Beast's parser would call the preface a bad version (400): say what it is.
                const request_ids none;
                co_await write_and_close(
                    stream,
                    make_error(error::unsupported_version,
                               "HTTP/2 is not enabled on this listener (listen.http2.enabled)", none, 11),
                    listen, false);
                break;
            }
            st->http1_connections.Increment();
        }
        const auto started = std::chrono::steady_clock::now();
        // RFC 9112 §2.2: empty lines before a request line are ignored (test_hostile_http.py, B-18).
        buffer.consume(leading_empty_lines({static_cast<const char*>(buffer.data().data()), buffer.size()}));
        // Beast 1.81 does not bound chunk extensions (test_hostile_http.py, B-7); declared before
        // the parser, which refers to it.
        auto chunk_ext_check = [](std::uint64_t, std::string_view ext, boost::system::error_code& ec) {
            if (chunk_extension_too_long(ext)) ec = http::error::bad_chunk_extension;
        };
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(listen.max_header_bytes, UINT32_MAX)));
        parser.on_chunk_header(chunk_ext_check);
        // Beast would refuse a Content-Length over its default 1 MB while reading the head (as a
        // 400); the limit is the route's, known after routing and set before the body is read.
        parser.body_limit(boost::none);
        // The head is usually here already, whole, from the read that ended the idle wait.
        boost::system::error_code hec;
        std::size_t hn = parse_buffered(parser, buffer, /*until_header=*/true, hec);
        if (!hec && !parser.is_header_done()) {
            hec = co_await ready_to_read(stream, deadline, drained,
                                         std::chrono::steady_clock::now() + listen.header_timeout);
            if (!hec) {
                auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
                hec = rec;
                hn += rn;
            }
        }
        // Beast 1.81 applies header_limit to the request line and to the fields separately; the
        // limit is for the whole head (test_limits.py, L-4): hn is what the parser consumed for this head.
        if (!hec && hn > listen.max_header_bytes) hec = http::error::header_limit;
        if (hec) {
            const auto failure = read_error_answer(hec, read_phase::head, parser, listen.max_header_bytes);
            if (!failure) break;
            const request_ids none;  // named: a braced temporary in a co_await expression trips GCC 12
            co_await write_and_close(stream, make_error(failure->e, failure->message, none, 11), listen, false);
            break;
        }

        auto& req = parser.get();
        const bool head_request = req.method() == http::verb::head;
        const auto routing = st->routes.load();  // this request keeps the table it started with
        const auto& routes = routing->table;
        const auto& cfg = routes->cfg();
        // Every request gets its own request ID; the caller's X-Correlation-ID is only a label
        // (set by admit_head, once the head is known to be usable).
        request_ids ids{make_uuid_v7(), {}};
        admission a;
        a.mode = cfg.defaults.mode;
        const std::string_view protocol = req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
        // The request's metrics and log line, once its outcome is known.
        auto record = [&](const outcome& o) {
            metrics::observe(routing->instruments(*st->stats, a.route, a.path.starts_with("/_handoff/"), a.mode),
                             o.res.result_int(),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            if (cfg.log.requests) log_request(req, protocol, a.route, a.mode, ids, o, started);
        };
        auto finish = [&](outcome o) -> outcome {
            record(o);
            return o;
        };

        if (req.version() != 11 && req.version() != 10) {
            co_await write_and_close(
                stream,
                finish(make_error(error::unsupported_version, "only HTTP/1.0 and HTTP/1.1 are served", ids, 11)),
                listen, head_request);
            break;
        }
        std::optional<std::uint64_t> declared;
        if (const auto cl = parser.content_length()) declared = *cl;
        // Upgrade: h2c (RFC 7540 §3.2) on a request that needs no body read, answered by
        // admit_head (the status endpoint, a refusal): switched now, answered as stream 1.
        std::optional<outcome> early = admit_head(*st, *routes, req, declared, ids, a);
        if (early && parser.is_done() && listen.http2.enabled && parser.upgrade() && wants_h2c(req)) {
            co_await switch_to_h2(st, stream, buffer, parser, client_ip, handle, listen);
            break;
        }
        if (early) {
            // The body (if any) was not read: the connection cannot be reused.
            if (!parser.is_done()) early->close = true;
            auto o = finish(std::move(*early));
            if (o.close) {
                co_await write_and_close(stream, std::move(o), listen, head_request);
                break;
            }
            o.res.keep_alive(req.keep_alive() && !st->draining.load());
            o.res.prepare_payload();
            auto bufs = wire_buffers(o, wire, head_request);
            boost::system::error_code wec;
            if (write_now(stream.socket(), bufs, wec) > 0 && !wec) {
                wec = co_await write_rest(stream.socket(), bufs, deadline, listen.write_timeout);
            }
            if (wec || !o.res.keep_alive()) break;
            continue;
        }
        const auto& route = a.route;
        const std::size_t body_limit = a.body_limit;

        body_reservation body_share(st->buffered_bodies);
        if (!parser.is_done()) {
            // Bodies are bounded all together too (limits.max_buffered_body_bytes): each
            // connection may hold up to its route's limit, and there may be max_connections.
            const auto declared = parser.content_length();
            if (!body_share.take(declared ? static_cast<std::size_t>(*declared) : body_limit,
                                 cfg.limits.max_buffered_body_bytes)) {
                st->stats->shed("buffered_bodies").Increment();
                co_await write_and_close(
                    stream,
                    finish(make_error(error::overloaded, "too many request bodies are being received; retry later", ids,
                                      req.version())),
                    listen, head_request);
                break;
            }
            if (expects_continue(req.base())) {
                http::response<http::empty_body> cont{http::status::continue_, req.version()};
                stream.expires_after(listen.write_timeout);
                auto [cec, cn] = co_await http::async_write(stream, cont, tuple_awaitable);
                if (cec) break;
            }
            parser.body_limit(body_limit);
            // Beast adds trailer fields to the header (next to a same-named field, not at the end):
            // keep the head as it was, so trailers are never applied, forwarded or copied
            // (test_hostile_http.py, B-8).
            std::optional<http::fields> head_fields;
            if (req.chunked()) head_fields.emplace(static_cast<const http::fields&>(req));
            parser.eager(true);
            boost::system::error_code bec;
            parse_buffered(parser, buffer, /*until_header=*/false, bec);
            if (!bec && !parser.is_done()) {
                bec = co_await ready_to_read(stream, deadline, drained,
                                             std::chrono::steady_clock::now() + listen.body_timeout);
                if (!bec) {
                    std::tie(bec, std::ignore) = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
                }
            }
            if (bec) {
                const auto failure = read_error_answer(bec, read_phase::body, parser, body_limit);
                if (!failure) break;
                co_await write_and_close(stream, finish(make_error(failure->e, failure->message, ids, req.version())),
                                         listen, head_request);
                break;
            }
            // Framing, routing and authentication fields in a trailer refuse the request (400 + close).
            if (head_fields) {
                const bool forbidden = has_forbidden_trailer(*head_fields, req);
                static_cast<http::fields&>(req) = std::move(*head_fields);
                if (forbidden) {
                    co_await write_and_close(
                        stream,
                        finish(make_error(error::bad_request,
                                          "a trailer carries a framing, routing or authentication field", ids,
                                          req.version())),
                        listen, head_request);
                    break;
                }
            }
        }

        // Upgrade: h2c (RFC 7540 §3.2): the request, read whole, is answered as HTTP/2's stream 1.
        // parser.upgrade() (Connection lists "upgrade", noted while parsing) spares the common
        // request the field lookups of wants_h2c.
        if (listen.http2.enabled && parser.upgrade() && wants_h2c(req)) {
            co_await switch_to_h2(st, stream, buffer, parser, client_ip, handle, listen);
            break;
        }
        // Named, not braced inside the co_await: GCC 12 (see request_context).
        request_context ctx{st, cfg, route, req, a.match.params, client_ip, ids};
        if (route && !route->topic.empty()) ctx.topic_metrics = &routing->topic(*st->stats, *route);
        outcome o;
        co_await answer_request(ctx, *routes, a.path, a.query, a.mode, o);
        record(o);
        const bool keep = !o.close && req.keep_alive() && !st->draining.load() && !st->closing.load();
        o.res.keep_alive(keep);
        if (req.method() != http::verb::head || (a.mode != config::mode::forward && a.mode != config::mode::shadow)) {
            if (!o.res.has_content_length() && o.res.result_int() >= 200 && o.res.result_int() != 204 &&
                o.res.result_int() != 304) {
                o.res.content_length(o.res.body().size());
            }
        }
        // The answer in one gathered write, made on the spot while the socket takes it (an answer
        // usually fits its send buffer whole: no asynchronous operation, no deadline to arm and no
        // suspension); the rest, if any, asynchronously under the write deadline.
        auto bufs = wire_buffers(o, wire, head_request);
        boost::system::error_code wec;
        if (write_now(stream.socket(), bufs, wec) > 0 && !wec) {
            wec = co_await write_rest(stream.socket(), bufs, deadline, listen.write_timeout);
        }
        ++served;
        if (wec || !keep) break;
    }

    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    handle->stream = nullptr;
    {
        std::lock_guard lock(st->sessions_mutex);
        st->sessions.erase(registration);
    }
    st->connections.fetch_sub(1);
}

}  // namespace handoff::proxy::front
