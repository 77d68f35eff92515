"""Shutdown, native-sidecar lifecycle and admin exposure (tests/CATALOGUE.md, S-3, S-4, S-10, X-2, X-8).

* S-3: the kubelet's SIGTERM followed almost at once by SIGKILL (a native sidecar whose app took the
  whole grace period), under commit and event load recorded by the ledger (tests/ledger): no commit
  2xx is missing from Kafka, and the 202'd events that are missing are at most what Handoff
  metered — `producer_queued_records` in its SIGTERM log line plus what it accepted after it, and the
  `handoff_producer_queue_messages` gauge of the last scrape plus what it accepted after that.
* S-4: while Handoff drains (readiness false, drain.delay not over), the app's commit and event
  calls still succeed (with Connection: close) and land in Kafka.
* S-10: idle keep-alive connections and commits waiting for a report that will never come do not
  hold the exit: closed at once / cut at drain.timeout, exit 0 within drain.timeout + flush_timeout.
* X-2: the admin listener binds 127.0.0.1 by default (not the machine's other addresses) and is
  read-only for every method but GET/HEAD.
* X-8: headers a client may spoof (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id) never become
  the correlation id and never reach an event record unless a route allow-lists them.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import (REPO_ROOT, Handoff, RawConn, base_config, free_port, hdrs, http_request, scrape, to_yaml, unique,
                      wait_until)

sys.path.insert(0, str(REPO_ROOT / "tests" / "ledger"))
import ledger  # noqa: E402  (tests/ledger/ledger.py: the client ledger and the checker)


# --------------------------------------------------------------------------------------------
# S-3: SIGTERM, then SIGKILL almost at once
# --------------------------------------------------------------------------------------------
class Scraper:
    """Scrapes /metrics every `interval` s as Prometheus would: (time the scrape was sent, queue gauge)."""

    def __init__(self, h: Handoff, interval: float = 0.02):
        self.h, self.interval = h, interval
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                q = scrape(self.h).value("handoff_producer_queue_messages")
            except Exception:  # noqa: BLE001 - the process is being killed; the last good sample counts
                return
            self.samples.append((sent, q))
            self.stop.wait(self.interval)


@pytest.mark.timeout_s(120)
def test_s3_sigkill_right_after_sigterm_loses_no_2xx_commit_and_at_most_the_metered_events(brokers, kafka, upstream,
                                                                                          tmp_path):
    commits = kafka.create_topic(unique("s3-commit"), 2)
    events = kafka.create_topic(unique("s3-event"), 2)
    routes = [
        {"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": commits,
         "key": "body:/key", "success_status": 201, "timeout": "10s"},
        {"name": "e", "match": {"methods": ["POST"], "path": "/e"}, "mode": "event", "topic": events,
         "key": "body:/key"},
    ]
    # linger.ms 300: events wait in the producer, so there is something at risk when the SIGKILL comes.
    cfg = base_config(brokers, upstream.port, routes, listen={"threads": 2},
                      log={"level": "info", "requests": False}, drain={"delay": "5s", "timeout": "5s"},
                      kafka={"properties": {"linger.ms": "300"}})
    path = tmp_path / "s3.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    # Started outside the fixture: it is killed, so the fixture's clean-exit check does not apply.
    h = Handoff("s3", cfg, path, tmp_path / "s3.log", None)
    try:
        h.wait_ready()
        scraper = Scraper(h)
        scraper.thread.start()
        stop = threading.Event()
        clients = {m: ledger.LedgerClient(h.port, concurrency=4, deadline=15.0) for m in ("commit", "event")}
        routes_of = {"commit": ("/c", commits), "event": ("/e", events)}

        def drive(mode):  # batches until stopped, so the load is still running when the signals come
            path, topic = routes_of[mode]
            while not stop.is_set():
                clients[mode].run(ledger.load(path, mode, topic, 400, keys=8, prefix=mode[0]), stop=stop)
        threads = [threading.Thread(target=drive, args=(m,), daemon=True) for m in clients]
        for t in threads:
            t.start()

        def answered(mode, status):
            return sum(1 for e in list(clients[mode].entries) if e.status == status)
        wait_until(lambda: answered("commit", 201) >= 20 and answered("event", 202) >= 500, 30, 0.02,
                   "commit and event load under way")

        t_term = time.monotonic()
        h.proc.send_signal(signal.SIGTERM)
        # "Almost at once": as soon as Handoff has logged the signal (a few ms), always well inside
        # the drain delay (5 s), so that the SIGKILL lands while Handoff drains.
        sig_line = wait_until(lambda: [j for j in h.log_lines_json() if j.get("msg") == "signal received"], 4.0,
                              0.002, "the SIGTERM log line")[0]
        t_kill = time.monotonic()
        h.proc.send_signal(signal.SIGKILL)
        h.proc.wait(10)
        stop.set()
        scraper.stop.set()
        for t in threads:
            t.join(30)
        scraper.thread.join(10)
        assert not any(t.is_alive() for t in threads), "a ledger client did not finish"
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait(10)
        h._log.close()

    entries = clients["commit"].entries + clients["event"].entries
    records = ledger.read_topics(brokers, [commits, events], timeout=60)
    rep = ledger.check(entries, records)
    print(f"S-3 ledger: {rep}")
    # Commits: every 2xx is in Kafka where it said; nothing waited past its deadline (SIGKILL closes).
    assert not rep.acked_missing and not rep.ack_mismatch, rep
    assert not rep.hung, rep
    assert not rep.order_violations and not rep.failed_but_present, rep

    # Events: what is missing is bounded by what Handoff metered.
    found = {r.correlation_id for r in records}
    accepted = [e for e in clients["event"].entries if e.status == 202]
    missing = [e for e in accepted if e.correlation_id not in found]
    queued_at_sigterm = int(sig_line["producer_queued_records"])
    after_sigterm = sum(1 for e in accepted if e.done_at > t_term)
    scrapes = [s for s in scraper.samples if s[0] < t_kill]
    assert scrapes, "no /metrics scrape before the SIGKILL"
    last_sent, last_queue = scrapes[-1]
    after_scrape = sum(1 for e in accepted if e.done_at > last_sent)
    print(f"S-3 events: {len(accepted)} answered 202, {len(missing)} missing after SIGKILL; metered: "
          f"{queued_at_sigterm} queued at SIGTERM (+{after_sigterm} accepted after it), gauge {int(last_queue)} at "
          f"the last scrape {t_kill - last_sent:.3f}s before the kill (+{after_scrape} accepted after it)")
    assert queued_at_sigterm + after_sigterm > 0, "nothing was at risk: the test would show nothing"
    assert len(missing) <= queued_at_sigterm + after_sigterm, \
        "more 202'd events lost than the SIGTERM log line metered"
    assert len(missing) <= last_queue + after_scrape, "more 202'd events lost than the queue gauge metered"


# --------------------------------------------------------------------------------------------
# S-4: produce routes keep working during the drain window
# --------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_s4_commit_and_event_calls_succeed_while_handoff_drains(handoff_process, brokers, upstream, kafka):
    commits = kafka.create_topic(unique("s4-commit"), 1)
    events = kafka.create_topic(unique("s4-event"), 1)
    routes = [
        {"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": commits,
         "success_status": 201},
        {"name": "e", "match": {"methods": ["POST"], "path": "/e"}, "mode": "event", "topic": events},
    ]
    h = handoff_process(base_config(brokers, upstream.port, routes, drain={"delay": "8s", "timeout": "5s"},
                                    log={"level": "info", "requests": False}), name="s4-drain")
    t_term = time.monotonic()
    h.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: h.admin_get("/readyz", 1.0).status == 503, 2.0, 0.01, "readiness false after SIGTERM")
    answers = []
    while time.monotonic() - t_term < 5.0 and len(answers) < 20:  # well inside drain.delay (8 s)
        i = len(answers)
        c = h.request("POST", "/c", b'{"n": %d}' % i, {"X-Correlation-ID": f"s4c-{i}-{unique('x')}"}, timeout=5)
        e = h.request("POST", "/e", b'{"n": %d}' % i, {"X-Correlation-ID": f"s4e-{i}-{unique('x')}"}, timeout=5)
        answers.append((c, e))
    assert len(answers) >= 5, f"only {len(answers)} rounds inside the drain window"
    for c, e in answers:
        assert c.status == 201 and e.status == 202, (c, e)
        assert (c.header("Connection") or "").lower() == "close", c
        assert (e.header("Connection") or "").lower() == "close", e
    assert h.proc.wait(20) == 0
    # The 201s name their records; the 202s are all in Kafka after the flush.
    for c, _ in answers:
        j = c.json()
        m = kafka.at(commits, j["partition"], j["offset"])
        assert hdrs(m)["ce_id"] == j["request_id"].encode()
        assert hdrs(m)["handoff_correlation_id"] == c.header("X-Correlation-ID").encode()
    got = {hdrs(m)["ce_id"] for m in kafka.read(events, None, timeout=20)}
    assert {e.json()["request_id"].encode() for _, e in answers} <= got


# --------------------------------------------------------------------------------------------
# S-10: drain completion with idle connections and commits that wait forever
# --------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_s10_idle_keepalives_and_stuck_commits_do_not_hold_the_exit_beyond_the_configured_bounds(tmp_path, upstream):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: no delivery report until message.timeout.ms (60 s)
    routes = [{"name": "c", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit", "topic": "s10",
               "timeout": "30s"}]
    drain_timeout, flush_timeout = 2.0, 2.0
    cfg = base_config(dead, upstream.port, routes, drain={"delay": "0s", "timeout": f"{int(drain_timeout)}s"},
                      kafka={"brokers": dead, "flush_timeout": f"{int(flush_timeout)}s",
                             "properties": {"linger.ms": "1", "message.timeout.ms": "60000"}})
    path = tmp_path / "s10.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    h = Handoff("s10", cfg, path, tmp_path / "s10.log", None)
    idle, waiting, results = [], [], {}
    try:
        h.wait_live()
        for i in range(10):  # keep-alive connections that served one request and now sit idle
            c = RawConn(h.port, timeout=10)
            c.send(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 200
            idle.append(c)
        for i in range(5):  # commits that will wait for their report until the route timeout (30 s)
            cid = f"s10-{i}-{unique('c')}"
            c = RawConn(h.port, timeout=20)
            c.send(b"POST /c HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: " + cid.encode() +
                   b"\r\nContent-Length: 2\r\n\r\n{}")
            waiting.append((cid, c))
        wait_until(lambda: scrape(h).value("handoff_inflight_commits") == 5, 10, 0.05, "5 commits waiting")

        def read(cid, c):
            try:
                results[cid] = c.read_response().status
            except (ConnectionError, OSError) as e:
                results[cid] = repr(e)
        readers = [threading.Thread(target=read, args=w, daemon=True) for w in waiting]
        for t in readers:
            t.start()
        t_term = time.monotonic()
        h.proc.send_signal(signal.SIGTERM)
        # Idle connections are closed when the listener stops (drain.delay 0), not at the drain timeout.
        for c in idle:
            assert c.closed_by_peer(timeout=1.5), "an idle keep-alive connection was not closed promptly"
        code = h.proc.wait(drain_timeout + flush_timeout + 5)
        elapsed = time.monotonic() - t_term
        for t in readers:
            t.join(5)
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait(10)
        h._log.close()
        for c in idle + [c for _, c in waiting]:
            c.close()
    assert code == 0, h.log_tail()
    # Bounded by the config (plus process teardown: LeakSanitizer scans at exit in the ASan stage).
    assert elapsed < drain_timeout + flush_timeout + 5, f"exit took {elapsed:.2f}s"
    assert elapsed >= drain_timeout - 0.2, f"exit after {elapsed:.2f}s: the waiting commits were not given drain.timeout"
    # The stuck commits were cut: never a 2xx; the connection closed (or a 5xx).
    assert len(results) == 5, results
    assert all(not (isinstance(s, int) and 200 <= s < 300) for s in results.values()), results
    logs = h.log_lines_json()
    assert [j for j in logs if j.get("msg") == "drain timeout: closing remaining connections"], h.log_tail()
    undelivered = [j for j in logs if j.get("msg") == "records not delivered before exit"]
    assert undelivered and set(undelivered[0]["correlation_ids"]) == set(results), h.log_tail()


# --------------------------------------------------------------------------------------------
# the admin listener
# --------------------------------------------------------------------------------------------
def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp and tcp6 (state 0A)."""
    out = set()
    for f, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            addr, p = parts[1].split(":")
            if int(p, 16) != port or parts[3] != "0A":
                continue
            raw = bytes.fromhex(addr)  # 32-bit words in host (little-endian) order
            if v6:
                out.add(socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))
            else:
                out.add(socket.inet_ntoa(raw[::-1]))
    return out


