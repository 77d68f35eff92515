// The YAML reading core: every error with file, line, column and YAML path; every map through
// `map()` (unknown and duplicate keys), every scalar value through `scalar()` (${ENV} expansion),
// so those rules hold for every section. The typed getters (`get_int`, `get_duration`, ...) assign
// their `out` only when the key is present and its value valid. Private to config/; yaml-cpp stays
// behind this header and the loader's sources.
#pragma once

#include "handoff/config/load.hpp"
#include "values.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace handoff::config::detail {

struct entry {
    YAML::Node key;
    YAML::Node value;
};
using fields = std::map<std::string, entry, std::less<>>;

// "base.key", or "key" at the top level.
std::string join(const std::string& base, std::string_view key);

class reader {
public:
    // `env` unset: the process environment (getenv).
    reader(std::string file, env_lookup env);

    // -- reporting
    // An error or warning placed at `m` (line and column 1-based; 0 when the mark has no place).
    config_error at(const YAML::Mark& m, std::string path, std::string message) const;
    void fail(const YAML::Mark& m, std::string path, std::string message);
    void fail(const YAML::Node& n, std::string path, std::string message);
    // A setting that loads but deserves the operator's attention (a deprecated key).
    void warn(const YAML::Node& n, std::string path, std::string message);

    // -- structure
    // Keys of map `n` checked against `allowed`; null counts as an empty map.
    std::optional<fields> map(const YAML::Node& n, const std::string& path,
                              std::initializer_list<std::string_view> allowed);
    static const entry* find(const fields& f, std::string_view key);
    // A scalar value with ${ENV} expanded; nullopt (after reporting) otherwise.
    std::optional<std::string> scalar(const YAML::Node& n, const std::string& path);
    // A list of scalars; null counts as an empty list.
    std::vector<std::pair<YAML::Node, std::string>> list(const YAML::Node& n, const std::string& path);

    // -- typed fields
    void get_string(const fields& f, std::string_view key, const std::string& base, std::string& out,
                    bool non_empty = true);
    template <class T>
    void get_int(const fields& f, std::string_view key, const std::string& base, T& out, long long lo, long long hi);
    void get_port(const fields& f, std::string_view key, const std::string& base, std::uint16_t& out);
    void get_bool(const fields& f, std::string_view key, const std::string& base, bool& out);
    void get_size(const fields& f, std::string_view key, const std::string& base, std::size_t& out,
                  std::size_t max = std::numeric_limits<std::size_t>::max());
    // `allow_zero`: 0 (with a unit, e.g. "0s") is a valid value, as for drain.delay.
    void get_duration(const fields& f, std::string_view key, const std::string& base, millis& out,
                      bool allow_zero = false);
    void get_ip(const fields& f, std::string_view key, const std::string& base, std::string& out);
    // One of the names in `table` ("must be one of a, b, got 'c'" otherwise).
    template <class E, std::size_t N>
    void get_enum(const fields& f, std::string_view key, const std::string& base, E& out,
                  const enum_name<E> (&table)[N]);
    // A plain topic name (no templates).
    void get_topic(const fields& f, std::string_view key, const std::string& base, std::string& out);
    // The required `name` of the list item `n` at `p` (a route or a subscription: `what`);
    // `name_node` gets its value node, for errors about duplicates.
    void get_name(const fields& f, const YAML::Node& n, const std::string& p, const char* what, std::string& out,
                  YAML::Node& name_node);
    // A list of header names, deduplicated case-insensitively, appended to `out`.
    void get_header_names(const fields& f, std::string_view key, const std::string& base,
                          std::vector<std::string>& out);

    // A Kafka topic name, with `{param}` placeholders; with `check_params`, each must be in `params`.
    bool check_topic(const YAML::Node& n, const std::string& p, const std::string& topic,
                     const std::vector<std::string>& params, bool check_params);

    // The node recorded for `path`, or for its nearest recorded parent ("a.b.c" -> "a.b" -> "a" -> root).
    YAML::Node place_of(std::string path) const;

protected:
    std::string file_;
    env_lookup env_;
    std::vector<config_error> errors_;
    std::vector<config_error> warnings_;
    std::map<std::string, YAML::Node> places_;  // YAML path -> node, for errors found after the walk

private:
    // ${NAME}, ${NAME:-default} (default also when NAME is empty, as in the shell), $${ -> ${.
    std::optional<std::string> expand(const YAML::Node& n, const std::string& path, const std::string& in);
};

template <class T>
void reader::get_int(const fields& f, std::string_view key, const std::string& base, T& out, long long lo,
                     long long hi) {
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
        fail(e->value, path,
             "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::to_string(n));
    } else {
        out = static_cast<T>(n);
    }
}

template <class E, std::size_t N>
void reader::get_enum(const fields& f, std::string_view key, const std::string& base, E& out,
                      const enum_name<E> (&table)[N]) {
    const entry* e = find(f, key);
    if (!e) return;
    const auto path = join(base, key);
    auto v = scalar(e->value, path);
    if (!v) return;
    std::string names;
    for (const auto& [name, value] : table) {
        if (*v == name) {
            out = value;
            return;
        }
        names += (names.empty() ? "" : ", ") + std::string(name);
    }
    fail(e->value, path, "must be one of " + names + ", got '" + *v + "'");
}

}  // namespace handoff::config::detail
