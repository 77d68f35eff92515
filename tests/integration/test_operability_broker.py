"""Readiness and overload against a broker of this module's own (tests/kafka/kafka.sh), which the
tests stop, start again and freeze (SIGSTOP: a hung broker), while liveness must stay OK and what
does not need Kafka keeps being served.
"""
from __future__ import annotations

import threading
import time

import pytest

from conftest import (Kafka, PrivateKafka, assert_error, base_config, free_port_pair, http_request, rss_bytes,
                      scrape, unique, wait_until)

RSS_CEILING = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory):
    pk = PrivateKafka(tmp_path_factory.mktemp("private-kafka"), free_port_pair()).start()
    yield pk
    pk.stop()


class HealthWatch:
    """Polls /healthz in the background and records every answer that was not 200."""

    def __init__(self, h):
        self.h = h
        self.bad: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                r = self.h.admin_get("/healthz", 5.0)
                if r.status != 200:
                    self.bad.append(repr(r))
            except Exception as e:  # noqa: BLE001
                self.bad.append(repr(e))
            self.polls += 1
            self._stop.wait(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def status_of(h, cid: str) -> str | None:
    r = h.request("GET", f"/_handoff/requests/{cid}")
    return r.json().get("state") if r.status == 200 else None


@pytest.mark.timeout_s(180)
def test_readiness_follows_the_broker_while_liveness_stays_ok(private_kafka, handoff_process, upstream):
    pk = private_kafka
    topic = Kafka(pk.brokers).create_topic(unique("ops-ready"), 1)
    routes = [
        {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
        {"name": "ev", "match": {"methods": ["POST"], "path": "/ev/{t}"}, "mode": "event", "topic": "{t}"},
    ]
    h = handoff_process(base_config(pk.brokers, upstream.port, routes, log={"level": "info", "requests": False}),
                        name="ops-readiness")
    r = h.request("POST", f"/ev/{topic}", b"before")
    assert r.status == 202, r
    cid = r.header("X-Correlation-ID")
    wait_until(lambda: status_of(h, cid) == "persisted", 15, 0.1, "the first event persisted")

    with HealthWatch(h) as health:
        # The broker goes away: not ready within ~10 s, still live, forward routes still served.
        pk.stop()   # kafka.sh waits for the JVM to exit: its shutdown is not Handoff's to count
        t0 = time.monotonic()
        r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(h.admin_get("/readyz")), 10, 0.1,
                       "/readyz 503 after the broker stopped")
        assert r.json() == {"status": "not_ready", "reason": "kafka is not reachable (no cluster metadata)"}, r
        flipped_after = time.monotonic() - t0
        for i in range(3):
            r = h.request("GET", f"/orders/{i}")
            assert r.status == 200 and r.elapsed < 3.0, r   # not held up by the broker's absence
        assert h.admin_get("/readyz").status == 503

        # A broker is back on the same address (a new cluster: kafka.sh stop removed the old one).
        pk.start()
        wait_until(lambda: h.admin_get("/readyz").status == 200, 30, 0.1, "/readyz 200 after the broker returned")
        fresh = Kafka(pk.brokers).create_topic(unique("ops-ready-again"), 1)
        r = h.request("POST", f"/ev/{fresh}", b"after")
        assert r.status == 202, r
        cid = r.header("X-Correlation-ID")
        wait_until(lambda: status_of(h, cid) == "persisted", 30, 0.1, "an event persisted after the broker returned")
        assert h.request("GET", "/orders/9").status == 200
    assert health.polls > 20 and not health.bad, f"/healthz failed while Kafka was away: {health.bad[:5]}"
    assert flipped_after < 10, flipped_after


@pytest.mark.timeout_s(120)
def test_a_frozen_broker_sheds_commit_overload_fast_and_commits_recover_when_it_resumes(private_kafka, handoff_process,
                                                                                       upstream):
    pk = private_kafka
    topic = Kafka(pk.brokers).create_topic(unique("ops-freeze"), 1)
    limit, burst, route_timeout = 20, 200, 8.0
    routes = [
        {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
        {"name": "create-order", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "commit",
         "topic": topic, "key": "correlation", "timeout": f"{int(route_timeout)}s"},
    ]
    h = handoff_process(base_config(pk.brokers, upstream.port, routes, limits={"max_inflight_commits": limit},
                                    log={"level": "info", "requests": False}, kafka={"flush_timeout": "5s"}),
                        name="ops-freeze")
    r = h.request("POST", "/orders", b"{}")
    assert r.status == 200, r
    rss_start = rss_bytes(h.proc.pid)

    results: list = [None] * burst
    go = threading.Barrier(burst + 1)

    def commit(i: int):
        go.wait(10)
        try:
            results[i] = http_request(h.port, "POST", "/orders", b'{"i": %d}' % i, timeout=route_timeout + 5)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    with HealthWatch(h) as health:
        pk.freeze()
        try:
            threads = [threading.Thread(target=commit, args=(i,), daemon=True) for i in range(burst)]
            for t in threads:
                t.start()
            go.wait(10)
            peak = rss_start
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_bytes(h.proc.pid))
                time.sleep(0.05)  # RSS sampling cadence
            r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(h.admin_get("/readyz")), 8, 0.1,
                           "/readyz 503 while the broker is frozen")
            assert "kafka" in r.json()["reason"], r
            assert h.request("GET", "/orders/1").status == 200
        finally:
            pk.thaw()

        errors = [x for x in results if not hasattr(x, "status")]
        assert not errors, errors[:5]
        shed = [x for x in results if x.status == 503]
        held = [x for x in results if x.status != 503]
        assert len(held) == limit and len(shed) == burst - limit, (len(held), len(shed))
        for x in shed:
            assert_error(x, 503, "overloaded")
            assert x.header("Retry-After") == "1", x
        assert max(x.elapsed for x in shed) < route_timeout / 2, max(x.elapsed for x in shed)
        for x in held:
            assert_error(x, 504, "outcome_unknown")
        assert peak < RSS_CEILING, f"peak RSS {peak / 2**20:.1f} MiB (start {rss_start / 2**20:.1f} MiB)"

        # The broker resumes: commits succeed again and the sidecar is ready, without a restart.
        def commit_ok():
            r = h.request("POST", "/orders", b"{}", timeout=route_timeout + 5)
            return r.status == 200
        wait_until(commit_ok, 40, 0.2, "a commit to succeed after the broker resumed")
        wait_until(lambda: h.admin_get("/readyz").status == 200, 10, 0.1, "/readyz 200 after the broker resumed")
        # The held records reach Kafka late: their delivery reports still arrive and are counted.
        wait_until(lambda: scrape(h).value("handoff_produce_total", topic=topic, outcome="persisted") >= 2 + limit,
                   30, 0.2, "the held records' delivery reports")
    assert not health.bad, health.bad[:5]
    m = scrape(h)
    assert m.value("handoff_shed_total", reason="inflight_commits") == burst - limit
    assert m.value("handoff_inflight_commits") == 0
