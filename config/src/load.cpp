// Loader: YAML -> config, collecting every error. yaml-cpp stays inside this file.
//
// Shape: one `loader` walks the document once. Every map goes through `fields()` (unknown and
// duplicate keys), every scalar value through `scalar()` (${ENV} expansion), so those rules hold
// everywhere. Cross-field rules (route uniqueness, the Kafka durability guard) run after the walk.
#include "handoff/config/load.hpp"

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <sstream>

namespace handoff::config {
namespace {

constexpr std::size_t kib = 1024;
constexpr std::size_t max_body_limit = kib * kib * kib;  // 1 GiB

// ---- character classes and small parsers (pure) ------------------------------------------------

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

// RFC 9110 tchar: the characters of a method or header name.
bool is_tchar(char c) { return is_alnum(c) || (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr); }

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

bool is_ident(std::string_view s) {
    if (s.empty() || !(is_alpha(s[0]) || s[0] == '_')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

// RFC 3986 pchar, allowing '%' for percent-encoded octets.
bool is_pchar(char c) {
    return is_alnum(c) || (c != '\0' && std::strchr("-._~!$&'()*+,;=:@%", c) != nullptr);
}

int hex_digit(char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A literal route segment that no request could match: the proxy refuses dot segments and encoded
// '/', and matches requests with unreserved characters decoded (README "Route matching").
std::optional<std::string> literal_segment_problem(const std::string& seg) {
    if (seg == "." || seg == "..") return "dot segments are not allowed (requests with them are refused)";
    for (std::size_t i = 0; i < seg.size(); ++i) {
        if (seg[i] != '%') continue;
        if (i + 2 >= seg.size() || hex_digit(seg[i + 1]) < 0 || hex_digit(seg[i + 2]) < 0) {
            return std::string("malformed percent-escape");
        }
        const char c = static_cast<char>(hex_digit(seg[i + 1]) * 16 + hex_digit(seg[i + 2]));
        if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            return "write '" + std::string(1, c) + "' rather than '" + seg.substr(i, 3) + "' (unreserved characters are matched decoded)";
        }
        if (c == '/' || c == '\\' || c == '\0') return "an encoded '/', '\\' or NUL is not allowed (requests with them are refused)";
        i += 2;
    }
    return std::nullopt;
}

// "%c3%a9" -> "%C3%A9": escapes compare case-insensitively.
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

bool is_topic_char(char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; }

bool valid_route_name(std::string_view s) {
    if (s.empty() || s.size() > 64 || !is_alnum(s[0])) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

// RFC 6901: "/a/b", where '~' is only ever followed by '0' or '1'.
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

// Sizes: bytes, or a number with B, KiB, MiB, GiB (1024-based) or KB, MB, GB (1000-based).
std::optional<unsigned long long> parse_size(std::string_view s) {
    unsigned long long n = 0;
    std::string_view unit;
    if (!leading_number(trim(s), n, unit)) return std::nullopt;
    static const std::pair<std::string_view, unsigned long long> units[] = {
        {"", 1},           {"B", 1},           {"KiB", 1ull << 10},     {"MiB", 1ull << 20},
        {"GiB", 1ull << 30}, {"KB", 1000},     {"MB", 1000 * 1000},     {"GB", 1000 * 1000 * 1000}};
    for (const auto& [name, factor] : units) {
        unsigned long long out = 0;
        if (unit == name) return multiply(n, factor, out) ? std::optional(out) : std::nullopt;
    }
    return std::nullopt;
}

enum class duration_problem { none, invalid, no_unit };

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

// ---- the loader -------------------------------------------------------------------------------

struct entry {
    YAML::Node key;
    YAML::Node value;
};
using fields = std::map<std::string, entry, std::less<>>;

std::string join(const std::string& base, std::string_view key) {
    return base.empty() ? std::string(key) : base + "." + std::string(key);
}

// What route-level cross checks need beyond the route itself.
struct route_info {
    std::size_t index = 0;
    bool mode_known = false;
    bool path_valid = false;
    std::string shape;  // path with parameter names erased: "/orders/{}"
    YAML::Node name_node;
    YAML::Node node;
};

class loader {
public:
    loader(std::string file, env_lookup env) : file_(std::move(file)), env_(std::move(env)) {
        if (!env_) {
            env_ = [](const std::string& name) -> std::optional<std::string> {
                const char* v = std::getenv(name.c_str());
                return v ? std::optional<std::string>(v) : std::nullopt;
            };
        }
    }

    load_result run(std::string_view text) {
        load_result out;
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::Exception& e) {
            fail(e.mark, "", e.msg);
            out.errors = std::move(errors_);
            return out;
        }
        config c;
        c.file = file_;
        parse(root, c);
        if (errors_.empty()) {
            out.value = std::move(c);
        } else {
            // Cross-field checks run last; report in file order all the same.
            std::stable_sort(errors_.begin(), errors_.end(), [](const config_error& x, const config_error& y) {
                return std::pair(x.line, x.column) < std::pair(y.line, y.column);
            });
            out.errors = std::move(errors_);
        }
        return out;
    }

private:
    std::string file_;
    env_lookup env_;
    std::vector<config_error> errors_;

    // -- reporting
    void fail(const YAML::Mark& m, std::string path, std::string message) {
        const bool placed = m.line >= 0;
        errors_.push_back({file_, placed ? m.line + 1 : 0, placed ? m.column + 1 : 0, std::move(path),
                           std::move(message)});
    }
    void fail(const YAML::Node& n, std::string path, std::string message) {
        fail(n.Mark(), std::move(path), std::move(message));
    }

    // -- structure
    // Keys of map `n` checked against `allowed`; null counts as an empty map.
    std::optional<fields> map(const YAML::Node& n, const std::string& path,
                              std::initializer_list<std::string_view> allowed) {
        fields out;
        if (n.IsNull()) return out;
        if (!n.IsMap()) {
            fail(n, path, "map expected");
            return std::nullopt;
        }
        for (auto it = n.begin(); it != n.end(); ++it) {
            const YAML::Node k = it->first;
            if (!k.IsScalar()) {
                fail(k, path, "map keys must be plain strings");
                continue;
            }
            const std::string key = k.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string msg = "unknown key '" + key + "'";
                std::string_view best;
                std::size_t best_d = 3;
                for (auto a : allowed) {
                    if (const auto d = edit_distance(key, a); d < best_d) best_d = d, best = a;
                }
                if (!best.empty()) msg += " (did you mean '" + std::string(best) + "'?)";
                fail(k, join(path, key), std::move(msg));
                continue;
            }
            if (auto prev = out.find(key); prev != out.end()) {
                fail(k, join(path, key),
                     "duplicate key '" + key + "' (first at line " + std::to_string(prev->second.key.Mark().line + 1) + ")");
                continue;
            }
            out.emplace(key, entry{k, it->second});
        }
        return out;
    }

    static const entry* find(const fields& f, std::string_view key) {
        const auto it = f.find(key);
        return it == f.end() ? nullptr : &it->second;
    }

    // A scalar value with ${ENV} expanded; nullopt (after reporting) otherwise.
    std::optional<std::string> scalar(const YAML::Node& n, const std::string& path) {
        if (n.IsNull()) {
            fail(n, path, "value is missing");
            return std::nullopt;
        }
        if (!n.IsScalar()) {
            fail(n, path, n.IsMap() ? "scalar expected, got a map" : "scalar expected, got a list");
            return std::nullopt;
        }
        return expand(n, path, n.Scalar());
    }

    // ${NAME}, ${NAME:-default} (default also when NAME is empty, as in the shell), $${ -> ${.
    std::optional<std::string> expand(const YAML::Node& n, const std::string& path, const std::string& in) {
        std::string out;
        bool ok = true;
        std::size_t i = 0;
        while (i < in.size()) {
            if (in.compare(i, 3, "$${") == 0) {
                out += "${";
                i += 3;
            } else if (in.compare(i, 2, "${") == 0) {
                const auto close = in.find('}', i + 2);
                if (close == std::string::npos) {
                    fail(n, path, "unterminated '${' (write '$${' for a literal '${')");
                    return std::nullopt;
                }
                const std::string body = in.substr(i + 2, close - i - 2);
                const auto sep = body.find(":-");
                const std::string name = body.substr(0, sep);
                if (!is_ident(name)) {
                    fail(n, path, "invalid environment variable name '" + name + "' in '${" + body + "}'");
                    ok = false;
                } else {
                    const auto v = env_(name);
                    if (v && (sep == std::string::npos || !v->empty())) {
                        out += *v;
                    } else if (sep != std::string::npos) {
                        out += body.substr(sep + 2);
                    } else {
                        fail(n, path, "environment variable " + name + " is not set");
                        ok = false;
                    }
                }
                i = close + 1;
            } else {
                out += in[i++];
            }
        }
        return ok ? std::optional(std::move(out)) : std::nullopt;
    }

    // -- typed fields: each assigns `out` only when the key is present and valid

    void get_string(const fields& f, std::string_view key, const std::string& base, std::string& out,
                    bool non_empty = true) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        if (non_empty && v->empty()) {
            fail(e->value, path, "must not be empty");
            return;
        }
        out = std::move(*v);
    }

    template <class T>
    void get_int(const fields& f, std::string_view key, const std::string& base, T& out, long long lo, long long hi) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        long long n = 0;
        const auto s = trim(*v);
        const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) {
            fail(e->value, path, "integer expected, got '" + *v + "'");
        } else if (n < lo || n > hi) {
            fail(e->value, path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::to_string(n));
        } else {
            out = static_cast<T>(n);
        }
    }

