// The outbound port to the local (legacy) HTTP service. Implemented by adapters/http_upstream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

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

// How `send` returns the response's header fields.
enum class response_fields {
    parsed,     // in `response`, every field as the service sent it
    forwarded,  // serialized in `upstream_result::fields`, as a proxy passes them on (below)
};

struct upstream_result {
    upstream_error error = upstream_error::ok;
    // Valid only when error == ok. With response_fields::forwarded it holds the status, reason,
    // version and body, and no field.
    http::response<http::string_body> response;
    // response_fields::forwarded: the response's end-to-end fields ("Name: value\r\n" each, in
    // the service's order; hop-by-hop and Connection-named fields, Content-Length and
    // X-Correlation-ID left out: see end_to_end_fields), and the Content-Length the service
    // declared (for a HEAD or 304 response, which carry no body).
    std::string fields;
    std::optional<std::uint64_t> content_length;
};

// A request whose head the caller has serialized (request line, fields, the empty line); the
// body follows it as it is, framed by the head's Content-Length.
struct serialized_request {
    http::verb method = http::verb::get;  // for the response to HEAD and the stale-connection retry
    std::string head;
    std::string body;
};

class upstream_client {
public:
    virtual ~upstream_client() = default;

    // Sends `request` (already cleaned of hop-by-hop headers; Host and Content-Length as they
    // should be sent) and returns the complete response. Completes on the calling coroutine's
    // executor. Never throws for network outcomes: they are `upstream_error` values. The whole
    // exchange (pool wait, connect, write, read) is bounded by `timeout`.
    virtual boost::asio::awaitable<upstream_result> send(http::request<http::string_body> request,
                                                         std::chrono::milliseconds timeout, response_fields form) = 0;
    // The same for a request serialized by the caller (the `forward` path builds its head in one
    // pass over the caller's fields). Never chunked.
    virtual boost::asio::awaitable<upstream_result> send(serialized_request request, std::chrono::milliseconds timeout,
                                                         response_fields form) = 0;
};

}  // namespace handoff::proxy
