"""HTTP/2 in cleartext (h2c) on the main listener (listen.http2; tests/CATALOGUE.md, H-1..H-13).

Real clients: curl (--http2-prior-knowledge and the HTTP/1.1 Upgrade: h2c), h2load (nghttp2-client),
the Python `h2` library for streams interleaved on one connection, and raw frames on a socket for
the attacks (rapid reset, CONTINUATION flood, SETTINGS and PING floods, HPACK bomb). Every answer
is checked as over HTTP/1.1 (status, JSON error body) and every accepted request against the
records really in Kafka. The attacks are checked against bounds on the handoff process's CPU
(utime+stime from /proc/PID/stat) and memory (VmRSS). Waiting is a polled condition or a socket
read with a deadline, never a blind sleep used as synchronisation.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (UUIDV7_RE, RawConn, Resp, assert_error, base_config, hdrs, http_request, kcat, request_id,
                      rss_bytes, scrape, unique, wait_until)

MiB = 1024 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, \
    REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)

# Bounds of the attacks, on the handoff process: generous, but far below what an unbounded
# server spends on them (20,000 requests, tens of MB of headers or queued frames).
CPU_BOUND_S = 2.0
RSS_GROWTH_BOUND = 50 * MiB


# ---------------------------------------------------------------------------------------------
# Helpers: curl, h2 (the Python library), raw frames, process accounting
# ---------------------------------------------------------------------------------------------
def curl_bin() -> str:
    c = shutil.which("curl")
    if not c:
        pytest.fail("curl not installed")
    return c


def curl(port: int, method: str, path: str, tmp: Path, body: bytes | None = None, headers=(), mode: str = "prior",
         timeout: float = 15) -> tuple[Resp, str]:
    """One request with curl: mode "prior" (--http2-prior-knowledge) or "upgrade" (--http2 over
    http://: HTTP/1.1 with Upgrade: h2c). Returns the final response and curl's %{http_version}."""
    tag = unique("curl")
    body_out, head_out = tmp / f"{tag}.body", tmp / f"{tag}.head"
    argv = [curl_bin(), "-sS", "--max-time", str(timeout), "-X", method, "-o", str(body_out), "-D", str(head_out),
            "-w", "%{http_version}", "--http2-prior-knowledge" if mode == "prior" else "--http2"]
    for k, v in headers:
        argv += ["-H", f"{k}: {v}"]
    if body is not None:
        body_in = tmp / f"{tag}.in"
        body_in.write_bytes(body)
        argv += ["--data-binary", f"@{body_in}"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    p = subprocess.run(argv, capture_output=True, timeout=timeout + 10)
    assert p.returncode == 0, f"curl failed ({p.returncode}): {p.stderr.decode(errors='replace')}"
    heads = head_out.read_bytes().decode("latin-1")
    blocks = [b for b in heads.split("\r\n\r\n") if b.strip().startswith("HTTP/")]
    assert blocks, f"curl wrote no response head: {heads!r}"
    lines = blocks[-1].strip().split("\r\n")
    m = re.match(r"^HTTP/(\S+) (\d{3})", lines[0])
    assert m, lines[0]
    hs = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hs.append((k.strip(), v.strip()))
    r = Resp(int(m.group(2)), "", hs, body_out.read_bytes() if body_out.exists() else b"")
    r.all_heads = blocks  # the 101 of an upgrade, then the HTTP/2 answer
    return r, p.stdout.decode().strip()


class Stream:
    def __init__(self):
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.ended = False
        self.reset: int | None = None  # RST_STREAM error code
        self.answered_at: float | None = None
        self.interim: list[int] = []

    def resp(self) -> Resp:
        return Resp(self.status or 0, "", list(self.headers), bytes(self.body))


class H2Client:
    """One HTTP/2 connection (prior knowledge) driven by the `h2` library: requests on streams of
    their own, answers collected as they come (in arrival order in `order`)."""

    def __init__(self, port: int, timeout: float = 10.0):
        import h2.config
        import h2.connection
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
                                        normalize_outbound_headers=False, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.order: list[int] = []        # stream ids, in the order their answers (HEADERS) arrived
        self.goaway: tuple[int, int] | None = None  # (error code, last stream id)
        self.goaway_at: float | None = None
        self.eof = False
        self.eof_at: float | None = None
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | None = None, headers=(), end_stream: bool = True,
                authority: str | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "http"), (":authority", authority or f"127.0.0.1:{self.port}"),
              (":path", path), *headers]
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, hs, end_stream=end_stream and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end_stream)
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes, end_stream: bool = False):
        self.conn.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def send_trailers(self, sid: int, trailers):
        self.conn.send_headers(sid, list(trailers), end_stream=True)
        self.flush()

    def reset(self, sid: int, code: int = CANCEL):
        self.conn.reset_stream(sid, code)
        self.flush()

    def pump(self, timeout: float = 0.2) -> None:
        import h2.events
        import h2.exceptions
        if self.eof:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof, self.eof_at = True, time.monotonic()
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            raise AssertionError(f"the server sent frames h2 refuses: {e!r}") from None
        now = time.monotonic()
        for ev in events:
            s = self.streams.setdefault(getattr(ev, "stream_id", 0) or 0, Stream())
            if isinstance(ev, h2.events.ResponseReceived):
                s.headers = [(k, v) for k, v in ev.headers if not k.startswith(":")]
                s.status = int(dict(ev.headers)[":status"])
                s.answered_at = now
                self.order.append(ev.stream_id)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                s.interim.append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.DataReceived):
                s.body += ev.data
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except h2.exceptions.StreamClosedError:
                    pass
            elif isinstance(ev, h2.events.StreamEnded):
                s.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                s.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway, self.goaway_at = (int(ev.error_code), ev.last_stream_id), now
        try:
            self.flush()
        except OSError:
            pass

    def until(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; streams: "
                                     f"{ {k: (v.status, v.ended, v.reset) for k, v in self.streams.items()} }, "
                                     f"goaway={self.goaway}, eof={self.eof}")
            if self.eof and not pred():
                raise AssertionError(f"connection closed while waiting for {what}; goaway={self.goaway}")
            self.pump()
        return True

    def response(self, sid: int, timeout: float = 15.0) -> Resp:
        s = self.streams[sid]
        self.until(lambda: (s.status is not None and s.ended) or s.reset is not None, timeout, f"stream {sid}'s answer")
        assert s.reset is None or s.status is not None, f"stream {sid} was reset ({s.reset}) unanswered"
        return s.resp()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid & 0x7FFFFFFF) + payload


