"""The receiving half against a real Kafka broker and a real HTTP service on loopback (issue 3).

Each test produces records with confluent-kafka (the headers the calling side writes: ce_*,
handoff_method, handoff_path), runs `handoff` with a `subscriptions:` section pointed at a scriptable
Python HTTP service, and checks what the service received, what landed on the dead-letter and reply
topics, and what the consumer group committed. Waits are conditions with deadlines, never sleeps.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Handoff, base_config, free_port, hdrs, to_yaml, unique, wait_until


# --------------------------------------------------------------------------------------------
# A scriptable receiving service
# --------------------------------------------------------------------------------------------
class Delivery:
    def __init__(self, method, target, headers, body, at):
        self.method = method
        self.target = target
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.at = at

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def ce_id(self):
        return self.header("ce-id")


class Receiver:
    """decide(delivery, nth) -> (status, headers, body) or "close" / "reset" / ("sleep", s, status)."""

    def __init__(self, port: int = 0):
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.decide = lambda d, nth: (200, [], b"")
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                d = Delivery(self.command, self.path, list(self.headers.items()), body, time.monotonic())
                with rec.lock:
                    rec.deliveries.append(d)
                    rec.counts[d.ce_id] += 1
                    nth = rec.counts[d.ce_id]
                out = rec.decide(d, nth)
                if out == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if out == "reset":  # a partial response, then the connection drops
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(out, tuple) and out[0] == "sleep":
                    time.sleep(out[1])
                    out = (out[2], [], b"")
                status, headers, body = out
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog (5) drops SYNs under concurrent connects

        self.server = Server(("127.0.0.1", port), H)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def by_id(self, ce_id) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.ce_id == ce_id]

    def ids(self) -> set:
        with self.lock:
            return {d.ce_id for d in self.deliveries}

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def produce(brokers, topic, records):
    """records: iterable of (key, value, ce_id, extra_headers, path)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    for key, value, ce_id, extra, path in records:
        headers = [("ce_specversion", b"1.0"), ("ce_id", ce_id.encode()), ("ce_source", b"/it"),
                   ("ce_type", b"com.example.it"), ("content-type", b"application/json"),
                   ("handoff_method", b"POST"), ("handoff_path", path.encode())] + list(extra)
        while True:
            try:
                p.produce(topic, value=value, key=key, headers=headers,
                          on_delivery=lambda err, msg: err and errors.append(err))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors


def sub_config(brokers, service_port, subscription: dict, **kw):
    cfg = base_config(brokers, service_port, [], **kw)
    cfg["upstream"]["timeout"] = "5s"
    cfg["subscriptions"] = [subscription]
    return cfg


def committed_equals_high(brokers, group, topic, partitions) -> bool:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        com = c.committed(tps, timeout=10)
        for tp in com:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if hi > 0 and tp.offset != hi:
                return False
        return True
    finally:
        c.close()


def committed(brokers, group, topic, partition=0) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        c.close()


def log_lines(h, msg):
    return [j for j in h.log_lines_json() if j.get("msg") == msg]


def wait_assigned(h, timeout=30):
    wait_until(lambda: log_lines(h, "subscription partitions assigned"), timeout, 0.1, "partition assignment")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(150)
