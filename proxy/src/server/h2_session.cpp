// A connection served in HTTP/2 (h2c): the socket's reads fed to the connection's nghttp2 session
// (h2.hpp), its frames written back, and each stream's request handled as an HTTP/1.1 request is
// (admit_head, then answer_request) in a coroutine of its own, so that streams are answered
// independently: a `commit` waiting for the broker does not hold the `event` behind it.
//
// Everything runs on the connection's strand. One timer bounds the waits: the idle timeout when
// no stream is open, a stream's head and body (header_timeout, body_timeout), an answer the peer
// does not take (write_timeout, per stream and for the socket's writes).
#include "server/front.hpp"
#include "server/h2.hpp"

#include "handoff/common/log.hpp"
#include "handoff/common/write_now.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <charconv>
#include <vector>

namespace handoff::proxy::front {

namespace {

using clock = std::chrono::steady_clock;

// What the session keeps with a stream once its head is admitted.
struct stream_state {
    explicit stream_state(std::atomic<std::size_t>& bodies) : share(bodies) {}
    std::shared_ptr<const routing> table;
    request_ids ids;
    admission a;
    clock::time_point started;
    body_reservation share;
};

class h2_session final : public h2_connection::events, public std::enable_shared_from_this<h2_session> {
public:
    h2_session(state_ptr st, tcp::socket socket, std::string client_ip, std::shared_ptr<session_handle> handle)
        : st_(std::move(st)),
          socket_(std::move(socket)),
          client_ip_(std::move(client_ip)),
          handle_(std::move(handle)),
          timer_(socket_.get_executor()),
          conn_(*this, limits(*st_)) {}

    awaitable<void> run(std::string buffered, std::optional<h2_upgrade> upgrade) {
        auto self = shared_from_this();
        handle_->stop = [weak = weak_from_this()] {
            if (auto s = weak.lock()) s->stop();
        };
        last_activity_ = clock::now();
        if (upgrade && !conn_.upgrade(upgrade->settings, std::move(upgrade->req))) {
            // The settings were checked before the 101; nghttp2 refusing them now is a bug.
            log::warn("http2", "h2c upgrade refused by nghttp2 after the 101");
            close();
            co_return;
        }
        if (!buffered.empty() &&
            !conn_.receive(reinterpret_cast<const std::uint8_t*>(buffered.data()), buffered.size())) {
            fatal();
            co_return;
        }
        kick();
        rbuf_.resize(16 * 1024);
        while (!closed_ && conn_.alive()) {
            schedule();
            auto [ec, n] = co_await socket_.async_read_some(asio::buffer(rbuf_), tuple_awaitable);
            if (ec || closed_) break;
            last_activity_ = clock::now();
            if (!conn_.receive(reinterpret_cast<const std::uint8_t*>(rbuf_.data()), n)) {
                fatal();
                co_return;
            }
            kick();
        }
        // The last frames (a GOAWAY) go out with the writer, which closes once it is done; the
        // timer bounds that by the write timeout.
        finishing_ = true;
        if (!writing_ || closed_) {
            close();
        } else {
            schedule();
        }
    }

