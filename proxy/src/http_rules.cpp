#include "handoff/proxy/http_rules.hpp"

#include <array>
#include <cctype>
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
        const auto token = trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!token.empty()) f(token);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
}

constexpr std::array<std::string_view, 9> hop_by_hop = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authorization", "proxy-authenticate"};

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    }
    return true;
}

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
        const auto name = f.name_string();
        if (iequals(name, "transfer-encoding")) {
            ++te_count;
            te_value = f.value();
        } else if (iequals(name, "content-length")) {
            ++cl_count;
        } else if (iequals(name, "host")) {
            ++host_count;
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
    return std::nullopt;
}

void remove_hop_by_hop(http::fields& fields) {
    std::vector<std::string> nominated;
    for (auto [it, end] = fields.equal_range(http::field::connection); it != end; ++it) {
        for_each_token(it->value(), [&](std::string_view t) {
            if (!iequals(t, "host") && !iequals(t, "content-length")) nominated.emplace_back(t);
        });
    }
    for (const auto& n : nominated) fields.erase(n);
    for (auto h : hop_by_hop) fields.erase(h);
}

bool split_target(std::string_view target, std::string_view& path, std::string_view& query) noexcept {
    if (target.empty() || target.front() != '/') return false;
    const auto q = target.find('?');
    path = target.substr(0, q);
    query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    return true;
}

}  // namespace handoff::proxy
