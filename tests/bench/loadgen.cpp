// handoff_loadgen: an open-loop HTTP/1.1 load generator for the benchmark (README.md here).
//
// Request i is *scheduled* at start + i / rate, whatever happened to earlier requests, and its
// latency is measured from that scheduled time, not from when it was actually written. A server
// that stalls therefore shows the stall in the latency of every request that had to wait for it
// (no coordinated omission, as in wrk2). Requests go over `--connections` keep-alive connections;
// a free connection takes the next scheduled request, so when all are busy the queueing delay is
// part of the measured latency. Use enough connections for rate x latency (Little's law).
//
//   handoff_loadgen --port 8080 --path /event --rate 5000 --duration 5 --warmup 1 --connections 64
//
// Prints one JSON object (or key=value lines with --kv): target and achieved rate, sent and
// completed counts, errors by kind, responses by status, latency percentiles in microseconds.
// Requests scheduled during the warm-up are sent but not recorded. Exit 0 when the run happened
// (whatever the server answered), 2 on bad arguments.
#include "histogram.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <algorithm>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <strings.h>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct options {
    std::string host = "127.0.0.1";
    std::string port = "8080";
    std::string method = "POST";
    std::string path = "/";
    std::string body;
    std::size_t body_size = 100;  // used when --body is not given
    std::vector<std::string> headers;
    double rate = 1000;
    double duration = 5;
    double warmup = 1;
    int connections = 64;
    int threads = 1;
    double timeout = 10;
    bool kv = false;
};

[[noreturn]] void usage(const std::string& why) {
    std::cerr << "handoff_loadgen: " << why << "\n"
              << "usage: handoff_loadgen [--host H] [--port P] [--method M] [--path P] [--body S | --body-size N]\n"
              << "       [--header 'Name: value']... [--rate R] [--duration S] [--warmup S] [--connections C]\n"
              << "       [--threads T] [--timeout S] [--kv]\n";
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage("missing value for " + a);
            return argv[++i];
        };
        if (a == "--host")
            o.host = value();
        else if (a == "--port")
            o.port = value();
        else if (a == "--method")
            o.method = value();
        else if (a == "--path")
            o.path = value();
        else if (a == "--body")
            o.body = value();
        else if (a == "--body-size")
            o.body_size = std::stoul(value());
        else if (a == "--header")
            o.headers.push_back(value());
        else if (a == "--rate")
            o.rate = std::stod(value());
        else if (a == "--duration")
            o.duration = std::stod(value());
        else if (a == "--warmup")
            o.warmup = std::stod(value());
        else if (a == "--connections")
            o.connections = std::stoi(value());
        else if (a == "--threads")
            o.threads = std::stoi(value());
        else if (a == "--timeout")
            o.timeout = std::stod(value());
        else if (a == "--kv")
            o.kv = true;
        else
            usage("unknown argument " + a);
    }
    if (o.rate <= 0 || o.duration <= 0 || o.warmup < 0 || o.connections < 1 || o.threads < 1 || o.timeout <= 0 ||
        o.connections < o.threads)
        usage("rate, duration, connections, threads and timeout must be positive (connections >= threads)");
    if (o.body.empty() && o.body_size > 0) {
        // A small JSON document padded to the requested size.
        std::string b = "{\"bench\":\"";
        while (b.size() + 2 < o.body_size) b.push_back('x');
        b += "\"}";
        o.body = b;
    }
    return o;
}

std::string build_request(const options& o) {
    std::ostringstream r;
    r << o.method << ' ' << o.path << " HTTP/1.1\r\nHost: " << o.host << ':' << o.port << "\r\n";
    bool has_type = false;
    for (const auto& h : o.headers) {
        r << h << "\r\n";
        if (h.size() >= 13 && strncasecmp(h.c_str(), "content-type:", 13) == 0) has_type = true;
    }
    if (!o.body.empty() || o.method == "POST" || o.method == "PUT") {
        if (!has_type) r << "Content-Type: application/json\r\n";
        r << "Content-Length: " << o.body.size() << "\r\n";
    }
    r << "\r\n" << o.body;
    return r.str();
}