    void get_port(const fields& f, std::string_view key, const std::string& base, std::uint16_t& out) {
        get_int(f, key, base, out, 1, 65535);
    }

    void get_bool(const fields& f, std::string_view key, const std::string& base, bool& out) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        const auto s = lower(*v);
        if (s == "true") {
            out = true;
        } else if (s == "false") {
            out = false;
        } else {
            fail(e->value, path, "true or false expected, got '" + *v + "'");
        }
    }

    void get_size(const fields& f, std::string_view key, const std::string& base, std::size_t& out,
                  std::size_t max = std::numeric_limits<std::size_t>::max()) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        const auto n = parse_size(*v);
        if (!n) {
            fail(e->value, path, "invalid size '" + *v + "' (bytes, or a number with B, KiB, MiB, GiB, KB, MB, GB)");
        } else if (*n == 0) {
            fail(e->value, path, "must be greater than 0");
        } else if (*n > max) {
            fail(e->value, path, "must be at most " + std::to_string(max) + " bytes, got '" + *v + "'");
        } else {
            out = static_cast<std::size_t>(*n);
        }
    }

    // `allow_zero`: 0 (with a unit, e.g. "0s") is a valid value, as for drain.delay.
    void get_duration(const fields& f, std::string_view key, const std::string& base, millis& out,
                      bool allow_zero = false) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        millis d{0};
        switch (parse_duration(*v, d)) {
            case duration_problem::no_unit:
                fail(e->value, path, "duration needs a unit (ms, s, m, h), e.g. '" + *v + "s'");
                return;
            case duration_problem::invalid:
                fail(e->value, path, "invalid duration '" + *v + "' (a number with ms, s, m or h)");
                return;
            case duration_problem::none: break;
        }
        if (d.count() == 0 && !allow_zero) {
            fail(e->value, path, "must be greater than 0");
            return;
        }
        out = d;
    }

    void get_ip(const fields& f, std::string_view key, const std::string& base, std::string& out) {
        const entry* e = find(f, key);
        if (!e) return;
        std::string v;
        get_string(f, key, base, v);
        if (v.empty()) return;
        if (!valid_ip(v)) {
            fail(e->value, join(base, key), "IP address expected (IPv4 or IPv6), got '" + v + "'");
            return;
        }
        out = std::move(v);
    }

    // A list of scalars; null counts as an empty list.
    std::vector<std::pair<YAML::Node, std::string>> list(const YAML::Node& n, const std::string& path) {
        std::vector<std::pair<YAML::Node, std::string>> out;
        if (n.IsNull()) return out;
        if (!n.IsSequence()) {
            fail(n, path, "list expected");
            return out;
        }
        for (std::size_t i = 0; i < n.size(); ++i) {
            if (auto v = scalar(n[i], path + "[" + std::to_string(i) + "]")) out.emplace_back(n[i], std::move(*v));
        }
        return out;
    }

    // -- sections

    void parse(const YAML::Node& root, config& c) {
        const auto top = map(root, "", {"profile", "listen", "admin", "upstream", "kafka", "defaults", "routing", "log", "drain",
                                        "limits", "status", "idempotency", "replies", "routes", "subscriptions"});
        if (!top) return;
        const auto section = [&](std::string_view name) {
            const entry* e = find(*top, name);
            return e ? e->value : YAML::Node(YAML::NodeType::Null);
        };
        places_.emplace("", root);
        get_enum(*top, "profile", "", c.profile,
                 {{"development", profile_kind::development}, {"production", profile_kind::production}});
        parse_listen(section("listen"), c.listen);
        parse_admin(section("admin"), c.admin);
        parse_upstream(section("upstream"), c.upstream);
        parse_defaults(section("defaults"), c.defaults);
        parse_routing(section("routing"), c.routing);
        parse_log(section("log"), c.log);
        parse_drain(section("drain"), c.drain);
        parse_limits(section("limits"), c.limits);
        parse_status(section("status"), c.status);
        parse_idempotency(section("idempotency"), c.idempotency);
        parse_replies(section("replies"), c.replies);
        const entry* kafka = find(*top, "kafka");
        parse_kafka(kafka ? kafka->value : root, kafka != nullptr, c.kafka);
        parse_routes(section("routes"), c);
        parse_subscriptions(section("subscriptions"), c);  // subscriptions
        check_profile(c, find(*top, "profile"));
        check_body_bounds(c);
    }

    // The production profile (X-4 of the test catalogue): every insecure Kafka setting is an error
    // at the setting (or, for a missing security.protocol, at kafka.properties / kafka), unless
    // kafka.allow_insecure is true.
    void check_profile(const config& c, const entry* profile) {
        if (c.profile != profile_kind::production || c.kafka.allow_insecure) return;
        const std::string where = profile ? " (line " + std::to_string(profile->value.Mark().line + 1) + ")" : "";
        for (auto s : insecure_kafka_settings(c)) {
            // c.subscriptions skips entries that failed to parse: name the entry of the file.
            if (std::size_t i = 0, end = 0; s.path.rfind("subscriptions[", 0) == 0 &&
                                            (end = s.path.find(']')) != std::string::npos &&
                                            (i = std::stoul(s.path.substr(14, end - 14))) < subscription_index_.size()) {
                s.path = "subscriptions[" + std::to_string(subscription_index_[i]) + s.path.substr(end);
            }
            fail(place_of(s.path), s.path,
                 "not allowed with profile: production" + where + ": " + s.message +
                     "; set kafka.allow_insecure: true to run like this anyway");
        }
    }

    // The node recorded for `path`, or for its nearest recorded parent ("a.b.c" -> "a.b" -> "a" -> root).
    YAML::Node place_of(std::string path) const {
        for (;;) {
            if (const auto it = places_.find(path); it != places_.end()) return it->second;
            const auto dot = path.rfind('.');
            if (dot == std::string::npos) break;
            path.erase(dot);
        }
        const auto root = places_.find("");
        return root == places_.end() ? YAML::Node() : root->second;
    }

    void parse_listen(const YAML::Node& n, listen_config& l) {
        const std::string p = "listen";
        const auto f = map(n, p, {"address", "port", "threads", "max_connections", "max_header_bytes", "max_body_bytes",
                                  "max_pipelined", "header_timeout", "body_timeout", "idle_timeout", "write_timeout"});
        if (!f) return;
        get_ip(*f, "address", p, l.address);
        get_port(*f, "port", p, l.port);
        get_int(*f, "threads", p, l.threads, 1, 256);
        get_int(*f, "max_connections", p, l.max_connections, 1, 10'000'000);
        get_size(*f, "max_header_bytes", p, l.max_header_bytes);
        get_size(*f, "max_body_bytes", p, l.max_body_bytes, max_body_limit);
        get_int(*f, "max_pipelined", p, l.max_pipelined, 1, 65536);
        get_duration(*f, "header_timeout", p, l.header_timeout);
        get_duration(*f, "body_timeout", p, l.body_timeout);
        get_duration(*f, "idle_timeout", p, l.idle_timeout);
        get_duration(*f, "write_timeout", p, l.write_timeout);
    }

    void parse_admin(const YAML::Node& n, admin_config& a) {
        const std::string p = "admin";
        const auto f = map(n, p, {"enabled", "address", "port"});
        if (!f) return;
        get_bool(*f, "enabled", p, a.enabled);
        get_ip(*f, "address", p, a.address);
        get_port(*f, "port", p, a.port);
    }

    void parse_upstream(const YAML::Node& n, upstream_config& u) {
        const std::string p = "upstream";
        const auto f = map(n, p, {"host", "port", "max_connections", "max_idle", "connect_timeout", "timeout",
                                  "max_response_bytes", "forwarded_for"});
        if (!f) return;
        get_string(*f, "host", p, u.host);
        get_port(*f, "port", p, u.port);
        get_int(*f, "max_connections", p, u.max_connections, 1, 1'000'000);
        get_int(*f, "max_idle", p, u.max_idle, 0, 1'000'000);
        get_duration(*f, "connect_timeout", p, u.connect_timeout);
        get_duration(*f, "timeout", p, u.timeout);
        get_size(*f, "max_response_bytes", p, u.max_response_bytes);
        get_enum(*f, "forwarded_for", p, u.forwarded_for,
                 {{"append", forwarded_for::append}, {"replace", forwarded_for::replace}});
    }

    void parse_defaults(const YAML::Node& n, defaults_config& d) {
        const std::string p = "defaults";
        const auto f = map(n, p, {"mode", "timeout", "ce_source"});
        if (!f) return;
        if (const entry* e = find(*f, "mode")) {
            if (auto v = scalar(e->value, p + ".mode"); v && *v != "forward") {
                fail(e->value, p + ".mode",
                     "defaults.mode must be forward (unmatched requests have no topic to publish to), got '" + *v + "'");
            }
        }
        get_duration(*f, "timeout", p, d.timeout);
        get_string(*f, "ce_source", p, d.ce_source);
    }

    void parse_routing(const YAML::Node& n, routing_config& r) {
        const auto f = map(n, "routing", {"trailing_slash"});
        if (!f) return;
        get_enum(*f, "trailing_slash", "routing", r.trailing_slash,
                 {{"match", trailing_slash::match}, {"strict", trailing_slash::strict}});
    }

    void parse_drain(const YAML::Node& n, drain_config& d) {
        const std::string p = "drain";
        const auto f = map(n, p, {"delay", "timeout"});
        if (!f) return;
        get_duration(*f, "delay", p, d.delay, /*allow_zero=*/true);
        get_duration(*f, "timeout", p, d.timeout);
    }

    void parse_limits(const YAML::Node& n, limits_config& l) {
        const std::string p = "limits";
        const auto f = map(n, p, {"max_inflight_commits", "max_buffered_body_bytes"});
        if (!f) return;
        places_.emplace(p, n);
        get_int(*f, "max_inflight_commits", p, l.max_inflight_commits, 1, 10'000'000);
        get_size(*f, "max_buffered_body_bytes", p, l.max_buffered_body_bytes);
        if (const entry* e = find(*f, "max_buffered_body_bytes")) places_.emplace(p + ".max_buffered_body_bytes", e->value);
    }

    // A body over limits.max_buffered_body_bytes could never be read: every body limit fits it.
    // Unset, the bound is the default (64MiB) or the largest body limit, whichever is larger.
    void check_body_bounds(config& c) {
        if (places_.find("limits.max_buffered_body_bytes") == places_.end()) {
            auto& bound = c.limits.max_buffered_body_bytes;
            bound = std::max(bound, c.listen.max_body_bytes);
            for (const auto& r : c.routes) bound = std::max(bound, r.max_body_bytes);
            return;
        }
        const auto bound = c.limits.max_buffered_body_bytes;
        const auto too_big = [&](std::size_t n, const std::string& what) {
            if (n <= bound) return;
            fail(place_of("limits.max_buffered_body_bytes"), "limits.max_buffered_body_bytes",
                 std::to_string(bound) + " bytes is less than " + what + " (" + std::to_string(n) +
                     " bytes): such a body could never be read");
        };
        too_big(c.listen.max_body_bytes, "listen.max_body_bytes");
        for (const auto& r : c.routes) too_big(r.max_body_bytes, "the max_body_bytes of route '" + r.name + "'");
    }

    void parse_status(const YAML::Node& n, status_config& s) {
        const std::string p = "status";
        const auto f = map(n, p, {"max_entries", "max_bytes", "ttl", "reply_bodies"});
        if (!f) return;
        get_int(*f, "max_entries", p, s.max_entries, 1, 100'000'000);
        get_size(*f, "max_bytes", p, s.max_bytes);
        get_duration(*f, "ttl", p, s.ttl);
        get_bool(*f, "reply_bodies", p, s.reply_bodies);
    }

    void parse_idempotency(const YAML::Node& n, idempotency_config& i) {
        const std::string p = "idempotency";
        const auto f = map(n, p, {"max_entries", "max_bytes", "ttl"});
        if (!f) return;
        get_int(*f, "max_entries", p, i.max_entries, 1, 100'000'000);
        get_size(*f, "max_bytes", p, i.max_bytes);
        get_duration(*f, "ttl", p, i.ttl);
    }

    void parse_replies(const YAML::Node& n, replies_config& r) {
        const std::string p = "replies";
        if (n.IsNull()) return;  // "replies:" with nothing: no reply topic
        const auto f = map(n, p, {"topic", "create", "refresh_interval"});
        if (!f) return;
        if (find(*f, "topic")) {
            get_topic(*f, "topic", p, r.topic);
        } else {
            fail(n, p, "missing required key 'topic' (the reply topic this process consumes)");
        }
        get_duration(*f, "refresh_interval", p, r.refresh_interval);
        if (r.refresh_interval < millis(100)) {
            fail(find(*f, "refresh_interval")->value, p + ".refresh_interval", "must be at least 100ms");
        }
        const entry* e = find(*f, "create");
        if (!e) return;
        // create: true | false | {enabled, partitions, replication_factor, retention}
        if (e->value.IsScalar()) {
            get_bool(*f, "create", p, r.create.enabled);
            return;
        }
        const auto cp = p + ".create";
        const auto c = map(e->value, cp, {"enabled", "partitions", "replication_factor", "retention"});
        if (!c) return;
        get_bool(*c, "enabled", cp, r.create.enabled);
        get_int(*c, "partitions", cp, r.create.partitions, 1, 100'000);
        get_int(*c, "replication_factor", cp, r.create.replication_factor, -1, 32'767);
        if (r.create.replication_factor == 0) {
            fail(find(*c, "replication_factor")->value, cp + ".replication_factor",
                 "must be -1 (the broker's default) or at least 1, got 0");
        }
        get_duration(*c, "retention", cp, r.create.retention);
    }

    void parse_log(const YAML::Node& n, log_config& l) {
        const auto f = map(n, "log", {"level", "requests"});
        if (!f) return;
        get_bool(*f, "requests", "log", l.requests);
        const entry* e = find(*f, "level");
        if (!e) return;
        auto v = scalar(e->value, "log.level");
        if (!v) return;
        if (*v != "debug" && *v != "info" && *v != "warn" && *v != "error") {
            fail(e->value, "log.level", "must be debug, info, warn or error, got '" + *v + "'");
            return;
        }
        l.level = *v;
    }

    // `n` is the root when the section is absent (so "brokers is required" has a place).
    void parse_kafka(const YAML::Node& n, bool present, kafka_config& k) {
        const std::string p = "kafka";
        if (!present) {
            fail(n, p, "missing required section 'kafka' with 'brokers' (a bootstrap list, or 'embedded')");
            return;
        }
        places_.emplace(p, n);
        const auto f = map(n, p, {"brokers", "embedded_brokers", "flush_timeout", "stall_timeout", "properties",
                                  "allow_insecure"});
        if (!f) return;
        get_bool(*f, "allow_insecure", p, k.allow_insecure);
        if (const entry* e = find(*f, "brokers")) {
            places_.emplace(p + ".brokers", e->value);
            if (auto v = scalar(e->value, p + ".brokers")) {
                if (trim(*v) == "embedded") {
                    k.embedded = true;
                } else if (trim(*v).empty()) {
                    fail(e->value, p + ".brokers", "must not be empty (a bootstrap list like '127.0.0.1:9092', or 'embedded')");
                } else {
                    k.brokers = std::string(trim(*v));
                }
            }
        } else {
            fail(n, p, "missing required key 'brokers' (a bootstrap list like '127.0.0.1:9092', or 'embedded')");
        }
        get_int(*f, "embedded_brokers", p, k.embedded_brokers, 1, 16);
        get_duration(*f, "flush_timeout", p, k.flush_timeout);
        get_duration(*f, "stall_timeout", p, k.stall_timeout, /*allow_zero=*/true);

        const entry* props = find(*f, "properties");
        if (!props || props->value.IsNull()) return;
        const std::string pp = p + ".properties";
        places_.emplace(pp, props->value);
        if (!props->value.IsMap()) {
            fail(props->value, pp, "map expected");
            return;
        }
        for (auto it = props->value.begin(); it != props->value.end(); ++it) {
            if (!it->first.IsScalar()) {
                fail(it->first, pp, "property names must be plain strings");
                continue;
            }
            const std::string name = it->first.Scalar();
            const std::string path = pp + "." + name;
            if (name == "bootstrap.servers" || name == "metadata.broker.list") {
                fail(it->first, path, "set the brokers with kafka.brokers, not in properties");
                continue;
            }
            if (k.properties.count(name)) {
                fail(it->first, path, "duplicate property '" + name + "'");
                continue;
            }
            auto v = scalar(it->second, path);
            if (!v) continue;
            property_nodes_.emplace(name, std::make_pair(it->second, *v));
            places_.emplace(path, it->second);
            k.properties.emplace(name, std::move(*v));
            if (is_secret_property(name)) k.secret_properties.push_back(name);
        }
    }

    void parse_routes(const YAML::Node& n, config& c) {
        if (n.IsNull()) return;
        if (!n.IsSequence()) {
            fail(n, "routes", "list expected");
            return;
        }
        std::vector<route_info> infos;
        for (std::size_t i = 0; i < n.size(); ++i) {
            route r;
            route_info info;
            info.index = i;
            info.node = n[i];
            if (parse_route(n[i], "routes[" + std::to_string(i) + "]", c, r, info)) {
                c.routes.push_back(std::move(r));
                infos.push_back(std::move(info));
            }
        }
        check_unique(c.routes, infos, c.routing.trailing_slash);
        check_durability(c.routes, infos);
        for (std::size_t i = 0; i < c.routes.size(); ++i) {
            const auto& r = c.routes[i];
            const bool replies = infos[i].mode_known &&
                                 (r.mode == mode::reply || (r.canary_percent_bp > 0 && r.canary_mode == mode::reply));
            if (replies && c.replies.topic.empty()) {
                fail(infos[i].node, "routes[" + std::to_string(infos[i].index) + "]",
                     "route '" + r.name + "' answers with replies: set replies.topic (the reply topic this process consumes)");
            }
        }
    }

    // False when the item is not a map at all (nothing to cross-check).
    bool parse_route(const YAML::Node& n, const std::string& p, const config& c, route& r, route_info& info) {
        const auto f = map(n, p, {"name", "match", "mode", "topic", "key", "cloudevents", "timeout", "success_status",
                                  "max_body_bytes", "headers", "idempotency", "canary"});
        if (!f || n.IsNull()) {
            if (n.IsNull()) fail(n, p, "map expected");
            return false;
        }
        r.line = n.Mark().line + 1;

        // name
        if (const entry* e = find(*f, "name")) {
            info.name_node = e->value;
            if (auto v = scalar(e->value, p + ".name")) {
                if (valid_route_name(*v)) {
                    r.name = std::move(*v);
                } else {
                    fail(e->value, p + ".name", "invalid route name '" + *v + "' (1-64 of [A-Za-z0-9._-], starting with a letter or digit)");
                }
            }
        } else {
            fail(n, p, "missing required key 'name'");
        }

        // match
        std::vector<std::string> params;
        if (const entry* e = find(*f, "match")) {
            parse_match(e->value, p + ".match", r, info, params);
        } else {
            fail(n, p, "missing required key 'match' (with at least 'path')");
        }

        // mode
        if (const entry* e = find(*f, "mode")) {
            if (auto v = scalar(e->value, p + ".mode")) {
                static const mode modes[] = {mode::forward, mode::event, mode::commit, mode::shadow, mode::reply};
                for (auto m : modes) {
                    if (*v == to_string(m)) r.mode = m, info.mode_known = true;
                }
                if (!info.mode_known) {
                    fail(e->value, p + ".mode", "unknown mode '" + *v + "' (expected forward, event, commit, shadow or reply)");
                }
            }
        } else {
            fail(n, p, "missing required key 'mode' (forward, event, commit, shadow or reply)");
        }
        // canary: a second mode for a share of the traffic
        if (const entry* e = find(*f, "canary")) parse_canary(e->value, p + ".canary", r, info);
        // A forward route whose canary publishes needs everything a publishing route needs.
        const bool forward = info.mode_known && r.mode == mode::forward &&
                             !(r.canary_percent_bp > 0 && produces(r.canary_mode));
        const char* mode_name = to_string(r.mode == mode::forward ? r.canary_mode : r.mode);

        // keys that only Kafka-producing routes use
        for (const char* k : {"topic", "key", "cloudevents", "headers", "idempotency"}) {
            if (const entry* e = find(*f, k); e && forward) {
                fail(e->key, join(p, k), std::string(k) + " is not used by forward routes");
            }
        }
        const bool check_params = info.path_valid;

        // topic
        if (const entry* e = find(*f, "topic"); e && !forward) {
            if (auto v = scalar(e->value, p + ".topic")) {
                if (check_topic(e->value, p + ".topic", *v, params, check_params)) r.topic = std::move(*v);
            }
        } else if (!e && info.mode_known && !forward) {
            fail(n, p, std::string("missing required key 'topic' (") + mode_name + " routes publish to it)");
        }

        // key
        if (const entry* e = find(*f, "key"); e && !forward) {
            if (auto v = scalar(e->value, p + ".key")) parse_key(e->value, p + ".key", *v, params, check_params, r.key);
        }

        // cloudevents
        if (const entry* e = find(*f, "cloudevents"); e && !forward) {
            const std::string cp = p + ".cloudevents";
            if (const auto ce = map(e->value, cp, {"type", "source"})) {
                get_string(*ce, "type", cp, r.ce_type);
                get_string(*ce, "source", cp, r.ce_source);
            }
        }
        if (r.ce_source.empty() && !forward) r.ce_source = c.defaults.ce_source;

        get_duration(*f, "timeout", p, r.timeout);

        // idempotency: Idempotency-Key handling (always honoured when sent)
        if (const entry* e = find(*f, "idempotency"); e && !forward) {
            if (auto v = scalar(e->value, p + ".idempotency")) {
                if (*v == "required") {
                    r.idempotency_required = true;
                } else if (*v != "optional") {
                    fail(e->value, p + ".idempotency", "must be optional or required, got '" + *v + "'");
                }
            }
        }

        // success_status
        if (info.mode_known) {
            if (r.mode == mode::commit) r.success_status = 200;
            if (r.mode == mode::event) r.success_status = 202;
        }
        if (const entry* e = find(*f, "success_status"); e && info.mode_known) {
            const std::string sp = p + ".success_status";
            int status = 0;
            get_int(*f, "success_status", p, status, 100, 599);
            if (status != 0) {
                if (r.mode == mode::commit) {
                    if (status == 200 || status == 201 || status == 202 || status == 204) {
                        r.success_status = status;
                    } else {
                        fail(e->value, sp, "commit routes answer 200, 201, 202 or 204, got " + std::to_string(status));
                    }
                } else if (r.mode == mode::event) {
                    if (status != 202) fail(e->value, sp, "event routes answer 202 (accepted, not yet durable), got " + std::to_string(status));
                } else {
                    fail(e->key, sp, std::string("success_status is not used by ") + mode_name + " routes");
                }
            }
        }

        get_size(*f, "max_body_bytes", p, r.max_body_bytes, max_body_limit);

        // headers
        if (const entry* e = find(*f, "headers"); e && !forward) {
            for (auto& [node, h] : list(e->value, p + ".headers")) {
                if (!is_token(h)) {
                    fail(node, p + ".headers", "invalid header name '" + h + "'");
                } else if (std::none_of(r.headers.begin(), r.headers.end(),
                                        [&, &name = h](const std::string& x) { return lower(x) == lower(name); })) {
                    r.headers.push_back(h);
                }
            }
        }
        return true;
    }

    // canary: {mode: event, percent: 10}
    void parse_canary(const YAML::Node& n, const std::string& p, route& r, const route_info& info) {
        const auto f = map(n, p, {"mode", "percent"});
        if (!f) return;
        bool mode_ok = false;
        if (const entry* e = find(*f, "mode")) {
            if (auto v = scalar(e->value, p + ".mode")) {
                for (auto m : {mode::forward, mode::event, mode::commit, mode::shadow, mode::reply}) {
                    if (*v == to_string(m)) r.canary_mode = m, mode_ok = true;
                }
                if (!mode_ok) {
                    fail(e->value, p + ".mode", "unknown mode '" + *v + "' (expected forward, event, commit, shadow or reply)");
                } else if (info.mode_known && r.canary_mode == r.mode) {
                    fail(e->value, p + ".mode", "the canary mode must differ from the route's mode '" + *v + "'");
                    mode_ok = false;
                }
            }
        } else {
            fail(n, p, "missing required key 'mode' (the mode the canary share takes)");
        }
        const entry* e = find(*f, "percent");
        if (!e) {
            fail(n, p, "missing required key 'percent' (0-100, the share of requests that take the canary mode)");
            return;
        }
        auto v = scalar(e->value, p + ".percent");
        if (!v) return;
        const auto s = std::string(trim(*v));
        // Basis points from a decimal with at most two fractional digits: "12.5" -> 1250.
        long long whole = 0, frac = 0;
        int frac_digits = 0;
        std::size_t i = 0;
        bool ok = !s.empty() && s.size() <= 6;
        for (; ok && i < s.size() && s[i] != '.'; ++i) {
            if (!is_digit(s[i])) ok = false; else whole = whole * 10 + (s[i] - '0');
        }
        if (ok && i < s.size()) {
            ++i;
            if (i == s.size()) ok = false;
            for (; ok && i < s.size(); ++i) {
                if (!is_digit(s[i]) || ++frac_digits > 2) ok = false; else frac = frac * 10 + (s[i] - '0');
            }
        }
        if (ok && s[0] == '.') ok = false;
        if (frac_digits == 1) frac *= 10;
        if (!ok) {
            fail(e->value, p + ".percent", "a number from 0 to 100 with at most two decimals expected, got '" + *v + "'");
            return;
        }
        const long long bp = whole * 100 + frac;
        if (bp > 10'000) {
            fail(e->value, p + ".percent", "must be between 0 and 100, got '" + *v + "'");
            return;
        }
        if (mode_ok) r.canary_percent_bp = static_cast<int>(bp);
    }

    void parse_match(const YAML::Node& n, const std::string& p, route& r, route_info& info,
                     std::vector<std::string>& params) {
        const auto f = map(n, p, {"methods", "method", "path"});
        if (!f) return;
        const entry* many = find(*f, "methods");
        const entry* one = find(*f, "method");
        if (many && one) {
            fail(one->key, p + ".method", "use either 'method' or 'methods', not both");
        } else if (many || one) {
            std::vector<std::pair<YAML::Node, std::string>> items;
            if (many) {
                items = list(many->value, p + ".methods");
                if (many->value.IsSequence() && many->value.size() == 0) {
                    fail(many->value, p + ".methods", "must not be empty (leave it out to match any method)");
                }
            } else if (auto v = scalar(one->value, p + ".method")) {
                items.emplace_back(one->value, std::move(*v));
            }
            for (auto& [node, m] : items) {
                if (!is_token(m)) {
                    fail(node, p + (many ? ".methods" : ".method"), "invalid HTTP method '" + m + "'");
                    continue;
                }
                auto u = upper(m);
                if (std::find(r.methods.begin(), r.methods.end(), u) == r.methods.end()) r.methods.push_back(std::move(u));
            }
        }
        const entry* e = find(*f, "path");
        if (!e) {
            fail(n, p, "missing required key 'path'");
            return;
        }
        auto v = scalar(e->value, p + ".path");
        if (!v) return;
        if (check_path(e->value, p + ".path", *v, params, info.shape)) {
            r.path = std::move(*v);
            info.path_valid = true;
        }
    }

    bool check_path(const YAML::Node& n, const std::string& p, const std::string& path, std::vector<std::string>& params,
                    std::string& shape) {
        if (path.empty() || path[0] != '/') {
            fail(n, p, "path must start with '/', got '" + path + "'");
            return false;
        }
        bool ok = true;
        std::size_t start = 1;
        while (true) {
            const auto slash = path.find('/', start);
            const bool last = slash == std::string::npos;
            const std::string seg = path.substr(start, last ? std::string::npos : slash - start);
            shape += '/';
            if (seg.empty()) {
                if (!last) {
                    fail(n, p, "empty path segment in '" + path + "'");
                    ok = false;
                }
            } else if (seg.find_first_of("{}") != std::string::npos) {
                const std::string name = seg.substr(1, seg.size() - 2);
                if (seg.front() != '{' || seg.back() != '}' || !is_ident(name)) {
                    fail(n, p, "path segment '" + seg + "' must be a literal or exactly '{name}' (name: [A-Za-z_][A-Za-z0-9_]*)");
                    ok = false;
                } else if (std::find(params.begin(), params.end(), name) != params.end()) {
                    fail(n, p, "duplicate path parameter '" + name + "'");
                    ok = false;
                } else {
                    params.push_back(name);
                    shape += "{}";
                }
            } else if (const auto bad = std::find_if_not(seg.begin(), seg.end(), is_pchar); bad != seg.end()) {
                fail(n, p, std::string("invalid character '") + *bad + "' in path segment '" + seg + "'");
                ok = false;
            } else if (auto why = literal_segment_problem(seg)) {
                fail(n, p, "path segment '" + seg + "': " + *why);
                ok = false;
            } else {
                shape += upper_escapes(seg);
            }
            if (last) break;
            start = slash + 1;
        }
        return ok;
    }

    bool check_topic(const YAML::Node& n, const std::string& p, const std::string& topic,
                     const std::vector<std::string>& params, bool check_params) {
        bool ok = true;
        bool templated = false;
        std::size_t literal = 0;
        for (std::size_t i = 0; i < topic.size(); ++i) {
            const char c = topic[i];
            if (c == '{') {
                const auto close = topic.find('}', i);
                const std::string name = close == std::string::npos ? "" : topic.substr(i + 1, close - i - 1);
                if (close == std::string::npos || !is_ident(name)) {
                    fail(n, p, "invalid placeholder in topic '" + topic + "' (write '{param}' with a path parameter)");
                    return false;
                }
                if (check_params && std::find(params.begin(), params.end(), name) == params.end()) {
                    fail(n, p, "topic placeholder '{" + name + "}' is not a path parameter of this route");
                    ok = false;
                }
                templated = true;
                i = close;
            } else if (!is_topic_char(c)) {
                fail(n, p, std::string("invalid character '") + c + "' in topic '" + topic +
                               "' (Kafka topic names use [A-Za-z0-9._-])");
                return false;
            } else {
                ++literal;
            }
        }
        if (topic.empty()) {
            fail(n, p, "topic must not be empty");
            return false;
        }
        if (literal > 249) {
            fail(n, p, "topic is longer than Kafka's limit of 249 characters");
            return false;
        }
        if (!templated && (topic == "." || topic == "..")) {
            fail(n, p, "'" + topic + "' is not a legal Kafka topic name");
            return false;
        }
        return ok;
    }

    void parse_key(const YAML::Node& n, const std::string& p, const std::string& v, const std::vector<std::string>& params,
                   bool check_params, key_source& out) {
        const auto starts = [&](std::string_view prefix) { return v.rfind(prefix, 0) == 0; };
        if (v == "correlation") {
            out = {key_kind::correlation, ""};
        } else if (starts("path:")) {
            const auto name = v.substr(5);
            if (!is_ident(name)) {
                fail(n, p, "invalid path parameter name in key '" + v + "'");
            } else if (check_params && std::find(params.begin(), params.end(), name) == params.end()) {
                fail(n, p, "key path parameter '" + name + "' is not in the route's path");
            } else {
                out = {key_kind::path, name};
            }
        } else if (starts("header:")) {
            const auto name = v.substr(7);
            if (!is_token(name)) {
                fail(n, p, "invalid header name in key '" + v + "'");
            } else {
                out = {key_kind::header, name};
            }
        } else if (starts("body:")) {
            const auto ptr = v.substr(5);
            if (!valid_json_pointer(ptr)) {
                fail(n, p, "invalid JSON pointer in key '" + v + "' (RFC 6901: starts with '/', '~' only as ~0 or ~1)");
            } else {
                out = {key_kind::body, ptr};
            }
        } else {
            fail(n, p, "invalid key '" + v + "' (expected path:NAME, header:NAME, body:/json/pointer or correlation)");
        }
    }

    // Under trailing_slash: match, "/orders" and "/orders/" are one path.
    void check_unique(const std::vector<route>& routes, std::vector<route_info>& infos, trailing_slash slash) {
        if (slash == trailing_slash::match) {
            for (auto& info : infos) {
                if (info.shape.size() > 1 && info.shape.back() == '/') info.shape.pop_back();
            }
        }
        for (std::size_t b = 0; b < routes.size(); ++b) {
            for (std::size_t a = 0; a < b; ++a) {
                const auto where = [&](std::size_t i) {
                    return "routes[" + std::to_string(infos[i].index) + "]";
                };
                if (!routes[b].name.empty() && routes[a].name == routes[b].name) {
                    fail(infos[b].name_node, where(b) + ".name",
                         "duplicate route name '" + routes[b].name + "' (also defined at line " + std::to_string(routes[a].line) + ")");
                }
                if (!infos[a].path_valid || !infos[b].path_valid || infos[a].shape != infos[b].shape) continue;
                const auto& ma = routes[a].methods;
                const auto& mb = routes[b].methods;
                const bool overlap = ma.empty() || mb.empty() || std::any_of(ma.begin(), ma.end(), [&](const std::string& m) {
                                         return std::find(mb.begin(), mb.end(), m) != mb.end();
                                     });
                if (overlap) {
                    fail(infos[b].node, where(b),
                         "duplicate route: path '" + routes[b].path + "' with overlapping methods is also defined at line " +
                             std::to_string(routes[a].line) + " (route '" + routes[a].name + "')");
                }
            }
        }
    }

    // Handoff always produces with the idempotent producer and acks=all (commit routes promise
    // durability; event routes and dead-letter writes rely on it too), so a config that tries to
    // weaken either is refused here, exactly as the producer would refuse it at start-up.
    void check_durability(const std::vector<route>& routes, const std::vector<route_info>& infos) {
        std::string names;
        for (std::size_t i = 0; i < routes.size(); ++i) {
            if (!infos[i].mode_known || (routes[i].mode != mode::commit && routes[i].mode != mode::reply)) continue;
            names += (names.empty() ? "'" : ", '") + routes[i].name + "'";
        }
        const std::string why = names.empty()
                                    ? ": Handoff always produces with acks=all and enable.idempotence=true"
                                    : " conflicts with route(s) " + names + ": commit routes need acks=all and enable.idempotence=true";
        for (const char* key : {"acks", "request.required.acks"}) {
            const auto it = property_nodes_.find(key);
            if (it == property_nodes_.end()) continue;
            const std::string v = lower(std::string(trim(it->second.second)));
            if (v != "all" && v != "-1") fail(it->second.first, std::string("kafka.properties.") + key, std::string(key) + "=" + v + why);
        }
        if (const auto it = property_nodes_.find("enable.idempotence"); it != property_nodes_.end()) {
            const std::string v = lower(std::string(trim(it->second.second)));
            if (v != "true") fail(it->second.first, "kafka.properties.enable.idempotence", "enable.idempotence=" + v + why);
        }
    }

    // ---- subscriptions (the receiving half, DESIGN §4) ----------------------------------------

    void parse_subscriptions(const YAML::Node& n, config& c) {
        if (n.IsNull()) return;
        if (!n.IsSequence()) {
            fail(n, "subscriptions", "list expected");
            return;
        }
        std::vector<YAML::Node> name_nodes;
        for (std::size_t i = 0; i < n.size(); ++i) {
            subscription s;
            YAML::Node name_node;
            if (!parse_subscription(n[i], "subscriptions[" + std::to_string(i) + "]", s, name_node)) continue;
            for (std::size_t j = 0; j < c.subscriptions.size(); ++j) {
                if (!s.name.empty() && c.subscriptions[j].name == s.name) {
                    fail(name_node, "subscriptions[" + std::to_string(i) + "].name",
                         "duplicate subscription name '" + s.name + "' (also defined at line " +
                             std::to_string(c.subscriptions[j].line) + ")");
                }
            }
            c.subscriptions.push_back(std::move(s));
            subscription_index_.push_back(i);
        }
    }

    // An origin-form path for target.path / target.fallback_path: starts with '/', pchar and '/'
    // only, not '//' (which a client could read as an authority).
    bool check_target_path(const YAML::Node& n, const std::string& p, const std::string& v) {
        if (v.empty() || v[0] != '/' || v.rfind("//", 0) == 0) {
            fail(n, p, "path must start with a single '/', got '" + v + "'");
            return false;
        }
        if (const auto bad = std::find_if(v.begin(), v.end(), [](char ch) { return ch != '/' && !is_pchar(ch); });
            bad != v.end()) {
            fail(n, p, std::string("invalid character '") + *bad + "' in path '" + v + "'");
            return false;
        }
        return true;
    }

    void get_topic(const fields& f, std::string_view key, const std::string& base, std::string& out) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        if (v->find('{') != std::string::npos) {
            fail(e->value, path, "topic templates are not allowed here");
            return;
        }
        if (check_topic(e->value, path, *v, {}, false)) out = std::move(*v);
    }

    void get_header_names(const fields& f, std::string_view key, const std::string& base, std::vector<std::string>& out) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        for (auto& [node, h] : list(e->value, path)) {
            if (!is_token(h)) {
                fail(node, path, "invalid header name '" + h + "'");
            } else if (std::none_of(out.begin(), out.end(), [&, &name = h](const std::string& x) { return lower(x) == lower(name); })) {
                out.push_back(h);
            }
        }
    }

    template <class E>
    void get_enum(const fields& f, std::string_view key, const std::string& base, E& out,
                  std::initializer_list<std::pair<std::string_view, E>> values) {
        const entry* e = find(f, key);
        if (!e) return;
        const auto path = join(base, key);
        auto v = scalar(e->value, path);
        if (!v) return;
        std::string names;
        for (const auto& [name, value] : values) {
            if (*v == name) {
                out = value;
                return;
            }
            names += (names.empty() ? "" : ", ") + std::string(name);
        }
        fail(e->value, path, "must be one of " + names + ", got '" + *v + "'");
    }

    bool parse_subscription(const YAML::Node& n, const std::string& p, subscription& s, YAML::Node& name_node) {
        const auto f = map(n, p, {"name", "topics", "group", "target", "ordering", "concurrency", "timeout", "retry",
                                  "dead_letter_topic", "reply_topic", "reply_topics", "reply_headers", "auto_offset_reset", "headers",
                                  "properties"});
        if (!f || n.IsNull()) {
            if (n.IsNull()) fail(n, p, "map expected");
            return false;
        }
        s.line = n.Mark().line + 1;
        if (const entry* e = find(*f, "name")) {
            name_node = e->value;
            if (auto v = scalar(e->value, p + ".name")) {
                if (valid_route_name(*v)) {
                    s.name = std::move(*v);
                } else {
                    fail(e->value, p + ".name", "invalid subscription name '" + *v + "' (1-64 of [A-Za-z0-9._-], starting with a letter or digit)");
                }
            }
        } else {
            fail(n, p, "missing required key 'name'");
        }
        if (const entry* e = find(*f, "topics")) {
            const auto tp = p + ".topics";
            for (auto& [node, t] : list(e->value, tp)) {
                if (t.find('{') != std::string::npos) {
                    fail(node, tp, "topic templates are not allowed in subscriptions");
                } else if (check_topic(node, tp, t, {}, false) &&
                           std::find(s.topics.begin(), s.topics.end(), t) == s.topics.end()) {
                    s.topics.push_back(t);
                }
            }
            if (e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 0)) fail(e->value, tp, "must not be empty");
        } else {
            fail(n, p, "missing required key 'topics' (a list of topic names)");
        }
        if (find(*f, "group")) {
            get_string(*f, "group", p, s.group);
        } else {
            fail(n, p, "missing required key 'group' (the Kafka consumer group id)");
        }
        if (const entry* e = find(*f, "target")) {
            const auto tp = p + ".target";
            if (const auto t = map(e->value, tp, {"method", "path", "fallback_path"})) {
                if (const entry* m = find(*t, "method")) {
                    if (auto v = scalar(m->value, tp + ".method")) {
                        if (*v == "original") {
                            s.target.method.clear();
                        } else if (!is_token(*v)) {
                            fail(m->value, tp + ".method", "invalid HTTP method '" + *v + "' (or 'original')");
                        } else {
                            s.target.method = upper(*v);
                        }
                    }
                }
                if (const entry* m = find(*t, "path")) {
                    if (auto v = scalar(m->value, tp + ".path")) {
                        if (*v == "original") {
                            s.target.path.clear();
                        } else if (check_target_path(m->value, tp + ".path", *v)) {
                            s.target.path = *v;
                        }
                    }
                }
                if (const entry* m = find(*t, "fallback_path")) {
                    if (auto v = scalar(m->value, tp + ".fallback_path")) {
                        if (check_target_path(m->value, tp + ".fallback_path", *v)) s.target.fallback_path = *v;
                    }
                    if (!s.target.path.empty()) {
                        fail(m->key, tp + ".fallback_path", "fallback_path is only used with path: original");
                    }
                }
            }
        }
        get_enum(*f, "ordering", p, s.ordering,
                 {{"key", ordering::key}, {"partition", ordering::partition}, {"none", ordering::none}});
        get_int(*f, "concurrency", p, s.concurrency, 1, 10'000);
        get_duration(*f, "timeout", p, s.timeout);
        if (const entry* e = find(*f, "retry")) {
            const auto rp = p + ".retry";
            if (const auto r = map(e->value, rp, {"attempts", "backoff_base", "backoff_cap", "jitter"})) {
                get_int(*r, "attempts", rp, s.retry.attempts, 1, 1'000'000);
                get_duration(*r, "backoff_base", rp, s.retry.backoff_base);
                get_duration(*r, "backoff_cap", rp, s.retry.backoff_cap);
                get_enum(*r, "jitter", rp, s.retry.jitter, {{"full", jitter::full}, {"none", jitter::none}});
                if (s.retry.backoff_cap < s.retry.backoff_base) {
                    if (const entry* c = find(*r, "backoff_cap")) {
                        fail(c->value, rp + ".backoff_cap", "must not be smaller than backoff_base");
                    } else if (const entry* b = find(*r, "backoff_base")) {
                        fail(b->value, rp + ".backoff_base", "must not be larger than backoff_cap (30s by default)");
                    }
                }
            }
        }
        get_topic(*f, "dead_letter_topic", p, s.dead_letter_topic);
        get_topic(*f, "reply_topic", p, s.reply_topic);
        for (const char* t : {"dead_letter_topic", "reply_topic"}) {
            const entry* e = find(*f, t);
            const std::string& v = std::string(t) == "reply_topic" ? s.reply_topic : s.dead_letter_topic;
            if (e && !v.empty() && std::find(s.topics.begin(), s.topics.end(), v) != s.topics.end()) {
                fail(e->value, join(p, t), std::string(t) + " must not be one of the subscribed topics (it would loop)");
            }
        }
        if (const entry* e = find(*f, "reply_topics")) {
            const auto path = join(p, "reply_topics");
            for (auto& [node, t] : list(e->value, path)) {
                // A pattern: a topic name in which '*' stands for any run of topic characters.
                std::string probe = t;
                std::replace(probe.begin(), probe.end(), '*', 'x');
                if (t.find('{') != std::string::npos) {
                    fail(node, path, "topic templates are not allowed here");
                } else if (check_topic(node, path, probe, {}, false)) {
                    s.reply_topics.push_back(t);
                }
            }
        }
        // Without reply_topic, reply_headers still apply to replies that `reply` routes ask for.
        get_header_names(*f, "reply_headers", p, s.reply_headers);
        get_enum(*f, "auto_offset_reset", p, s.auto_offset_reset,
                 {{"earliest", offset_reset::earliest}, {"latest", offset_reset::latest}, {"error", offset_reset::error}});
        get_header_names(*f, "headers", p, s.headers);
        if (const entry* e = find(*f, "properties"); e && !e->value.IsNull()) {
            const std::string pp = p + ".properties";
            if (!e->value.IsMap()) {
                fail(e->value, pp, "map expected");
            } else {
                for (auto it = e->value.begin(); it != e->value.end(); ++it) {
                    if (!it->first.IsScalar()) {
                        fail(it->first, pp, "property names must be plain strings");
                        continue;
                    }
                    const std::string name = it->first.Scalar();
                    static const char* owned[] = {"bootstrap.servers", "metadata.broker.list", "group.id",
                                                  "enable.auto.offset.store", "auto.offset.reset"};
                    if (name == "enable.auto.commit") {
                        // Off, nothing would ever commit the offsets Handoff stores after each
                        // delivery (only the shutdown commit would).
                        fail(it->first, pp + "." + name,
                             "'enable.auto.commit' is set by Handoff: it stores an offset once a record is delivered "
                             "and commits the stored offsets every auto.commit.interval.ms (set that instead)");
                        continue;
                    }
                    if (std::find(std::begin(owned), std::end(owned), name) != std::end(owned)) {
                        fail(it->first, pp + "." + name, "'" + name + "' is set by Handoff (use the subscription's own keys)");
                        continue;
                    }
                    if (auto v = scalar(it->second, pp + "." + name)) s.properties[name] = std::move(*v);
                    places_.emplace(pp + "." + name, it->second);
                }
            }
        }
        return true;
    }

    std::map<std::string, std::pair<YAML::Node, std::string>> property_nodes_;  // name -> (value node, expanded)
    std::map<std::string, YAML::Node> places_;  // YAML path -> node, for errors found after the walk
    std::vector<std::size_t> subscription_index_;  // c.subscriptions[i] is subscriptions[subscription_index_[i]]
};

