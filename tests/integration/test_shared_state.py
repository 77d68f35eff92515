"""Replicas share Idempotency-Keys and request statuses through the state topic (issue 17).

Three `handoff` replicas with `state.shared` against the test broker, behind nginx as a round-robin
balancer (as a Kubernetes Service spreads requests): a status URL from one replica is answered by
the others; a key retried through the balancer produces one record; the same key sent to all three
replicas at once (a barrier) produces one record; a key reused with another body on another replica
is 422; a replica started later is not ready until it has read the state topic, and then knows the
keys claimed before it; a claim whose replica was SIGKILLed while holding it is answered 504 (never
run a second time) once state.claim_timeout has passed.
"""
from __future__ import annotations

import subprocess
import threading
import time

import pytest

from conftest import Handoff, RoundRobin, at_once, base_config, hdrs, http_request, kcat, to_yaml, unique, wait_until


@pytest.fixture(scope="module")
def topics(kafka):
    names = {"orders": unique("ss-orders"), "events": unique("ss-events"), "state": unique("ss-state"),
             "quotes": unique("ss-quotes"), "replies": unique("ss-replies")}
    for k in ("orders", "events", "quotes", "replies"):
        kafka.create_topic(names[k], 3)
    return names  # the state topic is created by the first replica (state.partitions)


def replica_config(brokers, upstream_port, topics, name, **state):
    routes = [
        {"name": "orders", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "commit",
         "topic": topics["orders"], "success_status": 201},
        {"name": "events", "match": {"methods": ["POST"], "path": "/events"}, "mode": "event",
         "topic": topics["events"]},
        {"name": "quotes", "match": {"methods": ["POST"], "path": "/quotes"}, "mode": "reply",
         "topic": topics["quotes"], "timeout": "6s"},
    ]
    return base_config(brokers, upstream_port, routes,
                       state={"shared": True, "topic": topics["state"], "partitions": 3, "replica": name,
                              "claim_timeout": "6s", **state},
                       replies={"topic": topics["replies"]})


@pytest.fixture(scope="module")
def replicas(handoff_process, brokers, upstream, topics):
    return [handoff_process(replica_config(brokers, upstream.port, topics, f"r{i}"), name=f"shared-r{i}")
            for i in range(3)]


@pytest.fixture(scope="module")
def balancer(replicas, tmp_path_factory):
    """nginx in front of the three replicas, round robin, as a Service would spread requests."""
    rr = RoundRobin([r.port for r in replicas], tmp_path_factory.mktemp("nginx"))
    yield rr.port
    rr.stop()


def post(port, path, key=None, body=b'{"n":1}', correlation=None, timeout=15.0):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    if correlation:
        headers["X-Correlation-ID"] = correlation
    return http_request(port, "POST", path, body, headers, timeout)


def records_labelled(kafka, topic, label):
    """Every record of `topic` carrying this X-Correlation-ID, up to the topic's end now. Called once
    every request has been answered: a commit is answered after its record is in Kafka, and a
    request that produced nothing has nothing on its way."""
    want = label.encode()
    return [m for m in kafka.read(topic) if hdrs(m).get("handoff_correlation_id") == want]


def test_a_status_url_from_one_replica_is_answered_by_the_others(replicas):
    a, b, c = replicas
    first = a.request("POST", "/events", b'{"n":1}', {"Content-Type": "application/json"})
    assert first.status == 202, first
    url = first.json()["status_url"]
    for other in (b, c):
        def persisted():
            r = other.request("GET", url)
            if r.status == 404:
                # Inside the propagation window the answer says so, and when to ask again.
                assert r.header("Retry-After") == "1", r
                return False
            assert r.status == 200, r
            return r.json()["state"] == "persisted"
        wait_until(persisted, 10, 0.05, f"{other.name} to know {url}")
    assert b.request("GET", url).json()["partition"] == a.request("GET", url).json()["partition"]


def test_an_unknown_request_id_is_404_without_retry_after(replicas):
    r = replicas[1].request("GET", "/_handoff/requests/01890000-0000-7000-8000-000000000000")
    assert r.status == 404 and r.header("Retry-After") is None, r


