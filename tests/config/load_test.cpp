#include "handoff/config/load.hpp"

#include "load_helpers.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>

using namespace handoff::config;

namespace {

const std::string brokers = "kafka: {brokers: \"127.0.0.1:9092\"}\n";

load_result load(const std::string& yaml, std::map<std::string, std::string> env = {}) {
    return load_string(yaml, "test.yaml", [env](const std::string& name) -> std::optional<std::string> {
        const auto it = env.find(name);
        return it == env.end() ? std::nullopt : std::optional(it->second);
    });
}

// A valid config plus `extra` (kafka section included).
load_result load_with(const std::string& extra, std::map<std::string, std::string> env = {}) {
    return load(brokers + extra, std::move(env));
}

using testing::all;

// True when some error has exactly `path` and a message containing `text`.
bool has_error(const load_result& r, const std::string& path, const std::string& text) {
    return std::any_of(r.errors.begin(), r.errors.end(), [&](const config_error& e) {
        return e.path == path && e.message.find(text) != std::string::npos;
    });
}

#define CHECK_ERROR(r, path, text)             \
    do {                                       \
        INFO(all(r));                          \
        CHECK(has_error((r), (path), (text))); \
        CHECK_FALSE((r).value.has_value());    \
    } while (0)

std::string one_route(const std::string& body) { return "routes:\n  - " + body + "\n"; }

}  // namespace

// ---- whole files ----------------------------------------------------------------------------

TEST_CASE("a config with only kafka brokers loads with every default") {
    const auto r = load_with("");
    REQUIRE_OK(r);
    const auto& c = *r.value;
    CHECK(c.file == "test.yaml");
    CHECK(c.listen.port == 8080);
    CHECK(c.listen.max_body_bytes == 1024 * 1024);
    CHECK(c.admin.address == "127.0.0.1");
    CHECK(c.kafka.brokers == "127.0.0.1:9092");
    CHECK_FALSE(c.kafka.embedded);
    CHECK(c.defaults.mode == mode::forward);
    CHECK(c.log.level == "info");
    CHECK(c.routes.empty());
}

TEST_CASE("every example config in config/examples loads without errors") {
    int files = 0;
    for (const auto& f : std::filesystem::directory_iterator(HANDOFF_CONFIG_EXAMPLES_DIR)) {
        if (f.path().extension() != ".yaml") continue;
        ++files;
        const auto r = load_file(f.path().string(), [](const std::string&) { return std::nullopt; });
        INFO(f.path().string() << "\n" << all(r));
        CHECK(r.errors.empty());
        CHECK(r.value.has_value());
    }
    CHECK(files >= 3);
}

TEST_CASE("the orders example parses into the expected routes") {
    const auto r = load_file(std::string(HANDOFF_CONFIG_EXAMPLES_DIR) + "/orders.yaml",
                             [](const std::string&) { return std::nullopt; });
    REQUIRE_OK(r);
    const auto& routes = r.value->routes;
    REQUIRE(routes.size() == 5);
    const auto& create = routes[1];
    CHECK(create.name == "create-order");
    CHECK(create.methods == std::vector<std::string>{"POST"});
    CHECK(create.path == "/orders/{region}");
    CHECK(create.mode == mode::commit);
    CHECK(create.topic == "orders.{region}");
    CHECK(create.key.kind == key_kind::body);
    CHECK(create.key.name == "/customer/id");
    CHECK(create.ce_type == "com.example.order.created");
    CHECK(create.ce_source == "/orders");
    CHECK(create.timeout == millis(5000));
    CHECK(create.success_status == 201);
    CHECK(create.max_body_bytes == 64 * 1024);
    CHECK(create.headers == std::vector<std::string>{"X-Tenant", "Content-Type"});
    CHECK(routes[2].methods == std::vector<std::string>{"DELETE"});
    CHECK(routes[2].key.kind == key_kind::path);
    CHECK(routes[3].key.kind == key_kind::header);
    CHECK(routes[4].key.kind == key_kind::correlation);
    CHECK(routes[2].ce_source == "/orders-service");  // from defaults.ce_source
}

TEST_CASE("the embedded demo config uses the embedded cluster") {
    const auto r = load_file(std::string(HANDOFF_CONFIG_EXAMPLES_DIR) + "/embedded-demo.yaml");
    REQUIRE_OK(r);
    CHECK(r.value->kafka.embedded);
    CHECK(r.value->kafka.brokers.empty());
    CHECK(r.value->admin.port == 9901);
}

TEST_CASE("the deprecated listen.max_pipelined loads with a warning at its line, and no error") {
    const auto r = load_with("listen:\n  port: 8080\n  max_pipelined: 64\n");
    REQUIRE_OK(r);
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].path == "listen.max_pipelined");
    CHECK(r.warnings[0].line >= 2);
    CHECK(r.warnings[0].message.find("deprecated and ignored") == 0);
    CHECK(load_with("").warnings.empty());
    // Any value, even one the old range refused: the setting is not read.
    const auto odd = load_with("listen:\n  max_pipelined: 0\n");
    REQUIRE_OK(odd);
    CHECK(odd.warnings.size() == 1);
}

TEST_CASE("upstream.max_idle follows max_connections unless set") {
    const auto d = load_with("");
    REQUIRE_OK(d);
    CHECK(d.value->upstream.max_idle == d.value->upstream.max_connections);
    const auto big = load_with("upstream:\n  max_connections: 512\n");
    REQUIRE_OK(big);
    CHECK(big.value->upstream.max_idle == 512);
    const auto set = load_with("upstream:\n  max_connections: 512\n  max_idle: 8\n");
    REQUIRE_OK(set);
    CHECK(set.value->upstream.max_idle == 8);
}

TEST_CASE("upstream.idle_timeout: 4s unless set, and never 0") {
    const auto d = load_with("");
    REQUIRE_OK(d);
    CHECK(d.value->upstream.idle_timeout == std::chrono::seconds(4));
    const auto set = load_with("upstream:\n  idle_timeout: 1500ms\n");
    REQUIRE_OK(set);
    CHECK(set.value->upstream.idle_timeout == std::chrono::milliseconds(1500));
    const auto zero = load_with("upstream:\n  idle_timeout: 0s\n");
    REQUIRE_FALSE(zero.value);
    REQUIRE(zero.errors.size() == 1);
    CHECK(zero.errors[0].path == "upstream.idle_timeout");
    CHECK(zero.errors[0].line == 3);  // after the one-line kafka section load_with puts first
}

TEST_CASE("a missing file is one error without a line") {
    const auto r = load_file("/nonexistent/handoff.yaml");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 0);
    CHECK(format(r.errors[0]).rfind("/nonexistent/handoff.yaml: cannot read the file", 0) == 0);
}

// ---- syntax, format, unknown keys ----------------------------------------------------------

TEST_CASE("a YAML syntax error is one error at the parser's line and column") {
    const auto r = load("kafka:\n  brokers: [a, b\nlisten: {}\n");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line >= 2);
    CHECK(r.errors[0].column >= 1);
    CHECK(r.errors[0].file == "test.yaml");
    CHECK_FALSE(r.value.has_value());
}

TEST_CASE("format writes file, line, column, path and message, leaving out a missing place") {
    CHECK(format({"a.yaml", 3, 7, "routes[1].topic", "bad"}) == "a.yaml:3:7: routes[1].topic: bad");
    CHECK(format({"a.yaml", 0, 0, "kafka", "bad"}) == "a.yaml: kafka: bad");
}

