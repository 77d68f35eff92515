// HTTP/2 on one connection, in memory (h2.hpp).
#include "server/h2.hpp"

#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace handoff::proxy::front {

namespace {

// The flood limits. nghttp2 1.52 as Debian 12 ships it (1.52.0-1+deb12u2 and later) carries the
// backported options for rapid reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-28182).
constexpr std::size_t max_settings_entries = 32;  // per SETTINGS frame (nghttp2's default)
constexpr std::size_t max_outbound_acks = 1000;   // queued PING/SETTINGS ACKs: then GOAWAY
constexpr std::size_t max_continuations = 8;      // CONTINUATION frames per header block
constexpr std::uint64_t reset_burst = 1000;       // streams reset by the peer: a burst of,
constexpr std::uint64_t reset_rate = 33;          // then this many per second, then GOAWAY

std::string_view sv(const std::uint8_t* p, std::size_t n) { return {reinterpret_cast<const char*>(p), n}; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// base64url without padding (RFC 4648 §5), as HTTP2-Settings carries it; padding is tolerated.
bool base64url_decode(std::string_view in, std::string& out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '-' || c == '+') return 62;
        if (c == '_' || c == '/') return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    if (in.size() % 4 == 1) return false;
    out.clear();
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = value(c);
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return true;
}

}  // namespace

h2_connection::h2_connection(events& ev, const h2_limits& limits) : ev_(ev), limits_(limits) {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &h2_connection::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, &h2_connection::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &h2_connection::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &h2_connection::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &h2_connection::on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, &h2_connection::on_frame_send);
    nghttp2_option* opt = nullptr;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        throw std::bad_alloc();
    }
    nghttp2_option_set_max_settings(opt, max_settings_entries);
    nghttp2_option_set_max_outbound_ack(opt, max_outbound_acks);
    nghttp2_option_set_max_continuations(opt, max_continuations);
    nghttp2_option_set_stream_reset_rate_limit(opt, reset_burst, reset_rate);
    // The peer may not make us keep more than the default 4 KiB of HPACK state for our answers.
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    const int rv = nghttp2_session_server_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) throw std::bad_alloc();

    const std::array<nghttp2_settings_entry, 3> settings{{
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         static_cast<std::uint32_t>(std::min<std::size_t>(limits_.max_header_list_bytes, UINT32_MAX))},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_window},
    }};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
    // The connection's own window, beyond the default 64 KiB: bodies of several streams at once.
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<std::int32_t>(limits_.initial_window));
}

h2_connection::~h2_connection() { nghttp2_session_del(session_); }

h2_stream* h2_connection::find(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

bool h2_connection::valid_settings(std::string_view settings) {
    std::string payload;
    return base64url_decode(settings, payload) && payload.size() % 6 == 0 && payload.size() <= 6 * 64;
}

bool h2_connection::upgrade(std::string_view settings, http::request<http::string_body> req) {
    std::string payload;
    if (!base64url_decode(settings, payload)) return false;
    const bool head_request = req.method() == http::verb::head;
    if (nghttp2_session_upgrade2(session_, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(),
                                 head_request ? 1 : 0, nullptr) != 0) {
        return false;
    }
    auto s = std::make_shared<h2_stream>();
    s->id = 1;
    s->opened = s->head_at = std::chrono::steady_clock::now();
    s->req = std::move(req);
    s->req.version(11);
    s->head_done = true;
    s->body_done = true;
    s->had_data = !s->req.body().empty();
    streams_.emplace(1, s);
    ev_.on_head(*s);
    request_complete(*s);
    return true;
}

bool h2_connection::receive(const std::uint8_t* data, std::size_t n) {
    if (terminated_) return false;
    const auto rv = nghttp2_session_mem_recv(session_, data, n);
    if (rv >= 0) return true;
    fatal_ = static_cast<int>(rv);
    terminated_ = true;
    return false;
}

std::string h2_connection::final_goaway() const {
    if (fatal_ == 0 || fatal_ == NGHTTP2_ERR_BAD_CLIENT_MAGIC) return {};
    const std::uint32_t code = fatal_ == NGHTTP2_ERR_FLOODED || fatal_ == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                                   ? NGHTTP2_ENHANCE_YOUR_CALM
                                   : NGHTTP2_INTERNAL_ERROR;
    const auto last = static_cast<std::uint32_t>(nghttp2_session_get_last_proc_stream_id(session_));
    // RFC 9113 §6.8: length 8, type GOAWAY (7), no flags, stream 0; last stream ID, error code.
    std::string f{'\0', '\0', '\x08', '\x07', '\0', '\0', '\0', '\0', '\0'};
    for (const auto v : {last & 0x7fffffffu, code}) {
        for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<char>((v >> shift) & 0xff));
    }
    return f;
}