// One thread's share of the schedule: request i of this worker is due at
// first_due + i * interval. Owned by the worker's io_context thread only.
struct worker {
    worker(const options& o, const std::string& req, tcp::resolver::results_type eps, clock_type::time_point first,
           clock_type::time_point measure, clock_type::time_point stop, std::chrono::nanoseconds every)
        : opt(o),
          request(req),
          endpoints(std::move(eps)),
          first_due(first),
          measure_from(measure),
          end(stop),
          interval(every) {}

    const options& opt;
    const std::string& request;
    tcp::resolver::results_type endpoints;
    clock_type::time_point first_due;
    clock_type::time_point measure_from;  // requests due before this are warm-up
    clock_type::time_point end;           // no request is due at or after this
    std::chrono::nanoseconds interval;
    asio::io_context ioc{1};

    std::uint64_t next = 0;
    std::uint64_t sent = 0;       // measured requests written (or attempted)
    std::uint64_t completed = 0;  // measured requests with a response
    std::map<std::string, std::uint64_t> errors;
    std::map<int, std::uint64_t> status;
    handoff::bench::histogram latency;  // nanoseconds from due time to full response
    clock_type::time_point last_completion{};

    bool take(clock_type::time_point& due, bool& measured) {
        due = first_due + interval * static_cast<std::int64_t>(next);
        if (due >= end) return false;
        ++next;
        measured = due >= measure_from;
        if (measured) ++sent;
        return true;
    }
};