TEST_CASE("an unknown key is reported with its line, column, path and a did-you-mean hint") {
    const auto r = load_with("listen:\n  prot: 8080\n");
    REQUIRE(r.errors.size() == 1);
    const auto& e = r.errors[0];
    CHECK(e.line == 3);
    CHECK(e.column == 3);
    CHECK(e.path == "listen.prot");
    CHECK(e.message == "unknown key 'prot' (did you mean 'port'?)");
    CHECK(format(e) == "test.yaml:3:3: listen.prot: unknown key 'prot' (did you mean 'port'?)");
}

TEST_CASE("unknown keys are rejected at every level, without a hint when nothing is close") {
    const auto r = load_with("colour: red\n" + one_route("{name: a, match: {path: /a, verb: GET}, mode: forward}"));
    CHECK_ERROR(r, "colour", "unknown key 'colour'");
    CHECK_ERROR(r, "routes[0].match.verb", "unknown key 'verb'");
    CHECK(all(r).find("did you mean") == std::string::npos);
}

TEST_CASE("a duplicate key in one map is an error") {
    const auto r = load_with("listen:\n  port: 1\n  port: 2\n");
    CHECK_ERROR(r, "listen.port", "duplicate key 'port' (first at line 3)");
}

TEST_CASE("three independent errors in one file are all reported") {
    const auto r = load_with(
        "listen: {port: 0}\n"
        "admin: {enabled: maybe}\n" +
        one_route("{name: a, match: {path: orders}, mode: forward}"));
    INFO(all(r));
    CHECK(r.errors.size() == 3);
    CHECK(has_error(r, "listen.port", "between 1 and 65535"));
    CHECK(has_error(r, "admin.enabled", "true or false expected"));
    CHECK(has_error(r, "routes[0].match.path", "must start with '/'"));
}

// ---- types and ranges ---------------------------------------------------------------------

TEST_CASE("a section that is not a map is an error") {
    CHECK_ERROR(load_with("listen: [1, 2]\n"), "listen", "map expected");
    CHECK_ERROR(load_with("routes: {a: 1}\n"), "routes", "list expected");
    CHECK_ERROR(load_with("listen: {port: [1]}\n"), "listen.port", "scalar expected");
}

TEST_CASE("ports must be integers between 1 and 65535") {
    CHECK_ERROR(load_with("listen: {port: 70000}\n"), "listen.port", "between 1 and 65535");
    CHECK_ERROR(load_with("admin: {port: http}\n"), "admin.port", "integer expected");
    const auto r = load_with("listen: {port: 1}\nadmin: {port: 65535}\nupstream: {port: 9000}\n");
    REQUIRE_OK(r);
    CHECK(r.value->listen.port == 1);
    CHECK(r.value->admin.port == 65535);
    CHECK(r.value->upstream.port == 9000);
}

TEST_CASE("upstream.forwarded_for is append (the default) or replace") {
    const auto d = load_with("");
    REQUIRE_OK(d);
    CHECK(d.value->upstream.forwarded_for == forwarded_for::append);
    const auto r = load_with("upstream: {forwarded_for: replace}\n");
    REQUIRE_OK(r);
    CHECK(r.value->upstream.forwarded_for == forwarded_for::replace);
    CHECK(nlohmann::json::parse(to_redacted_json(*r.value))["upstream"]["forwarded_for"] == "replace");
    CHECK_ERROR(load_with("upstream: {forwarded_for: trust}\n"), "upstream.forwarded_for",
                "must be one of append, replace");
}

TEST_CASE("threads must be between 1 and 256") {
    CHECK_ERROR(load_with("listen: {threads: 0}\n"), "listen.threads", "between 1 and 256");
    CHECK_ERROR(load_with("listen: {threads: 257}\n"), "listen.threads", "between 1 and 256");
    const auto r = load_with("listen: {threads: 8}\n");
    REQUIRE_OK(r);
    CHECK(r.value->listen.threads == 8);
}

TEST_CASE("sizes accept bytes and binary or decimal units") {
    const auto r = load_with(
        "listen: {max_header_bytes: 512, max_body_bytes: 2MiB}\n"
        "upstream: {max_response_bytes: 3 MB}\n" +
        one_route("{name: a, match: {path: /a}, mode: event, topic: t, max_body_bytes: 1GiB}"));
    REQUIRE_OK(r);
    CHECK(r.value->listen.max_header_bytes == 512);
    CHECK(r.value->listen.max_body_bytes == 2 * 1024 * 1024);
    CHECK(r.value->upstream.max_response_bytes == 3'000'000);
    CHECK(r.value->routes[0].max_body_bytes == 1024 * 1024 * 1024);
    CHECK(load_with("listen: {max_header_bytes: 4KB}\n").value->listen.max_header_bytes == 4000);
    CHECK(load_with("listen: {max_header_bytes: 10B}\n").value->listen.max_header_bytes == 10);
}

TEST_CASE("sizes must be positive, well-formed and body limits at most 1GiB") {
    CHECK_ERROR(load_with("listen: {max_header_bytes: 0}\n"), "listen.max_header_bytes", "greater than 0");
    CHECK_ERROR(load_with("listen: {max_header_bytes: 16kb}\n"), "listen.max_header_bytes", "invalid size '16kb'");
    CHECK_ERROR(load_with("listen: {max_body_bytes: 2GiB}\n"), "listen.max_body_bytes", "at most 1073741824");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, max_body_bytes: 1025MiB}")),
                "routes[0].max_body_bytes", "at most");
}

