"""Limits and slow clients (tests/CATALOGUE.md, L-1..L-7), scaled down to fit CI.

Every test samples the handoff process's file descriptors (/proc/PID/fd) and RSS (/proc/PID/status)
and asserts bounds; waiting is always a polled condition with a deadline, never a blind sleep used
as synchronisation (the dribbling clients pace themselves, which is the load, not a wait).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from conftest import (RawConn, assert_error, base_config, http_request, request_id, rss_bytes, scrape, unique,
                      wait_until)

MiB = 1024 * 1024
RSS_CEILING = 256 * MiB


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """Samples FD count and RSS of a process every 50 ms in a thread (tests/CATALOGUE.md, "Shared harness")."""

    def __init__(self, pid: int):
        self.pid = pid
        self.max_fds = fd_count(pid)
        self.max_rss = rss_bytes(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.max_fds = max(self.max_fds, fd_count(self.pid))
                self.max_rss = max(self.max_rss, rss_bytes(self.pid))
            except (FileNotFoundError, ProcessLookupError, AssertionError):
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


ROUTES = [
    {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
    {"name": "small", "match": {"methods": ["POST"], "path": "/small"}, "mode": "event",
     "topic": "limits.small", "key": "correlation", "max_body_bytes": "1KiB"},
    {"name": "large", "match": {"methods": ["POST"], "path": "/large/{id}"}, "mode": "forward",
     "max_body_bytes": "4MiB"},
]


def limits_config(brokers, upstream, **listen) -> dict:
    return base_config(brokers, upstream.port, ROUTES,
                       listen={"header_timeout": "1s", "body_timeout": "1s", "idle_timeout": "3s",
                               "write_timeout": "1s", "max_header_bytes": "8KiB", "max_body_bytes": "1MiB",
                               "max_connections": 400, **listen},
                       log={"level": "warn", "requests": False})


@pytest.fixture(scope="module")
def limited(handoff_process, brokers, upstream, kafka):
    kafka.create_topic("limits.small", 1)
    return handoff_process(limits_config(brokers, upstream), name="limits")


def served_quickly(h, budget: float = 3.0):
    r = http_request(h.port, "GET", f"/orders/{unique('legit')}", timeout=budget + 3)
    assert r.status == 200, r
    assert r.elapsed < budget, f"a legitimate request took {r.elapsed:.2f}s during the attack"
    return r


def connections(h) -> float:
    return scrape(h).value("handoff_connections")


# ---- L-1 slowloris ------------------------------------------------------------------------
@pytest.mark.timeout_s(90)
def test_L1_slowloris_connections_are_cut_at_the_header_deadline_and_fds_stay_bounded(limited, handoff_process,
                                                                                        brokers, upstream):
    # An instance of its own with a 4 s header deadline: every one of the n connections must be
    # open at once (counted by the gauge) before the first deadline fires, on a busy machine too.
    header_timeout = 4
    h, n = handoff_process(limits_config(brokers, upstream, header_timeout=f"{header_timeout}s"),
                           name="limits-slowloris"), 200
    base_fds = fd_count(h.proc.pid)
    socks = []
    with Sampler(h.proc.pid) as s:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            c.sendall(b"GET /orders/slow HTTP/1.1\r\n")
            socks.append(c)
        wait_until(lambda: connections(h) >= n, header_timeout, what=f"{n} slowloris connections accepted")
        served_quickly(h)
        # Dribble one header byte per connection every 200 ms; the header deadline fires anyway.
        t0 = time.monotonic()
        open_ = set(range(n))
        answered_408 = cut = 0
        while open_ and time.monotonic() - t0 < header_timeout + 7:
            for i in list(open_):
                try:
                    socks[i].sendall(b"X")
                except OSError:
                    cut += 1
                    open_.discard(i)
            for i in list(open_):
                socks[i].settimeout(0.001)
                try:
                    data = socks[i].recv(4096)
                except BlockingIOError:
                    continue
                except socket.timeout:
                    continue
                except OSError:
                    cut += 1
                    open_.discard(i)
                    continue
                if data.startswith(b"HTTP/1.1 408"):
                    answered_408 += 1
                elif data == b"":
                    cut += 1
                open_.discard(i)
            if open_:
                time.sleep(0.2)  # the dribble rate (load shape), not a synchronisation
        elapsed = time.monotonic() - t0
        assert not open_, f"{len(open_)} slowloris connections still open after {elapsed:.1f}s (header_timeout {header_timeout}s)"
        # 408 or a plain close: Beast's tcp_stream closes the socket when its deadline fires.
        assert answered_408 + cut == n
        wait_until(lambda: connections(h) == 0, 10, what="the connection gauge back to 0")
        served_quickly(h)
    for c in socks:
        c.close()
    wait_until(lambda: fd_count(h.proc.pid) <= base_fds + 5, 10, what="FD count back to baseline")
    assert s.max_fds <= base_fds + n + 20, f"FDs peaked at {s.max_fds} (baseline {base_fds})"
    assert s.max_rss < RSS_CEILING


# ---- L-2 slow body ------------------------------------------------------------------------
def test_L2_a_slow_body_is_cut_at_the_body_deadline(limited, upstream):
    h = limited
    tag = unique("slowbody")
    c = RawConn(h.port, timeout=10)
    t0 = time.monotonic()
    try:
        c.send(f"POST /big/{tag} HTTP/1.1\r\nHost: x\r\nContent-Length: {MiB}\r\n\r\n".encode())
        ended = False
        while not ended and time.monotonic() - t0 < 6:
            try:
                c.send(b"x")  # one byte per 250 ms
            except OSError:
                break
            c.sock.settimeout(0.25)
            try:
                ended = not c._fill() or bool(c.buf)
            except socket.timeout:
                continue
            except OSError:
                ended = True
        elapsed = time.monotonic() - t0
        assert elapsed < 4, f"the body deadline (1 s) did not fire within {elapsed:.1f}s"
        # 408 when the proxy could still answer, else a plain close (Beast closes on its deadline).
        if c.buf:
            c.sock.settimeout(5)
            assert_error(c.read_response(), 408, "request_timeout")
        assert c.closed_by_peer(5)
    finally:
        c.close()
    assert not upstream.matching(lambda q: tag in q.target)


# ---- L-3 slow reader ----------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_L3_a_client_that_never_reads_is_closed_by_the_write_deadline(limited, upstream):
    h = limited
    big = f"/orders/big-{unique('r')}"
    upstream.script(big, status=200, headers=[("Content-Type", "application/octet-stream")], body=b"z" * (8 * MiB))
    base_fds = fd_count(h.proc.pid)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(10)
    c.connect(("127.0.0.1", h.port))
    with Sampler(h.proc.pid) as s:
        c.sendall(f"GET {big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: upstream.with_path(big), 10, what="the request forwarded")
        # The client never reads: the proxy's write blocks on a full window until write_timeout (1 s).
        wait_until(lambda: connections(h) == 0, 15, what="the slow reader's connection closed by the write deadline")
        served_quickly(h)
    c.close()
    wait_until(lambda: fd_count(h.proc.pid) <= base_fds + 2, 10, what="FD count back to baseline")
    assert s.max_rss < RSS_CEILING, s.max_rss


def test_L3_an_idle_keep_alive_connection_is_closed_at_idle_timeout_and_not_before(limited, upstream):
    """listen.idle_timeout (3 s here) bounds the wait for a connection's next request, from its
    accept and after each answer; a connection that sends its next request within it stays open."""
    h = limited
    c = RawConn(h.port, timeout=15)
    try:
        for i in range(2):
            if i:
                time.sleep(2)  # idle for 2 s of the 3: the connection must still serve the next request
            c.send(f"GET /orders/{unique('idle')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert c.read_response().status == 200
            answered = time.monotonic()
        assert c.sock.recv(1) == b"", "an idle connection got bytes instead of being closed"
        waited = time.monotonic() - answered
        assert 2.5 <= waited <= 3.0 + 2.0, f"closed after {waited:.2f} s idle of a 3 s idle_timeout"
    finally:
        c.sock.close()
    silent = socket.create_connection(("127.0.0.1", h.port), timeout=15)
    try:
        opened = time.monotonic()
        assert silent.recv(1) == b""
        waited = time.monotonic() - opened
        assert 2.5 <= waited <= 3.0 + 2.0, f"a connection that never sent a byte closed after {waited:.2f} s"
    finally:
        silent.close()


# ---- L-4 header size and count ------------------------------------------------------------
@pytest.mark.parametrize("size", [8 * 1024 + 1, 60 * 1024, MiB], ids=["8KiB+1", "60KiB", "1MiB"])
def test_L4_a_head_over_max_header_bytes_is_431_and_closed(limited, upstream, size):
    h = limited
    tag = unique("hdr")
    prefix = f"GET /orders/{tag} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode()
    data = prefix + b"a" * (size - len(prefix) - 4) + b"\r\n\r\n"
    assert len(data) == size
    c = RawConn(h.port, timeout=10)
    try:
        t = threading.Thread(target=lambda: _send_quietly(c, data), daemon=True)
        t.start()
        r = c.read_response()
        assert_error(r, 431, "headers_too_large", require_correlation_id=False)
        assert c.closed_by_peer(5)
        t.join(10)
    finally:
        c.close()
    assert not upstream.matching(lambda q: tag in q.target)


def _send_quietly(c: RawConn, data: bytes):
    try:
        c.send(data)
    except OSError:
        pass  # the proxy closed after answering: the rest of a 1 MiB head is never read


def test_L4_a_head_exactly_at_max_header_bytes_is_served(limited, upstream):
    h = limited
    tag = unique("hdr-ok")
    prefix = f"GET /orders/{tag} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode()
    data = prefix + b"a" * (8 * 1024 - len(prefix) - 4) + b"\r\n\r\n"
    c = RawConn(h.port)
    try:
        c.send(data)
        assert c.read_response().status == 200
    finally:
        c.close()


# 90: the test upstream (Python http.server) refuses more than 100, and `forward` adds a few.
@pytest.mark.parametrize("count,status", [(90, 200), (101, 400), (10_000, 431)])
def test_L4_header_count_is_bounded(limited, upstream, count, status):
    h = limited
    tag = unique("many")
    fields = "".join(f"X-H{i}: v\r\n" for i in range(count - 1))  # + Host
    c = RawConn(h.port, timeout=10)
    try:
        t = threading.Thread(target=lambda: _send_quietly(
            c, f"GET /orders/{tag} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode()), daemon=True)
        t.start()
        r = c.read_response()
        assert r.status == status, r
        if status != 200:
            assert c.closed_by_peer(5)
            assert not upstream.matching(lambda q: tag in q.target)
        t.join(10)
    finally:
        c.close()


# ---- L-5 bodies ---------------------------------------------------------------------------
@pytest.mark.parametrize("size,status", [(1023, 202), (1024, 202), (1025, 413)])
def test_L5_body_at_the_route_limit(limited, kafka, size, status):
    h = limited
    cid = unique("lim")
    r = http_request(h.port, "POST", "/small", b"b" * size, {"X-Correlation-ID": cid})
    assert r.status == status, r
    if status == 413:
        assert_error(r, 413, "body_too_large")
        assert "request_id" in r.json() and h.request("GET", f"/_handoff/requests/{r.json()['request_id']}").status == 404
    else:
        assert kafka.find("limits.small", request_id(r)).value() == b"b" * size


def test_L5_a_route_limit_above_the_listener_default_admits_a_larger_declared_body(limited, upstream):
    """Beast's own 1 MB default must not refuse (as a 400) what the route allows."""
    tag = unique("large")
    body = b"L" * (2 * MiB)
    r = http_request(limited.port, "POST", f"/large/{tag}", body, timeout=20)
    assert r.status == 200, r
    got = upstream.matching(lambda q: tag in q.target)
    assert len(got) == 1 and got[0].body == body
    c = RawConn(limited.port, timeout=10)
    try:
        c.send(f"POST /large/{tag}-over HTTP/1.1\r\nHost: x\r\nContent-Length: {4 * MiB + 1}\r\n\r\n".encode())
        assert_error(c.read_response(), 413, "body_too_large")
    finally:
        c.close()


