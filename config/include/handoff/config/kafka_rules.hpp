// Kafka rules that the config loader checks when a file is loaded and that the proxy and the Kafka
// adapter apply at run time: the one definition of each, so load time and run time cannot disagree.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace handoff::config {

// ---- topic names ------------------------------------------------------------------------------

// Kafka's limit on the length of a topic name.
inline constexpr std::size_t max_topic_name_length = 249;

// [A-Za-z0-9._-]: the characters of a Kafka topic name.
bool is_topic_char(char c) noexcept;

// A legal Kafka topic name: 1..249 characters of [A-Za-z0-9._-], not "." or "..". For a topic as
// it is produced to or consumed from (a route's topic once its {param} placeholders are filled in,
// a reply topic named by a record header). A topic *template* in the config file is checked by the
// loader (reader::check_topic) with the same characters and limit, counting only its literal
// characters: a placeholder's value is checked with this function when the template is rendered.
bool valid_topic_name(std::string_view name) noexcept;

// ---- the durability guard ---------------------------------------------------------------------

// Handoff always produces with enable.idempotence=true and acks=all. For the producer property
// `name` = `value`: the value as the guard reads it (lower case, without leading and trailing
// spaces and tabs) when the pair would turn either off, so the caller can name it; nullopt for an
// allowed value ("true"; "all" or "-1") and for every other property. Asked by the config loader
// (kafka.properties) and by the Kafka adapter when it builds the producer.
std::optional<std::string> weakened_durability(std::string_view name, std::string_view value);

// ---- SASL mechanisms --------------------------------------------------------------------------

// For the client property `name` = `value`: why the value cannot work, when it names a SASL
// mechanism that Handoff's librdkafka is built without — GSSAPI (Kerberos), which would need Cyrus
// libsasl2 in every process (scripts/setup.sh) — and nullopt otherwise. PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512 and OAUTHBEARER are librdkafka's own. Asked by the config loader for
// kafka.properties and subscriptions' properties, so `handoff validate` says it, not only the start.
std::optional<std::string> unsupported_sasl_mechanism(std::string_view name, std::string_view value);

}  // namespace handoff::config
