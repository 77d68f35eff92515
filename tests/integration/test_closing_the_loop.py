"""Closing the loop for callers and migrators (issue 4): the status endpoint, Idempotency-Key,
`reply`, `shadow` and canary routes — end to end over loopback with two Handoff processes (the
calling side and the receiving side), a real Kafka broker and a real HTTP service.

Waits are conditions with deadlines, never sleeps."""
from __future__ import annotations

import http.client
import json
import threading

import pytest
from confluent_kafka import Producer

from conftest import RawConn, base_config, free_port, hdrs, http_request, request_id, unique, wait_until


class T:
    """Topic names of this module."""

    def __init__(self, p: str):
        self.events = f"{p}.events"
        self.requests = f"{p}.requests"
        self.unserved = f"{p}.unserved"
        self.replies = f"{p}.replies"
        self.commits = f"{p}.commits"
        self.shadow = f"{p}.shadow"
        self.canary = f"{p}.canary"
        self.canary_nokey = f"{p}.canary-nokey"
        self.replies_default = f"{p}.replies-default"


@pytest.fixture(scope="module")
def t(kafka) -> T:
    t = T(unique("loop"))
    for name in vars(t).values():
        kafka.create_topic(name, 3 if name.endswith((".requests", ".replies")) else 1)
    return t


def caller_routes(t: T) -> list[dict]:
    return [
        {"name": "ev", "match": {"methods": ["POST"], "path": "/ev"}, "mode": "event", "topic": t.events,
         "key": "correlation"},
        {"name": "quote", "match": {"methods": ["POST"], "path": "/quotes/{id}"}, "mode": "reply",
         "topic": t.requests, "key": "path:id", "timeout": "8s", "headers": ["Content-Type"]},
        {"name": "unserved", "match": {"methods": ["POST"], "path": "/unserved/{id}"}, "mode": "reply",
         "topic": t.unserved, "key": "path:id", "timeout": "1500ms"},
        {"name": "unserved-long", "match": {"methods": ["POST"], "path": "/unserved-long/{id}"}, "mode": "reply",
         "topic": t.unserved, "key": "path:id", "timeout": "15s"},
        {"name": "idem-event", "match": {"methods": ["POST"], "path": "/idem/event"}, "mode": "event",
         "topic": t.events},
        {"name": "idem-commit", "match": {"methods": ["POST"], "path": "/idem/commit"}, "mode": "commit",
         "topic": t.commits, "idempotency": "required", "success_status": 201},
        {"name": "shadowed", "match": {"path": "/shadow/{id}"}, "mode": "shadow", "topic": t.shadow,
         "key": "path:id"},
        {"name": "plain", "match": {"path": "/plain/{id}"}, "mode": "forward"},
        {"name": "canary", "match": {"methods": ["POST"], "path": "/canary/{id}"}, "mode": "forward",
         "topic": t.canary, "key": "path:id", "canary": {"mode": "event", "percent": 10}},
        {"name": "canary-nokey", "match": {"methods": ["POST"], "path": "/canary-nokey"}, "mode": "forward",
         "topic": t.canary_nokey, "canary": {"mode": "event", "percent": 10}},
    ]


@pytest.fixture(scope="module")
def caller(handoff_process, brokers, upstream, t):
    cfg = base_config(brokers, upstream.port, caller_routes(t), replies={"topic": t.replies},
                      status={"reply_bodies": True})
    return handoff_process(cfg, name="caller")


@pytest.fixture(scope="module")
def caller_default(handoff_process, brokers, upstream, t):
    """A caller with the default status.reply_bodies (false)."""
    cfg = base_config(brokers, upstream.port, caller_routes(t), replies={"topic": t.replies_default})
    return handoff_process(cfg, name="caller-default")


@pytest.fixture(scope="module")
def receiver(handoff_process, brokers, upstream, t):
    """The receiving-side sidecar in front of the same service: consumes the request topic and
    publishes each response to the reply topic the request named."""
    cfg = base_config(brokers, upstream.port, [], subscriptions=[{
        "name": "quotes", "topics": [t.requests], "group": unique("quotes"),
        "reply_headers": ["Location", "X-Quote"], "retry": {"attempts": 2, "backoff_base": "50ms"},
        "reply_topics": [t.replies + "*"],   # this module's callers' reply topics, and no other
    }])
    h = handoff_process(cfg, name="receiver")
    # Readiness does not wait for the group join: the first reply test's route timeout must not.
    wait_until(lambda: any(x.get("msg") == "subscription partitions assigned" for x in h.log_lines_json()), 60, 0.1,
               "the receiver's partitions assigned")
    return h