    // ---- h2_connection::events ------------------------------------------------------------
    void on_head(h2_stream& s) override {
        auto ss = std::make_shared<stream_state>(st_->buffered_bodies);
        s.driver_data = ss;
        ss->started = s.opened;
        ss->table = st_->routes.load();
        ss->ids = request_ids{make_uuid_v7(), {}};
        const auto& routes = *ss->table->table;
        ss->a.mode = routes.cfg().defaults.mode;
        const auto& listen = st_->listen;
        if (s.header_list_too_large) {
            st_->stats->http2_event("header_list_too_large").Increment();
            ss->ids.correlation = ss->ids.request;
            answer_now(s, *ss,
                       make_error(error::headers_too_large,
                                  "the request's header list is larger than " +
                                      std::to_string(listen.max_header_bytes) + " bytes",
                                  ss->ids, 11));
            return;
        }
        if (!s.problem.empty()) {
            ss->ids.correlation = ss->ids.request;
            answer_now(s, *ss, make_error(error::bad_request, s.problem, ss->ids, 11));
            return;
        }
        std::optional<std::uint64_t> declared;
        if (auto it = s.req.find(http::field::content_length); it != s.req.end()) {
            std::uint64_t v = 0;
            const auto text = it->value();
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (ec == std::errc() && end == text.data() + text.size()) declared = v;
        }
        if (auto early = admit_head(*st_, routes, s.req, declared, ss->ids, ss->a)) {
            answer_now(s, *ss, std::move(*early));
            return;
        }
        s.body_limit = ss->a.body_limit;
        if (!s.body_done) {
            // Bodies are bounded all together too (limits.max_buffered_body_bytes).
            if (!ss->share.take(declared ? static_cast<std::size_t>(*declared) : ss->a.body_limit,
                                routes.cfg().limits.max_buffered_body_bytes)) {
                st_->stats->shed("buffered_bodies").Increment();
                answer_now(s, *ss,
                           make_error(error::overloaded, "too many request bodies are being received; retry later",
                                      ss->ids, 11));
                return;
            }
            if (expects_continue(s.req.base())) conn_.send_continue(s);
        }
    }

    void on_request(const std::shared_ptr<h2_stream>& sp) override {
        auto& s = *sp;
        auto ss = std::static_pointer_cast<stream_state>(s.driver_data);
        if (!ss) {  // not admitted (cannot happen: on_head runs first)
            conn_.handler_done(s);
            return;
        }
        if (s.body_too_large) {
            answer_now(s, *ss,
                       make_error(error::body_too_large,
                                  "the body is larger than this route's limit of " + std::to_string(ss->a.body_limit) +
                                      " bytes",
                                  ss->ids, 11));
            conn_.handler_done(s);
            return;
        }
        if (s.forbidden_trailer) {
            answer_now(s, *ss,
                       make_error(error::bad_request, "a trailer carries a framing, routing or authentication field",
                                  ss->ids, 11));
            conn_.handler_done(s);
            return;
        }
        asio::co_spawn(socket_.get_executor(), handle(shared_from_this(), sp, std::move(ss)), asio::detached);
    }

    void on_refused() override { st_->stats->http2_event("stream_refused").Increment(); }
    void on_goaway_sent(std::uint32_t code) override {
        // A timeout's GOAWAY (CANCEL) is counted as a timeout; NO_ERROR is a graceful end.
        if (code != NGHTTP2_NO_ERROR && code != NGHTTP2_CANCEL) {
            st_->stats->http2_event("connection_error").Increment();
        }
    }

private:
    static h2_limits limits(const server::state& st) {
        h2_limits l;
        l.max_concurrent_streams = st.listen.http2.max_concurrent_streams;
        l.max_header_list_bytes = st.listen.max_header_bytes;
        l.initial_window = st.listen.http2.initial_window_bytes;
        return l;
    }

    // A stream's request, handled as an HTTP/1.1 request is once its body has been read.
    static awaitable<void> handle(std::shared_ptr<h2_session> self, std::shared_ptr<h2_stream> sp,
                                  std::shared_ptr<stream_state> ss) {
        auto& s = *sp;
        const auto& routes = *ss->table->table;
        const auto& cfg = routes.cfg();
        // Named, not braced inside the co_await: GCC 12 (see request_context).
        request_context ctx{self->st_, cfg, ss->a.route, s.req, ss->a.match.params, self->client_ip_, ss->ids};
        if (ss->a.route && !ss->a.route->topic.empty()) {
            ctx.topic_metrics = &ss->table->topic(*self->st_->stats, *ss->a.route);
        }
        outcome o;
        co_await answer_request(ctx, routes, ss->a.path, ss->a.query, ss->a.mode, o);
        const bool head_request = s.req.method() == http::verb::head;
        if (!head_request || (ss->a.mode != config::mode::forward && ss->a.mode != config::mode::shadow)) {
            if (!o.res.has_content_length() && o.res.result_int() >= 200 && o.res.result_int() != 204 &&
                o.res.result_int() != 304) {
                o.res.content_length(o.res.body().size());
            }
        }
        self->record(s, *ss, o);
        self->conn_.answer(s, o, head_request);
        self->conn_.handler_done(s);
        self->after_answer();
    }

