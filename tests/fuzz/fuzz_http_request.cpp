// libFuzzer target: request bytes -> Beast's request_parser configured as run_session configures
// it (header limit, chunk-extension bound, body limit) -> Handoff's own checks (framing_problem,
// split_target, trailers) -> re-serialised the way `forward` sends it -> parsed again, which must
// give exactly one request with the same method, target and body (tests/CATALOGUE.md, L-9, B-23).
#include "handoff/common/http_rules.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace http = boost::beast::http;
using namespace handoff::proxy;

namespace {

constexpr std::size_t header_limit = 16 * 1024;  // listen.max_header_bytes default
constexpr std::size_t body_limit = 1024 * 1024;  // listen.max_body_bytes default

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant violated: %s\n", what);
        std::abort();
    }
}

// Feeds `data` to a parser in pieces of at most `step` bytes, as reads from a socket would.
// Returns the number of bytes consumed, or nullopt on a parse error.
std::optional<std::size_t> parse(http::request_parser<http::string_body>& p, std::string_view data, std::size_t step,
                                 bool header_only) {
    boost::system::error_code ec;
    std::size_t used = 0, avail = std::min(data.size(), step);
    const auto done = [&] { return header_only ? p.is_header_done() : p.is_done(); };
    while (!done()) {
        const auto n = p.put(boost::asio::buffer(data.data() + used, avail - used), ec);
        used += n;
        if (ec && ec != http::error::need_more) return std::nullopt;
        if (done()) break;
        if (n == 0 || ec == http::error::need_more) {
            if (avail == data.size()) return std::nullopt;  // incomplete: the socket would wait
            avail = std::min(data.size(), avail + step);
        }
    }
    return used;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    if (size == 0) return 0;
    // The first byte chooses the read size, so splits at every position are explored.
    const std::size_t step = 1 + bytes[0] % 64;
    std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);

    (void)leading_empty_lines(data);
    data.remove_prefix(leading_empty_lines(data));

    auto chunk_ext_check = [](std::uint64_t, std::string_view ext, boost::system::error_code& ec) {
        if (chunk_extension_too_long(ext)) ec = http::error::bad_chunk_extension;
    };
    http::request_parser<http::string_body> parser;
    parser.header_limit(header_limit);
    parser.on_chunk_header(chunk_ext_check);
    parser.body_limit(boost::none);
    auto head_used = parse(parser, data, step, /*header_only=*/true);
    if (!head_used) return 0;
    auto& req = parser.get();
    const auto problem = framing_problem(req.base());
    std::string_view path, query;
    const bool origin = split_target(req.target(), path, query);
    if (problem) return 0;
    check(origin, "framing_problem accepted a target split_target refuses");
    (void)method_problem(req.method_string());

    // run_session answers 413 before reading a body whose declared length is over the limit
    // (Beast, with no limit during the head, would otherwise reserve the declared length).
    if (auto cl = parser.content_length(); cl && *cl > body_limit) return 0;
    std::optional<http::fields> head_fields;
    if (req.chunked()) head_fields.emplace(static_cast<const http::fields&>(req));
    parser.body_limit(body_limit);
    auto body_used = parse(parser, data.substr(*head_used), step, /*header_only=*/false);
    if (!body_used) return 0;
    if (head_fields) {
        const bool forbidden = has_forbidden_trailer(*head_fields, req);
        static_cast<http::fields&>(req) = std::move(*head_fields);
        if (forbidden) return 0;
    }

    // Re-serialise as handle_forward does: end-to-end fields only, Content-Length framing.
    const std::string wire =
        upstream_request_head(req, "127.0.0.1", "corr-1", std::optional(req.body().size())) + req.body();
    {
        http::request_parser<http::string_body> head_only;
        head_only.header_limit(static_cast<std::uint32_t>(wire.size() + 1));
        head_only.body_limit(body_limit);
        boost::system::error_code hec;
        head_only.put(boost::asio::buffer(wire), hec);
        if (head_only.is_header_done()) {
            const auto& h = head_only.get();
            check(h.find(http::field::transfer_encoding) == h.end(), "Transfer-Encoding survived end_to_end_fields");
            check(h.count("X-Correlation-ID") == 1 && h["X-Correlation-ID"] == "corr-1",
                  "the caller's X-Correlation-ID passed through");
            check(h.count(http::field::content_length) == 1, "Content-Length repeated or missing");
        }
    }

    // The legacy service must see exactly one request with the same method, target and body.
    http::request_parser<http::string_body> again;
    again.header_limit(static_cast<std::uint32_t>(wire.size() + 1));
    again.body_limit(body_limit);
    again.eager(true);
    boost::system::error_code ec;
    const auto n = again.put(boost::asio::buffer(wire), ec);
    check(!ec, "the forwarded request does not parse");
    check(again.is_done(), "the forwarded request is incomplete");
    check(n == wire.size(), "the forwarded bytes hold more than one request");
    check(again.get().method_string() == req.method_string(), "method changed");
    check(again.get().target() == req.target(), "target changed");
    check(again.get().body() == req.body(), "body changed");
    return 0;
}