std::size_t h2_connection::pull(std::string& out, std::size_t max) {
    const auto before = out.size();
    while (out.size() - before < max) {
        const std::uint8_t* data = nullptr;
        const auto n = nghttp2_session_mem_send(session_, &data);
        if (n <= 0) {
            if (n < 0) terminated_ = true;
            break;
        }
        out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    return out.size() - before;
}

bool h2_connection::alive() const {
    return !terminated_ && (nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0);
}

bool h2_connection::answer(h2_stream& s, outcome& o, bool head_request) {
    if (s.closed || s.answered || terminated_) return false;
    s.answered = true;
    s.answered_at = std::chrono::steady_clock::now();
    // Names in lower case (RFC 9113 §8.2.1): kept in `names` while nghttp2 copies them.
    std::vector<std::string> names;
    std::vector<std::string_view> values;
    const auto status = std::to_string(o.res.result_int());
    auto add = [&](std::string_view name, std::string_view value) {
        // RFC 9113 §8.2.2: HTTP/1.1's connection-specific fields are never sent in HTTP/2 (the
        // hop-by-hop list `forward` strips from the service's answer covers them).
        if (is_hop_by_hop(name)) return;
        auto n = lower(name);
        names.push_back(std::move(n));
        values.push_back(value);
    };
    for (const auto& f : o.res) add(f.name_string(), f.value());
    // A forwarded response's own fields: "Name: value\r\n" lines (outcome::fields).
    std::string_view more = o.fields;
    while (!more.empty()) {
        const auto eol = more.find("\r\n");
        const auto line = more.substr(0, eol);
        more = eol == std::string_view::npos ? std::string_view() : more.substr(eol + 2);
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
        add(line.substr(0, colon), value);
    }
    std::vector<nghttp2_nv> nva;
    nva.reserve(names.size() + 1);
    auto nv = [](std::string_view n, std::string_view v) {
        return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                          reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                          NGHTTP2_NV_FLAG_NONE};
    };
    nva.push_back(nv(":status", status));
    for (std::size_t i = 0; i < names.size(); ++i) nva.push_back(nv(names[i], values[i]));

    const int code = o.res.result_int();
    const bool no_body = head_request || code == 204 || code == 304 || (code >= 100 && code < 200);
    int rv;
    if (no_body) {
        rv = nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), nullptr);
    } else {
        s.response_body = std::move(o.res.body());
        s.response_sent = 0;
        nghttp2_data_provider provider{};
        provider.read_callback = &h2_connection::read_body;
        rv = nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), &provider);
    }
    return rv == 0;
}

void h2_connection::send_continue(h2_stream& s) {
    if (s.closed || s.answered) return;
    const std::array<nghttp2_nv, 1> nva{
        {{reinterpret_cast<std::uint8_t*>(const_cast<char*>(":status")),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>("100")), 7, 3, NGHTTP2_NV_FLAG_NONE}}};
    nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, s.id, nullptr, nva.data(), nva.size(), nullptr);
}

void h2_connection::reset(h2_stream& s, std::uint32_t error_code) {
    if (s.closed) return;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, error_code);
}

void h2_connection::handler_done(h2_stream& s) {
    if (!s.handling) return;
    s.handling = false;
    if (s.closed && orphans_ > 0) --orphans_;
}

void h2_connection::shut_down() {
    if (terminated_) return;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
}

void h2_connection::terminate(std::uint32_t error_code) {
    if (terminated_) return;
    nghttp2_session_terminate_session(session_, error_code);
}

// ---- nghttp2's callbacks --------------------------------------------------------------------

int h2_connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    const auto id = frame->hd.stream_id;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        // A second header block on an open stream: its trailers.
        if (auto* s = self.find(id); s && s->head_done) {
            s->in_trailers = true;
            s->header_list_bytes = 0;
        }
        return 0;
    }
    auto s = std::make_shared<h2_stream>();
    s->id = id;
    s->opened = std::chrono::steady_clock::now();
    // nghttp2 bounds the open streams (SETTINGS_MAX_CONCURRENT_STREAMS); requests still being
    // handled after their stream was reset count too, or resetting complete requests as fast as
    // they are sent would pile up work without bound.
    if (self.streams_.size() + self.orphans_ >= self.limits_.max_concurrent_streams) {
        s->refused = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        self.ev_.on_refused();
    }
    self.streams_.emplace(id, std::move(s));
    return 0;
}

