// The HTTP upstream client against a real HTTP/1.1 server (Beast) on loopback, scripted per test:
// framing, keep-alive reuse, stale connections and the retry rule, deadlines, limits, the pool
// bound and concurrent use from several threads.
#include "handoff/adapters/http_upstream/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace handoff;
using namespace std::chrono_literals;
using proxy::upstream_error;
using proxy::upstream_result;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the fake upstream does with each request. Changeable between requests.
struct script {
    std::chrono::milliseconds delay{0};  // answer after this long (a timer in the server)
    bool never_answer = false;           // read the request and then stay silent
    int close_after = -1;                // close the socket after this many responses on a
                                         // connection, without announcing Connection: close
    int drop_after = -1;                 // after this many responses on a connection, read the
                                         // next request and close without answering it
    bool close_mid_response = false;     // send half of the response, then close
    bool interim_continue = false;       // send "100 Continue" before the final response
    std::size_t body_size = 0;           // > 0: answer with this many bytes instead of the echo
    std::string raw_response;            // not empty: send these bytes as the response
};

struct recorded_request {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;  // in arrival order
    std::string body;
};

// A small HTTP/1.1 server on 127.0.0.1, port 0, with its own io_context and thread. By default it
// echoes: 200, the request body as the body, and a few headers (one repeated).
class fake_upstream {
public:
    explicit fake_upstream(script s = {}) : script_(s), acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
        asio::co_spawn(ioc_, accept_loop(), asio::detached);
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~fake_upstream() {
        ioc_.stop();
        thread_.join();
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    void set_script(script s) {
        std::lock_guard lock(mutex_);
        script_ = s;
    }
    int connections() const { return connections_; }
    int peak_in_flight() const { return peak_in_flight_; }
    std::vector<recorded_request> received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }
    // Blocks until the server has closed `n` connections in total (or 10 s passed).
    bool wait_closed(int n) {
        std::unique_lock lock(mutex_);
        return closed_cv_.wait_for(lock, 10s, [&] { return closed_ >= n; });
    }

private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
            if (ec) co_return;
            ++connections_;
            asio::co_spawn(ioc_, session(std::move(sock)), asio::detached);
        }
    }

    script current() const {
        std::lock_guard lock(mutex_);
        return script_;
    }

    asio::awaitable<void> session(tcp::socket sock) {
        beast::tcp_stream stream(std::move(sock));
        beast::flat_buffer buf;
        int served = 0;
        for (;;) {
            http::request_parser<http::string_body> p;
            p.body_limit(64 * 1024 * 1024);
            auto [ec, n] = co_await http::async_read(stream, buf, p, use_tuple);
            if (ec) break;
            auto req = p.release();
            {
                std::lock_guard lock(mutex_);
                recorded_request r{std::string(req.method_string()), std::string(req.target()), {}, req.body()};
                for (const auto& f : req) r.headers.emplace_back(f.name_string(), f.value());
                received_.push_back(std::move(r));
            }
            const script sc = current();
            if (sc.drop_after >= 0 && served >= sc.drop_after) break;
            if (sc.never_answer) {
                asio::steady_timer forever(ioc_, 1h);
                co_await forever.async_wait(use_tuple);
                break;
            }
            const int now_in_flight = ++in_flight_;
            int peak = peak_in_flight_;
            while (now_in_flight > peak && !peak_in_flight_.compare_exchange_weak(peak, now_in_flight)) {}
            if (sc.delay.count() > 0) {
                asio::steady_timer t(ioc_, sc.delay);
                co_await t.async_wait(use_tuple);
            }
            --in_flight_;
            if (sc.interim_continue) {
                static const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
                co_await asio::async_write(stream, asio::buffer(interim), use_tuple);
            }
            if (!sc.raw_response.empty()) {
                auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(sc.raw_response), use_tuple);
                if (wec) break;
            } else if (req.method() == http::verb::head) {
                // Headers announce a body that a HEAD response never carries.
                http::response<http::empty_body> res{http::status::ok, 11};
                res.set("X-Upstream", "yes");
                res.content_length(5000);
                auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
                if (wec) break;
            } else {
                http::response<http::string_body> res{http::status::ok, 11};
                res.set("X-Upstream", "yes");
                res.insert(http::field::set_cookie, "a=1");
                res.insert(http::field::set_cookie, "b=2");
                res.set("X-Request-Target", req.target());
                res.body() = sc.body_size > 0 ? std::string(sc.body_size, 'x') : req.body();
                res.prepare_payload();
                if (sc.close_mid_response) {
                    std::ostringstream os;
                    os << res;
                    const std::string whole = os.str();
                    const std::string half = whole.substr(0, whole.size() - res.body().size() / 2);
                    co_await asio::async_write(stream, asio::buffer(half), use_tuple);
                    break;
                }
                auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
                if (wec) break;
            }
            ++served;
            if (sc.close_after >= 0 && served >= sc.close_after) break;
        }
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.socket().close(ignored);
        {
            std::lock_guard lock(mutex_);
            ++closed_;
        }
        closed_cv_.notify_all();
    }

    mutable std::mutex mutex_;
    script script_;
    std::vector<recorded_request> received_;
    int closed_ = 0;
    std::condition_variable closed_cv_;
    std::atomic<int> connections_{0};
    std::atomic<int> in_flight_{0};
    std::atomic<int> peak_in_flight_{0};

    asio::io_context ioc_;
    tcp::acceptor acceptor_;
    std::thread thread_;
};