def test_a_key_retried_through_the_balancer_gives_one_record(balancer, kafka, topics):
    key, label = unique("k"), unique("label")
    answers = [post(balancer, "/orders", key, correlation=label) for _ in range(6)]
    assert answers[0].status == 201, answers[0]
    for r in answers[1:]:
        # A replay once the first answer is in the log; 409 while it was in flight on another replica.
        assert (r.status == 201 and r.header("Idempotent-Replayed") == "true") or r.status == 409, r
    assert sum(1 for r in answers if r.status == 201 and r.header("Idempotent-Replayed") is None) == 1
    wait_until(lambda: post(balancer, "/orders", key, correlation=label).status == 201, 10, 0.1, "a replay")
    assert len(records_labelled(kafka, topics["orders"], label)) == 1


def test_the_same_key_sent_to_all_three_replicas_at_once_gives_one_record(replicas, kafka, topics):
    keys = [unique(f"race{i}") for i in range(10)]
    labels = {k: unique("label") for k in keys}
    for key in keys:
        answers = at_once([lambda h=h, key=key: post(h.port, "/orders", key, correlation=labels[key])
                           for h in replicas])
        ran = [r for r in answers if r.status == 201 and r.header("Idempotent-Replayed") is None]
        assert len(ran) == 1, (key, sorted(r.status for r in answers), [r.body for r in answers])
        for r in answers:
            assert r.status in (201, 409), r
    # Read once, to the topic's end, for all keys: every label exactly once.
    found = [hdrs(m).get("handoff_correlation_id") for m in kafka.read(topics["orders"])]
    for key in keys:
        assert found.count(labels[key].encode()) == 1, key


def test_a_key_reused_with_another_body_on_another_replica_is_422(replicas):
    a, b, _ = replicas
    key = unique("k")
    assert post(a.port, "/events", key, b'{"n":1}').status == 202
    def mismatch():
        r = post(b.port, "/events", key, b'{"n":2}')
        assert r.status in (409, 422), r
        return r.status == 422 and r.json()["error"] == "idempotency_key_reused"
    wait_until(mismatch, 10, 0.1, "422 on the other replica")
    def replayed():
        r = post(b.port, "/events", key, b'{"n":1}')
        assert r.status in (202, 409), r  # 409 until the first answer has reached this replica
        return r.status == 202 and r.header("Idempotent-Replayed") == "true"
    wait_until(replayed, 10, 0.05, "a replay on the other replica")


