"""Admin endpoints, Prometheus metrics after known traffic, request logs, /config redaction.

/metrics is parsed with prometheus_client's text-format parser (a real Prometheus parser) and the
values are checked exactly against the traffic this module sent to its own handoff instance.
"""
from __future__ import annotations

import pytest

from conftest import base_config, http_request, scrape, unique, wait_until

SECRET = "s3cr3t-" + "p4ss"


@pytest.fixture(scope="module")
def topic(kafka):
    return kafka.create_topic(unique("ops-metrics"), 1)


@pytest.fixture(scope="module")
def orders_topic(kafka):
    # The commit route's topic is a template: orders-<region>.<suffix>; one region is used.
    suffix = unique("m")
    kafka.create_topic(f"ops-eu.{suffix}", 1)
    return suffix


@pytest.fixture(scope="module")
def h(handoff_process, brokers, upstream, topic, orders_topic):
    routes = [
        {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
        {"name": "create-order", "match": {"methods": ["POST"], "path": "/orders/{region}"}, "mode": "commit",
         "topic": "ops-{region}." + orders_topic, "key": "correlation", "success_status": 201},
        {"name": "audit", "match": {"methods": ["POST"], "path": "/audit"}, "mode": "event", "topic": topic,
         "max_body_bytes": "1KiB"},
    ]
    cfg = base_config(brokers, upstream.port, routes,
                      kafka={"properties": {"linger.ms": "1", "sasl.password": SECRET,
                                            "ssl.key.password": SECRET}})
    return handoff_process(cfg, name="ops-metrics")


def test_admin_endpoints_answer_and_are_read_only(h):
    r = h.admin_get("/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    r = h.admin_get("/readyz")
    assert r.status == 200 and r.json()["status"] == "ready", r
    r = h.admin_get("/nope")
    assert r.status == 404, r
    r = http_request(h.admin_port, "POST", "/readyz", b"x")
    assert r.status == 405 and "GET" in (r.header("Allow") or ""), r


def test_config_endpoint_shows_the_effective_config_with_secrets_redacted(h):
    r = h.admin_get("/config")
    assert r.status == 200, r
    assert SECRET.encode() not in r.body, r.body
    j = r.json()
    props = j["kafka"]["properties"]
    assert props["sasl.password"] == "<redacted>" and props["ssl.key.password"] == "<redacted>", props
    assert props["linger.ms"] == "1"
    assert [x["name"] for x in j["routes"]] == ["get-order", "create-order", "audit"]
    assert j["listen"]["port"] == h.port and j["admin"]["port"] == h.admin_port
    assert {"drain", "limits", "status", "log"} <= set(j)
    # And the secret never reaches the log either.
    assert SECRET not in h.log_text()


def test_metrics_after_known_traffic_are_exact(h, upstream, kafka, topic):
    before = scrape(h)
    for g in ("handoff_inflight_commits", "handoff_connections", "handoff_producer_queue_messages",
              "handoff_producer_queue_bytes", "handoff_status_entries"):
        assert before.families[g].type == "gauge", g

    upstream.script("/orders/broken", action="close")
    commits, events = 6, 4
    for i in range(5):
        assert h.request("GET", f"/orders/{i}").status == 200
    assert h.request("GET", "/orders/broken").status == 502                      # get-order 5xx
    for i in range(3):
        assert h.request("GET", f"/unrouted/{i}").status == 200                 # (unmatched) 2xx
    for _ in range(2):
        assert h.request("DELETE", "/audit").status == 405                      # (unmatched) 4xx
    ids = []
    for i in range(commits):
        r = h.request("POST", "/orders/eu", b'{"n": %d}' % i, {"Content-Type": "application/json"})
        assert r.status == 201, r
        ids.append(r.header("X-Correlation-ID"))
    for i in range(events):
        r = h.request("POST", "/audit", b"event-%d" % i)
        assert r.status == 202, r
        ids.append(r.header("X-Correlation-ID"))
    assert h.request("POST", "/audit", b"x" * 2000).status == 413                # audit 4xx
    assert h.request("GET", f"/_handoff/requests/{ids[0]}").status == 200        # (status) 2xx
    assert h.request("GET", "/_handoff/requests/unknown-id").status == 404      # (status) 4xx

    orders_label = h.cfg["routes"][1]["topic"]
    # Events are acknowledged before Kafka persisted them: wait for their delivery reports.
    wait_until(lambda: scrape(h).value("handoff_produce_total", topic=topic, outcome="persisted")
               - before.value("handoff_produce_total", topic=topic, outcome="persisted") == events,
               20, 0.1, "every event's delivery report")
    m = scrape(h)
    # (prometheus_client names a counter family without its _total suffix)
    assert m.families["handoff_requests"].type == "counter"
    assert m.families["handoff_produce"].type == "counter"
    assert m.families["handoff_request_duration_seconds"].type == "histogram"
    assert m.families["handoff_delivery_report_seconds"].type == "histogram"

    def delta(name, **labels):
        return m.value(name, **labels) - before.value(name, **labels)

    expected_requests = {
        ("get-order", "forward", "2xx"): 5,
        ("get-order", "forward", "5xx"): 1,
        ("(unmatched)", "forward", "2xx"): 3,
        ("(unmatched)", "forward", "4xx"): 2,
        ("create-order", "commit", "2xx"): commits,
        ("audit", "event", "2xx"): events,
        ("audit", "event", "4xx"): 1,
        ("(status)", "forward", "2xx"): 1,
        ("(status)", "forward", "4xx"): 1,
    }
    for (route, mode, cls), n in expected_requests.items():
        got = delta("handoff_requests_total", route=route, mode=mode, status_class=cls)
        assert got == n, f"requests_total{{route={route},mode={mode},status_class={cls}}}: {got} != {n}"
    assert delta("handoff_requests_total", route="create-order", mode="commit", status_class="5xx") == 0
    # Nothing else was counted.
    assert m.total("handoff_requests_total") - before.total("handoff_requests_total") == \
        sum(expected_requests.values())

    # The histogram's _count matches the requests of the route; buckets are cumulative.
    assert delta("handoff_request_duration_seconds_count", route="create-order", mode="commit") == commits
    assert delta("handoff_request_duration_seconds_bucket", route="create-order", mode="commit", le="+Inf") == commits
    assert delta("handoff_request_duration_seconds_count", route="get-order", mode="forward") == 6
    assert delta("handoff_request_duration_seconds_sum", route="create-order", mode="commit") > 0
    buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in m.samples.items()
                      if n == "handoff_request_duration_seconds_bucket"
                      and dict(ls).get("route") == "create-order"), key=lambda x: x[0])
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), buckets

    # Produce outcomes by topic TEMPLATE: every commit answered 201 was persisted.
    assert delta("handoff_produce_total", topic=orders_label, outcome="persisted") == commits
    assert m.total("handoff_produce_total", topic=orders_label) - before.total("handoff_produce_total",
                                                                               topic=orders_label) == commits
    assert delta("handoff_delivery_report_seconds_count", topic=orders_label) == commits
    assert delta("handoff_delivery_report_seconds_count", topic=topic) == events
    # (closed before any response byte: "upstream_unavailable")
    assert delta("handoff_upstream_errors_total", kind="upstream_unavailable") == 1
    assert m.total("handoff_upstream_errors_total") - before.total("handoff_upstream_errors_total") == 1

    # Gauges: nothing in flight now; one status entry per produced record.
    assert m.value("handoff_inflight_commits") == 0
    assert m.value("handoff_producer_queue_messages") == 0
    assert m.value("handoff_status_entries") == commits + events
    assert m.value("handoff_undelivered_records_total") == 0