config::upstream_config config_for(std::uint16_t port) {
    config::upstream_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.max_connections = 4;
    cfg.max_idle = 4;
    cfg.connect_timeout = 2s;
    cfg.timeout = 5s;
    cfg.max_response_bytes = 1024 * 1024;
    return cfg;
}

http::request<http::string_body> make_request(http::verb method, std::string target, std::string body = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "upstream.test");
    req.body() = std::move(body);
    if (method != http::verb::get && method != http::verb::head) req.prepare_payload();
    return req;
}

// Runs `ioc` on `threads` threads until every future is ready. Not until it runs out of work: a
// pooled connection keeps its deadline timer set between exchanges (deadline_guard), so the
// io_context has work until that deadline.
template <class T>
void run_until_ready(asio::io_context& ioc, std::vector<std::future<T>>& futures, int threads = 1) {
    ioc.restart();
    auto work = asio::make_work_guard(ioc);
    std::vector<std::thread> others;
    for (int i = 1; i < threads; ++i) others.emplace_back([&ioc] { ioc.run(); });
    const auto all_ready = [&] {
        return std::all_of(futures.begin(), futures.end(),
                           [](auto& f) { return f.wait_for(0s) == std::future_status::ready; });
    };
    while (!all_ready()) ioc.run_one_for(10ms);
    ioc.stop();
    for (auto& t : others) t.join();
}

// Runs one send to completion on a single-threaded io_context.
upstream_result send_now(asio::io_context& ioc, proxy::upstream_client& client, http::request<http::string_body> req,
                         std::chrono::milliseconds timeout = 5s,
                         proxy::response_fields form = proxy::response_fields::parsed) {
    std::vector<std::future<upstream_result>> f;
    f.push_back(asio::co_spawn(ioc, client.send(std::move(req), timeout, form), asio::use_future));
    run_until_ready(ioc, f);
    return f[0].get();
}

}  // namespace

TEST_CASE("method, path, query, headers and body arrive byte-exact and the response comes back whole") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));

    std::string body("a\0b\r\n\r\nc", 8);
    body += std::string(100'000, 'z');
    auto req = make_request(http::verb::post, "/orders/42/items?x=1&y=%20z&empty=", body);
    req.set("X-Correlation-ID", "abc.123:XYZ-9");
    req.set(http::field::content_type, "application/octet-stream; charset=binary");
    req.insert("X-Multi", "one");
    req.insert("X-Multi", "two, three");

    auto r = send_now(ioc, *client, req);
    REQUIRE(r.error == upstream_error::ok);

    auto got = server.received();
    REQUIRE(got.size() == 1);
    CHECK(got[0].method == "POST");
    CHECK(got[0].target == "/orders/42/items?x=1&y=%20z&empty=");
    CHECK(got[0].body == body);
    std::vector<std::pair<std::string, std::string>> sent;
    for (const auto& f : req) sent.emplace_back(f.name_string(), f.value());
    CHECK(got[0].headers == sent);

    CHECK(r.response.result() == http::status::ok);
    CHECK(r.response["X-Upstream"] == "yes");
    CHECK(r.response["X-Request-Target"] == "/orders/42/items?x=1&y=%20z&empty=");
    CHECK(std::distance(r.response.find(http::field::set_cookie), r.response.end()) >= 2);
    CHECK(r.response.count(http::field::set_cookie) == 2);
    CHECK(r.response.body() == body);
}

