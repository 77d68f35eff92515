// The HTTP front (proxy::server) on 127.0.0.1, an ephemeral port, with a fake producer and a fake
// upstream, its io_context on one thread of its own; and blocking client helpers for the test
// thread. Destroying the harness stops the io_context and joins the thread.
#pragma once

#include "fakes/fake_producer.hpp"
#include "fakes/fake_upstream.hpp"
#include "handoff/config/config.hpp"
#include "handoff/proxy/dispatch/route_table.hpp"
#include "handoff/proxy/server/server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace handoff::test {

inline config::route make_route(std::string name, std::vector<std::string> methods, std::string path, config::mode m,
                                std::string topic = {}) {
    config::route r;
    r.name = std::move(name);
    r.methods = std::move(methods);
    r.path = std::move(path);
    r.mode = m;
    r.topic = std::move(topic);
    return r;
}

struct loopback_server {
    boost::asio::io_context ioc;
    std::shared_ptr<fake_producer> kafka = std::make_shared<fake_producer>(ioc);
    std::shared_ptr<fake_upstream> upstream = std::make_shared<fake_upstream>();
    std::unique_ptr<proxy::server> srv;
    std::thread thread;
    unsigned short port = 0;
    boost::asio::io_context client_ioc;  // the test thread's sockets (never run)

    // `cfg->listen` is set to 127.0.0.1:0 here.
    explicit loopback_server(std::shared_ptr<config::config> cfg) {
        cfg->listen.address = "127.0.0.1";
        cfg->listen.port = 0;
        srv = std::make_unique<proxy::server>(ioc, proxy::route_table::create(cfg), kafka, upstream);
        srv->start();
        port = srv->local_endpoint().port();
        thread = std::thread([this] { ioc.run(); });
    }
    ~loopback_server() {
        ioc.stop();
        thread.join();
    }
    loopback_server(const loopback_server&) = delete;
    loopback_server& operator=(const loopback_server&) = delete;

    boost::asio::ip::tcp::socket connect() {
        boost::asio::ip::tcp::socket s(client_ioc);
        s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        return s;
    }
};

inline boost::beast::http::response<boost::beast::http::string_body> read_response(boost::asio::ip::tcp::socket& s,
                                                                                   boost::beast::flat_buffer& buf) {
    boost::beast::http::response_parser<boost::beast::http::string_body> p;
    p.skip(false);
    boost::beast::http::read(s, buf, p);
    return p.release();
}

// Sends `raw` on a new connection and reads one response.
inline boost::beast::http::response<boost::beast::http::string_body> roundtrip(loopback_server& h,
                                                                               const std::string& raw) {
    auto s = h.connect();
    boost::asio::write(s, boost::asio::buffer(raw));
    boost::beast::flat_buffer buf;
    return read_response(s, buf);
}

// Sends `raw` on a new connection and returns every byte the server sends until it closes
// (send `Connection: close`), for comparing responses byte for byte.
inline std::string raw_roundtrip(loopback_server& h, const std::string& raw) {
    auto s = h.connect();
    boost::asio::write(s, boost::asio::buffer(raw));
    std::string out;
    boost::system::error_code ec;
    boost::asio::read(s, boost::asio::dynamic_buffer(out), ec);
    return out;
}

// True when the server closed the connection (the next read sees end of stream or a reset).
inline bool closed_by_server(boost::asio::ip::tcp::socket& s) {
    char c;
    boost::system::error_code ec;
    s.read_some(boost::asio::buffer(&c, 1), ec);
    return ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset;
}

}  // namespace handoff::test
