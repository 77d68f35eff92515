#include "handoff/proxy/dispatch/route_table.hpp"

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

std::shared_ptr<const route_table> table(
    std::vector<handoff::config::route> routes,
    handoff::config::trailing_slash slash = handoff::config::trailing_slash::match) {
    auto cfg = std::make_shared<handoff::config::config>();
    cfg->routes = std::move(routes);
    cfg->routing.trailing_slash = slash;
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
    auto t = table(
        {make_route("a", {}, "/{tenant}/orders", mode::forward), make_route("b", {}, "/admin/{what}", mode::forward)});
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

// ---- normalisation (issue 14): no spelling of a converted route's path bypasses it -------------

namespace {

std::shared_ptr<const route_table> orders_table() {
    return table({make_route("orders", {"POST"}, "/orders", mode::event),
                  make_route("items", {"POST"}, "/items/{id}", mode::commit),
                  make_route("copied", {"POST"}, "/copied", mode::shadow),
                  make_route("read", {"GET"}, "/orders/{id}", mode::forward),
                  make_route("files", {}, "/files/{name}", mode::forward)});
}

std::string matched_name(const route_match& m) { return m.result == route_match::kind::matched ? m.route->name : ""; }

}  // namespace

TEST_CASE("normalise_path decodes escaped unreserved characters and uppercases the other escapes") {
    using handoff::proxy::normalise_path;
    CHECK(normalise_path("/orders") == "/orders");
    CHECK(normalise_path("/%6Frders") == "/orders");
    CHECK(normalise_path("/%6frders") == "/orders");
    CHECK(normalise_path("/%41%7a%30%2D%2e%5F%7E") == "/Az0-._~");
    CHECK(normalise_path("/caf%c3%a9") == "/caf%C3%A9");
    CHECK(normalise_path("/a%2fb%3b") == "/a%2Fb%3B");  // reserved characters stay encoded
    CHECK(normalise_path("/a%2") == "/a%2");            // malformed: left as it is
    CHECK(normalise_path("/a%zz%") == "/a%zz%");
    CHECK(normalise_path("/a%2541") == "/a%2541");  // decoded once: "%25" is '%', not unreserved
}

TEST_CASE("a percent-encoded spelling of a route's path is served by that route, hex in either case") {
    auto t = orders_table();
    CHECK(matched_name(t->match("POST", "/%6Frders")) == "orders");
    CHECK(matched_name(t->match("POST", "/%6frders")) == "orders");
    CHECK(matched_name(t->match("POST", "/%6F%72%64%65%72%73")) == "orders");
    CHECK(matched_name(t->match("GET", "/%6Frders/42")) == "read");
}

TEST_CASE("path parameters are matched and decoded after normalisation") {
    auto t = orders_table();
    const auto m = t->match("POST", "/%69tems/4%32");
    REQUIRE(matched_name(m) == "items");
    REQUIRE(m.params.size() == 1);
    CHECK(m.params[0].second == "42");
    const auto e = t->match("GET", "/files/caf%c3%a9");
    REQUIRE(matched_name(e) == "files");
    CHECK(e.params[0].second == "caf\xc3\xa9");
}

TEST_CASE("escapes in a route's literal path compare case-insensitively") {
    auto t = table({make_route("cafe", {}, "/caf%c3%a9", mode::event)});
    CHECK(matched_name(t->match("GET", "/caf%C3%A9")) == "cafe");
    CHECK(matched_name(t->match("GET", "/caf%c3%a9")) == "cafe");
}

TEST_CASE("by default a trailing slash is ignored, on requests and on route paths") {
    auto t = table({make_route("orders", {"POST"}, "/orders", mode::event),
                    make_route("read", {"GET"}, "/orders/{id}/", mode::forward),
                    make_route("root", {}, "/", mode::forward)});
    CHECK(matched_name(t->match("POST", "/orders/")) == "orders");
    CHECK(matched_name(t->match("POST", "/%6Frders/")) == "orders");
    CHECK(matched_name(t->match("GET", "/orders/42")) == "read");
    CHECK(matched_name(t->match("GET", "/orders/42/")) == "read");
    CHECK(matched_name(t->match("GET", "/")) == "root");
    CHECK(t->match("GET", "/orders/").result == route_match::kind::method_not_allowed);
}

TEST_CASE("with trailing_slash strict a trailing slash makes another path") {
    auto t = table({make_route("orders", {"POST"}, "/orders", mode::event),
                    make_route("slashed", {"POST"}, "/items/", mode::event)},
                   handoff::config::trailing_slash::strict);
    CHECK(matched_name(t->match("POST", "/orders")) == "orders");
    CHECK(t->match("POST", "/orders/").result == route_match::kind::not_found);
    CHECK(matched_name(t->match("POST", "/items/")) == "slashed");
    CHECK(t->match("POST", "/items").result == route_match::kind::not_found);
}

TEST_CASE("a path with path parameters that would otherwise be a converted route's path is ambiguous") {
    auto t = orders_table();
    for (const char* path : {"/orders;x", "/orders;jsessionid=1", "/%6Frders;x", "/orders/;x", "/orders;x/",
                             "/orders%3Bx", "/orders%3bx", "/;x/orders", "/ORDERS;x", "/items/42;v=1", "/copied;x"}) {
        CAPTURE(path);
        const auto m = t->match("POST", path);
        CHECK(m.result == route_match::kind::ambiguous);
        CHECK_FALSE(m.reason.empty());
    }
}

TEST_CASE("path parameters near a forward route, or with a method no converted route takes, are left alone") {
    auto t = orders_table();
    CHECK(matched_name(t->match("GET", "/orders/42;v=1")) == "read");  // forwarded as received
    CHECK(matched_name(t->match("GET", "/files/a;b")) == "files");
    CHECK(t->match("GET", "/orders;x").result == route_match::kind::not_found);
    CHECK(t->match("POST", "/other;x").result == route_match::kind::not_found);
    CHECK(t->match("POST", "/orders;x/more").result == route_match::kind::not_found);
}

TEST_CASE("a path that differs from a converted route's only in letter case is ambiguous") {
    auto t = orders_table();
    CHECK(t->match("POST", "/ORDERS").result == route_match::kind::ambiguous);
    CHECK(t->match("POST", "/Orders/").result == route_match::kind::ambiguous);
    CHECK(t->match("POST", "/%4Frders").result == route_match::kind::ambiguous);
    CHECK(t->match("POST", "/Items/42").result == route_match::kind::ambiguous);
    // Not near a converted route: a forward route, or a method the converted route does not take.
    CHECK(t->match("GET", "/Files/a").result == route_match::kind::not_found);
    CHECK(t->match("GET", "/ORDERS").result == route_match::kind::not_found);
}

TEST_CASE("an exact match wins over a case-insensitive one") {
    auto t = table({make_route("orders", {"POST"}, "/orders", mode::event),
                    make_route("legacy", {"POST"}, "/Orders", mode::forward)});
    CHECK(matched_name(t->match("POST", "/Orders")) == "legacy");
    CHECK(t->match("POST", "/ORDERS").result == route_match::kind::ambiguous);
}

TEST_CASE("a canary that publishes makes its route a converted one") {
    auto r = make_route("canary", {"POST"}, "/orders", mode::forward);
    r.canary_mode = mode::event;
    r.canary_percent_bp = 100;
    CHECK(handoff::proxy::is_converted(r));
    CHECK(table({r})->match("POST", "/orders;x").result == route_match::kind::ambiguous);
    r.canary_percent_bp = 0;
    CHECK_FALSE(handoff::proxy::is_converted(r));
    CHECK(table({r})->match("POST", "/orders;x").result == route_match::kind::not_found);
}
