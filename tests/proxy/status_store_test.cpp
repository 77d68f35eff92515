#include "handoff/proxy/status_store.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <thread>

using namespace handoff::proxy;
using state = request_status::state;

TEST_CASE("the status store returns the latest state of a request") {
    status_store s(10, std::chrono::minutes(1));
    s.put("a", {state::accepted, "r", "t", -1, -1, {}, {}});
    s.put("a", {state::persisted, "r", "t", 2, 40, {}, {}});
    auto got = s.get("a");
    REQUIRE(got);
    CHECK(got->current == state::persisted);
    CHECK(got->partition == 2);
    CHECK(got->offset == 40);
    CHECK_FALSE(s.get("b"));
}

TEST_CASE("the status store evicts the least recently written entry at its bound") {
    status_store s(3, std::chrono::minutes(1));
    for (const char* id : {"a", "b", "c"}) s.put(id, {});
    s.put("a", {});  // a is now the most recent
    s.put("d", {});
    CHECK(s.size() == 3);
    CHECK_FALSE(s.get("b"));
    CHECK(s.get("a"));
    CHECK(s.get("c"));
    CHECK(s.get("d"));
}

TEST_CASE("expired entries are not returned") {
    status_store s(10, std::chrono::milliseconds(0));
    s.put("a", {});
    CHECK_FALSE(s.get("a"));
    CHECK(s.size() == 0);
}

TEST_CASE("status JSON has offsets only once persisted and a reason on failure") {
    auto j = nlohmann::json::parse(status_store::to_json("id", {state::persisted, "r", "t", 1, 5, {}, {}}));
    CHECK(j["state"] == "persisted");
    CHECK(j["offset"] == 5);
    auto k = nlohmann::json::parse(status_store::to_json("id", {state::failed, "r", "t", -1, -1, "Local: Message timed out", {}}));
    CHECK(k["state"] == "failed");
    CHECK_FALSE(k.contains("offset"));
    CHECK(k["reason"] == "Local: Message timed out");
}

TEST_CASE("the status store is safe under concurrent writers and readers") {
    status_store s(1000, std::chrono::minutes(1));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&s, t] {
            for (int i = 0; i < 5000; ++i) {
                const auto id = std::to_string(t) + "-" + std::to_string(i % 300);
                s.put(id, {});
                (void)s.get(id);
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(s.size() <= 1000);
}
