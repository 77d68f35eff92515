#include "handoff/config/openapi.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace handoff::config;

namespace {

const std::string petstore = std::string(HANDOFF_CONFIG_TEST_DATA_DIR) + "/petstore.yaml";

std::optional<std::string> no_env(const std::string&) { return std::nullopt; }

std::string all(const std::vector<config_error>& errors) {
    std::string out;
    for (const auto& e : errors) out += format(e) + "\n";
    return out;
}

openapi_plan plan_of(const std::string& doc) {
    auto r = plan_from_openapi(doc, "spec.yaml");
    INFO(all(r.errors));
    REQUIRE(r.value.has_value());
    return *r.value;
}

const openapi_route& route_named(const openapi_plan& p, const std::string& name) {
    const auto it =
        std::find_if(p.routes.begin(), p.routes.end(), [&](const openapi_route& r) { return r.name == name; });
    INFO("no route named " << name);
    REQUIRE(it != p.routes.end());
    return *it;
}

// The first error's formatted text for a document that must be refused.
std::string refusal(const std::string& doc) {
    const auto r = init_routes_from_openapi(doc, "spec.yaml");
    CHECK_FALSE(r.yaml.has_value());
    REQUIRE_FALSE(r.errors.empty());
    return format(r.errors.front());
}

// What a user does to adopt every suggestion: drop `mode: forward` where a suggestion follows
// and uncomment the suggested keys.
std::string adopt_suggestions(const std::string& yaml) {
    std::vector<std::string> lines;
    std::istringstream in(yaml);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string& l = lines[i];
        if (l == "    mode: forward" && i + 1 < lines.size() && lines[i + 1].rfind("    # Suggested: ", 0) == 0)
            continue;
        bool uncommented = false;
        for (const char* k : {"mode: ", "topic: ", "key: ", "success_status: "}) {
            if (l.rfind(std::string("    # ") + k, 0) == 0) {
                out += "    " + l.substr(6) + "\n";
                uncommented = true;
            }
        }
        if (!uncommented) out += l + "\n";
    }
    return out;
}

const char* const minimal_head = "openapi: 3.0.3\ninfo: {title: Orders API, version: '1'}\n";

}  // namespace

// ---- the Petstore (a real public document) -------------------------------------------------

TEST_CASE("the Petstore document becomes a config that loads without errors, one forward route per operation") {
    const auto r = init_routes_from_file(petstore);
    INFO(all(r.errors));
    REQUIRE(r.yaml.has_value());
    CHECK(r.routes == 20);
    CHECK(r.skipped == 0);
    const auto loaded = load_string(*r.yaml, "generated.yaml", no_env);
    INFO(all(loaded.errors) << *r.yaml);
    REQUIRE(loaded.value.has_value());
    const auto& routes = loaded.value->routes;
    REQUIRE(routes.size() == 20);
    CHECK(std::all_of(routes.begin(), routes.end(), [](const route& x) { return x.mode == mode::forward; }));
    CHECK(loaded.value->kafka.brokers == "127.0.0.1:9092");  // ${KAFKA_BROKERS:-...} with the variable unset
    CHECK(routes[0].name == "addPet");
    CHECK(routes[0].methods == std::vector<std::string>{"POST"});
    CHECK(routes[0].path == "/pet");
    const auto get = std::find_if(routes.begin(), routes.end(), [](const route& x) { return x.name == "getPetById"; });
    REQUIRE(get != routes.end());
    CHECK(get->path == "/pet/{petId}");
    CHECK(get->methods == std::vector<std::string>{"GET", "HEAD"});
    CHECK(loaded.value->defaults.ce_source == "/swagger-petstore");
}

TEST_CASE("the Petstore routes carry the documented suggestions") {
    std::ifstream in(petstore);
    std::stringstream text;
    text << in.rdbuf();
    const auto p = plan_of(text.str());
    CHECK(p.title == "Swagger Petstore");
    CHECK(p.prefix.empty());  // servers[0].url is absolute: its /v2 is not added
    CHECK(p.server_url == "http://petstore.swagger.io/v2");
    CHECK(route_named(p, "getPetById").suggestion == openapi_suggestion::none);
    const auto& upload = route_named(p, "uploadFile");  // 200 with an ApiResponse body
    CHECK(upload.suggestion == openapi_suggestion::commit);
    CHECK(upload.key == "path:petId");
    CHECK(upload.topic == "swagger-petstore.pet.upload-image");
    CHECK(route_named(p, "placeOrder").suggestion == openapi_suggestion::commit);
    CHECK(route_named(p, "placeOrder").key == "correlation");
    const auto& del = route_named(p, "deleteOrder");  // only 400/404 documented
    CHECK(del.suggestion == openapi_suggestion::event);
    CHECK(del.key == "path:orderId");
    CHECK(del.topic == "swagger-petstore.store.order");
    CHECK(route_named(p, "createUser").suggestion == openapi_suggestion::event);  // default, no content
    CHECK(route_named(p, "findPetsByTags").deprecated);
}

