"""Kafka over TLS against a real broker (tests/CATALOGUE.md, X-3) and secrets hygiene (X-5).

One Kafka broker (tests/kafka/kafka.sh with an extra-properties file, see kafka_tls.py) serves an SSL
listener per certificate made at test time with openssl — `good` (CA-signed, 127.0.0.1, valid now),
`self_signed`, `mismatch` (CA-signed for wrong.example.com), `expired` (CA-signed, valid in January
2020 only) — and a SASL_SSL listener (PLAIN). Handoff reaches each SSL listener through a recording
TCP relay (relay.Relay, record=True), so the test sees every byte it sends.

X-3: with security.protocol=ssl and ssl.ca.location=<the CA>, the good certificate is the positive
control (ready, a commit answers 201 naming the record that is in Kafka); for the three bad ones
Handoff never gets a connection: /readyz stays 503, a commit answers 503 (never 2xx), librdkafka's
verification failure is logged, and nothing it sent was anything but TLS records (no fallback to
plaintext: the request body never crossed the wire in clear). librdkafka >= 2.0 verifies the broker
host name by default (ssl.endpoint.identification.algorithm=https): the mismatch case sets nothing and
is refused; its control turns the check off (allowed only in the development profile, see X-4) and
connects, which shows the host name is what was refused. The self-signed control turns certificate
verification off the same way. The expired certificate differs from the good one only in its dates.

X-5: debug logging everywhere (log.level debug, librdkafka debug=all), a SASL authentication failure,
and credentials in requests: no password, key password, OAuth bearer config or Authorization /
Cookie value appears in the log, /metrics, /config or any response.
"""
from __future__ import annotations

import time

import pytest

from conftest import Kafka, base_config, http_request, unique, wait_until
from kafka_tls import SASL_USER, TlsKafka, tls_records_only
from relay import Relay

BAD_CERTS = ("self_signed", "mismatch", "expired")


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory):
    k = TlsKafka(tmp_path_factory.mktemp("tls-kafka")).start()
    yield k
    k.stop()


@pytest.fixture(scope="module")
def topic(tls_kafka):
    return Kafka(tls_kafka.plaintext).create_topic(unique("tls"), 1)


def tls_config(upstream_port: int, brokers: str, ca: str, topic: str, profile: str = "production", **props) -> dict:
    routes = [{"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": topic,
               "success_status": 201, "timeout": "10s"}]
    cfg = base_config(brokers, upstream_port, routes,
                      kafka={"brokers": brokers,
                             "properties": {"security.protocol": "ssl", "ssl.ca.location": ca, "linger.ms": "1",
                                            "message.timeout.ms": "3000", **props}})
    cfg["profile"] = profile
    return cfg


def librdkafka_failures(h) -> list[str]:
    """librdkafka's log lines and Handoff's `kafka client error` lines about a failed TLS handshake."""
    texts = [" ".join(str(j.get(k, "")) for k in ("detail", "error", "reason")) for j in h.log_lines_json()
             if j.get("msg") in ("librdkafka", "kafka client error")]
    return [t for t in texts if "SSL handshake failed" in t]


def commit(h, marker: str):
    return h.request("POST", "/c", ('{"marker": "%s"}' % marker).encode(),
                     [("Content-Type", "application/json"), ("X-Correlation-ID", marker)], timeout=20)


def assert_only_tls(relay: Relay, marker: str):
    streams = relay.snapshot()
    assert streams, "Handoff never connected to the listener"
    for i, s in enumerate(streams):
        problem = tls_records_only(s)
        assert problem is None, f"connection {i}: {problem}"
        assert marker.encode() not in s, f"connection {i} carried the request body in clear"