def test_ten_thousand_records_delivered_at_least_once_in_key_order_with_lag_zero(brokers, kafka, receiver,
                                                                                  handoff_process):
    topic = kafka.create_topic(unique("sub-bulk"), 4)
    group = unique("g")
    n, keys = 10_000, 50
    records = [(f"k{i % keys}".encode(), json.dumps({"k": i % keys, "seq": i // keys}).encode(), f"id-{i}", [], "/in")
               for i in range(n)]
    produce(brokers, topic, records)
    h = handoff_process(sub_config(brokers, receiver.port, {
        "name": "bulk", "topics": [topic], "group": group, "concurrency": 32,
        "properties": {"auto.commit.interval.ms": "300"}}))
    wait_until(lambda: len(receiver.ids()) >= n, 120, 0.2, "all 10,000 records delivered")
    assert receiver.ids() == {f"id-{i}" for i in range(n)}
    last = {}
    for d in receiver.snapshot():
        assert d.target == "/in" and d.method == "POST"
        body = json.loads(d.body)
        assert body["seq"] >= last.get(body["k"], -1), f"key {body['k']} out of order"
        last[body["k"]] = body["seq"]
    wait_until(lambda: committed_equals_high(brokers, group, topic, range(4)), 30, 0.3, "lag 0 (committed == high)")


@pytest.mark.timeout_s(90)
def test_kill_9_after_the_services_2xx_and_before_the_commit_redelivers_after_restart(brokers, kafka, receiver,
                                                                                      handoff_process, tmp_path):
    topic = kafka.create_topic(unique("sub-kill"), 1)
    group = unique("g")
    sub = {"name": "kill", "topics": [topic], "group": group,
           # No periodic commit before the kill; a short session so the dead member leaves soon.
           "properties": {"auto.commit.interval.ms": "600000", "session.timeout.ms": "6000"}}
    # Started outside the fixture: it is killed, so the fixture's clean-exit check does not apply.
    cfg1 = sub_config(brokers, receiver.port, sub)
    (tmp_path / "kill.yaml").write_text(to_yaml(cfg1) + "\n")
    h1 = Handoff("kill-1", cfg1, tmp_path / "kill.yaml", tmp_path / "kill.log", None)
    h1.wait_ready()
    acked = threading.Event()

    def decide(d, nth):
        acked.set()
        return (200, [], b"")
    receiver.decide = decide
    produce(brokers, topic, [(b"k", b"payload", "kill-1", [], "/in")])
    assert acked.wait(30), "first delivery"
    h1.proc.send_signal(signal.SIGKILL)
    h1.proc.wait(10)
    assert committed(brokers, group, topic) < 0, "nothing may be committed before the kill"
    h2 = handoff_process(sub_config(brokers, receiver.port, sub))
    wait_until(lambda: len(receiver.by_id("kill-1")) >= 2, 40, 0.1, "redelivery after restart")
    assert all(d.body == b"payload" for d in receiver.by_id("kill-1"))
    assert h2.stop() == 0
    assert committed(brokers, group, topic) == 1


@pytest.mark.timeout_s(120)
def test_status_matrix_retries_or_dead_letters_per_the_table(brokers, kafka, receiver, handoff_process):
    topic = kafka.create_topic(unique("sub-matrix"), 1)
    dlq = kafka.create_topic(topic + ".dlq", 1)
    group = unique("g")
    plan = {  # path -> (how the service answers, expected attempts, expected dlq status)
        "/s/400": (lambda: (400, [], b"bad"), 1, b"400"),
        "/s/404": (lambda: (404, [], b""), 1, b"404"),
        "/s/409": (lambda: (409, [], b""), 1, b"409"),
        "/s/302": (lambda: (302, [("Location", "http://evil.example/")], b""), 1, b"302"),
        "/s/429": (lambda: (429, [("Retry-After", "1")], b""), 3, b"429"),
        "/s/500": (lambda: (500, [], b""), 3, b"500"),
        "/s/503": (lambda: (503, [], b""), 3, b"503"),
        "/s/timeout": (lambda: ("sleep", 2.5, 200), 3, b""),
        "/s/reset": (lambda: "reset", 3, b""),
    }
    receiver.decide = lambda d, nth: plan[d.target][0]()
    h = handoff_process(sub_config(brokers, receiver.port, {
        "name": "matrix", "topics": [topic], "group": group, "dead_letter_topic": dlq, "timeout": "1s",
        "retry": {"attempts": 3, "backoff_base": "50ms", "backoff_cap": "2s", "jitter": "none"},
        "properties": {"auto.commit.interval.ms": "300"}}))
    produce(brokers, topic, [(p.encode(), b"body-" + p.encode(), "m" + p.replace("/", "-"), [("x-orig", b"1")], p)
                             for p in plan])
    msgs = kafka.read(dlq, lambda ms: len(ms) >= len(plan), timeout=60)
    by_path = {hdrs(m)["handoff_path"].decode(): m for m in msgs}
    assert set(by_path) == set(plan)
    for path, (_, attempts, status) in plan.items():
        m = by_path[path]
        h_ = hdrs(m)
        assert m.key() == path.encode() and m.value() == b"body-" + path.encode()
        assert h_["x-orig"] == b"1" and h_["ce_id"] == ("m" + path.replace("/", "-")).encode()
        assert h_["handoff_dlq_topic"] == topic.encode()
        assert h_["handoff_dlq_partition"] == b"0"
        assert int(h_["handoff_dlq_offset"]) in range(len(plan))
        assert h_["handoff_dlq_attempts"] == str(attempts).encode(), path
        assert h_["handoff_dlq_status"] == status, path
        assert h_["handoff_dlq_error"], path
        assert len(receiver.by_id("m" + path.replace("/", "-"))) == attempts, (path, h_)
    assert b"timeout" in hdrs(by_path["/s/timeout"])["handoff_dlq_error"]
    # Retry-After: 1 is honoured between the 429 attempts.
    t = [d.at for d in receiver.by_id("m-s-429")]
    assert all(b - a >= 0.9 for a, b in zip(t, t[1:])), t
    wait_until(lambda: committed(brokers, group, topic) == len(plan), 20, 0.2, "offsets committed after DLQ writes")


@pytest.mark.timeout_s(90)
def test_refused_everywhere_pauses_instead_of_dead_lettering_and_recovers(brokers, kafka, handoff_process):
    topic = kafka.create_topic(unique("sub-down"), 1)
    dlq = kafka.create_topic(topic + ".dlq", 1)
    group = unique("g")
    port = free_port()  # nothing listens here yet
    h = handoff_process(sub_config(brokers, port, {
        "name": "down", "topics": [topic], "group": group, "dead_letter_topic": dlq,
        "retry": {"attempts": 2, "backoff_base": "20ms", "backoff_cap": "100ms"},
        "properties": {"auto.commit.interval.ms": "300"}}))
    produce(brokers, topic, [(f"k{i}".encode(), b"v", f"down-{i}", [], "/in") for i in range(5)])
    wait_until(lambda: log_lines(h, "local service unreachable: pausing the subscription (circuit open)"), 30, 0.1,
               "circuit open")
    assert committed(brokers, group, topic) < 0
    r = Receiver(port)
    try:
        wait_until(lambda: len(r.ids()) == 5, 30, 0.1, "delivery once the service is up")
        wait_until(lambda: committed(brokers, group, topic) == 5, 20, 0.2, "commit after recovery")
        assert kafka.read(dlq, timeout=5) == []  # nothing was dead-lettered
    finally:
        r.stop()


@pytest.mark.timeout_s(90)
def test_one_failing_key_holds_back_only_that_key(brokers, kafka, receiver, handoff_process):
    topic = kafka.create_topic(unique("sub-key"), 1)
    receiver.decide = lambda d, nth: (503, [], b"") if d.ce_id == "a1" and nth <= 3 else (200, [], b"")
    produce(brokers, topic, [(b"A", b"a1", "a1", [], "/in"), (b"A", b"a2", "a2", [], "/in")] +
            [(b"B", f"b{i}".encode(), f"b{i}", [], "/in") for i in range(5)])
    handoff_process(sub_config(brokers, receiver.port, {
        "name": "keys", "topics": [topic], "group": unique("g"),
        # a1 is retried for 1 + 2 + 4 s: the other key's five records must pass it in that window.
        "retry": {"attempts": 10, "backoff_base": "1s", "backoff_cap": "4s", "jitter": "none"}}))
    wait_until(lambda: receiver.by_id("a2"), 40, 0.1, "a2 delivered")
    order = [d.ce_id for d in receiver.snapshot()]
    a1_last = max(i for i, x in enumerate(order) if x == "a1")
    assert order.count("a1") == 4
    assert order.index("a2") > a1_last
    assert all(order.index(f"b{i}") < a1_last for i in range(5)), order


@pytest.mark.timeout_s(120)
def test_a_retry_window_longer_than_max_poll_interval_causes_no_rebalance(brokers, kafka, receiver, handoff_process):
    topic = kafka.create_topic(unique("sub-poll"), 1)
    failing_until = [time.monotonic() + 1e9]
    receiver.decide = lambda d, nth: (503, [], b"") if d.ce_id == "slow" and time.monotonic() < failing_until[0] \
        else (200, [], b"")
    h = handoff_process(sub_config(brokers, receiver.port, {
        "name": "poll", "topics": [topic], "group": unique("g"), "concurrency": 4,
        "retry": {"attempts": 1000, "backoff_base": "200ms", "backoff_cap": "1s"},
        "properties": {"max.poll.interval.ms": "10000", "session.timeout.ms": "6000"}}))
    wait_assigned(h)
    failing_until[0] = time.monotonic() + 15
    produce(brokers, topic, [(b"S", b"x", "slow", [], "/in")])
    deadline = time.monotonic() + 15
    i = 0
    while time.monotonic() < deadline:  # other keys keep flowing during the window
        produce(brokers, topic, [(f"o{i}".encode(), b"y", f"other-{i}", [], "/in")])
        wait_until(lambda: receiver.by_id(f"other-{i}"), 10, 0.05, f"other-{i}")
        i += 1
        time.sleep(0.5)  # paces the producer; not used to synchronise
    wait_until(lambda: receiver.by_id("slow") and receiver.by_id("slow")[-1].at >= failing_until[0], 20, 0.1,
               "slow delivered after the window")
    assert len(receiver.by_id("slow")) > 10
    for j in range(i):
        assert len(receiver.by_id(f"other-{j}")) == 1, f"other-{j} delivered twice (a rebalance?)"
    assigned = [j for j in log_lines(h, "subscription partitions assigned") if j.get("partitions")]
    assert len(assigned) == 1, assigned
    assert not log_lines(h, "subscription partitions revoked")
    assert "MAX_POLL_EXCEEDED" not in h.log_text()


@pytest.mark.timeout_s(120)
def test_a_second_consumer_joining_mid_retry_loses_nothing_and_duplicates_are_bounded(brokers, kafka, receiver,
                                                                                      handoff_process):
    topic = kafka.create_topic(unique("sub-join"), 4)
    group = unique("g")
    fail_until = [time.monotonic() + 1e9]
    receiver.decide = lambda d, nth: (503, [], b"") if d.body.startswith(b"A") and time.monotonic() < fail_until[0] \
        else (200, [], b"")
    sub = {"name": "join", "topics": [topic], "group": group, "concurrency": 8,
           "retry": {"attempts": 1000, "backoff_base": "100ms", "backoff_cap": "500ms"},
           "properties": {"auto.commit.interval.ms": "300"}}
    produce(brokers, topic, [(f"k{i % 20}".encode(), (b"A" if i % 20 == 0 else b"B") + str(i).encode(),
                              f"j-{i}", [], "/in") for i in range(400)])
    h1 = handoff_process(sub_config(brokers, receiver.port, sub))
    wait_until(lambda: len(receiver.by_id("j-0")) >= 2, 20, 0.1, "retrying key A")
    fail_until[0] = time.monotonic() + 6
    h2 = handoff_process(sub_config(brokers, receiver.port, sub))
    produce(brokers, topic, [(f"k{i % 20}".encode(), b"B" + str(i).encode(), f"j-{i}", [], "/in")
                             for i in range(400, 800) if i % 20])
    expected = {f"j-{i}" for i in range(400)} | {f"j-{i}" for i in range(400, 800) if i % 20}
    wait_until(lambda: expected <= receiver.ids(), 60, 0.2, "every record delivered")
    wait_until(lambda: committed_equals_high(brokers, group, topic, range(4)), 30, 0.3, "lag 0")
    ok_deliveries = [d for d in receiver.snapshot() if not d.body.startswith(b"A")]
    dups = len(ok_deliveries) - len({d.ce_id for d in ok_deliveries})
    assert dups <= 2 * 8 * 4, f"{dups} duplicate deliveries"  # bounded by the in-flight window
    assert log_lines(h2, "subscription partitions assigned")


@pytest.mark.timeout_s(60)
def test_header_injection_from_kafka_headers_never_reaches_the_service_as_headers(brokers, kafka, receiver,
                                                                                  handoff_process):
    topic = kafka.create_topic(unique("sub-inject"), 1)
    handoff_process(sub_config(brokers, receiver.port, {
        "name": "inject", "topics": [topic], "group": unique("g"),
        "target": {"fallback_path": "/fallback"},
        "headers": ["X-Evil", "Host", "Transfer-Encoding", "Content-Length", "X-Tenant", "X-Nul"]}))
    produce(brokers, topic, [(b"k", b"exact body", "inj-1", [
        ("x-evil", b"a\r\nX-Injected: 1"), ("host", b"evil.example"), ("transfer-encoding", b"chunked"),
        ("content-length", b"0"), ("x-nul", b"a\x00b"), ("x-tenant", b"acme"),
        ("ce_type", b"t\r\nX-Injected: 2")], "/in")])
    produce(brokers, topic, [(b"k", b"second", "inj-2", [], "http://169.254.169.254/latest")])
    wait_until(lambda: receiver.by_id("inj-1") and receiver.by_id("inj-2"), 30, 0.1, "deliveries")
    d = receiver.by_id("inj-1")[0]
    names = [k.lower() for k, _ in d.headers]
    assert "x-injected" not in names
    assert "transfer-encoding" not in names and "x-evil" not in names and "x-nul" not in names
    assert names.count("host") == 1 and d.header("Host") == f"127.0.0.1:{receiver.port}"
    assert d.header("Content-Length") == str(len(b"exact body")) and d.body == b"exact body"
    assert d.header("X-Tenant") == "acme"
    assert d.header("ce-id") == "inj-1" and d.header("X-Correlation-ID") == "inj-1"
    assert d.header("ce-type") == "com.example.it"  # the injected second ce_type was dropped
    assert len(receiver.snapshot()) == 2  # no smuggled second request
    d2 = receiver.by_id("inj-2")[0]  # an absolute URI as handoff_path: the fallback path, same host
    assert d2.target == "/fallback" and d2.header("Host") == f"127.0.0.1:{receiver.port}"


@pytest.mark.timeout_s(60)
def test_replies_land_on_the_reply_topic_with_the_request_id_and_the_callers_label(brokers, kafka, receiver,
                                                                                   handoff_process):
    topic = kafka.create_topic(unique("sub-reply"), 1)
    replies = kafka.create_topic(topic + ".replies", 1)
    receiver.decide = lambda d, nth: (201, [("Content-Type", "application/json"), ("Location", "/orders/7")],
                                      b'{"id":7}')
    handoff_process(sub_config(brokers, receiver.port, {
        "name": "reply", "topics": [topic], "group": unique("g"), "reply_topic": replies,
        "reply_headers": ["Location"]}))
    produce(brokers, topic, [(b"k", b"{}", "corr-1", [("handoff_correlation_id", b"caller-label")], "/orders")])
    m = kafka.read(replies, lambda ms: len(ms) >= 1, timeout=30)[0]
    h_ = hdrs(m)
    assert m.key() == b"corr-1" and m.value() == b'{"id":7}'
    assert h_["handoff_request_id"] == b"corr-1"           # the request record's ce_id: what the caller matches
    assert h_["handoff_correlation_id"] == b"caller-label"  # the caller's label rides along
    # The service saw the label as X-Correlation-ID and the request ID as ce-id.
    [d] = receiver.by_id("corr-1")
    assert d.header("X-Correlation-ID") == "caller-label" and d.ce_id == "corr-1", d.headers
    assert h_["handoff_reply_status"] == b"201"
    assert h_["content-type"] == b"application/json"
    assert h_["handoff_reply_header_location"] == b"/orders/7"
    assert h_["ce_id"] and h_["ce_id"] != b"corr-1"


@pytest.mark.timeout_s(60)
def test_sigterm_mid_retry_stores_nothing_and_sends_nothing_to_the_dead_letter_topic(brokers, kafka, receiver,
                                                                                    handoff_process):
    topic = kafka.create_topic(unique("sub-term"), 1)
    dlq = kafka.create_topic(topic + ".dlq", 1)
    group = unique("g")
    receiver.decide = lambda d, nth: (500, [], b"") if d.ce_id == "poison" else (200, [], b"")
    sub = {"name": "term", "topics": [topic], "group": group, "dead_letter_topic": dlq,
           "retry": {"attempts": 1000, "backoff_base": "100ms", "backoff_cap": "300ms"}}
    h = handoff_process(sub_config(brokers, receiver.port, sub, drain={"delay": "0s", "timeout": "5s"}))
    produce(brokers, topic, [(b"p", b"x", "poison", [], "/in"), (b"q", b"y", "fine", [], "/in")])
    wait_until(lambda: len(receiver.by_id("poison")) >= 3 and receiver.by_id("fine"), 30, 0.1, "retrying")
    assert h.stop() == 0
    assert committed(brokers, group, topic) <= 0  # "fine" is after the poison record: not committable
    assert kafka.read(dlq, timeout=5) == []
    receiver.decide = lambda d, nth: (200, [], b"")
    h2 = handoff_process(sub_config(brokers, receiver.port, sub))
    wait_until(lambda: len(receiver.by_id("poison")) >= 4 and committed(brokers, group, topic) == 2, 30, 0.2,
               "poison redelivered after restart and committed")


def produce_until_delivered(brokers, topic, receiver, prefix, timeout=30) -> int:
    """A group reading from `latest` starts at the end once its partition is first fetched, which is
    some time after the assignment: produce one record a second until one is delivered. Returns how
    many were produced (the ones before the first delivered are skipped by such a group)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        cid = f"{prefix}-{n}"
        produce(brokers, topic, [(b"k", b"n", cid, [], "/in")])
        n += 1
        try:
            wait_until(lambda: receiver.by_id(cid), 1.0, 0.05, f"{cid} delivered")
            return n
        except AssertionError:
            continue
    raise AssertionError(f"nothing produced after the assignment was delivered within {timeout}s")


@pytest.mark.timeout_s(120)
def test_a_restart_after_an_outage_resumes_from_the_committed_offset_and_latest_applies_only_to_a_new_group(
        brokers, kafka, receiver, handoff_process):
    """S-8: records that arrived while no member ran are delivered after the restart, from the
    committed offset, although the subscription says auto_offset_reset: latest; `latest` applies to
    a group without a committed offset only (that group skips the backlog)."""
    topic = kafka.create_topic(unique("sub-resume"), 1)
    group = unique("g")
    sub = {"name": "resume", "topics": [topic], "group": group, "auto_offset_reset": "latest",
           "properties": {"auto.commit.interval.ms": "200"}}
    h1 = handoff_process(sub_config(brokers, receiver.port, sub))
    wait_assigned(h1)
    n = produce_until_delivered(brokers, topic, receiver, "resume-0")
    first = sorted(receiver.ids())
    wait_until(lambda: committed(brokers, group, topic) == n, 20, 0.1, "the first records committed")
    assert h1.stop() == 0

    # The outage: records arrive while no member of the group runs.
    produce(brokers, topic, [(b"k", f"{i}".encode(), f"resume-{i}", [], "/in") for i in (1, 2, 3)])
    h2 = handoff_process(sub_config(brokers, receiver.port, sub))
    wait_until(lambda: all(receiver.by_id(f"resume-{i}") for i in (1, 2, 3)), 30, 0.1, "the backlog after restart")
    wait_until(lambda: committed(brokers, group, topic) == n + 3, 20, 0.1, "the backlog committed")
    for cid in first:
        assert len(receiver.by_id(cid)) == 1, f"{cid} was delivered again: the restart did not resume from the commit"
    assert h2.stop() == 0

    # A new group with `latest` (no committed offset) starts at the end: the backlog is not delivered.
    fresh = {**sub, "name": "fresh", "group": unique("g-fresh")}
    h3 = handoff_process(sub_config(brokers, receiver.port, fresh))
    wait_assigned(h3)
    before = {cid: len(receiver.by_id(cid)) for cid in receiver.ids()}
    produce_until_delivered(brokers, topic, receiver, "resume-new")
    for cid, count in before.items():
        assert len(receiver.by_id(cid)) == count, f"the new group delivered the old record {cid}"