TEST_CASE("durations need a unit and accept ms, s, m and h") {
    const auto ok =
        load_with("listen: {header_timeout: 250ms, body_timeout: 2m, idle_timeout: 1h, write_timeout: 3s}\n");
    REQUIRE_OK(ok);
    CHECK(ok.value->listen.header_timeout == millis(250));
    CHECK(ok.value->listen.body_timeout == millis(120'000));
    CHECK(ok.value->listen.idle_timeout == millis(3'600'000));
    CHECK(ok.value->listen.write_timeout == millis(3'000));
    CHECK_ERROR(load_with("upstream: {timeout: 30}\n"), "upstream.timeout", "duration needs a unit");
    CHECK_ERROR(load_with("upstream: {timeout: 0s}\n"), "upstream.timeout", "greater than 0");
    CHECK_ERROR(load_with("upstream: {timeout: 5 days}\n"), "upstream.timeout", "invalid duration");
}

TEST_CASE("listen.http2: on by default; its bounds are checked with their path") {
    const auto def = load_with("");
    REQUIRE_OK(def);
    CHECK(def.value->listen.http2.enabled);
    CHECK(def.value->listen.http2.max_concurrent_streams == 100);
    CHECK(def.value->listen.http2.initial_window_bytes == 1024 * 1024);
    const auto set =
        load_with("listen: {http2: {enabled: false, max_concurrent_streams: 8, initial_window_bytes: 64KiB}}\n");
    REQUIRE_OK(set);
    CHECK_FALSE(set.value->listen.http2.enabled);
    CHECK(set.value->listen.http2.max_concurrent_streams == 8);
    CHECK(set.value->listen.http2.initial_window_bytes == 65'536);
    CHECK_ERROR(load_with("listen: {http2: {max_concurrent_streams: 0}}\n"), "listen.http2.max_concurrent_streams", "");
    CHECK_ERROR(load_with("listen: {http2: {initial_window_bytes: 1KiB}}\n"), "listen.http2.initial_window_bytes",
                "between 65535 bytes and 2GiB-1");
    CHECK_ERROR(load_with("listen: {http2: {enabled: true, push: true}}\n"), "listen.http2.push", "");
}

TEST_CASE("listen and admin addresses must be IP addresses") {
    CHECK_ERROR(load_with("admin: {address: localhost}\n"), "admin.address", "IP address expected");
    const auto r = load_with("listen: {address: \"::\"}\nadmin: {address: 127.0.0.1, enabled: false}\n");
    REQUIRE_OK(r);
    CHECK(r.value->listen.address == "::");
    CHECK_FALSE(r.value->admin.enabled);
}

TEST_CASE("log level must be debug, info, warn or error") {
    CHECK(load_with("log: {level: debug}\n").value->log.level == "debug");
    CHECK_ERROR(load_with("log: {level: trace}\n"), "log.level", "must be debug, info, warn or error");
}

TEST_CASE("defaults.mode accepts only forward") {
    const auto ok = load_with("defaults: {mode: forward, timeout: 7s, ce_source: /svc}\n");
    REQUIRE_OK(ok);
    CHECK(ok.value->defaults.timeout == millis(7000));
    CHECK(ok.value->defaults.ce_source == "/svc");
    CHECK_ERROR(load_with("defaults: {mode: event}\n"), "defaults.mode", "defaults.mode must be forward");
}

TEST_CASE("routing.trailing_slash is match (the default) or strict") {
    CHECK(load_with("").value->routing.trailing_slash == trailing_slash::match);
    CHECK(load_with("routing: {trailing_slash: strict}\n").value->routing.trailing_slash == trailing_slash::strict);
    CHECK(load_with("routing: {trailing_slash: match}\n").value->routing.trailing_slash == trailing_slash::match);
    const auto r = load_with("routing:\n  trailing_slash: ignore\n");
    CHECK_ERROR(r, "routing.trailing_slash", "must be one of match, strict, got 'ignore'");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 3);
    CHECK_ERROR(load_with("routing: {slash: strict}\n"), "routing.slash", "unknown key");
}

TEST_CASE("with trailing_slash match a route path with and without the trailing slash is one path") {
    const std::string routes =
        "routes:\n"
        "  - {name: a, match: {methods: [POST], path: /o}, mode: forward}\n"
        "  - {name: b, match: {methods: [POST], path: /o/}, mode: forward}\n";
    CHECK_ERROR(load_with(routes), "routes[1]", "duplicate route");
    REQUIRE_OK(load_with("routing: {trailing_slash: strict}\n" + routes));
}

TEST_CASE("a literal route segment must be matchable: escapes well-formed, unreserved characters unescaped") {
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/%6Frders\"}, mode: forward}")), "routes[0].match.path",
                "write 'o' rather than '%6F'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a%2\"}, mode: forward}")), "routes[0].match.path",
                "malformed percent-escape");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a%2fb\"}, mode: forward}")), "routes[0].match.path",
                "an encoded '/'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a/../b\"}, mode: forward}")), "routes[0].match.path",
                "dot segments are not allowed");
    REQUIRE_OK(load_with(one_route("{name: a, match: {path: \"/caf%c3%a9;v1\"}, mode: forward}")));
    // Escapes compare case-insensitively, so these two are one path.
    CHECK_ERROR(load_with("routes:\n"
                          "  - {name: a, match: {path: \"/caf%c3%a9\"}, mode: forward}\n"
                          "  - {name: b, match: {path: \"/caf%C3%A9\"}, mode: forward}\n"),
                "routes[1]", "duplicate route");
}

// ---- kafka --------------------------------------------------------------------------------

TEST_CASE("kafka brokers are required unless embedded") {
    CHECK_ERROR(load(""), "kafka", "missing required section 'kafka'");
    CHECK_ERROR(load("kafka: {flush_timeout: 1s}\n"), "kafka", "missing required key 'brokers'");
    const auto r = load("kafka: {brokers: embedded, embedded_brokers: 3}\n");
    REQUIRE_OK(r);
    CHECK(r.value->kafka.embedded);
    CHECK(r.value->kafka.brokers.empty());
    CHECK(r.value->kafka.embedded_brokers == 3);
}

