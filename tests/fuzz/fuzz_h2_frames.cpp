// libFuzzer target: bytes after HTTP/2's client preface -> the HTTP/2 connection (proxy/src/server/
// h2.hpp) as the session drives it: fed in reads of the size the first byte gives, its output
// pulled after each read, with a front that answers some requests from their head, some at once,
// and holds some to answer after the input (their streams may have been reset by then). Checks,
// besides what ASan and UBSan see: the streams the connection keeps never exceed its bound, a
// request handed on within the header-list bound is not marked, every body handed on is within
// the front's limit, and the output of one pull is bounded (tests/CATALOGUE.md, L-9, H-15).
#include "server/h2.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace handoff::proxy;
using namespace handoff::proxy::front;
namespace http = boost::beast::http;

namespace {

constexpr std::size_t body_limit = 1024;
constexpr std::uint32_t max_streams = 8;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant violated: %s\n", what);
        std::abort();
    }
}

struct answering_front : h2_connection::events {
    h2_connection* conn = nullptr;
    std::vector<std::shared_ptr<h2_stream>> held;
    void reply(h2_stream& s, int status) {
        outcome o;
        o.res.result(status);
        o.res.set(http::field::content_type, "application/json");
        o.res.body() = R"({"ok":true})";
        o.res.content_length(o.res.body().size());
        o.fields = "X-Legacy: 1\r\nConnection: close\r\n";
        conn->answer(s, o, s.req.method() == http::verb::head);
    }
    void on_head(h2_stream& s) override {
        s.body_limit = body_limit;
        if (s.req.target().ends_with("/refuse")) reply(s, 404);
    }
    void on_request(const std::shared_ptr<h2_stream>& s) override {
        check(s->header_list_too_large || s->req.body().size() <= body_limit, "a body over the limit was handed on");
        if (s->id % 4 == 3) {
            held.push_back(s);
            return;
        }
        reply(*s, s->body_too_large ? 413 : 200);
        conn->handler_done(*s);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t step = static_cast<std::size_t>(data[0]) + 1;
    ++data;
    --size;
    h2_limits limits;
    limits.max_concurrent_streams = max_streams;
    limits.max_header_list_bytes = 4096;
    answering_front f;
    h2_connection conn(f, limits);
    f.conn = &conn;
    std::string out;
    conn.receive(reinterpret_cast<const std::uint8_t*>(h2_preface.data()), h2_preface.size());
    for (std::size_t at = 0; at < size;) {
        const auto n = std::min(step, size - at);
        const bool ok = conn.receive(data + at, n);
        at += n;
        out.clear();
        conn.pull(out, 64 * 1024);
        check(out.size() < 64 * 1024 + 32 * 1024, "one pull gave far more than asked");
        std::size_t kept = 0;
        conn.for_each_stream([&](const h2_stream&) { ++kept; });
        check(kept <= max_streams + 1, "more streams kept than the bound");
        if (!ok) break;
    }
    for (auto& s : f.held) {
        f.reply(*s, 200);
        conn.handler_done(*s);
    }
    out.clear();
    conn.pull(out, 1 << 20);
    return 0;
}
