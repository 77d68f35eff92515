"""Shared harness for the Handoff integration suite.

Everything here talks to real things: the `handoff` binary (env HANDOFF_BIN), a real Kafka broker
(env HANDOFF_TEST_BROKERS), a real HTTP upstream (a ThreadingHTTPServer in this process) and real
Kafka clients (confluent-kafka, kcat). Nothing is mocked.

Per-test timeouts: every setup/call/teardown phase runs under a SIGALRM deadline (default
DEFAULT_TIMEOUT_S, override with @pytest.mark.timeout_s(N); setup and teardown, which start and stop
module fixtures, at least FIXTURE_TIMEOUT_S); every blocking call also has its own
timeout so a hang surfaces as a failure, never as a stuck ctest.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 60
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0

UUIDV7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# --------------------------------------------------------------------------------------------
# Per-test alarm
# --------------------------------------------------------------------------------------------
class TestTimeout(Exception):
    pass


class ProcessDied(AssertionError):
    """The handoff process exited while we were waiting for it (never retried by wait_until)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(n): per-phase SIGALRM deadline in seconds")


# Setup and teardown may start or stop module fixtures (a broker of the module's own: a JVM, which
# takes 10-60 s on a busy 2-core machine): they get at least this long, whatever the test's own
# deadline.
FIXTURE_TIMEOUT_S = 240


def _deadline(item, phase: str = "call") -> int:
    m = item.get_closest_marker("timeout_s")
    t = int(m.args[0]) if m else DEFAULT_TIMEOUT_S
    return t if phase == "call" else max(t, FIXTURE_TIMEOUT_S)


