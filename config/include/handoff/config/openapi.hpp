// `handoff routes init --openapi FILE`: a starting Handoff config from an OpenAPI 3.x document.
//
// Contract: pure functions from document text to a plan and from a plan to YAML text; nothing
// here touches the network, and the only file access is `init_routes_from_file` reading its input.
// The YAML written always loads with `load_string` (with no environment variables set): the
// generator checks its own output and reports a failure as an error instead of returning it.
//
// Every operation becomes a `forward` route, so the generated config is a transparent sidecar;
// write operations carry a commented `event` or `commit` suggestion (see `suggest_mode` for the
// rule). yaml-cpp (which reads YAML and JSON alike) stays inside src/openapi_read.cpp.
#pragma once

#include "handoff/config/load.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handoff::config {

enum class openapi_suggestion { none, event, commit };

// One OpenAPI operation as a Handoff route.
struct openapi_route {
    std::string name;                  // unique, valid route name (operationId, or method + path)
    std::string operation_id;          // as written in the document; empty when absent
    std::string method;                // upper-case, as the operation's key ("POST")
    std::vector<std::string> methods;  // what the route matches: method, plus HEAD for a GET
                                       // whose path item defines no head operation
    std::string openapi_path;          // the key under `paths` ("/pet/{petId}")
    std::string path;                  // the Handoff match path: server prefix + mapped template
    std::string summary;               // one line, possibly shortened
    bool deprecated = false;
    openapi_suggestion suggestion = openapi_suggestion::none;
    std::string reason;              // why this suggestion (or why none), one sentence
    std::string topic;               // suggested topic (event/commit only)
    std::string key;                 // suggested key: "path:NAME" or "correlation"
    int success_status = 0;          // commit only: 201 when the spec documents 201, else 0 (200)
    std::vector<std::string> notes;  // e.g. a renamed path parameter
};

// An operation that cannot be written as a Handoff route (requests to it are still forwarded,
// because unmatched requests get defaults.mode, which is forward).
struct openapi_skipped {
    std::string method;
    std::string openapi_path;
    std::string reason;
};

struct openapi_plan {
    std::string file;             // the document's name, for the header comment
    std::string openapi_version;  // "3.0.0"
    std::string title;
    std::string api_version;
    std::string server_url;   // the document-level servers[0].url as written, or empty
    std::string prefix;       // path prefix taken from a relative servers[0].url ("" or "/api/v3")
    std::string server_note;  // why servers[0].url gave no prefix ("" when it did, or none)
    std::string service;      // slug of the title: topic prefix and ce_source ("swagger-petstore")
    std::vector<openapi_route> routes;
    std::vector<openapi_skipped> skipped;
};

struct openapi_plan_result {
    std::optional<openapi_plan> value;  // set only when errors is empty
    std::vector<config_error> errors;   // `file` names the document; format() prints them
};

// Reads an OpenAPI 3.x document (YAML or JSON) into a plan. Errors: text that is not YAML/JSON,
// a document that is not a map, no `openapi: 3.x` (a Swagger 2.0 document is named as such), no
// `paths` or no operation under them.
//
// Paths: each route's path is the `paths` key with `{param}` templates kept (parameter names
// that are not identifiers are rewritten, e.g. `{pet-id}` -> `{pet_id}`), prefixed with the path
// of `servers[0].url` (operation-level, else path-level, else document-level servers) only when
// that URL is relative ("/api/v3", server variables replaced by their defaults). An absolute URL
// ("https://host/v2") names where the API is published, not what the local service serves, so
// its path is left out (the header comment says so). Operations whose path Handoff cannot
// match (a parameter inside a segment such as `/files/{name}.json`, characters outside RFC 3986
// pchar, a duplicate of an earlier route) are listed in `skipped`.
openapi_plan_result plan_from_openapi(std::string_view document, const std::string& file);

// The Handoff config for `plan`: header comment, listen/admin/upstream/kafka/defaults sections
// that validate out of the box (`kafka.brokers: "${KAFKA_BROKERS:-127.0.0.1:9092}"`), one
// forward route per operation with its suggestion in comments, and skipped operations listed.
std::string write_openapi_config(const openapi_plan& plan);

struct openapi_init_result {
    std::optional<std::string> yaml;  // set only when errors is empty
    std::vector<config_error> errors;
    std::size_t routes = 0;       // counts from the plan, for a summary line
    std::size_t suggestions = 0;  // routes with an event/commit suggestion
    std::size_t skipped = 0;
};

// plan_from_openapi + write_openapi_config + a check that the text loads with load_string.
openapi_init_result init_routes_from_openapi(std::string_view document, const std::string& file);

// As init_routes_from_openapi, reading `path` first (an unreadable file is one error).
openapi_init_result init_routes_from_file(const std::string& path);

// The suggestion rule, exposed for tests. Reads (GET, HEAD, OPTIONS, TRACE) get none. For a
// write (POST, PUT, PATCH, DELETE), the success responses are the 2xx ones (or `default` when
// no 2xx is documented):
//   commit - one of them is 201, has `content` or a `Location` header: the caller waits for a
//            confirmation that something was created or changed, so it should get one only
//            once Kafka has persisted the request;
//   event  - otherwise (only 202/204, 2xx without content, or no success response documented):
//            the caller reads nothing but the status, so `202 Accepted` at once is enough.
// A write whose success responses are all 202 gets `event` even with a body: the service already
// answers before the work is done. `responses` are the operation's, with $refs resolved.
struct suggestion_input {
    std::string method;  // upper-case
    struct response {
        std::string code;  // "201", "2XX", "default"
        bool has_content = false;
        bool has_location = false;
    };
    std::vector<response> responses;
};
struct suggestion_output {
    openapi_suggestion suggestion = openapi_suggestion::none;
    std::string reason;
    int success_status = 0;
};
suggestion_output suggest_mode(const suggestion_input& in);

// A valid, unique-able Handoff route name from an operationId ("" when nothing usable is left)
// and the fallback from method + path ("get-pet-petId"). Exposed for tests.
std::string route_name_from_operation_id(std::string_view operation_id);
std::string route_name_from_method_path(std::string_view method, std::string_view openapi_path);

}  // namespace handoff::config