TEST_CASE("forwarded fields: the end-to-end ones serialized in order, hop-by-hop and the sidecar's own left out") {
    script sc;
    sc.interim_continue = true;  // skipped, its fields with it
    sc.raw_response =
        "HTTP/1.1 201 Made\r\n"
        "Server: legacy/1.0\r\n"
        "Connection: keep-alive, X-Private\r\n"
        "Set-Cookie: a=1\r\n"
        "X-Private: secret\r\n"
        "Keep-Alive: timeout=5\r\n"
        "X-Correlation-ID: from-the-service\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Upgrade: h2c\r\n"
        "set-cookie: b=2\r\n"
        "X-Unicode: caf\xc3\xa9\r\n"
        "\r\n"
        "4\r\nbody\r\n3\r\n!!!\r\n0\r\n"
        "X-Trailer: not-a-head-field\r\n"
        "\r\n";
    fake_upstream server(sc);
    asio::io_context ioc(1);
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    for (int i = 0; i < 2; ++i) {  // the second on the pooled connection
        auto r =
            send_now(ioc, *client, make_request(http::verb::post, "/f", "x"), 5s, proxy::response_fields::forwarded);
        REQUIRE(r.error == upstream_error::ok);
        CHECK(r.response.result_int() == 201);
        CHECK(r.response.reason() == "Made");
        CHECK(r.response.begin() == r.response.end());  // no field in the response itself
        CHECK(r.fields == "Server: legacy/1.0\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Unicode: caf\xc3\xa9\r\n");
        CHECK(r.response.body() == "body!!!");
        CHECK_FALSE(r.content_length);
    }
    CHECK(server.connections() == 1);
}

TEST_CASE("forwarded fields: a HEAD response's declared Content-Length comes back, its body never read") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    auto r = send_now(ioc, *client, make_request(http::verb::head, "/h"), 5s, proxy::response_fields::forwarded);
    REQUIRE(r.error == upstream_error::ok);
    REQUIRE(r.content_length);
    CHECK(*r.content_length == 5000);
    CHECK(r.fields == "X-Upstream: yes\r\n");
    CHECK(r.response.body().empty());
    // The connection is still in step: the next exchange on it reads its own response.
    auto next =
        send_now(ioc, *client, make_request(http::verb::post, "/n", "after"), 5s, proxy::response_fields::forwarded);
    REQUIRE(next.error == upstream_error::ok);
    CHECK(next.response.body() == "after");
    REQUIRE(next.content_length);
    CHECK(*next.content_length == 5);
    CHECK(server.connections() == 1);
}

TEST_CASE("forwarded fields: an oversized or malformed response is bad_response, as when parsed") {
    script sc;
    sc.raw_response = "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n";
    fake_upstream server(sc);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    auto big = send_now(ioc, *client, make_request(http::verb::get, "/big"), 5s, proxy::response_fields::forwarded);
    CHECK(big.error == upstream_error::bad_response);
    sc.raw_response = "HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n";
    server.set_script(sc);
    auto bad = send_now(ioc, *client, make_request(http::verb::get, "/bad"), 5s, proxy::response_fields::forwarded);
    CHECK(bad.error == upstream_error::bad_response);
}

TEST_CASE("ten sequential requests reuse one keep-alive connection") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    for (int i = 0; i < 10; ++i) {
        auto r = send_now(ioc, *client, make_request(http::verb::post, "/n", std::to_string(i)));
        REQUIRE(r.error == upstream_error::ok);
        CHECK(r.response.body() == std::to_string(i));
    }
    CHECK(server.received().size() == 10);
    CHECK(server.connections() == 1);
}

TEST_CASE("a port where nothing listens gives refused") {
    // Bound for the whole test but never listening: no other socket can take the port meanwhile.
    asio::io_context tmp;
    tcp::socket held(tmp);
    held.open(tcp::v4());
    held.bind({asio::ip::make_address("127.0.0.1"), 0});
    const auto port = held.local_endpoint().port();
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(port));
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/"));
    CHECK(r.error == upstream_error::refused);
}

TEST_CASE("a host name is resolved when connecting") {
    fake_upstream server;
    asio::io_context ioc;
    auto cfg = config_for(server.port());
    cfg.host = "localhost";
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/resolved"));
    REQUIRE(r.error == upstream_error::ok);
    CHECK(r.response["X-Request-Target"] == "/resolved");
}

TEST_CASE("a server that never answers gives timeout within the deadline") {
    script s;
    s.never_answer = true;
    fake_upstream server(s);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    const auto start = std::chrono::steady_clock::now();
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/slow"), 300ms);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(r.error == upstream_error::timeout);
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 3s);  // the 300 ms deadline, not the configured 5 s timeout
}

