// The listener: the shared state's construction, the accept loop, the session registry used by
// drain, and the public server API (server.hpp). A session, once accepted, runs in session.cpp.
#include "server/front.hpp"

#include "handoff/common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

namespace handoff::proxy {

using front::tuple_awaitable;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

server::state::state(asio::io_context& io, std::shared_ptr<const route_table> r, std::shared_ptr<producer> p,
                     std::shared_ptr<upstream_client> u, std::shared_ptr<metrics> m)
    : ioc(io),
      kafka(std::move(p)),
      upstream(std::move(u)),
      stats(m ? std::move(m) : std::make_shared<metrics>()),
      http1_connections(stats->http_connections("http/1.1")),
      h2_connections(stats->http_connections("h2")),
      h2c_upgrades(stats->http_connections("h2c-upgrade")) {
    routes.store(std::make_shared<const front::routing>(std::move(r), *stats));
    const auto& cfg = routes.load()->table->cfg();
    listen = cfg.listen;
    statuses = std::make_shared<status_store>(cfg.status.max_entries, cfg.status.max_bytes, cfg.status.ttl);
    keys = std::make_shared<idempotency_store>(cfg.idempotency.max_entries, cfg.idempotency.max_bytes,
                                               cfg.idempotency.ttl);
    settle = keys;
    replies = std::make_shared<reply_registry>();
    reply_listener = std::make_shared<reply_dispatcher>(replies, statuses, settle, stats);
}

namespace {

asio::awaitable<void> accept_loop(front::state_ptr st) {
    for (;;) {
        // Accept into a socket made beforehand, on its own strand: Boost 1.81's move-accept with
        // an executor argument and as_tuple frees the strand twice (seen under ASan, 2 threads).
        // With one io thread every handler is already serialized: no strand (it costs a queue
        // and a lock per handler).
        tcp::socket socket =
            st->listen.threads > 1 ? tcp::socket(asio::make_strand(st->ioc)) : tcp::socket(st->ioc.get_executor());
        auto [ec] = co_await st->acceptor->async_accept(socket, tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted || !st->acceptor->is_open()) co_return;
            log::warn("accept failed", {{"error", ec.message()}});
            continue;
        }
        if (st->connections.load() >= st->listen.max_connections) {
            // Connection cap: refuse at once rather than queue (tests/integration/test_limits.py, L-6).
            boost::system::error_code ignored;
            socket.close(ignored);
            st->stats->shed("connections").Increment();
            continue;
        }
        st->connections.fetch_add(1);
        boost::system::error_code nodelay_ec;  // a client already gone must not end the accept loop
        socket.set_option(tcp::no_delay(true), nodelay_ec);
        auto ex = socket.get_executor();
        asio::co_spawn(ex, front::run_session(st, std::move(socket)), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error("session failed", {{"error", ex.what()}});
            }
        });
    }
}

}  // namespace

server::server(asio::io_context& ioc, std::shared_ptr<const route_table> routes, std::shared_ptr<producer> producer,
               std::shared_ptr<upstream_client> upstream, std::shared_ptr<metrics> stats)
    : state_(
          std::make_shared<state>(ioc, std::move(routes), std::move(producer), std::move(upstream), std::move(stats))) {
    std::weak_ptr<state> weak = state_;
    state_->stats->on_scrape([weak] {
        if (auto s = weak.lock()) {
            s->stats->connections().Set(static_cast<double>(s->connections.load()));
            s->stats->status_entries().Set(static_cast<double>(s->statuses->size()));
            s->stats->status_bytes().Set(static_cast<double>(s->statuses->bytes()));
            s->stats->idempotency_entries().Set(static_cast<double>(s->keys->size()));
            s->stats->idempotency_bytes().Set(static_cast<double>(s->keys->bytes()));
            s->stats->buffered_body_bytes().Set(static_cast<double>(s->buffered_bodies.load()));
            s->stats->reply_waiting().Set(static_cast<double>(s->replies->size()));
            if (s->shared) {
                s->stats->state_entries().Set(static_cast<double>(s->shared->view_size()));
                s->stats->state_bytes().Set(static_cast<double>(s->shared->view_bytes()));
            }
            const auto ps = s->kafka->stats();
            s->stats->producer_queue_messages().Set(static_cast<double>(ps.queued_messages));
            s->stats->producer_queue_bytes().Set(static_cast<double>(ps.queued_bytes));
        }
    });
}

server::~server() = default;

consumer_listener& server::share_state(const config::state_config& state, std::string replica) {
    auto& st = *state_;
    const auto& cfg = st.routes.load()->table->cfg();
    st.shared =
        std::make_shared<shared_registry>(state, cfg.idempotency, st.kafka, st.statuses, st.stats, std::move(replica));
    st.settle = st.shared;
    st.reply_listener = std::make_shared<reply_dispatcher>(st.replies, st.statuses, st.settle, st.stats);
    std::weak_ptr<shared_registry> shared = st.shared;
    st.statuses->set_publisher([shared](const std::string& id, const request_status& s) {
        if (auto r = shared.lock()) r->publish_status(id, s);
    });
    return *st.shared;
}

