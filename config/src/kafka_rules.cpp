#include "handoff/config/kafka_rules.hpp"

#include "values.hpp"

#include <algorithm>

namespace handoff::config {

bool is_topic_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

bool valid_topic_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_topic_name_length || name == "." || name == "..") return false;
    return std::all_of(name.begin(), name.end(), is_topic_char);
}

std::optional<std::string> weakened_durability(std::string_view name, std::string_view value) {
    const bool acks = name == "acks" || name == "request.required.acks";
    if (!acks && name != "enable.idempotence") return std::nullopt;
    std::string v = detail::lower(std::string(detail::trim(value)));
    const bool allowed = acks ? (v == "all" || v == "-1") : v == "true";
    if (allowed) return std::nullopt;
    return v;
}

std::optional<std::string> unsupported_sasl_mechanism(std::string_view name, std::string_view value) {
    if (name != "sasl.mechanism" && name != "sasl.mechanisms") return std::nullopt;
    if (detail::lower(std::string(detail::trim(value))) != "gssapi") return std::nullopt;
    return std::string(name) + "=" + std::string(value) +
           ": GSSAPI (Kerberos) is not built in (it would load Cyrus SASL into every process); "
           "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER";
}

}  // namespace handoff::config