def _hint(v: int, prefix: int, flags: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1)."""
    top = (1 << prefix) - 1
    if v < top:
        return bytes([flags | v])
    out = [flags | top]
    v -= top
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _hstr(s: bytes) -> bytes:
    return _hint(len(s), 7) + s


def hblock(method: str, path: str, authority: str, fields=()) -> bytes:
    """A request header block that changes no HPACK state (static-table indices and literals
    without indexing): the same bytes can be sent again and again."""
    out = {"GET": b"\x82", "POST": b"\x83"}.get(method) or (_hint(2, 4) + _hstr(method.encode()))
    out += b"\x86" + _hint(4, 4) + _hstr(path.encode()) + _hint(1, 4) + _hstr(authority.encode())
    for n, v in fields:
        out += b"\x00" + _hstr(n.encode() if isinstance(n, str) else n) + _hstr(v.encode() if isinstance(v, str) else v)
    return out


class RawH2:
    """HTTP/2 frames by hand on a socket, the server's frames read by a thread (when `read`)."""

    def __init__(self, port: int, read: bool = True, rcvbuf: int | None = None, sndbuf: int | None = None,
                 timeout: float = 10.0):
        self.port = port
        self.authority = f"127.0.0.1:{port}"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.frames: list[tuple[float, int, int, int, bytes]] = []  # (time, type, flags, stream, payload)
        self.buf = b""
        self.bytes_in = 0
        self.closed = threading.Event()
        self.closed_at: float | None = None
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = False
        if read:
            self._t = threading.Thread(target=self._reader, daemon=True)
            self._t.start()

    def _parse(self, now: float):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            t, fl = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            with self._lock:
                self.frames.append((now, t, fl, sid, self.buf[9:9 + n]))
            self.buf = self.buf[9 + n:]

    def _reader(self):
        while not self._stop:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_at = time.monotonic()
                self.closed.set()
                return
            self.bytes_in += len(data)
            self.buf += data
            self._parse(time.monotonic())

    def drain(self, timeout: float) -> bool:
        """Without a reader thread: read (and parse) until EOF or the deadline. True at EOF."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                return False
            except OSError:
                data = b""
            if not data:
                self.closed_at = time.monotonic()
                self.closed.set()
                return True
            self.bytes_in += len(data)
            self.buf += data
            self._parse(time.monotonic())
        return False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def start(self, settings: bytes = b"", ack: bool = False) -> bool:
        """The preface and our SETTINGS; `ack`: wait for the server's SETTINGS and acknowledge them."""
        ok = self.send(PREFACE + frame(SETTINGS, 0, 0, settings))
        if ack:
            wait_until(lambda: self.of(SETTINGS, lambda f: not f[2] & ACK), 5, what="the server's SETTINGS")
            ok = self.send(frame(SETTINGS, ACK, 0))
        return ok

    def of(self, ftype: int, pred=lambda f: True) -> list:
        with self._lock:
            return [f for f in self.frames if f[1] == ftype and pred(f)]

    def goaway(self) -> tuple[int, int] | None:
        """(error code, last stream id) of the first GOAWAY received."""
        g = self.of(GOAWAY)
        if not g:
            return None
        p = g[0][4]
        return int.from_bytes(p[4:8], "big"), int.from_bytes(p[0:4], "big") & 0x7FFFFFFF

    def resets(self) -> dict[int, int]:
        return {f[3]: int.from_bytes(f[4][:4], "big") for f in self.of(RST_STREAM)}

    def responses(self) -> dict[int, dict]:
        """Each stream's answer: its :status and fields (HPACK-decoded in order) and its body."""
        import hpack
        dec = hpack.Decoder()
        dec.max_allowed_table_size = 65536
        out: dict[int, dict] = {}
        with self._lock:
            frames = list(self.frames)
        block, block_sid = b"", None
        for _, t, fl, sid, p in frames:
            if t == HEADERS:
                if fl & 0x8:  # PADDED
                    p = p[1:len(p) - p[0]]
                if fl & 0x20:  # PRIORITY
                    p = p[5:]
                block, block_sid = p, sid
            elif t == CONTINUATION:
                block += p
            elif t == DATA:
                if sid in out:
                    out[sid]["body"] += p
                continue
            else:
                continue
            if fl & END_HEADERS:
                fields = dec.decode(block, raw=False)
                d = out.setdefault(block_sid, {"status": None, "headers": [], "body": b""})
                st = [v for k, v in fields if k == ":status"]
                if st and int(st[0]) >= 200:
                    d["status"] = int(st[0])
                    d["headers"] = [(k, v) for k, v in fields if not k.startswith(":")]
        return out

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Cost:
    """The CPU a process spent and the peak of its RSS (sampled every 20 ms) over a block."""

    def __init__(self, pid: int):
        self.pid = pid
        self.rss0 = rss_bytes(pid)
        self.max_rss = self.rss0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.max_rss = max(self.max_rss, rss_bytes(self.pid))
            except (OSError, AssertionError):
                return

    def __enter__(self):
        self.cpu0 = cpu_seconds(self.pid)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        self.rss_growth = self.max_rss - self.rss0

    def assert_bounded(self, what: str):
        assert self.cpu < CPU_BOUND_S, f"{what}: handoff spent {self.cpu:.2f} s of CPU (bound {CPU_BOUND_S} s)"
        assert self.rss_growth < RSS_GROWTH_BOUND, \
            f"{what}: handoff's RSS grew by {self.rss_growth / MiB:.1f} MB (bound {RSS_GROWTH_BOUND / MiB:.0f} MB)"


