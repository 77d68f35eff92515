#include "handoff/common/http_rules.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace handoff::proxy {
namespace {

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

template <class F>
void for_each_token(std::string_view list, F&& f) {
    std::size_t start = 0;
    while (start <= list.size()) {
        const auto comma = list.find(',', start);
        const auto token =
            trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!token.empty()) f(token);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
}

constexpr std::array<std::string_view, 9> hop_by_hop = {
    "connection", "keep-alive",          "proxy-connection",  "te", "trailer", "transfer-encoding",
    "upgrade",    "proxy-authorization", "proxy-authenticate"};

// Beyond hop-by-hop: framing, routing, request modifiers and authentication (RFC 9110 §6.5.1).
constexpr std::array<std::string_view, 11> forbidden_trailers = {"content-length",   "host",
                                                                 "expect",           "range",
                                                                 "authorization",    "cookie",
                                                                 "content-type",     "content-encoding",
                                                                 "x-correlation-id", "x-forwarded-for",
                                                                 "idempotency-key"};

constexpr std::array<bool, 256> tchar_table = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

bool is_tchar(char c) noexcept { return tchar_table[static_cast<unsigned char>(c)]; }

// uri-host [":" port]: unreserved / pct-encoded / sub-delims, ':' and the IP-literal brackets.
bool is_authority_char(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '-':
        case '.':
        case '_':
        case '~':
        case '%':
        case '!':
        case '$':
        case '&':
        case '\'':
        case '(':
        case ')':
        case '*':
        case '+':
        case ',':
        case ';':
        case '=':
        case ':':
        case '[':
        case ']': return true;
        default: return false;
    }
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0, min = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (s.size() - i < len) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    // ASCII case folding (field names and tokens are ASCII), without the locale.
    const auto fold = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (fold(a[i]) != fold(b[i])) return false;
    }
    return true;
}

namespace {

// is_hop_by_hop for a field Beast has already named: the enum when Beast knows the name.
bool is_hop_by_hop_field(http::field f, std::string_view name) noexcept {
    switch (f) {
        case http::field::connection:
        case http::field::keep_alive:
        case http::field::proxy_connection:
        case http::field::te:
        case http::field::trailer:
        case http::field::transfer_encoding:
        case http::field::upgrade:
        case http::field::proxy_authorization:
        case http::field::proxy_authenticate: return true;
        case http::field::unknown: return is_hop_by_hop(name);
        default: return false;
    }
}

}  // namespace

bool is_hop_by_hop(std::string_view name) noexcept {
    for (auto h : hop_by_hop) {
        if (iequals(name, h)) return true;
    }
    return false;
}

std::optional<std::string> framing_problem(const http::request_header<>& head) {
    std::size_t te_count = 0, cl_count = 0, host_count = 0;
    std::string_view te_value;
    for (const auto& f : head) {
        // Beast names the fields it knows (case-insensitively) when it parses them.
        switch (f.name()) {
            case http::field::transfer_encoding:
                ++te_count;
                te_value = f.value();
                break;
            case http::field::content_length: ++cl_count; break;
            case http::field::host: ++host_count; break;
            default: break;
        }
    }
    if (te_count > 0) {
        if (cl_count > 0) return "both Content-Length and Transfer-Encoding are present";
        if (head.version() < 11) return "Transfer-Encoding is not allowed in an HTTP/1.0 request";
        if (te_count > 1) return "more than one Transfer-Encoding header";
        if (!iequals(trim(te_value), "chunked")) {
            return "only 'Transfer-Encoding: chunked' is accepted";
        }
    }
    if (cl_count > 1) return "more than one Content-Length header";
    if (head.version() >= 11 && host_count == 0) return "an HTTP/1.1 request needs a Host header";
    if (host_count > 1) return "more than one Host header";
    if (auto p = method_problem(head.method_string())) return p;
    if (auto p = target_problem(head.target())) return p;
    return header_problem(head);
}

std::optional<std::string> method_problem(std::string_view method) {
    if (method.empty()) return "the method is empty";
    if (method.size() > max_method_bytes)
        return "the method is longer than " + std::to_string(max_method_bytes) + " bytes";
    for (const char c : method) {
        if (!is_tchar(c)) return "the method is not a token";
        if (c >= 'a' && c <= 'z') return "methods are case-sensitive; lowercase methods are not served";
    }
    return std::nullopt;
}

