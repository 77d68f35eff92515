#include "handoff/proxy/dispatch/status_store.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <list>
#include <thread>

using namespace handoff::proxy;
using state = request_status::state;

TEST_CASE("the status store returns the latest state of a request") {
    status_store s(10, 1 << 20, std::chrono::minutes(1));
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
    status_store s(3, 1 << 20, std::chrono::minutes(1));
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
    status_store s(10, 1 << 20, std::chrono::milliseconds(0));
    s.put("a", {});
    CHECK_FALSE(s.get("a"));
    CHECK(s.size() == 0);
}

TEST_CASE("status JSON has offsets only once persisted and a reason on failure") {
    auto j = nlohmann::json::parse(status_store::to_json("id", {state::persisted, "r", "t", 1, 5, {}, {}}, false));
    CHECK(j["state"] == "persisted");
    CHECK(j["offset"] == 5);
    auto k = nlohmann::json::parse(
        status_store::to_json("id", {state::failed, "r", "t", -1, -1, "Local: Message timed out", {}}, false));
    CHECK(k["state"] == "failed");
    CHECK_FALSE(k.contains("offset"));
    CHECK(k["reason"] == "Local: Message timed out");
}

TEST_CASE("the status store is safe under concurrent writers and readers") {
    status_store s(1000, 1 << 20, std::chrono::minutes(1));
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

TEST_CASE("a reply makes the state replied and keeps the offset a delivery report gave") {
    status_store s(10, 1 << 20, std::chrono::minutes(1));
    CHECK_FALSE(s.put_reply("nobody", std::make_shared<stored_response>()));  // unknown: nothing stored
    CHECK(s.size() == 0);
    s.put("a", {state::persisted, "r", "t", 1, 7, {}, {}});
    auto reply = std::make_shared<stored_response>();
    reply->status = 201;
    reply->headers = {{"Content-Type", "application/json"}, {"Location", "/orders/1"}};
    reply->body = R"({"id":1})";
    REQUIRE(s.put_reply("a", reply));
    // A delivery report arriving after the reply does not undo it.
    s.put("a", {state::persisted, "r", "t", 1, 7, {}, {}});
    const auto got = s.get("a");
    REQUIRE(got);
    CHECK(got->current == state::replied);
    const auto j = nlohmann::json::parse(status_store::to_json("a", *got, /*reply_content=*/true));
    CHECK(j["state"] == "replied");
    CHECK(j["offset"] == 7);
    CHECK(j["reply"]["status"] == 201);
    CHECK(j["reply"]["headers"]["Location"] == "/orders/1");
    CHECK(j["reply"]["body"] == R"({"id":1})");
    // status.reply_bodies false (the default): the status code only.
    const auto bare = nlohmann::json::parse(status_store::to_json("a", *got, /*reply_content=*/false));
    CHECK(bare["state"] == "replied");
    CHECK(bare["reply"] == nlohmann::json{{"status", 201}});
}

TEST_CASE("a reply body that is not UTF-8 is given as base64") {
    request_status st{state::replied, "r", "t", -1, -1, {}, {}};
    auto reply = std::make_shared<stored_response>();
    reply->status = 200;
    reply->body = std::string("\xff\x00\x01", 3);
    st.reply = reply;
    const auto j = nlohmann::json::parse(status_store::to_json("a", st, /*reply_content=*/true));
    CHECK_FALSE(j["reply"].contains("body"));
    CHECK(j["reply"]["body_base64"] == "/wAB");
}

TEST_CASE("the status store is bounded in bytes: large replies push out the oldest entries") {
    status_store s(1000, 64 * 1024, std::chrono::minutes(1));
    for (int i = 0; i < 10; ++i) {
        const auto id = std::string("r").append(std::to_string(i));
        s.put(id, {});
        auto reply = std::make_shared<stored_response>();
        reply->status = 200;
        reply->body.assign(20 * 1024, 'x');
        s.put_reply(id, reply);
        CHECK(s.bytes() <= 64 * 1024 + 21 * 1024);
    }
    CHECK(s.size() < 10);
    CHECK(s.get("r9"));
    CHECK_FALSE(s.get("r0"));
}

TEST_CASE("the status store evicts in the same order as a reference LRU under random writes") {
    // Re-writing an ID moves it to the front from anywhere in the list (head, middle, tail), so
    // this walks every case of the intrusive list; a reference std::list says what must remain.
    constexpr std::size_t bound = 40;
    status_store s(bound, std::size_t{1} << 30, std::chrono::minutes(10));
    std::list<std::string> model;  // front = most recently written
    std::uint32_t x = 12345;
    for (int i = 0; i < 20000; ++i) {
        x = x * 1664525u + 1013904223u;
        const std::string id = "id-" + std::to_string((x >> 8) % 120);
        s.put(id, {state::accepted, "r", "t", -1, -1, {}, {}});
        model.remove(id);
        model.push_front(id);
        if (model.size() > bound) model.pop_back();
        if (i % 97 == 0) {
            REQUIRE(s.size() == model.size());
            for (const auto& m : model) REQUIRE(s.get(m));
        }
    }
    for (int k = 0; k < 120; ++k) {
        const std::string id = "id-" + std::to_string(k);
        const bool kept = std::find(model.begin(), model.end(), id) != model.end();
        CHECK(static_cast<bool>(s.get(id)) == kept);
    }
}

TEST_CASE("IDs of any length are kept apart, inline or not, and an evicted entry's memory is reused cleanly") {
    status_store s(2, 1 << 20, std::chrono::minutes(1));
    const std::string at_bound(48, 'x');  // the longest ID kept inline
    const std::string over = at_bound + "y";
    const std::string other = at_bound + "z";  // differs from `over` only past the inline part
    const std::string long_id(300, 'q');
    s.put(at_bound, {state::persisted, "r", "t", 0, 1, {}, {}});
    s.put(over, {state::persisted, "r", "t", 0, 2, {}, {}});
    CHECK(s.get(at_bound)->offset == 1);
    CHECK(s.get(over)->offset == 2);
    CHECK_FALSE(s.get(other));
    // Each put below evicts the oldest and reuses its entry: nothing of the old one shows through.
    s.put(other, {state::failed, "r2", "t2", -1, -1, "why", {}});
    s.put(long_id, {state::accepted, "r3", "t3", -1, -1, {}, {}});
    s.put("s", {state::persisted, "r4", "t4", 3, 4, {}, {}});
    CHECK(s.size() == 2);
    CHECK_FALSE(s.get(at_bound));
    CHECK_FALSE(s.get(over));
    CHECK_FALSE(s.get(other));
    auto l = s.get(long_id);
    REQUIRE(l);
    CHECK(l->current == state::accepted);
    CHECK(l->reason.empty());
    CHECK(l->offset == -1);
    auto short_one = s.get("s");
    REQUIRE(short_one);
    CHECK(short_one->route == "r4");
    CHECK(short_one->offset == 4);
}

TEST_CASE("an evicted entry does not keep its stored reply alive") {
    status_store s(1, 1 << 20, std::chrono::minutes(1));
    auto reply = std::make_shared<stored_response>();
    reply->body = std::string(1000, 'b');
    std::weak_ptr<const stored_response> watch = reply;
    s.put("a", {state::persisted, "r", "t", 1, 7, {}, {}});
    REQUIRE(s.put_reply("a", std::move(reply)));
    s.put("b", {});  // evicts a; its entry is kept for reuse
    CHECK_FALSE(s.get("a"));
    CHECK(watch.expired());
    s.put("c", {});  // reuses it
    auto c = s.get("c");
    REQUIRE(c);
    CHECK_FALSE(c->reply);
}

TEST_CASE("at its bound the store keeps exactly the newest IDs, each with its own status, through many reuses") {
    // 5,000 IDs through a store of 1,000: every put past the bound evicts one entry and reuses
    // it, and the index grows and rehashes on the way to the bound.
    status_store s(1000, 64 << 20, std::chrono::minutes(1));
    auto id = [](int i) { return "req-" + std::to_string(i) + (i % 3 == 0 ? std::string(60, 'L') : std::string()); };
    for (int i = 0; i < 5000; ++i) {
        s.put(id(i), {state::accepted, "r", "t", -1, -1, {}, {}});
        if (i % 2 == 0) s.put(id(i), {state::persisted, "r", "t", i % 7, i, {}, {}});
    }
    CHECK(s.size() == 1000);
    int present = 0;
    for (int i = 0; i < 5000; ++i) {
        auto got = s.get(id(i));
        if (i < 4000) {
            CHECK_FALSE(got);
            continue;
        }
        REQUIRE(got);
        ++present;
        CHECK(got->offset == (i % 2 == 0 ? i : -1));
        CHECK(got->current == (i % 2 == 0 ? state::persisted : state::accepted));
    }
    CHECK(present == 1000);
}