void server::start() {
    const auto& l = state_->listen;
    const tcp::endpoint ep{asio::ip::make_address(l.address), l.port};
    state_->acceptor.emplace(state_->ioc);
    state_->acceptor->open(ep.protocol());
    state_->acceptor->set_option(asio::socket_base::reuse_address(true));
    state_->acceptor->bind(ep);
    state_->acceptor->listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(state_->ioc, accept_loop(state_), asio::detached);
}

tcp::endpoint server::local_endpoint() const { return state_->acceptor->local_endpoint(); }

void server::begin_drain() { state_->draining.store(true); }
bool server::draining() const noexcept { return state_->draining.load(); }

void server::stop_accepting() {
    state_->draining.store(true);
    state_->closing.store(true);
    asio::post(state_->ioc, [st = state_] {
        if (!st->acceptor || !st->acceptor->is_open()) return;
        // Connections the kernel already completed sit in the backlog; closing the listener now
        // would reset them. Take them (non-blocking) and serve their request before closing.
        boost::system::error_code ec;
        st->acceptor->non_blocking(true, ec);
        for (;;) {
            tcp::socket socket(asio::make_strand(st->ioc));
            st->acceptor->accept(socket, ec);
            if (ec) break;
            st->connections.fetch_add(1);
            socket.set_option(tcp::no_delay(true), ec);
            auto ex = socket.get_executor();
            asio::co_spawn(ex, front::run_session(st, std::move(socket)), asio::detached);
        }
        st->acceptor->close(ec);
    });
    std::lock_guard lock(state_->sessions_mutex);
    for (auto& h : state_->sessions) {
        // Runs on the session's strand, where `stream` and `idle` are owned. A connection whose
        // next request has already arrived is left to finish it.
        asio::post(h->ex, [h] {
            if (h->stop) {
                h->stop();
                return;
            }
            if (!h->stream || !h->idle) return;
            boost::system::error_code ec;
            if (h->stream->socket().available(ec) > 0 && !ec) return;
            h->stream->cancel();
        });
    }
}

std::size_t server::active_connections() const noexcept { return state_->connections.load(); }
std::size_t server::inflight_commits() const noexcept { return state_->inflight_commits.load(); }

void server::swap_routes(std::shared_ptr<const route_table> routes) {
    state_->routes.store(std::make_shared<const front::routing>(std::move(routes), *state_->stats));
}

namespace front {

namespace {
const std::string unmatched_label = "(unmatched)";
const std::string status_label = "(status)";
}  // namespace

routing::routing(std::shared_ptr<const route_table> t, metrics& stats) : table(std::move(t)) {
    const auto& cfg = table->cfg();
    by_route.reserve(cfg.routes.size());
    for (const auto& r : cfg.routes) {
        route_metrics m;
        m.served = &stats.route(r.name, r.mode);
        if (r.canary_percent_bp > 0) m.canary = &stats.route(r.name, r.canary_mode);
        if (!r.topic.empty()) m.topic = &stats.topic(r.topic);
        by_route.push_back(m);
    }
    unmatched.served = &stats.route(unmatched_label, cfg.defaults.mode);
    status.served = &stats.route(status_label, cfg.defaults.mode);
}

metrics::route_instruments& routing::instruments(metrics& stats, const config::route* route, bool status_path,
                                                 config::mode mode) const {
    const route_metrics* m = &unmatched;
    config::mode served = table->cfg().defaults.mode;
    config::mode canary = served;
    if (route) {
        const auto i = static_cast<std::size_t>(route - table->cfg().routes.data());
        if (i < by_route.size()) {
            m = &by_route[i];
            served = route->mode;
            canary = route->canary_mode;
        } else {
            m = nullptr;
        }
    } else if (status_path) {
        m = &status;
    }
    if (m && mode == served && m->served) return *m->served;
    if (m && mode == canary && m->canary) return *m->canary;
    return stats.route(route ? route->name : status_path ? status_label : unmatched_label, mode);
}

metrics::topic_instruments& routing::topic(metrics& stats, const config::route& r) const {
    const auto i = static_cast<std::size_t>(&r - table->cfg().routes.data());
    if (i < by_route.size() && by_route[i].topic) return *by_route[i].topic;
    return stats.topic(r.topic);
}

}  // namespace front

consumer_listener& server::reply_listener() noexcept { return *state_->reply_listener; }
bool server::replies_ready() const noexcept { return state_->reply_listener->ready(); }

}  // namespace handoff::proxy