TEST_CASE("adopting every suggestion of the Petstore config still gives a valid config") {
    const auto r = init_routes_from_file(petstore);
    REQUIRE(r.yaml.has_value());
    const std::string adopted = adopt_suggestions(*r.yaml);
    const auto loaded = load_string(adopted, "adopted.yaml", no_env);
    INFO(all(loaded.errors) << adopted);
    REQUIRE(loaded.value.has_value());
    std::size_t converted = 0;
    for (const auto& x : loaded.value->routes) converted += x.mode != mode::forward ? 1 : 0;
    CHECK(converted == r.suggestions);
    CHECK(converted >= 10);
}

TEST_CASE("a JSON document is read as well as YAML") {
    const std::string doc = R"({"openapi": "3.1.0", "info": {"title": "Json", "version": "1"},
        "paths": {"/things/{id}": {"delete": {"operationId": "deleteThing", "responses": {"204": {"description": "gone"}}}}}})";
    const auto p = plan_of(doc);
    REQUIRE(p.routes.size() == 1);
    CHECK(p.routes[0].name == "deleteThing");
    CHECK(p.routes[0].suggestion == openapi_suggestion::event);
    CHECK(p.routes[0].key == "path:id");
    CHECK(p.routes[0].topic == "json.things");
}

// ---- names ---------------------------------------------------------------------------------

TEST_CASE("route names come from operationId, made valid for the loader") {
    CHECK(route_name_from_operation_id("addPet") == "addPet");
    CHECK(route_name_from_operation_id("pets/list all") == "pets-list-all");
    CHECK(route_name_from_operation_id("__private.op") == "private.op");
    CHECK(route_name_from_operation_id("x--") == "x");
    CHECK(route_name_from_operation_id("!!!").empty());
    CHECK(route_name_from_operation_id(std::string(100, 'a')).size() == 64);
}

TEST_CASE("without an operationId the name is derived from method and path") {
    CHECK(route_name_from_method_path("GET", "/pet/{petId}") == "get-pet-petId");
    CHECK(route_name_from_method_path("DELETE", "/") == "delete-root");
    CHECK(route_name_from_method_path("POST", "/a b/{c}/d") == "post-a-b-c-d");
}

TEST_CASE("names that collide after cleaning get a numeric suffix") {
    const auto p = plan_of(std::string(minimal_head) + R"(
paths:
  /a:
    get: {operationId: "list things", responses: {'200': {description: ok}}}
  /b:
    get: {operationId: "list-things", responses: {'200': {description: ok}}}
  /c:
    get: {responses: {'200': {description: ok}}}
  /d:
    get: {operationId: "get-c", responses: {'200': {description: ok}}}
)");
    REQUIRE(p.routes.size() == 4);
    CHECK(p.routes[0].name == "list-things");
    CHECK(p.routes[1].name == "list-things-2");
    CHECK(p.routes[2].name == "get-c");
    CHECK(p.routes[3].name == "get-c-2");
    const auto r = init_routes_from_openapi(
        std::string(minimal_head) + "paths:\n  /a:\n    get: {operationId: x}\n  /b:\n    get: {operationId: x}\n",
        "spec.yaml");
    INFO(all(r.errors));
    CHECK(r.yaml.has_value());
}

// ---- paths and servers ---------------------------------------------------------------------

TEST_CASE("path templates map onto Handoff parameters; names that are not identifiers are rewritten") {
    const auto p = plan_of(std::string(minimal_head) + R"(
paths:
  /orders/{order-id}/items/{1st}:
    put: {operationId: putItem, responses: {'204': {description: ok}}}
  /orders/:
    get: {operationId: listOrders, responses: {'200': {description: ok}}}
)");
    REQUIRE(p.routes.size() == 2);
    CHECK(p.routes[0].path == "/orders/{order_id}/items/{_1st}");
    CHECK(p.routes[0].key == "path:_1st");
    CHECK(p.routes[0].notes.size() == 2);
    CHECK(p.routes[1].path == "/orders/");
}

