// Pure rules for the calling side's reply topic (README, "Reply routes"): which partitions a
// manually assigned reply consumer still has to add, and what a refused topic creation tells the
// operator. No Kafka client here; the adapter (adapters/kafka, make_reply_consumer) applies them.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace handoff::proxy {

// The partitions of a topic that now has `count` partitions that are not in `assigned`, in
// ascending order. Kafka only ever adds partitions (0..count-1), so these are the new ones; a
// smaller count (stale metadata) adds nothing and takes nothing away.
std::vector<std::int32_t> partitions_to_add(const std::set<std::int32_t>& assigned, std::int32_t count);

// A reply topic that could not be created: `reason` for /readyz, `needs` for the log line (the
// permission or the broker setting in the way). `error_name` is the broker's error code name
// (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED, POLICY_VIOLATION, ...), `message`
// the broker's text (may be empty).
struct creation_failure {
    std::string reason;
    std::string needs;
};
creation_failure describe_creation_failure(std::string_view topic, std::string_view error_name,
                                           std::string_view message);

// What the principal lacks when the reply topic's metadata cannot be read with `error_name`:
// DESCRIBE and READ for an authorization failure, empty for any other error (not a permission).
std::string metadata_failure_needs(std::string_view topic, std::string_view error_name);

// The /readyz reason while the reply topic is missing and replies.create is off.
std::string missing_topic_reason(std::string_view topic);

}  // namespace handoff::proxy
