// The loader: one walk over the document, section by section, then the cross-field rules; every
// error collected (see reader.hpp for the reading core). Its member functions live in one file per
// room: load.cpp (the walk and the public load_* functions), sections.cpp (the top-level sections
// and kafka), routes.cpp, subscriptions.cpp, rules.cpp (cross-field rules). Private to config/.
#pragma once

#include "reader.hpp"

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace handoff::config::detail {

// What route-level cross checks need beyond the route itself.
struct route_info {
    std::size_t index = 0;
    bool mode_known = false;
    bool path_valid = false;
    std::string shape;  // path with parameter names erased: "/orders/{}"
    YAML::Node name_node;
    YAML::Node node;
};

class loader : public reader {
public:
    using reader::reader;

    load_result run(std::string_view text);

private:
    void parse(const YAML::Node& root, config& c);

    // sections.cpp
    void parse_listen(const YAML::Node& n, listen_config& l);
    void parse_admin(const YAML::Node& n, admin_config& a);
    void parse_upstream(const YAML::Node& n, upstream_config& u);
    void parse_defaults(const YAML::Node& n, defaults_config& d);
    void parse_routing(const YAML::Node& n, routing_config& r);
    void parse_drain(const YAML::Node& n, drain_config& d);
    void parse_limits(const YAML::Node& n, limits_config& l);
    void parse_status(const YAML::Node& n, status_config& s);
    void parse_idempotency(const YAML::Node& n, idempotency_config& i);
    void parse_replies(const YAML::Node& n, replies_config& r);
    void parse_state(const YAML::Node& n, state_config& s);
    void parse_log(const YAML::Node& n, log_config& l);
    void parse_kafka(const YAML::Node& n, bool present, kafka_config& k);

    // routes.cpp
    void parse_routes(const YAML::Node& n, config& c);
    bool parse_route(const YAML::Node& n, const std::string& p, const config& c, route& r, route_info& info);
    void parse_canary(const YAML::Node& n, const std::string& p, route& r, const route_info& info);
    void parse_match(const YAML::Node& n, const std::string& p, route& r, route_info& info,
                     std::vector<std::string>& params);
    bool check_path(const YAML::Node& n, const std::string& p, const std::string& path,
                    std::vector<std::string>& params, std::string& shape);
    void parse_key(const YAML::Node& n, const std::string& p, const std::string& v,
                   const std::vector<std::string>& params, bool check_params, key_source& out);

    // subscriptions.cpp
    void parse_subscriptions(const YAML::Node& n, config& c);
    bool parse_subscription(const YAML::Node& n, const std::string& p, subscription& s, YAML::Node& name_node);
    bool check_target_path(const YAML::Node& n, const std::string& p, const std::string& v);

    // rules.cpp: cross-field rules, run after the sections they read
    void check_unique(const std::vector<route>& routes, std::vector<route_info>& infos, trailing_slash slash);
    void check_durability(const std::vector<route>& routes, const std::vector<route_info>& infos);
    void check_reply_topic(const config& c, const std::vector<route_info>& infos);
    void check_profile(const config& c, const entry* profile);
    void check_body_bounds(config& c);
    void check_state(const config& c);

    std::map<std::string, std::pair<YAML::Node, std::string>> property_nodes_;  // name -> (value node, expanded)
    std::vector<std::size_t> subscription_index_;  // c.subscriptions[i] is subscriptions[subscription_index_[i]]
};

}  // namespace handoff::config::detail
