// HTTP/2 on one connection, in memory: nghttp2's server session, the streams' requests as they
// arrive (a Beast request each, so the rest of the front handles them as it handles HTTP/1.1),
// and their answers. No socket: bytes go in through receive() and come out of pull(), so the
// session driver (h2_session.cpp) owns the I/O and the fuzzer (tests/fuzz/fuzz_h2_frames.cpp)
// drives it from a buffer.
//
// What nghttp2 does: framing, HPACK, flow control (WINDOW_UPDATE as bodies are consumed), stream
// states, the pseudo-header and connection-specific header rules of RFC 9113 §8 (a malformed
// request resets its stream), and the flood limits set in the constructor (rapid reset, CONTINUATION,
// SETTINGS, queued PING/SETTINGS acknowledgements). What this class adds: the header list bound
// (answered 431), the bound on requests still being handled after their stream closed (rapid
// reset of complete requests: REFUSED_STREAM beyond it), the request's Host from :authority,
// cookies joined, trailers refused when they carry framing, routing or authentication fields.
#pragma once

#include "server/front.hpp"

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace handoff::proxy::front {

// The client connection preface (RFC 9113 §3.4).
inline constexpr std::string_view h2_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2_limits {
    std::uint32_t max_concurrent_streams = 100;     // SETTINGS_MAX_CONCURRENT_STREAMS
    std::size_t max_header_list_bytes = 16 * 1024;  // RFC 9113 §6.5.2 accounting; above: 431
    std::uint32_t initial_window = 1 << 20;         // each stream's receive window, and the connection's
};

// One stream: its request as it arrives, then its answer.
struct h2_stream {
    std::int32_t id = 0;
    http::request<http::string_body> req;           // version 11; Host from :authority
    std::chrono::steady_clock::time_point opened;   // its first HEADERS frame
    std::chrono::steady_clock::time_point head_at;  // its head complete
    std::chrono::steady_clock::time_point answered_at;
    std::size_t header_list_bytes = 0;
    bool header_list_too_large = false;
    bool refused = false;      // reset with REFUSED_STREAM at its first frame: nothing is read
    bool head_done = false;    // the request head is complete (END_HEADERS)
    bool body_done = false;    // END_STREAM received
    bool had_data = false;     // a DATA frame came (a body, possibly empty)
    bool in_trailers = false;  // a second header block (trailers) is being received
    bool forbidden_trailer = false;
    bool body_too_large = false;        // more than body_limit arrived (the rest is dropped)
    std::size_t body_limit = SIZE_MAX;  // set by the driver when it admits the head
    bool handling = false;              // given to the driver's handler; not answered yet
    bool answered = false;              // an answer was submitted
    bool closed = false;                // nghttp2 closed the stream (sent, or reset by either side)
    std::string cookie;                 // cookie fields, joined with "; " (RFC 9113 §8.2.3)
    bool had_cookie = false;
    bool had_authority = false;
    std::string host_field;  // a Host field sent beside :authority
    bool had_host_field = false;
    std::string problem;        // why the head is malformed beyond nghttp2's checks (400)
    std::string response_body;  // the answer's body, read by nghttp2 as it sends
    std::size_t response_sent = 0;
    std::shared_ptr<void> driver_data;  // what the driver keeps with the stream
};

class h2_connection {
public:
    // What the connection hands to its owner. Calls come from inside receive() (nghttp2's
    // callbacks); the owner may call answer() from them, or later.
    struct events {
        virtual ~events() = default;
        // The request head is complete. The owner admits it: answer() at once (a refusal; the
        // body, if one follows, is dropped), or set `body_limit` and let the body come.
        virtual void on_head(h2_stream& s) = 0;
        // The request is complete (head and body) and was not answered from on_head; the owner
        // handles it and calls answer(), now or later.
        virtual void on_request(const std::shared_ptr<h2_stream>& s) = 0;
        // A new stream was refused (REFUSED_STREAM): the bound on streams was reached.
        virtual void on_refused() {}
        // A GOAWAY with this error code went out (nghttp2's, on a protocol error or a flood, or
        // terminate()'s).
        virtual void on_goaway_sent(std::uint32_t /*error_code*/) {}
    };

    h2_connection(events& ev, const h2_limits& limits);
    ~h2_connection();
    h2_connection(const h2_connection&) = delete;
    h2_connection& operator=(const h2_connection&) = delete;

    // The HTTP/1.1 Upgrade (RFC 7540 §3.2): `settings` is the HTTP2-Settings header's value
    // (base64url); the upgraded request becomes stream 1, given here complete, and on_head and
    // on_request are called for it. False: the header is not valid (the caller answers 400 over
    // HTTP/1.1 instead of switching).
    bool upgrade(std::string_view settings, http::request<http::string_body> req);
    // Whether an HTTP2-Settings value decodes to a SETTINGS payload (whole 6-byte entries).
    static bool valid_settings(std::string_view settings);

    // Feeds bytes read from the peer. False: a fatal error (a flood, a CONTINUATION flood, not
    // HTTP/2 at all): nothing more is read or sent through nghttp2; write final_goaway(), if any,
    // and close. A protocol error that nghttp2 answers itself (a GOAWAY it queues) returns true:
    // pull() sends it and alive() turns false.
    bool receive(const std::uint8_t* data, std::size_t n);
    // After receive() returned false: the GOAWAY frame to send before closing (ENHANCE_YOUR_CALM
    // for a flood), built here since nghttp2 sends nothing more; empty when the peer never spoke
    // HTTP/2 (a bad preface).
    std::string final_goaway() const;

    // Appends bytes to send to `out`, up to about `max`. Returns the bytes appended.
    std::size_t pull(std::string& out, std::size_t max);

    // Submits the answer of a stream (an h2_stream the events handed out). Returns false when the
    // stream has closed meanwhile (the answer is dropped). `head_request`: headers only.
    bool answer(h2_stream& s, outcome& o, bool head_request);
    // A 100 (Continue) interim response, for a request that asked for it.
    void send_continue(h2_stream& s);
    // Resets a stream (e.g. its body did not arrive in time), with this HTTP/2 error code.
    void reset(h2_stream& s, std::uint32_t error_code);
    // A stream's handler finished (answered or not): it no longer counts against the bound.
    void handler_done(h2_stream& s);

    // GOAWAY with NO_ERROR: no new stream is accepted; those open are still answered.
    void shut_down();
    // GOAWAY with this error code and close once it is sent (a timeout, a protocol failure).
    void terminate(std::uint32_t error_code);

    // Whether the connection is still wanted: nghttp2 wants to read or write, or a stream waits
    // for its answer.
    bool alive() const;
    // Streams open or being handled (0: the connection is idle).
    std::size_t active() const { return streams_.size() + orphans_; }
    template <class F>
    void for_each_stream(F&& f) {
        for (auto& [id, s] : streams_) f(*s);
    }
    // Requests whose stream closed while they were being handled; they count against
    // max_concurrent_streams, so that resetting complete requests cannot pile up work.
    std::size_t orphans() const { return orphans_; }

private:
    static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t flags, void* self);
    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
    static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id, const std::uint8_t* data,
                             std::size_t len, void* self);
    static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t, void* self);
    static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* self);
    static ssize_t read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* data_flags, nghttp2_data_source* source, void* self);

    h2_stream* find(std::int32_t id);
    void head_complete(h2_stream& s);
    void request_complete(h2_stream& s);

    events& ev_;
    h2_limits limits_;
    nghttp2_session* session_ = nullptr;
    std::unordered_map<std::int32_t, std::shared_ptr<h2_stream>> streams_;
    std::size_t orphans_ = 0;
    bool terminated_ = false;
    int fatal_ = 0;  // receive()'s fatal nghttp2 error, if any
};

}  // namespace handoff::proxy::front
