// libFuzzer target: route matching on arbitrary methods and paths (tests/CATALOGUE.md, L-9). The table
// is built once from a config with literal, templated, overlapping and multi-method routes.
// Invariants: matched => a route and its params; method_not_allowed => a non-empty Allow;
// ambiguous => a reason; normalise_path is idempotent.
#include "handoff/config/load.hpp"
#include "handoff/common/http_rules.hpp"
#include "handoff/proxy/dispatch/route_table.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

using namespace handoff;

namespace {

constexpr std::string_view routes_yaml = R"(
listen: {port: 8080}
kafka: {brokers: "127.0.0.1:9092"}
routes:
  - {name: a, match: {methods: [GET], path: "/orders/{id}"}, mode: forward}
  - {name: b, match: {methods: [POST], path: "/orders/{region}"}, mode: commit, topic: "orders.{region}", key: correlation}
  - {name: c, match: {methods: [GET], path: /orders/special}, mode: event, topic: special, key: correlation}
  - {name: d, match: {methods: [POST, PUT], path: /audit}, mode: event, topic: audit, key: correlation}
  - {name: e, match: {methods: [DELETE], path: "/a/{x}/b/{y}/c"}, mode: forward}
  - {name: f, match: {methods: [GET, HEAD], path: /}, mode: forward}
)";

struct route_table_holder {
    std::shared_ptr<const proxy::route_table> table;
};
const route_table_holder* holder() {
    static const route_table_holder h = [] {
        auto loaded = config::load_string(routes_yaml, "fuzz.yaml", [](const std::string&) { return std::nullopt; });
        if (!loaded.value) {
            for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", config::format(e).c_str());
            std::abort();
        }
        return route_table_holder{
            proxy::route_table::create(std::make_shared<const config::config>(std::move(*loaded.value)))};
    }();
    return &h;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(bytes), size);
    // "METHOD path": the method is everything before the first space.
    const auto sp = in.find(' ');
    const auto method = sp == std::string_view::npos ? std::string_view("GET") : in.substr(0, sp);
    const auto target = sp == std::string_view::npos ? in : in.substr(sp + 1);
    std::string_view path = target, query;
    (void)proxy::split_target(target, path, query);
    (void)proxy::target_problem(target);
    const auto m = holder()->table->match(method, path);
    if (m.result == proxy::route_match::kind::matched && m.route == nullptr) std::abort();
    if (m.result == proxy::route_match::kind::method_not_allowed && m.allow.empty()) std::abort();
    if (m.result == proxy::route_match::kind::ambiguous && m.reason.empty()) std::abort();
    // Normalising twice changes nothing more (decoding never makes a new escape).
    const auto normalised = proxy::normalise_path(path);
    if (proxy::normalise_path(normalised) != normalised) std::abort();
    for (const auto& [k, v] : m.params) {
        if (k.empty()) std::abort();
        (void)v;
    }
    std::string decoded;
    (void)proxy::percent_decode(path, decoded);
    return 0;
}