def test_one_json_log_line_per_request_with_the_outcome(h):
    cid = unique("logline")
    marker = unique("BODYMARKER")
    r = h.request("POST", "/orders/eu", b'{"m": "%s"}' % marker.encode(), {"X-Correlation-ID": cid})
    assert r.status == 201, r
    body = r.json()

    def line():
        return [x for x in h.log_lines_json() if x.get("msg") == "request" and x.get("correlation_id") == cid]

    lines = wait_until(line, 5, 0.05, "the request log line")
    assert len(lines) == 1, lines
    ln = lines[0]
    assert ln["route"] == "create-order" and ln["mode"] == "commit" and ln["status"] == 201, ln
    assert ln["topic"] == body["topic"] and ln["partition"] == body["partition"] and ln["offset"] == body["offset"]
    assert isinstance(ln["duration_ms"], (int, float)) and ln["duration_ms"] >= 0, ln
    assert ln["level"] == "info" and ln["time"].endswith("Z"), ln
    # No bodies in logs.
    assert marker not in h.log_text()


def test_log_requests_false_writes_no_request_lines(handoff_process, brokers, upstream):
    cfg = base_config(brokers, upstream.port, [], log={"level": "info", "requests": False})
    q = handoff_process(cfg, name="ops-no-request-log")
    cid = unique("quiet")
    assert q.request("GET", "/x", headers={"X-Correlation-ID": cid}).status == 200
    assert scrape(q).value("handoff_requests_total", route="(unmatched)", mode="forward", status_class="2xx") == 1
    assert q.stop() == 0  # request lines are batched: a clean stop writes whatever is held
    assert [x for x in q.log_lines_json() if x.get("msg") == "stopped"], q.log_tail()
    assert not [x for x in q.log_lines_json() if x.get("msg") == "request"], q.log_tail()
    assert cid not in q.log_text()


def test_the_admin_listener_serves_bursts_of_connections_with_several_io_threads(handoff_process, brokers, upstream):
    # Each admin connection is accepted onto a strand of its own; with more than one io thread a
    # wrong accept pattern frees that strand twice (an ASan report that aborts the process: the CI's
    # sanitizer stage runs this test against the ASan build).
    import threading
    h = handoff_process(base_config(brokers, upstream.port, [], listen={"threads": 4},
                                    log={"level": "warn", "requests": False}), name="admin-burst")
    failures: list = []

    def client():
        for _ in range(40):
            try:
                r = h.admin_get("/healthz", 10.0)
                if r.status != 200:
                    failures.append(r)
            except Exception as e:  # noqa: BLE001 - counted
                failures.append(e)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:5]
    assert h.proc.poll() is None, h.log_tail()