def _alarm_handler(signum, frame):
    raise TestTimeout("test phase exceeded its deadline (SIGALRM)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    signal.signal(signal.SIGALRM, _alarm_handler)
    signal.alarm(_deadline(item, "setup"))
    try:
        yield
    finally:
        signal.alarm(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    signal.signal(signal.SIGALRM, _alarm_handler)
    signal.alarm(_deadline(item))
    try:
        yield
    finally:
        signal.alarm(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    signal.signal(signal.SIGALRM, _alarm_handler)
    signal.alarm(_deadline(item, "teardown"))
    try:
        yield
    finally:
        signal.alarm(0)


# Attach the stdout of every live handoff process to a failing test's report.
_LIVE: list["Handoff"] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for h in list(_LIVE):
            rep.sections.append((f"handoff {h.name} output (tail)", h.log_tail()))


# --------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------
# Ports the tests hand to processes that bind them later (handoff, brokers, "nothing listens
# here" addresses) come from below Linux's ephemeral range (32768-60999): a port picked free in
# that range can be taken by any outgoing socket before its process binds it. Below it only
# listeners bind, and every one of ours gets its port from here: checked free, never handed out
# twice by one process, chosen at random so that two runs side by side rarely meet.
PORT_LO, PORT_HI = 20000, 32768
_HANDED_OUT: set[int] = set()
_PORT_RNG = random.Random(os.getpid() ^ time.monotonic_ns())


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(n: int = 1) -> int:
    """A base port P with P..P+n-1 free on loopback, below the ephemeral range, not handed out
    before by this process."""
    for _ in range(2000):
        base = _PORT_RNG.randrange(PORT_LO, PORT_HI - n)
        block = range(base, base + n)
        if any(p in _HANDED_OUT for p in block) or not all(_bindable(p) for p in block):
            continue
        _HANDED_OUT.update(block)
        return base
    raise AssertionError(f"no free block of {n} port(s) in {PORT_LO}-{PORT_HI - 1}")


def free_port() -> int:
    return free_block(1)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for dicts/lists/scalars (PyYAML is not installed)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if not v:
                    out.append(f"{pad}{k}: {{}}")
                else:
                    out.append(f"{pad}{k}:")
                    out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                if all(not isinstance(x, (dict, list)) for x in v):
                    out.append(f"{pad}{k}: [{', '.join(_yaml_scalar(x) for x in v)}]")
                else:
                    out.append(f"{pad}{k}:")
                    out.append(to_yaml(v, indent + 2))
            else:
                out.append(f"{pad}{k}: {_yaml_scalar(v)}")
    elif isinstance(obj, list):
        for x in obj:
            if isinstance(x, dict):
                body = to_yaml(x, indent + 2)
                out.append(pad + "- " + body[indent + 2:])
            else:
                out.append(f"{pad}- {_yaml_scalar(x)}")
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll a condition (never a blind sleep). Returns the truthy value or raises AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except ProcessDied:
            raise
        except Exception as e:  # noqa: BLE001 - polled conditions may fail transiently
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


# --------------------------------------------------------------------------------------------
# HTTP client helpers
# --------------------------------------------------------------------------------------------
@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float = 0.0

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except Exception as e:
            raise AssertionError(f"response body is not JSON ({e}): {self.body[:500]!r}") from None

    def __repr__(self):
        return f"<Resp {self.status} {self.reason} headers={self.headers} body={self.body[:400]!r}>"


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: Iterable[tuple[str, str]] | dict | None = None, timeout: float = 15.0,
                 host: str = "127.0.0.1") -> Resp:
    """One request on a fresh connection. Sends exactly the given headers (plus Host and,
    with a body, Content-Length unless given)."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.reason, list(r.getheaders()), data, time.monotonic() - t0)
    finally:
        conn.close()


class RawConn:
    """A raw TCP connection with a tiny HTTP/1.1 response parser (for pipelining/framing tests)."""

    def __init__(self, port: int, timeout: float = 10.0, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before {sep!r}; buffered={self.buf[:300]!r}")
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed with {n - len(self.buf)} body bytes missing")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_request: bool = False) -> Resp:
        t0 = time.monotonic()
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        status = int(m.group(1))
        headers = []
        for ln in lines[1:]:
            if not ln:
                continue
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
        r = Resp(status, m.group(2) or "", headers, b"")
        te = (r.header("Transfer-Encoding") or "").lower()
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in te:
            body = b""
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until empty line
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif r.header("Content-Length") is not None:
            body = self._read_exact(int(r.header("Content-Length")))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        r.body = body
        r.elapsed = time.monotonic() - t0
        return r

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the peer closes (EOF or reset) within timeout with no further bytes."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return data == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The upstream ("legacy service"): a real HTTP server that records and answers scriptably.
# --------------------------------------------------------------------------------------------
@dataclass
class UpstreamRequest:
    method: str
    target: str
    path: str
    query: str | None
    headers: list[tuple[str, str]]
    body: bytes
    version: str

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has(self, name):
        return any(k.lower() == name.lower() for k, _ in self.headers)


@dataclass
class Script:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    action: str = "respond"  # or "close": drop the connection without answering
    gate: threading.Barrier | None = None  # every request waits here until `parties` are in


class Upstream:
    def __init__(self):
        self.requests: list[UpstreamRequest] = []
        self.scripts: dict[str, Script] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.connections = 0  # TCP connections accepted so far
        self.closed = 0  # connections whose handler has finished (the client closed, or we did)

    def script(self, path: str, **kw):
        with self.lock:
            self.scripts[path] = Script(**kw)

    def matching(self, pred) -> list[UpstreamRequest]:
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def with_header(self, name: str, value: str) -> list[UpstreamRequest]:
        return self.matching(lambda r: r.header(name) == value)

    def with_path(self, path: str) -> list[UpstreamRequest]:
        return self.matching(lambda r: r.path == path)

    def start(self):
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with up.lock:
                    up.connections += 1

            def finish(self):
                try:
                    super().finish()
                finally:
                    with up.lock:
                        up.closed += 1

            def _read_body(self) -> bytes:
                te = (self.headers.get("Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    out = b""
                    while True:
                        line = self.rfile.readline()
                        size = int(line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._read_body()
                path, sep, query = self.path.partition("?")
                req = UpstreamRequest(self.command, self.path, path, query if sep else None,
                                      list(self.headers.items()), body, self.request_version)
                with up.lock:
                    up.requests.append(req)
                    sc = up.scripts.get(path)
                if sc is None:
                    sc = Script(200, [("Content-Type", "application/json")], json.dumps({
                        "method": req.method, "path": req.path, "query": req.query,
                        "headers": req.headers, "body_b64": base64.b64encode(body).decode(),
                    }).encode())
                if sc.gate is not None:
                    sc.gate.wait(timeout=20)
                if sc.delay:
                    time.sleep(sc.delay)
                if sc.action == "close":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                try:
                    self.send_response(sc.status)
                    names = {k.lower() for k, _ in sc.headers}
                    for k, v in sc.headers:
                        self.send_header(k, v)
                    if "content-length" not in names:
                        self.send_header("Content-Length", str(len(sc.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(sc.body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        srv.block_on_close = False
        self.server = srv
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def upstream():
    up = Upstream().start()
    yield up
    up.stop()


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def brokers() -> str:
    b = os.environ.get("HANDOFF_TEST_BROKERS")
    if not b:
        pytest.fail("HANDOFF_TEST_BROKERS is not set (ctest sets it from the kafka fixture; for a "
                    "dev broker run tests/kafka/kafka.sh start DIR PORT and export it)")
    return b


class Kafka:
    def __init__(self, brokers: str):
        from confluent_kafka.admin import AdminClient
        self.brokers = brokers
        self.admin = AdminClient({"bootstrap.servers": brokers})

    def create_topic(self, name: str, partitions: int = 1):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic
        fs = self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                      request_timeout=15)
        try:
            fs[name].result(timeout=20)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise
        # Wait until the metadata shows the topic with a leader for every partition. A broker started
        # a moment ago (a test's own cluster, on a loaded machine) can take a while to elect them: the
        # bound is generous, and what was seen last is in the message.
        seen = ["no metadata"]

        def ready():
            md = self.admin.list_topics(name, timeout=5)
            t = md.topics.get(name)
            seen[0] = "absent" if t is None else \
                f"error={t.error} leaders={sorted((p.id, p.leader) for p in t.partitions.values())}"
            return t is not None and t.error is None and len(t.partitions) == partitions and \
                all(p.leader >= 0 for p in t.partitions.values())
        try:
            wait_until(ready, 60, 0.1, f"topic {name} to be ready")
        except AssertionError as e:
            raise AssertionError(f"{e}; its metadata last: {seen[0]}") from None
        return name

    def _consumer(self):
        from confluent_kafka import Consumer
        return Consumer({
            "bootstrap.servers": self.brokers,
            "group.id": unique("handoff-it"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        })

    def partitions(self, topic: str, timeout: float = 20) -> list[int]:
        def get():
            md = self.admin.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                return None
            return sorted(t.partitions)
        return wait_until(get, timeout, 0.1, f"topic {topic} metadata")

    def read(self, topic: str, until: Callable[[list], bool] | None = None, timeout: float = 20) -> list:
        """Read the topic from the beginning (all partitions) until `until(msgs)` holds.
        With until=None, read exactly up to the current high watermarks."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        c = self._consumer()
        try:
            parts = self.partitions(topic, timeout)
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            msgs = []
            if until is None:
                highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
                lows = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in parts}
                need = sum(highs[p] - lows[p] for p in parts)
                until = lambda m: len(m) >= need  # noqa: E731
            deadline = time.monotonic() + timeout
            while not until(msgs):
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out reading {topic}: got {len(msgs)} records: "
                                         f"{[describe(m) for m in msgs][:10]}")
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                msgs.append(m)
            return msgs
        finally:
            c.close()

    def find(self, topic: str, ce_id: str, timeout: float = 20):
        """The record whose ce_id header (the request ID) equals ce_id (read from the beginning)."""
        msgs = self.read(topic, lambda ms: any(hdrs(m).get("ce_id") == ce_id.encode() for m in ms), timeout)
        found = [m for m in msgs if hdrs(m).get("ce_id") == ce_id.encode()]
        return found[0]

    def with_label(self, topic: str, correlation_id: str, timeout: float = 20) -> list:
        """The records that carry this caller's X-Correlation-ID (handoff_correlation_id header),
        once there is at least one."""
        want = correlation_id.encode()
        msgs = self.read(topic, lambda ms: any(hdrs(m).get("handoff_correlation_id") == want for m in ms), timeout)
        return [m for m in msgs if hdrs(m).get("handoff_correlation_id") == want]

    def at(self, topic: str, partition: int, offset: int, timeout: float = 20):
        from confluent_kafka import TopicPartition
        c = self._consumer()
        try:
            c.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                return m
            raise AssertionError(f"no record at {topic}/{partition}@{offset} within {timeout}s")
        finally:
            c.close()


