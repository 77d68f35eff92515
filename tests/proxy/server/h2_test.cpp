// The HTTP/2 connection (proxy/src/server/h2.hpp) in memory, against nghttp2's own client session:
// what a stream's request looks like once it is handed to the front (Host from :authority, cookies
// joined, a body with its length), the marks that make the front refuse it (header list too large,
// body too large, forbidden trailer, Host against :authority), the bound on streams that counts
// requests still being handled after a reset, and the answer's fields as HTTP/2 wants them.
#include "server/h2.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace handoff::proxy;
using namespace handoff::proxy::front;
namespace http = boost::beast::http;

namespace {

std::uint8_t* u8(const std::string& s) { return reinterpret_cast<std::uint8_t*>(const_cast<char*>(s.data())); }

// What the client saw of one stream.
struct seen {
    std::map<std::string, std::string> fields;  // the last value of each (":status" included)
    std::vector<std::string> names;
    std::string body;
    bool closed = false;
    std::uint32_t error = 0;
};

// nghttp2's client session, in memory.
class client {
public:
    client() {
        nghttp2_session_callbacks* cb = nullptr;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_header_callback(
            cb, [](nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl,
                   const std::uint8_t* v, std::size_t vl, std::uint8_t, void* p) {
                auto& s = static_cast<client*>(p)->streams[f->hd.stream_id];
                std::string name(reinterpret_cast<const char*>(n), nl);
                s.fields[name] = std::string(reinterpret_cast<const char*>(v), vl);
                s.names.push_back(name);
                return 0;
            });
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
            cb, [](nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* d, std::size_t n, void* p) {
                static_cast<client*>(p)->streams[id].body.append(reinterpret_cast<const char*>(d), n);
                return 0;
            });
        nghttp2_session_callbacks_set_on_stream_close_callback(
            cb, [](nghttp2_session*, std::int32_t id, std::uint32_t e, void* p) {
                auto& s = static_cast<client*>(p)->streams[id];
                s.closed = true;
                s.error = e;
                return 0;
            });
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, [](nghttp2_session*, const nghttp2_frame* f, void* p) {
            if (f->hd.type == NGHTTP2_GOAWAY) static_cast<client*>(p)->goaway = f->goaway.error_code;
            return 0;
        });
        nghttp2_session_client_new(&session, cb, this);
        nghttp2_session_callbacks_del(cb);
        nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
    }
    ~client() { nghttp2_session_del(session); }

    // A request: pseudo-headers, then `fields`; `body` sent as DATA when given.
    std::int32_t request(const std::string& method, const std::string& path,
                         const std::vector<std::pair<std::string, std::string>>& fields = {},
                         std::optional<std::string> body = std::nullopt, const std::string& authority = "svc:8080") {
        std::vector<nghttp2_nv> nva;
        auto add = [&](const std::string& n, const std::string& v) {
            nva.push_back({u8(n), u8(v), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
        };
        const std::string m = ":method", p = ":path", s = ":scheme", a = ":authority", http_ = "http";
        add(m, method);
        add(p, path);
        add(s, http_);
        if (!authority.empty()) add(a, authority);
        for (const auto& [n, v] : fields) add(n, v);
        if (!body) return nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), nullptr, this);
        bodies_.push_back(*body);
        nghttp2_data_provider provider{};
        provider.source.ptr = &bodies_.back();
        provider.read_callback = [](nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t len,
                                    std::uint32_t* flags, nghttp2_data_source* src, void*) -> ssize_t {
            auto& b = *static_cast<std::string*>(src->ptr);
            const auto n = std::min(len, b.size());
            std::memcpy(buf, b.data(), n);
            b.erase(0, n);
            if (b.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
            return static_cast<ssize_t>(n);
        };
        return nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), &provider, this);
    }

    nghttp2_session* session = nullptr;
    std::map<std::int32_t, seen> streams;
    std::optional<std::uint32_t> goaway;

private:
    std::list<std::string> bodies_;
};

// The front's side: records what it is handed; answers at once unless told to hold.
struct front_events : h2_connection::events {
    h2_connection* conn = nullptr;
    bool hold = false;
    std::vector<std::shared_ptr<h2_stream>> requests;
    std::vector<std::int32_t> heads;
    std::size_t body_limit = SIZE_MAX;
    void on_head(h2_stream& s) override {
        heads.push_back(s.id);
        s.body_limit = body_limit;
    }
    void on_request(const std::shared_ptr<h2_stream>& s) override {
        requests.push_back(s);
        if (!hold) answer(*s);
    }
    void answer(h2_stream& s, int status = 200, std::string body = "ok") {
        outcome o;
        o.res.result(status);
        o.res.set(http::field::content_type, "text/plain");
        o.res.body() = std::move(body);
        o.res.content_length(o.res.body().size());
        conn->answer(s, o, s.req.method() == http::verb::head);
        conn->handler_done(s);
    }
};

