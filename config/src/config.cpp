#include "handoff/config/config.hpp"

#include "values.hpp"

#include <algorithm>
#include <cctype>

namespace handoff::config {

const char* to_string(mode m) noexcept { return detail::name_of(detail::mode_names, m); }

const char* to_string(trailing_slash t) noexcept { return detail::name_of(detail::trailing_slash_names, t); }

bool produces(mode m) noexcept { return m != mode::forward; }

const char* to_string(profile_kind p) noexcept { return detail::name_of(detail::profile_names, p); }

const char* to_string(offset_reset r) noexcept { return detail::name_of(detail::offset_reset_names, r); }

namespace {

std::string normalised(std::string s) {
    const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
    s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), space));
    s.erase(std::find_if_not(s.rbegin(), s.rend(), space).base(), s.end());
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// The checks on one property map. `missing_protocol_counts`: the producer's map, where an absent
// security.protocol means PLAINTEXT; a subscription's map inherits the producer's when absent.
void check_properties(const std::map<std::string, std::string>& props, const std::string& base,
                      bool missing_protocol_counts, std::vector<insecure_kafka_setting>& out) {
    const auto at = [&](const char* name) { return base + "." + name; };
    if (const auto it = props.find("security.protocol"); it != props.end()) {
        const auto v = normalised(it->second);
        if (v != "ssl" && v != "sasl_ssl") {
            out.push_back({at("security.protocol"),
                           "security.protocol=" + it->second + " is not encrypted with TLS (use SSL or SASL_SSL)"});
        }
    } else if (missing_protocol_counts) {
        out.push_back(
            {at("security.protocol"),
             "security.protocol is not set, which means PLAINTEXT: nothing is encrypted (set SSL or SASL_SSL)"});
    }
    if (const auto it = props.find("ssl.endpoint.identification.algorithm"); it != props.end()) {
        if (normalised(it->second) != "https") {
            out.push_back({at("ssl.endpoint.identification.algorithm"),
                           "ssl.endpoint.identification.algorithm=" + it->second +
                               " turns off the broker hostname check (use https, librdkafka's default)"});
        }
    }
    if (const auto it = props.find("enable.ssl.certificate.verification"); it != props.end()) {
        const auto v = normalised(it->second);
        if (v != "true" && v != "t" && v != "1") {
            out.push_back(
                {at("enable.ssl.certificate.verification"), "enable.ssl.certificate.verification=" + it->second +
                                                                " accepts any broker certificate (leave it at true)"});
        }
    }
}

}  // namespace

std::vector<insecure_kafka_setting> insecure_kafka_settings(const config& c) {
    std::vector<insecure_kafka_setting> out;
    if (c.kafka.embedded) {
        out.push_back({"kafka.brokers",
                       "kafka.brokers: embedded is librdkafka's in-process mock cluster, "
                       "not a real Kafka: nothing is durable"});
    } else {
        check_properties(c.kafka.properties, "kafka.properties", true, out);
    }
    for (std::size_t i = 0; i < c.subscriptions.size(); ++i) {
        check_properties(c.subscriptions[i].properties, "subscriptions[" + std::to_string(i) + "].properties", false,
                         out);
    }
    return out;
}

}  // namespace handoff::config