@pytest.mark.parametrize("path", ["/small", "/big/declared"])
def test_L5_a_declared_2GiB_body_is_413_at_once_without_sending_it(limited, upstream, path):
    h = limited
    cid = unique("decl")
    c = RawConn(h.port, timeout=5)
    try:
        c.send(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: {cid}\r\nContent-Length: {2 * 1024 ** 3}\r\n\r\n".encode())
        r = c.read_response()
        assert_error(r, 413, "body_too_large")
        assert r.elapsed < 2
        assert c.closed_by_peer(5)
    finally:
        c.close()
    assert h.request("GET", f"/_handoff/requests/{request_id(r)}").status == 404
    assert not upstream.matching(lambda q: q.header("X-Correlation-ID") == cid)


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("path,limit", [("/small", 1024), ("/big/endless", MiB)])
def test_L5_an_endless_chunked_stream_is_aborted_at_the_limit(limited, upstream, path, limit):
    h = limited
    cid = unique("endless")
    c = RawConn(h.port, timeout=10)
    chunk = b"%x\r\n" % 4096 + b"c" * 4096 + b"\r\n"
    sent = 0
    with Sampler(h.proc.pid) as s:
        try:
            c.send(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: {cid}\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n".encode())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and sent < 64 * MiB:
                try:
                    c.send(chunk)
                except OSError:
                    break
                sent += 4096
            r = c.read_response()
        finally:
            c.close()
    assert_error(r, 413, "body_too_large")
    assert sent < limit + 16 * MiB, f"the proxy kept reading {sent} bytes past a {limit} byte limit"
    assert s.max_rss < RSS_CEILING
    assert h.request("GET", f"/_handoff/requests/{request_id(r)}").status == 404
    assert not upstream.matching(lambda q: q.header("X-Correlation-ID") == cid)


# ---- L-6 connection cap -------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_L6_idle_connections_beyond_the_cap_are_refused_and_the_accept_loop_stays_alive(handoff_process, brokers,
                                                                                       upstream):
    cap = 100
    cfg = base_config(brokers, upstream.port, ROUTES, listen={"max_connections": cap, "idle_timeout": "30s"},
                      log={"level": "warn", "requests": False})
    h = handoff_process(cfg, name="limits-cap")
    base_fds = fd_count(h.proc.pid)
    held = []
    with Sampler(h.proc.pid) as s:
        for _ in range(cap):
            held.append(socket.create_connection(("127.0.0.1", h.port), timeout=5))
        wait_until(lambda: connections(h) == cap, 10, what="the cap reached")
        refused = 0
        for _ in range(3 * cap):  # 4x the cap in total
            x = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            x.settimeout(5)
            try:
                if x.recv(1) == b"":
                    refused += 1
            except ConnectionResetError:
                refused += 1
            finally:
                x.close()
        assert refused == 3 * cap
        assert scrape(h).value("handoff_shed_total", reason="connections") >= 3 * cap
        for x in held[: cap // 2]:
            x.close()
        wait_until(lambda: connections(h) <= cap // 2, 10, what="closed connections released")
        served_quickly(h)
    for x in held:
        x.close()
    wait_until(lambda: fd_count(h.proc.pid) <= base_fds + 2, 10, what="FD count back to baseline")
    assert s.max_fds <= base_fds + cap + 10, f"FDs peaked at {s.max_fds} with a cap of {cap} (baseline {base_fds})"


# ---- L-7 overload on commit routes --------------------------------------------------------
@pytest.mark.timeout_s(90)
def test_L7_twice_the_commit_capacity_sheds_503_recovers_and_never_gives_a_false_2xx(handoff_process, brokers,
                                                                                    upstream, kafka):
    capacity, topic = 20, unique("limits-commit")
    kafka.create_topic(topic, 1)
    routes = [{"name": "commit", "match": {"methods": ["POST"], "path": "/c"}, "mode": "commit",
               "topic": topic, "key": "correlation", "timeout": "10s"}]
    # A long linger holds every commit for ~1.5 s in the producer: capacity is the in-flight bound.
    cfg = base_config(brokers, upstream.port, routes, limits={"max_inflight_commits": capacity},
                      kafka={"properties": {"linger.ms": "1500"}}, log={"level": "warn", "requests": False})
    h = handoff_process(cfg, name="limits-overload")
    results: dict[str, object] = {}
    lock = threading.Lock()

    def client(i: int, rounds: int):
        for k in range(rounds):
            cid = f"ov-{i}-{k}-{unique('c')}"
            try:
                r = http_request(h.port, "POST", "/c", json.dumps({"i": i}).encode(), {"X-Correlation-ID": cid},
                                 timeout=20)
            except Exception as e:  # noqa: BLE001 - recorded in the ledger
                r = e
            with lock:
                results[cid] = r

    with Sampler(h.proc.pid) as s:
        threads = [threading.Thread(target=client, args=(i, 3), daemon=True) for i in range(2 * capacity)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    statuses = [getattr(r, "status", None) for r in results.values()]
    assert None not in statuses, [r for r in results.values() if not hasattr(r, "status")][:3]
    assert set(statuses) <= {200, 503}, statuses
    shed = [r for r in results.values() if r.status == 503]
    assert shed, "2x the in-flight bound was never shed"
    for r in shed:
        assert_error(r, 503, "overloaded")
        assert r.header("Retry-After"), r
    assert s.max_rss < RSS_CEILING
    # NF2 / NAL: every 2xx is in the topic, at the partition/offset it named; nothing shed is there.
    ok = {cid: r.json() for cid, r in results.items() if r.status == 200}
    msgs = kafka.read(topic, lambda ms: len(ms) >= len(ok), timeout=30)
    ids = {dict(m.headers() or [])["handoff_correlation_id"].decode(): (m.partition(), m.offset()) for m in msgs}
    for cid, body in ok.items():
        assert ids.get(cid) == (body["partition"], body["offset"]), cid
    assert not set(ids) - set(ok), "a shed (503) request was produced"
    # Recovery: once the load stops, a commit succeeds again within 10 s.
    t0 = time.monotonic()
    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
        http_request(h.port, "POST", "/c", b"{}", timeout=10)), 10, 0.2, "a commit accepted after the overload")
    assert r.json()["outcome"] == "persisted" and time.monotonic() - t0 < 10