@pytest.mark.timeout_s(60)
def test_x3_a_ca_signed_certificate_for_the_broker_address_connects_and_commits(tls_kafka, topic, upstream,
                                                                               handoff_process):
    relay = Relay(tls_kafka.ports["good"], record=True)
    try:
        h = handoff_process(tls_config(upstream.port, f"127.0.0.1:{relay.port}", str(tls_kafka.certs["ca"]), topic),
                            name="tls-good")
        marker = unique("tls-good")
        r = commit(h, marker)
        assert r.status == 201, r
        j = r.json()
        m = Kafka(tls_kafka.plaintext).at(topic, j["partition"], j["offset"])
        assert dict(m.headers())["ce_id"] == j["request_id"].encode() and marker.encode() in m.value()
        assert_only_tls(relay, marker)
        assert h.admin_get("/config").json()["profile"] == "production"
    finally:
        relay.close()


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("cert", BAD_CERTS)
def test_x3_a_bad_broker_certificate_means_no_connection_not_ready_and_503_with_nothing_sent_in_clear(
        tls_kafka, topic, upstream, handoff_process, cert):
    relay = Relay(tls_kafka.ports[cert], record=True)
    try:
        h = handoff_process(tls_config(upstream.port, f"127.0.0.1:{relay.port}", str(tls_kafka.certs["ca"]), topic),
                            wait="live", name=f"tls-{cert}")
        # librdkafka tries, fails verification, and says why (at least twice: it keeps retrying TLS).
        wait_until(lambda: len(librdkafka_failures(h)) >= 2, 20, 0.1, "two failed TLS handshakes logged")
        assert any("certificate verify failed" in f for f in librdkafka_failures(h)), librdkafka_failures(h)
        ready = h.admin_get("/readyz")
        assert ready.status == 503 and "kafka" in ready.json()["reason"], ready
        marker = unique(f"tls-{cert}")
        t0 = time.monotonic()
        r = commit(h, marker)
        assert r.status == 503, f"a commit over an unverifiable TLS connection: {r!r}"
        assert r.json()["error"] in ("delivery_failed", "producer_unavailable") and r.header("Retry-After"), r
        assert time.monotonic() - t0 < 10, "answered after the route timeout"
        assert h.admin_get("/readyz").status == 503
        assert_only_tls(relay, marker)
        assert len(relay.snapshot()) >= 2, "one connection only: the client did not retry (over TLS)"
    finally:
        relay.close()
    assert marker.encode() not in b"".join(m.value() or b"" for m in Kafka(tls_kafka.plaintext).read(topic, None))


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("cert,turned_off", [
    ("mismatch", {"ssl.endpoint.identification.algorithm": "none"}),
    ("self_signed", {"enable.ssl.certificate.verification": "false"}),
])
def test_x3_control_the_same_listener_connects_once_its_check_is_turned_off(tls_kafka, topic, upstream,
                                                                           handoff_process, cert, turned_off):
    # The production profile refuses these settings; the development profile accepts them.
    cfg = tls_config(upstream.port, tls_kafka.bootstrap(cert), str(tls_kafka.certs["ca"]), topic,
                     profile="development", **turned_off)
    h = handoff_process(cfg, name=f"tls-{cert}-control")
    assert commit(h, unique(f"tls-{cert}-control")).status == 201


# --------------------------------------------------------------------------------------------
# secrets hygiene
# --------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_x5_debug_logs_an_auth_failure_config_metrics_and_errors_never_show_a_secret(tls_kafka, topic, upstream,
                                                                                   handoff_process):
    secrets = {
        "sasl.password": unique("WRONG-sasl-password"),
        "ssl.key.password": unique("key-password"),
        # (sasl.oauthbearer.client.secret needs librdkafka's OIDC support, built without libcurl here)
        "sasl.oauthbearer.config": "principal=handoff " + unique("oauth-secret"),
    }
    request_secrets = {"Authorization": "Bearer " + unique("bearer-token"), "Cookie": "sid=" + unique("cookie"),
                       "Proxy-Authorization": "Basic " + unique("proxy-cred"), "X-Api-Key": unique("api-key")}
    routes = [{"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": topic,
               "timeout": "5s"},
              {"name": "e", "match": {"methods": ["POST"], "path": "/e"}, "mode": "event", "topic": topic},
              {"name": "f", "match": {"methods": ["GET"], "path": "/f"}, "mode": "forward"}]
    cfg = base_config(tls_kafka.bootstrap("sasl"), upstream.port, routes, log={"level": "debug", "requests": True},
                      kafka={"brokers": tls_kafka.bootstrap("sasl"),
                             "properties": {"security.protocol": "sasl_ssl", "sasl.mechanism": "PLAIN",
                                            "sasl.username": SASL_USER, "ssl.ca.location": str(tls_kafka.certs["ca"]),
                                            "debug": "all", "linger.ms": "1", "message.timeout.ms": "2000",
                                            **secrets}})
    h = handoff_process(cfg, wait="live", name="x5-secrets")
    wait_until(lambda: "Authentication failed" in h.log_text(), 20, 0.1, "the SASL authentication failure logged")
    assert h.admin_get("/readyz").status == 503
    answers = [
        h.request("POST", "/c", b"{}", list(request_secrets.items())),
        h.request("POST", "/e", b"{}", list(request_secrets.items())),
        h.request("GET", "/f", None, list(request_secrets.items())),
        h.request("POST", "/e", b"{}", list(request_secrets.items()) + [("X-Correlation-ID", "bad id")]),
        http_request(h.admin_port, "GET", "/config"),
        http_request(h.admin_port, "GET", "/metrics"),
    ]
    assert answers[0].status in (503, 504) and answers[2].status == 200 and answers[3].status == 400, answers[:4]
    assert h.admin_get("/config").json()["kafka"]["properties"]["sasl.password"] == "<redacted>"
    assert any(j.get("msg") == "librdkafka" for j in h.log_lines_json()), "debug logging did not run"
    # The forwarded request reached the service with its credentials (that is the point of forward) ...
    assert upstream.with_header("Authorization", request_secrets["Authorization"])
    # ... but nothing Handoff wrote itself holds any of them.
    written = [("log", h.log_text().encode())] + [
        (f"response {i}", r.body + repr(r.headers).encode()) for i, r in enumerate(answers) if i != 2]
    for what, text in written:
        for name, value in list(secrets.items()) + list(request_secrets.items()):
            token = value.split(" ")[-1].split("=")[-1]
            assert token.encode() not in text, f"{name} appears in the {what}"