std::optional<std::string> target_problem(std::string_view target) {
    if (target.empty() || target.front() != '/') return "the request target must be a path (origin-form)";
    for (const char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return "the request target must be visible ASCII (percent-encode other bytes)";
    }
    const auto q = target.find('?');
    const auto path = target.substr(0, q);
    // Every '%' (path and query) starts a valid escape.
    for (std::size_t i = 0; i < target.size(); ++i) {
        if (target[i] != '%') continue;
        if (i + 2 >= target.size() || hex_value(target[i + 1]) < 0 || hex_value(target[i + 2]) < 0) {
            return "the request target has a malformed percent-escape";
        }
    }
    if (path.find('\\') != std::string_view::npos) return "a backslash is not allowed in the path";
    // Segments: no empty segment (except a trailing '/'), no dot segments, no encoded separators.
    std::size_t start = 1;
    while (start <= path.size()) {
        const auto slash = path.find('/', start);
        const auto seg = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (seg.empty() && slash != std::string_view::npos) return "the path has an empty segment ('//')";
        if (seg.find('%') == std::string_view::npos) {
            // Raw visible ASCII (checked above): only dot segments are left to refuse.
            if (seg == "." || seg == "..")
                return "dot segments ('.', '..', raw or encoded) are not allowed in the path";
            if (slash == std::string_view::npos) break;
            start = slash + 1;
            continue;
        }
        // Decode the segment's escapes (all valid, checked above: '/' and '?' are not hex digits,
        // so an escape never crosses a segment) just enough to see dots, slashes and NUL.
        std::string decoded;
        for (std::size_t i = 0; i < seg.size(); ++i) {
            if (seg[i] == '%' && i + 2 < seg.size()) {
                const int v = hex_value(seg[i + 1]) * 16 + hex_value(seg[i + 2]);
                if (v == '/' || v == '\\') return "an encoded '/' or '\\' is not allowed in the path";
                if (v == 0) return "an encoded NUL is not allowed in the path";
                decoded.push_back(static_cast<char>(v));
                i += 2;
            } else {
                decoded.push_back(seg[i]);
            }
        }
        if (decoded == "." || decoded == "..")
            return "dot segments ('.', '..', raw or encoded) are not allowed in the path";
        if (!valid_utf8(decoded)) return "the decoded path is not valid UTF-8 (overlong forms included)";
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return std::nullopt;
}

std::optional<std::string> header_problem(const http::request_header<>& head) {
    std::size_t count = 0;
    for (const auto& f : head) {
        if (++count > max_header_fields) return "more than " + std::to_string(max_header_fields) + " header fields";
        const auto name = f.name_string();
        if (name.empty()) return "a header field has an empty name";
        for (const char c : name) {
            if (c == '_') return "header names with '_' are refused (they alias '-' names behind some servers)";
            if (!is_tchar(c)) return "a header name is not a token";
        }
        if (!safe_header_value(f.value())) return "a header value contains a control character";
        if (f.name() == http::field::content_length) {
            const auto v = f.value();
            if (v.empty() || v.size() > 18) return "Content-Length must be 1 to 18 decimal digits";
            for (const char c : v) {
                if (c < '0' || c > '9') return "Content-Length must be 1 to 18 decimal digits";
            }
        } else if (f.name() == http::field::host) {
            for (const char c : f.value()) {
                if (!is_authority_char(c)) return "the Host header is not a valid host[:port]";
            }
        }
    }
    return std::nullopt;
}

bool safe_header_value(std::string_view v) noexcept {
    return std::none_of(v.begin(), v.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\t') || u == 0x7f;
    });
}

bool is_forbidden_trailer(std::string_view name) noexcept {
    if (is_hop_by_hop(name)) return true;
    for (auto n : forbidden_trailers) {
        if (iequals(name, n)) return true;
    }
    return false;
}

