// The outbound port to the local (legacy) HTTP service. Implemented by adapters/http_upstream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>

namespace handoff::proxy {

namespace http = boost::beast::http;

enum class upstream_error {
    ok = 0,
    refused,         // connection refused / reset before a response started -> 502
    timeout,         // connect or response deadline passed -> 504
    bad_response,    // unparsable or oversized response -> 502
    pool_exhausted,  // no connection became free within the connect timeout -> 503
};

const char* to_string(upstream_error e) noexcept;

struct upstream_result {
    upstream_error error = upstream_error::ok;
    http::response<http::string_body> response;  // valid only when error == ok
};

class upstream_client {
public:
    virtual ~upstream_client() = default;

    // Sends `request` (already cleaned of hop-by-hop headers; Host and Content-Length as they
    // should be sent) and returns the complete response. Completes on the calling coroutine's
    // executor. Never throws for network outcomes: they are `upstream_error` values. The whole
    // exchange (pool wait, connect, write, read) is bounded by `timeout`.
    virtual boost::asio::awaitable<upstream_result> send(http::request<http::string_body> request,
                                                         std::chrono::milliseconds timeout) = 0;
};

}  // namespace handoff::proxy