def _non_loopback_ipv4() -> str | None:
    """This machine's address on its default route (the 'pod IP'), or None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.254", 9))  # no packet is sent: only the route is looked up
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


@pytest.mark.timeout_s(40)
def test_x2_admin_binds_loopback_by_default_is_unreachable_on_the_pod_ip_and_read_only(handoff_process, brokers,
                                                                                      upstream):
    cfg = base_config(brokers, upstream.port, [], listen={"address": "0.0.0.0"})
    cfg["admin"] = {"port": free_port()}  # no address: the default applies
    h = handoff_process(cfg, name="x2-admin")
    assert _listening_addresses(h.admin_port) == {"127.0.0.1"}
    assert h.admin_get("/healthz").status == 200
    ip = _non_loopback_ipv4()
    if ip is not None:
        # The main listener (0.0.0.0) answers on that address, so the address itself is reachable ...
        assert http_request(h.port, "GET", "/x", host=ip, timeout=5).status == 200
        # ... but the admin listener does not.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, h.admin_port), timeout=5).close()
    # Nothing on the admin listener mutates state: every other method is 405 on every endpoint.
    for p in ("/healthz", "/readyz", "/metrics", "/config", "/anything"):
        for m in ("POST", "PUT", "DELETE", "PATCH"):
            r = http_request(h.admin_port, m, p, b"{}")
            assert r.status == 405 and r.header("Allow") == "GET, HEAD", (m, p, r)
    assert h.admin_get("/readyz").status == 200  # still ready: nothing changed


# --------------------------------------------------------------------------------------------
# spoofable forwarding headers
# --------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(40)
def test_x8_spoofed_forwarding_headers_never_become_the_correlation_id_or_enter_a_record(handoff_process, brokers,
                                                                                       upstream, kafka):
    topic = kafka.create_topic(unique("x8"), 1)
    routes = [{"name": "e", "match": {"methods": ["POST"], "path": "/e"}, "mode": "event", "topic": topic,
               "headers": ["X-Tenant"]},
              {"name": "f", "match": {"methods": ["GET"], "path": "/f/{id}"}, "mode": "forward"}]
    h = handoff_process(base_config(brokers, upstream.port, routes), name="x8")
    spoof = [("X-Forwarded-For", "10.0.0.1, 169.254.169.254"), ("X-Forwarded-Proto", "https"),
             ("X-Forwarded-Host", "admin.internal"), ("X-Request-Id", "spoofed-request-id"), ("X-Tenant", "acme")]
    r = h.request("POST", "/e", b"{}", spoof)
    assert r.status == 202, r
    cid = r.header("X-Correlation-ID")
    assert cid and cid != "spoofed-request-id"
    m = kafka.find(topic, cid)
    names = {k.lower() for k in hdrs(m)}
    assert not names & {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}, names
    assert b"spoofed-request-id" not in b"".join(hdrs(m).values()) and b"169.254" not in b"".join(hdrs(m).values())
    assert hdrs(m)["x-tenant"] == b"acme"
    # Forward: X-Forwarded-Proto is Handoff's own, the real peer is appended last to X-Forwarded-For,
    # the correlation id is Handoff's (a spoofed invalid one is refused before anything is forwarded).
    tag = unique("x8f")
    r = h.request("GET", f"/f/{tag}", None, spoof + [("X-Test-Tag", tag)])
    assert r.status == 200, r
    got = upstream.with_header("X-Test-Tag", tag)[0]
    assert got.header_all("X-Forwarded-Proto") == ["http"]
    assert [p.strip() for p in ",".join(got.header_all("X-Forwarded-For")).split(",")][-1] == "127.0.0.1"
    assert got.header("X-Correlation-ID") == r.header("X-Correlation-ID") != "spoofed-request-id"
    bad = h.request("GET", f"/f/{tag}-bad", None, [("X-Correlation-ID", "x" * 129)])
    assert bad.status == 400 and not upstream.with_path(f"/f/{tag}-bad"), bad
