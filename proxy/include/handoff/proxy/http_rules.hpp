// HTTP/1.1 message rules the proxy enforces itself, on top of Beast's parser: pure functions.
//
// Boost 1.81's Beast accepts some ambiguous framing (Content-Length together with a
// Transfer-Encoding, a Transfer-Encoding that does not end in chunked, Transfer-Encoding on
// HTTP/1.0). A proxy that lets those through can be used to smuggle requests past the legacy
// service, so they are rejected here with 400 and the connection is closed (TEST-CATALOGUE B-1..B-5).
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace handoff::proxy {

namespace http = boost::beast::http;

// Returns a message describing why the request head is not acceptable, or nullopt.
std::optional<std::string> framing_problem(const http::request_header<>& head);

// Hop-by-hop headers (RFC 9110 §7.6.1) and every header named by Connection are removed from
// `fields`. Host and Content-Length are never removed through Connection nomination.
void remove_hop_by_hop(http::fields& fields);

// True for a header name that is hop-by-hop by definition.
bool is_hop_by_hop(std::string_view name) noexcept;

// Splits "path?query" of an origin-form target. Returns false when the target is not origin-form.
bool split_target(std::string_view target, std::string_view& path, std::string_view& query) noexcept;

bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace handoff::proxy