// Moves bytes both ways until neither side has anything to say.
void pump(client& c, h2_connection& server) {
    for (int round = 0; round < 100; ++round) {
        bool moved = false;
        for (;;) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(c.session, &data);
            if (n <= 0) break;
            moved = true;
            server.receive(data, static_cast<std::size_t>(n));
        }
        std::string out;
        if (server.pull(out, 1 << 20) > 0) {
            moved = true;
            nghttp2_session_mem_recv(c.session, reinterpret_cast<const std::uint8_t*>(out.data()), out.size());
        }
        if (!moved) return;
    }
    FAIL("the two sessions never went quiet");
}

struct fixture {
    explicit fixture(h2_limits l = {}) : conn(ev, l) { ev.conn = &conn; }
    front_events ev;
    h2_connection conn;
    client c;
};

}  // namespace

TEST_CASE("h2: a request reaches the front as HTTP/1.1 would give it, and its answer comes back") {
    fixture f;
    const auto id = f.c.request("POST", "/orders/eu?x=1", {{"content-type", "application/json"}, {"x-tenant", "t1"}},
                                std::string(R"({"a":1})"));
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 1);
    const auto& req = f.ev.requests[0]->req;
    CHECK(req.method() == http::verb::post);
    CHECK(req.target() == "/orders/eu?x=1");
    CHECK(req.version() == 11);
    CHECK(req[http::field::host] == "svc:8080");
    CHECK(req["x-tenant"] == "t1");
    CHECK(req.body() == R"({"a":1})");
    CHECK(req[http::field::content_length] == "7");  // the body's length, though none was sent
    const auto& s = f.c.streams[id];
    CHECK(s.fields.at(":status") == "200");
    CHECK(s.fields.at("content-type") == "text/plain");
    CHECK(s.body == "ok");
    CHECK(s.closed);
    CHECK(s.error == 0);
}

TEST_CASE("h2: cookie fields are joined into one; a Host naming another authority is marked") {
    fixture f;
    f.ev.hold = true;
    f.c.request("GET", "/a", {{"cookie", "a=1"}, {"cookie", "b=2"}});
    f.c.request("GET", "/b", {{"host", "other:1"}});
    f.c.request("GET", "/c", {{"host", "only-host:9"}}, std::nullopt, /*authority=*/"");
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 3);
    CHECK(f.ev.requests[0]->req[http::field::cookie] == "a=1; b=2");
    CHECK(f.ev.requests[0]->problem.empty());
    CHECK_FALSE(f.ev.requests[1]->problem.empty());
    CHECK(f.ev.requests[2]->problem.empty());
    CHECK(f.ev.requests[2]->req[http::field::host] == "only-host:9");
}

TEST_CASE("h2: a header list over the bound is marked and not kept; the connection goes on") {
    h2_limits l;
    l.max_header_list_bytes = 1024;
    fixture f(l);
    f.ev.hold = true;
    f.c.request("GET", "/big", {{"x-big", std::string(2000, 'a')}});
    f.c.request("GET", "/small", {{"x-small", "b"}});
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 2);
    CHECK(f.ev.requests[0]->header_list_too_large);
    CHECK(f.ev.requests[0]->req.find("x-big") == f.ev.requests[0]->req.end());
    CHECK_FALSE(f.ev.requests[1]->header_list_too_large);
    CHECK(f.ev.requests[1]->req["x-small"] == "b");
}

TEST_CASE("h2: a body over the front's limit is marked as soon as it passes it") {
    fixture f;
    f.ev.hold = true;
    f.ev.body_limit = 10;
    f.c.request("POST", "/x", {}, std::string(100, 'z'));
    f.c.request("POST", "/y", {}, std::string(10, 'z'));
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 2);
    CHECK(f.ev.requests[0]->body_too_large);
    CHECK(f.ev.requests[0]->req.body().empty());
    CHECK_FALSE(f.ev.requests[1]->body_too_large);
    CHECK(f.ev.requests[1]->req.body().size() == 10);
}

TEST_CASE("h2: a trailer with a framing or authentication field is marked; other trailers are dropped") {
    fixture f;
    f.ev.hold = true;
    for (const char* name : {"authorization", "x-checksum"}) {
        const std::string n = ":method", m = "POST", p = ":path", path = "/t", s = ":scheme", h = "http",
                          a = ":authority", svc = "svc";
        std::vector<nghttp2_nv> head{{u8(n), u8(m), n.size(), m.size(), NGHTTP2_NV_FLAG_NONE},
                                     {u8(p), u8(path), p.size(), path.size(), NGHTTP2_NV_FLAG_NONE},
                                     {u8(s), u8(h), s.size(), h.size(), NGHTTP2_NV_FLAG_NONE},
                                     {u8(a), u8(svc), a.size(), svc.size(), NGHTTP2_NV_FLAG_NONE}};
        const auto id =
            nghttp2_submit_headers(f.c.session, NGHTTP2_FLAG_NONE, -1, nullptr, head.data(), head.size(), nullptr);
        REQUIRE(id > 0);
        pump(f.c, f.conn);  // the stream exists before its trailer is queued (nghttp2 sends that first)
        const std::string tn = name, tv = "v";
        std::vector<nghttp2_nv> trailer{{u8(tn), u8(tv), tn.size(), tv.size(), NGHTTP2_NV_FLAG_NONE}};
        REQUIRE(nghttp2_submit_headers(f.c.session, NGHTTP2_FLAG_END_STREAM, id, nullptr, trailer.data(),
                                       trailer.size(), nullptr) == 0);
    }
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 2);
    CHECK(f.ev.requests[0]->forbidden_trailer);
    CHECK(f.ev.requests[0]->req.find(http::field::authorization) == f.ev.requests[0]->req.end());
    CHECK_FALSE(f.ev.requests[1]->forbidden_trailer);
    CHECK(f.ev.requests[1]->req.find("x-checksum") == f.ev.requests[1]->req.end());
}

