"""Back-pressure: every bound gives a fast 503 + Retry-After (or a refused connection) and a metric,
memory stays bounded, and the sidecar keeps serving what still works without a restart.

The "broker is down" cases point kafka.brokers at a port nobody listens on (a stopped broker).
The frozen-then-resumed broker (recovery of commits) is in test_operability_broker.py.
"""
from __future__ import annotations

import threading
import time

import pytest

from conftest import (RawConn, assert_error, base_config, free_port, http_request, rss_bytes, scrape, unique,
                      wait_until)

RSS_CEILING = 200 * 1024 * 1024


def dead_brokers() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there: a stopped broker


@pytest.mark.timeout_s(60)
def test_commit_overload_with_the_broker_down_sheds_fast_and_memory_stays_bounded(handoff_process, upstream):
    limit, burst, route_timeout = 20, 200, 8.0
    routes = [
        {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
        {"name": "create-order", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "commit",
         "topic": "ops-overload", "key": "correlation", "timeout": f"{int(route_timeout)}s"},
    ]
    cfg = base_config(dead_brokers(), upstream.port, routes, limits={"max_inflight_commits": limit},
                      log={"level": "warn", "requests": False}, kafka={"flush_timeout": "1s"})
    h = handoff_process(cfg, wait="live", name="ops-overload-commits")
    assert h.admin_get("/readyz").status == 503
    rss_start = rss_bytes(h.proc.pid)

    results: list = [None] * burst
    go = threading.Barrier(burst + 1)
    peak = [rss_start]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_bytes(h.proc.pid))
            time.sleep(0.02)

    def commit(i: int):
        go.wait(10)
        try:
            results[i] = http_request(h.port, "POST", "/orders", b'{"i": %d}' % i, timeout=route_timeout + 5)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=commit, args=(i,), daemon=True) for i in range(burst)]
    for t in threads:
        t.start()
    go.wait(10)

    # While commits are held, what does not need Kafka keeps working, and nothing is ready.
    wait_until(lambda: scrape(h).value("handoff_inflight_commits") == limit, 5, 0.02, "the in-flight bound reached")
    r = h.request("GET", "/orders/42")
    assert r.status == 200 and r.elapsed < route_timeout / 2, r
    assert scrape(h).value("handoff_inflight_commits") == limit, "served while the commits were held"
    assert h.admin_get("/healthz").status == 200

    for t in threads:
        t.join(route_timeout + 10)
    sampling.set()
    sampler.join(5)

    errors = [x for x in results if not hasattr(x, "status")]
    assert not errors, errors[:5]
    shed = [x for x in results if x.status == 503]
    held = [x for x in results if x.status != 503]
    assert len(held) == limit, f"{len(held)} commits were admitted, the limit is {limit}"
    assert len(shed) == burst - limit
    for x in shed:
        assert_error(x, 503, "overloaded")
        assert x.header("Retry-After") == "1", x
    slowest_shed = max(x.elapsed for x in shed)
    assert slowest_shed < route_timeout / 2, f"a shed request took {slowest_shed:.2f}s (route timeout {route_timeout}s)"
    # The admitted ones waited the route timeout for a broker that never answered: outcome unknown.
    for x in held:
        assert_error(x, 504, "outcome_unknown")
        assert x.elapsed >= route_timeout - 0.5, x

    assert peak[0] < RSS_CEILING, f"peak RSS {peak[0] / 2**20:.1f} MiB (start {rss_start / 2**20:.1f} MiB)"
    m = scrape(h)
    assert m.value("handoff_shed_total", reason="inflight_commits") == burst - limit
    assert m.value("handoff_inflight_commits") == 0
    assert m.value("handoff_requests_total", route="create-order", mode="commit", status_class="5xx") == burst

    # Recovered without a restart: the bound is free again (a new commit is admitted, not shed).
    r = h.request("POST", "/orders", b"{}", timeout=route_timeout + 5)
    assert r.status == 504 and r.json()["error"] == "outcome_unknown", r