def test_an_operators_tombstone_written_with_kcat_frees_a_key_on_every_replica(replicas, brokers, kafka, topics):
    """The README's way to free a key by hand (one abandoned by a dead replica, say): a tombstone
    under the key's record key, i/<len(route)>/<route>/<key>, written with kcat."""
    a, b, c = replicas
    key, label = unique("freed"), unique("label")
    assert post(a.port, "/orders", key, correlation=label).status == 201
    wait_until(lambda: post(b.port, "/orders", key, correlation=label).header("Idempotent-Replayed") == "true",
               10, 0.05, "the key known on another replica")
    line = f"i/{len('orders')}/orders/{key}\t\n".encode()
    r = subprocess.run([kcat(), "-P", "-b", brokers, "-t", topics["state"], "-Z", "-K\t"], input=line,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr

    def runs_again():
        r = post(c.port, "/orders", key, correlation=label)
        assert r.status == 201, r
        return r.header("Idempotent-Replayed") is None
    wait_until(runs_again, 10, 0.05, "the key freed on the third replica")
    assert len(records_labelled(kafka, topics["orders"], label)) == 2  # the operator asked for it


def test_a_replica_started_later_reads_the_state_topic_before_it_is_ready(handoff_process, brokers, upstream,
                                                                           topics, replicas, kafka):
    a = replicas[0]
    key, label = unique("k"), unique("label")
    first = post(a.port, "/orders", key, correlation=label)
    assert first.status == 201, first
    late = handoff_process(replica_config(brokers, upstream.port, topics, "late"), name="shared-late")
    # Ready means read up to the end offsets at its start: the key is known at once, no window.
    again = post(late.port, "/orders", key, correlation=label)
    assert again.status == 201 and again.header("Idempotent-Replayed") == "true", again
    assert again.json()["offset"] == first.json()["offset"]
    assert late.request("GET", f"/_handoff/requests/{first.json()['request_id']}").status == 200
    late.stop()
    assert len(records_labelled(kafka, topics["orders"], label)) == 1


@pytest.mark.timeout_s(90)
def test_a_claim_left_by_a_killed_replica_is_never_run_again(brokers, upstream, topics, replicas, kafka, tmp_path):
    """A replica holding a key (a reply route waiting for its reply) is SIGKILLed: the others answer
    409 until state.claim_timeout, then 504 outcome_unknown with the holder's status URL; the request
    is never produced a second time."""
    cfg = replica_config(brokers, upstream.port, topics, "doomed")
    path = tmp_path / "doomed.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    # Started outside the fixture: it is killed, so the fixture's clean-exit check does not apply.
    doomed = Handoff("shared-doomed", cfg, path, tmp_path / "doomed.log", None)
    key, label = unique("k"), unique("label")
    def hold():
        try:
            post(doomed.port, "/quotes", key, correlation=label, timeout=60)
        except OSError:
            pass  # the replica is killed while the request waits: no answer is the point
    held = threading.Thread(target=hold, daemon=True)
    try:
        doomed.wait_ready()
        held.start()
        kafka.with_label(topics["quotes"], label)  # the request's record is in Kafka: its claim is held
    finally:
        doomed.proc.kill()
        doomed.proc.wait(10)
        doomed._log.close()
    held.join(30)
    other = replicas[1]
    r = post(other.port, "/quotes", key, correlation=label)
    assert r.status in (409, 504), r
    def abandoned():
        r = post(other.port, "/quotes", key, correlation=label)
        assert r.status in (409, 504), r
        return r.status == 504
    wait_until(abandoned, 20, 0.2, "the claim to be reported abandoned")
    r = post(replicas[2].port, "/quotes", key, correlation=label)
    # Abandoned, not a replay of the holder's own 504 (it was killed inside its route timeout).
    assert r.status == 504 and r.json()["error"] == "outcome_unknown", r
    assert "not completed by its replica" in r.json()["message"], r
    assert r.header("Location", "").startswith("/_handoff/requests/"), r
    assert len(records_labelled(kafka, topics["quotes"], label)) == 1


@pytest.mark.timeout_s(90)
def test_an_expired_key_gets_one_tombstone_from_its_owner(handoff_process, brokers, upstream, kafka):
    """idempotency.ttl of 3 s: when a key expires, the replica whose claim won it writes a tombstone
    (a null value under the key's record key, header handoff_expired = its request ID) so that
    compaction removes the key's records; the other replica writes none. Read with a plain client."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    names = {"orders": unique("tomb-orders"), "state": unique("tomb-state")}
    kafka.create_topic(names["orders"], 1)
    routes = [{"name": "orders", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "commit",
               "topic": names["orders"], "success_status": 201, "timeout": "2s"}]

    def cfg(name):
        return base_config(brokers, upstream.port, routes, idempotency={"ttl": "3s"},
                           state={"shared": True, "topic": names["state"], "partitions": 1, "replica": name,
                                  "claim_timeout": "2s"})
    owner = handoff_process(cfg("owner"), name="tomb-owner")
    other = handoff_process(cfg("other"), name="tomb-other")
    key = unique("k")
    first = post(owner.port, "/orders", key)
    assert first.status == 201, first
    request = first.json()["request_id"]
    replay = post(other.port, "/orders", key)  # known on the other replica: a replay, no claim
    assert replay.status in (201, 409), replay

    c = Consumer({"bootstrap.servers": brokers, "group.id": unique("g"), "enable.auto.commit": False})
    c.assign([TopicPartition(names["state"], 0, OFFSET_BEGINNING)])
    tombstones = []

    def tombstone_read():
        m = c.poll(0.2)
        if m is not None and not m.error() and m.value() is None:
            tombstones.append(m)
        return tombstones
    try:
        wait_until(tombstone_read, 30, 0, "a tombstone on the state topic")
        t = tombstones[0]
        assert dict(t.headers() or []) == {"handoff_expired": request.encode()}, t.headers()
        assert b"orders" in t.key() and key.encode() in t.key(), t.key()
        # One: the other replica expired the key too, and wrote nothing.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # a bounded read for a record that must not come
            tombstone_read()
    finally:
        c.close()
    assert len(tombstones) == 1, [m.headers() for m in tombstones]
    # The key is free again on both replicas: a new request with it runs.
    again = post(other.port, "/orders", key)
    assert again.status == 201 and again.header("Idempotent-Replayed") is None, again
