#include "handoff/common/http_rules.hpp"

#include <doctest/doctest.h>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include <sstream>

using namespace handoff::proxy;
namespace http = boost::beast::http;

namespace {
http::request_header<> head(unsigned version, std::vector<std::pair<std::string, std::string>> fields) {
    http::request_header<> h;
    h.version(version);
    h.method(http::verb::post);
    h.target("/x");
    for (auto& [k, v] : fields) h.insert(k, v);
    return h;
}
}  // namespace

TEST_CASE("Content-Length together with Transfer-Encoding is rejected in either order") {
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"transfer-encoding", "chunked"}, {"content-length", "5"}})));
}

TEST_CASE("a Transfer-Encoding other than exactly chunked is rejected") {
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "gzip"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "chunked, gzip"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "identity"}})));
    CHECK(
        framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}})));
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "Chunked "}})));
}

TEST_CASE("Transfer-Encoding on HTTP/1.0 is rejected") {
    CHECK(framing_problem(head(10, {{"Transfer-Encoding", "chunked"}})));
}

TEST_CASE("HTTP/1.1 needs exactly one Host") {
    CHECK(framing_problem(head(11, {})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Host", "b"}})));
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}})));
    CHECK_FALSE(framing_problem(head(10, {})));
}

TEST_CASE("end_to_end_fields: hop-by-hop fields and those named by Connection go, Host is protected") {
    end_to_end_fields f;
    f.add(http::field::unknown, "X-Secret", "1");  // named by a Connection field that comes later
    f.add(http::field::connection, "Connection", "close, x-SECRET, Host, Content-Length");
    f.add(http::field::keep_alive, "Keep-Alive", "timeout=5");
    f.add(http::field::host, "Host", "example");
    f.add(http::field::te, "TE", "trailers");
    f.add(http::field::upgrade, "Upgrade", "h2c");
    f.add(http::field::proxy_authorization, "Proxy-Authorization", "Basic x");
    f.add(http::field::transfer_encoding, "Transfer-Encoding", "chunked");
    f.add(http::field::unknown, "X-Keep", "yes");
    f.add(http::field::content_length, "content-length", "5");   // the proxy's own
    f.add(http::field::unknown, "x-correlation-id", "theirs");   // the proxy's own
    f.add(http::field::unknown, "X-Forwarded-For", "10.0.0.1");  // a response's: kept
    f.add(http::field::unknown, "X-Keep", "again, in order");
    CHECK(f.take() == "Host: example\r\nX-Keep: yes\r\nX-Forwarded-For: 10.0.0.1\r\nX-Keep: again, in order\r\n");
}

TEST_CASE("upstream_request_head: the caller's fields in order, the proxy's own replaced, Content-Length framing") {
    http::request<http::string_body> req{http::verb::patch, "/a/b?c=%20d", 11};
    req.insert("Host", "svc");
    req.insert("X-Forwarded-For", "1.1.1.1");
    req.insert("Connection", "X-Forwarded-Proto, X-Hop");
    req.insert("X-Forwarded-Proto", "https");
    req.insert("X-Correlation-ID", "caller-label");
    req.insert("X-Hop", "1");
    req.insert("Transfer-Encoding", "chunked");
    req.insert("Accept", "*/*");
    CHECK(upstream_request_head(req, "1.1.1.1, 127.0.0.1", "req-1", std::optional<std::size_t>(12)) ==
          "PATCH /a/b?c=%20d HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\nX-Forwarded-For: 1.1.1.1, 127.0.0.1\r\n"
          "X-Forwarded-Proto: http\r\nX-Correlation-ID: req-1\r\nContent-Length: 12\r\n\r\n");
    http::request<http::string_body> get{http::verb::get, "/", 10};
    get.method_string("PURGE");
    CHECK(upstream_request_head(get, "::1", "r", std::nullopt) ==
          "PURGE / HTTP/1.1\r\nX-Forwarded-For: ::1\r\nX-Forwarded-Proto: http\r\nX-Correlation-ID: r\r\n\r\n");
}

TEST_CASE("serialize_response_head with more fields puts them after the response's own") {
    http::response<http::string_body> res{http::status::created, 11};
    res.insert("X-Correlation-ID", "c");
    std::string out;
    serialize_response_head(res, "Server: legacy\r\n", out);
    CHECK(out == "HTTP/1.1 201 Created\r\nX-Correlation-ID: c\r\nServer: legacy\r\n\r\n");
}

