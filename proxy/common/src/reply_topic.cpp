#include "handoff/common/reply_topic.hpp"

namespace handoff::proxy {

std::vector<std::int32_t> partitions_to_add(const std::set<std::int32_t>& assigned, std::int32_t count) {
    std::vector<std::int32_t> out;
    for (std::int32_t p = 0; p < count; ++p) {
        if (!assigned.contains(p)) out.push_back(p);
    }
    return out;
}

creation_failure describe_creation_failure(std::string_view topic, std::string_view error_name,
                                           std::string_view message) {
    const std::string t(topic);
    creation_failure out;
    out.reason = "the reply topic '" + t + "' does not exist and could not be created: " + std::string(error_name);
    if (!message.empty()) out.reason += " (" + std::string(message) + ")";
    if (error_name == "TOPIC_AUTHORIZATION_FAILED" || error_name == "CLUSTER_AUTHORIZATION_FAILED") {
        out.needs = "the CREATE operation on topic '" + t +
                    "' (or a prefixed ACL on the reply topics' prefix, or CREATE on the cluster); or create the "
                    "topic beforehand and set replies.create: false";
    } else if (error_name == "POLICY_VIOLATION") {
        out.needs = "CREATE on topic '" + t +
                    "' and settings the broker's create.topic.policy accepts (replies.create: partitions, "
                    "replication_factor, retention); or create the topic beforehand";
    } else {
        out.needs = "CREATE on topic '" + t +
                    "' and settings the broker accepts (replies.create: partitions, replication_factor, "
                    "retention); or create the topic beforehand";
    }
    return out;
}

std::string metadata_failure_needs(std::string_view topic, std::string_view error_name) {
    if (error_name != "TOPIC_AUTHORIZATION_FAILED") return {};
    return "DESCRIBE and READ on topic '" + std::string(topic) + "' (and CREATE to have it created when missing)";
}

std::string missing_topic_reason(std::string_view topic) {
    return "the reply topic '" + std::string(topic) +
           "' does not exist and replies.create is off: create it (the principal needs CREATE on it), or turn "
           "replies.create on";
}

}  // namespace handoff::proxy
