"""config/handoff.schema.json (JSON Schema draft 2020-12) against the example configs and the loader.

Every example config (config/examples/*.yaml, the Handoff configs in docker/) and the configs this
suite itself generates validate against the schema; invalid configs are rejected by the schema AND
by `handoff validate` (exit 78), so the schema and the loader cannot drift apart silently.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO_ROOT, Topics, base_config, handoff_bin, standard_routes, to_yaml

SCHEMA_PATH = REPO_ROOT / "config" / "handoff.schema.json"
EXIT_CONFIG = 78


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    # format_checker: listen/admin addresses are checked as ipv4/ipv6 literals.
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator.iter_errors(doc)]


def _example_files() -> list[Path]:
    files = sorted((REPO_ROOT / "config" / "examples").glob("*.yaml"))
    # docker/ also holds compose.yaml (a Docker Compose file, not a Handoff config).
    files += sorted(p for p in (REPO_ROOT / "docker").glob("*.yaml") if p.name != "compose.yaml")
    return files


def test_the_schema_is_a_valid_draft_2020_12_schema_with_descriptions():
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    # Every key of every section carries a description (editor completion shows it).
    missing = []

    def walk(node, where):
        if not isinstance(node, dict):
            return
        for k, sub in (node.get("properties") or {}).items():
            if not (isinstance(sub, dict) and sub.get("description")):
                missing.append(f"{where}.{k}")
            walk(sub, f"{where}.{k}")
        for k in ("items", "additionalProperties"):
            walk(node.get(k), f"{where}[]")
        for k, sub in (node.get("$defs") or {}).items():
            walk(sub, f"$defs.{k}")

    walk(schema, "")
    assert not missing, f"schema properties without a description: {missing}"


def test_the_schema_has_every_top_level_section_of_the_loader():
    props = set(_schema()["properties"])
    assert props == {"profile", "listen", "admin", "upstream", "kafka", "defaults", "routing", "log", "drain", "limits",
                     "status", "idempotency", "state", "replies", "routes", "subscriptions"}


@pytest.mark.parametrize("path", _example_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_config_validates_against_the_schema_and_the_loader(validator, path):
    doc = yaml.safe_load(path.read_text())
    assert _errors(validator, doc) == []
    r = subprocess.run([handoff_bin(), "validate", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_the_suite_generated_configs_validate_against_the_schema(validator):
    t = Topics(audit="a.audit", keys="a.keys", creds="a.creds", special="a.special")
    cfg = base_config("127.0.0.1:9092", 8081, standard_routes(t),
                      drain={"delay": "0s", "timeout": "5s"}, limits={"max_inflight_commits": 20},
                      status={"max_entries": 1000, "ttl": "1m"}, log={"level": "debug", "requests": False})
    # Through YAML, as the binary sees it.
    assert _errors(validator, yaml.safe_load(to_yaml(cfg))) == []


# A base document every case below modifies; valid for both the schema and the loader.
BASE = """\
listen: {address: 127.0.0.1, port: 8080}
kafka:
  brokers: "127.0.0.1:9092"
routes:
  - name: get-order
    match: {methods: [GET], path: "/orders/{id}"}
    mode: forward
  - name: create-order
    match: {methods: [POST], path: "/orders/{region}"}
    mode: commit
    topic: "orders.{region}"
    key: "body:/customer/id"
"""

VALID = {
    "env-placeholders": BASE.replace("port: 8080", 'port: "${HANDOFF_PORT:-8080}"')
    + 'drain: {delay: "${DRAIN_DELAY:-5s}", timeout: 20s}\n',
    "drain-zero-delay": BASE + "drain: {delay: 0s, timeout: 20s}\n",
    "routing-strict": BASE + "routing: {trailing_slash: strict}\n",
    "kafka-stall-timeout": BASE.replace('  brokers: "127.0.0.1:9092"\n', '  brokers: "127.0.0.1:9092"\n  stall_timeout: 45s\n'),
    "kafka-stall-timeout-off": BASE.replace('  brokers: "127.0.0.1:9092"\n', '  brokers: "127.0.0.1:9092"\n  stall_timeout: 0s\n'),
    "operability-sections": BASE + "log: {level: warn, requests: false}\nlimits: {max_inflight_commits: 20}\n"
    "status: {max_entries: 1000, ttl: 10m}\nadmin: {enabled: true, address: '::1', port: 9901}\n",
    "sizes": BASE.replace("listen: {address: 127.0.0.1, port: 8080}",
                          "listen: {address: 127.0.0.1, port: 8080, max_body_bytes: 64KiB, max_header_bytes: 8192}"),
    "closing-the-loop": BASE + """\
  - {name: quote, match: {methods: [POST], path: "/quotes/{id}"}, mode: reply, topic: quotes, key: "path:id", idempotency: required}
  - {name: mirror, match: {path: "/mirror/{id}"}, mode: shadow, topic: mirror, key: "path:id"}
  - {name: try-events, match: {methods: [PUT], path: "/orders/{id}"}, mode: forward, topic: orders, key: "path:id", canary: {mode: event, percent: 12.5}}
  - {name: try-forward, match: {methods: [DELETE], path: "/orders/{id}"}, mode: event, topic: orders, canary: {mode: forward, percent: "5"}}
