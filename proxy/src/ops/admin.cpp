#include "handoff/proxy/ops/admin.hpp"

#include "handoff/common/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <nlohmann/json.hpp>

#include <optional>

namespace handoff::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct admin_server::state {
    asio::io_context& ioc;
    config::admin_config cfg;
    admin_hooks hooks;
    std::optional<tcp::acceptor> acceptor;
};

namespace {

http::response<http::string_body> answer(const admin_server::state& st, const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    const auto target = req.target();
    const auto path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
        res.body() = R"({"error":"method_not_allowed","message":"the admin listener is read-only"})";
    } else if (path == "/healthz") {
        res.body() = R"({"status":"ok"})";
    } else if (path == "/readyz") {
        std::string reason;
        const bool ready = st.hooks.ready ? st.hooks.ready(reason) : true;
        if (ready) {
            res.body() = R"({"status":"ready"})";
        } else {
            res.result(http::status::service_unavailable);
            res.body() = nlohmann::json{{"status", "not_ready"}, {"reason", reason}}.dump();
        }
    } else if (path == "/config" && st.hooks.config_json) {
        res.body() = st.hooks.config_json();
    } else if (path == "/metrics" && st.hooks.metrics) {
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = st.hooks.metrics();
    } else {
        res.result(http::status::not_found);
        res.body() = R"({"error":"not_found","message":"admin endpoints: /healthz /readyz /config /metrics"})";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();
    return res;
}

asio::awaitable<void> admin_session(std::shared_ptr<admin_server::state> st, tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(8192);
        parser.body_limit(4096);
        stream.expires_after(30s);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
        if (ec) break;
        auto res = answer(*st, parser.get());
        stream.expires_after(10s);
        auto [wec, wn] = co_await http::async_write(stream, res, tuple_awaitable);
        if (wec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> admin_accept(std::shared_ptr<admin_server::state> st) {
    for (;;) {
        // Accept into a socket made beforehand on its own strand, as the main listener does:
        // Boost 1.81's move-accept with an executor argument and as_tuple frees the strand twice
        // (seen under ASan with more than one io thread).
        tcp::socket socket(asio::make_strand(st->ioc));
        auto [ec] = co_await st->acceptor->async_accept(socket, tuple_awaitable);
        if (ec) {
            if (!st->acceptor->is_open()) co_return;
            continue;
        }
        auto ex = socket.get_executor();
        asio::co_spawn(ex, admin_session(st, std::move(socket)), asio::detached);
    }
}

}  // namespace

admin_server::admin_server(asio::io_context& ioc, config::admin_config cfg, admin_hooks hooks)
    : state_(std::make_shared<state>(state{ioc, std::move(cfg), std::move(hooks), std::nullopt})) {}

admin_server::~admin_server() = default;

void admin_server::start() {
    const tcp::endpoint ep{asio::ip::make_address(state_->cfg.address), state_->cfg.port};
    state_->acceptor.emplace(state_->ioc);
    state_->acceptor->open(ep.protocol());
    state_->acceptor->set_option(asio::socket_base::reuse_address(true));
    state_->acceptor->bind(ep);
    state_->acceptor->listen();
    asio::co_spawn(state_->ioc, admin_accept(state_), asio::detached);
}

void admin_server::stop() {
    asio::post(state_->ioc, [st = state_] {
        boost::system::error_code ignored;
        if (st->acceptor) st->acceptor->close(ignored);
    });
}

tcp::endpoint admin_server::local_endpoint() const { return state_->acceptor->local_endpoint(); }

}  // namespace handoff::proxy