TEST_CASE("kafka stall_timeout defaults to 60s, accepts 0 (off) and names its line when invalid") {
    const auto d = load("kafka: {brokers: b:9092}\n");
    REQUIRE_OK(d);
    CHECK(d.value->kafka.stall_timeout == millis(60'000));
    const auto off = load("kafka: {brokers: b:9092, stall_timeout: 0s}\n");
    REQUIRE_OK(off);
    CHECK(off.value->kafka.stall_timeout == millis(0));
    const auto set = load("kafka:\n  brokers: b:9092\n  stall_timeout: 45s\n");
    REQUIRE_OK(set);
    CHECK(set.value->kafka.stall_timeout == millis(45'000));
    const auto bad = load("kafka:\n  brokers: b:9092\n  stall_timeout: 45\n");
    CHECK_ERROR(bad, "kafka.stall_timeout", "needs a unit");
    CHECK(bad.errors[0].line == 3);
}

TEST_CASE("kafka properties become strings and bootstrap.servers is rejected") {
    const auto r =
        load("kafka:\n  brokers: b:9092\n  properties: {linger.ms: 5, enable.idempotence: true, client.id: x}\n");
    REQUIRE_OK(r);
    CHECK(r.value->kafka.properties.at("linger.ms") == "5");
    CHECK(r.value->kafka.properties.at("enable.idempotence") == "true");
    const auto bad = load("kafka:\n  brokers: b:9092\n  properties:\n    bootstrap.servers: x:1\n");
    CHECK_ERROR(bad, "kafka.properties.bootstrap.servers", "kafka.brokers");
    CHECK(bad.errors[0].line == 4);
    CHECK_ERROR(load("kafka: {brokers: b, properties: {linger.ms: [1]}}\n"), "kafka.properties.linger.ms",
                "scalar expected");
}

TEST_CASE("a SASL mechanism that is not built in (GSSAPI) is refused with its path, whatever its case") {
    const auto bad = load(
        "kafka:\n  brokers: b:9092\n  properties:\n    security.protocol: SASL_SSL\n"
        "    sasl.mechanism: gssapi\n");
    CHECK_ERROR(bad, "kafka.properties.sasl.mechanism", "GSSAPI (Kerberos) is not built in");
    CHECK(bad.errors[0].line == 5);
    CHECK_ERROR(load("kafka: {brokers: b, properties: {sasl.mechanisms: ' GSSAPI'}}\n"),
                "kafka.properties.sasl.mechanisms", "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER");
    for (const char* ok : {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"}) {
        CAPTURE(ok);
        REQUIRE_OK(load(std::string("kafka: {brokers: b, properties: {sasl.mechanism: ") + ok + "}}\n"));
    }
}

TEST_CASE("secret properties are recognised by name") {
    const auto r = load(
        "kafka:\n  brokers: b:9092\n  properties:\n"
        "    sasl.password: p\n    ssl.key.password: k\n    sasl.oauthbearer.config: c\n"
        "    ssl.key.pem: pem\n    sasl.oauthbearer.client.secret: s\n    sasl.username: u\n");
    REQUIRE_OK(r);
    auto secrets = r.value->kafka.secret_properties;
    std::sort(secrets.begin(), secrets.end());
    CHECK(secrets == std::vector<std::string>{"sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
                                              "sasl.password", "ssl.key.password", "ssl.key.pem"});
}

TEST_CASE("commit routes with acks other than all are rejected, naming the routes") {
    const std::string routes = "replies: {topic: answers}\n" +
                               one_route("{name: pay, match: {path: /pay}, mode: commit, topic: pay}") +
                               "  - {name: ask, match: {path: /ask}, mode: reply, topic: ask}\n";
    const auto r = load("kafka: {brokers: b, properties: {acks: 1}}\n" + routes);
    CHECK_ERROR(r, "kafka.properties.acks", "'pay', 'ask'");
    CHECK(has_error(r, "kafka.properties.acks", "commit routes need acks=all and enable.idempotence=true"));
    CHECK_ERROR(load("kafka: {brokers: b, properties: {enable.idempotence: false}}\n" + routes),
                "kafka.properties.enable.idempotence", "'pay'");
    REQUIRE_OK(load("kafka: {brokers: b, properties: {acks: all, enable.idempotence: true}}\n" + routes));
    REQUIRE_OK(load("kafka: {brokers: b, properties: {acks: -1}}\n" + routes));
    // Without commit-like routes the producer is still idempotent with acks=all (event routes and
    // dead-letter writes rely on it), so weakening it is refused as `handoff run` would.
    CHECK_ERROR(load("kafka: {brokers: b, properties: {acks: 1}}\n" +
                     one_route("{name: e, match: {path: /e}, mode: event, topic: e}")),
                "kafka.properties.acks", "Handoff always produces with acks=all");
    // Spelling is not significant, as for librdkafka.
    REQUIRE_OK(load("kafka: {brokers: b, properties: {acks: ALL, enable.idempotence: True}}\n" + routes));
}

// ---- ${ENV} -------------------------------------------------------------------------------

TEST_CASE("environment variables are expanded in scalar values with defaults and escapes") {
    const auto r = load(
        "kafka:\n  brokers: \"${BROKERS}\"\n  properties:\n"
        "    sasl.password: \"${KAFKA_PASSWORD}\"\n    client.id: \"${CLIENT:-handoff}-${ZONE:-a}\"\n"
        "    note: \"$${NOT_EXPANDED} costs $5\"\n"
        "listen: {port: \"${PORT:-8080}\"}\n",
        {{"BROKERS", "k1:9092,k2:9092"}, {"KAFKA_PASSWORD", "s3cret"}, {"ZONE", "b"}, {"PORT", "9090"}});
    REQUIRE_OK(r);
    const auto& k = r.value->kafka;
    CHECK(k.brokers == "k1:9092,k2:9092");
    CHECK(k.properties.at("sasl.password") == "s3cret");
    CHECK(k.properties.at("client.id") == "handoff-b");
    CHECK(k.properties.at("note") == "${NOT_EXPANDED} costs $5");
    CHECK(r.value->listen.port == 9090);
}

TEST_CASE("an empty variable takes the default and an empty default is allowed") {
    const auto r = load("kafka: {brokers: \"${B:-x:1}\", properties: {sasl.password: \"${P:-}\"}}\n", {{"B", ""}});
    REQUIRE_OK(r);
    CHECK(r.value->kafka.brokers == "x:1");
    CHECK(r.value->kafka.properties.at("sasl.password").empty());
}

TEST_CASE("an unset variable without a default is an error at that scalar's line") {
    const auto r = load("kafka:\n  brokers: b\n  properties:\n    sasl.password: ${KAFKA_PASSWORD}\n");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 4);
    CHECK(r.errors[0].path == "kafka.properties.sasl.password");
    CHECK(r.errors[0].message == "environment variable KAFKA_PASSWORD is not set");
}

TEST_CASE("malformed variable references are errors") {
    CHECK_ERROR(load_with("upstream: {host: \"${1BAD}\"}\n"), "upstream.host",
                "invalid environment variable name '1BAD'");
    CHECK_ERROR(load_with("upstream: {host: \"${HOST\"}\n"), "upstream.host", "unterminated '${'");
}

// ---- routes -------------------------------------------------------------------------------

TEST_CASE("a route records its line and upper-cases its methods") {
    const auto r = load_with(
        "routes:\n  - name: a\n    match: {methods: [get, Post], path: /a}\n    mode: forward\n"
        "  - name: b\n    match: {method: put, path: /b}\n    mode: forward\n"
        "  - name: c\n    match: {path: /c}\n    mode: forward\n");
    REQUIRE_OK(r);
    const auto& routes = r.value->routes;
    CHECK(routes[0].line == 3);
    CHECK(routes[1].line == 6);
    CHECK(routes[0].methods == std::vector<std::string>{"GET", "POST"});
    CHECK(routes[1].methods == std::vector<std::string>{"PUT"});
    CHECK(routes[2].methods.empty());
}

TEST_CASE("invalid HTTP methods are rejected") {
    const auto r = load_with(one_route("{name: a, match: {methods: [GET, \"G=\", \"<x>\"], path: /a}, mode: forward}"));
    CHECK_ERROR(r, "routes[0].match.methods", "invalid HTTP method 'G='");
    CHECK(has_error(r, "routes[0].match.methods", "invalid HTTP method '<x>'"));
    CHECK_ERROR(load_with(one_route("{name: a, match: {methods: [], path: /a}, mode: forward}")),
                "routes[0].match.methods", "must not be empty");
    CHECK_ERROR(load_with(one_route("{name: a, match: {method: GET, methods: [GET], path: /a}, mode: forward}")),
                "routes[0].match.method", "either");
}

TEST_CASE("route name, match and mode are required") {
    const auto r = load_with("routes:\n  - {topic: t}\n");
    CHECK_ERROR(r, "routes[0]", "missing required key 'name'");
    CHECK(has_error(r, "routes[0]", "missing required key 'match'"));
    CHECK(has_error(r, "routes[0]", "missing required key 'mode'"));
    CHECK(r.errors[0].line == 3);
    CHECK_ERROR(load_with(one_route("{name: a, match: {methods: [GET]}, mode: forward}")), "routes[0].match",
                "missing required key 'path'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: stream}")), "routes[0].mode",
                "unknown mode 'stream'");
}

TEST_CASE("route names must be well-formed and unique") {
    CHECK_ERROR(load_with(one_route("{name: -a, match: {path: /a}, mode: forward}")), "routes[0].name",
                "invalid route name");
    CHECK_ERROR(load_with(one_route("{name: " + std::string(65, 'a') + ", match: {path: /a}, mode: forward}")),
                "routes[0].name", "invalid route name");
    const auto r = load_with(
        "routes:\n  - {name: a.b_c-1, match: {path: /a}, mode: forward}\n"
        "  - {name: a.b_c-1, match: {path: /b}, mode: forward}\n");
    CHECK_ERROR(r, "routes[1].name", "duplicate route name 'a.b_c-1' (also defined at line 3)");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 4);
}

TEST_CASE("route paths must start with a slash and use literal or {param} segments") {
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a/x{id}\"}, mode: forward}")), "routes[0].match.path",
                "must be a literal or exactly '{name}'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a/{id}/{id}\"}, mode: forward}")),
                "routes[0].match.path", "duplicate path parameter 'id'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a//b\"}, mode: forward}")), "routes[0].match.path",
                "empty path segment");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/a?x=1\"}, mode: forward}")), "routes[0].match.path",
                "invalid character '?'");
    REQUIRE_OK(load_with(one_route("{name: a, match: {path: \"/\"}, mode: forward}")));
    REQUIRE_OK(load_with(one_route("{name: a, match: {path: \"/v1/orders/{order_id}/items/\"}, mode: forward}")));
}

TEST_CASE("two routes with the same path shape and overlapping methods are duplicates") {
    const auto r = load_with(
        "routes:\n"
        "  - {name: a, match: {methods: [GET, POST], path: \"/o/{id}\"}, mode: forward}\n"
        "  - {name: b, match: {methods: [POST], path: \"/o/{oid}\"}, mode: forward}\n");
    CHECK_ERROR(r, "routes[1]", "also defined at line 3");
    REQUIRE_OK(
        load_with("routes:\n"
                  "  - {name: a, match: {methods: [GET], path: \"/o/{id}\"}, mode: forward}\n"
                  "  - {name: b, match: {methods: [POST], path: \"/o/{id}\"}, mode: forward}\n"
                  "  - {name: c, match: {path: \"/o/new\"}, mode: forward}\n"));
    CHECK_ERROR(load_with("routes:\n"
                          "  - {name: a, match: {methods: [GET], path: /x}, mode: forward}\n"
                          "  - {name: b, match: {path: /x}, mode: forward}\n"),
                "routes[1]", "duplicate route");
}

