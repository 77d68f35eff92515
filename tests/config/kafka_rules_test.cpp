// The Kafka rules shared by the config loader, the proxy and the Kafka adapter
// (handoff/config/kafka_rules.hpp): topic names and the durability guard.
#include "handoff/config/kafka_rules.hpp"
#include "handoff/config/load.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <utility>

using namespace handoff::config;

namespace {

// The config loader's verdict on kafka.properties.<name> = "<value>": whether it refuses the
// value at that property.
bool loader_refuses(const std::string& name, const std::string& value) {
    const auto r = load_string("kafka: {brokers: \"127.0.0.1:9092\", properties: {" + name + ": \"" + value +
                                   "\"}}\nroutes:\n  - {name: e, match: {path: /e}, mode: event, topic: e}\n",
                               "test.yaml", [](const std::string&) { return std::nullopt; });
    return std::any_of(r.errors.begin(), r.errors.end(),
                       [&](const config_error& e) { return e.path == "kafka.properties." + name; });
}

}  // namespace

TEST_CASE("topic characters are [A-Za-z0-9._-]") {
    for (char c : std::string("azAZ09._-")) CHECK(is_topic_char(c));
    // The whole literal, its NUL included (a string_view literal keeps its length).
    for (char c : std::string_view(" /{}:*+%~\t\n\0\x7f", 13)) CHECK_FALSE(is_topic_char(c));
    CHECK_FALSE(is_topic_char(static_cast<char>(0xc3)));
}

TEST_CASE("a legal topic name: 1..249 of [A-Za-z0-9._-], not . or ..") {
    CHECK(valid_topic_name("orders.eu-1_x"));
    CHECK(valid_topic_name(std::string(249, 'a')));
    CHECK(valid_topic_name("..."));
    CHECK(valid_topic_name(".a"));
    CHECK(max_topic_name_length == 249);
    for (const std::string& bad :
         {std::string(), std::string("."), std::string(".."), std::string("bad topic"), std::string("orders/eu"),
          std::string(250, 'a'), std::string("\xc3\xbcmlaut"), std::string("{x}"), std::string("a\0b", 3)}) {
        CHECK_FALSE(valid_topic_name(bad));
    }
}

TEST_CASE("a topic template is checked by its literal characters; its rendering by valid_topic_name") {
    const auto refused = [](const std::string& topic) {
        return !load_string(
                    "kafka: {brokers: b}\nroutes:\n  - {name: e, match: {path: \"/e/{p}\"}, mode: event, topic: \"" +
                        topic + "\"}\n",
                    "test.yaml", [](const std::string&) { return std::nullopt; })
                    .errors.empty();
    };
    CHECK_FALSE(refused("orders.{p}"));
    CHECK_FALSE(refused("{p}"));                          // "." or ".." only once rendered
    CHECK_FALSE(refused(std::string(249, 'a') + "{p}"));  // the limit counts literal characters
    CHECK(refused(std::string(250, 'a') + "{p}"));
    CHECK(refused("orders/{p}"));
    CHECK(refused(".."));
    CHECK(refused("."));
}

TEST_CASE("the durability guard: idempotence and acks=all cannot be turned off") {
    CHECK_FALSE(weakened_durability("acks", "all"));
    CHECK_FALSE(weakened_durability("acks", "-1"));
    CHECK_FALSE(weakened_durability("request.required.acks", " ALL\t"));
    CHECK_FALSE(weakened_durability("enable.idempotence", "true"));
    CHECK_FALSE(weakened_durability("linger.ms", "0"));
    CHECK_FALSE(weakened_durability("ACKS", "1"));  // property names are case-sensitive (librdkafka)
    CHECK(weakened_durability("acks", "1") == std::string("1"));
    CHECK(weakened_durability("acks", " 0 ") == std::string("0"));
    CHECK(weakened_durability("request.required.acks", "1") == std::string("1"));
    CHECK(weakened_durability("enable.idempotence", " False ") == std::string("false"));
    CHECK(weakened_durability("enable.idempotence", "") == std::string());
    CHECK(weakened_durability("acks", "a ll") == std::string("a ll"));  // only the ends are trimmed
}

TEST_CASE("the loader refuses exactly the values the durability guard refuses") {
    const char* values[] = {" all", "ALL", "-1", "1", "0", "false", "False", " true ", "all ", "TRUE", "t rue", ""};
    for (const char* name : {"acks", "request.required.acks", "enable.idempotence"}) {
        for (const char* value : values) {
            INFO(name << " = '" << value << "'");
            CHECK(loader_refuses(name, value) == weakened_durability(name, value).has_value());
        }
    }
    CHECK_FALSE(loader_refuses("acks", " all"));
    CHECK_FALSE(loader_refuses("acks", "ALL"));
    CHECK_FALSE(loader_refuses("acks", "-1"));
    CHECK(loader_refuses("acks", "1"));
    CHECK(loader_refuses("acks", "0"));
    CHECK(loader_refuses("enable.idempotence", "false"));
    CHECK(loader_refuses("enable.idempotence", "False"));
    CHECK_FALSE(loader_refuses("enable.idempotence", " true "));
}

TEST_CASE("auto_offset_reset is named as the YAML and librdkafka's auto.offset.reset spell it") {
    // make_consumer passes to_string(offset_reset) to librdkafka: one name table, no array index.
    CHECK(std::string(to_string(offset_reset::earliest)) == "earliest");
    CHECK(std::string(to_string(offset_reset::latest)) == "latest");
    CHECK(std::string(to_string(offset_reset::error)) == "error");
}
