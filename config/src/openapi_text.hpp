// Text helpers of the OpenAPI importer: names cut to Handoff's limits, YAML quoting, comment
// lines. Private to config/ (handoff_config_openapi).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace handoff::config::detail {

constexpr std::size_t max_name = 64;    // the loader's route name limit
constexpr std::size_t max_topic = 200;  // below Kafka's 249, leaving room for a suffix
constexpr std::size_t max_service = 40;
constexpr std::size_t comment_width = 100;

// Collapses runs of `sep`, drops leading characters that are not alphanumeric and trailing
// separators, and cuts to `max` characters.
std::string tidy(std::string_view in, char sep, std::size_t max);
// "uploadImage" -> "upload-image", "Swagger Petstore" -> "swagger-petstore": lower-case words of
// [a-z0-9] joined with '-', for topic names (Kafka names are case-sensitive; lower case avoids
// two topics that differ only in case). Dots are kept ("v1.0").
std::string kebab(std::string_view in);
// A YAML double-quoted scalar: safe for any text (names, paths with '{', '${...}').
std::string quote(std::string_view s);
// Text for a comment: one line, whitespace collapsed, control characters dropped, shortened.
std::string one_line(std::string_view s, std::size_t max = 120);
// `text` as comment lines of at most comment_width columns, each starting with `indent` + "# ".
// Leading spaces of `text` are kept on the first line; `hang` indents continuation lines.
std::string comment(std::string_view indent, std::string_view text, std::string_view hang = "");

}  // namespace handoff::config::detail