// One timer per connection, set lazily (deadline_guard): a keep-alive exchange arms no timer when
// its deadline is later than the one the timer is set for.
TEST_CASE("a keep-alive exchange with a shorter deadline than the one before times out on time") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    REQUIRE(send_now(ioc, *client, make_request(http::verb::get, "/fast"), 5s).error == upstream_error::ok);
    script s;
    s.never_answer = true;
    server.set_script(s);
    const auto start = std::chrono::steady_clock::now();
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/silent"), 300ms);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(r.error == upstream_error::timeout);
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 3s);               // its own 300 ms, not the 5 s the timer was set for
    CHECK(server.connections() == 1);  // the same connection, reused
}

TEST_CASE("a timer set for an earlier exchange's deadline does not cut a later, longer exchange short") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    REQUIRE(send_now(ioc, *client, make_request(http::verb::get, "/fast"), 300ms).error == upstream_error::ok);
    script s;
    s.delay = 800ms;  // answered after the first exchange's deadline has passed
    server.set_script(s);
    const auto start = std::chrono::steady_clock::now();
    auto r = send_now(ioc, *client, make_request(http::verb::post, "/slow", "late"), 5s);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(r.error == upstream_error::ok);
    CHECK(r.response.body() == "late");
    CHECK(elapsed >= 800ms);
    CHECK(server.connections() == 1);
}

TEST_CASE("a response larger than max_response_bytes gives bad_response and the next request still works") {
    script s;
    s.body_size = 4096;
    fake_upstream server(s);
    asio::io_context ioc;
    auto cfg = config_for(server.port());
    cfg.max_response_bytes = 1024;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/big"));
    CHECK(r.error == upstream_error::bad_response);

    s.body_size = 1024;
    server.set_script(s);
    auto r2 = send_now(ioc, *client, make_request(http::verb::get, "/fits"));
    REQUIRE(r2.error == upstream_error::ok);
    CHECK(r2.response.body().size() == 1024);
    CHECK(server.connections() == 2);  // the oversized exchange's connection was not reused
}

TEST_CASE("a response cut off in the middle of the body gives bad_response") {
    script s;
    s.close_mid_response = true;
    s.body_size = 2000;
    fake_upstream server(s);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    auto r = send_now(ioc, *client, make_request(http::verb::put, "/cut", "payload"));
    CHECK(r.error == upstream_error::bad_response);
    CHECK(server.received().size() == 1);  // PUT is idempotent, but a started response is never retried
}

TEST_CASE("an interim 100 Continue from the upstream is skipped") {
    script s;
    s.interim_continue = true;
    fake_upstream server(s);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    auto r = send_now(ioc, *client, make_request(http::verb::post, "/c", "hello"));
    REQUIRE(r.error == upstream_error::ok);
    CHECK(r.response.result() == http::status::ok);
    CHECK(r.response.body() == "hello");
    auto r2 = send_now(ioc, *client, make_request(http::verb::post, "/c", "again"));
    REQUIRE(r2.error == upstream_error::ok);
    CHECK(r2.response.body() == "again");
    CHECK(server.connections() == 1);
}

TEST_CASE("a response to HEAD has no body and the connection stays usable") {
    fake_upstream server;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    auto r = send_now(ioc, *client, make_request(http::verb::head, "/h"), 2s);
    REQUIRE(r.error == upstream_error::ok);
    CHECK(r.response[http::field::content_length] == "5000");
    CHECK(r.response.body().empty());
    auto r2 = send_now(ioc, *client, make_request(http::verb::get, "/after-head"));
    REQUIRE(r2.error == upstream_error::ok);
    CHECK(r2.response["X-Request-Target"] == "/after-head");
    CHECK(server.connections() == 1);
}

TEST_CASE("an idle connection the server closed is detected and discarded before use") {
    script s;
    s.close_after = 1;  // closes after each response, without Connection: close
    fake_upstream server(s);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));
    REQUIRE(send_now(ioc, *client, make_request(http::verb::get, "/1")).error == upstream_error::ok);
    REQUIRE(server.wait_closed(1));
    // A POST is never retried, so its success shows the closed connection was not used.
    auto r = send_now(ioc, *client, make_request(http::verb::post, "/2", "body"));
    REQUIRE(r.error == upstream_error::ok);
    CHECK(r.response.body() == "body");
    CHECK(server.connections() == 2);
    CHECK(server.received().size() == 2);
}

