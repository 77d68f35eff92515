#include "handoff/proxy/delivery/replies.hpp"

#include <doctest/doctest.h>

using namespace handoff::proxy;

namespace {

consumed_record reply(std::vector<record_header> headers, std::string body = "{}") {
    consumed_record r;
    r.topic = "replies";
    r.value = std::move(body);
    r.headers = std::move(headers);
    return r;
}

}  // namespace

TEST_CASE("a reply record becomes the response: status, content type, reply headers, body") {
    std::string why;
    const auto got = parse_reply(reply({{"handoff_request_id", "c1"},
                                        {"handoff_reply_status", "201"},
                                        {"content-type", "application/json"},
                                        {"handoff_reply_header_location", "/orders/9"},
                                        {"handoff_reply_header_etag", "\"v1\""}},
                                       R"({"id":9})"),
                                 why);
    REQUIRE(got);
    CHECK(got->request_id == "c1");
    CHECK(got->response.status == 201);
    CHECK(got->response.body == R"({"id":9})");
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"Content-Type", "application/json"}, {"location", "/orders/9"}, {"etag", "\"v1\""}};
    CHECK(got->response.headers == expected);
}

TEST_CASE("reply headers that would change framing or carry CR/LF or another control character are dropped") {
    std::string why;
    const auto got = parse_reply(reply({{"handoff_request_id", "c1"},
                                        {"handoff_reply_status", "200"},
                                        {"handoff_reply_header_content-length", "1"},
                                        {"handoff_reply_header_transfer-encoding", "chunked"},
                                        {"handoff_reply_header_connection", "close"},
                                        {"handoff_reply_header_x-correlation-id", "spoofed"},
                                        {"handoff_reply_header_x-ok", "a\r\nSet-Cookie: x=1"},
                                        {"handoff_reply_header_x-bell", "a\x07"},
                                        {"handoff_reply_header_x-del", "a\x7f"},
                                        {"handoff_reply_header_bad name", "v"},
                                        {"handoff_reply_header_x-fine", "yes"}}),
                                 why);
    REQUIRE(got);
    const std::vector<std::pair<std::string, std::string>> expected = {{"x-fine", "yes"}};
    CHECK(got->response.headers == expected);
}

TEST_CASE("a reply without a request ID or a final status is refused with a reason") {
    std::string why;
    CHECK_FALSE(parse_reply(reply({{"handoff_reply_status", "200"}}), why));
    CHECK(why.find("handoff_request_id") != std::string::npos);
    // The caller's correlation label is not a key: a reply that names only a label matches nothing.
    why.clear();
    CHECK_FALSE(parse_reply(reply({{"handoff_correlation_id", "c1"}, {"handoff_reply_status", "200"}}), why));
    CHECK(why.find("handoff_request_id") != std::string::npos);
    for (const char* bad : {"100", "99", "600", "2000", "abc", ""}) {
        why.clear();
        CHECK_FALSE(parse_reply(reply({{"handoff_request_id", "c"}, {"handoff_reply_status", bad}}), why));
        CHECK_FALSE(why.empty());
    }
}

TEST_CASE("the registry hands a reply to its waiter once; afterwards the reply is late") {
    reply_registry r;
    int calls = 0;
    r.add("c1", [&](std::shared_ptr<const stored_response> resp) {
        ++calls;
        CHECK(resp->status == 200);
    });
    auto resp = std::make_shared<stored_response>();
    resp->status = 200;
    CHECK(r.deliver("c1", resp));
    CHECK_FALSE(r.deliver("c1", resp));
    CHECK(calls == 1);
    r.add("c2", [&](std::shared_ptr<const stored_response>) { ++calls; });
    r.remove("c2");
    CHECK_FALSE(r.deliver("c2", resp));
    CHECK(calls == 1);
    CHECK(r.size() == 0);
}

TEST_CASE("the dispatcher completes the waiter, the status store and the idempotency key") {
    auto registry = std::make_shared<reply_registry>();
    auto statuses = std::make_shared<status_store>(100, 1 << 20, std::chrono::minutes(1));
    auto keys = std::make_shared<idempotency_store>(100, 1 << 20, std::chrono::minutes(1));
    auto stats = std::make_shared<metrics>();
    reply_dispatcher d(registry, statuses, keys, stats);
    CHECK_FALSE(d.ready());
    d.on_assigned({{"replies", 0}});
    CHECK(d.ready());

    statuses->put("c1", {request_status::state::persisted, "r", "t", 0, 3, {}, {}});
    const auto fp = fingerprint("POST", "/x", "");
    keys->begin("r", "k", fp, "c1");
    std::shared_ptr<const stored_response> got;
    registry->add("c1", [&](std::shared_ptr<const stored_response> r) { got = std::move(r); });
    d.on_record(reply({{"handoff_request_id", "c1"}, {"handoff_reply_status", "202"}}, "ok"));
    REQUIRE(got);
    CHECK(got->status == 202);
    CHECK(statuses->get("c1")->current == request_status::state::replied);
    const auto replay = keys->begin("r", "k", fp, "c9");
    CHECK(replay.kind == idempotency_store::verdict::replay);
    CHECK(replay.response->body == "ok");

    // Late: nobody waits any more; the status store still learns it.
    statuses->put("c2", {request_status::state::persisted, "r", "t", 0, 4, {}, {}});
    d.on_record(reply({{"handoff_request_id", "c2"}, {"handoff_reply_status", "200"}}, "late"));
    CHECK(statuses->get("c2")->reply->body == "late");
    // Unknown and invalid replies change nothing.
    d.on_record(reply({{"handoff_request_id", "c3"}, {"handoff_reply_status", "200"}}));
    d.on_record(reply({{"handoff_reply_status", "200"}}));
    CHECK_FALSE(statuses->get("c3"));
    const auto text = stats->serialize();
    CHECK(text.find(R"(handoff_replies_total{outcome="completed"} 1)") != std::string::npos);
    CHECK(text.find(R"(handoff_replies_total{outcome="late"} 1)") != std::string::npos);
    CHECK(text.find(R"(handoff_replies_total{outcome="unknown"} 1)") != std::string::npos);
    CHECK(text.find(R"(handoff_replies_total{outcome="invalid"} 1)") != std::string::npos);
}
