// Value rules of the config file: character classes, sizes, durations, names, and the one
// name <-> value table of each enum. Pure functions (no YAML, no error reporting), shared by the
// loader, the JSON output and the OpenAPI importer. Private to config/.
#pragma once

#include "handoff/config/config.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace handoff::config::detail {

constexpr std::size_t kib = 1024;
constexpr std::size_t max_body_limit = kib * kib * kib;  // 1 GiB

// ---- character classes ------------------------------------------------------------------------

bool is_alpha(char c);
bool is_digit(char c);
bool is_alnum(char c);
// RFC 9110 tchar: the characters of a method or header name.
bool is_tchar(char c);
bool is_token(std::string_view s);
// [A-Za-z_][A-Za-z0-9_]*: path parameters, environment variable names.
bool is_ident(std::string_view s);
// RFC 3986 pchar, allowing '%' for percent-encoded octets.
bool is_pchar(char c);
int hex_digit(char c);

// ---- strings ----------------------------------------------------------------------------------

std::string lower(std::string s);
std::string upper(std::string s);
// Without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s);
std::size_t edit_distance(std::string_view a, std::string_view b);

// ---- values -----------------------------------------------------------------------------------

// A literal route segment that no request could match: the proxy refuses dot segments and encoded
// '/', and matches requests with unreserved characters decoded (README "Route matching").
std::optional<std::string> literal_segment_problem(const std::string& seg);
// "%c3%a9" -> "%C3%A9": escapes compare case-insensitively.
std::string upper_escapes(std::string seg);
// Route and subscription names: 1-64 of [A-Za-z0-9._-], starting with a letter or digit.
bool valid_name(std::string_view s);
// RFC 6901: "/a/b", where '~' is only ever followed by '0' or '1'.
bool valid_json_pointer(std::string_view s);
// An IPv4 or IPv6 literal.
bool valid_ip(const std::string& s);

// Sizes: bytes, or a number with B, KiB, MiB, GiB (1024-based) or KB, MB, GB (1000-based).
std::optional<unsigned long long> parse_size(std::string_view s);

enum class duration_problem { none, invalid, no_unit };
// A number with ms, s, m or h; `out` is set only when the answer is `none`.
duration_problem parse_duration(std::string_view s, millis& out);

// Kafka properties whose values are never shown (`to_redacted_json`).
bool is_secret_property(const std::string& name);

// ---- enum names: one table per enum, in the order error messages list them ----------------------

template <class E>
using enum_name = std::pair<std::string_view, E>;

inline constexpr enum_name<mode> mode_names[] = {{"forward", mode::forward},
                                                 {"event", mode::event},
                                                 {"commit", mode::commit},
                                                 {"shadow", mode::shadow},
                                                 {"reply", mode::reply}};
inline constexpr enum_name<profile_kind> profile_names[] = {{"development", profile_kind::development},
                                                            {"production", profile_kind::production}};
inline constexpr enum_name<forwarded_for> forwarded_for_names[] = {{"append", forwarded_for::append},
                                                                   {"replace", forwarded_for::replace}};
inline constexpr enum_name<trailing_slash> trailing_slash_names[] = {{"match", trailing_slash::match},
                                                                     {"strict", trailing_slash::strict}};
inline constexpr enum_name<ordering> ordering_names[] = {
    {"key", ordering::key}, {"partition", ordering::partition}, {"none", ordering::none}};
inline constexpr enum_name<jitter> jitter_names[] = {{"full", jitter::full}, {"none", jitter::none}};
inline constexpr enum_name<offset_reset> offset_reset_names[] = {
    {"earliest", offset_reset::earliest}, {"latest", offset_reset::latest}, {"error", offset_reset::error}};

// The name of `value` in `table` (the names are string literals, so NUL-terminated).
template <class E, std::size_t N>
constexpr const char* name_of(const enum_name<E> (&table)[N], E value) noexcept {
    for (const auto& [name, v] : table) {
        if (v == value) return name.data();
    }
    return "unknown";
}

// The value named `name` in `table`, if any.
template <class E, std::size_t N>
constexpr std::optional<E> value_of(const enum_name<E> (&table)[N], std::string_view name) noexcept {
    for (const auto& [n, v] : table) {
        if (n == name) return v;
    }
    return std::nullopt;
}

}  // namespace handoff::config::detail