TEST_CASE("topic is required for publishing modes and forbidden for forward") {
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event}")), "routes[0]",
                "missing required key 'topic'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: shadow}")), "routes[0]",
                "missing required key 'topic'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: forward, topic: t}")), "routes[0].topic",
                "topic is not used by forward routes");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: forward, key: correlation}")), "routes[0].key",
                "not used by forward routes");
}

TEST_CASE("topic templates use path parameters and Kafka's topic characters") {
    const auto ok = load_with(
        one_route("{name: a, match: {path: \"/o/{region}/{id}\"}, mode: event, topic: \"o.{region}-{id}_x\"}"));
    REQUIRE_OK(ok);
    CHECK(ok.value->routes[0].topic == "o.{region}-{id}_x");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: \"/o/{region}\"}, mode: event, topic: \"o.{zone}\"}")),
                "routes[0].topic", "'{zone}' is not a path parameter");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /o}, mode: event, topic: \"o/x\"}")), "routes[0].topic",
                "invalid character '/'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /o}, mode: event, topic: \"o.{\"}")), "routes[0].topic",
                "invalid placeholder");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /o}, mode: event, topic: \"..\"}")), "routes[0].topic",
                "not a legal Kafka topic name");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /o}, mode: event, topic: " + std::string(250, 't') + "}")),
                "routes[0].topic", "249");
    REQUIRE_OK(load_with(one_route("{name: a, match: {path: /o}, mode: event, topic: " + std::string(249, 't') + "}")));
}

TEST_CASE("record keys accept path, header, body pointer and correlation forms") {
    const auto r = load_with(
        "routes:\n"
        "  - {name: a, match: {path: \"/a/{id}\"}, mode: event, topic: t, key: \"path:id\"}\n"
        "  - {name: b, match: {path: /b}, mode: event, topic: t, key: \"header:X-Tenant\"}\n"
        "  - {name: c, match: {path: /c}, mode: commit, topic: t, key: \"body:/a~1b/~0c/0\"}\n"
        "  - {name: d, match: {path: /d}, mode: event, topic: t, key: correlation}\n"
        "  - {name: e, match: {path: /e}, mode: event, topic: t}\n");
    REQUIRE_OK(r);
    const auto& rs = r.value->routes;
    CHECK((rs[0].key.kind == key_kind::path && rs[0].key.name == "id"));
    CHECK((rs[1].key.kind == key_kind::header && rs[1].key.name == "X-Tenant"));
    CHECK((rs[2].key.kind == key_kind::body && rs[2].key.name == "/a~1b/~0c/0"));
    CHECK(rs[3].key.kind == key_kind::correlation);
    CHECK(rs[4].key.kind == key_kind::none);
}

TEST_CASE("invalid record keys are rejected with the accepted forms") {
    const auto key = [](const std::string& k) {
        return load_with(one_route("{name: a, match: {path: \"/a/{id}\"}, mode: event, topic: t, key: \"" + k + "\"}"));
    };
    CHECK_ERROR(key("path:nope"), "routes[0].key", "'nope' is not in the route's path");
    CHECK_ERROR(key("header:X Tenant"), "routes[0].key", "invalid header name");
    CHECK_ERROR(key("body:customer/id"), "routes[0].key", "invalid JSON pointer");
    CHECK_ERROR(key("body:/a~2"), "routes[0].key", "invalid JSON pointer");
    CHECK_ERROR(key("random"), "routes[0].key", "expected path:NAME, header:NAME, body:/json/pointer or correlation");
}

TEST_CASE("success_status depends on the mode") {
    const auto r = load_with(
        "routes:\n"
        "  - {name: a, match: {path: /a}, mode: commit, topic: t}\n"
        "  - {name: b, match: {path: /b}, mode: commit, topic: t, success_status: 204}\n"
        "  - {name: c, match: {path: /c}, mode: event, topic: t}\n"
        "  - {name: d, match: {path: /d}, mode: forward}\n");
    REQUIRE_OK(r);
    CHECK(r.value->routes[0].success_status == 200);
    CHECK(r.value->routes[1].success_status == 204);
    CHECK(r.value->routes[2].success_status == 202);
    CHECK(r.value->routes[3].success_status == 0);
    const auto status = [](const std::string& m, int s) {
        return load_with(one_route("{name: a, match: {path: /a}, mode: " + m + (m == "forward" ? "" : ", topic: t") +
                                   ", success_status: " + std::to_string(s) + "}"));
    };
    CHECK_ERROR(status("commit", 203), "routes[0].success_status", "200, 201, 202 or 204");
    CHECK_ERROR(status("event", 200), "routes[0].success_status", "event routes answer 202");
    CHECK_ERROR(status("forward", 200), "routes[0].success_status", "not used by forward routes");
    CHECK_ERROR(status("shadow", 200), "routes[0].success_status", "not used by shadow routes");
    REQUIRE_OK(status("event", 202));
}

TEST_CASE("route headers must be header names and route timeouts positive") {
    const auto ok = load_with(one_route(
        "{name: a, match: {path: /a}, mode: event, topic: t, headers: [X-Tenant, x-tenant, Accept], timeout: 1500ms}"));
    REQUIRE_OK(ok);
    CHECK(ok.value->routes[0].headers == std::vector<std::string>{"X-Tenant", "Accept"});
    CHECK(ok.value->routes[0].timeout == millis(1500));
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, headers: [\"X:Y\"]}")),
                "routes[0].headers", "invalid header name 'X:Y'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, timeout: 0ms}")),
                "routes[0].timeout", "greater than 0");
}

TEST_CASE("cloudevents attributes default the source from defaults.ce_source") {
    const auto r =
        load_with("defaults: {ce_source: /svc}\n" +
                  one_route("{name: a, match: {path: /a}, mode: event, topic: t, cloudevents: {type: x.y}}"));
    REQUIRE_OK(r);
    CHECK(r.value->routes[0].ce_type == "x.y");
    CHECK(r.value->routes[0].ce_source == "/svc");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, cloudevents: {kind: x}}")),
                "routes[0].cloudevents.kind", "unknown key 'kind'");
}

TEST_CASE("a route error reports the exact line, column and path") {
    const auto r = load_with(
        "routes:\n"
        "  - name: ok\n"
        "    match: {path: /a}\n"
        "    mode: forward\n"
        "  - name: bad\n"
        "    match:\n"
        "      path: /b/{x}\n"
        "    mode: event\n"
        "    topic: \"b.{y}\"\n");
    REQUIRE(r.errors.size() == 1);
    CHECK(format(r.errors[0]) ==
          "test.yaml:10:12: routes[1].topic: topic placeholder '{y}' is not a path parameter of this route");
}

// ---- redacted JSON ------------------------------------------------------------------------