    // An answer decided without handling the request (a refusal); the stream's body, if one is
    // still coming, is dropped (nghttp2 resets the stream with NO_ERROR once the answer is sent).
    void answer_now(h2_stream& s, stream_state& ss, outcome o) {
        if (!o.res.has_content_length() && o.res.result_int() >= 200) o.res.content_length(o.res.body().size());
        record(s, ss, o);
        conn_.answer(s, o, s.req.method() == http::verb::head);
        after_answer();
    }

    void record(const h2_stream& s, const stream_state& ss, const outcome& o) {
        const auto& cfg = ss.table->table->cfg();
        metrics::observe(ss.table->instruments(*st_->stats, ss.a.route, ss.a.path.starts_with("/_handoff/"), ss.a.mode),
                         o.res.result_int(), std::chrono::duration<double>(clock::now() - ss.started).count());
        if (cfg.log.requests) log_request(s.req, "HTTP/2", ss.a.route, ss.a.mode, ss.ids, o, ss.started);
    }

    void after_answer() {
        // The idle timeout counts from the last answer too: a commit that took longer than it
        // does not close the connection the moment it is answered.
        last_activity_ = clock::now();
        // A draining sidecar asks the client to go elsewhere, as HTTP/1.1's Connection: close.
        if (st_->draining.load() || st_->closing.load()) {
            stop();
        } else {
            kick();
        }
    }

    // GOAWAY once (NO_ERROR): the streams open are still answered, no new one is taken.
    void stop() {
        if (!goaway_sent_) {
            goaway_sent_ = true;
            conn_.shut_down();
        }
        kick();
    }

    // Starts the writer if it is not running. Posted: this may be called from inside nghttp2's
    // callbacks, where its send function must not be.
    void kick() {
        if (writing_ || closed_) return;
        writing_ = true;
        asio::post(socket_.get_executor(), [self = shared_from_this()] {
            asio::co_spawn(self->socket_.get_executor(), write_loop(self), asio::detached);
        });
    }

    static awaitable<void> write_loop(std::shared_ptr<h2_session> self) {
        auto& out = self->wbuf_;
        for (;;) {
            out.clear();
            if (self->closed_ || self->conn_.pull(out, 64 * 1024) == 0) break;
            auto bufs = std::array<asio::const_buffer, 2>{asio::buffer(out), asio::const_buffer()};
            boost::system::error_code ec;
            if (write_now(self->socket_, bufs, ec) > 0 && !ec) {
                self->write_started_ = clock::now();
                self->write_pending_ = true;
                self->schedule();
                std::tie(ec, std::ignore) = co_await asio::async_write(self->socket_, bufs, tuple_awaitable);
                self->write_pending_ = false;
            }
            if (ec) {
                self->close();
                break;
            }
        }
        if (out.capacity() > 256 * 1024) std::string().swap(out);
        self->writing_ = false;
        if (!self->closed_ && (self->finishing_ || !self->conn_.alive())) {
            self->close();
        } else {
            self->schedule();
        }
    }