TEST_CASE("a GET on a stale keep-alive connection is retried once on a fresh one, a POST is not retried") {
    script s;
    s.drop_after = 1;  // each connection answers once, then reads the next request and closes
    fake_upstream server(s);
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(server.port()));

    REQUIRE(send_now(ioc, *client, make_request(http::verb::get, "/first")).error == upstream_error::ok);
    CHECK(server.connections() == 1);

    auto get = send_now(ioc, *client, make_request(http::verb::get, "/second"));
    REQUIRE(get.error == upstream_error::ok);
    CHECK(get.response["X-Request-Target"] == "/second");
    CHECK(server.connections() == 2);  // the retry's fresh connection

    auto post = send_now(ioc, *client, make_request(http::verb::post, "/third", "once"));
    CHECK(post.error == upstream_error::refused);
    CHECK(server.connections() == 2);  // no retry: no new connection

    auto got = server.received();
    REQUIRE(got.size() == 4);
    CHECK(got[1].target == "/second");  // dropped on the stale connection
    CHECK(got[2].target == "/second");  // the retry
    CHECK(got[3].target == "/third");   // dropped, and the POST was sent exactly once
}

namespace {

std::vector<upstream_result> send_three_concurrently(fake_upstream& server, config::upstream_config cfg,
                                                     std::chrono::milliseconds timeout = 5s) {
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    std::vector<std::future<upstream_result>> futures;
    for (int i = 0; i < 3; ++i)
        futures.push_back(asio::co_spawn(ioc,
                                         client->send(make_request(http::verb::post, "/p", std::to_string(i)), timeout,
                                                      proxy::response_fields::parsed),
                                         asio::use_future));
    run_until_ready(ioc, futures);
    std::vector<upstream_result> results;
    for (auto& f : futures) results.push_back(f.get());
    (void)server;
    return results;
}

}  // namespace

TEST_CASE("with max_connections 2 a third concurrent send waits for a free connection and then succeeds") {
    script s;
    s.delay = 200ms;
    fake_upstream server(s);
    auto cfg = config_for(server.port());
    cfg.max_connections = 2;
    cfg.connect_timeout = 5s;
    auto results = send_three_concurrently(server, cfg);
    for (int i = 0; i < 3; ++i) {
        REQUIRE(results[i].error == upstream_error::ok);
        CHECK(results[i].response.body() == std::to_string(i));
    }
    CHECK(server.peak_in_flight() == 2);
    CHECK(server.connections() == 2);  // the third reused a released connection
}

TEST_CASE("with max_connections 2 a third concurrent send gets pool_exhausted when connect_timeout is short") {
    script s;
    s.delay = 3000ms;
    fake_upstream server(s);
    auto cfg = config_for(server.port());
    cfg.max_connections = 2;
    cfg.connect_timeout = 1000ms;  // bounds the two real connects too: ample on a loaded machine
    auto results = send_three_concurrently(server, cfg);
    auto count = [&](upstream_error e) {
        return std::count_if(results.begin(), results.end(), [&](const auto& r) { return r.error == e; });
    };
    CHECK(count(upstream_error::ok) == 2);
    CHECK(count(upstream_error::pool_exhausted) == 1);
    CHECK(server.connections() == 2);
}

TEST_CASE("a send whose deadline passes while it waits for a pool slot gives timeout") {
    script s;
    s.delay = 1000ms;
    fake_upstream server(s);
    auto cfg = config_for(server.port());
    cfg.max_connections = 1;
    cfg.connect_timeout = 5s;
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    auto slow =
        asio::co_spawn(ioc, client->send(make_request(http::verb::get, "/slow"), 5s, proxy::response_fields::parsed),
                       asio::use_future);
    auto waiting = asio::co_spawn(
        ioc, client->send(make_request(http::verb::get, "/waits"), 100ms, proxy::response_fields::parsed),
        asio::use_future);
    std::vector<std::future<upstream_result>> both;
    both.push_back(std::move(slow));
    both.push_back(std::move(waiting));
    run_until_ready(ioc, both);
    CHECK(both[0].get().error == upstream_error::ok);
    CHECK(both[1].get().error == upstream_error::timeout);
}