TEST_CASE("the redacted JSON hides secrets and writes durations and sizes plainly") {
    const auto r =
        load("kafka:\n  brokers: b:9092\n  properties: {sasl.password: hunter2, sasl.username: me, linger.ms: 5}\n" +
                 one_route("{name: a, match: {methods: [POST], path: \"/o/{r}\"}, mode: commit, topic: \"o.{r}\", key: "
                           "\"path:r\", timeout: 3s}"),
             {});
    REQUIRE_OK(r);
    const auto text = to_redacted_json(*r.value);
    CHECK(text.find("hunter2") == std::string::npos);
    const auto j = nlohmann::json::parse(text);
    CHECK(j["kafka"]["properties"]["sasl.password"] == "<redacted>");
    CHECK(j["kafka"]["properties"]["sasl.username"] == "me");
    CHECK(j["kafka"]["brokers"] == "b:9092");
    CHECK(j["listen"]["header_timeout"] == "10000ms");
    CHECK(j["listen"]["max_body_bytes"] == 1048576);
    CHECK(j["defaults"]["mode"] == "forward");
    CHECK(j["log"]["level"] == "info");
    CHECK(j["routes"][0]["mode"] == "commit");
    CHECK(j["routes"][0]["key"] == "path:r");
    CHECK(j["routes"][0]["timeout"] == "3000ms");
    CHECK(j["routes"][0]["success_status"] == 200);
    CHECK(j["routes"][0]["match"]["methods"][0] == "POST");
}

TEST_CASE("mode names round-trip through to_string") {
    CHECK(std::string(to_string(mode::forward)) == "forward");
    CHECK(std::string(to_string(mode::event)) == "event");
    CHECK(std::string(to_string(mode::commit)) == "commit");
    CHECK(std::string(to_string(mode::shadow)) == "shadow");
    CHECK(std::string(to_string(mode::reply)) == "reply");
}

TEST_CASE("drain, limits and status sections are parsed and validated") {
    const std::string yaml = R"(kafka: {brokers: "b:9092"}
drain: {delay: 0s, timeout: 15s}
limits: {max_inflight_commits: 500}
status: {max_entries: 1000, ttl: 2m}
log: {level: warn, requests: false}
)";
    auto r = handoff::config::load_string(yaml, "t.yaml", [](const std::string&) { return std::nullopt; });
    REQUIRE(r.errors.empty());
    CHECK(r.value->drain.delay.count() == 0);
    CHECK(r.value->drain.timeout.count() == 15000);
    CHECK(r.value->limits.max_inflight_commits == 500);
    CHECK(r.value->status.max_entries == 1000);
    CHECK(r.value->status.ttl.count() == 120000);
    CHECK_FALSE(r.value->log.requests);

    auto bad = handoff::config::load_string(
        "kafka: {brokers: \"b:9092\"}\ndrain: {delay: 5, timout: 1s}\nlimits: {max_inflight_commits: 0}\n", "t.yaml",
        [](const std::string&) { return std::nullopt; });
    CHECK(bad.errors.size() == 3);
}

// ---- subscriptions (the receiving half) ------------------------------------------------------