def assert_cloudevent(msg, rid: str, method: str, path: str, ctype: str = "application/json"):
    h = hdrs(msg)
    assert h.get("ce_specversion") == b"1.0", h
    assert h.get("ce_id") == rid.encode(), h
    assert h.get("ce_source"), h
    assert h.get("ce_type"), h
    assert h.get("ce_time"), h
    assert h.get("content-type") == ctype.encode(), h
    assert h.get("handoff_method") == method.encode(), h
    assert h.get("handoff_path") == path.encode(), h
    assert re.match(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", h.get("traceparent", b"")), h


def served_over_h2(h) -> None:
    """A plain request on a fresh HTTP/2 connection is answered: the server is still healthy."""
    c = H2Client(h.port)
    try:
        r = c.response(c.request("GET", f"/_handoff/requests/{unique('alive')}"))
        assert_error(r, 404, "not_found")
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------
def routes(t: dict) -> list[dict]:
    return [
        {"name": "ev", "match": {"methods": ["POST"], "path": "/ev"}, "mode": "event", "topic": t["ev"],
         "key": "correlation", "headers": ["X-Tenant"]},
        {"name": "bulk", "match": {"methods": ["POST"], "path": "/bulk"}, "mode": "event", "topic": t["bulk"],
         "key": "correlation"},
        {"name": "commit", "match": {"methods": ["POST"], "path": "/commit"}, "mode": "commit", "topic": t["commit"],
         "key": "correlation", "success_status": 201, "timeout": "10s"},
        {"name": "small", "match": {"methods": ["POST"], "path": "/small"}, "mode": "event", "topic": t["small"],
         "key": "correlation", "max_body_bytes": "1KiB"},
        {"name": "fw", "match": {"methods": ["GET", "POST"], "path": "/fw/{x}"}, "mode": "forward"},
    ]


@pytest.fixture(scope="module")
def topics(kafka) -> dict:
    p = unique("h2")
    t = {k: f"{p}.{k}" for k in ("ev", "bulk", "commit", "small")}
    for name in t.values():
        kafka.create_topic(name, 1)
    return t


def h2_config(brokers, upstream, topics, listen=None, http2=None, **over) -> dict:
    return base_config(brokers, upstream.port, routes(topics),
                       listen={"max_header_bytes": "8KiB", "http2": {"enabled": True, **(http2 or {})},
                               **(listen or {})},
                       **{"log": {"level": "info", "requests": True}, **over})


@pytest.fixture(scope="module")
def h2(handoff_process, brokers, upstream, topics):
    """HTTP/2 enabled, default limits but an 8 KiB header list; the request log on."""
    return handoff_process(h2_config(brokers, upstream, topics), name="h2")


@pytest.fixture(scope="module")
def held(handoff_process, brokers, upstream, topics):
    """A producer that lingers 3 s: a commit waits >= 3 s for its acknowledgement."""
    return handoff_process(h2_config(brokers, upstream, topics, kafka={"properties": {"linger.ms": "3000"}}),
                           name="h2-held")


@pytest.fixture(scope="module")
def four(handoff_process, brokers, upstream, topics):
    """max_concurrent_streams 4, and a lingering producer (requests being handled stay for 3 s)."""
    return handoff_process(h2_config(brokers, upstream, topics, http2={"max_concurrent_streams": 4},
                                     kafka={"properties": {"linger.ms": "3000"}}), name="h2-four")


@pytest.fixture(scope="module")
def attacked(handoff_process, brokers, upstream, topics):
    """The attacks' target: a short write timeout, the request log off (it would dominate the CPU)."""
    return handoff_process(h2_config(brokers, upstream, topics, listen={"write_timeout": "2s"},
                                     log={"level": "warn", "requests": False}), name="h2-attacked")


@pytest.fixture(scope="module")
def short(handoff_process, brokers, upstream, topics):
    """Short idle, header and body timeouts."""
    return handoff_process(h2_config(brokers, upstream, topics,
                                     listen={"idle_timeout": "1s", "header_timeout": "1s", "body_timeout": "1s"}),
                           name="h2-timeouts")


@pytest.fixture(scope="module")
def h1only(handoff_process, brokers, upstream, topics):
    """listen.http2.enabled: false: HTTP/1.1 only."""
    return handoff_process(base_config(brokers, upstream.port, routes(topics), listen={"http2": {"enabled": False}}),
                           name="h2-disabled")


def test_H11_http2_is_on_by_default(handoff_process, brokers, upstream, topics, tmp_path):
    """A config that does not mention listen.http2 serves HTTP/2 with prior knowledge and upgrades."""
    h = handoff_process(base_config(brokers, upstream.port, routes(topics)), name="h2-default")
    for mode in ("prior", "upgrade"):
        r, version = curl(h.port, "POST", "/ev", tmp_path, b"{}", JSON, mode=mode)
        assert (r.status, version) == (202, "2"), (mode, r, version)


JSON = [("content-type", "application/json")]


# ---------------------------------------------------------------------------------------------
# H-1 curl, both ways in, every route mode
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["prior", "upgrade"])
def test_H1_curl_event_is_202_over_http2_and_the_record_carries_cloudevents_headers(h2, kafka, topics, tmp_path,
                                                                                     mode):
    """curl --http2-prior-knowledge / --http2 (Upgrade: h2c): %{http_version} 2, 202 with the JSON
    body and Location of HTTP/1.1; the record in Kafka is the body byte for byte with the
    CloudEvents binary-mode headers, the listed X-Tenant copied."""
    body = json.dumps({"via": mode, "n": 1}).encode()
    r, version = curl(h2.port, "POST", "/ev?x=1", tmp_path, body, [("Content-Type", "application/json"),
                                                                   ("X-Tenant", "acme")], mode=mode)
    assert version == "2", f"curl spoke HTTP/{version}"
    if mode == "upgrade":
        assert r.all_heads[0].startswith("HTTP/1.1 101"), r.all_heads
    assert r.status == 202, r
    rid = request_id(r)
    assert UUIDV7_RE.match(rid), rid
    j = r.json()
    assert j["topic"] == topics["ev"] and j["request_id"] == rid and j["status_url"] == f"/_handoff/requests/{rid}", j
    assert r.header("location") == f"/_handoff/requests/{rid}", r
    msg = kafka.find(topics["ev"], rid)
    assert msg.value() == body
    assert_cloudevent(msg, rid, "POST", "/ev")
    assert hdrs(msg).get("handoff_query") == b"x=1"
    assert hdrs(msg).get("x-tenant") == b"acme"


@pytest.mark.parametrize("mode", ["prior", "upgrade"])
def test_H1_curl_commit_is_201_after_the_ack_and_names_the_records_offset(h2, kafka, topics, tmp_path, mode):
    """commit over HTTP/2: 201 (the route's success_status) with outcome persisted, topic,
    partition and offset; the record at that offset is the request's, read back with kcat too."""
    body = json.dumps({"commit": mode}).encode()
    r, version = curl(h2.port, "POST", "/commit", tmp_path, body, [("Content-Type", "application/json")], mode=mode)
    assert version == "2"
    assert r.status == 201, r
    j = r.json()
    assert j["outcome"] == "persisted" and j["topic"] == topics["commit"], j
    msg = kafka.at(j["topic"], j["partition"], j["offset"])
    assert msg.value() == body
    assert_cloudevent(msg, request_id(r), "POST", "/commit")
    k = subprocess.run([kcat(), "-C", "-b", kafka.brokers, "-t", j["topic"], "-p", str(j["partition"]),
                        "-o", str(j["offset"]), "-c", "1", "-e", "-q", "-f", "%h|%s"], capture_output=True, timeout=60)
    assert k.returncode == 0, k.stderr
    assert f"ce_id={request_id(r)}".encode() in k.stdout and k.stdout.endswith(body), k.stdout


@pytest.mark.parametrize("mode", ["prior", "upgrade"])
def test_H1_curl_forward_reaches_the_local_service_over_http11_and_relays_its_answer(h2, upstream, tmp_path, mode):
    """forward over HTTP/2: the upstream gets an HTTP/1.1 request with the method, path, query, Host
    (from :authority) and body; its status, fields and body come back on the stream."""
    tag = unique("fw")
    upstream.script(f"/fw/{tag}", status=207, headers=[("Content-Type", "text/plain"), ("X-Up", "yes")],
                    body=b"from upstream")
    r, version = curl(h2.port, "POST", f"/fw/{tag}?q=2", tmp_path, b"payload-" + tag.encode(),
                      [("Content-Type", "text/plain"), ("X-Test-Tag", tag)], mode=mode)
    assert version == "2"
    assert r.status == 207 and r.body == b"from upstream" and r.header("x-up") == "yes", r
    [got] = upstream.with_header("X-Test-Tag", tag)
    assert got.method == "POST" and got.target == f"/fw/{tag}?q=2" and got.version == "HTTP/1.1", got
    assert got.body == b"payload-" + tag.encode()
    assert got.header("Host") == f"127.0.0.1:{h2.port}", got.headers
    assert not got.has("Upgrade") and not got.has("HTTP2-Settings"), got.headers