idempotency: {max_entries: 1000, max_bytes: 8MiB, ttl: 1h}
replies: {topic: "replies.${POD_NAME:-local}"}
status: {max_entries: 1000, max_bytes: 4MiB, ttl: 10m}
""",
    "subscriptions": BASE + """\
upstream: {host: 127.0.0.1, port: 8081}
subscriptions:
  - name: orders-in
    topics: [orders.eu]
    group: orders-service
    target: {method: original, path: original, fallback_path: /events}
    ordering: key
    concurrency: 16
    timeout: 10s
    retry: {attempts: 10, backoff_base: 200ms, backoff_cap: 30s, jitter: full}
    dead_letter_topic: orders.eu.dlq
    reply_topic: orders.replies
    reply_headers: [Location]
    auto_offset_reset: latest
    headers: [X-Tenant]
    properties: {fetch.max.bytes: 1048576}
  - name: audit-in
    topics: [audit]
    group: audit
    target: {method: PUT, path: /audit}
""",
}

TLS = '  brokers: "127.0.0.1:9092"\n  properties: {security.protocol: SASL_SSL, ssl.ca.location: /etc/ca.pem}\n'
PRODUCTION = "profile: production\n" + BASE.replace('  brokers: "127.0.0.1:9092"\n', TLS)
VALID.update({
    "replies-create-map": BASE + 'replies:\n  topic: "replies.${POD_NAME:-local}"\n  refresh_interval: 5s\n'
    "  create: {partitions: 3, replication_factor: -1, retention: 2h}\n",
    "replies-create-off": BASE + "replies: {topic: replies.fixed, create: false}\n",
    "production-tls": PRODUCTION,
    "production-allow-insecure": "profile: production\n" + BASE.replace(
        '  brokers: "127.0.0.1:9092"\n', '  brokers: embedded\n  allow_insecure: true\n'),
    "development-plaintext": "profile: development\n" + BASE,
})

# Where the schema must report each invalid case (the JSON path of the offending value).
SCHEMA_ERROR_AT = {
    "acks-1-with-commit-route": "kafka/properties/acks",
    "address-not-ip": "listen/address",
    "bad-duration-unit": "drain/timeout",
    "bad-key": "routes/1/key",
    "bad-log-level": "log/level",
    "bad-trailing-slash": "routing/trailing_slash",
    "bad-mode": "routes/1/mode",
    "bad-path": "routes/0/match/path",
    "bad-route-name": "routes/0/name",
    "bad-size": "upstream/max_response_bytes",
    "bare-number-duration": "defaults/timeout",
    "bootstrap-in-properties": "kafka/properties",
    "commit-bad-success-status": "routes/1/success_status",
    "commit-without-topic": "routes/1",
    "defaults-mode-event": "defaults/mode",
    "forward-with-topic": "routes/0",
    "limits-zero": "limits/max_inflight_commits",
    "log-requests-not-bool": "log/requests",
    "method-and-methods": "routes/0/match",
    "missing-kafka": "(root)",
    "port-out-of-range": "listen/port",
    "subscription-bad-ordering": "subscriptions/0/ordering",
    "reply-without-replies-topic": "(root)",
    "replies-create-unknown-key": "replies/create",
    "replies-create-zero-replication": "replies/create",
    "canary-bad-percent": "routes/2/canary/percent",
    "canary-forward-without-topic": "routes/2",
    "idempotency-on-forward": "routes/2",
    "subscription-empty-topics": "subscriptions/0/topics",
    "subscription-fallback-with-fixed-path": "subscriptions/0/target",
    "subscription-group-id-property": "subscriptions/0/properties",
    "subscription-templated-topic": "subscriptions/0/topics/0",
    "subscription-unknown-key": "subscriptions/0",
    "subscription-without-group": "subscriptions/0",
    "unknown-drain-key": "drain",
    "unknown-route-key": "routes/0",
    "unknown-top-level-key": "(root)",
    "zero-duration": "status/ttl",
    "kafka-stall-timeout-bare-number": "kafka/stall_timeout",
    "bad-profile": "profile",
    "production-plaintext": "kafka",
    "production-sasl-plaintext": "kafka/properties/security.protocol",
    "production-no-hostname-check": "kafka/properties/ssl.endpoint.identification.algorithm",
    "production-no-certificate-check": "kafka/properties/enable.ssl.certificate.verification",
    "production-embedded": "kafka/brokers",
    "production-subscription-plaintext": "subscriptions/0/properties/security.protocol",
}

INVALID = {
    # name: (document, a fragment of the loader's message)
    "unknown-top-level-key": (BASE + "listn: {port: 1}\n", "unknown key 'listn'"),
    "unknown-route-key": (BASE.replace("    mode: forward\n", "    mode: forward\n    topics: x\n"),
                          "unknown key 'topics'"),
    "unknown-drain-key": (BASE + "drain: {delay: 1s, grace: 5s}\n", "unknown key 'grace'"),
    "bad-mode": (BASE.replace("mode: commit", "mode: fire-and-forget"), "unknown mode 'fire-and-forget'"),
    "bare-number-duration": (BASE + "defaults: {timeout: 5}\n", "duration needs a unit"),
    "bad-duration-unit": (BASE + "drain: {timeout: 5sec}\n", "invalid duration '5sec'"),
    "zero-duration": (BASE + "status: {ttl: 0s}\n", "must be greater than 0"),
    "kafka-stall-timeout-bare-number": (BASE.replace('  brokers: "127.0.0.1:9092"\n',
                                                     '  brokers: "127.0.0.1:9092"\n  stall_timeout: 30\n'),
                                        "duration needs a unit"),
    "bad-size": (BASE + "upstream: {max_response_bytes: 1XB}\n", "invalid size '1XB'"),
    "bad-log-level": (BASE + "log: {level: verbose}\n", "must be debug, info, warn or error"),
    "bad-trailing-slash": (BASE + "routing: {trailing_slash: ignore}\n", "must be one of match, strict"),
    "log-requests-not-bool": (BASE + "log: {requests: sometimes}\n", "true or false expected"),
    "limits-zero": (BASE + "limits: {max_inflight_commits: 0}\n", "must be between 1 and"),
    "port-out-of-range": (BASE.replace("port: 8080", "port: 70000"), "must be between 1 and 65535"),
    "address-not-ip": (BASE.replace("address: 127.0.0.1", "address: localhost"), "IP address expected"),
    "forward-with-topic": (BASE.replace("    mode: forward\n", "    mode: forward\n    topic: x\n"),
                           "topic is not used by forward routes"),
    "commit-without-topic": (BASE.replace('    topic: "orders.{region}"\n', ""), "missing required key 'topic'"),
    "commit-bad-success-status": (BASE + "    success_status: 302\n", "commit routes answer 200, 201, 202 or 204"),
    "bad-key": (BASE.replace('"body:/customer/id"', '"body:customer"'), "invalid JSON pointer"),
    "bad-route-name": (BASE.replace("name: get-order", "name: -get"), "invalid route name"),
    "bad-path": (BASE.replace('path: "/orders/{id}"', 'path: "orders/{id}"'), "path must start with '/'"),
    "method-and-methods": (BASE.replace("match: {methods: [GET],", "match: {method: GET, methods: [GET],"),
                           "use either 'method' or 'methods'"),
    "bootstrap-in-properties": (BASE.replace('  brokers: "127.0.0.1:9092"\n',
                                             '  brokers: "127.0.0.1:9092"\n  properties: {bootstrap.servers: x}\n'),
                                "set the brokers with kafka.brokers"),
    "acks-1-with-commit-route": (BASE.replace('  brokers: "127.0.0.1:9092"\n',
                                              '  brokers: "127.0.0.1:9092"\n  properties: {acks: 1}\n'),
                                 "commit routes need acks=all"),
    "missing-kafka": ("routes: []\n", "missing required section 'kafka'"),
    "defaults-mode-event": (BASE + "defaults: {mode: event}\n", "defaults.mode must be forward"),
    "reply-without-replies-topic": (BASE + "  - {name: q, match: {path: /q}, mode: reply, topic: q}\n",
                                    "set replies.topic"),
    "replies-create-unknown-key": (BASE + "replies: {topic: r, create: {partition: 2}}\n", "unknown key 'partition'"),
    "replies-create-zero-replication": (BASE + "replies: {topic: r, create: {replication_factor: 0}}\n",
                                        "must be -1"),
    "canary-bad-percent": (BASE + "  - {name: c, match: {path: /c}, mode: event, topic: c, canary: {mode: forward, percent: 150}}\n",
                           "must be between 0 and 100"),
    "canary-forward-without-topic": (BASE + "  - {name: c, match: {path: /c}, mode: forward, canary: {mode: event, percent: 5}}\n",
                                     "missing required key 'topic'"),
    "idempotency-on-forward": (BASE + "  - {name: c, match: {path: /c}, mode: forward, idempotency: required}\n",
                               "not used by forward routes"),
    "subscription-unknown-key": (BASE + "subscriptions:\n  - {name: s, topics: [a], group: g, topic: b}\n",
                                 "unknown key 'topic'"),
    "subscription-empty-topics": (BASE + "subscriptions:\n  - {name: s, topics: [], group: g}\n", "must not be empty"),
    "subscription-without-group": (BASE + "subscriptions:\n  - {name: s, topics: [a]}\n", "missing required key 'group'"),
    "subscription-bad-ordering": (BASE + "subscriptions:\n  - {name: s, topics: [a], group: g, ordering: global}\n",
                                  "must be one of key, partition, none"),
    "subscription-group-id-property": (
        BASE + "subscriptions:\n  - {name: s, topics: [a], group: g, properties: {group.id: x}}\n", "is set by Handoff"),
    "subscription-fallback-with-fixed-path": (
        BASE + "subscriptions:\n  - {name: s, topics: [a], group: g, target: {path: /x, fallback_path: /y}}\n",
        "fallback_path is only used with path: original"),
    "subscription-templated-topic": (BASE + "subscriptions:\n  - {name: s, topics: ['a.{x}'], group: g}\n",
                                     "topic templates are not allowed"),
    "bad-profile": ("profile: prod\n" + BASE, "must be one of development, production"),
    "production-plaintext": ("profile: production\n" + BASE, "security.protocol is not set, which means PLAINTEXT"),
    "production-sasl-plaintext": (PRODUCTION.replace("SASL_SSL", "SASL_PLAINTEXT"),
                                  "not allowed with profile: production (line 1)"),
    "production-no-hostname-check": (PRODUCTION.replace("ssl.ca.location", "ssl.endpoint.identification.algorithm: none,"
                                                        " ssl.ca.location"), "turns off the broker hostname check"),
    "production-no-certificate-check": (PRODUCTION.replace("ssl.ca.location", "enable.ssl.certificate.verification: "
                                                           "false, ssl.ca.location"), "accepts any broker certificate"),
    "production-embedded": ("profile: production\n" + BASE.replace('"127.0.0.1:9092"', "embedded"),
                            "in-process mock cluster"),
    "production-subscription-plaintext": (
        PRODUCTION + "subscriptions:\n  - {name: s, topics: [a], group: g, properties: {security.protocol: plaintext}}\n",
        "subscriptions[0].properties.security.protocol: not allowed with profile: production"),
}


def _validate_cli(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess:
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("HANDOFF_PORT", "DRAIN_DELAY")}  # defaults apply
    return subprocess.run([handoff_bin(), "validate", "--config", str(f)], capture_output=True, text=True, timeout=30,
                          env=env)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_variants_pass_the_schema_and_handoff_validate(validator, tmp_path, name):
    text = VALID[name]
    assert _errors(validator, yaml.safe_load(text)) == []
    r = _validate_cli(tmp_path, name, text)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_configs_are_rejected_by_the_schema_and_by_handoff_validate_with_exit_78(validator, tmp_path, name):
    text, loader_message = INVALID[name]
    errors = _errors(validator, yaml.safe_load(text))
    assert errors, f"the schema accepted the invalid config {name}:\n{text}"
    assert any(e.startswith(SCHEMA_ERROR_AT[name] + ": ") for e in errors), errors
    r = _validate_cli(tmp_path, name, text)
    assert r.returncode == EXIT_CONFIG, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert loader_message in r.stderr, r.stderr