TEST_CASE("operations whose path Handoff cannot match are listed as not converted, and the rest still load") {
    const auto r = init_routes_from_openapi(std::string(minimal_head) + R"(
paths:
  /files/{name}.json:
    get: {operationId: getFile}
  /a//b:
    get: {operationId: doubleSlash}
  /caf<e:
    get: {operationId: badChar}
  /ok/{id}:
    get: {operationId: ok}
  /ok/{other}:
    get: {operationId: sameShape}
)",
                                            "spec.yaml");
    INFO(all(r.errors));
    REQUIRE(r.yaml.has_value());
    CHECK(r.routes == 1);
    CHECK(r.skipped == 4);
    CHECK(r.yaml->find("GET /files/{name}.json: segment '{name}.json' mixes a parameter") != std::string::npos);
    CHECK(r.yaml->find("same path shape and method as route 'ok'") != std::string::npos);
}

TEST_CASE("a relative servers[0].url is a path prefix, with server variables replaced by their defaults") {
    const auto p = plan_of(std::string(minimal_head) + R"(
servers:
  - url: /{base}/v3/
    variables: {base: {default: api}}
paths:
  /pets/{id}:
    get: {operationId: getPet}
    delete:
      operationId: deletePet
      servers: [{url: /legacy}]
)");
    CHECK(p.prefix == "/api/v3");
    REQUIRE(p.routes.size() == 2);
    CHECK(p.routes[0].path == "/api/v3/pets/{id}");
    CHECK(p.routes[1].path == "/legacy/pets/{id}");  // operation-level servers win
    CHECK(p.routes[1].topic == "orders-api.pets");   // topics use the document path only
}

TEST_CASE("an absolute servers[0].url adds no prefix and the header says why") {
    const std::string doc =
        std::string(minimal_head) + "servers: [{url: 'https://api.example.com/v2'}]\npaths:\n  /x:\n    get: {}\n";
    const auto p = plan_of(doc);
    CHECK(p.prefix.empty());
    CHECK(p.routes[0].path == "/x");
    const auto r = init_routes_from_openapi(doc, "spec.yaml");
    REQUIRE(r.yaml.has_value());
    CHECK(r.yaml->find("'https://api.example.com/v2') was not added because it is an absolute URL") !=
          std::string::npos);
}

TEST_CASE("a GET route also matches HEAD unless the path defines its own head operation") {
    const auto p = plan_of(std::string(minimal_head) + R"(
paths:
  /a:
    get: {operationId: getA}
  /b:
    get: {operationId: getB}
    head: {operationId: headB}
)");
    REQUIRE(p.routes.size() == 3);
    CHECK(p.routes[0].methods == std::vector<std::string>{"GET", "HEAD"});
    CHECK(p.routes[1].methods == std::vector<std::string>{"GET"});
    CHECK(p.routes[2].methods == std::vector<std::string>{"HEAD"});
}

// ---- suggestions ---------------------------------------------------------------------------

namespace {
suggestion_output suggest(const std::string& method, std::vector<suggestion_input::response> responses) {
    return suggest_mode({method, std::move(responses)});
}
}  // namespace

TEST_CASE("reads are never converted") {
    for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE"}) {
        CHECK(suggest(m, {{"200", true, false}}).suggestion == openapi_suggestion::none);
    }
}

TEST_CASE("a write whose success responses carry no body is an event") {
    CHECK(suggest("DELETE", {{"204", false, false}, {"404", true, false}}).suggestion == openapi_suggestion::event);
    CHECK(suggest("PUT", {{"200", false, false}}).suggestion == openapi_suggestion::event);
    CHECK(suggest("POST", {{"400", true, false}}).suggestion == openapi_suggestion::event);  // no success documented
    CHECK(suggest("PATCH", {{"default", false, false}}).suggestion == openapi_suggestion::event);
    const auto accepted = suggest("POST", {{"202", true, false}});  // the service is already asynchronous
    CHECK(accepted.suggestion == openapi_suggestion::event);
    CHECK(accepted.reason.find("202") != std::string::npos);
}