@pytest.mark.parametrize("mode", ["prior", "upgrade"])
def test_H1_curl_status_endpoint_reports_the_request_persisted(h2, kafka, topics, tmp_path, mode):
    """GET /_handoff/requests/{id} over HTTP/2: 200 with state persisted for an event that was
    acknowledged; an unknown id is 404 not_found as over HTTP/1.1."""
    r = http_request(h2.port, "POST", "/ev", b"{}", JSON)
    assert r.status == 202, r
    rid = request_id(r)
    kafka.find(topics["ev"], rid)

    def persisted():
        s, v = curl(h2.port, "GET", f"/_handoff/requests/{rid}", tmp_path, mode=mode)
        assert v == "2"
        return s if s.status == 200 and s.json().get("state") == "persisted" else None
    s = wait_until(persisted, 20, 0.2, "the status endpoint to say persisted")
    assert s.json()["request_id"] == rid, s
    nf, v = curl(h2.port, "GET", f"/_handoff/requests/{unique('none')}", tmp_path, mode=mode)
    assert v == "2"
    assert_error(nf, 404, "not_found")


# ---------------------------------------------------------------------------------------------
# H-2 h2load: many streams on few connections
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_H2_h2load_many_concurrent_streams_all_2xx_and_exactly_n_records(h2, kafka, topics, tmp_path):
    """h2load -c 2 -m 32: 2000 POSTs on 64 concurrent streams over 2 connections; h2load's status
    line says every one was 2xx, and the event topic holds exactly 2000 records, each the body."""
    h2load = shutil.which("h2load")
    if not h2load:
        pytest.fail("h2load not installed (Debian nghttp2-client)")
    n = 2000
    body = json.dumps({"load": "h2", "pad": "x" * 70}).encode()
    bf = tmp_path / "body.json"
    bf.write_bytes(body)
    p = subprocess.run([h2load, "-n", str(n), "-c", "2", "-m", "32", "-t", "1", "-d", str(bf),
                        "-H", "content-type: application/json", f"http://127.0.0.1:{h2.port}/bulk"],
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", p.stdout)
    assert m, p.stdout
    assert [int(x) for x in m.groups()] == [n, 0, 0, 0], p.stdout
    assert re.search(rf"requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed, 0 errored", p.stdout), \
        p.stdout
    msgs = kafka.read(topics["bulk"], lambda ms: len(ms) >= n, timeout=60)
    assert len(kafka.read(topics["bulk"])) == n, "not exactly one record per request"
    assert all(m.value() == body for m in msgs)


# ---------------------------------------------------------------------------------------------
# H-3 streams are answered independently
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(60)
def test_H3_a_commit_waiting_for_kafka_does_not_delay_events_on_the_same_connection(held, kafka, topics):
    """linger.ms 3000: the commit on stream 1 waits >= 3 s for its acknowledgement; the events on
    streams 3, 5, ... of the same connection are answered 202 before it, and the commit then 201."""
    c = H2Client(held.port)
    try:
        t0 = time.monotonic()
        commit = c.request("POST", "/commit", b'{"held":true}', JSON)
        events = [c.request("POST", "/ev", b'{"i":%d}' % i, JSON) for i in range(10)]
        assert commit == 1 and events[0] == 3
        for sid in events:
            assert c.response(sid).status == 202, c.streams[sid].resp()
        events_done = time.monotonic() - t0
        r = c.response(commit, timeout=20)
        commit_done = time.monotonic() - t0
        assert r.status == 201 and r.json()["outcome"] == "persisted", r
        assert c.order.index(commit) == len(c.order) - 1, f"answer order {c.order}: the commit was not last"
        assert all(c.order.index(s) < c.order.index(commit) for s in events)
        assert events_done < 2.0, f"the events took {events_done:.2f} s: they waited for the commit"
        assert commit_done >= 2.5, f"the commit answered after {commit_done:.2f} s: it did not wait for linger.ms"
    finally:
        c.close()
    msg = kafka.at(r.json()["topic"], r.json()["partition"], r.json()["offset"])
    assert msg.value() == b'{"held":true}'


# ---------------------------------------------------------------------------------------------
# H-4 errors over HTTP/2, as over HTTP/1.1
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def conn(h2):
    c = H2Client(h2.port)
    yield c
    c.close()


def test_H4_unknown_status_id_is_404_and_a_wrong_method_is_405_with_allow(conn, upstream):
    """404 not_found (status endpoint, unknown id) and 405 method_not_allowed with Allow on a
    matched path, JSON bodies as over HTTP/1.1; the 405 does not reach the upstream."""
    assert_error(conn.response(conn.request("GET", f"/_handoff/requests/{unique('x')}")), 404, "not_found")
    tag = unique("405")
    r = conn.response(conn.request("GET", "/ev", headers=[("x-test-tag", tag)]))
    assert_error(r, 405, "method_not_allowed")
    assert {m.strip() for m in r.header("allow", "").split(",")} == {"POST"}, r
    assert not upstream.with_header("X-Test-Tag", tag)


def test_H4_a_declared_content_length_over_the_route_limit_is_413_at_once(conn, h2, kafka, topics):
    """content-length 2048 on a 1 KiB route: 413 body_too_large on the HEADERS alone (no DATA sent),
    nothing produced; the connection still serves a request at the limit."""
    cid = unique("big")
    sid = conn.request("POST", "/small", None, [("content-length", "2048"), ("x-correlation-id", cid)],
                       end_stream=False)
    r = conn.response(sid, timeout=5)
    j = assert_error(r, 413, "body_too_large")
    assert j["correlation_id"] == cid
    ok = conn.response(conn.request("POST", "/small", b"b" * 1024, [("x-correlation-id", unique("ok"))]))
    assert ok.status == 202, ok
    kafka.find(topics["small"], request_id(ok))
    assert cid.encode() not in {hdrs(m).get("handoff_correlation_id") for m in kafka.read(topics["small"])}


def test_H4_a_body_over_the_route_limit_without_content_length_is_413_as_data_arrives(conn, kafka, topics):
    """No content-length; DATA frames past 1 KiB: 413 body_too_large before the stream ends (the
    rest is never needed), nothing produced."""
    cid = unique("data")
    sid = conn.request("POST", "/small", None, [("x-correlation-id", cid)], end_stream=False)
    conn.send_data(sid, b"a" * 800)
    conn.send_data(sid, b"a" * 800)  # 1600 > 1024; END_STREAM never sent
    r = conn.response(sid, timeout=5)
    assert_error(r, 413, "body_too_large")
    ok = conn.response(conn.request("POST", "/small", b"{}", [("x-correlation-id", unique("ok"))]))
    assert ok.status == 202
    kafka.find(topics["small"], request_id(ok))
    assert cid.encode() not in {hdrs(m).get("handoff_correlation_id") for m in kafka.read(topics["small"])}


def test_H4_a_header_list_over_max_header_bytes_is_431_and_the_connection_stays_usable(conn, h2, upstream):
    """A 20 KB header list (max_header_bytes 8 KiB, RFC 9113 accounting): 431 headers_too_large on
    that stream, not forwarded; the next request on the same connection is served."""
    tag = unique("431")
    before = scrape(h2).value("handoff_http2_events_total", kind="header_list_too_large")
    big = [(f"x-big-{i}", "v" * 1000) for i in range(20)]
    r = conn.response(conn.request("GET", f"/fw/{tag}", headers=[("x-test-tag", tag), *big]))
    assert_error(r, 431, "headers_too_large", require_correlation_id=False)
    assert not upstream.with_header("X-Test-Tag", tag)
    assert not conn.eof and conn.goaway is None
    r2 = conn.response(conn.request("GET", f"/fw/{tag}-after"))
    assert r2.status == 200, r2
    assert scrape(h2).value("handoff_http2_events_total", kind="header_list_too_large") >= before + 1


def test_H4_a_header_list_just_under_the_limit_is_served(conn, upstream):
    """The 431 bound is the header list's size, not a smaller one: ~7 KB of fields are forwarded."""
    tag = unique("under")
    r = conn.response(conn.request("GET", f"/fw/{tag}", headers=[("x-test-tag", tag), ("x-pad", "p" * 7000)]))
    assert r.status == 200, r
    assert upstream.with_header("X-Test-Tag", tag)


@pytest.mark.parametrize("name,value", [("content-length", "2"), ("host", "elsewhere.example"),
                                        ("authorization", "Bearer x")], ids=["content-length", "host", "authorization"])
def test_H4_a_trailer_carrying_framing_routing_or_auth_fields_is_400(conn, kafka, topics, name, value):
    """Trailers (a second header block with END_STREAM) carrying content-length, host or
    authorization: 400 bad_request, nothing produced."""
    cid = unique("trailer")
    sid = conn.request("POST", "/ev", None, [("x-correlation-id", cid), *JSON], end_stream=False)
    conn.send_data(sid, b"{}")
    conn.send_trailers(sid, [(name, value)])
    assert_error(conn.response(sid), 400, "bad_request")
    ok = conn.response(conn.request("POST", "/ev", b"{}", JSON))
    assert ok.status == 202
    kafka.find(topics["ev"], request_id(ok))
    assert cid.encode() not in {hdrs(m).get("handoff_correlation_id") for m in kafka.read(topics["ev"])}


def test_H4_a_harmless_trailer_is_dropped_and_the_request_served(conn, kafka, topics):
    """A trailer that is not framing, routing or auth (x-checksum) does not stop the request."""
    sid = conn.request("POST", "/ev", None, JSON, end_stream=False)
    conn.send_data(sid, b'{"t":1}')
    conn.send_trailers(sid, [("x-checksum", "abc")])
    r = conn.response(sid)
    assert r.status == 202, r
    assert kafka.find(topics["ev"], request_id(r)).value() == b'{"t":1}'


def test_H4_a_host_field_naming_another_authority_than_authority_is_400(conn, upstream):
    """host: other.example beside :authority 127.0.0.1:PORT: 400 bad_request, not forwarded; a host
    equal to :authority is accepted."""
    tag = unique("host")
    r = conn.response(conn.request("GET", f"/fw/{tag}", headers=[("host", "other.example"), ("x-test-tag", tag)]))
    assert_error(r, 400, "bad_request")
    assert not upstream.with_header("X-Test-Tag", tag)
    same = conn.response(conn.request("GET", f"/fw/{tag}", headers=[("host", f"127.0.0.1:{conn.port}")]))
    assert same.status == 200, same


def test_H4_expect_other_than_100_continue_is_417(conn):
    """expect: something-else: 417 expectation_failed."""
    r = conn.response(conn.request("POST", "/ev", b"{}", [("expect", "something-else"), *JSON]))
    assert_error(r, 417, "expectation_failed")


def test_H4_an_invalid_correlation_id_is_400(conn):
    """x-correlation-id with a space: 400 invalid_correlation_id, as over HTTP/1.1."""
    r = conn.response(conn.request("POST", "/ev", b"{}", [("x-correlation-id", "bad id!"), *JSON]))
    assert_error(r, 400, "invalid_correlation_id", require_correlation_id=False)


def test_H4_cookie_fields_are_joined_with_semicolons_when_forwarded(conn, upstream):
    """Two cookie fields (RFC 9113 §8.2.3) reach the HTTP/1.1 upstream as one Cookie: a=1; b=2."""
    tag = unique("cookie")
    r = conn.response(conn.request("GET", f"/fw/{tag}", headers=[("cookie", "a=1"), ("cookie", "b=2"),
                                                                  ("x-test-tag", tag)]))
    assert r.status == 200, r
    [got] = upstream.with_header("X-Test-Tag", tag)
    assert got.header_all("Cookie") == ["a=1; b=2"], got.headers


# ---------------------------------------------------------------------------------------------
# H-5..H-9 attacks, each bounded in CPU and memory
# ---------------------------------------------------------------------------------------------
def _count_records(h, kafka, topic: str) -> int:
    """Records in a single-partition topic once everything sent before is in: a sentinel sent now
    over HTTP/1.1 is found first, then the topic is read up to its high watermark."""
    r = http_request(h.port, "POST", "/ev", b"{}", JSON)
    assert r.status == 202, r
    kafka.find(topic, request_id(r), timeout=30)
    return len(kafka.read(topic))


@pytest.mark.timeout_s(90)
def test_H5_rapid_reset_gets_goaway_and_produces_a_bounded_number_of_records(handoff_process, brokers, upstream,
                                                                              kafka):
    """CVE-2023-44487: 20,000 times HEADERS (END_STREAM, an event route) then RST_STREAM CANCEL, as
    fast as the socket takes them: GOAWAY and close; far fewer than 20,000 records produced (the
    reset burst is 1000 and requests being handled count against max_concurrent_streams); CPU and
    RSS bounded."""
    topic = unique("h2-reset")
    kafka.create_topic(topic, 1)
    cfg = h2_config(brokers, upstream, {"ev": topic, "bulk": topic, "commit": topic, "small": topic},
                    listen={"write_timeout": "2s"}, log={"level": "warn", "requests": False})
    h = handoff_process(cfg, name="h2-rapid-reset")
    n = 20_000
    block = hblock("POST", "/ev", f"127.0.0.1:{h.port}")
    with Cost(h.proc.pid) as cost:
        c = RawH2(h.port)
        try:
            assert c.start()
            chunk = []
            for i in range(n):
                sid = 1 + 2 * i
                chunk.append(frame(HEADERS, END_HEADERS | END_STREAM, sid, block) +
                             frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
                if len(chunk) == 500:
                    if c.goaway() or not c.send(b"".join(chunk)):
                        break
                    chunk = []
            else:
                c.send(b"".join(chunk))
            wait_until(lambda: c.goaway() is not None, 10, what="GOAWAY")
            assert c.closed.wait(10), "the connection stayed open after the GOAWAY"
        finally:
            c.close()
    code, last = c.goaway()
    assert code != NO_ERROR, f"GOAWAY {code}: a flood is an error"
    assert last < 2 * n, last
    produced = _count_records(h, kafka, topic) - 1
    assert produced < 4000, f"{produced} records from a rapid reset of {n} requests"
    cost.assert_bounded("rapid reset")
    served_over_h2(h)


@pytest.mark.timeout_s(60)
def test_H6_continuation_flood_gets_goaway_quickly_and_bounded_reading(attacked):
    """CVE-2024-28182: HEADERS without END_HEADERS then endless 1 KB CONTINUATION frames: GOAWAY and
    close after a few frames (max 8 per block), so that only a bounded part of the 32 MB offered is
    ever taken from the socket; CPU and RSS bounded."""
    h = attacked
    pad = b"\x00" + _hstr(b"x-pad") + _hstr(b"p" * 1000)
    with Cost(h.proc.pid) as cost:
        c = RawH2(h.port, sndbuf=64 * 1024)
        try:
            assert c.start()
            t0 = time.monotonic()
            c.send(frame(HEADERS, 0, 1, hblock("POST", "/ev", c.authority)))
            cont = frame(CONTINUATION, 0, 1, pad) * 64
            while c.sent < 32 * MiB and time.monotonic() - t0 < 15:
                if c.closed.is_set() or c.goaway() or not c.send(cont):
                    break
            assert c.closed.wait(10), "the connection stayed open under a CONTINUATION flood"
            elapsed = time.monotonic() - t0
        finally:
            c.close()
    assert elapsed < 5, f"the flood went on for {elapsed:.1f} s"
    assert c.sent < 4 * MiB, f"{c.sent} bytes of CONTINUATION were taken before the connection closed"
    cost.assert_bounded("CONTINUATION flood")
    served_over_h2(h)
    assert c.goaway() is not None, \
        f"the connection was closed without a GOAWAY; frames received (type, flags, stream): " \
        f"{[(f[1], f[2], f[3]) for f in c.frames]}"
    assert c.goaway()[0] != NO_ERROR, c.goaway()


def test_H7_settings_with_more_than_32_entries_gets_goaway(attacked):
    """A SETTINGS frame of 64 entries: GOAWAY (ENHANCE_YOUR_CALM) and close."""
    h = attacked
    c = RawH2(h.port)
    try:
        assert c.start(b"".join(struct.pack(">HI", 2, 0) for _ in range(64)))
        assert c.closed.wait(5), "the connection stayed open"
    finally:
        c.close()
    assert c.goaway() is not None, f"no GOAWAY; frames: {[f[1] for f in c.frames]}"
    assert c.goaway()[0] in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), c.goaway()
    served_over_h2(h)


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_H7_a_ping_or_settings_flood_from_a_client_that_does_not_read_is_cut(attacked, kind):
    """2,000,000 PING (or empty SETTINGS) frames (34 or 18 MB) from a client that never reads: the
    acknowledgements cannot all be written, more than 1000 queue up, the flood is detected
    (handoff_http2_events_total{kind="connection_error"}) and the connection closed within the
    write timeout (2 s; a GOAWAY cannot reach a client that does not read); the server stops
    taking the frames long before the last (what it took is bounded by the kernel's socket
    buffers); CPU and RSS bounded."""
    h = attacked
    n, per = 2_000_000, 20_000
    one = frame(PING, 0, 0, b"12345678") if kind == "ping" else frame(SETTINGS, 0, 0)
    before = scrape(h).value("handoff_http2_events_total", kind="connection_error")
    with Cost(h.proc.pid) as cost:
        c = RawH2(h.port, read=False, rcvbuf=4096)
        try:
            assert c.start()
            t0 = time.monotonic()
            burst = one * per
            for _ in range(n // per):
                if not c.send(burst):
                    break
            # What was sent back is read now: it ends (EOF or reset) within the write timeout.
            assert c.drain(15), f"the connection was not closed within {time.monotonic() - t0:.1f} s"
            took = c.closed_at - t0
        finally:
            c.close()
    offered = n * len(one)
    assert c.sent < offered // 2, f"{c.sent} of {offered} bytes of {kind} frames were taken: the flood was not cut"
    assert took < 10, f"closed after {took:.1f} s"
    cost.assert_bounded(f"{kind} flood")
    served_over_h2(h)
    assert scrape(h).value("handoff_http2_events_total", kind="connection_error") >= before + 1


def _goaway_data_on_stream_0(c: RawH2) -> None:
    c.send(frame(DATA, 0, 0, b"x"))


def _goaway_settings_64(c: RawH2) -> None:
    c.send(frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", 2, 0) for _ in range(64))))


def _goaway_rapid_reset(c: RawH2) -> None:
    block = hblock("POST", "/ev", c.authority)
    c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, block) +
                    frame(RST_STREAM, 0, 1 + 2 * i, struct.pack(">I", CANCEL)) for i in range(2500)))


