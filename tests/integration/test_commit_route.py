"""`commit` routes: a 2xx only for a persisted record, pointing at exactly that record; an honest
503/504 (never a 2xx) when the broker cannot be reached (README, "Route modes")."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import UUIDV7_RE, base_config, free_port, hdrs, standard_routes, unique, wait_until

ORDER = {"customer": {"id": "c-42"}, "amount": 5, "items": ["a", "b"]}


def test_a_commit_answers_201_with_the_partition_and_offset_of_exactly_that_record(proxy, kafka):
    body = json.dumps(ORDER).encode()
    cid = unique("commit")
    r = proxy.request("POST", "/orders/eu", body, [("Content-Type", "application/json"),
                                                    ("X-Tenant", "acme"), ("X-Correlation-ID", cid)])
    assert r.status == 201, r
    assert r.header("X-Correlation-ID") == cid
    j = r.json()
    assert j["correlation_id"] == cid, j
    assert UUIDV7_RE.match(j["request_id"]) and r.header("Location") == f"/_handoff/requests/{j['request_id']}", j
    assert j["topic"] == "orders.eu", j  # template orders.{region} with region=eu
    assert j["outcome"] == "persisted", j
    assert isinstance(j["partition"], int) and j["partition"] >= 0, j
    assert isinstance(j["offset"], int) and j["offset"] >= 0, j
    msg = kafka.at("orders.eu", j["partition"], j["offset"])
    assert (msg.partition(), msg.offset()) == (j["partition"], j["offset"])
    h = hdrs(msg)
    assert h["ce_id"] == j["request_id"].encode(), h
    assert h["handoff_correlation_id"] == cid.encode(), h
    assert msg.key() == b"c-42"
    assert msg.value() == body
    assert h["ce_type"] == b"com.example.order.created", h
    assert h["ce_source"] == b"/orders", h
    assert h["ce_specversion"] == b"1.0", h
    assert h["content-type"] == b"application/json", h
    assert h["handoff_path"] == b"/orders/eu", h
    assert h["handoff_method"] == b"POST", h
    assert h["x-tenant"] == b"acme", h


def test_consecutive_commits_get_distinct_increasing_offsets_each_pointing_at_its_record(proxy, kafka):
    seen = []
    for i in range(3):
        r = proxy.request("POST", "/orders/eu", json.dumps({"customer": {"id": f"c{i}"}}).encode(),
                          [("Content-Type", "application/json")])
        assert r.status == 201, r
        j = r.json()
        seen.append((j["partition"], j["offset"], j["request_id"]))
        assert UUIDV7_RE.match(j["request_id"]), j
    for p, off, cid in seen:
        assert hdrs(kafka.at("orders.eu", p, off))["ce_id"] == cid.encode()
    assert len({(p, o) for p, o, _ in seen}) == 3


def test_the_status_url_of_a_persisted_commit_reports_persisted(proxy):
    r = proxy.request("POST", "/orders/eu", b'{"customer":{"id":"st"}}', [("Content-Type", "application/json")])
    assert r.status == 201, r
    j = r.json()
    s = proxy.request("GET", f"/_handoff/requests/{j['request_id']}")
    assert s.status == 200, s
    sj = s.json()
    assert sj.get("state") == "persisted" or sj.get("status") == "persisted", sj


# ---------------------------------------------------------------------------------------------
# 3. broker unreachable
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker_down_proxy(handoff_process, upstream, topics):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    routes = standard_routes(topics)
    for r in routes:
        if r["mode"] == "commit":
            r["timeout"] = "2s"
    cfg = base_config(dead, upstream.port, routes,
                      kafka={"brokers": dead, "properties": {"linger.ms": "1", "message.timeout.ms": "1500"}})
    return handoff_process(cfg, wait="live", name="broker-down")


def test_readiness_is_false_and_liveness_true_while_kafka_is_unreachable(broker_down_proxy):
    assert broker_down_proxy.admin_get("/healthz").status == 200
    assert broker_down_proxy.admin_get("/readyz").status == 503


@pytest.mark.timeout_s(40)
@pytest.mark.parametrize("attempt", range(3))
def test_a_commit_with_the_broker_unreachable_is_503_or_504_within_the_timeout_never_2xx(broker_down_proxy, attempt):
    cid = unique("down")
    t0 = time.monotonic()
    r = broker_down_proxy.request("POST", "/orders/eu", b'{"customer":{"id":"x"}}',
                                  [("Content-Type", "application/json"), ("X-Correlation-ID", cid)], timeout=20)
    elapsed = time.monotonic() - t0
    assert not (200 <= r.status < 300), f"a 2xx with the broker down: {r!r}"
    assert r.status in (503, 504), r
    assert elapsed < 2.0 + 3.0, f"answered after {elapsed:.2f}s; the route timeout is 2s"
    j = r.json()
    assert j.get("correlation_id") == cid, j
    assert j.get("error"), j
    assert r.header("X-Correlation-ID") == cid, r
    if r.status == 503:
        assert r.header("Retry-After"), f"503 without Retry-After: {r!r}"
    else:
        assert j.get("error") == "outcome_unknown", j
        assert j.get("outcome") == "unknown", j
        assert j.get("status_url") == f"/_handoff/requests/{j['request_id']}" == r.header("Location"), j


def test_a_broker_that_stays_down_is_logged_once_per_error_every_10s_not_on_every_retry(broker_down_proxy):
    """librdkafka reports "all brokers down" every ~50 ms while it retries; Handoff writes one line
    per error code per 10 s, the next one carrying how many it held back (log::throttle)."""
    def client_errors():
        return [j for j in broker_down_proxy.log_lines_json() if j.get("msg") == "kafka client error"]
    first = wait_until(lambda: client_errors(), timeout=10, what="a kafka client error line")[0]
    t_first = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    # Observe the process for at least 2 s after its first report (an unthrottled log has ~40
    # lines of _ALL_BROKERS_DOWN by then); the earlier tests in this module usually took longer.
    wait_until(lambda: datetime.now(timezone.utc) - t_first > timedelta(seconds=2), timeout=5,
               what="2 s of the broker being down")
    last_written: dict[str, datetime] = {}
    for j in client_errors():
        t = datetime.fromisoformat(j["time"].replace("Z", "+00:00"))
        prev = last_written.get(j["error"])
        assert prev is None or t - prev >= timedelta(seconds=9.9), \
            f"{j['error']} logged again after {(t - prev).total_seconds():.3f}s: {j}"
        if prev is not None:
            assert j.get("repeated", 0) >= 1, j
        last_written[j["error"]] = t
    assert "_ALL_BROKERS_DOWN" in last_written or "_TRANSPORT" in last_written, last_written


def test_forward_routes_keep_working_while_kafka_is_unreachable(broker_down_proxy, upstream):
    tag = unique("fwd-down")
    r = broker_down_proxy.request("GET", f"/orders/{tag}")
    assert r.status == 200, r
    assert upstream.with_path(f"/orders/{tag}")


# ---------------------------------------------------------------------------------------------
# event queue full: 503 + Retry-After, never a 202 that is later dropped
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_queue_proxy(handoff_process, upstream, topics):
    dead = f"127.0.0.1:{free_port()}"
    cfg = base_config(dead, upstream.port, standard_routes(topics),
                      kafka={"brokers": dead, "properties": {"linger.ms": "1", "message.timeout.ms": "30000",
                                                             "queue.buffering.max.messages": "3"}})
    return handoff_process(cfg, wait="live", name="tiny-queue")


def test_an_event_is_503_with_retry_after_when_the_producer_queue_is_full(tiny_queue_proxy):
    statuses = []
    for i in range(8):
        r = tiny_queue_proxy.request("POST", "/audit", b"q%d" % i, [("X-Tenant", "q")])
        statuses.append(r.status)
        if r.status == 503:
            assert r.header("Retry-After"), f"503 without Retry-After: {r!r}"
            j = r.json()
            assert j.get("error") and j.get("correlation_id"), j
        else:
            assert r.status == 202, r
    assert statuses[:3] == [202, 202, 202], statuses
    assert 503 in statuses[3:], f"the queue holds 3 messages but no 503 was answered: {statuses}"