    // The next deadline: the idle timeout when nothing is open, each stream's head, body and
    // answer deadlines, the socket's write deadline. The timer is set again only when that comes
    // earlier than where it is set.
    void schedule() {
        if (closed_) return;
        const auto& l = st_->listen;
        auto next = clock::time_point::max();
        if (conn_.active() == 0 && !writing_) next = last_activity_ + l.idle_timeout;
        if (write_pending_) next = std::min(next, write_started_ + l.write_timeout);
        if (finishing_) next = std::min(next, last_activity_ + l.write_timeout);
        conn_.for_each_stream([&](const h2_stream& s) {
            if (!s.head_done) {
                next = std::min(next, s.opened + l.header_timeout);
            } else if (!s.body_done && !s.answered) {
                next = std::min(next, s.head_at + l.body_timeout);
            } else if (s.answered) {
                next = std::min(next, s.answered_at + l.write_timeout);
            }
        });
        if (next == clock::time_point::max()) return;
        if (timer_pending_ && expiry_ <= next) return;
        expiry_ = next;
        timer_pending_ = true;
        timer_.expires_at(next);
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) return;
            if (auto self = weak.lock()) {
                self->timer_pending_ = false;
                self->expired();
            }
        });
    }

    void expired() {
        if (closed_) return;
        const auto& l = st_->listen;
        const auto now = clock::now();
        if (write_pending_ && now >= write_started_ + l.write_timeout) {
            st_->stats->http2_event("timeout").Increment();
            close();  // the peer does not read
            return;
        }
        if (finishing_ && !writing_) {
            close();
            return;
        }
        if (finishing_ && now >= last_activity_ + l.write_timeout) {
            close();
            return;
        }
        if (conn_.active() == 0 && !writing_ && now >= last_activity_ + l.idle_timeout) {
            conn_.terminate(NGHTTP2_NO_ERROR);  // GOAWAY, then the writer closes
            finishing_ = true;
            kick();
            return;
        }
        std::vector<h2_stream*> late_body, late_answer;
        bool late_head = false;
        conn_.for_each_stream([&](h2_stream& s) {
            if (!s.head_done) {
                if (now >= s.opened + l.header_timeout) late_head = true;
            } else if (!s.body_done && !s.answered) {
                if (now >= s.head_at + l.body_timeout) late_body.push_back(&s);
            } else if (s.answered && now >= s.answered_at + l.write_timeout) {
                late_answer.push_back(&s);
            }
        });
        if (late_head) {
            // A header block left unfinished holds the whole connection (nothing but its
            // CONTINUATION may follow): the connection goes.
            st_->stats->http2_event("timeout").Increment();
            conn_.terminate(NGHTTP2_CANCEL);
            finishing_ = true;
            kick();
            return;
        }
        for (auto* s : late_body) {
            st_->stats->http2_event("timeout").Increment();
            if (auto ss = std::static_pointer_cast<stream_state>(s->driver_data)) {
                answer_now(*s, *ss,
                           make_error(error::request_timeout, "the request body did not arrive in time", ss->ids, 11));
            } else {
                conn_.reset(*s, NGHTTP2_CANCEL);
            }
        }
        for (auto* s : late_answer) {
            st_->stats->http2_event("timeout").Increment();
            conn_.reset(*s, NGHTTP2_CANCEL);  // the peer does not take the answer (its window stays shut)
        }
        kick();
        schedule();
    }

    // nghttp2 gave up on the connection (a flood, a CONTINUATION flood, not HTTP/2): its GOAWAY is
    // offered to the socket once, without waiting (a flooding peer may not read), then it closes.
    void fatal() {
        st_->stats->http2_event("connection_error").Increment();
        const auto goaway = conn_.final_goaway();
        if (!goaway.empty() && !write_pending_) {
            std::array<asio::const_buffer, 2> bufs{asio::buffer(goaway), asio::const_buffer()};
            boost::system::error_code ignored;
            write_now(socket_, bufs, ignored);
        }
        close();
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
        handle_->stop = nullptr;
    }

    state_ptr st_;
    tcp::socket socket_;
    std::string client_ip_;
    std::shared_ptr<session_handle> handle_;
    asio::steady_timer timer_;
    h2_connection conn_;
    std::vector<char> rbuf_;
    std::string wbuf_;
    clock::time_point last_activity_;
    clock::time_point write_started_;
    clock::time_point expiry_;
    bool timer_pending_ = false;
    bool write_pending_ = false;
    bool writing_ = false;
    bool finishing_ = false;
    bool closed_ = false;
    bool goaway_sent_ = false;
};

}  // namespace

awaitable<void> run_h2_session(state_ptr st, tcp::socket socket, std::string client_ip,
                               std::shared_ptr<session_handle> handle, std::string buffered,
                               std::optional<h2_upgrade> upgrade) {
    if (!upgrade) st->h2_connections.Increment();  // an upgrade is counted by the session
    auto session = std::make_shared<h2_session>(st, std::move(socket), std::move(client_ip), std::move(handle));
    co_await session->run(std::move(buffered), std::move(upgrade));
}

}  // namespace handoff::proxy::front
