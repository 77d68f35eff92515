#include "handoff/proxy/dispatch/route_table.hpp"

#include <algorithm>

namespace handoff::proxy {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = path.find('/', start);
        out.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return out;
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_unreserved(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

char upper_hex(char c) noexcept { return (c >= 'a' && c <= 'f') ? static_cast<char>(c - 'a' + 'A') : c; }

bool equals_folded(std::string_view a, std::string_view b) noexcept {
    const auto fold = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) { return fold(x) == fold(y); });
}

// In a normalised path: a ';' in a segment, raw or encoded (escapes are uppercase there).
bool has_path_parameters(std::string_view normalised) noexcept {
    return normalised.find(';') != std::string_view::npos || normalised.find("%3B") != std::string_view::npos;
}

// The path as a server that strips path parameters sees it: each segment cut at its first ';'
// (raw or %3B), "/orders;v=1/items;x" -> "/orders/items".
std::string without_path_parameters(std::string_view normalised) {
    std::string out;
    out.reserve(normalised.size());
    bool cut = false;
    for (std::size_t i = 0; i < normalised.size(); ++i) {
        const char c = normalised[i];
        if (c == '/') {
            cut = false;
        } else if (cut) {
            continue;
        } else if (c == ';' || normalised.substr(i, 3) == "%3B") {
            cut = true;
            continue;
        }
        out.push_back(c);
    }
    return out;
}

route_match ambiguous(std::string reason) {
    route_match m;
    m.result = route_match::kind::ambiguous;
    m.reason = std::move(reason);
    return m;
}

}  // namespace

std::string normalise_path(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '%' || i + 2 >= path.size() || hex_value(path[i + 1]) < 0 || hex_value(path[i + 2]) < 0) {
            out.push_back(path[i]);
            continue;
        }
        const char c = static_cast<char>(hex_value(path[i + 1]) * 16 + hex_value(path[i + 2]));
        if (is_unreserved(c)) {
            out.push_back(c);
        } else {
            out.push_back('%');
            out.push_back(upper_hex(path[i + 1]));
            out.push_back(upper_hex(path[i + 2]));
        }
        i += 2;
    }
    return out;
}

bool is_converted(const config::route& r) noexcept {
    return config::produces(r.mode) || (r.canary_percent_bp > 0 && config::produces(r.canary_mode));
}

bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) return false;
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

route_table::route_table(std::shared_ptr<const config::config> cfg)
    : cfg_(std::move(cfg)), sequences_(std::make_unique<std::atomic<std::uint64_t>[]>(cfg_->routes.size() + 1)) {}

std::uint64_t route_table::next_sequence(const config::route& r) const noexcept {
    const auto i = static_cast<std::size_t>(&r - cfg_->routes.data());
    if (i >= cfg_->routes.size()) return 0;
    return sequences_[i].fetch_add(1, std::memory_order_relaxed);
}

std::shared_ptr<const route_table> route_table::create(std::shared_ptr<const config::config> cfg) {
    auto table = std::shared_ptr<route_table>(new route_table(std::move(cfg)));
    for (const auto& r : table->cfg_->routes) {
        entry e;
        e.route = &r;
        const auto path = normalise_path(r.path);
        for (auto seg : table->split(path)) {
            segment s;
            if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
                s.param = true;
                s.text = std::string(seg.substr(1, seg.size() - 2));
            } else {
                s.text = std::string(seg);
            }
            e.specificity.push_back(s.param ? 'P' : 'L');
            e.segments.push_back(std::move(s));
        }
        table->entries_.push_back(std::move(e));
    }
    // 'L' < 'P': literal segments sort first, position by position; config order breaks ties.
    std::stable_sort(table->entries_.begin(), table->entries_.end(),
                     [](const entry& a, const entry& b) { return a.specificity < b.specificity; });
    return table;
}

