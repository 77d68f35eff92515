#include "handoff/proxy/ids.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace handoff::proxy;

TEST_CASE("correlation ids are 1 to 128 characters of the allowed set") {
    CHECK(valid_correlation_id("abc-123_X.y:z"));
    CHECK(valid_correlation_id(std::string(128, 'a')));
    CHECK_FALSE(valid_correlation_id(""));
    CHECK_FALSE(valid_correlation_id(std::string(129, 'a')));
    CHECK_FALSE(valid_correlation_id("bad id!"));
    CHECK_FALSE(valid_correlation_id("a\r\nb"));
    CHECK_FALSE(valid_correlation_id("a/b"));
}

TEST_CASE("generated ids are version 7 UUIDs with the RFC variant and are unique") {
    std::set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        const auto id = make_uuid_v7();
        REQUIRE(id.size() == 36);
        CHECK(id[8] == '-');
        CHECK(id[14] == '7');
        CHECK((id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b'));
        CHECK(valid_correlation_id(id));
        seen.insert(id);
    }
    CHECK(seen.size() == 10000);
}

TEST_CASE("uuid v7 ids sort by creation time across milliseconds") {
    const auto a = make_uuid_v7();
    std::string b;
    do {
        b = make_uuid_v7();
    } while (b.substr(0, 13) == a.substr(0, 13));
    CHECK(a < b);
}

TEST_CASE("traceparent validation follows W3C trace context") {
    CHECK(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    CHECK_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
    CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
    CHECK(valid_traceparent(make_traceparent()));
}
