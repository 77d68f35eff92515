#include "handoff/proxy/http_rules.hpp"

#include <doctest/doctest.h>

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
    CHECK(framing_problem(head(11, {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}})));
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

TEST_CASE("hop-by-hop headers and those named by Connection are removed, Host is protected") {
    http::fields f;
    f.insert("Connection", "close, X-Secret, Host");
    f.insert("Keep-Alive", "timeout=5");
    f.insert("X-Secret", "1");
    f.insert("Host", "example");
    f.insert("TE", "trailers");
    f.insert("Upgrade", "h2c");
    f.insert("Proxy-Authorization", "Basic x");
    f.insert("X-Keep", "yes");
    remove_hop_by_hop(f);
    CHECK(f.find("Connection") == f.end());
    CHECK(f.find("Keep-Alive") == f.end());
    CHECK(f.find("X-Secret") == f.end());
    CHECK(f.find("TE") == f.end());
    CHECK(f.find("Upgrade") == f.end());
    CHECK(f.find("Proxy-Authorization") == f.end());
    CHECK(f.find("Host") != f.end());
    CHECK(f.find("X-Keep") != f.end());
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