def _goaway_continuation_flood(c: RawH2) -> None:
    pad = b"\x00" + _hstr(b"x-pad") + _hstr(b"p" * 100)
    c.send(frame(HEADERS, 0, 1, hblock("POST", "/ev", c.authority)) + frame(CONTINUATION, 0, 1, pad) * 20)


@pytest.mark.parametrize("attack", [_goaway_data_on_stream_0, _goaway_settings_64, _goaway_rapid_reset,
                                    _goaway_continuation_flood],
                         ids=["data-on-stream-0", "settings-64-entries", "rapid-reset", "continuation-flood"])
def test_H12_a_connection_ended_for_a_protocol_error_or_a_flood_is_counted_as_connection_error(attacked, attack):
    """Each of these ends the connection with an error (GOAWAY with an error code, or a close):
    handoff_http2_events_total{kind="connection_error"} ("GOAWAY sent with an error: a protocol
    violation or a flood") counts it once."""
    h = attacked
    before = scrape(h).value("handoff_http2_events_total", kind="connection_error")
    c = RawH2(h.port)
    try:
        assert c.start()
        attack(c)
        assert c.closed.wait(10), "the connection stayed open"
    finally:
        c.close()
    # Counted before the connection is closed: no wait needed.
    after = scrape(h).value("handoff_http2_events_total", kind="connection_error")
    assert after == before + 1, \
        f"connection_error went from {before} to {after}; GOAWAY received: {c.goaway()} (error code, last stream)"