def hdrs(msg) -> dict[str, bytes]:
    """Kafka record headers as a dict (asserting no header name is repeated)."""
    hs = msg.headers() or []
    names = [k for k, _ in hs]
    assert len(names) == len(set(names)), f"duplicate record header names: {names}"
    return {k: (v if v is not None else b"") for k, v in hs}


def describe(msg) -> str:
    return f"{msg.topic()}/{msg.partition()}@{msg.offset()} key={msg.key()!r} headers={msg.headers()}"


@pytest.fixture(scope="session")
def kafka(brokers) -> Kafka:
    return Kafka(brokers)


# --------------------------------------------------------------------------------------------
# The handoff binary
# --------------------------------------------------------------------------------------------
def handoff_bin() -> str:
    b = os.environ.get("HANDOFF_BIN") or str(REPO_ROOT / "build/proxy/exe/handoff")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail(f"handoff binary not found or not executable: {b} (set HANDOFF_BIN)")
    return b


class Handoff:
    def __init__(self, name: str, cfg: dict, cfg_path: Path, log_path: Path, env: dict | None):
        self.name = name
        self.cfg = cfg
        self.cfg_path = cfg_path
        self.log_path = log_path
        self.port = cfg["listen"]["port"]
        self.admin_port = cfg["admin"]["port"]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([handoff_bin(), "run", "--config", str(cfg_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        self.exit_code: int | None = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_lines_json(self) -> list[dict]:
        out = []
        for ln in self.log_text().splitlines():
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
        return out

    def admin_get(self, path: str, timeout: float = 3.0) -> Resp:
        return http_request(self.admin_port, "GET", path, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=15.0) -> Resp:
        return http_request(self.port, method, path, body, headers, timeout)

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise ProcessDied(f"handoff {self.name} exited with {self.proc.returncode} during startup:\n"
                                 f"{self.log_tail()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S):
        def ready():
            self._check_alive()
            return self.admin_get("/readyz", 1.0).status == 200
        try:
            wait_until(ready, timeout, 0.1, f"handoff {self.name} /readyz == 200")
        except ProcessDied:
            raise
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- handoff output ---\n{self.log_tail()}") from None

    def wait_live(self, timeout: float = READY_TIMEOUT_S):
        """Liveness only (/healthz 200 and the main listener accepting): for broker-down configs."""
        def live():
            self._check_alive()
            if self.admin_get("/healthz", 1.0).status != 200:
                return False
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        try:
            wait_until(live, timeout, 0.1, f"handoff {self.name} /healthz == 200")
        except ProcessDied:
            raise
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- handoff output ---\n{self.log_tail()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.exit_code = None
                self._log.close()
                return None
        self.exit_code = self.proc.returncode
        self._log.close()
        return self.exit_code


def rdkafka_debug(h: "Handoff") -> list[str]:
    """librdkafka's debug lines (kafka.properties debug: msg,...) from a handoff's log."""
    return [x["detail"] for x in h.log_lines_json() if x.get("msg") == "librdkafka" and "detail" in x]


def in_doubt_batches(h: "Handoff") -> list[tuple[int, int, int]]:
    """(message count, MsgId, BaseSeq) of every batch librdkafka reported *possibly persisted*."""
    return [(int(m[1]), int(m[2]), int(m[3])) for m in
            (re.search(r"MessageSet with (\d+) message\(s\) \(MsgId (\d+), BaseSeq (\d+)\) "
                       r"encountered error: .*MsgPossiblyPersisted", d) for d in rdkafka_debug(h)) if m]


def assert_retried_unchanged(h: "Handoff", doubt: list[tuple[int, int, int]]):
    """Every batch in doubt was sent again as the same batch (same MsgId and BaseSeq), by one
    producer id and epoch: what lets a broker drop the retry as a duplicate."""
    sent = [d for d in rdkafka_debug(h) if "Produce MessageSet" in d]
    pids = set(re.findall(r"PID\{Id:(\d+),Epoch:(\d+)\}", "\n".join(sent)))
    assert len(pids) == 1, f"the producer id or epoch changed: {pids}"
    for count, msgid, seq in doubt:
        assert sum(1 for d in sent if f"MessageSet with {count} message(s)" in d and
                   f"MsgId {msgid}, BaseSeq {seq}," in d) >= 2, f"batch MsgId {msgid} was not retried unchanged"


def base_config(brokers: str, upstream_port: int, routes: list[dict], **overrides) -> dict:
    cfg = {
        "listen": {"address": "127.0.0.1", "port": free_port(), "threads": 1},
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "upstream": {"host": "127.0.0.1", "port": upstream_port, "timeout": "2s"},
        "kafka": {"brokers": brokers, "properties": {"linger.ms": "1"}},
        "defaults": {"mode": "forward", "timeout": "5s", "ce_source": "/handoff-test"},
        "routes": routes,
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


@pytest.fixture(scope="module")
def handoff_process(tmp_path_factory, request):
    """Factory: handoff_process(config_dict, wait="ready"|"live"|None, env=None) -> Handoff.
    Writes the YAML, starts `handoff run`, waits for /readyz (or /healthz), and on module teardown
    SIGTERMs every instance, waits with a timeout and fails loudly (with its output) on a bad exit."""
    started: list[Handoff] = []
    d = tmp_path_factory.mktemp("handoff")

    def start(cfg: dict, wait: str | None = "ready", env: dict | None = None, name: str | None = None) -> Handoff:
        name = name or f"{request.module.__name__.split('.')[-1]}-{len(started)}"
        cfg_path = d / f"{name}.yaml"
        cfg_path.write_text(to_yaml(cfg) + "\n")
        h = Handoff(name, cfg, cfg_path, d / f"{name}.log", env)
        started.append(h)
        _LIVE.append(h)
        if wait == "ready":
            h.wait_ready()
        elif wait == "live":
            h.wait_live()
        return h

    yield start

    problems = []
    for h in started:
        code = h.stop()
        if h in _LIVE:
            _LIVE.remove(h)
        if code != 0:
            problems.append(f"handoff {h.name}: exit code after SIGTERM = {code} (expected 0)\n"
                            f"--- output tail ---\n{h.log_tail()}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------------------------
# The standard route set used by most modules
# --------------------------------------------------------------------------------------------
@dataclass
class Topics:
    audit: str
    keys: str
    creds: str
    special: str
    orders_template: str = "orders.{region}"


def standard_routes(t: Topics) -> list[dict]:
    return [
        {"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
        {"name": "create-order", "match": {"methods": ["POST"], "path": "/orders/{region}"},
         "mode": "commit", "topic": t.orders_template, "key": "body:/customer/id",
         "cloudevents": {"type": "com.example.order.created", "source": "/orders"},
         "success_status": 201, "timeout": "5s", "headers": ["X-Tenant"]},
        # An exact path defined AFTER the template that also matches it: exact must still win.
        {"name": "special-order", "match": {"methods": ["GET"], "path": "/orders/special"},
         "mode": "event", "topic": t.special, "key": "correlation"},
        {"name": "audit", "match": {"methods": ["POST", "PUT"], "path": "/audit"}, "mode": "event",
         "topic": t.audit, "key": "header:X-Tenant", "max_body_bytes": "1KiB", "headers": ["X-Tenant"]},
        {"name": "key-path", "match": {"methods": ["POST"], "path": "/keys/path/{name}"}, "mode": "event",
         "topic": t.keys, "key": "path:name"},
        {"name": "key-header", "match": {"methods": ["POST"], "path": "/keys/header"}, "mode": "event",
         "topic": t.keys, "key": "header:X-Key"},
        {"name": "key-body", "match": {"methods": ["POST"], "path": "/keys/body"}, "mode": "event",
         "topic": t.keys, "key": "body:/k"},
        {"name": "key-body-commit", "match": {"methods": ["POST"], "path": "/keys/body-commit"},
         "mode": "commit", "topic": t.keys, "key": "body:/a/b"},
        {"name": "key-corr", "match": {"methods": ["POST"], "path": "/keys/corr"}, "mode": "event",
         "topic": t.keys, "key": "correlation"},
        {"name": "creds-default", "match": {"methods": ["POST"], "path": "/creds/default"}, "mode": "event",
         "topic": t.creds, "key": "correlation", "headers": ["X-Tenant"]},
        {"name": "creds-allowed", "match": {"methods": ["POST"], "path": "/creds/allowed"}, "mode": "event",
         "topic": t.creds, "key": "correlation", "headers": ["Authorization", "X-Tenant"]},
    ]


@pytest.fixture(scope="module")
def topics(kafka) -> Topics:
    p = unique("hit")
    t = Topics(audit=f"{p}.audit", keys=f"{p}.keys", creds=f"{p}.creds", special=f"{p}.special")
    for name in (t.audit, t.keys, t.creds, t.special):
        kafka.create_topic(name, 1)
    kafka.create_topic("orders.eu", 1)
    return t


@pytest.fixture(scope="module")
def proxy(handoff_process, brokers, upstream, topics) -> Handoff:
    """A running handoff with the standard routes, ready (config loaded, Kafka metadata fetched)."""
    return handoff_process(base_config(brokers, upstream.port, standard_routes(topics)))


def kcat() -> str:
    k = shutil.which("kcat") or shutil.which("kafkacat")
    if not k:
        pytest.fail("kcat not installed")
    return k


def assert_error(resp: Resp, status: int, code: str, require_correlation_id: bool = True):
    assert resp.status == status, f"expected {status} {code}, got {resp!r}"
    j = resp.json()
    assert j.get("error") == code, f"expected error code {code!r}, got {j!r}"
    assert isinstance(j.get("message"), str) and j["message"], f"error body lacks a message: {j!r}"
    assert not require_correlation_id or isinstance(j.get("correlation_id"), str) and j["correlation_id"], \
        f"error body lacks a correlation_id: {j!r}"
    return j


def request_id(resp: Resp) -> str:
    """The request ID Handoff gave a request: from its status URL (Location) or its JSON body."""
    loc = resp.header("Location")
    if loc and loc.startswith("/_handoff/requests/"):
        return loc[len("/_handoff/requests/"):]
    j = resp.json()
    assert isinstance(j.get("request_id"), str) and j["request_id"], f"no request_id in {resp!r}"
    return j["request_id"]


def labels(msgs) -> set[bytes]:
    """The handoff_correlation_id (caller's label) of each record."""
    return {hdrs(m).get("handoff_correlation_id") for m in msgs}


def uuidv7_ms(u: str) -> int:
    return int(u.replace("-", "")[:12], 16)


# --------------------------------------------------------------------------------------------
# Operability helpers (issue 5): Prometheus scrape, process RSS, a private broker per module
# --------------------------------------------------------------------------------------------
class Scrape:
    """/metrics parsed by prometheus_client's text-format parser: value(sample_name, **labels)."""

    def __init__(self, text: str):
        from prometheus_client.parser import text_string_to_metric_families
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, default: float | None = 0.0, **labels) -> float | None:
        return self.samples.get((name, frozenset(labels.items())), default)

    def total(self, name: str, **labels) -> float:
        """Sum over every sample of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def scrape(h: "Handoff") -> Scrape:
    r = h.admin_get("/metrics")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("text/plain"), r
    return Scrape(r.body.decode())


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def free_port_pair() -> int:
    """A port P with P+1 also free (kafka.sh puts the controller on PORT+1)."""
    return free_block(2)


def at_once(calls: list[Callable[[], object]], timeout: float = 30.0) -> list:
    """Runs each call in a thread of its own, all released together by a barrier (the same request
    at several replicas at once); their results in order. An exception in one is raised here."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i: int):
        try:
            barrier.wait(10)
            results[i] = calls[i]()
        except BaseException as e:  # noqa: BLE001 - raised in the caller below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a call did not finish"
    if errors:
        raise errors[0]
    return results


class RoundRobin:
    """nginx in front of handoff replicas, round robin, as a Kubernetes Service spreads requests.
    `retry_refused`: a connection refused (a replica that is gone; nothing was sent) goes to the next
    replica, as a Service stops sending to a pod that is gone; a request already sent to a replica
    that dies is answered 502 (nginx never re-sends a POST)."""

    def __init__(self, ports: list[int], d: Path, retry_refused: bool = False):
        self.dir = d
        self.port = free_port()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in ports)
        nxt = "error" if retry_refused else "off"
        (d / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream replicas {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream {nxt};
      proxy_read_timeout 60s;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([nginx, "-p", str(d), "-c", str(d / "nginx.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        wait_until(lambda: http_request(self.port, "GET", "/_handoff/requests/none", timeout=1).status in (404, 502),
                   10, 0.1, "nginx to answer")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class PrivateKafka:
    """A single-node broker of this test's own (tests/kafka/kafka.sh), to stop, freeze or restart.
    Restarting makes a NEW cluster on the same port (kafka.sh stop removes its directory)."""

    SCRIPT = REPO_ROOT / "tests" / "kafka" / "kafka.sh"

    def __init__(self, base_dir: Path, port: int):
        self.base_dir = base_dir
        self.port = port
        self.brokers = f"127.0.0.1:{port}"
        self.dir: Path | None = None
        self.generation = 0
        self.frozen = False

    def start(self, timeout: float = 120, extra: Path | None = None):
        """extra: a broker properties file for kafka.sh (more listeners, see its usage)."""
        self.generation += 1
        self.dir = self.base_dir / f"kafka-{self.generation}"
        r = subprocess.run([str(self.SCRIPT), "start", str(self.dir), str(self.port)] + ([str(extra)] if extra else []),
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"kafka.sh start failed:\n{r.stdout}\n{r.stderr}"
        return self

    @property
    def pid(self) -> int:
        assert self.dir is not None
        return int((self.dir / "pid").read_text().strip())

    def stop(self, timeout: float = 60):
        if self.dir is None:
            return
        if self.frozen:
            self.thaw()
        r = subprocess.run([str(self.SCRIPT), "stop", str(self.dir)], capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"kafka.sh stop failed:\n{r.stdout}\n{r.stderr}"
        self.dir = None

    def restart_in_place(self):
        """Stop the broker's JVM (SIGTERM) and start it again on the same data: the same cluster, its
        topics and their IDs kept, its partitions under a new leader epoch."""
        pid = self.pid
        argv = [a for a in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0") if a]
        os.kill(pid, signal.SIGTERM)

        def gone():
            try:
                return open(f"/proc/{pid}/stat").read().split()[2] == "Z"
            except OSError:
                return True
        wait_until(gone, 60, 0.2, "the broker exited")
        log = open(self.dir / "kafka.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        (self.dir / "pid").write_text(f"{p.pid}\n")   # kafka.sh stop finds it here
        wait_until(lambda: subprocess.run([kcat(), "-L", "-b", self.brokers, "-m", "2"],
                                          capture_output=True).returncode == 0,
                   90, 0.5, "the broker back after a restart in place")

    def freeze(self):
        """SIGSTOP the broker: connections stay open, nothing is answered (a hung broker)."""
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False
