#include "values.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <vector>

namespace handoff::config::detail {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

bool is_tchar(char c) { return is_alnum(c) || (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr); }

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

bool is_ident(std::string_view s) {
    if (s.empty() || !(is_alpha(s[0]) || s[0] == '_')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

bool is_pchar(char c) { return is_alnum(c) || (c != '\0' && std::strchr("-._~!$&'()*+,;=:@%", c) != nullptr); }

int hex_digit(char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::string> literal_segment_problem(const std::string& seg) {
    if (seg == "." || seg == "..") return "dot segments are not allowed (requests with them are refused)";
    for (std::size_t i = 0; i < seg.size(); ++i) {
        if (seg[i] != '%') continue;
        if (i + 2 >= seg.size() || hex_digit(seg[i + 1]) < 0 || hex_digit(seg[i + 2]) < 0) {
            return std::string("malformed percent-escape");
        }
        const char c = static_cast<char>(hex_digit(seg[i + 1]) * 16 + hex_digit(seg[i + 2]));
        if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            return "write '" + std::string(1, c) + "' rather than '" + seg.substr(i, 3) +
                   "' (unreserved characters are matched decoded)";
        }
        if (c == '/' || c == '\\' || c == '\0')
            return "an encoded '/', '\\' or NUL is not allowed (requests with them are refused)";
        i += 2;
    }
    return std::nullopt;
}

std::string upper_escapes(std::string seg) {
    for (std::size_t i = 0; i + 2 < seg.size(); ++i) {
        if (seg[i] != '%') continue;
        for (std::size_t k = i + 1; k <= i + 2; ++k) {
            if (seg[k] >= 'a' && seg[k] <= 'f') seg[k] = static_cast<char>(seg[k] - 'a' + 'A');
        }
        i += 2;
    }
    return seg;
}

bool valid_name(std::string_view s) {
    if (s.empty() || s.size() > 64 || !is_alnum(s[0])) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool valid_json_pointer(std::string_view s) {
    if (s.empty() || s[0] != '/') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '~' && (i + 1 == s.size() || (s[i + 1] != '0' && s[i + 1] != '1'))) return false;
    }
    return true;
}

bool valid_ip(const std::string& s) {
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string upper(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

namespace {

// Leading decimal digits of `s` as an unsigned number; `rest` gets what follows.
bool leading_number(std::string_view s, unsigned long long& n, std::string_view& rest) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || p == s.data()) return false;
    rest = trim(std::string_view(p, static_cast<std::size_t>(s.data() + s.size() - p)));
    return true;
}

bool multiply(unsigned long long n, unsigned long long unit, unsigned long long& out) {
    if (n > std::numeric_limits<unsigned long long>::max() / unit) return false;
    out = n * unit;
    return true;
}

}  // namespace

std::optional<unsigned long long> parse_size(std::string_view s) {
    unsigned long long n = 0;
    std::string_view unit;
    if (!leading_number(trim(s), n, unit)) return std::nullopt;
    static const std::pair<std::string_view, unsigned long long> units[] = {{"", 1},
                                                                            {"B", 1},
                                                                            {"KiB", 1ull << 10},
                                                                            {"MiB", 1ull << 20},
                                                                            {"GiB", 1ull << 30},
                                                                            {"KB", 1000},
                                                                            {"MB", 1000 * 1000},
                                                                            {"GB", 1000 * 1000 * 1000}};
    for (const auto& [name, factor] : units) {
        unsigned long long out = 0;
        if (unit == name) return multiply(n, factor, out) ? std::optional(out) : std::nullopt;
    }
    return std::nullopt;
}

duration_problem parse_duration(std::string_view s, millis& out) {
    unsigned long long n = 0;
    std::string_view unit;
    if (!leading_number(trim(s), n, unit)) return duration_problem::invalid;
    if (unit.empty()) return duration_problem::no_unit;
    static const std::pair<std::string_view, unsigned long long> units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    for (const auto& [name, factor] : units) {
        unsigned long long ms = 0;
        if (unit != name) continue;
        if (!multiply(n, factor, ms) || ms > static_cast<unsigned long long>(std::numeric_limits<millis::rep>::max())) {
            return duration_problem::invalid;
        }
        out = millis(static_cast<millis::rep>(ms));
        return duration_problem::none;
    }
    return duration_problem::invalid;
}

bool is_secret_property(const std::string& name) {
    const std::string n = lower(name);
    for (const char* s : {"password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl.keystore.password"}) {
        if (n.find(s) != std::string::npos) return true;
    }
    return false;
}

}  // namespace handoff::config::detail