TEST_CASE("h2: requests still handled after their stream was reset count against the stream bound") {
    h2_limits l;
    l.max_concurrent_streams = 2;
    fixture f(l);
    f.ev.hold = true;
    const auto a = f.c.request("POST", "/commit", {}, std::string("1"));
    const auto b = f.c.request("POST", "/commit", {}, std::string("2"));
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 2);
    // The client gives up on both; their handlers still run.
    nghttp2_submit_rst_stream(f.c.session, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
    nghttp2_submit_rst_stream(f.c.session, NGHTTP2_FLAG_NONE, b, NGHTTP2_CANCEL);
    pump(f.c, f.conn);
    CHECK(f.conn.orphans() == 2);
    const auto c = f.c.request("POST", "/event", {}, std::string("3"));
    pump(f.c, f.conn);
    CHECK(f.c.streams[c].closed);
    CHECK(f.c.streams[c].error == NGHTTP2_REFUSED_STREAM);
    CHECK(f.ev.requests.size() == 2);  // the refused one never reached the front
    // The handlers finish: their answers are dropped, and the bound frees up.
    f.ev.answer(*f.ev.requests[0]);
    f.ev.answer(*f.ev.requests[1]);
    CHECK(f.conn.orphans() == 0);
    f.ev.hold = false;
    const auto d = f.c.request("POST", "/event", {}, std::string("4"));
    pump(f.c, f.conn);
    CHECK(f.c.streams[d].fields[":status"] == "200");
}

TEST_CASE("h2: an answer leaves out HTTP/1.1's connection fields; HEAD gets the head alone") {
    fixture f;
    f.ev.hold = true;
    const auto get = f.c.request("GET", "/g");
    const auto head = f.c.request("HEAD", "/h");
    pump(f.c, f.conn);
    REQUIRE(f.ev.requests.size() == 2);
    for (auto& s : f.ev.requests) {
        outcome o;
        o.res.result(200);
        o.res.set(http::field::connection, "keep-alive");
        o.res.set("Keep-Alive", "timeout=5");
        o.res.set("X-Served-By", "svc");
        o.res.body() = "hello";
        o.res.content_length(5);
        o.fields = "Transfer-Encoding: chunked\r\nX-Legacy: yes\r\n";
        f.conn.answer(*s, o, s->req.method() == http::verb::head);
        f.conn.handler_done(*s);
    }
    pump(f.c, f.conn);
    for (auto id : {get, head}) {
        const auto& s = f.c.streams[id];
        CHECK(s.error == 0);  // nghttp2's client resets a stream whose answer carries a connection field
        CHECK(s.fields.at(":status") == "200");
        CHECK(s.fields.at("x-served-by") == "svc");
        CHECK(s.fields.at("x-legacy") == "yes");
        CHECK(s.fields.at("content-length") == "5");
        CHECK(s.fields.count("connection") == 0);
        CHECK(s.fields.count("keep-alive") == 0);
        CHECK(s.fields.count("transfer-encoding") == 0);
    }
    CHECK(f.c.streams[get].body == "hello");
    CHECK(f.c.streams[head].body.empty());
}

TEST_CASE("h2: HTTP2-Settings values") {
    CHECK(h2_connection::valid_settings(""));                          // no entry: valid
    CHECK(h2_connection::valid_settings("AAMAAABkAAQAoAAAAAIAAAAA"));  // what curl sends
    CHECK(h2_connection::valid_settings("AAMAAABk"));                  // one entry (6 bytes)
    CHECK_FALSE(h2_connection::valid_settings("AAMAAA"));              // 4 bytes: not whole entries
    CHECK_FALSE(h2_connection::valid_settings("!!!!"));
}

TEST_CASE("h2: an upgraded request is stream 1, complete") {
    front_events ev;
    h2_connection conn(ev, {});
    ev.conn = &conn;
    ev.hold = true;
    http::request<http::string_body> req{http::verb::post, "/audit", 11};
    req.set(http::field::host, "svc");
    req.body() = "abc";
    REQUIRE(conn.upgrade("AAMAAABkAAQAoAAAAAIAAAAA", std::move(req)));
    REQUIRE(ev.requests.size() == 1);
    CHECK(ev.requests[0]->id == 1);
    CHECK(ev.requests[0]->req.body() == "abc");
    CHECK(ev.requests[0]->req[http::field::content_length] == "3");
}