def status_of(h, rid: str):
    r = http_request(h.port, "GET", f"/_handoff/requests/{rid}")
    return r.json() if r.status == 200 else None


def reply_to(brokers: str, topic: str, rid: str, status: bytes | None, body: bytes, extra=()):
    """Writes a reply record as a receiving side would: matched by the request ID."""
    p = Producer({"bootstrap.servers": brokers})
    headers = [("handoff_request_id", rid.encode())] + ([("handoff_reply_status", status)] if status else [])
    p.produce(topic, key=rid, value=body, headers=headers + list(extra))
    assert p.flush(10) == 0


def send_held(port: int, path: str, label: str) -> tuple[threading.Thread, dict]:
    """Sends a reply-route request labelled `label` in a thread; its answer lands in the dict ("r")."""
    got: dict = {}
    waiter = threading.Thread(target=lambda: got.update(r=http_request(
        port, "POST", path, b"{}", {"X-Correlation-ID": label}, timeout=30)))
    waiter.start()
    return waiter, got


def held_request_id(kafka, topic: str, label: str) -> str:
    """The request ID of a request still held by its caller, from its record (the CloudEvents id of
    the record that carries the caller's label)."""
    [msg] = kafka.with_label(topic, label)
    return hdrs(msg)["ce_id"].decode()


# ---- status --------------------------------------------------------------------------------

def test_an_event_is_accepted_then_persisted_with_the_offset_that_is_in_kafka(handoff_process, brokers, upstream,
                                                                               kafka, t):
    # A producer that holds records for 1.5 s makes the `accepted` state observable.
    cfg = base_config(brokers, upstream.port, caller_routes(t)[:1], kafka={"properties": {"linger.ms": "1500"}})
    h = handoff_process(cfg, name="slow-linger")
    r = http_request(h.port, "POST", "/ev", b"status-me")
    assert r.status == 202, r
    cid = r.json()["request_id"]
    assert r.header("Location") == f"/_handoff/requests/{cid}"
    first = status_of(h, cid)
    assert first["state"] == "accepted", first
    done = wait_until(lambda: (s := status_of(h, cid)) and s["state"] == "persisted" and s, 15, what="persisted")
    msg = kafka.find(t.events, cid)
    assert (done["partition"], done["offset"]) == (msg.partition(), msg.offset())
    assert msg.value() == b"status-me"
    assert http_request(h.port, "GET", "/_handoff/requests/no-such-id").status == 404


# ---- reply ---------------------------------------------------------------------------------

def test_a_reply_route_answers_with_the_services_own_response_through_kafka(caller, receiver, upstream, t):
    upstream.script("/quotes/42", status=201, headers=[("Content-Type", "application/json"),
                                                       ("Location", "/quotes/42/q-1"), ("X-Quote", "v7"),
                                                       ("X-Not-Copied", "no")],
                    body=b'{"quote":"q-1","price":42}')
    r = http_request(caller.port, "POST", "/quotes/42", b'{"items":3}', {"Content-Type": "application/json"})
    assert r.status == 201, r
    assert r.body == b'{"quote":"q-1","price":42}'
    assert r.header("Content-Type") == "application/json"
    assert r.header("Location") == "/quotes/42/q-1"
    assert r.header("X-Quote") == "v7"
    assert r.header("X-Not-Copied") is None
    cid = r.header("X-Correlation-ID")  # no label from the caller: the request ID
    got = upstream.with_path("/quotes/42")
    assert len(got) == 1 and got[0].body == b'{"items":3}' and got[0].method == "POST"
    s = status_of(caller, cid)
    assert s["state"] == "replied", s
    assert s["reply"]["status"] == 201
    assert s["reply"]["body"] == '{"quote":"q-1","price":42}'
    assert s["offset"] >= 0