TEST_CASE("only origin-form targets are split into path and query") {
    std::string_view p, q;
    REQUIRE(split_target("/a/b?x=1&y", p, q));
    CHECK(p == "/a/b");
    CHECK(q == "x=1&y");
    REQUIRE(split_target("/a", p, q));
    CHECK(q.empty());
    CHECK_FALSE(split_target("http://evil/a", p, q));
    CHECK_FALSE(split_target("*", p, q));
}

TEST_CASE("methods must be short case-sensitive tokens") {
    CHECK_FALSE(method_problem("GET"));
    CHECK_FALSE(method_problem("PROPFIND"));
    CHECK_FALSE(method_problem("M-SEARCH"));
    CHECK(method_problem(""));
    CHECK(method_problem("get"));
    CHECK(method_problem("Post"));
    CHECK(method_problem(std::string(max_method_bytes + 1, 'G')));
    CHECK_FALSE(method_problem(std::string(max_method_bytes, 'G')));
    CHECK(method_problem("G=\":<>(e)"));
    CHECK(method_problem("GE T"));
}

TEST_CASE("request targets must be origin-form paths that no server could normalise differently") {
    CHECK_FALSE(target_problem("/"));
    CHECK_FALSE(target_problem("/orders/42?x=1&y=%20"));
    CHECK_FALSE(target_problem("/a/b/"));
    CHECK_FALSE(target_problem("/files/a.b/..c/.d"));
    CHECK_FALSE(target_problem("/q?a=../..&b=//"));  // the query is not a path
    CHECK(target_problem(""));
    CHECK(target_problem("*"));
    CHECK(target_problem("http://other.example/orders/1"));
    CHECK(target_problem("!"));
    CHECK(target_problem("//admin"));
    CHECK(target_problem("/a//b"));
    CHECK(target_problem("/a/../admin"));
    CHECK(target_problem("/a/./b"));
    CHECK(target_problem("/a/.."));
    CHECK(target_problem("/a/%2e%2e/admin"));
    CHECK(target_problem("/a/%2E%2e/admin"));
    CHECK(target_problem("/a/.%2e/admin"));
    CHECK(target_problem("/a/%2e/b"));
    CHECK(target_problem("/a%2fb"));
    CHECK(target_problem("/a%5Cb"));
    CHECK(target_problem("/a\\b"));
    CHECK(target_problem("/a%00b"));
    CHECK(target_problem("/a%zz"));
    CHECK(target_problem("/a%2"));
    CHECK(target_problem("/a?q=%"));
    CHECK(target_problem("/caf\xc3\xa9"));
    CHECK(target_problem("/a\x7f"));
    CHECK(target_problem("/a b"));
}

TEST_CASE("header fields: count, names without underscores, values without controls") {
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}, {"X-User-Id", "7"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"X_User_Id", "7"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"X_Forwarded_For", "1.2.3.4"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"X-A", std::string("a\0b", 3)}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"X-A", "a\x7f"}})));
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"X-A", "a\x07"}})));
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}, {"X-A", "a\tb \xe9"}})));  // HTAB and obs-text
    std::vector<std::pair<std::string, std::string>> many{{"Host", "a"}};
    for (std::size_t i = 1; i < max_header_fields; ++i) many.emplace_back("X-H" + std::to_string(i), "v");
    CHECK_FALSE(framing_problem(head(11, many)));
    many.emplace_back("X-One-Too-Many", "v");
    CHECK(framing_problem(head(11, many)));
}

TEST_CASE("safe_header_value: no control character but HTAB, DEL included; obs-text is fine") {
    CHECK(safe_header_value(""));
    CHECK(safe_header_value("text/plain; charset=utf-8"));
    CHECK(safe_header_value("a\tb \xe9\xff"));
    for (int c = 0; c < 0x20; ++c) {
        if (c == '\t') continue;
        INFO("control byte " << c);
        CHECK_FALSE(safe_header_value(std::string("a") + static_cast<char>(c) + "b"));
    }
    CHECK_FALSE(safe_header_value("a\x7f"));
    CHECK_FALSE(safe_header_value("a\r\nSet-Cookie: x=1"));
    CHECK_FALSE(safe_header_value(std::string("a\0b", 3)));
    // The rule of request header values (header_problem) is this one.
    for (const std::string v : {"a\x01", "a\x1f", "a\x7f", "a\tb"}) {
        CHECK(framing_problem(head(11, {{"Host", "a"}, {"X-A", v}})).has_value() == !safe_header_value(v));
    }
}