@pytest.mark.timeout_s(60)
def test_H8_an_hpack_bomb_is_431_at_bounded_cost_and_the_connection_stays_usable(attacked, upstream):
    """One ~4 KB header value added to the HPACK dynamic table, then referenced 60,000 times (a
    240 MB header list from 64 KB of frames): 431 on that stream, not forwarded; CPU and RSS
    bounded; the next request on the connection is served."""
    h = attacked
    tag = unique("bomb")
    lit = b"\x40" + _hstr(b"x-bomb") + _hstr(b"b" * 4000)  # literal with incremental indexing: index 62
    head = hblock("GET", f"/fw/{tag}", f"127.0.0.1:{h.port}", [("x-test-tag", tag)]) + lit
    refs = 60_000
    block = head + b"\xbe" * refs  # 0xbe: indexed field 62
    frames = []
    first, rest = block[:16000], block[16000:]
    frames.append(frame(HEADERS, END_STREAM, 1, first))
    while rest:
        part, rest = rest[:16000], rest[16000:]
        frames.append(frame(CONTINUATION, 0 if rest else END_HEADERS, 1, part))
    assert len(frames) <= 8, len(frames)
    with Cost(h.proc.pid) as cost:
        c = RawH2(h.port)
        try:
            assert c.start()
            c.send(b"".join(frames))
            wait_until(lambda: c.responses().get(1, {}).get("status") or c.closed.is_set(), 10,
                       what="an answer to the bomb")
            r = c.responses().get(1) or {}
            assert r.get("status") == 431, (r, c.goaway())
            assert json.loads(r["body"] or b"{}").get("error") == "headers_too_large", r
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, hblock("GET", f"/fw/{tag}-after", c.authority)))
            wait_until(lambda: c.responses().get(3, {}).get("status") or c.closed.is_set(), 10, what="the next answer")
            assert c.responses()[3]["status"] == 200, c.responses()
        finally:
            c.close()
    assert not upstream.matching(lambda q: q.path == f"/fw/{tag}")
    cost.assert_bounded("HPACK bomb")