bool has_forbidden_trailer(const http::fields& head, const http::fields& with_trailers) {
    for (const auto& f : with_trailers) {
        const auto name = f.name_string();
        if (!is_forbidden_trailer(name)) continue;
        // A forbidden name that appears more often now than before came from a trailer.
        std::size_t before = 0, after = 0;
        for (const auto& g : head) before += iequals(g.name_string(), name) ? 1 : 0;
        for (const auto& g : with_trailers) after += iequals(g.name_string(), name) ? 1 : 0;
        if (after > before) return true;
    }
    return false;
}

bool chunk_extension_too_long(std::string_view extensions) noexcept {
    return extensions.size() > max_chunk_extension_bytes;
}

std::size_t leading_empty_lines(std::string_view buffered) noexcept {
    std::size_t n = 0;
    while (n + 1 < buffered.size() && buffered[n] == '\r' && buffered[n + 1] == '\n') n += 2;
    return n;
}

bool end_to_end_fields::own(http::field f, std::string_view name) const noexcept {
    // Beast names every hop-by-hop field and Content-Length; X-Correlation-ID and X-Forwarded-*
    // are unknown to it. Only an unknown name of the right length is compared.
    if (f != http::field::unknown) return is_hop_by_hop_field(f, name) || f == http::field::content_length;
    switch (name.size()) {
        case 16: return iequals(name, "x-correlation-id");
        case 15: return request_ && iequals(name, "x-forwarded-for");
        case 17: return request_ && iequals(name, "x-forwarded-proto");
        default: return false;
    }
}

void end_to_end_fields::add(http::field f, std::string_view name, std::string_view value) {
    if (f == http::field::connection) {
        for_each_token(value, [&](std::string_view t) {
            if (iequals(t, "host") || iequals(t, "content-length") || is_hop_by_hop(t)) return;
            std::string lower(t);
            for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            nominated_.push_back(std::move(lower));
        });
        return;
    }
    if (own(f, name)) return;
    out_.reserve(out_.size() + name.size() + value.size() + 4);
    out_ += name;
    out_ += ": ";
    out_ += value;
    out_ += "\r\n";
}

std::string end_to_end_fields::take() {
    if (nominated_.empty()) return std::move(out_);
    // Rare: a Connection field named an end-to-end-looking field (RFC 9110 §7.6.1). Its lines go.
    std::string kept;
    kept.reserve(out_.size());
    std::string_view rest = out_;
    while (!rest.empty()) {
        const auto eol = rest.find("\r\n");
        const auto line = rest.substr(0, eol + 2);
        rest.remove_prefix(line.size());
        const auto name = line.substr(0, line.find(':'));
        const bool named =
            std::any_of(nominated_.begin(), nominated_.end(), [&](const std::string& n) { return iequals(name, n); });
        if (!named) kept += line;
    }
    return kept;
}

bool split_target(std::string_view target, std::string_view& path, std::string_view& query) noexcept {
    if (target.empty() || target.front() != '/') return false;
    const auto q = target.find('?');
    path = target.substr(0, q);
    query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    return true;
}

bool has_token(std::string_view list, std::string_view token) noexcept {
    bool found = false;
    for_each_token(list, [&](std::string_view t) { found = found || iequals(t, token); });
    return found;
}