std::string ms(millis d) { return std::to_string(d.count()) + "ms"; }

nlohmann::ordered_json key_json(const key_source& k) {
    switch (k.kind) {
        case key_kind::none: return nullptr;
        case key_kind::path: return "path:" + k.name;
        case key_kind::header: return "header:" + k.name;
        case key_kind::body: return "body:" + k.name;
        case key_kind::correlation: return "correlation";
    }
    return nullptr;
}

}  // namespace

std::string format(const config_error& e) {
    std::string out = e.file;
    if (e.line > 0) out += ":" + std::to_string(e.line) + ":" + std::to_string(e.column);
    out += ": ";
    if (!e.path.empty()) out += e.path + ": ";
    return out + e.message;
}

load_result load_string(std::string_view yaml, const std::string& file, env_lookup env) {
    return loader(file, std::move(env)).run(yaml);
}

load_result load_file(const std::string& path, env_lookup env) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        load_result r;
        r.errors.push_back({path, 0, 0, "", std::string("cannot read the file: ") + std::strerror(errno)});
        return r;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return load_string(text.str(), path, std::move(env));
}

namespace {

// The effective config as JSON; with `redact`, secret property values are "<redacted>".
nlohmann::ordered_json config_json(const config& c, bool redact) {
    using json = nlohmann::ordered_json;
    json j;
    j["file"] = c.file;
    const auto& l = c.listen;
    j["listen"] = {{"address", l.address},
                   {"port", l.port},
                   {"threads", l.threads},
                   {"max_connections", l.max_connections},
                   {"max_header_bytes", l.max_header_bytes},
                   {"max_body_bytes", l.max_body_bytes},
                   {"max_pipelined", l.max_pipelined},
                   {"header_timeout", ms(l.header_timeout)},
                   {"body_timeout", ms(l.body_timeout)},
                   {"idle_timeout", ms(l.idle_timeout)},
                   {"write_timeout", ms(l.write_timeout)}};
    j["admin"] = {{"enabled", c.admin.enabled}, {"address", c.admin.address}, {"port", c.admin.port}};
    const auto& u = c.upstream;
    j["upstream"] = {{"host", u.host},
                     {"port", u.port},
                     {"max_connections", u.max_connections},
                     {"max_idle", u.max_idle},
                     {"connect_timeout", ms(u.connect_timeout)},
                     {"timeout", ms(u.timeout)},
                     {"max_response_bytes", u.max_response_bytes},
                     {"forwarded_for", u.forwarded_for == forwarded_for::replace ? "replace" : "append"}};
    const auto& k = c.kafka;
    json props = json::object();
    for (const auto& [name, value] : k.properties) {
        const bool secret = std::find(k.secret_properties.begin(), k.secret_properties.end(), name) != k.secret_properties.end();
        props[name] = secret && redact ? "<redacted>" : value;
    }
    j["profile"] = to_string(c.profile);
    j["kafka"] = {{"brokers", k.embedded ? "embedded" : k.brokers},
                  {"embedded", k.embedded},
                  {"embedded_brokers", k.embedded_brokers},
                  {"flush_timeout", ms(k.flush_timeout)},
                  {"stall_timeout", ms(k.stall_timeout)},
                  {"allow_insecure", k.allow_insecure},
                  {"properties", props}};
    j["defaults"] = {{"mode", to_string(c.defaults.mode)}, {"timeout", ms(c.defaults.timeout)}, {"ce_source", c.defaults.ce_source}};
    j["routing"] = {{"trailing_slash", to_string(c.routing.trailing_slash)}};
    j["log"] = {{"level", c.log.level}, {"requests", c.log.requests}};
    j["drain"] = {{"delay", ms(c.drain.delay)}, {"timeout", ms(c.drain.timeout)}};
    j["limits"] = {{"max_inflight_commits", c.limits.max_inflight_commits},
                   {"max_buffered_body_bytes", c.limits.max_buffered_body_bytes}};
    j["status"] = {{"max_entries", c.status.max_entries},
                   {"max_bytes", c.status.max_bytes},
                   {"ttl", ms(c.status.ttl)},
                   {"reply_bodies", c.status.reply_bodies}};
    j["idempotency"] = {{"max_entries", c.idempotency.max_entries},
                        {"max_bytes", c.idempotency.max_bytes},
                        {"ttl", ms(c.idempotency.ttl)}};
    if (!c.replies.topic.empty()) {
        j["replies"] = {{"topic", c.replies.topic},
                        {"create", {{"enabled", c.replies.create.enabled},
                                    {"partitions", c.replies.create.partitions},
                                    {"replication_factor", c.replies.create.replication_factor},
                                    {"retention", ms(c.replies.create.retention)}}},
                        {"refresh_interval", ms(c.replies.refresh_interval)}};
    }
    json routes = json::array();
    for (const auto& r : c.routes) {
        json m = {{"path", r.path}};
        if (!r.methods.empty()) m["methods"] = r.methods;
        json jr = {{"name", r.name}, {"match", m}, {"mode", to_string(r.mode)}};
        if (!r.topic.empty()) jr["topic"] = r.topic;
        if (r.key.kind != key_kind::none) jr["key"] = key_json(r.key);
        if (!r.ce_type.empty() || !r.ce_source.empty()) {
            jr["cloudevents"] = json::object();
            if (!r.ce_type.empty()) jr["cloudevents"]["type"] = r.ce_type;
            if (!r.ce_source.empty()) jr["cloudevents"]["source"] = r.ce_source;
        }
        // Unset (0) timeouts and limits mean "the section default"; they are left out here.
        if (r.timeout.count() > 0) jr["timeout"] = ms(r.timeout);
        if (r.success_status) jr["success_status"] = r.success_status;
        if (r.max_body_bytes) jr["max_body_bytes"] = r.max_body_bytes;
        if (!r.headers.empty()) jr["headers"] = r.headers;
        if (r.idempotency_required) jr["idempotency"] = "required";
        if (r.canary_percent_bp > 0) {
            jr["canary"] = {{"mode", to_string(r.canary_mode)}, {"percent", r.canary_percent_bp / 100.0}};
        }
        jr["line"] = r.line;
        routes.push_back(std::move(jr));
    }
    j["routes"] = std::move(routes);
    // subscriptions
    json subs = json::array();
    for (const auto& s : c.subscriptions) {
        json props = json::object();
        for (const auto& [name, value] : s.properties) props[name] = redact && is_secret_property(name) ? "<redacted>" : value;
        const char* orderings[] = {"key", "partition", "none"};
        const char* resets[] = {"earliest", "latest", "error"};
        json js = {{"name", s.name},
                   {"topics", s.topics},
                   {"group", s.group},
                   {"target", {{"method", s.target.method.empty() ? "original" : s.target.method},
                               {"path", s.target.path.empty() ? "original" : s.target.path}}},
                   {"ordering", orderings[static_cast<int>(s.ordering)]},
                   {"concurrency", s.concurrency},
                   {"timeout", ms(s.timeout)},
                   {"retry", {{"attempts", s.retry.attempts},
                              {"backoff_base", ms(s.retry.backoff_base)},
                              {"backoff_cap", ms(s.retry.backoff_cap)},
                              {"jitter", s.retry.jitter == jitter::full ? "full" : "none"}}},
                   {"auto_offset_reset", resets[static_cast<int>(s.auto_offset_reset)]},
                   {"headers", s.headers},
                   {"properties", props},
                   {"line", s.line}};
        if (!s.target.fallback_path.empty()) js["target"]["fallback_path"] = s.target.fallback_path;
        if (!s.dead_letter_topic.empty()) js["dead_letter_topic"] = s.dead_letter_topic;
        if (!s.reply_topic.empty()) js["reply_topic"] = s.reply_topic;
        if (!s.reply_topics.empty()) js["reply_topics"] = s.reply_topics;
        if (!s.reply_headers.empty()) js["reply_headers"] = s.reply_headers;
        subs.push_back(std::move(js));
    }
    j["subscriptions"] = std::move(subs);
    return j;
}

}  // namespace

std::string to_redacted_json(const config& c) { return config_json(c, /*redact=*/true).dump(2); }

std::vector<std::string> sections_needing_restart(const config& running, const config& next) {
    // Real values, not the redacted ones: a changed password is a change.
    const auto before = config_json(running, /*redact=*/false);
    const auto after = config_json(next, /*redact=*/false);
    std::vector<std::string> out;
    for (const char* section : {"profile", "listen", "admin", "upstream", "kafka", "subscriptions", "status",
                                "idempotency", "replies"}) {
        const auto a = before.find(section);
        const auto b = after.find(section);
        const bool in_a = a != before.end(), in_b = b != after.end();
        if (in_a != in_b || (in_a && *a != *b)) out.emplace_back(section);
    }
    return out;
}

}  // namespace handoff::config