@pytest.mark.timeout_s(60)
def test_H9_streams_beyond_max_concurrent_streams_are_refused_and_the_rest_answered(four):
    """max_concurrent_streams 4; eight requests sent at once after the preface: the excess streams
    are reset (REFUSED_STREAM or PROTOCOL_ERROR), the first four answered 202, the connection kept."""
    c = RawH2(four.port)
    try:
        assert c.start()
        block = hblock("POST", "/ev", c.authority)
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, block) for i in range(8)))
        wait_until(lambda: len(c.resets()) + sum(1 for r in c.responses().values() if r["status"]) >= 8 or
                   c.closed.is_set(), 15, what="every stream answered or reset")
        answered = {sid: r["status"] for sid, r in c.responses().items() if r["status"]}
        refused = {sid: code for sid, code in c.resets().items() if sid not in answered}
        assert not c.closed.is_set() and c.goaway() is None, (c.goaway(), answered, refused)
        assert set(answered) == {1, 3, 5, 7} and set(answered.values()) == {202}, (answered, refused)
        assert set(refused) == {9, 11, 13, 15}, refused
        assert set(refused.values()) <= {REFUSED_STREAM, PROTOCOL_ERROR}, refused
    finally:
        c.close()


@pytest.mark.timeout_s(60)
def test_H9_requests_still_handled_after_their_reset_count_toward_the_bound(four):
    """max_concurrent_streams 4, linger.ms 3000: four commits reset (CANCEL) at once are still being
    handled; a fifth stream is refused (REFUSED_STREAM) although no stream is open; once the
    commits are done, a new stream is answered. The refusal is counted in
    handoff_http2_events_total{kind="stream_refused"}."""
    before = scrape(four).value("handoff_http2_events_total", kind="stream_refused")
    c = H2Client(four.port)
    try:
        c.until(lambda: c.conn.remote_settings.max_concurrent_streams == 4, 5, "the server's SETTINGS")
        commits = [c.request("POST", "/commit", b"{}", JSON) for _ in range(4)]
        for sid in commits:
            c.reset(sid)
        extra = c.request("POST", "/ev", b"{}", JSON)
        c.until(lambda: c.streams[extra].reset is not None or c.streams[extra].status is not None, 10,
                "the fifth stream refused or answered")
        assert c.streams[extra].reset == REFUSED_STREAM, f"the fifth stream got {c.streams[extra].resp()!r}"
        assert c.goaway is None and not c.eof

        def answered():
            sid = c.request("POST", "/ev", b"{}", JSON)
            c.until(lambda: c.streams[sid].reset is not None or c.streams[sid].ended, 10, "an answer")
            return c.streams[sid].status == 202
        wait_until(answered, 15, 0.3, "a stream answered once the reset commits finished")
    finally:
        c.close()
    after = scrape(four).value("handoff_http2_events_total", kind="stream_refused")
    assert after >= before + 1, f"handoff_http2_events_total{{kind=\"stream_refused\"}} stayed at {after}"


# ---------------------------------------------------------------------------------------------
# H-10 timeouts
# ---------------------------------------------------------------------------------------------
def test_H10_an_idle_connection_gets_goaway_no_error_and_is_closed_at_idle_timeout(short):
    """idle_timeout 1 s: a connection with no open stream gets GOAWAY NO_ERROR and EOF, not before
    0.8 s of idleness and within 3 s; one answered request restarts the wait."""
    c = H2Client(short.port)
    try:
        r = c.response(c.request("GET", f"/_handoff/requests/{unique('i')}"))
        assert r.status == 404
        idle_from = time.monotonic()
        c.until(lambda: c.eof, 5, "the idle connection closed")
        assert c.goaway is not None and c.goaway[0] == NO_ERROR, c.goaway
        waited = c.goaway_at - idle_from
        assert 0.8 <= waited <= 3.0, f"GOAWAY after {waited:.2f} s idle (idle_timeout 1 s)"
        assert c.eof_at - idle_from <= 3.5
    finally:
        c.close()


def test_H10_a_body_that_never_finishes_is_408_after_body_timeout(short, kafka, topics):
    """body_timeout 1 s: HEADERS (content-length 10) and 3 bytes of DATA, then nothing: 408
    request_timeout on the stream after ~1 s, nothing produced; the connection serves the next."""
    c = H2Client(short.port)
    try:
        cid = unique("slow")
        t0 = time.monotonic()
        sid = c.request("POST", "/ev", None, [("content-length", "10"), ("x-correlation-id", cid), *JSON],
                        end_stream=False)
        c.send_data(sid, b"abc")
        r = c.response(sid, timeout=5)
        took = time.monotonic() - t0
        assert_error(r, 408, "request_timeout")
        assert 0.8 <= took <= 3.0, f"408 after {took:.2f} s (body_timeout 1 s)"
        ok = c.response(c.request("POST", "/ev", b"{}", JSON))
        assert ok.status == 202, ok
    finally:
        c.close()
    kafka.find(topics["ev"], request_id(ok))
    assert cid.encode() not in {hdrs(m).get("handoff_correlation_id") for m in kafka.read(topics["ev"])}


def test_H10_a_header_block_left_unfinished_gets_goaway_and_close_at_header_timeout(short):
    """header_timeout 1 s: HEADERS without END_HEADERS and no CONTINUATION: GOAWAY and close after
    ~1 s; counted as handoff_http2_events_total{kind="timeout"}."""
    before = scrape(short).value("handoff_http2_events_total", kind="timeout")
    c = RawH2(short.port)
    try:
        assert c.start()
        t0 = time.monotonic()
        c.send(frame(HEADERS, 0, 1, hblock("POST", "/ev", c.authority)))
        assert c.closed.wait(5), "the connection stayed open"
        took = c.closed_at - t0
    finally:
        c.close()
    assert c.goaway() is not None, [f[1] for f in c.frames]
    assert 0.8 <= took <= 3.0, f"closed after {took:.2f} s (header_timeout 1 s)"
    assert scrape(short).value("handoff_http2_events_total", kind="timeout") >= before + 1