bool route_table::accepts(const config::route& r, std::string_view method) noexcept {
    if (r.methods.empty()) return true;
    // A route that serves GET serves HEAD too (RFC 9110 §9.3.2), unless it is converted to an
    // event: a HEAD must not produce anything.
    const bool head_as_get = method == "HEAD" && r.mode == config::mode::forward;
    return std::any_of(r.methods.begin(), r.methods.end(),
                       [&](const std::string& m) { return m == method || (head_as_get && m == "GET"); });
}

std::vector<std::string_view> route_table::split(std::string_view normalised) const {
    auto parts = split_path(normalised);
    // "/orders/" -> "/orders" (never "/" -> ""): one trailing slash at most gets here, since
    // target_problem refuses empty segments elsewhere.
    if (cfg_->routing.trailing_slash == config::trailing_slash::match && parts.size() > 1 && parts.back().empty()) {
        parts.pop_back();
    }
    return parts;
}

route_match route_table::find(std::string_view method, const std::vector<std::string_view>& parts,
                              bool fold_case) const {
    route_match out;
    std::vector<std::string> allow;
    for (const auto& e : entries_) {
        if (e.segments.size() != parts.size()) continue;
        bool ok = true;
        for (std::size_t i = 0; i < parts.size() && ok; ++i) {
            if (e.segments[i].param) {
                ok = !parts[i].empty();
            } else {
                ok = fold_case ? equals_folded(e.segments[i].text, parts[i]) : e.segments[i].text == parts[i];
            }
        }
        if (!ok) continue;
        if (!accepts(*e.route, method)) {
            for (const auto& m : e.route->methods) {
                if (std::find(allow.begin(), allow.end(), m) == allow.end()) allow.push_back(m);
            }
            continue;
        }
        out.result = route_match::kind::matched;
        out.route = e.route;
        for (std::size_t i = 0; i < parts.size(); ++i) {
            if (!e.segments[i].param) continue;
            std::string decoded;
            if (!percent_decode(parts[i], decoded)) decoded = std::string(parts[i]);
            out.params.emplace_back(e.segments[i].text, std::move(decoded));
        }
        return out;
    }
    if (!allow.empty()) {
        out.result = route_match::kind::method_not_allowed;
        for (std::size_t i = 0; i < allow.size(); ++i) {
            if (i) out.allow += ", ";
            out.allow += allow[i];
        }
    }
    return out;
}

route_match route_table::match(std::string_view method, std::string_view path) const {
    // Most paths have no escape: they are matched as received, without a copy.
    std::string normalised;
    std::string_view norm = path;
    if (path.find('%') != std::string_view::npos) {
        normalised = normalise_path(path);
        norm = normalised;
    }
    if (has_path_parameters(norm)) {
        const auto stripped = without_path_parameters(norm);
        auto parts = split(stripped);
        // Cutting "/;x/orders" leaves "//orders", which such servers also merge into "/orders".
        const bool trailing = parts.size() > 1 && parts.back().empty();
        parts.erase(std::remove(parts.begin(), parts.end(), std::string_view{}), parts.end());
        if (parts.empty() || trailing) parts.emplace_back();
        const auto near = find(method, parts, /*fold_case=*/true);
        if (near.result == route_match::kind::matched && is_converted(*near.route)) {
            return ambiguous(
                "the path has path parameters (';') and without them it is the path of a route that publishes events; "
                "servers disagree on ';' (Tomcat strips it, others do not), so the request is refused rather than "
                "forwarded");
        }
    }
    const auto parts = split(norm);
    auto exact = find(method, parts, /*fold_case=*/false);
    if (exact.result == route_match::kind::matched) return exact;
    const auto folded = find(method, parts, /*fold_case=*/true);
    if (folded.result == route_match::kind::matched && is_converted(*folded.route)) {
        return ambiguous(
            "the path differs only in letter case from the path of a route that publishes events; some servers match "
            "paths case-insensitively, so the request is refused rather than forwarded");
    }
    return exact;
}

}  // namespace handoff::proxy
