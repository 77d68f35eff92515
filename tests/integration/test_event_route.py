"""`event` routes: 202 + correlation, and the Kafka record they produce (README, "Route modes", "The Kafka record")."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time

import pytest
from cloudevents.kafka import KafkaMessage, from_binary

from conftest import (CORRELATION_RE, TRACEPARENT_RE, UUIDV7_RE, assert_error, hdrs, kcat, labels, request_id,
                      unique, uuidv7_ms, wait_until)

RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
BINARY_BODY = b"\x00\xff\x00binary\r\n\x80\x7f{not json}\xfe\x00" + bytes(range(256))
CALLER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HOP_BY_HOP = ("connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection",
              "transfer-encoding")
CREDENTIALS = ("authorization", "cookie", "proxy-authorization")


def post_audit(proxy, body=b"{}", tenant="acme", extra=(), path="/audit", method="POST"):
    headers = [("Content-Type", "application/octet-stream")]
    if tenant is not None:
        headers.append(("X-Tenant", tenant))
    headers.extend(extra)
    return proxy.request(method, path, body, headers)


def parse_ce_time(s: str) -> dt.datetime:
    assert RFC3339_RE.match(s), f"ce_time is not RFC 3339: {s!r}"
    return dt.datetime.fromisoformat(s.replace("z", "Z").replace("t", "T"))


# ---------------------------------------------------------------------------------------------
# 1. event: response, record, CloudEvents SDK, kcat
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_event(proxy, kafka, topics):
    """One binary-bodied event with a query string, read back from Kafka."""
    before = dt.datetime.now(dt.timezone.utc)
    r = post_audit(proxy, BINARY_BODY, "acme",
                   extra=[("X-Not-Listed", "nope"), ("Cookie", "session=secret"),
                          ("Authorization", "Bearer secret"), ("Proxy-Authorization", "Basic c2VjcmV0")],
                   path="/audit?a=1&b=two%20words")
    assert r.status == 202, r
    cid = r.header("X-Correlation-ID")
    assert cid, r
    msg = kafka.find(topics.audit, cid)
    return r, cid, msg, before


def test_an_event_request_is_answered_202_with_correlation_id_location_and_json(binary_event, topics):
    r, cid, _, _ = binary_event
    assert UUIDV7_RE.match(cid), f"generated correlation id is not a UUIDv7: {cid!r}"
    assert r.header("Location") == f"/_handoff/requests/{cid}", r
    j = r.json()
    # No X-Correlation-ID from the caller: the label is the request ID itself.
    assert j["correlation_id"] == cid == j["request_id"], j
    assert j["status_url"] == f"/_handoff/requests/{cid}", j
    assert j["topic"] == topics.audit, j
    assert (r.header("Content-Type") or "").startswith("application/json"), r


def test_the_event_record_has_the_key_and_the_body_byte_for_byte(binary_event, topics):
    _, cid, msg, _ = binary_event
    assert msg.topic() == topics.audit
    assert msg.key() == b"acme"
    assert msg.value() == BINARY_BODY, "record value differs from the request body"


def test_the_event_record_carries_cloudevents_binary_mode_and_request_metadata_headers(binary_event):
    _, cid, msg, before = binary_event
    h = hdrs(msg)
    assert h.get("ce_specversion") == b"1.0", h
    assert h.get("ce_id") == cid.encode(), h
    assert h.get("ce_source") == b"/handoff-test", h  # defaults.ce_source (route has none)
    assert h.get("ce_type"), f"ce_type missing or empty: {h}"
    t = parse_ce_time(h["ce_time"].decode())
    assert before - dt.timedelta(seconds=5) <= t <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5), t
    assert h.get("content-type") == b"application/octet-stream", h
    assert TRACEPARENT_RE.match(h.get("traceparent", b"").decode()), h
    assert h.get("handoff_method") == b"POST", h
    assert h.get("handoff_path") == b"/audit", h
    assert h.get("handoff_query") == b"a=1&b=two%20words", h
    assert h.get("x-tenant") == b"acme", h
    for name in CREDENTIALS + HOP_BY_HOP + ("x-not-listed", "tracestate", "baggage"):
        assert name not in {k.lower() for k in h}, f"{name} must not be in the record: {h}"


def test_the_event_record_parses_with_the_cloudevents_sdk(binary_event):
    _, cid, msg, _ = binary_event
    km = KafkaMessage(headers=hdrs(msg), key=msg.key(), value=msg.value())
    ev = from_binary(km, data_unmarshaller=lambda b: b)
    assert ev["id"] == cid
    assert ev["source"] == "/handoff-test"
    assert ev["specversion"] == "1.0"
    assert ev["type"]
    parse_ce_time(ev["time"])
    assert ev["datacontenttype"] == "application/octet-stream"
    assert ev.data == BINARY_BODY


def test_a_json_event_parses_with_the_cloudevents_sdk_as_json_data(proxy, kafka, topics):
    body = json.dumps({"hello": "world", "n": 1}).encode()
    r = proxy.request("PUT", "/audit", body, [("Content-Type", "application/json"), ("X-Tenant", "t2")])
    assert r.status == 202, r
    cid = r.header("X-Correlation-ID")
    msg = kafka.find(topics.audit, cid)
    ev = from_binary(KafkaMessage(headers=hdrs(msg), key=msg.key(), value=msg.value()))
    assert ev.data == {"hello": "world", "n": 1}
    assert ev["datacontenttype"] == "application/json"
    assert hdrs(msg)["handoff_method"] == b"PUT"
    assert "handoff_query" not in hdrs(msg), "handoff_query must be absent without a query string"


def test_the_event_record_round_trips_through_kcat(binary_event, brokers, topics):
    _, cid, msg, _ = binary_event
    base = [kcat(), "-C", "-b", brokers, "-t", topics.audit, "-p", str(msg.partition()),
            "-o", str(msg.offset()), "-c", "1", "-e", "-q"]
    meta = subprocess.run(base + ["-f", "%k|%S|%h\n"], capture_output=True, timeout=60)
    assert meta.returncode == 0, meta.stderr
    key, size, headers = meta.stdout.decode(errors="replace").rstrip("\n").split("|", 2)
    assert key == "acme"
    assert int(size) == len(BINARY_BODY)
    assert f"ce_id={cid}" in headers, headers
    assert "ce_specversion=1.0" in headers, headers
    assert "x-tenant=acme" in headers, headers
    raw = subprocess.run(base + ["-f", "%s"], capture_output=True, timeout=60)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == BINARY_BODY
    js = subprocess.run(base + ["-J"], capture_output=True, timeout=60)
    assert js.returncode == 0, js.stderr
    rec = json.loads(js.stdout.decode(errors="replace").strip().splitlines()[0])
    assert rec["key"] == "acme", rec
    hl = rec.get("headers") or []
    hmap = dict(zip(hl[0::2], hl[1::2]))
    assert hmap.get("ce_id") == cid, rec
    assert hmap.get("ce_source") == "/handoff-test", rec


# ---------------------------------------------------------------------------------------------
# 4. key sources
# ---------------------------------------------------------------------------------------------
def _event(proxy, kafka, topic, path, body=b"{}", headers=(), ctype="application/json"):
    r = proxy.request("POST", path, body, [("Content-Type", ctype), *headers])
    assert r.status == 202, r
    return r, kafka.find(topic, request_id(r))


def test_a_path_parameter_key_source_keys_the_record_by_that_parameter(proxy, kafka, topics):
    name = unique("cust")
    _, msg = _event(proxy, kafka, topics.keys, f"/keys/path/{name}")
    assert msg.key() == name.encode()


def test_a_header_key_source_keys_the_record_by_that_header_value(proxy, kafka, topics):
    v = unique("hk")
    _, msg = _event(proxy, kafka, topics.keys, "/keys/header", headers=[("X-Key", v)])
    assert msg.key() == v.encode()


@pytest.mark.parametrize("value,expected", [
    ("str-value", b"str-value"),
    (42, b"42"),
    (-7, b"-7"),
    (True, b"true"),
])
def test_a_body_pointer_key_source_uses_strings_raw_and_other_json_values_as_json_text(
        proxy, kafka, topics, value, expected):
    body = json.dumps({"k": value, "other": 1}).encode()
    _, msg = _event(proxy, kafka, topics.keys, "/keys/body", body)
    assert msg.key() == expected
    assert msg.value() == body


def test_a_body_pointer_to_an_object_keys_by_its_json_text(proxy, kafka, topics):
    body = b'{"k":{"a":1,"b":[true,null]}}'
    _, msg = _event(proxy, kafka, topics.keys, "/keys/body", body)
    assert json.loads(msg.key()) == {"a": 1, "b": [True, None]}


def test_a_nested_body_pointer_keys_a_commit_record(proxy, kafka, topics):
    body = b'{"a":{"b":"nested-key"}}'
    r = proxy.request("POST", "/keys/body-commit", body, [("Content-Type", "application/json")])
    assert r.status == 200, r  # success_status defaults to 200
    j = r.json()
    msg = kafka.at(j["topic"], j["partition"], j["offset"])
    assert msg.key() == b"nested-key"


def test_a_correlation_key_source_keys_the_record_by_the_correlation_id(proxy, kafka, topics):
    r, msg = _event(proxy, kafka, topics.keys, "/keys/corr")
    assert msg.key() == r.header("X-Correlation-ID").encode() == hdrs(msg)["ce_id"]
    cid = unique("given")
    r, msg = _event(proxy, kafka, topics.keys, "/keys/corr", headers=[("X-Correlation-ID", cid)])
    assert msg.key() == cid.encode() == hdrs(msg)["handoff_correlation_id"]
    assert hdrs(msg)["ce_id"] == request_id(r).encode() != cid.encode()


def assert_only_sentinel_produced(proxy, kafka, topic, rejected_ids, sentinel_path, sentinel_headers):
    """Nothing was produced for the rejected requests: a sentinel sent afterwards to the same
    single-partition topic is found, and no rejected request's correlation id (a label each
    rejected request was sent with) appears anywhere in the topic up to the high watermark."""
    r = proxy.request("POST", sentinel_path, b'{"k":"sentinel"}',
                      [("Content-Type", "application/json"), *sentinel_headers])
    assert r.status == 202, r
    kafka.find(topic, request_id(r))
    all_msgs = kafka.read(topic)
    ids = {(label or b"").decode() for label in labels(all_msgs)}
    leaked = [i for i in rejected_ids if i in ids]
    assert not leaked, f"rejected requests were produced: {leaked}"


@pytest.mark.parametrize("path,body,headers", [
    ("/keys/header", b'{"k":1}', []),                                  # no X-Key header
    ("/keys/body", b'not json at all', []),                            # body is not JSON
    ("/keys/body", b'{"other":"x"}', []),                              # pointer missing
    ("/keys/body", b'', []),                                           # empty body
    ("/audit", b'{}', []),                                             # no X-Tenant
], ids=["header-absent", "body-not-json", "pointer-missing", "body-empty", "audit-no-tenant"])
def test_a_missing_key_source_is_400_missing_key_and_nothing_is_produced(proxy, kafka, topics, path, body, headers):
    cid = unique("nokey")
    r = proxy.request("POST", path, body, [("Content-Type", "application/json"),
                                           ("X-Correlation-ID", cid), *headers])
    j = assert_error(r, 400, "missing_key")
    assert j["correlation_id"] == cid
    topic = topics.audit if path == "/audit" else topics.keys
    sentinel = ("/audit", [("X-Tenant", "s")]) if path == "/audit" else ("/keys/corr", [])
    assert_only_sentinel_produced(proxy, kafka, topic, [cid], *sentinel)


def test_a_missing_key_on_a_commit_route_is_400_and_nothing_is_produced(proxy, kafka):
    cid = unique("nokey-commit")
    r = proxy.request("POST", "/orders/eu", b'{"customer":{}}',
                      [("Content-Type", "application/json"), ("X-Correlation-ID", cid)])
    assert_error(r, 400, "missing_key")
    # The sentinel is a persisted commit to the same topic; the rejected id must not be there.
    r2 = proxy.request("POST", "/orders/eu", b'{"customer":{"id":"s"}}', [("Content-Type", "application/json")])
    assert r2.status == 201, r2
    msgs = kafka.read("orders.eu")
    assert cid.encode() not in labels(msgs)


# ---------------------------------------------------------------------------------------------
# 5. credentials
# ---------------------------------------------------------------------------------------------
CRED_HEADERS = [("Authorization", "Bearer top-secret"), ("Cookie", "sid=top-secret"),
                ("Proxy-Authorization", "Basic dG9wOnNlY3JldA=="), ("X-Tenant", "acme"),
                ("X-Api-Key", "top-secret")]


def test_credentials_never_reach_the_record_unless_allow_listed(proxy, kafka, topics):
    r = proxy.request("POST", "/creds/default", b"{}", [("Content-Type", "application/json"), *CRED_HEADERS])
    assert r.status == 202, r
    msg = kafka.find(topics.creds, r.header("X-Correlation-ID"))
    h = {k.lower(): v for k, v in hdrs(msg).items()}
    for name in CREDENTIALS + ("x-api-key",):
        assert name not in h, f"{name} leaked into the record: {h}"
    assert not any(b"top-secret" in v or b"dG9wOnNlY3JldA" in v for v in h.values()), h
    assert h.get("x-tenant") == b"acme"


def test_an_allow_listed_authorization_header_is_copied_but_other_credentials_are_not(proxy, kafka, topics):
    r = proxy.request("POST", "/creds/allowed", b"{}", [("Content-Type", "application/json"), *CRED_HEADERS])
    assert r.status == 202, r
    msg = kafka.find(topics.creds, r.header("X-Correlation-ID"))
    h = {k.lower(): v for k, v in hdrs(msg).items()}
    assert h.get("authorization") == b"Bearer top-secret", h
    assert "cookie" not in h and "proxy-authorization" not in h and "x-api-key" not in h, h


# ---------------------------------------------------------------------------------------------
# 6. correlation ids and trace context
# ---------------------------------------------------------------------------------------------
def test_a_valid_caller_correlation_id_is_echoed_and_carried_as_a_label_not_as_the_cloudevents_id(proxy, kafka, topics):
    cid = "Order_42.a:b-" + unique("c")
    r = post_audit(proxy, b"x", extra=[("X-Correlation-ID", cid)])
    assert r.status == 202, r
    assert r.header("X-Correlation-ID") == cid
    j = r.json()
    assert j["correlation_id"] == cid
    rid = j["request_id"]
    assert UUIDV7_RE.match(rid) and rid != cid, j
    assert r.header("Location") == f"/_handoff/requests/{rid}" == j["status_url"]
    [msg] = kafka.with_label(topics.audit, cid)
    assert hdrs(msg)["ce_id"] == rid.encode()
    assert proxy.request("GET", f"/_handoff/requests/{cid}").status == 404, "the label must key nothing"


def test_two_events_that_share_a_correlation_id_are_two_requests_in_every_respect(proxy, kafka, topics):
    cid = unique("shared")
    a = post_audit(proxy, b"first", extra=[("X-Correlation-ID", cid)])
    b = post_audit(proxy, b"second", extra=[("X-Correlation-ID", cid)])
    assert a.status == b.status == 202, (a, b)
    assert request_id(a) != request_id(b)
    msgs = kafka.read(topics.audit, lambda ms: len([m for m in ms if hdrs(m).get("handoff_correlation_id") == cid.encode()]) >= 2)
    mine = [m for m in msgs if hdrs(m).get("handoff_correlation_id") == cid.encode()]
    assert {hdrs(m)["ce_id"] for m in mine} == {request_id(a).encode(), request_id(b).encode()}, \
        "consumers that deduplicate by the CloudEvents id would drop one of two distinct events"
    for r, body in ((a, b"first"), (b, b"second")):
        wait_until(lambda: proxy.request("GET", r.header("Location")).json().get("state") == "persisted", 20,
                   what="each request's own status")
        assert kafka.find(topics.audit, request_id(r)).value() == body


def test_a_correlation_id_of_exactly_128_characters_is_accepted(proxy, kafka, topics):
    cid = (unique("x") + "a" * 128)[:128]
    assert CORRELATION_RE.match(cid) and len(cid) == 128
    r = post_audit(proxy, b"x", extra=[("X-Correlation-ID", cid)])
    assert r.status == 202, r
    assert r.header("X-Correlation-ID") == cid


@pytest.mark.parametrize("bad", ["bad id!", "a" * 129, "semi;colon", "slash/inside", "ü-umlaut".encode().decode("latin-1")],
                         ids=["space-bang", "129-chars", "semicolon", "slash", "non-ascii"])
def test_an_invalid_caller_correlation_id_is_rejected_with_400(proxy, kafka, topics, bad):
    r = post_audit(proxy, b"x", extra=[("X-Correlation-ID", bad)])
    assert_error(r, 400, "invalid_correlation_id", require_correlation_id=False)


def test_generated_correlation_ids_are_unique_time_ordered_uuidv7(proxy):
    ids = []
    for _ in range(5):
        r = post_audit(proxy, b"x")
        assert r.status == 202, r
        ids.append(r.header("X-Correlation-ID"))
    now_ms = int(time.time() * 1000)
    for i in ids:
        assert UUIDV7_RE.match(i), f"not a UUIDv7 (version 7, variant 10xx): {i!r}"
        assert abs(uuidv7_ms(i) - now_ms) < 60_000, f"UUIDv7 timestamp is not now: {i}"
    assert len(set(ids)) == len(ids)
    assert [uuidv7_ms(i) for i in ids] == sorted(uuidv7_ms(i) for i in ids)


def test_a_valid_caller_traceparent_tracestate_and_baggage_are_passed_into_the_record(proxy, kafka, topics):
    r = post_audit(proxy, b"x", extra=[("traceparent", CALLER_TRACEPARENT),
                                       ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                                       ("baggage", "userId=alice,serverNode=DF%2028")])
    assert r.status == 202, r
    h = hdrs(kafka.find(topics.audit, r.header("X-Correlation-ID")))
    assert h.get("traceparent") == CALLER_TRACEPARENT.encode(), h
    assert h.get("tracestate") == b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", h
    assert h.get("baggage") == b"userId=alice,serverNode=DF%2028", h


@pytest.mark.parametrize("given", [None, "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                   "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                   "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                         ids=["absent", "garbage", "zero-trace-id", "zero-parent-id", "version-ff"])
def test_a_new_traceparent_is_created_when_the_callers_is_absent_or_invalid(proxy, kafka, topics, given):
    extra = [("traceparent", given)] if given else []
    r = post_audit(proxy, b"x", extra=extra)
    assert r.status == 202, r
    tp = hdrs(kafka.find(topics.audit, r.header("X-Correlation-ID"))).get("traceparent", b"").decode()
    m = TRACEPARENT_RE.match(tp)
    assert m, f"traceparent {tp!r} is not 00-<32hex>-<16hex>-<2hex>"
    assert tp.startswith("00-") and tp.endswith("-01"), tp
    assert m.group(1) != "0" * 32 and m.group(2) != "0" * 16, tp
    if given:
        assert tp != given


# ---------------------------------------------------------------------------------------------
# 7. body limit
# ---------------------------------------------------------------------------------------------
def test_a_body_one_byte_over_the_route_limit_is_413_and_nothing_is_produced(proxy, kafka, topics):
    cid = unique("big")
    r = post_audit(proxy, b"a" * 1025, extra=[("X-Correlation-ID", cid)])
    j = assert_error(r, 413, "body_too_large")
    assert j["correlation_id"] == cid
    # Exactly at the limit is accepted, and it is the sentinel proving the 413 produced nothing.
    cid_ok = unique("limit")
    r = post_audit(proxy, b"b" * 1024, extra=[("X-Correlation-ID", cid_ok)])
    assert r.status == 202, r
    kafka.with_label(topics.audit, cid_ok)
    assert cid.encode() not in labels(kafka.read(topics.audit)), "the 413 request was produced"


def test_a_body_exactly_at_the_route_limit_is_accepted_byte_for_byte(proxy, kafka, topics):
    body = bytes((i * 7) % 256 for i in range(1024))
    r = post_audit(proxy, body)
    assert r.status == 202, r
    assert kafka.find(topics.audit, r.header("X-Correlation-ID")).value() == body


def test_an_oversized_chunked_body_is_413(proxy):
    from conftest import RawConn
    c = RawConn(proxy.port)
    try:
        chunk = b"a" * 600
        c.send(b"POST /audit HTTP/1.1\r\nHost: x\r\nX-Tenant: acme\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        r = c.read_response()
        assert_error(r, 413, "body_too_large")
    finally:
        c.close()
