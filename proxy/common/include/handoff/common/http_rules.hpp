// HTTP/1.1 message rules the proxy enforces itself, on top of Beast's parser: pure functions.
//
// Boost 1.81's Beast accepts some ambiguous framing (Content-Length together with a
// Transfer-Encoding, a Transfer-Encoding that does not end in chunked, Transfer-Encoding on
// HTTP/1.0, framing fields in trailers). A proxy that lets those through can be used to smuggle
// requests past the legacy service, so they are rejected here with 400 and the connection is
// closed (tests/CATALOGUE.md, B-1..B-18). Every function here is pure and safe on any input: they are
// unit tested and fuzzed (tests/fuzz) without sockets.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handoff::proxy {

namespace http = boost::beast::http;

// At most this many header fields in a request head (Envoy's default); more -> 400.
inline constexpr std::size_t max_header_fields = 100;
// A chunk extension longer than this is refused (Beast 1.81 has no bound of its own).
inline constexpr std::size_t max_chunk_extension_bytes = 256;
// A method longer than this is refused.
inline constexpr std::size_t max_method_bytes = 32;

// Returns a message describing why the request head is not acceptable, or nullopt. Checks, in
// order: framing (Content-Length / Transfer-Encoding / HTTP/1.0), Host, the method, the request
// target and every header field (see the functions below). Every problem maps to 400 + close.
std::optional<std::string> framing_problem(const http::request_header<>& head);

// The method is a token of at most max_method_bytes, with no lowercase letters (methods are
// case-sensitive; `get` is not GET, and a legacy server that folds case would disagree with the
// route table).
std::optional<std::string> method_problem(std::string_view method);

// The target is origin-form ("/path?query") of visible ASCII only, the path has no empty segment
// ("//"), no dot segment ("." / ".." raw or percent-encoded), no encoded '/', '\' or NUL, no raw
// '\', and every '%' starts a valid escape. The raw target is forwarded; routes are matched on
// its normalised path (route_table), so anything a server might normalise differently (dot
// segments, "//", encoded separators) is refused here instead, for every path.
std::optional<std::string> target_problem(std::string_view target);

// Header fields: count, name syntax (tchar), no '_' in names (B-13: never let X_User_Id alias
// X-User-Id behind a CGI-style server), no control characters in values (safe_header_value),
// Content-Length exactly 1*DIGIT (no lists), Host a valid authority.
std::optional<std::string> header_problem(const http::request_header<>& head);

// A header value that is safe to accept or emit: no CR, LF, NUL or other control character (DEL
// included) except HTAB; obs-text (bytes >= 0x80) is allowed. The one rule for request header
// values (header_problem), record headers a delivery request carries (subscriptions) and the
// headers of a reply record (replies).
bool safe_header_value(std::string_view v) noexcept;

// Fields that must never appear in a trailer (RFC 9110 §6.5.1: framing, routing, connection
// control, authentication). A request carrying one is refused; other trailers are dropped.
bool is_forbidden_trailer(std::string_view name) noexcept;

// True when `with_trailers` (the head after a chunked body was read) has a field that `head` (the
// same head before) does not, and that field is forbidden in a trailer. Field order is ignored:
// Beast inserts a trailer next to a same-named header field.
bool has_forbidden_trailer(const http::fields& head, const http::fields& with_trailers);

// A chunk extension (as Beast hands it to on_chunk_header, starting at ';') that is too long.
bool chunk_extension_too_long(std::string_view extensions) noexcept;

// How many bytes of leading empty lines (CRLF) precede a request line (RFC 9112 §2.2: a server
// SHOULD ignore at least one). Bare LF is not an empty line here.
std::size_t leading_empty_lines(std::string_view buffered) noexcept;

// True for a header name that is hop-by-hop by definition.
bool is_hop_by_hop(std::string_view name) noexcept;

// The end-to-end fields of a message as a proxy passes them on, serialized as they arrive
// ("Name: value\r\n" each, in order), without a field container: hop-by-hop fields (RFC 9110
// §7.6.1), every field Connection names (Host and Content-Length never), and the fields the
// proxy sets itself (Content-Length, X-Correlation-ID) are left out.
class end_to_end_fields {
public:
    enum class message { response, request };
    // For a request, X-Forwarded-For and X-Forwarded-Proto are the proxy's own as well.
    explicit end_to_end_fields(message m = message::response) : request_(m == message::request) {}
    // Takes one field of the message, in order.
    void add(http::field f, std::string_view name, std::string_view value);
    // The serialized fields; call once, after the last `add`.
    std::string take();

private:
    bool own(http::field f, std::string_view name) const noexcept;

    bool request_;
    std::string out_;
    std::vector<std::string> nominated_;  // by Connection, lower case
};

// Splits "path?query" of an origin-form target. Returns false when the target is not origin-form.
bool split_target(std::string_view target, std::string_view& path, std::string_view& query) noexcept;

bool iequals(std::string_view a, std::string_view b) noexcept;

// Whether a comma-separated field value (Connection, Upgrade) lists `token`, ignoring case and
// the spaces around each element.
bool has_token(std::string_view list, std::string_view token) noexcept;

// An RFC 9110 token (1+ tchar): methods, header names.
bool is_token(std::string_view s) noexcept;

// The head of the request the upstream gets on `forward`, serialized: `req`'s method and target
// in an HTTP/1.1 request line, its end-to-end fields in order (end_to_end_fields::message::request),
// then X-Forwarded-For: `forwarded_for`, X-Forwarded-Proto: http, X-Correlation-ID:
// `correlation_id` and, when `content_length` is set, Content-Length: the caller's own
// X-Forwarded-For, X-Forwarded-Proto and X-Correlation-ID are replaced, never repeated.
std::string upstream_request_head(const http::request<http::string_body>& req, std::string_view forwarded_for,
                                  std::string_view correlation_id, std::optional<std::size_t> content_length);

// Appends the head Beast's serializer writes for `res` (status line with its reason, the fields in
// order, an empty line) to `out`; the body follows it as it is. Without Beast's buffer-sequence
// machinery: on the hot path a head in a string reused per connection plus the body is one
// gathered send. Not for chunked responses (the proxy never sends one: hop-by-hop fields are
// removed from upstream responses).
void serialize_response_head(const http::response<http::string_body>& res, std::string& out);
// The same with `more_fields` (serialized "Name: value\r\n" lines) after res's own fields.
void serialize_response_head(const http::response<http::string_body>& res, std::string_view more_fields,
                             std::string& out);

// The same for a request (request line, fields, empty line): what the upstream client sends.
void serialize_request_head(const http::request<http::string_body>& req, std::string& out);

// Appends `s` to `out` as a JSON string (quotes and escapes included; bytes >= 0x80 are copied,
// so `s` must be UTF-8). For the small bodies of the hot path, built without a JSON document.
void append_json_string(std::string& out, std::string_view s);
// The same when every byte of `s` is ASCII (returns true); otherwise appends nothing and returns
// false, in one scan: for callers that must validate non-ASCII text before writing it.
bool append_json_ascii(std::string& out, std::string_view s);

}  // namespace handoff::proxy