TEST_CASE("a subscription with only name, topics and group gets every default") {
    const auto r = load_with("subscriptions:\n  - name: orders-in\n    topics: [orders]\n    group: svc\n");
    REQUIRE_OK(r);
    REQUIRE(r.value->subscriptions.size() == 1);
    const auto& s = r.value->subscriptions[0];
    CHECK(s.name == "orders-in");
    CHECK(s.topics == std::vector<std::string>{"orders"});
    CHECK(s.group == "svc");
    CHECK(s.target.method.empty());
    CHECK(s.target.path.empty());
    CHECK(s.ordering == ordering::key);
    CHECK(s.concurrency == 16);
    CHECK(s.timeout == millis(10'000));
    CHECK(s.retry.attempts == 10);
    CHECK(s.retry.backoff_base == millis(200));
    CHECK(s.retry.backoff_cap == millis(30'000));
    CHECK(s.retry.jitter == jitter::full);
    CHECK(s.dead_letter_topic.empty());
    CHECK(s.reply_topic.empty());
    CHECK(s.auto_offset_reset == offset_reset::earliest);
    CHECK(s.line == 3);
}

TEST_CASE("a fully specified subscription parses every key") {
    const auto r = load_with(R"(subscriptions:
  - name: full
    topics: [a, b]
    group: g1
    target: {method: put, path: /v1/events}
    ordering: partition
    concurrency: 4
    timeout: 2s
    retry: {attempts: 3, backoff_base: 50ms, backoff_cap: 1s, jitter: none}
    dead_letter_topic: a.dlq
    reply_topic: a.replies
    reply_headers: [Location, ETag]
    auto_offset_reset: error
    headers: [X-Tenant, x-tenant, X-Request-Id]
    properties: {max.poll.interval.ms: "10000", session.timeout.ms: 6000}
)");
    REQUIRE_OK(r);
    const auto& s = r.value->subscriptions.at(0);
    CHECK(s.topics == std::vector<std::string>{"a", "b"});
    CHECK(s.target.method == "PUT");
    CHECK(s.target.path == "/v1/events");
    CHECK(s.ordering == ordering::partition);
    CHECK(s.concurrency == 4);
    CHECK(s.timeout == millis(2000));
    CHECK(s.retry.attempts == 3);
    CHECK(s.retry.backoff_base == millis(50));
    CHECK(s.retry.backoff_cap == millis(1000));
    CHECK(s.retry.jitter == jitter::none);
    CHECK(s.dead_letter_topic == "a.dlq");
    CHECK(s.reply_topic == "a.replies");
    CHECK(s.reply_headers == std::vector<std::string>{"Location", "ETag"});
    CHECK(s.auto_offset_reset == offset_reset::error);
    CHECK(s.headers == std::vector<std::string>{"X-Tenant", "X-Request-Id"});
    CHECK(s.properties.at("max.poll.interval.ms") == "10000");
    CHECK(s.properties.at("session.timeout.ms") == "6000");
    const auto j = nlohmann::json::parse(to_redacted_json(*r.value));
    CHECK(j["subscriptions"][0]["ordering"] == "partition");
    CHECK(j["subscriptions"][0]["retry"]["backoff_cap"] == "1000ms");
}

TEST_CASE("subscription errors are located by line and path") {
    const auto r = load_with(R"(subscriptions:
  - name: bad
    topics: []
    group: g
    ordering: random
    concurrency: 0
    retry: {attempts: 0, jitter: some, backof_cap: 1s}
    target: {method: "GE T", path: "//evil.example/x"}
    auto_offset_reset: smallest
    headers: ["X Bad"]
    dead_letter_topic: "bad topic"
    reply_headers: [Location]
    colour: blue
  - topics: [x]
)");
    CHECK_ERROR(r, "subscriptions[0].topics", "must not be empty");
    CHECK_ERROR(r, "subscriptions[0].ordering", "must be one of key, partition, none");
    CHECK_ERROR(r, "subscriptions[0].concurrency", "between 1 and");
    CHECK_ERROR(r, "subscriptions[0].retry.attempts", "between 1 and");
    CHECK_ERROR(r, "subscriptions[0].retry.jitter", "must be one of full, none");
    CHECK_ERROR(r, "subscriptions[0].retry.backof_cap", "did you mean 'backoff_cap'");
    CHECK_ERROR(r, "subscriptions[0].target.method", "invalid HTTP method");
    CHECK_ERROR(r, "subscriptions[0].target.path", "single '/'");
    CHECK_ERROR(r, "subscriptions[0].auto_offset_reset", "earliest, latest, error");
    CHECK_ERROR(r, "subscriptions[0].headers", "invalid header name");
    CHECK_ERROR(r, "subscriptions[0].dead_letter_topic", "invalid character");
    CHECK_FALSE(has_error(r, "subscriptions[0].reply_headers", ""));  // also used for replies a request names
    CHECK_ERROR(r, "subscriptions[0].colour", "unknown key");
    CHECK_ERROR(r, "subscriptions[1]", "missing required key 'name'");
    CHECK_ERROR(r, "subscriptions[1]", "missing required key 'group'");
    const auto it = std::find_if(r.errors.begin(), r.errors.end(),
                                 [](const config_error& e) { return e.path == "subscriptions[0].ordering"; });
    REQUIRE(it != r.errors.end());
    CHECK(it->line == 6);
}

TEST_CASE("subscription names are unique, dead-letter topics cannot loop and Handoff owns some consumer properties") {
    const auto r = load_with(R"(subscriptions:
  - {name: s, topics: [a], group: g, dead_letter_topic: a}
  - name: s
    topics: [b]
    group: g
    retry: {backoff_base: 5s, backoff_cap: 1s}
    properties: {group.id: other, enable.auto.offset.store: "true", enable.auto.commit: "false", sasl.mechanism: GSSAPI}
)");
    CHECK_ERROR(r, "subscriptions[0].dead_letter_topic", "would loop");
    CHECK_ERROR(r, "subscriptions[1].name", "duplicate subscription name 's'");
    CHECK_ERROR(r, "subscriptions[1].retry.backoff_cap", "must not be smaller than backoff_base");
    CHECK_ERROR(r, "subscriptions[1].properties.group.id", "set by Handoff");
    CHECK_ERROR(r, "subscriptions[1].properties.enable.auto.offset.store", "set by Handoff");
    CHECK_ERROR(r, "subscriptions[1].properties.enable.auto.commit", "auto.commit.interval.ms");
    CHECK_ERROR(r, "subscriptions[1].properties.sasl.mechanism", "GSSAPI (Kerberos) is not built in");
}

TEST_CASE("a subscription target may fall back to a fixed path only with path original") {
    auto r = load_with("subscriptions:\n  - {name: s, topics: [a], group: g, target: {fallback_path: /inbox}}\n");
    REQUIRE_OK(r);
    CHECK(r.value->subscriptions[0].target.fallback_path == "/inbox");
    r = load_with("subscriptions:\n  - {name: s, topics: [a], group: g, target: {path: /x, fallback_path: /inbox}}\n");
    CHECK_ERROR(r, "subscriptions[0].target.fallback_path", "only used with path: original");
    r = load_with("subscriptions: {name: s}\n");
    CHECK_ERROR(r, "subscriptions", "list expected");
}

// ---- idempotency, replies, canary (issue 4) --------------------------------------------------

TEST_CASE("idempotency and replies sections, and a reply route that needs replies.topic") {
    const auto ok = load_with(
        "idempotency: {max_entries: 500, max_bytes: 1MiB, ttl: 1h}\n"
        "replies: {topic: replies.pod-1}\n" +
        one_route(
            "{name: quote, match: {path: /quotes, method: POST}, mode: reply, topic: quotes, idempotency: required}"));
    REQUIRE_OK(ok);
    CHECK(ok.value->idempotency.max_entries == 500);
    CHECK(ok.value->idempotency.max_bytes == 1024 * 1024);
    CHECK(ok.value->idempotency.ttl == std::chrono::hours(1));
    CHECK(ok.value->replies.topic == "replies.pod-1");
    CHECK(ok.value->routes[0].idempotency_required);
    const auto j = nlohmann::json::parse(to_redacted_json(*ok.value));
    CHECK(j["replies"]["topic"] == "replies.pod-1");
    CHECK(j["routes"][0]["idempotency"] == "required");

    const auto missing = load_with(one_route("{name: quote, match: {path: /quotes}, mode: reply, topic: quotes}"));
    CHECK_ERROR(missing, "routes[0]", "set replies.topic");
    CHECK_ERROR(load_with("replies: {}\n"), "replies", "missing required key 'topic'");
    CHECK_ERROR(load_with("replies: {topic: 'bad topic'}\n"), "replies.topic", "invalid character");
}

TEST_CASE("replies.create and replies.refresh_interval have defaults, a bool or a map form, and checked values") {
    const auto plain = load_with("replies: {topic: r}\n");
    REQUIRE_OK(plain);
    CHECK(plain.value->replies.create.enabled);
    CHECK(plain.value->replies.create.partitions == 1);
    CHECK(plain.value->replies.create.replication_factor == -1);
    CHECK(plain.value->replies.create.retention == std::chrono::hours(1));
    CHECK(plain.value->replies.refresh_interval == std::chrono::seconds(10));

    const auto off = load_with("replies: {topic: r, create: false}\n");
    REQUIRE_OK(off);
    CHECK_FALSE(off.value->replies.create.enabled);

    const auto full = load_with(
        "replies:\n  topic: r\n  refresh_interval: 2s\n"
        "  create: {partitions: 3, replication_factor: 2, retention: 30m}\n");
    REQUIRE_OK(full);
    CHECK(full.value->replies.create.enabled);
    CHECK(full.value->replies.create.partitions == 3);
    CHECK(full.value->replies.create.replication_factor == 2);
    CHECK(full.value->replies.create.retention == std::chrono::minutes(30));
    CHECK(full.value->replies.refresh_interval == std::chrono::seconds(2));
    const auto j = nlohmann::json::parse(to_redacted_json(*full.value));
    CHECK(j["replies"]["create"]["partitions"] == 3);
    CHECK(j["replies"]["create"]["retention"] == "1800000ms");

    CHECK_ERROR(load_with("replies: {topic: r, create: maybe}\n"), "replies.create", "true or false expected");
    CHECK_ERROR(load_with("replies: {topic: r, create: {partitions: 0}}\n"), "replies.create.partitions",
                "must be between 1 and");
    CHECK_ERROR(load_with("replies: {topic: r, create: {replication_factor: 0}}\n"),
                "replies.create.replication_factor", "must be -1");
    CHECK_ERROR(load_with("replies: {topic: r, create: {retention: 0s}}\n"), "replies.create.retention",
                "greater than 0");
    CHECK_ERROR(load_with("replies: {topic: r, create: {partition: 2}}\n"), "replies.create.partition",
                "did you mean 'partitions'");
    CHECK_ERROR(load_with("replies: {topic: r, refresh_interval: 10ms}\n"), "replies.refresh_interval",
                "at least 100ms");
}

TEST_CASE("idempotency on a route is optional or required, and not for forward routes") {
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, idempotency: always}")),
                "routes[0].idempotency", "optional or required");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: forward, idempotency: required}")),
                "routes[0].idempotency", "not used by forward routes");
    const auto ok = load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, idempotency: optional}"));
    REQUIRE_OK(ok);
    CHECK_FALSE(ok.value->routes[0].idempotency_required);
}

TEST_CASE("a canary sends a share of a route to a second mode") {
    const auto ok = load_with(
        one_route("{name: orders, match: {path: '/orders/{id}'}, mode: forward, topic: orders, key: 'path:id', "
                  "canary: {mode: event, percent: 12.5}}"));
    REQUIRE_OK(ok);
    const auto& r = ok.value->routes[0];
    CHECK(r.mode == mode::forward);
    CHECK(r.canary_mode == mode::event);
    CHECK(r.canary_percent_bp == 1250);
    CHECK(r.topic == "orders");
    const auto j = nlohmann::json::parse(to_redacted_json(*ok.value));
    CHECK(j["routes"][0]["canary"]["mode"] == "event");
    CHECK(j["routes"][0]["canary"]["percent"] == 12.5);

    for (const char* pct : {"0", "100", "7", "0.5", "99.99"}) {
        REQUIRE_OK(load_with(one_route(
            std::string("{name: a, match: {path: /a}, mode: event, topic: t, canary: {mode: forward, percent: ") + pct +
            "}}")));
    }
    for (const char* pct : {"101", "-1", "1.234", "ten", ".5", "5."}) {
        CHECK_ERROR(
            load_with(one_route(
                std::string("{name: a, match: {path: /a}, mode: event, topic: t, canary: {mode: forward, percent: '") +
                pct + "'}}")),
            "routes[0].canary.percent", "");
    }
    CHECK_ERROR(
        load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, canary: {mode: event, percent: 5}}")),
        "routes[0].canary.mode", "must differ");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, canary: {percent: 5}}")),
                "routes[0].canary", "missing required key 'mode'");
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: event, topic: t, canary: {mode: forward}}")),
                "routes[0].canary", "missing required key 'percent'");
    // A forward route whose canary publishes needs a topic; one whose canary forwards does not take one.
    CHECK_ERROR(load_with(one_route("{name: a, match: {path: /a}, mode: forward, canary: {mode: commit, percent: 5}}")),
                "routes[0]", "missing required key 'topic'");
    CHECK_ERROR(
        load_with("replies: {topic: r}\n" + one_route("{name: a, match: {path: /a}, mode: forward, topic: t, canary: "
                                                      "{mode: shadow, percent: 5}, success_status: 202}")),
        "routes[0].success_status", "success_status is not used by");
    CHECK_ERROR(load_with(one_route(
                    "{name: a, match: {path: /a}, mode: forward, topic: t, canary: {mode: reply, percent: 5}}")),
                "routes[0]", "set replies.topic");
}