asio::awaitable<void> connection(worker& w) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    beast::tcp_stream stream(ex);
    beast::flat_buffer buffer;
    bool connected = false;
    const auto timeout =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(w.opt.timeout));

    for (;;) {
        clock_type::time_point due;
        bool measured = false;
        if (!w.take(due, measured)) break;
        if (due > clock_type::now()) {
            timer.expires_at(due);
            co_await timer.async_wait(tuple_awaitable);
        }
        auto fail = [&](const char* kind) {
            if (measured && kind) ++w.errors[kind];
            beast::error_code ignored;
            stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream.close();
            connected = false;
            buffer.clear();
        };
        if (!connected) {
            stream.expires_after(timeout);
            auto [ec, ep] = co_await stream.async_connect(w.endpoints, tuple_awaitable);
            if (ec) {
                fail("connect");
                // Do not spin on a refusing server: the requests due meanwhile queue up.
                timer.expires_after(20ms);
                co_await timer.async_wait(tuple_awaitable);
                continue;
            }
            stream.socket().set_option(tcp::no_delay(true));
            connected = true;
        }
        stream.expires_after(timeout);
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(w.request), tuple_awaitable);
        if (wec) {
            fail(wec == beast::error::timeout ? "timeout" : "io");
            continue;
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        auto [rec, rn] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
        if (rec) {
            fail(rec == beast::error::timeout ? "timeout" : "io");
            continue;
        }
        auto now = clock_type::now();
        if (measured) {
            ++w.completed;
            ++w.status[parser.get().result_int()];
            w.latency.record(static_cast<std::uint64_t>((now - due).count()));
            w.last_completion = std::max(w.last_completion, now);
        }
        if (!parser.get().keep_alive()) fail(nullptr);  // the server closes: reconnect, not an error
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

void print(const options& o, const std::vector<std::unique_ptr<worker>>& workers, clock_type::time_point measure_from) {
    handoff::bench::histogram all;
    std::uint64_t sent = 0, completed = 0;
    std::map<std::string, std::uint64_t> errors;
    std::map<int, std::uint64_t> status;
    clock_type::time_point last = measure_from;
    for (const auto& w : workers) {
        all.merge(w->latency);
        sent += w->sent;
        completed += w->completed;
        for (const auto& [k, v] : w->errors) errors[k] += v;
        for (const auto& [k, v] : w->status) status[k] += v;
        last = std::max(last, w->last_completion);
    }
    // Achieved: responses to measured requests over the time from the window's start to the last
    // of them (not the scheduled window: a server that falls behind takes longer to answer).
    double elapsed = std::chrono::duration<double>(last - measure_from).count();
    double achieved = elapsed > 0 ? static_cast<double>(completed) / std::max(elapsed, o.duration) : 0.0;
    std::uint64_t error_total = 0;
    for (const auto& [k, v] : errors) error_total += v;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    char buf[512];
    if (o.kv) {
        std::printf("target_rate=%.1f\nachieved_rate=%.1f\nsent=%llu\ncompleted=%llu\nerrors=%llu\n", o.rate, achieved,
                    static_cast<unsigned long long>(sent), static_cast<unsigned long long>(completed),
                    static_cast<unsigned long long>(error_total));
        for (const auto& [k, v] : errors) std::printf("error_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(v));
        for (const auto& [k, v] : status) std::printf("status_%d=%llu\n", k, static_cast<unsigned long long>(v));
        std::printf("p50_us=%.1f\np90_us=%.1f\np99_us=%.1f\np999_us=%.1f\nmax_us=%.1f\nmean_us=%.1f\n",
                    us(all.quantile(0.5)), us(all.quantile(0.9)), us(all.quantile(0.99)), us(all.quantile(0.999)),
                    us(all.max()), all.mean() / 1000.0);
        return;
    }
    std::string out = "{";
    std::snprintf(buf, sizeof buf,
                  "\"target_rate\":%.1f,\"achieved_rate\":%.1f,\"duration_s\":%.2f,\"connections\":%d,"
                  "\"sent\":%llu,\"completed\":%llu,\"errors\":%llu,",
                  o.rate, achieved, o.duration, o.connections, static_cast<unsigned long long>(sent),
                  static_cast<unsigned long long>(completed), static_cast<unsigned long long>(error_total));
    out += buf;
    out += "\"error_kinds\":{";
    bool first = true;
    for (const auto& [k, v] : errors) {
        out += (first ? "\"" : ",\"") + k + "\":" + std::to_string(v);
        first = false;
    }
    out += "},\"status\":{";
    first = true;
    for (const auto& [k, v] : status) {
        out += (first ? "\"" : ",\"") + std::to_string(k) + "\":" + std::to_string(v);
        first = false;
    }
    std::snprintf(buf, sizeof buf,
                  "},\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}}",
                  us(all.quantile(0.5)), us(all.quantile(0.9)), us(all.quantile(0.99)), us(all.quantile(0.999)),
                  us(all.max()), all.mean() / 1000.0);
    out += buf;
    std::puts(out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    const options opt = parse(argc, argv);
    const std::string request = build_request(opt);

    asio::io_context resolver_ioc;
    tcp::resolver resolver(resolver_ioc);
    beast::error_code ec;
    auto endpoints = resolver.resolve(opt.host, opt.port, ec);
    if (ec) usage("cannot resolve " + opt.host + ":" + opt.port + ": " + ec.message());

    // Every thread runs the same schedule shape at rate / threads, offset by one global interval
    // from its neighbour, so the merged stream is evenly spaced at `rate`.
    const auto global_interval = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / opt.rate));
    const auto start = clock_type::now() + 50ms;  // time for every thread to get going
    const auto measure_from =
        start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.warmup));
    const auto end =
        measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.duration));

    std::vector<std::unique_ptr<worker>> workers;
    for (int t = 0; t < opt.threads; ++t) {
        workers.push_back(std::make_unique<worker>(
            opt, request, endpoints, start + global_interval * t, measure_from, end,
            std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * opt.threads / opt.rate))));
        int conns = opt.connections / opt.threads + (t < opt.connections % opt.threads ? 1 : 0);
        for (int c = 0; c < conns; ++c)
            asio::co_spawn(workers.back()->ioc, connection(*workers.back()), asio::detached);
    }
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->ioc.run(); });
    for (auto& t : threads) t.join();
    print(opt, workers, measure_from);
    return 0;
}