def test_producer_queue_full_gives_503_queue_full_never_202(handoff_process, upstream):
    queue = 10
    routes = [{"name": "ev", "match": {"methods": ["POST"], "path": "/ev"}, "mode": "event",
               "topic": "ops-queue-full", "key": "correlation"}]
    cfg = base_config(dead_brokers(), upstream.port, routes, log={"level": "info", "requests": False},
                      kafka={"flush_timeout": "1s",
                             "properties": {"linger.ms": "1", "queue.buffering.max.messages": queue}})
    h = handoff_process(cfg, wait="live", name="ops-queue-full")
    accepted, refused = [], []
    for i in range(queue + 15):
        r = h.request("POST", "/ev", b"q-%d" % i)
        if r.status == 202:
            accepted.append(r.header("X-Correlation-ID"))
        else:
            assert_error(r, 503, "queue_full")
            assert r.header("Retry-After") == "1", r
            assert r.elapsed < 3.0, r   # at once, not after message.timeout.ms
            refused.append(r)
    assert len(accepted) == queue and len(refused) == 15, (len(accepted), len(refused))
    m = scrape(h)
    assert m.value("handoff_shed_total", reason="producer_queue_full") == 15
    assert m.value("handoff_produce_total", topic="ops-queue-full", outcome="refused_queue_full") == 15
    assert m.value("handoff_producer_queue_messages") >= queue
    assert m.value("handoff_producer_queue_bytes") > 0

    # At shutdown the flush deadline passes; the undelivered records are logged by correlation id.
    assert h.stop() == 0
    lines = [x for x in h.log_lines_json() if x.get("msg") == "records not delivered before exit"]
    assert len(lines) == 1 and lines[0]["count"] == queue, h.log_tail()
    assert sorted(lines[0]["correlation_ids"]) == sorted(accepted)


def test_connections_beyond_listen_max_connections_are_closed_at_once(handoff_process, brokers, upstream):
    cap = 3
    h = handoff_process(base_config(brokers, upstream.port, [], listen={"max_connections": cap}),
                        name="ops-conn-cap")
    conns = [RawConn(h.port) for _ in range(cap)]
    try:
        for c in conns:  # each one is accepted and served
            c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 200
        extra = RawConn(h.port)
        try:
            t0 = time.monotonic()
            assert extra.closed_by_peer(5), "a connection beyond the cap was not closed"
            assert time.monotonic() - t0 < 3.0   # at once, not at a request deadline
        finally:
            extra.close()
        assert scrape(h).value("handoff_shed_total", reason="connections") >= 1
        assert scrape(h).value("handoff_connections") == cap
        # Closing one frees a slot: a new connection is served again.
        conns.pop().close()
        wait_until(lambda: scrape(h).value("handoff_connections") == cap - 1, 5, 0.02, "the slot to free")
        assert h.request("GET", "/y").status == 200
    finally:
        for c in conns:
            c.close()


def test_the_status_store_is_bounded_by_max_entries_and_ttl(handoff_process, brokers, upstream, kafka):
    topic = kafka.create_topic(unique("ops-status"), 1)
    routes = [{"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": topic}]
    h = handoff_process(base_config(brokers, upstream.port, routes, status={"max_entries": 3, "ttl": "15s"}),
                        name="ops-status-bound")
    ids = []
    for i in range(5):  # commits: the final status is written before the answer, so the order is fixed
        r = h.request("POST", "/c", b"s-%d" % i)
        assert r.status == 200, r
        ids.append(r.header("X-Correlation-ID"))
    got = [h.request("GET", f"/_handoff/requests/{i}").status for i in ids]
    assert got == [404, 404, 200, 200, 200], got
    assert scrape(h).value("handoff_status_entries") == 3
    # And each entry expires after the TTL.
    wait_until(lambda: h.request("GET", f"/_handoff/requests/{ids[-1]}").status == 404, 25, 0.1, "the TTL to pass")


def test_request_bodies_are_bounded_all_together_and_the_excess_is_503_without_reading_it(handoff_process, brokers,
                                                                                         upstream):
    # Two connections may each send a 2 KiB body, but not at once: 3 KiB for all bodies together.
    cfg = base_config(brokers, upstream.port, [], listen={"max_body_bytes": "2KiB", "body_timeout": "20s"},
                      limits={"max_buffered_body_bytes": "3KiB"}, log={"level": "info", "requests": False})
    h = handoff_process(cfg, name="ops-body-bound")
    slow = RawConn(h.port, timeout=20)
    try:
        slow.send(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + b"a" * 100)
        wait_until(lambda: scrape(h).value("handoff_buffered_body_bytes") == 2048, 10, 0.05, "the first body reserved")
        second = RawConn(h.port, timeout=10)
        try:
            second.send(b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n")
            r = second.read_response()
            assert_error(r, 503, "overloaded", require_correlation_id=False)
            assert r.header("Retry-After") == "1", r
            assert second.closed_by_peer(5), "the refused body was not read: the connection must close"
        finally:
            second.close()
        assert not upstream.with_path("/second")
        assert scrape(h).value("handoff_shed_total", reason="buffered_bodies") == 1
        # A body within what is left is still served meanwhile.
        assert h.request("POST", "/small", b"x" * 512).status == 200
        # The first body completes and is forwarded; its share is given back.
        slow.send(b"a" * (2048 - 100))
        assert slow.read_response().status == 200
        wait_until(lambda: scrape(h).value("handoff_buffered_body_bytes") == 0, 10, 0.05, "the shares given back")
        assert h.request("POST", "/second", b"b" * 2048).status == 200
    finally:
        slow.close()
