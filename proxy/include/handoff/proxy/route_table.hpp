// Route matching: pure, no I/O. Built once per config and shared read-only between sessions.
//
// Precedence: among routes whose path template matches, a route with more literal segments
// earlier in the path wins ("/orders/special" beats "/orders/{id}"); a route only serves
// methods it lists. When paths match but no route takes the method, the answer is 405 with the
// union of their methods in `allow`.
#pragma once

#include "handoff/config/config.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace handoff::proxy {

using path_params = std::vector<std::pair<std::string, std::string>>;  // name -> decoded value

struct route_match {
    enum class kind { matched, method_not_allowed, not_found };
    kind result = kind::not_found;
    const config::route* route = nullptr;  // set when matched; owned by the route_table's config
    path_params params;
    std::string allow;                     // "GET, POST" when method_not_allowed
};

class route_table {
public:
    // `cfg` is kept alive by the table; routes point into it.
    static std::shared_ptr<const route_table> create(std::shared_ptr<const config::config> cfg);

    // `path` is the request target's path without the query, as received (percent-encoded).
    route_match match(std::string_view method, std::string_view path) const;

    const config::config& cfg() const noexcept { return *cfg_; }

    // The number of requests that asked this before for `r` (a route of this table's config):
    // 0, 1, 2, ... per route; thread-safe. Canary routes without a key spread by it.
    std::uint64_t next_sequence(const config::route& r) const noexcept;

private:
    struct segment {
        bool param = false;
        std::string text;  // literal text, or parameter name
    };
    struct entry {
        const config::route* route = nullptr;
        std::vector<segment> segments;
        std::string specificity;  // 'L' for literal, 'P' for param, per segment; sorts literals first
    };

    explicit route_table(std::shared_ptr<const config::config> cfg);
    static bool accepts(const config::route& r, std::string_view method) noexcept;

    std::shared_ptr<const config::config> cfg_;
    std::vector<entry> entries_;  // most specific first
    std::unique_ptr<std::atomic<std::uint64_t>[]> sequences_;  // per route, by index in cfg_->routes
};

// Decodes %XX escapes in one path segment; returns false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out);

}  // namespace handoff::proxy
