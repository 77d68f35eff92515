#include "reader.hpp"

#include "handoff/config/kafka_rules.hpp"

#include <algorithm>
#include <cstdlib>

namespace handoff::config::detail {

std::string join(const std::string& base, std::string_view key) {
    return base.empty() ? std::string(key) : base + "." + std::string(key);
}

reader::reader(std::string file, env_lookup env) : file_(std::move(file)), env_(std::move(env)) {
    if (!env_) {
        env_ = [](const std::string& name) -> std::optional<std::string> {
            const char* v = std::getenv(name.c_str());
            return v ? std::optional<std::string>(v) : std::nullopt;
        };
    }
}

config_error reader::at(const YAML::Mark& m, std::string path, std::string message) const {
    const bool placed = m.line >= 0;
    return {file_, placed ? m.line + 1 : 0, placed ? m.column + 1 : 0, std::move(path), std::move(message)};
}

void reader::fail(const YAML::Mark& m, std::string path, std::string message) {
    errors_.push_back(at(m, std::move(path), std::move(message)));
}

void reader::fail(const YAML::Node& n, std::string path, std::string message) {
    fail(n.Mark(), std::move(path), std::move(message));
}

void reader::warn(const YAML::Node& n, std::string path, std::string message) {
    warnings_.push_back(at(n.Mark(), std::move(path), std::move(message)));
}

std::optional<fields> reader::map(const YAML::Node& n, const std::string& path,
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
            fail(
                k, join(path, key),
                "duplicate key '" + key + "' (first at line " + std::to_string(prev->second.key.Mark().line + 1) + ")");
            continue;
        }
        out.emplace(key, entry{k, it->second});
    }
    return out;
}

const entry* reader::find(const fields& f, std::string_view key) {
    const auto it = f.find(key);
    return it == f.end() ? nullptr : &it->second;
}

std::optional<std::string> reader::scalar(const YAML::Node& n, const std::string& path) {
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

std::optional<std::string> reader::expand(const YAML::Node& n, const std::string& path, const std::string& in) {
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

void reader::get_string(const fields& f, std::string_view key, const std::string& base, std::string& out,
                        bool non_empty) {
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

void reader::get_port(const fields& f, std::string_view key, const std::string& base, std::uint16_t& out) {
    get_int(f, key, base, out, 1, 65535);
}

void reader::get_bool(const fields& f, std::string_view key, const std::string& base, bool& out) {
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

void reader::get_size(const fields& f, std::string_view key, const std::string& base, std::size_t& out,
                      std::size_t max) {
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

void reader::get_duration(const fields& f, std::string_view key, const std::string& base, millis& out,
                          bool allow_zero) {
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

void reader::get_ip(const fields& f, std::string_view key, const std::string& base, std::string& out) {
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

std::vector<std::pair<YAML::Node, std::string>> reader::list(const YAML::Node& n, const std::string& path) {
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

void reader::get_topic(const fields& f, std::string_view key, const std::string& base, std::string& out) {
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

void reader::get_name(const fields& f, const YAML::Node& n, const std::string& p, const char* what, std::string& out,
                      YAML::Node& name_node) {
    const entry* e = find(f, "name");
    if (!e) {
        fail(n, p, "missing required key 'name'");
        return;
    }
    name_node = e->value;
    if (auto v = scalar(e->value, p + ".name")) {
        if (valid_name(*v)) {
            out = std::move(*v);
        } else {
            fail(e->value, p + ".name",
                 "invalid " + std::string(what) + " name '" + *v +
                     "' (1-64 of [A-Za-z0-9._-], starting with a letter or digit)");
        }
    }
}

void reader::get_header_names(const fields& f, std::string_view key, const std::string& base,
                              std::vector<std::string>& out) {
    const entry* e = find(f, key);
    if (!e) return;
    const auto path = join(base, key);
    for (auto& [node, h] : list(e->value, path)) {
        if (!is_token(h)) {
            fail(node, path, "invalid header name '" + h + "'");
        } else if (std::none_of(out.begin(), out.end(),
                                [&, &name = h](const std::string& x) { return lower(x) == lower(name); })) {
            out.push_back(h);
        }
    }
}

bool reader::check_topic(const YAML::Node& n, const std::string& p, const std::string& topic,
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
            fail(n, p,
                 std::string("invalid character '") + c + "' in topic '" + topic +
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
    if (literal > max_topic_name_length) {
        fail(n, p, "topic is longer than Kafka's limit of 249 characters");
        return false;
    }
    if (!templated && (topic == "." || topic == "..")) {
        fail(n, p, "'" + topic + "' is not a legal Kafka topic name");
        return false;
    }
    return ok;
}

YAML::Node reader::place_of(std::string path) const {
    for (;;) {
        if (const auto it = places_.find(path); it != places_.end()) return it->second;
        const auto dot = path.rfind('.');
        if (dot == std::string::npos) break;
        path.erase(dot);
    }
    const auto root = places_.find("");
    return root == places_.end() ? YAML::Node() : root->second;
}

}  // namespace handoff::config::detail