TEST_CASE("100 concurrent sends from a two-thread io_context are all answered correctly") {
    script s;
    s.delay = 10ms;  // lets requests pile up so the pool bound is reached
    fake_upstream server(s);
    auto cfg = config_for(server.port());
    cfg.max_connections = 8;
    cfg.max_idle = 4;
    asio::io_context ioc(2);
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);

    std::atomic<int> matched{0};
    std::vector<std::future<upstream_error>> futures;
    for (int i = 0; i < 100; ++i) {
        auto one = [](std::shared_ptr<proxy::upstream_client> c, int i,
                      std::atomic<int>& matched) -> asio::awaitable<upstream_error> {
            const std::string body = "request-" + std::to_string(i);
            auto r = co_await c->send(
                make_request(i % 2 ? http::verb::post : http::verb::put, "/c/" + std::to_string(i), body), 5s,
                proxy::response_fields::parsed);
            if (r.error == upstream_error::ok && r.response.body() == body &&
                r.response["X-Request-Target"] == "/c/" + std::to_string(i))
                ++matched;
            co_return r.error;
        };
        futures.push_back(asio::co_spawn(asio::make_strand(ioc), one(client, i, matched), asio::use_future));
    }
    run_until_ready(ioc, futures, 2);
    int ok = 0;
    for (auto& f : futures) ok += f.get() == upstream_error::ok;
    CHECK(ok == 100);
    CHECK(matched == 100);
    CHECK(server.peak_in_flight() <= 8);
    CHECK(server.peak_in_flight() > 1);
    CHECK(server.received().size() == 100);
}

TEST_CASE("a connect that never completes gives timeout at connect_timeout") {
    // A listener that never accepts: once its accept queue is full, the kernel drops further SYNs
    // and a connect waits.
    asio::io_context tmp;
    tcp::acceptor full(tmp);
    full.open(tcp::v4());
    full.bind({asio::ip::make_address("127.0.0.1"), 0});
    full.listen(0);
    const auto port = full.local_endpoint().port();
    std::vector<std::unique_ptr<tcp::socket>> fillers;
    for (int i = 0; i < 4; ++i) {
        // Started (the connect system call is made) and never completed: `tmp` never runs.
        fillers.push_back(std::make_unique<tcp::socket>(tmp));
        fillers.back()->async_connect({asio::ip::make_address("127.0.0.1"), port}, [](boost::system::error_code) {});
    }
    asio::io_context ioc;
    auto cfg = config_for(port);
    cfg.connect_timeout = 300ms;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    const auto start = std::chrono::steady_clock::now();
    auto r = send_now(ioc, *client, make_request(http::verb::get, "/never-connected"), 5s);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(r.error == upstream_error::timeout);
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 3s);  // connect_timeout, not the 5 s request deadline
}

TEST_CASE("a write the server never reads gives timeout within the deadline") {
    // Accepts and never reads: a 32 MiB body fills both socket buffers and the write waits.
    asio::io_context tmp;
    tcp::acceptor silent(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket accepted(tmp);
    std::thread acceptor_thread([&] {
        boost::system::error_code ignored;
        silent.accept(accepted, ignored);
    });
    asio::io_context ioc;
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), config_for(silent.local_endpoint().port()));
    const auto start = std::chrono::steady_clock::now();
    auto r = send_now(ioc, *client, make_request(http::verb::post, "/big", std::string(32 * 1024 * 1024, 'b')), 400ms,
                      proxy::response_fields::forwarded);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    acceptor_thread.join();
    CHECK(r.error == upstream_error::timeout);
    CHECK(elapsed >= 400ms);
    CHECK(elapsed < 3s);
}

TEST_CASE("deadlines on a two-thread io_context: every send to a silent server times out, none hangs") {
    script s;
    s.never_answer = true;
    fake_upstream server(s);
    auto cfg = config_for(server.port());
    cfg.max_connections = 8;
    asio::io_context ioc(2);
    auto client = adapters::http_upstream::make_client(ioc.get_executor(), cfg);
    std::vector<std::future<upstream_result>> futures;
    for (int i = 0; i < 16; ++i) {
        futures.push_back(asio::co_spawn(asio::make_strand(ioc),
                                         client->send(make_request(http::verb::get, "/t/" + std::to_string(i)), 200ms,
                                                      proxy::response_fields::forwarded),
                                         asio::use_future));
    }
    const auto start = std::chrono::steady_clock::now();
    run_until_ready(ioc, futures, 2);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    int timed_out = 0;
    for (auto& f : futures) timed_out += f.get().error == upstream_error::timeout;
    CHECK(timed_out == 16);
    CHECK(elapsed < 5s);  // 200 ms each, at most 8 at a time
}
