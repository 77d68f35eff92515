// Route matching: pure, no I/O. Built once per config and shared read-only between sessions.
//
// Paths are compared after RFC 3986 normalisation (normalise_path): percent-encoded unreserved
// characters are decoded ("/%6Frders" is "/orders"), other escapes compare case-insensitively,
// and under routing.trailing_slash: match one trailing '/' is ignored ("/orders/" is "/orders").
// Dot segments, empty segments, encoded '/' and malformed escapes never get here: target_problem
// (http_rules) refuses them for every request first.
//
// A converted route (one that publishes: event, commit, shadow, reply, or a canary of one) must
// never be bypassed through `forward` by a spelling of its path that the legacy service might
// route to the same handler. So a request is `ambiguous` (400) when:
//   * its path has path parameters (';' in a segment, raw or as %3B) and the path without them
//     would be served by a converted route (Tomcat, Jetty and Spring strip them; others do not);
//   * no route matches it exactly, but a converted route does when literal segments are compared
//     ignoring ASCII case (Express and ASP.NET match case-insensitively by default).
// Requests are forwarded with their target as received: normalisation only chooses the route.
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
    enum class kind { matched, method_not_allowed, not_found, ambiguous };
    kind result = kind::not_found;
    const config::route* route = nullptr;  // set when matched; owned by the route_table's config
    path_params params;
    std::string allow;   // "GET, POST" when method_not_allowed
    std::string reason;  // why, when ambiguous (for the 400's message)
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
        std::vector<segment> segments;  // literals normalised (normalise_path)
        std::string specificity;        // 'L' for literal, 'P' for param, per segment; sorts literals first
    };

    explicit route_table(std::shared_ptr<const config::config> cfg);
    static bool accepts(const config::route& r, std::string_view method) noexcept;
    // The first entry (most specific first) whose segments match `parts` and that accepts
    // `method`; literals compared exactly or ignoring ASCII case. Fills params and allow.
    route_match find(std::string_view method, const std::vector<std::string_view>& parts, bool fold_case) const;
    std::vector<std::string_view> split(std::string_view normalised) const;

    std::shared_ptr<const config::config> cfg_;
    std::vector<entry> entries_;                               // most specific first
    std::unique_ptr<std::atomic<std::uint64_t>[]> sequences_;  // per route, by index in cfg_->routes
};

// Decodes %XX escapes in one path segment; returns false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out);

// RFC 3986 §6.2.2 syntax-based normalisation of a path, without dot-segment removal (such paths
// are refused, not rewritten): escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded,
// the hex digits of the others uppercased ("/%6Frders/caf%c3%a9" -> "/orders/caf%C3%A9"). A
// malformed escape is left as it is. Safe on any input.
std::string normalise_path(std::string_view path);

// True for a route that publishes (event, commit, shadow, reply), or may through its canary.
bool is_converted(const config::route& r) noexcept;

}  // namespace handoff::proxy