TEST_CASE("Content-Length must be plain decimal digits, never a list") {
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}, {"Content-Length", "5"}})));
    CHECK_FALSE(framing_problem(head(11, {{"Host", "a"}, {"Content-Length", "010"}})));
    for (const char* v : {"5, 5", "+1", "-1", "1_0", "0x10", "1Z", "", "abc", "123456789012345678901234567890"}) {
        CAPTURE(v);
        CHECK(framing_problem(head(11, {{"Host", "a"}, {"Content-Length", v}})));
    }
}

TEST_CASE("Host must be a valid authority") {
    CHECK_FALSE(framing_problem(head(11, {{"Host", "example.com:8080"}})));
    CHECK_FALSE(framing_problem(head(11, {{"Host", "[::1]:80"}})));
    CHECK(framing_problem(head(11, {{"Host", "a b"}})));
    CHECK(framing_problem(head(11, {{"Host", "evil.com/x"}})));
    CHECK(framing_problem(head(11, {{"Host", "user@evil"}})));
}

TEST_CASE("framing, routing and authentication fields are forbidden in trailers") {
    for (const char* n : {"Content-Length", "transfer-encoding", "Host", "Connection", "Trailer", "Authorization",
                          "X-Correlation-ID"}) {
        CAPTURE(n);
        CHECK(is_forbidden_trailer(n));
    }
    CHECK_FALSE(is_forbidden_trailer("X-Checksum"));
    CHECK_FALSE(is_forbidden_trailer("Server-Timing"));
}

TEST_CASE("chunk extensions are bounded") {
    CHECK_FALSE(chunk_extension_too_long(""));
    CHECK_FALSE(chunk_extension_too_long(";a=b"));
    CHECK_FALSE(chunk_extension_too_long(std::string(max_chunk_extension_bytes, 'x')));
    CHECK(chunk_extension_too_long(std::string(max_chunk_extension_bytes + 1, 'x')));
}

TEST_CASE("leading empty lines before a request line are counted, bare LF is not one") {
    CHECK(leading_empty_lines("GET / HTTP/1.1\r\n") == 0);
    CHECK(leading_empty_lines("\r\nGET /") == 2);
    CHECK(leading_empty_lines("\r\n\r\nGET /") == 4);
    CHECK(leading_empty_lines("\r") == 0);
    CHECK(leading_empty_lines("\nGET /") == 0);
    CHECK(leading_empty_lines("") == 0);
}

TEST_CASE("the decoded path must be valid UTF-8, overlong forms included") {
    CHECK_FALSE(target_problem("/caf%C3%A9"));
    CHECK_FALSE(target_problem("/%F0%9F%98%80"));
    CHECK(target_problem("/a/%c0%ae%c0%ae/b"));  // overlong '..'
    CHECK(target_problem("/a/%ff"));
    CHECK(target_problem("/a/%ed%a0%80"));     // a surrogate
    CHECK(target_problem("/a/%C3"));           // truncated
    CHECK(target_problem("/a/%f4%90%80%80"));  // above U+10FFFF
}

TEST_CASE("a forbidden trailer is found even when Beast inserted it next to a same-named header") {
    http::fields head;
    head.insert("Host", "a");
    head.insert("X-Tenant", "t");
    head.insert("Transfer-Encoding", "chunked");
    http::fields with = head;
    with.insert("X-Checksum", "abc");
    CHECK_FALSE(has_forbidden_trailer(head, with));
    with.insert("Host", "evil");  // Beast puts it right after the first Host
    CHECK(has_forbidden_trailer(head, with));
    http::fields auth = head;
    auth.insert("Authorization", "Basic x");
    CHECK(has_forbidden_trailer(head, auth));
    CHECK_FALSE(has_forbidden_trailer(head, head));
}

namespace {
// The bytes Beast's own serializer writes for `res`.
std::string beast_bytes(http::response<http::string_body> res) {
    std::ostringstream os;
    os << res;
    return os.str();
}
}  // namespace