def test_H10_an_answer_the_client_does_not_take_is_reset_at_write_timeout(attacked, upstream):
    """write_timeout 2 s; the client's SETTINGS_INITIAL_WINDOW_SIZE is 0, so a forwarded 64 KB answer
    cannot be sent past its HEADERS: the stream is reset (CANCEL) after ~2 s and counted as
    kind="timeout"; the connection still serves a stream whose window the client opens."""
    h = attacked
    tag = unique("wt")
    upstream.script(f"/fw/{tag}", status=200, headers=[("Content-Type", "application/octet-stream")],
                    body=b"z" * 65536)
    before = scrape(h).value("handoff_http2_events_total", kind="timeout")
    c = RawH2(h.port)
    try:
        assert c.start(struct.pack(">HI", 4, 0), ack=True)  # SETTINGS_INITIAL_WINDOW_SIZE = 0
        t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hblock("GET", f"/fw/{tag}", c.authority)))
        wait_until(lambda: 1 in c.resets() or c.closed.is_set(), 6, what="the stream reset at write_timeout")
        took = time.monotonic() - t0
        assert c.resets().get(1) == CANCEL, c.resets()
        assert c.responses().get(1, {}).get("status") == 200, c.responses()
        assert not c.responses()[1]["body"], "DATA was sent beyond the client's window"
        assert 1.5 <= took <= 5, f"reset after {took:.2f} s (write_timeout 2 s)"
        assert not c.closed.is_set() and c.goaway() is None
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, hblock("GET", f"/_handoff/requests/{tag}", c.authority)) +
               frame(WINDOW_UPDATE, 0, 3, struct.pack(">I", 65535)))
        wait_until(lambda: c.responses().get(3, {}).get("status") and
                   c.of(DATA, lambda f: f[3] == 3 and f[2] & END_STREAM), 5, what="the next stream's answer")
        assert c.responses()[3]["status"] == 404 and json.loads(c.responses()[3]["body"])["error"] == "not_found"
    finally:
        c.close()
    assert scrape(h).value("handoff_http2_events_total", kind="timeout") >= before + 1


# ---------------------------------------------------------------------------------------------
# H-11 on by default; disabled
# ---------------------------------------------------------------------------------------------
def test_H11_disabled_a_prior_knowledge_preface_gets_http11_505(h1only):
    """listen.http2 not enabled: the client preface is an HTTP/1.1 request line of version 2.0:
    505 over HTTP/1.1."""
    c = RawConn(h1only.port)
    try:
        c.send(PREFACE + frame(SETTINGS, 0, 0))
        r = c.read_response()
        assert r.status == 505, r
    finally:
        c.close()


@pytest.mark.parametrize("method,path,body,status", [("POST", "/ev", b"{}", 202), ("GET", "/fw/up", None, 200)])
def test_H11_disabled_an_upgrade_to_h2c_is_ignored_and_answered_in_http11(h1only, tmp_path, method, path, body,
                                                                           status):
    """curl --http2 against a listener without HTTP/2: no 101, the request answered in HTTP/1.1."""
    r, version = curl(h1only.port, method, path, tmp_path, body, JSON, mode="upgrade")
    assert version == "1.1", f"curl spoke HTTP/{version}"
    assert r.status == status, r
    assert not any(b.startswith("HTTP/1.1 101") for b in r.all_heads), r.all_heads


# ---------------------------------------------------------------------------------------------
# H-12 metrics and the request log
# ---------------------------------------------------------------------------------------------
def test_H12_connections_are_counted_by_protocol(h2, tmp_path):
    """handoff_http_connections_total{protocol}: one prior-knowledge connection adds 1 to h2, one
    upgraded connection 1 to h2c-upgrade (and 1 to http/1.1, where it began), one HTTP/1.1
    connection 1 to http/1.1; the per-route request metrics count HTTP/2 requests too."""
    name = "handoff_http_connections_total"
    s0 = scrape(h2)
    c0 = {p: s0.value(name, protocol=p) for p in ("http/1.1", "h2", "h2c-upgrade")}
    req0 = s0.total("handoff_requests_total", route="ev")
    assert curl(h2.port, "POST", "/ev", tmp_path, b"{}", JSON, mode="prior")[0].status == 202
    assert curl(h2.port, "POST", "/ev", tmp_path, b"{}", JSON, mode="upgrade")[0].status == 202
    assert http_request(h2.port, "POST", "/ev", b"{}", JSON).status == 202
    s1 = scrape(h2)
    got = {p: s1.value(name, protocol=p) - c0[p] for p in c0}
    assert got == {"http/1.1": 2, "h2": 1, "h2c-upgrade": 1}, got
    assert s1.total("handoff_requests_total", route="ev") - req0 == 3, s1.text


def test_H12_the_request_log_line_names_the_protocol(h2):
    """log.requests: an HTTP/2 request's line has "protocol": "HTTP/2", an HTTP/1.1 one "HTTP/1.1"."""
    c = H2Client(h2.port)
    try:
        r2 = c.response(c.request("POST", "/ev", b"{}", JSON))
    finally:
        c.close()
    r1 = http_request(h2.port, "POST", "/ev", b"{}", JSON)
    assert r1.status == r2.status == 202

    def line(rid):
        return next((x for x in h2.log_lines_json() if x.get("request_id") == rid), None)
    l2 = wait_until(lambda: line(request_id(r2)), 10, what="the HTTP/2 request's log line")
    l1 = wait_until(lambda: line(request_id(r1)), 10, what="the HTTP/1.1 request's log line")
    assert l2.get("protocol") == "HTTP/2", l2
    assert l1.get("protocol") == "HTTP/1.1", l1
    assert l2.get("status") == 202 and l2.get("route") == "ev", l2


# ---------------------------------------------------------------------------------------------
# H-13 drain
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(90)
def test_H13_sigterm_sends_goaway_and_still_answers_the_commit_in_flight(handoff_process, brokers, upstream,
                                                                         topics, kafka):
    """A commit held by linger.ms 3000 on an HTTP/2 connection, then SIGTERM: the client gets GOAWAY
    NO_ERROR naming the commit's stream as processed, the commit is still answered 201 on that
    stream and is in Kafka, and the process exits 0. (Raw frames: the h2 library refuses frames
    that follow a GOAWAY, which a graceful shutdown sends.)"""
    h = handoff_process(h2_config(brokers, upstream, topics, kafka={"properties": {"linger.ms": "3000"}}),
                        name="h2-drain")
    c = RawH2(h.port)
    try:
        assert c.start(ack=True)
        ct = [("content-type", "application/json")]
        c.send(frame(HEADERS, END_HEADERS, 1, hblock("POST", "/commit", c.authority, ct)) +
               frame(DATA, END_STREAM, 1, b'{"drain":1}') +
               frame(HEADERS, END_HEADERS | END_STREAM, 3, hblock("POST", "/ev", c.authority, ct)))
        # The event after it on the same connection is answered: the commit's frames were processed.
        wait_until(lambda: c.responses().get(3, {}).get("status"), 10, what="the event's answer")
        assert c.responses()[3]["status"] == 202
        assert not c.responses().get(1, {}).get("status"), "the commit was answered before the SIGTERM"
        h.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: c.goaway() is not None, 10, what="GOAWAY after SIGTERM")
        assert c.goaway()[0] == NO_ERROR and c.goaway()[1] >= 3, c.goaway()
        wait_until(lambda: c.responses().get(1, {}).get("status") or c.closed.is_set(), 20, what="the commit's answer")
        r = c.responses().get(1) or {}
        assert r.get("status") == 201, (r, c.resets())
        j = json.loads(r["body"])
        assert j["outcome"] == "persisted", j
    finally:
        c.close()
    assert h.proc.wait(30) == 0, h.log_tail()
    assert kafka.at(j["topic"], j["partition"], j["offset"]).value() == b'{"drain":1}'