TEST_CASE("status.max_bytes bounds the status store") {
    const auto ok = load_with("status: {max_entries: 10, max_bytes: 2MiB, ttl: 1m}\n");
    REQUIRE_OK(ok);
    CHECK(ok.value->status.max_bytes == 2 * 1024 * 1024);
}

// ---- reload ----------------------------------------------------------------------------------

TEST_CASE("a reload that changes only a secret needs a restart of the kafka section, though /config looks the same") {
    const char* yaml =
        "kafka:\n  brokers: k:9092\n  properties: {sasl.password: \"${P}\"}\n"
        "subscriptions:\n  - {name: s, topics: [a], group: g, properties: {sasl.password: \"${Q}\"}}\n";
    const auto a = load(yaml, {{"P", "old"}, {"Q", "same"}});
    const auto b = load(yaml, {{"P", "new"}, {"Q", "same"}});
    const auto c = load(yaml, {{"P", "old"}, {"Q", "changed"}});
    REQUIRE_OK(a);
    REQUIRE_OK(b);
    REQUIRE_OK(c);
    CHECK(to_redacted_json(*a.value) == to_redacted_json(*b.value));  // what /config shows cannot tell
    CHECK(sections_needing_restart(*a.value, *b.value) == std::vector<std::string>{"kafka"});
    CHECK(sections_needing_restart(*a.value, *c.value) == std::vector<std::string>{"subscriptions"});
    CHECK(sections_needing_restart(*a.value, *a.value).empty());
}

TEST_CASE("limits.max_buffered_body_bytes bounds every body limit") {
    auto r = load_with("limits: {max_buffered_body_bytes: 4MiB}\nlisten: {max_body_bytes: 1MiB}\n");
    REQUIRE_OK(r);
    CHECK(r.value->limits.max_buffered_body_bytes == 4u * 1024 * 1024);
    r = load_with("limits: {max_buffered_body_bytes: 1KiB}\n");  // listen.max_body_bytes defaults to 1MiB
    CHECK_ERROR(r, "limits.max_buffered_body_bytes", "listen.max_body_bytes");
    // Unset: 64MiB, or the largest body limit when that is larger.
    r = load_with(one_route("{name: a, match: {path: /a}, mode: forward, max_body_bytes: 100MiB}"));
    REQUIRE_OK(r);
    CHECK(r.value->limits.max_buffered_body_bytes == 100u * 1024 * 1024);
    r = load_with("listen: {max_body_bytes: 2MiB}\n");
    REQUIRE_OK(r);
    CHECK(r.value->limits.max_buffered_body_bytes == 64u * 1024 * 1024);
    r = load_with(
        "limits:\n  max_buffered_body_bytes: 2MiB\nroutes:\n"
        "  - {name: big, match: {path: /big}, mode: forward, max_body_bytes: 3MiB}\n");
    CHECK_ERROR(r, "limits.max_buffered_body_bytes", "route 'big'");
}

TEST_CASE("a subscription's reply_topics are topic names or patterns with '*'") {
    auto r = load_with(
        "subscriptions:\n  - {name: s, topics: [a], group: g, reply_topics: [\"quotes.replies.*\", exact.one]}\n");
    REQUIRE_OK(r);
    CHECK(r.value->subscriptions[0].reply_topics == std::vector<std::string>{"quotes.replies.*", "exact.one"});
    r = load_with("subscriptions:\n  - {name: s, topics: [a], group: g, reply_topics: [\"no spaces *\"]}\n");
    CHECK_ERROR(r, "subscriptions[0].reply_topics", "");
    r = load_with("subscriptions:\n  - {name: s, topics: [a], group: g, reply_topics: [\"t.{x}\"]}\n");
    CHECK_ERROR(r, "subscriptions[0].reply_topics", "templates");
}

TEST_CASE("state: off by default; shared needs a topic of its own that outlives the keys and statuses") {
    const auto plain = load_with("");
    REQUIRE_OK(plain);
    CHECK_FALSE(plain.value->state.shared);

    const auto ok = load_with(
        "state: {shared: true, topic: handoff.state.orders, partitions: 12, replication_factor: 3, retention: 72h,\n"
        "        claim_timeout: 45s, claim_wait: 2s, refresh_interval: 5s, replica: pod-a}\n");
    REQUIRE_OK(ok);
    const auto& s = ok.value->state;
    CHECK(s.shared);
    CHECK(s.topic == "handoff.state.orders");
    CHECK(s.partitions == 12);
    CHECK(s.replication_factor == 3);
    CHECK(s.retention == std::chrono::hours(72));
    CHECK(s.claim_timeout == std::chrono::seconds(45));
    CHECK(s.claim_wait == std::chrono::seconds(2));
    CHECK(s.refresh_interval == std::chrono::seconds(5));
    CHECK(s.replica == "pod-a");
    const auto j = nlohmann::json::parse(to_redacted_json(*ok.value));
    CHECK(j["state"]["topic"] == "handoff.state.orders");
    CHECK(j["state"]["shared"] == true);

    CHECK_ERROR(load_with("state: {shared: true}\n"), "state", "missing required key 'topic'");
    CHECK_ERROR(load_with("state: {shared: true, topic: s, retention: 1h}\n"), "state.retention",
                "shorter than idempotency.ttl");
    CHECK_ERROR(load_with("status: {ttl: 72h}\nstate: {shared: true, topic: s}\n"), "state.retention",
                "shorter than status.ttl");
    CHECK_ERROR(load_with("state: {shared: true, topic: r}\nreplies: {topic: r}\n"), "state.topic",
                "is also replies.topic");
    CHECK_ERROR(load_with("state: {shared: true, topic: orders}\n" +
                          one_route("{name: o, match: {path: /o, method: POST}, mode: event, topic: orders}")),
                "state.topic", "the topic of route 'o'");
    CHECK_ERROR(load_with("state: {topic: 'bad topic'}\n"), "state.topic", "invalid character");
    CHECK_ERROR(load_with("state: {claim_timeout: 10ms}\n"), "state.claim_timeout", "at least 1s");
    CHECK_ERROR(
        load_with("state: {shared: true, topic: s, claim_timeout: 20s}\n" +
                  one_route("{name: q, match: {path: /q, method: POST}, mode: commit, topic: q, timeout: 25s}")),
        "state.claim_timeout", "shorter than the timeout of route 'q'");
    CHECK_ERROR(load_with("state: {replication_factor: 0}\n"), "state.replication_factor", "got 0");
    CHECK_ERROR(load_with("state: {shared: true, topic: s, sharded: true}\n"), "state.sharded",
                "did you mean 'shared'");
}