def test_no_reply_within_the_route_timeout_is_504_outcome_unknown_and_a_late_reply_updates_the_status(caller, brokers, t):
    # Nothing consumes this topic: the receiving side is down.
    r = http_request(caller.port, "POST", "/unserved/7", b"{}")
    assert r.status == 504, r
    body = r.json()
    assert body["outcome"] == "unknown" and body["error"] == "outcome_unknown"
    cid = body["request_id"]
    assert body["status_url"] == f"/_handoff/requests/{cid}" == r.header("Location")
    assert 1.4 <= r.elapsed < 5, r.elapsed
    wait_until(lambda: status_of(caller, cid)["state"] == "persisted", 10, what="the request persisted")
    # The service comes back and replies late: only the status store learns it.
    reply_to(brokers, t.replies, cid, b"200", b"late answer", [("content-type", b"text/plain")])
    s = wait_until(lambda: (x := status_of(caller, cid)) and x["state"] == "replied" and x, 15, what="late reply")
    assert s["reply"] == {"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "late answer"}


@pytest.mark.parametrize("code", [404, 422])
def test_a_reply_route_answers_with_the_services_final_non_2xx_answer(caller, receiver, upstream, code):
    upstream.script(f"/quotes/{code}", status=code, headers=[("Content-Type", "application/json")],
                    body=b'{"error":"no such quote"}')
    r = http_request(caller.port, "POST", f"/quotes/{code}", b'{"items":1}', {"Content-Type": "application/json"})
    assert r.status == code, r
    assert r.body == b'{"error":"no such quote"}' and r.header("Content-Type") == "application/json", r
    assert len(upstream.with_path(f"/quotes/{code}")) == 1, "a final 4xx is not retried"


@pytest.mark.parametrize("status", [b"abc", b"99", b"700", None])
def test_a_reply_record_that_is_no_usable_response_answers_the_waiting_request_502_bad_reply_at_once(caller, brokers,
                                                                                                    kafka, t, status):
    cid = unique("bad-reply")
    waiter, got = send_held(caller.port, "/unserved-long/1", cid)
    try:
        # The request is in Kafka (so it waits for its reply) before the bad reply is written.
        reply_to(brokers, t.replies, held_request_id(kafka, t.unserved, cid), status, b"not an answer")
    finally:
        waiter.join(30)
    r = got["r"]
    assert r.status == 502 and r.json()["error"] == "bad_reply", r
    assert r.elapsed < 10, f"answered at the route timeout (15 s), not when the bad reply came: {r.elapsed:.1f}s"
    assert "handoff_reply_status" in r.json()["message"], r


def test_by_default_the_status_endpoint_shows_a_replys_status_code_but_not_its_headers_or_body(caller_default,
                                                                                                 brokers, t):
    r = http_request(caller_default.port, "POST", "/unserved/8", b"{}")
    assert r.status == 504, r
    cid = request_id(r)
    reply_to(brokers, t.replies_default, cid, b"200", b"the service's private answer",
             [("content-type", b"text/plain"), ("x-secret", b"s")])
    s = wait_until(lambda: (x := status_of(caller_default, cid)) and x["state"] == "replied" and x, 15,
                   what="the reply recorded")
    assert s["reply"] == {"status": 200}, s


def test_two_reply_requests_that_share_a_correlation_id_each_get_their_own_reply(caller, receiver, upstream):
    """Keyed by the caller's X-Correlation-ID, the second waiter replaced the first: one caller got
    the other's answer (a leak between callers) or a 504."""
    for name in ("a", "b"):
        upstream.script(f"/quotes/shared-{name}", status=200, headers=[("Content-Type", "text/plain")],
                        body=f"answer for {name}".encode(), delay=1.0)
    label = unique("same")
    got: dict = {}
    threads = [threading.Thread(target=lambda n=name: got.update({n: http_request(
        caller.port, "POST", f"/quotes/shared-{n}", b"q", {"X-Correlation-ID": label}, timeout=30)}))
        for name in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for name in ("a", "b"):
        r = got[name]
        assert r.status == 200 and r.body == f"answer for {name}".encode(), (name, r)
        assert r.header("X-Correlation-ID") == label
        # The service saw the label, not the request ID, as the correlation ID.
        [seen] = upstream.with_path(f"/quotes/shared-{name}")
        assert seen.header("X-Correlation-ID") == label, seen.headers


def test_a_reply_that_names_a_callers_correlation_id_but_not_its_request_id_completes_nothing(caller, brokers, kafka,
                                                                                               t):
    """Anyone who can write to the reply topic and knows (or chose) a caller's label must not be able
    to answer that caller: replies are matched by the request ID, which only the request record carries."""
    label = unique("victim")
    waiter, got = send_held(caller.port, "/unserved-long/2", label)
    try:
        rid = held_request_id(kafka, t.unserved, label)
        p = Producer({"bootstrap.servers": brokers})
        p.produce(t.replies, key=label, value=b"forged",
                  headers=[("handoff_correlation_id", label.encode()), ("handoff_reply_status", b"200")])
        assert p.flush(10) == 0
        # Then the real reply, by request ID: the caller must get this one, never the forged one.
        reply_to(brokers, t.replies, rid, b"201", b"genuine")
    finally:
        waiter.join(30)
    r = got["r"]
    assert r.status == 201 and r.body == b"genuine", r


# ---- Idempotency-Key -----------------------------------------------------------------------

def count_records(kafka, topic: str, cid: str) -> int:
    return sum(1 for m in kafka.read(topic) if hdrs(m).get("ce_id") == cid.encode())


def test_a_repeat_after_completion_returns_the_stored_response_and_produces_nothing(caller, kafka, t):
    key = unique("k")
    first = http_request(caller.port, "POST", "/idem/event", b"once", {"Idempotency-Key": key})
    assert first.status == 202, first
    again = http_request(caller.port, "POST", "/idem/event", b"once", {"Idempotency-Key": key})
    assert again.status == 202 and again.body == first.body
    assert again.header("Idempotent-Replayed") == "true"
    assert again.header("X-Correlation-ID") == first.header("X-Correlation-ID")
    cid = first.json()["request_id"]
    kafka.find(t.events, cid)
    # Another request after the repeat is produced, so the topic is read past the repeat.
    marker = http_request(caller.port, "POST", "/idem/event", b"marker", {"Idempotency-Key": unique("m")})
    kafka.find(t.events, marker.json()["request_id"])
    assert count_records(kafka, t.events, cid) == 1


def test_commit_routes_can_require_the_key_and_replay_the_persisted_answer(caller, kafka, t):
    missing = http_request(caller.port, "POST", "/idem/commit", b"x")
    assert missing.status == 400 and missing.json()["error"] == "idempotency_key_missing", missing
    bad = http_request(caller.port, "POST", "/idem/commit", b"x", {"Idempotency-Key": "has space"})
    assert bad.status == 400 and bad.json()["error"] == "idempotency_key_invalid", bad
    key = unique("c")
    first = http_request(caller.port, "POST", "/idem/commit", b"pay 10", {"Idempotency-Key": f'"{key}"'})
    assert first.status == 201, first
    again = http_request(caller.port, "POST", "/idem/commit", b"pay 10", {"Idempotency-Key": f'"{key}"'})
    assert again.status == 201 and again.json() == first.json()
    assert again.header("Idempotent-Replayed") == "true"
    other = http_request(caller.port, "POST", "/idem/commit", b"pay 99", {"Idempotency-Key": f'"{key}"'})
    assert other.status == 422 and other.json()["error"] == "idempotency_key_reused", other
    cm = first.json()
    msg = kafka.at(t.commits, cm["partition"], cm["offset"])
    assert hdrs(msg)["ce_id"] == cm["request_id"].encode()
    assert count_records(kafka, t.commits, cm["request_id"]) == 1


def test_a_repeat_while_the_first_is_in_flight_gets_409_then_the_reply(caller, receiver, upstream, t):
    upstream.script("/quotes/slow", status=200, headers=[("Content-Type", "text/plain")], body=b"slow quote",
                    delay=1.5)
    key = unique("s")
    results = {}

    def first():
        results["first"] = http_request(caller.port, "POST", "/quotes/slow", b"q", {"Idempotency-Key": key})

    th = threading.Thread(target=first)
    th.start()
    try:
        wait_until(lambda: upstream.with_path("/quotes/slow"), 15, what="the service got the first request")
        during = http_request(caller.port, "POST", "/quotes/slow", b"q", {"Idempotency-Key": key})
        assert during.status == 409, during
        assert during.json()["error"] == "idempotency_in_flight"
        assert during.header("Retry-After")
    finally:
        th.join(20)
    assert results["first"].status == 200 and results["first"].body == b"slow quote"
    after = http_request(caller.port, "POST", "/quotes/slow", b"q", {"Idempotency-Key": key})
    assert after.status == 200 and after.body == b"slow quote"
    assert after.header("Idempotent-Replayed") == "true"
    assert len(upstream.with_path("/quotes/slow")) == 1


# ---- shadow --------------------------------------------------------------------------------

def raw_exchange(port: int, wire: bytes) -> bytes:
    c = RawConn(port, timeout=10)
    try:
        c.send(wire)
        r = c.read_response()
    finally:
        c.close()
    head = [f"{r.status} {r.reason}"] + [f"{k}: {v}" for k, v in r.headers if k.lower() != "date"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + r.body


def test_shadow_responses_are_byte_identical_to_forward_and_every_request_is_published_once(caller, upstream, kafka, t):
    canned = dict(status=207, headers=[("Content-Type", "application/x-thing"), ("ETag", '"e1"')],
                  body=b"\x00\x01 binary \xff body")
    ids = []
    for i in range(12):
        upstream.script(f"/shadow/{i}", **canned)
        upstream.script(f"/plain/{i}", **canned)
        cid = unique("sh")
        ids.append(cid)
        body = f'{{"n":{i}}}'.encode()
        wire = lambda path: (f"PUT {path}?q={i} HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: {cid}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        shadowed = raw_exchange(caller.port, wire(f"/shadow/{i}"))
        plain = raw_exchange(caller.port, wire(f"/plain/{i}"))
        assert shadowed == plain
        assert shadowed.startswith(b"207 ")
    for i in range(12):
        assert upstream.with_path(f"/shadow/{i}")[0].body == f'{{"n":{i}}}'.encode()
    msgs = kafka.read(t.shadow, until=lambda ms: len(ms) >= 12)
    by_id = {}
    for m in msgs:
        by_id.setdefault(hdrs(m)["handoff_correlation_id"].decode(), []).append(m)
    for i, cid in enumerate(ids):
        assert len(by_id.get(cid, [])) == 1, cid
        m = by_id[cid][0]
        assert m.value() == f'{{"n":{i}}}'.encode()
        assert m.key() == str(i).encode()
        assert hdrs(m)["handoff_method"] == b"PUT"


def test_a_broker_outage_changes_nothing_for_shadow_callers(handoff_process, upstream, t):
    dead = f"127.0.0.1:{free_port()}"
    cfg = base_config(dead, upstream.port, caller_routes(t)[5:7],
                      kafka={"brokers": dead, "properties": {"message.timeout.ms": "1000"}})
    h = handoff_process(cfg, wait="live", name="shadow-no-broker")
    upstream.script("/shadow/outage", status=200, headers=[("Content-Type", "text/plain")], body=b"served")
    for _ in range(5):
        r = http_request(h.port, "POST", "/shadow/outage", b"x")
        assert r.status == 200 and r.body == b"served"

    def failures():
        text = http_request(h.admin_port, "GET", "/metrics").body.decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("handoff_shadow_failures_total{"))
    wait_until(lambda: failures() >= 5, 30, what="shadow failures counted")


# ---- canary --------------------------------------------------------------------------------

def run_many(port: int, paths: list[str]) -> list[int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for p in paths:
            conn.request("POST", p, body=b"{}", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            out.append(r.status)
    finally:
        conn.close()
    return out


@pytest.mark.timeout_s(400)
def test_canary_splits_10000_requests_within_1_percent_and_a_key_always_takes_the_same_path(caller, upstream):
    upstream.script("/canary-nokey", status=200, body=b"")
    statuses = run_many(caller.port, ["/canary-nokey"] * 2_000)
    assert set(statuses) <= {200, 202}
    assert statuses.count(202) == 200  # no key: an exact share
    assert all(statuses[i:i + 10].count(202) == 1 for i in range(0, 2_000, 10))  # evenly spread

    paths = [f"/canary/c{i}" for i in range(10_000)]
    for p in paths:
        upstream.script(p, status=200, body=b"")
    statuses = run_many(caller.port, paths)
    evented = statuses.count(202)
    assert 900 <= evented <= 1100, evented
    assert set(statuses) <= {200, 202}
    again = run_many(caller.port, paths[:1000])
    assert again == statuses[:1000]
