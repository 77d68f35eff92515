// `profile: production` and kafka.allow_insecure (tests/CATALOGUE.md, X-4): insecure Kafka settings are
// config errors with file, line and YAML path in production, accepted in development.
#include "handoff/config/load.hpp"

#include "load_helpers.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>

using namespace handoff::config;

namespace {

load_result load(const std::string& yaml) {
    return load_string(yaml, "prod.yaml",
                       [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
}

using testing::all;

// The one error at `path`, or nullptr (with every error printed on failure).
const config_error* error_at(const load_result& r, const std::string& path) {
    const auto it =
        std::find_if(r.errors.begin(), r.errors.end(), [&](const config_error& e) { return e.path == path; });
    return it == r.errors.end() ? nullptr : &*it;
}

const std::string tls = "  properties: {security.protocol: SSL, ssl.ca.location: /etc/ca.pem}\n";

}  // namespace

TEST_CASE("the profile defaults to development, where plaintext Kafka still loads") {
    const auto r = load("kafka: {brokers: \"k:9092\"}\n");
    REQUIRE_OK(r);
    CHECK(r.value->profile == profile_kind::development);
    CHECK_FALSE(r.value->kafka.allow_insecure);
    // The settings are still known as insecure (main logs nothing about them in development).
    const auto found = insecure_kafka_settings(*r.value);
    REQUIRE(found.size() == 1);
    CHECK(found[0].path == "kafka.properties.security.protocol");
}

TEST_CASE("production with SSL or SASL_SSL and verification left on loads") {
    for (const char* proto : {"SSL", "ssl", "SASL_SSL", " sasl_ssl "}) {
        const auto r = load(
            std::string("profile: production\nkafka:\n  brokers: \"k:9093\"\n  properties: {security.protocol: '") +
            proto +
            "', ssl.endpoint.identification.algorithm: HTTPS, "
            "enable.ssl.certificate.verification: 'true'}\n");
        REQUIRE_OK(r);
        CHECK(r.value->profile == profile_kind::production);
        CHECK(insecure_kafka_settings(*r.value).empty());
    }
}

TEST_CASE("production without security.protocol is plaintext: an error at kafka.properties, naming the profile line") {
    const auto r =
        load("routes: []\nprofile: production\nkafka:\n  brokers: \"k:9092\"\n  properties:\n    linger.ms: 5\n");
    INFO(all(r));
    REQUIRE(r.errors.size() == 1);
    const auto& e = r.errors[0];
    CHECK(e.path == "kafka.properties.security.protocol");
    CHECK(e.line == 6);  // the properties map (where the key would go)
    CHECK(e.message.find("profile: production (line 2)") != std::string::npos);
    CHECK(e.message.find("PLAINTEXT") != std::string::npos);
    CHECK(e.message.find("kafka.allow_insecure: true") != std::string::npos);
    CHECK(format(e).rfind("prod.yaml:6:", 0) == 0);
    CHECK_FALSE(r.value.has_value());
}

TEST_CASE("production without any kafka.properties points at the kafka section") {
    const auto r = load("profile: production\nkafka:\n  brokers: \"k:9092\"\n");
    INFO(all(r));
    const auto* e = error_at(r, "kafka.properties.security.protocol");
    REQUIRE(e);
    CHECK(e->line == 3);  // the kafka map starts on its first key's line
}

TEST_CASE(
    "production refuses plaintext, sasl_plaintext, no hostname check and no certificate check, each at its line") {
    const auto r = load(
        "profile: production\n"
        "kafka:\n"
        "  brokers: \"k:9092\"\n"
        "  properties:\n"
        "    security.protocol: SASL_PLAINTEXT\n"
        "    ssl.endpoint.identification.algorithm: none\n"
        "    enable.ssl.certificate.verification: false\n");
    INFO(all(r));
    CHECK(r.errors.size() == 3);
    const auto* proto = error_at(r, "kafka.properties.security.protocol");
    const auto* host = error_at(r, "kafka.properties.ssl.endpoint.identification.algorithm");
    const auto* cert = error_at(r, "kafka.properties.enable.ssl.certificate.verification");
    REQUIRE(proto);
    REQUIRE(host);
    REQUIRE(cert);
    CHECK(proto->line == 5);
    CHECK(proto->message.find("security.protocol=SASL_PLAINTEXT") != std::string::npos);
    CHECK(host->line == 6);
    CHECK(host->message.find("hostname") != std::string::npos);
    CHECK(cert->line == 7);
    CHECK(cert->message.find("any broker certificate") != std::string::npos);

    CHECK(error_at(load("profile: production\nkafka: {brokers: k, properties: {security.protocol: plaintext}}\n"),
                   "kafka.properties.security.protocol"));
    CHECK(error_at(load("profile: production\nkafka: {brokers: k, properties: {security.protocol: SSL, "
                        "enable.ssl.certificate.verification: '0'}}\n"),
                   "kafka.properties.enable.ssl.certificate.verification"));
}

TEST_CASE("production refuses the embedded mock cluster at kafka.brokers") {
    const auto r = load("profile: production\nkafka:\n  brokers: embedded\n");
    INFO(all(r));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path == "kafka.brokers");
    CHECK(r.errors[0].line == 3);
    CHECK(r.errors[0].message.find("mock cluster") != std::string::npos);
}

TEST_CASE("production checks what a subscription's consumer properties set, with the file's index") {
    const auto r = load("profile: production\nkafka:\n  brokers: k\n" + tls +
                        "subscriptions:\n"
                        "  - not-a-map\n"  // fails to parse: the next one is still subscriptions[1]
                        "  - name: in\n"
                        "    topics: [a]\n"
                        "    group: g\n"
                        "    properties: {security.protocol: PLAINTEXT, ssl.endpoint.identification.algorithm: none}\n"
                        "  - {name: ok, topics: [b], group: g2, properties: {fetch.max.bytes: 1024}}\n");
    INFO(all(r));
    const auto* proto = error_at(r, "subscriptions[1].properties.security.protocol");
    const auto* host = error_at(r, "subscriptions[1].properties.ssl.endpoint.identification.algorithm");
    REQUIRE(proto);
    REQUIRE(host);
    CHECK(proto->line == 10);
    // A subscription without security.protocol inherits the producer's (SSL here): no error.
    CHECK_FALSE(std::any_of(r.errors.begin(), r.errors.end(),
                            [](const config_error& e) { return e.path.rfind("subscriptions[2]", 0) == 0; }));
}

TEST_CASE("kafka.allow_insecure lets production load, and the settings stay listed for the start-up warning") {
    const auto r = load(
        "profile: production\nkafka:\n  brokers: k\n  allow_insecure: true\n"
        "  properties: {ssl.endpoint.identification.algorithm: none}\n");
    REQUIRE_OK(r);
    CHECK(r.value->kafka.allow_insecure);
    const auto found = insecure_kafka_settings(*r.value);
    REQUIRE(found.size() == 2);
    CHECK(found[0].path == "kafka.properties.security.protocol");
    CHECK(found[1].path == "kafka.properties.ssl.endpoint.identification.algorithm");
    const auto j = nlohmann::json::parse(to_redacted_json(*r.value));
    CHECK(j["profile"] == "production");
    CHECK(j["kafka"]["allow_insecure"] == true);
}

TEST_CASE("profile and allow_insecure take only their own values") {
    const auto bad_profile = load("profile: staging\nkafka: {brokers: k}\n");
    const auto* e = error_at(bad_profile, "profile");
    REQUIRE(e);
    CHECK(e->message == "must be one of development, production, got 'staging'");
    CHECK(error_at(load("kafka: {brokers: k, allow_insecure: maybe}\n"), "kafka.allow_insecure"));
}