bool is_token(std::string_view s) noexcept { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

std::string upstream_request_head(const http::request<http::string_body>& req, std::string_view forwarded_for,
                                  std::string_view correlation_id, std::optional<std::size_t> content_length) {
    end_to_end_fields fields(end_to_end_fields::message::request);
    for (const auto& f : req) fields.add(f.name(), f.name_string(), f.value());
    const auto kept = fields.take();
    const auto method = req.method_string();
    const auto target = req.target();
    std::string out;
    out.reserve(method.size() + target.size() + kept.size() + forwarded_for.size() + correlation_id.size() + 120);
    out += method;
    out += ' ';
    out += target;
    out += " HTTP/1.1\r\n";
    out += kept;
    out += "X-Forwarded-For: ";
    out += forwarded_for;
    out += "\r\nX-Forwarded-Proto: http\r\nX-Correlation-ID: ";
    out += correlation_id;
    out += "\r\n";
    if (content_length) {
        out += "Content-Length: ";
        out += std::to_string(*content_length);
        out += "\r\n";
    }
    out += "\r\n";
    return out;
}

namespace {

// "HTTP/1.1" for version 11: the digits of Beast's version number.
void append_version(std::string& out, unsigned v) {
    const char version[8] = {
        'H', 'T', 'T', 'P', '/', static_cast<char>('0' + v / 10 % 10), '.', static_cast<char>('0' + v % 10)};
    out.append(version, sizeof version);
}

template <bool IsRequest>
void append_fields(std::string& out, const http::header<IsRequest, http::fields>& head,
                   std::string_view more_fields = {}) {
    for (const auto& f : head) {
        out += f.name_string();
        out += ": ";
        out += f.value();
        out += "\r\n";
    }
    out += more_fields;
    out += "\r\n";
}

template <bool IsRequest>
std::size_t fields_size(const http::header<IsRequest, http::fields>& head) {
    std::size_t n = 2;
    for (const auto& f : head) n += f.name_string().size() + f.value().size() + 4;
    return n;
}

}  // namespace

void serialize_response_head(const http::response<http::string_body>& res, std::string& out) {
    serialize_response_head(res, {}, out);
}

void serialize_response_head(const http::response<http::string_body>& res, std::string_view more_fields,
                             std::string& out) {
    std::string_view reason = res.reason();
    if (reason.empty()) reason = http::obsolete_reason(res.result());
    const unsigned code = res.result_int();
    const char digits[5] = {' ', static_cast<char>('0' + code / 100 % 10), static_cast<char>('0' + code / 10 % 10),
                            static_cast<char>('0' + code % 10), ' '};
    out.reserve(out.size() + 15 + reason.size() + fields_size(res.base()) + more_fields.size());
    append_version(out, res.version());
    out.append(digits, sizeof digits);
    out += reason;
    out += "\r\n";
    append_fields(out, res.base(), more_fields);
}

void serialize_request_head(const http::request<http::string_body>& req, std::string& out) {
    const auto method = req.method_string();
    const auto target = req.target();
    out.reserve(out.size() + method.size() + target.size() + 12 + fields_size(req.base()));
    out += method;
    out += ' ';
    out += target;
    out += ' ';
    append_version(out, req.version());
    out += "\r\n";
    append_fields(out, req.base());
}

namespace {

// True when one of the 8 bytes of `w` needs escaping in a JSON string: below 0x20, '"' or '\\'.
// (SWAR: a byte b < n sets its top bit in (b - n) & ~b; a byte equal to c is one below 0x01 in b ^ c.)
constexpr std::uint64_t ones = 0x0101010101010101ULL;
constexpr std::uint64_t highs = 0x8080808080808080ULL;
inline bool needs_escape(std::uint64_t w) noexcept {
    const auto below = [](std::uint64_t x, std::uint64_t n) { return (x - ones * n) & ~x & highs; };
    return (below(w, 0x20) | below(w ^ (ones * '"'), 1) | below(w ^ (ones * '\\'), 1)) != 0;
}

}  // namespace

namespace {

// append_json_string, and with AsciiOnly its variant that gives up (appending nothing) at the
// first byte >= 0x80, in the same scan.
template <bool AsciiOnly>
bool append_json(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    const auto start = out.size();
    out.reserve(out.size() + s.size() + 2);
    out += '"';
    std::size_t run = 0;  // start of the pending run of bytes copied as they are
    std::size_t i = 0;
    for (;;) {
        // Skip 8 clean bytes at a time: the common case (IDs, names, most JSON) has no escape.
        while (i + 8 <= s.size()) {
            std::uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            if (needs_escape(w) || (AsciiOnly && (w & highs) != 0)) break;
            i += 8;
        }
        if (i >= s.size()) break;
        const auto u = static_cast<unsigned char>(s[i]);
        if (AsciiOnly && u >= 0x80) {
            out.resize(start);
            return false;
        }
        if (u >= 0x20 && u != '"' && u != '\\') {
            ++i;
            continue;
        }
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (u) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 0xF];
        }
        ++i;
    }
    out.append(s.data() + run, s.size() - run);
    out += '"';
    return true;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) { append_json<false>(out, s); }

bool append_json_ascii(std::string& out, std::string_view s) { return append_json<true>(out, s); }

}  // namespace handoff::proxy