TEST_CASE("a write that confirms with 201, a Location header or a body is a commit") {
    const auto created = suggest("POST", {{"201", false, false}, {"400", true, false}});
    CHECK(created.suggestion == openapi_suggestion::commit);
    CHECK(created.success_status == 201);
    CHECK(created.reason.find("201 Created") != std::string::npos);
    const auto located = suggest("POST", {{"200", false, true}});
    CHECK(located.suggestion == openapi_suggestion::commit);
    CHECK(located.success_status == 0);
    CHECK(located.reason.find("Location") != std::string::npos);
    CHECK(suggest("POST", {{"200", true, false}}).suggestion == openapi_suggestion::commit);
    CHECK(suggest("PUT", {{"2XX", true, false}}).suggestion == openapi_suggestion::commit);
    CHECK(suggest("POST", {{"default", true, false}}).suggestion == openapi_suggestion::commit);
}

TEST_CASE("responses behind local $refs are resolved before suggesting") {
    const auto p = plan_of(std::string(minimal_head) + R"(
paths:
  /orders:
    post:
      operationId: createOrder
      responses:
        '201': {$ref: '#/components/responses/Created'}
  /orders/{id}/cancel:
    post:
      operationId: cancelOrder
      responses: {$ref: '#/components/x-responses/Done'}
components:
  responses:
    Created:
      description: created
      headers: {Location: {schema: {type: string}}}
  x-responses:
    Done: {'204': {description: done}}
)");
    const auto& create = route_named(p, "createOrder");
    CHECK(create.suggestion == openapi_suggestion::commit);
    CHECK(create.success_status == 201);
    CHECK(route_named(p, "cancelOrder").suggestion == openapi_suggestion::event);
    const auto r = init_routes_from_openapi(
        std::string(minimal_head) + "paths:\n  /o:\n    post:\n      responses: {'201': {description: c}}\n",
        "spec.yaml");
    REQUIRE(r.yaml.has_value());
    CHECK(r.yaml->find("    # success_status: 201\n") != std::string::npos);
}

TEST_CASE("a path item behind a local $ref is read without changing the document") {
    const auto p = plan_of(std::string(minimal_head) + R"(
paths:
  /source:
    post: {operationId: create, responses: {'201': {description: c}}}
  /alias:
    $ref: '#/paths/~1source'
  /after:
    get: {operationId: after}
)");
    REQUIRE(p.routes.size() == 3);
    CHECK(p.routes[0].path == "/source");
    CHECK(p.routes[1].path == "/alias");
    CHECK(p.routes[1].name == "create-2");
    CHECK(p.routes[1].suggestion == openapi_suggestion::commit);
    CHECK(p.routes[2].name == "after");
}

// ---- errors --------------------------------------------------------------------------------

TEST_CASE("a document that is not OpenAPI 3.x is refused with a message naming the file") {
    CHECK(refusal("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {/a: {get: {}}}\n").find("spec.yaml:1:") ==
          0);
    CHECK(refusal("swagger: '2.0'\npaths: {}\n").find("a Swagger 2.0 document") != std::string::npos);
    CHECK(refusal("info: {title: t}\npaths: {/a: {get: {}}}\n").find("'openapi' field is missing") !=
          std::string::npos);
    CHECK(refusal("openapi: 2.0.0\npaths: {/a: {get: {}}}\n").find("openapi is '2.0.0'") != std::string::npos);
    CHECK(refusal("- just\n- a list\n").find("a map is expected") != std::string::npos);
    CHECK(refusal("").rfind("spec.yaml: the document is empty", 0) == 0);
}

TEST_CASE("text that is neither YAML nor JSON is refused with the parser's line") {
    const auto r = plan_from_openapi("openapi: 3.0.0\npaths: {/a: [\n", "spec.yaml");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].file == "spec.yaml");
    CHECK(r.errors[0].line >= 2);
    CHECK(r.errors[0].message.find("not readable as YAML or JSON") == 0);
}

TEST_CASE("a document without paths or operations is refused") {
    CHECK(refusal(std::string(minimal_head)).find("no paths") != std::string::npos);
    CHECK(refusal(std::string(minimal_head) + "paths: {}\n").find("no paths") != std::string::npos);
    CHECK(refusal(std::string(minimal_head) + "paths:\n  /a: {parameters: []}\n").find("no operation") !=
          std::string::npos);
}

TEST_CASE("an unreadable file is one error naming it") {
    const auto r = init_routes_from_file("/nonexistent/spec.yaml");
    REQUIRE(r.errors.size() == 1);
    CHECK(format(r.errors[0]).rfind("/nonexistent/spec.yaml: cannot read the file", 0) == 0);
}
