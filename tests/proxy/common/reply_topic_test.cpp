#include "handoff/common/reply_topic.hpp"

#include <doctest/doctest.h>

using namespace handoff::proxy;

TEST_CASE("a reply topic's partitions not yet assigned are added, in order, and only those") {
    CHECK(partitions_to_add({}, 3) == std::vector<std::int32_t>{0, 1, 2});
    CHECK(partitions_to_add({0, 1, 2}, 3).empty());
    CHECK(partitions_to_add({0}, 3) == std::vector<std::int32_t>{1, 2});
    CHECK(partitions_to_add({0, 2}, 4) == std::vector<std::int32_t>{1, 3});
}

TEST_CASE("stale metadata with fewer partitions adds nothing") {
    CHECK(partitions_to_add({0, 1, 2}, 1).empty());
    CHECK(partitions_to_add({0, 1}, 0).empty());
    CHECK(partitions_to_add({}, -1).empty());
}

TEST_CASE("a creation refused for lack of permission names the topic and the CREATE operation") {
    for (const char* err : {"TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED"}) {
        const auto f = describe_creation_failure("replies.pod-1", err, "Authorization failed.");
        CHECK(f.reason.find("'replies.pod-1'") != std::string::npos);
        CHECK(f.reason.find(err) != std::string::npos);
        CHECK(f.reason.find("Authorization failed.") != std::string::npos);
        CHECK(f.needs.find("CREATE operation on topic 'replies.pod-1'") != std::string::npos);
        CHECK(f.needs.find("replies.create: false") != std::string::npos);
    }
}

TEST_CASE("a creation refused by policy or settings points at the settings and still names CREATE") {
    const auto policy = describe_creation_failure("r", "POLICY_VIOLATION", "");
    CHECK(policy.reason == "the reply topic 'r' does not exist and could not be created: POLICY_VIOLATION");
    CHECK(policy.needs.find("create.topic.policy") != std::string::npos);
    const auto rf = describe_creation_failure("r", "INVALID_REPLICATION_FACTOR", "too few brokers");
    CHECK(rf.reason.find("(too few brokers)") != std::string::npos);
    CHECK(rf.needs.find("CREATE on topic 'r'") != std::string::npos);
    CHECK(rf.needs.find("replication_factor") != std::string::npos);
}

TEST_CASE("a missing reply topic with creation off says how to fix it") {
    const auto r = missing_topic_reason("replies.pod-1");
    CHECK(r.find("'replies.pod-1'") != std::string::npos);
    CHECK(r.find("replies.create is off") != std::string::npos);
    CHECK(r.find("CREATE") != std::string::npos);
}

TEST_CASE("a reply topic whose metadata the principal may not read names DESCRIBE and READ, other errors nothing") {
    CHECK(metadata_failure_needs("r", "TOPIC_AUTHORIZATION_FAILED") ==
          "DESCRIBE and READ on topic 'r' (and CREATE to have it created when missing)");
    CHECK(metadata_failure_needs("r", "_TRANSPORT").empty());
    CHECK(metadata_failure_needs("r", "_TIMED_OUT").empty());
}
