// Loader: YAML -> config, collecting every error. yaml-cpp and nlohmann-json stay inside config/src.
//
// Shape: one `loader` (loader.hpp) walks the document once, section by section; every map goes
// through `map()` (unknown and duplicate keys), every scalar value through `scalar()` (${ENV}
// expansion), both in reader.cpp, so those rules hold everywhere. Cross-field rules (rules.cpp:
// route uniqueness, the Kafka durability guard, the production profile) run after the sections
// they read. The JSON output is in to_json.cpp.
#include "handoff/config/load.hpp"

#include "loader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace handoff::config {
namespace detail {

load_result loader::run(std::string_view text) {
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
    out.warnings = std::move(warnings_);
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

void loader::parse(const YAML::Node& root, config& c) {
    const auto top = map(root, "",
                         {"profile", "listen", "admin", "upstream", "kafka", "defaults", "routing", "log", "drain",
                          "limits", "status", "idempotency", "state", "replies", "routes", "subscriptions"});
    if (!top) return;
    const auto section = [&](std::string_view name) {
        const entry* e = find(*top, name);
        return e ? e->value : YAML::Node(YAML::NodeType::Null);
    };
    places_.emplace("", root);
    get_enum(*top, "profile", "", c.profile, profile_names);
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
    parse_state(section("state"), c.state);
    parse_replies(section("replies"), c.replies);
    const entry* kafka = find(*top, "kafka");
    parse_kafka(kafka ? kafka->value : root, kafka != nullptr, c.kafka);
    parse_routes(section("routes"), c);
    parse_subscriptions(section("subscriptions"), c);
    check_profile(c, find(*top, "profile"));
    check_body_bounds(c);
    check_state(c);
}

}  // namespace detail

std::string format(const config_error& e) {
    std::string out = e.file;
    if (e.line > 0) out += ":" + std::to_string(e.line) + ":" + std::to_string(e.column);
    out += ": ";
    if (!e.path.empty()) out += e.path + ": ";
    return out + e.message;
}

load_result load_string(std::string_view yaml, const std::string& file, env_lookup env) {
    return detail::loader(file, std::move(env)).run(yaml);
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

}  // namespace handoff::config
