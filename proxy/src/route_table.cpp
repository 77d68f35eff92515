#include "handoff/proxy/route_table.hpp"

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

}  // namespace

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
        for (auto seg : split_path(r.path)) {
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

route_match route_table::match(std::string_view method, std::string_view path) const {
    route_match out;
    const auto parts = split_path(path);
    std::vector<std::string> allow;
    for (const auto& e : entries_) {
        if (e.segments.size() != parts.size()) continue;
        bool ok = true;
        for (std::size_t i = 0; i < parts.size() && ok; ++i) {
            if (e.segments[i].param) {
                ok = !parts[i].empty();
            } else {
                ok = e.segments[i].text == parts[i];
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

}  // namespace handoff::proxy
