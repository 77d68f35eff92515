// handoff_bench_http202: the HTTP limit of the benchmark (README.md here) — a minimal Boost.Beast server that reads
// each request (head and body) and answers `202 Accepted` with no work.
//
// It is shaped like Beast's awaitable example and like Handoff's own front end, so the difference
// between the two is the work Handoff does per request: one coroutine per connection, one
// deadline per read, keep-alive, requests answered in order. With --threads N it runs one
// io_context on N threads with a strand per connection (the same model as `listen.threads`).
//
//   handoff_bench_http202 --port 18080 [--address 127.0.0.1] [--threads 1]
//
// Runs until SIGTERM or SIGINT, then exits 0.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Owns the connection for its whole life; ends on any error, on idle timeout or when the client
// asks to close.
asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(1024 * 1024);
        stream.expires_after(60s);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
        if (ec) break;
        http::response<http::empty_body> res{http::status::accepted, parser.get().version()};
        res.keep_alive(parser.get().keep_alive());
        res.content_length(0);
        auto [wec, wn] = co_await http::async_write(stream, res, tuple_awaitable);
        if (wec || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, asio::io_context& ioc, bool strands) {
    for (;;) {
        // Accept into a socket made beforehand: Boost 1.81's move-accept with an executor argument
        // and as_tuple frees the strand twice (seen with ASan), so it is not used.
        tcp::socket socket(strands ? asio::any_io_executor(asio::make_strand(ioc))
                                   : asio::any_io_executor(ioc.get_executor()));
        auto [ec] = co_await acceptor.async_accept(socket, tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            continue;
        }
        socket.set_option(tcp::no_delay(true));
        auto ex = socket.get_executor();
        asio::co_spawn(ex, session(std::move(socket)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string address = "127.0.0.1";
    unsigned short port = 18080;
    int threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--port")
            port = static_cast<unsigned short>(std::stoi(argv[i + 1]));
        else if (a == "--address")
            address = argv[i + 1];
        else if (a == "--threads")
            threads = std::max(1, std::stoi(argv[i + 1]));
        else {
            std::cerr << "usage: handoff_bench_http202 [--address A] [--port P] [--threads N]\n";
            return 2;
        }
    }
    asio::io_context ioc(threads);
    tcp::acceptor acceptor(ioc);
    tcp::endpoint ep(asio::ip::make_address(address), port);
    acceptor.open(ep.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);

    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const beast::error_code&, int) { ioc.stop(); });
    asio::co_spawn(ioc, listen(acceptor, ioc, threads > 1), asio::detached);

    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : pool) t.join();
    return 0;
}