int h2_connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                             std::size_t namelen, const std::uint8_t* value, std::size_t valuelen, std::uint8_t,
                             void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    auto* s = self.find(frame->hd.stream_id);
    if (!s || s->refused) return 0;
    const auto n = sv(name, namelen);
    const auto v = sv(value, valuelen);
    // RFC 9113 §6.5.2: each field counts its name, its value and 32.
    s->header_list_bytes += namelen + valuelen + 32;
    if (s->in_trailers) {
        if (is_forbidden_trailer(n)) s->forbidden_trailer = true;
        return 0;  // other trailers are dropped, as over HTTP/1.1
    }
    if (s->header_list_bytes > self.limits_.max_header_list_bytes) {
        // Answered 431 once the block is complete; nothing more is kept (an HPACK bomb expands a
        // small block into a large list: its cost stops here).
        s->header_list_too_large = true;
        return 0;
    }
    if (s->header_list_too_large) return 0;
    auto& req = s->req;
    if (!n.empty() && n.front() == ':') {
        // nghttp2 has checked that each pseudo-header is known, once, and before the fields.
        if (n == ":method") {
            req.method_string(v);
        } else if (n == ":path") {
            req.target(v);
        } else if (n == ":authority") {
            s->had_authority = true;
            req.set(http::field::host, v);
        }
        // :scheme is not used: the request reached this listener, whatever it names.
        return 0;
    }
    if (n == "cookie") {
        if (s->had_cookie) s->cookie += "; ";
        s->cookie.append(v);
        s->had_cookie = true;
        return 0;
    }
    if (n == "host") {
        if (s->had_host_field) {
            s->problem = "more than one Host field";
        }
        s->had_host_field = true;
        s->host_field.assign(v);
        return 0;
    }
    req.insert(n, v);
    return 0;
}

int h2_connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
        case NGHTTP2_HEADERS: {
            auto* s = self.find(frame->hd.stream_id);
            if (!s || s->refused) return 0;
            if (!s->head_done) {
                if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
                s->body_done = end_stream;
                self.head_complete(*s);
            } else if (s->in_trailers) {
                s->body_done = true;  // nghttp2 refuses a trailer block without END_STREAM
            }
            if (s->body_done) self.request_complete(*s);
            return 0;
        }
        case NGHTTP2_DATA: {
            auto* s = self.find(frame->hd.stream_id);
            if (!s || s->refused) return 0;
            if (end_stream) {
                s->body_done = true;
                self.request_complete(*s);
            }
            return 0;
        }
        default: return 0;
    }
}

int h2_connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id, const std::uint8_t* data,
                                 std::size_t len, void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    auto* s = self.find(stream_id);
    if (!s || s->refused || s->answered || s->body_too_large) return 0;
    s->had_data = true;
    auto& body = s->req.body();
    if (len > s->body_limit || body.size() > s->body_limit - len) {
        // Answered 413 now, without waiting for the rest (which is dropped as it comes).
        s->body_too_large = true;
        body.clear();
        body.shrink_to_fit();
        self.request_complete(*s);
        return 0;
    }
    body.append(reinterpret_cast<const char*>(data), len);
    return 0;
}

int h2_connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t, void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    auto it = self.streams_.find(stream_id);
    if (it == self.streams_.end()) return 0;
    auto s = std::move(it->second);
    self.streams_.erase(it);
    s->closed = true;
    if (s->handling) ++self.orphans_;
    return 0;
}

int h2_connection::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    if (frame->hd.type == NGHTTP2_GOAWAY) static_cast<h2_connection*>(p)->ev_.on_goaway_sent(frame->goaway.error_code);
    return 0;
}

ssize_t h2_connection::read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf, std::size_t length,
                                 std::uint32_t* data_flags, nghttp2_data_source*, void* p) {
    auto& self = *static_cast<h2_connection*>(p);
    auto* s = self.find(stream_id);
    if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const auto n = std::min(length, s->response_body.size() - s->response_sent);
    std::memcpy(buf, s->response_body.data() + s->response_sent, n);
    s->response_sent += n;
    if (s->response_sent == s->response_body.size()) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        std::string().swap(s->response_body);
        s->response_sent = 0;
    }
    return static_cast<ssize_t>(n);
}

// ---- the request --------------------------------------------------------------------------

void h2_connection::head_complete(h2_stream& s) {
    s.head_done = true;
    s.head_at = std::chrono::steady_clock::now();
    auto& req = s.req;
    req.version(11);  // what the rest of the front (and forward's HTTP/1.1 upstream) expects
    if (s.had_cookie) req.set(http::field::cookie, s.cookie);
    if (s.had_host_field) {
        // RFC 9113 §8.3.1: :authority wins; a Host that names another authority is malformed.
        if (!s.had_authority) {
            req.set(http::field::host, s.host_field);
        } else if (!iequals(s.host_field, req[http::field::host])) {
            s.problem = "the Host field names another authority than :authority";
        }
    }
    if (s.header_list_too_large) {
        // Nothing more of this request is kept; its head is answered 431 by the owner.
        req = {};
        req.version(11);
    }
    ev_.on_head(s);
}

void h2_connection::request_complete(h2_stream& s) {
    if (s.refused || s.answered || s.handling || s.closed) return;
    if (!s.body_too_large && s.had_data) s.req.content_length(s.req.body().size());
    s.handling = true;
    auto it = streams_.find(s.id);
    if (it == streams_.end()) return;
    ev_.on_request(it->second);
}

}  // namespace handoff::proxy::front