TEST_CASE("serialize_response_head and the body are exactly what Beast's serializer writes") {
    SUBCASE("202 with JSON body, HTTP/1.1") {
        http::response<http::string_body> res{http::status::accepted, 11};
        res.set("X-Correlation-ID", "abc");
        res.set(http::field::location, "/_handoff/requests/abc");
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"correlation_id":"abc"})";
        res.keep_alive(true);
        res.content_length(res.body().size());
        std::string out = "prefix:";
        serialize_response_head(res, out);
        CHECK(out + res.body() == "prefix:" + beast_bytes(res));
    }
    SUBCASE("HTTP/1.0, Connection: close, empty body, a repeated field") {
        http::response<http::string_body> res{http::status::no_content, 10};
        res.insert("Set-Cookie", "a=1");
        res.insert("Set-Cookie", "b=2");
        res.keep_alive(false);
        std::string out;
        serialize_response_head(res, out);
        CHECK(out == beast_bytes(res));
        CHECK(out.starts_with("HTTP/1.0 204 No Content\r\n"));
    }
    SUBCASE("a custom reason phrase and an unknown status code") {
        http::response<http::string_body> res{http::status::ok, 11};
        res.reason("Fine Thanks");
        res.body() = std::string("\0\x01binary", 8);
        res.content_length(8);
        std::string out;
        serialize_response_head(res, out);
        CHECK(out + res.body() == beast_bytes(res));
        http::response<http::string_body> odd;
        odd.result(299);
        odd.version(11);
        std::string out2;
        serialize_response_head(odd, out2);
        CHECK(out2 == beast_bytes(odd));
    }
}

TEST_CASE("append_json_string escapes like a JSON serializer") {
    std::string out;
    append_json_string(out, "a\"b\\c\nd\x01\x1f\t/é");
    CHECK(out == "\"a\\\"b\\\\c\\nd\\u0001\\u001f\\t/é\"");
    CHECK(nlohmann::json::parse(out).get<std::string>() == "a\"b\\c\nd\x01\x1f\t/é");
}

TEST_CASE("append_json_string: every byte at every offset of 8-byte words round-trips through a JSON parser") {
    // The scan skips 8 clean bytes at a time: put each byte value at each position of a word, in
    // strings of several lengths, next to clean bytes on both sides.
    for (int b = 0; b < 0x80; ++b) {
        for (std::size_t len : {1u, 7u, 8u, 9u, 16u, 23u}) {
            for (std::size_t at = 0; at < len; ++at) {
                std::string in(len, 'x');
                in[at] = static_cast<char>(b);
                std::string out;
                append_json_string(out, in);
                INFO("byte " << b << " at " << at << " of " << len);
                REQUIRE(nlohmann::json::parse(out).get<std::string>() == in);
                CHECK(out == nlohmann::json(in).dump());
            }
        }
    }
}

TEST_CASE("append_json_ascii: the same as append_json_string for ASCII, nothing appended at any byte >= 0x80") {
    for (int b = 0; b < 0x100; ++b) {
        for (std::size_t len : {1u, 7u, 8u, 9u, 16u, 23u}) {
            for (std::size_t at = 0; at < len; ++at) {
                std::string in(len, 'x');
                in[at] = static_cast<char>(b);
                std::string out = "prefix", expected = "prefix";
                INFO("byte " << b << " at " << at << " of " << len);
                if (b < 0x80) {
                    append_json_string(expected, in);
                    REQUIRE(append_json_ascii(out, in));
                } else {
                    REQUIRE_FALSE(append_json_ascii(out, in));
                }
                CHECK(out == expected);
            }
        }
    }
}

TEST_CASE("serialize_request_head and the body are exactly what Beast's serializer writes") {
    http::request<http::string_body> req{http::verb::post, "/orders/17?x=1", 11};
    req.set(http::field::host, "127.0.0.1:8081");
    req.set("X-Forwarded-For", "10.0.0.1");
    req.body() = "{\"a\":1}";
    req.content_length(req.body().size());
    std::string out;
    serialize_request_head(req, out);
    std::ostringstream os;
    os << req;
    CHECK(out + req.body() == os.str());
    http::request<http::string_body> odd;
    odd.method_string("PROPFIND");
    odd.target("/");
    odd.version(10);
    std::string out2;
    serialize_request_head(odd, out2);
    std::ostringstream os2;
    os2 << odd;
    CHECK(out2 == os2.str());
}

TEST_CASE("has_token finds an element of a comma-separated list, ignoring case and spaces") {
    CHECK(has_token("Upgrade, HTTP2-Settings", "upgrade"));
    CHECK(has_token("keep-alive ,\tUpgrade", "UPGRADE"));
    CHECK(has_token("h2c", "h2c"));
    CHECK_FALSE(has_token("h2c-14, websocket", "h2c"));  // a longer token is not the token
    CHECK_FALSE(has_token("", "h2c"));
    CHECK_FALSE(has_token(" , ,", "h2c"));
}
