#include "handoff/proxy/route_table.hpp"

#include <doctest/doctest.h>

using handoff::config::mode;
using handoff::proxy::route_match;
using handoff::proxy::route_table;

namespace {

handoff::config::route make_route(std::string name, std::vector<std::string> methods, std::string path, mode m) {
    handoff::config::route r;
    r.name = std::move(name);
    r.methods = std::move(methods);
    r.path = std::move(path);
    r.mode = m;
    return r;
}

std::shared_ptr<const route_table> table(std::vector<handoff::config::route> routes) {
    auto cfg = std::make_shared<handoff::config::config>();
    cfg->routes = std::move(routes);
    return route_table::create(cfg);
}

}  // namespace

TEST_CASE("a template route matches and decodes its path parameters") {
    auto t = table({make_route("get-order", {"GET"}, "/orders/{id}", mode::forward)});
    auto m = t->match("GET", "/orders/a%20b");
    REQUIRE(m.result == route_match::kind::matched);
    CHECK(m.route->name == "get-order");
    REQUIRE(m.params.size() == 1);
    CHECK(m.params[0].first == "id");
    CHECK(m.params[0].second == "a b");
}

TEST_CASE("an exact path beats a template whatever the order in the file") {
    auto t = table({make_route("by-id", {"GET"}, "/orders/{id}", mode::forward),
                    make_route("special", {"GET"}, "/orders/special", mode::event)});
    CHECK(t->match("GET", "/orders/special").route->name == "special");
    CHECK(t->match("GET", "/orders/42").route->name == "by-id");
}

TEST_CASE("a literal earlier in the path is more specific than one later") {
    auto t = table({make_route("a", {}, "/{tenant}/orders", mode::forward),
                    make_route("b", {}, "/admin/{what}", mode::forward)});
    CHECK(t->match("GET", "/admin/orders").route->name == "b");
    CHECK(t->match("GET", "/acme/orders").route->name == "a");
}

TEST_CASE("a path that matches with the wrong method gives 405 with the allowed methods") {
    auto t = table({make_route("create", {"POST"}, "/orders/{region}", mode::commit),
                    make_route("read", {"GET", "HEAD"}, "/orders/{id}", mode::forward)});
    auto m = t->match("DELETE", "/orders/eu");
    CHECK(m.result == route_match::kind::method_not_allowed);
    CHECK(m.allow == "POST, GET, HEAD");
}

TEST_CASE("a more specific route with the wrong method falls through to a template that takes it") {
    auto t = table({make_route("special", {"GET"}, "/orders/special", mode::forward),
                    make_route("create", {"POST"}, "/orders/{region}", mode::commit)});
    auto m = t->match("POST", "/orders/special");
    REQUIRE(m.result == route_match::kind::matched);
    CHECK(m.route->name == "create");
}

TEST_CASE("unmatched paths and segment counts are not found") {
    auto t = table({make_route("r", {}, "/orders/{id}", mode::forward)});
    CHECK(t->match("GET", "/orders").result == route_match::kind::not_found);
    CHECK(t->match("GET", "/orders/1/items").result == route_match::kind::not_found);
    CHECK(t->match("GET", "/orders/").result == route_match::kind::not_found);
    CHECK(t->match("GET", "/other/1").result == route_match::kind::not_found);
}

TEST_CASE("a route without methods accepts any method") {
    auto t = table({make_route("any", {}, "/x", mode::forward)});
    CHECK(t->match("PATCH", "/x").result == route_match::kind::matched);
}

TEST_CASE("percent_decode rejects malformed escapes") {
    std::string out;
    CHECK(handoff::proxy::percent_decode("a%2Fb", out));
    CHECK(out == "a/b");
    CHECK_FALSE(handoff::proxy::percent_decode("a%2", out));
    CHECK_FALSE(handoff::proxy::percent_decode("a%zz", out));
}

TEST_CASE("a forward route that serves GET also serves HEAD, an event route does not") {
    auto t = table({make_route("read", {"GET"}, "/orders/{id}", mode::forward),
                    make_route("ev", {"GET"}, "/events", mode::event)});
    CHECK(t->match("HEAD", "/orders/1").result == route_match::kind::matched);
    CHECK(t->match("HEAD", "/events").result == route_match::kind::method_not_allowed);
}
