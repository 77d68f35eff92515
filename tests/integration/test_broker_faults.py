"""Broker faults (tests/CATALOGUE.md, P-1..P-14, A-1) against the real handoff binary.

Kafka here is librdkafka's mock cluster in a process of its own (`handoff_mockctl`, env
HANDOFF_MOCKCTL): handoff's producer and the checker's confluent-kafka consumer talk to it over
loopback like to any broker, and each test injects faults through mockctl's stdin (error stacks,
round-trip times, brokers down, leader moves, topic errors). Every scenario drives load through
the ledger client (tests/ledger) and checks the ledger against the topic read back from the
beginning after handoff stopped (SIGTERM: flushed, so no late delivery is missed):
NF2 (no false 2xx), NAL (nothing acknowledged lost), NO-HANG (every request answered within its
deadline), duplicates within the documented bound (idempotent producer: 0), per-key order.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import (REPO_ROOT, assert_retried_unchanged, base_config, http_request, in_doubt_batches, rss_bytes, scrape,
                      unique, wait_until)

sys.path.insert(0, str(REPO_ROOT / "tests" / "ledger"))
from ledger import LedgerClient, Request, check, load, read_topics  # noqa: E402

# Settings the scenarios need, in the config's kafka.properties (librdkafka names).
MOCK_PROPS = {
    "linger.ms": "1",
    # A mock broker set down keeps its port bound but does not accept: give up connecting quickly.
    "socket.connection.setup.timeout.ms": "2000",
    "reconnect.backoff.ms": "50",
    "reconnect.backoff.max.ms": "500",
    "retry.backoff.ms": "50",
    "retry.backoff.max.ms": "500",
    "topic.metadata.refresh.interval.ms": "2000",
}
P1_REQUESTS = int(os.environ.get("HANDOFF_P1_REQUESTS", "10000"))
CHECKED: dict[str, int] = {}   # scenario -> requests checked by the ledger (printed at the end)
DEBUG_PROPS = {"debug": os.environ["HANDOFF_RDKAFKA_DEBUG"]} if os.environ.get("HANDOFF_RDKAFKA_DEBUG") else {}


# ----------------------------------------------------------------------------------------------
# The mock cluster process
# ----------------------------------------------------------------------------------------------
def mockctl_bin() -> str:
    b = os.environ.get("HANDOFF_MOCKCTL") or str(REPO_ROOT / "build/tests/faults/handoff_mockctl")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail(f"handoff_mockctl not found: {b} (set HANDOFF_MOCKCTL)")
    return b


class MockCluster:
    """handoff_mockctl: one command line in, one answer line out (`ok [value]` / `error ...`)."""

    def __init__(self, log_path: Path, brokers: int = 3):
        self.n = brokers
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([mockctl_bin(), "--brokers", str(brokers)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(10)
        assert first.startswith("bootstrap "), first
        self.bootstrap = first.split(" ", 1)[1]

    def _read(self):
        for ln in self.proc.stdout:
            self._lines.put(ln.rstrip("\n"))
        self._lines.put(None)

    def _next(self, timeout: float) -> str:
        try:
            ln = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"handoff_mockctl did not answer within {timeout}s") from None
        if ln is None:
            raise AssertionError(f"handoff_mockctl exited ({self.proc.poll()})")
        return ln

    def cmd(self, line: str, timeout: float = 10) -> str:
        with self._lock:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            ans = self._next(timeout)
        assert ans == "ok" or ans.startswith("ok "), f"mockctl {line!r}: {ans}"
        return ans[3:]

    def topic(self, name: str, partitions: int = 1, leaders: list[int] | None = None) -> str:
        self.cmd(f"topic_create {name} {partitions} {min(3, self.n)}")
        for p, b in enumerate(leaders or []):
            self.cmd(f"partition_set_leader {name} {p} {b}")
        return name

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Faults:
    """Per test: a mock cluster, the handoffs started against it (stopped before the cluster)."""

    def __init__(self, tmp: Path, handoff_process, upstream):
        self.tmp = tmp
        self.mock = MockCluster(tmp / "mockctl.log")
        self._start = handoff_process
        self.upstream = upstream
        self.started = []

    def config(self, routes, props: dict | None = None, log_level: str = "info", **overrides) -> dict:
        kafka = {"properties": {**MOCK_PROPS, **DEBUG_PROPS, **(props or {})}, "flush_timeout": "10s"}
        kafka.update(overrides.pop("kafka", {}))
        level = "debug" if DEBUG_PROPS or "debug" in (props or {}) else log_level
        return base_config(self.mock.bootstrap, self.upstream.port, routes, kafka=kafka,
                           log={"level": level, "requests": False}, **overrides)

    def handoff(self, routes, props: dict | None = None, wait="ready", **overrides):
        h = self._start(self.config(routes, props, **overrides), wait=wait)
        self.started.append(h)
        return h

    def stop(self, h, timeout: float = 30) -> int | None:
        """SIGTERM: handoff flushes, then exits; the ledger is checked after this."""
        code = h.stop(timeout)
        assert code == 0, f"handoff exit code {code}\n{h.log_tail()}"
        return code

    def read(self, *topics: str):
        return read_topics(self.mock.bootstrap, topics, timeout=60)

    def close(self):
        for h in self.started:
            if h.proc.poll() is None:
                h.stop()
        self.mock.close()


@pytest.fixture
def faults(tmp_path, handoff_process, upstream):
    f = Faults(tmp_path, handoff_process, upstream)
    yield f
    f.close()


def commit_route(topic: str, timeout: str = "5s", path: str = "/commit") -> dict:
    return {"name": "commit" + path.replace("/", "-"), "match": {"methods": ["POST"], "path": path},
            "mode": "commit", "topic": topic, "key": "body:/key", "timeout": timeout, "success_status": 201}


def event_route(topic: str, path: str = "/event") -> dict:
    return {"name": "event" + path.replace("/", "-"), "match": {"methods": ["POST"], "path": path},
            "mode": "event", "topic": topic, "key": "body:/key"}


def statuses(entries) -> dict:
    out: dict = {}
    for e in entries:
        out[e.status] = out.get(e.status, 0) + 1
    return out


def assert_checked(name: str, rep, max_duplicates: int = 0, allow_failed_present: bool = False):
    assert rep.ok(max_duplicates, allow_failed_present), f"{name}: ledger check failed\n{rep}"
    CHECKED[name] = CHECKED.get(name, 0) + rep.total


def no_false_2xx(entries, window) -> list:
    """Commit 2xx answers to requests sent and answered inside `window` (a broker outage)."""
    lo, hi = window
    return [e for e in entries if e.status is not None and 200 <= e.status < 300 and e.sent_at >= lo
            and e.done_at <= hi]


class ProbeWatch:
    """Polls /healthz and /readyz every 50 ms; records their answers with times."""

    def __init__(self, h):
        self.h = h
        self.health_bad: list[str] = []
        self.ready: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                r = self.h.admin_get("/healthz", 5.0)
                if r.status != 200:
                    self.health_bad.append(repr(r))
            except Exception as e:  # noqa: BLE001 - recorded and asserted on
                self.health_bad.append(repr(e))
            try:
                self.ready.append((time.monotonic(), self.h.admin_get("/readyz", 5.0).status))
            except Exception:  # noqa: BLE001 - a slow readiness answer is no liveness failure
                pass
            self._stop.wait(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def warm_up(h, topic: str, timeout: float = 30) -> list:
    """Commits until one is 201 (the first may outlast a short route timeout: metadata, producer
    id); returns all their entries for the ledger."""
    out: list = []

    def one():
        es = LedgerClient(h.port, concurrency=1, deadline=10).run(load("/commit", "commit", topic, 1, keys=1,
                                                                       prefix="warm"))
        out.extend(es)
        return es[0].status == 201
    wait_until(one, timeout, 0.2, "a first commit to succeed")
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ----------------------------------------------------------------------------------------------
# P-1 baseline
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p1_baseline_commits_on_a_healthy_three_broker_cluster_are_all_2xx_found_once_in_key_order(faults):
    t = faults.mock.topic(unique("p1"), 4)
    h = faults.handoff([commit_route(t)])
    n = P1_REQUESTS
    entries = LedgerClient(h.port, concurrency=16, deadline=10).run(load("/commit", "commit", t, n, keys=32))
    faults.stop(h)
    assert statuses(entries) == {201: n}, statuses(entries)
    rep = check(entries, faults.read(t))
    assert rep.acknowledged == n and rep.records == n and rep.duplicates == {}, rep
    assert_checked("P-1", rep)


# ----------------------------------------------------------------------------------------------
# P-2 / P-3 NOT_ENOUGH_REPLICAS
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p2_transient_not_enough_replicas_within_the_retry_budget_still_ends_in_2xx_after_the_ack(faults):
    t = faults.mock.topic(unique("p2"), 1, leaders=[1])
    # One Produce in flight at a time: librdkafka treats a later batch's success as proof that
    # the earlier (failed, retried) batch is in the log, which holds for Kafka (a sequence gap is
    # OUT_OF_ORDER_SEQUENCE_NUMBER) but not for the mock cluster, whose error injection accepts a
    # later batch after an injected failure. With several in flight the ledger caught exactly
    # that: 2xx for records the mock never stored (see README, "Broker faults").
    h = faults.handoff([commit_route(t, "10s")], {"message.timeout.ms": "10000",
                                                   "max.in.flight.requests.per.connection": "1"})
    first = LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 1, keys=1))
    assert first[0].status == 201, first
    n = 8
    faults.mock.cmd("broker_push_request_error_rtts 1 Produce " + " ".join(["NOT_ENOUGH_REPLICAS:0"] * n))
    entries = LedgerClient(h.port, concurrency=8, deadline=15).run(load("/commit", "commit", t, 300, keys=8))
    assert faults.mock.cmd("broker_error_stack_cnt 1 Produce") == "0", "the injected errors were not all hit"
    faults.stop(h)
    assert statuses(entries) == {201: 300}, statuses(entries)
    # The retried requests waited for the final ack: slower than the healthy baseline.
    assert max(e.elapsed for e in entries) > 0.2, max(e.elapsed for e in entries)
    rep = check(first + entries, faults.read(t))
    assert rep.records == 301, rep
    assert_checked("P-2", rep)


@pytest.mark.timeout_s(120)
def test_p3_persistent_not_enough_replicas_until_the_message_timeout_is_503_never_2xx_and_recovers(faults):
    t = faults.mock.topic(unique("p3"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "8s")], {"message.timeout.ms": "2000"})
    faults.mock.cmd("push_request_errors Produce " + " ".join(["NOT_ENOUGH_REPLICAS"] * 2000))
    entries = LedgerClient(h.port, concurrency=10, deadline=12).run(load("/commit", "commit", t, 40, keys=10))
    faults.mock.cmd("clear_request_errors Produce")
    after = LedgerClient(h.port, concurrency=2, deadline=12).run(load("/commit", "commit", t, 20, keys=2, prefix="after"))
    faults.stop(h)
    assert all(e.status in (503, 504) for e in entries), statuses(entries)
    assert all(e.error in ("delivery_failed", "outcome_unknown") for e in entries), {e.error for e in entries}
    assert max(e.elapsed for e in entries) < 8, "answered within the route timeout"
    assert statuses(after) == {201: 20}, statuses(after)
    rep = check(entries + after, faults.read(t))
    # tests/CATALOGUE.md (P-3) allows 0 or 1 copy of a failed record; a 503 ("not persisted") must mean 0.
    assert rep.duplicates == {}, rep
    assert_checked("P-3", rep)


# ----------------------------------------------------------------------------------------------
# P-4 disconnect with the request in flight
# ----------------------------------------------------------------------------------------------
def assert_mock_duplicates_are_retries_in_doubt(h, rep, name: str):
    """The mock cluster's one known deviation from Kafka, accounted for exactly.

    It checks producer sequences only for transactional producers, so a batch whose first
    attempt it appended but whose response was lost (librdkafka: *possibly persisted*) and that
    librdkafka then retried unchanged is appended a second time; Kafka drops such a retry
    (DUPLICATE_SEQUENCE_NUMBER within its 5-batch window). Every extra copy found here must be
    one of those records: at most as many as librdkafka reported in doubt, each batch in doubt sent
    again unchanged, and nothing else duplicated. test_broker_faults_real.py asserts 0 duplicates
    for the same fault against a real broker."""
    doubt = in_doubt_batches(h)
    in_doubt = sum(count for count, _, _ in doubt)
    if doubt:
        assert_retried_unchanged(h, doubt)
    assert rep.duplicate_copies <= in_doubt, f"{name}: {rep.duplicate_copies} extra copies, {in_doubt} in doubt\n{rep}"
    print(f"{name}: {in_doubt} record(s) in doubt, {rep.duplicate_copies} extra copies on the mock")
    return in_doubt


@pytest.mark.timeout_s(120)
def test_p4_transport_errors_on_produce_end_in_2xx_only_if_persisted_and_duplicate_only_what_was_in_doubt(faults):
    t = faults.mock.topic(unique("p4"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "10s")], {"message.timeout.ms": "8000", "debug": "msg"})
    faults.mock.cmd("broker_push_request_error_rtts 1 Produce _TRANSPORT:0 _TRANSPORT:0 _TRANSPORT:0")
    entries = LedgerClient(h.port, concurrency=8, deadline=15).run(load("/commit", "commit", t, 200, keys=8))
    assert faults.mock.cmd("broker_error_stack_cnt 1 Produce") == "0"
    faults.stop(h)
    assert all(e.status in (201, 503, 504) for e in entries), statuses(entries)
    rep = check(entries, faults.read(t))
    in_doubt = assert_mock_duplicates_are_retries_in_doubt(h, rep, "P-4")
    assert_checked("P-4", rep, max_duplicates=in_doubt)


@pytest.mark.timeout_s(120)
def test_p4_a_produce_appended_whose_response_is_lost_is_retried_idempotently(faults):
    # The broker appends the batch, but its response is held for 5 s and the connection goes
    # down meanwhile: the response is lost (possibly persisted) and librdkafka must retry the
    # very same batch (same producer id, epoch and base sequence) so that a broker can drop it as
    # a duplicate; every 2xx must be true.
    t = faults.mock.topic(unique("p4b"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "15s")], {"message.timeout.ms": "12000", "debug": "msg,eos"})
    warm = LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 3, keys=1))
    faults.mock.cmd("broker_push_request_error_rtts 1 Produce NO_ERROR:5000")
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(
        LedgerClient(h.port, concurrency=4, deadline=20).run(load("/commit", "commit", t, 40, keys=4))))
    runner.start()
    wait_until(lambda: faults.mock.cmd("broker_error_stack_cnt 1 Produce") == "0", 10, 0.02,
               "the delayed Produce to be in flight")
    faults.mock.cmd("broker_set_down 1")
    time.sleep(0.5)  # the outage's length (a fault parameter), not synchronisation
    faults.mock.cmd("broker_set_up 1")
    runner.join(60)
    assert not runner.is_alive(), "the load did not finish"
    faults.stop(h)
    assert all(e.status in (201, 503, 504) for e in results), statuses(results)
    rep = check(warm + results, faults.read(t))

    # librdkafka's own account (debug=msg): the batch in doubt, then its retry.
    assert in_doubt_batches(h), "no batch was in flight when the connection went down"
    in_doubt = assert_mock_duplicates_are_retries_in_doubt(h, rep, "P-4 lost response")
    assert_checked("P-4", rep, max_duplicates=in_doubt)


# ----------------------------------------------------------------------------------------------
# P-5 / P-11 an ack that does not arrive in time
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p5_an_ack_slower_than_message_timeout_is_504_outcome_unknown_never_2xx_nor_500(faults):
    t = faults.mock.topic(unique("p5"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "8s")], {"message.timeout.ms": "2000"})
    warm = LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 1, keys=1))
    assert warm[0].status == 201
    faults.mock.cmd("broker_push_request_error_rtts 1 Produce NO_ERROR:4000")
    slow = LedgerClient(h.port, concurrency=1, deadline=12).run(load("/commit", "commit", t, 1, keys=1))
    e = slow[0]
    assert e.status == 504 and e.error == "outcome_unknown" and e.outcome == "unknown", e
    assert 1.5 < e.elapsed < 8, e.elapsed  # the delivery report (message.timeout.ms), not the route timeout
    st = http_request(h.port, "GET", f"/_handoff/requests/{e.request_id}").json()
    assert st["state"] == "unknown" and "possibly persisted" in st.get("reason", ""), st
    # Recovery: later commits succeed again.
    after = wait_until(lambda: (lambda es: es if es[0].status == 201 else None)(
        LedgerClient(h.port, concurrency=1, deadline=12).run(load("/commit", "commit", t, 1, keys=1))),
        30, 0.2, "a commit to succeed after the slow ack")
    faults.stop(h)
    rep = check(warm + slow + after, faults.read(t))
    assert rep.unknown == 1, rep
    assert_checked("P-5", rep)


@pytest.mark.timeout_s(120)
def test_p11_the_route_deadline_before_the_ack_is_504_and_the_late_report_is_only_recorded(faults):
    t = faults.mock.topic(unique("p11"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "1s")], {"message.timeout.ms": "10000"})
    warm = warm_up(h, t)
    faults.mock.cmd("broker_set_rtt 1 6000")   # the ack comes long after the 1 s route deadline
    fds = fd_count(h.proc.pid)
    entries = LedgerClient(h.port, concurrency=4, deadline=5).run(load("/commit", "commit", t, 4, keys=4))
    faults.mock.cmd("broker_set_rtt 1 0")
    assert all(e.status == 504 and e.error == "outcome_unknown" for e in entries), [(e.status, e.error) for e in entries]
    # At the route deadline (1 s), not at the ack (6 s).
    assert all(0.9 < e.elapsed < 4.0 for e in entries), [e.elapsed for e in entries]
    # The late reports arrive after the callers were answered: recorded in the status store.
    for e in entries:
        wait_until(lambda: http_request(h.port, "GET", f"/_handoff/requests/{e.request_id}").json()["state"]
                   == "persisted", 15, 0.1, f"{e.request_id} persisted late")
    wait_until(lambda: fd_count(h.proc.pid) <= fds + 1, 10, 0.1, f"FDs back to {fds}")
    faults.stop(h)
    assert sum(1 for x in h.log_lines_json() if x.get("msg") == "late delivery report") >= 1, h.log_tail()
    rep = check(warm + entries, faults.read(t))
    assert rep.unknown == 4 + sum(1 for e in warm if e.status == 504), rep
    assert rep.unknown_present == rep.unknown, rep
    assert_checked("P-11", rep)


# ----------------------------------------------------------------------------------------------
# P-6 all brokers down
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(150)
def test_p6_all_brokers_down_gives_no_2xx_flips_readiness_keeps_liveness_and_recovers(faults):
    t = faults.mock.topic(unique("p6"), 2, leaders=[1, 2])
    msg_timeout = 2.0
    h = faults.handoff([commit_route(t, "4s")], {"message.timeout.ms": str(int(msg_timeout * 1000))})
    stop = threading.Event()
    entries: list = []

    def load_loop():
        i = 0
        cl = LedgerClient(h.port, concurrency=8, deadline=8)
        while not stop.is_set():
            entries.extend(cl.run(load("/commit", "commit", t, 8, keys=8, prefix=f"r{i}-")))
            i += 1

    runner = threading.Thread(target=load_loop, daemon=True)
    with ProbeWatch(h) as probes:
        runner.start()
        wait_until(lambda: len(entries) >= 40, 20, 0.05, "load before the outage")
        down_at = time.monotonic()
        faults.mock.cmd("broker_set_down -1")
        wait_until(lambda: any(s == 503 and ts > down_at for ts, s in probes.ready), 15, 0.05,
                   "/readyz 503 while every broker is down")
        flipped = min(ts for ts, s in probes.ready if s == 503 and ts > down_at) - down_at
        # Keep them down for at least 2x message.timeout.ms, and until requests sent during the
        # outage were answered.
        wait_until(lambda: time.monotonic() - down_at >= 2 * msg_timeout and
                   sum(1 for e in list(entries) if e.sent_at > down_at + 0.05) >= 16, 30, 0.05, "the outage")
        up_at = time.monotonic()
        faults.mock.cmd("broker_set_up -1")
        wait_until(lambda: any(s == 200 and ts > up_at for ts, s in probes.ready), 30, 0.05, "/readyz 200 again")
        n = len(entries)
        wait_until(lambda: any(e.status == 201 and e.sent_at > up_at for e in entries[n:]), 30, 0.1,
                   "a commit to succeed after the brokers returned")
        stop.set()
        runner.join(30)
    faults.stop(h)
    assert not probes.health_bad, probes.health_bad[:5]
    assert flipped < 10, flipped
    # Sent after the brokers went down and answered before they came back: never 2xx.
    during = [e for e in entries if e.sent_at > down_at + 0.05 and e.done_at < up_at]
    assert during and not no_false_2xx(during, (down_at, up_at)), statuses(during)
    assert all(e.status in (503, 504) for e in during), statuses(during)
    rep = check(entries, faults.read(t))
    assert_checked("P-6", rep)


# ----------------------------------------------------------------------------------------------
# P-7 leader moves
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(150)
def test_p7_leader_moves_mid_load_lose_nothing_duplicate_only_what_was_in_doubt_and_keep_key_order(faults):
    # The same with Kafka's own sequence checks (0 duplicates): test_p15_real_cluster.py's P-7.
    t = faults.mock.topic(unique("p7"), 2, leaders=[1, 2])
    h = faults.handoff([commit_route(t, "10s")], {"message.timeout.ms": "8000", "debug": "msg"})
    moves = [(400, "0 2"), (800, "1 3"), (1200, "0 3"), (1600, "1 1")]
    count = {"n": 0}
    lock = threading.Lock()

    def on_entry(_):
        with lock:
            count["n"] += 1
            while moves and count["n"] >= moves[0][0]:
                faults.mock.cmd(f"partition_set_leader {t} {moves.pop(0)[1]}")

    entries = LedgerClient(h.port, concurrency=8, deadline=15).run(load("/commit", "commit", t, 2000, keys=16),
                                                                   on_entry=on_entry)
    assert not moves, "every leader move was made"
    faults.stop(h)
    assert all(e.status in (201, 503, 504) for e in entries), statuses(entries)
    assert statuses(entries).get(201, 0) >= 1900, statuses(entries)
    rep = check(entries, faults.read(t))
    assert rep.order_violations == [], rep
    in_doubt = assert_mock_duplicates_are_retries_in_doubt(h, rep, "P-7")
    assert_checked("P-7", rep, max_duplicates=in_doubt)


# ----------------------------------------------------------------------------------------------
# P-8 slow leader: the pending-ack table stays bounded
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p8_a_slow_leader_keeps_pending_commits_bounded_and_sheds_the_excess_fast(faults):
    t = faults.mock.topic(unique("p8"), 1, leaders=[1])
    limit, burst = 20, 200
    h = faults.handoff([commit_route(t, "8s")], {"message.timeout.ms": "10000"},
                       limits={"max_inflight_commits": limit})
    warm = LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 1, keys=1))
    rss0 = rss_bytes(h.proc.pid)
    # The held commits wait 6 s for their ack; the excess must be shed without waiting for one.
    faults.mock.cmd("broker_set_rtt 1 6000")
    peak = {"inflight": 0, "rss": rss0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak["inflight"] = max(peak["inflight"], scrape(h).value("handoff_inflight_commits"))
                peak["rss"] = max(peak["rss"], rss_bytes(h.proc.pid))
            except Exception:  # noqa: BLE001 - a missed sample is not a failure
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        entries = LedgerClient(h.port, concurrency=burst, deadline=12).run(
            load("/commit", "commit", t, burst, keys=burst))
    finally:
        done.set()
        sampler.join(5)
    faults.mock.cmd("broker_set_rtt 1 0")
    faults.stop(h)
    shed = [e for e in entries if e.status == 503]
    held = [e for e in entries if e.status != 503]
    assert all(e.error == "overloaded" for e in shed), {e.error for e in shed}
    assert len(held) <= limit * 2 and len(shed) >= burst - 2 * limit, statuses(entries)
    # Well before any ack (6 s); the rest is 200 fresh connections from one Python process.
    assert max(e.elapsed for e in shed) < 3.0, max(e.elapsed for e in shed)
    assert all(e.status in (201, 504) for e in held), statuses(held)
    assert peak["inflight"] <= limit, peak
    assert peak["rss"] < rss0 + 100 * 2**20, peak
    rep = check(warm + entries, faults.read(t))
    assert_checked("P-8", rep)


# ----------------------------------------------------------------------------------------------
# P-9 fatal idempotent producer error
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(150)
def test_p9_a_fatal_idempotence_error_answers_every_pending_commit_5xx_and_the_producer_recovers(faults):
    t = faults.mock.topic(unique("p9"), 1, leaders=[1])
    # Two io threads and /metrics scraped all along: a scrape reads the queue length of the
    # retiring handle while its own thread destroys it (the sanitizer stage would catch a race).
    h = faults.handoff([commit_route(t, "8s")], {"message.timeout.ms": "6000"}, listen={"threads": 2})
    scraping = threading.Event()

    def scrape_all_along():
        while not scraping.is_set():
            try:
                scrape(h)
            except Exception:  # noqa: BLE001 - a slow scrape is not what this checks
                pass
    scraper = threading.Thread(target=scrape_all_along, daemon=True)
    scraper.start()
    warm = LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 2, keys=1))
    assert all(e.status == 201 for e in warm), warm
    # The first Produce is held (so requests pile up), then the broker says the producer id is
    # fenced/out of order: librdkafka raises a fatal error for an idempotent producer.
    faults.mock.cmd("broker_push_request_error_rtts 1 Produce " + FATAL_PRODUCE_ERROR + ":500")
    entries = LedgerClient(h.port, concurrency=16, deadline=12).run(load("/commit", "commit", t, 64, keys=16))
    fatal_logged = any("fatal" in x.get("msg", "") for x in h.log_lines_json())
    assert fatal_logged, h.log_tail()
    assert all(e.status in (201, 503, 504) for e in entries), statuses(entries)
    assert sum(1 for e in entries if e.status in (503, 504)) >= 1, statuses(entries)
    # Re-created: commits succeed again and /readyz is 200 without a restart.
    after = wait_until(lambda: (lambda es: es if es[0].status == 201 else None)(
        LedgerClient(h.port, concurrency=1, deadline=12).run(load("/commit", "commit", t, 1, keys=1))),
        40, 0.2, "a commit to succeed after the producer was re-created")
    wait_until(lambda: h.admin_get("/readyz").status == 200, 20, 0.1, "/readyz 200 after re-creation")
    wait_until(lambda: any(x.get("msg") == "retired kafka producer handle destroyed" for x in h.log_lines_json()),
               20, 0.1, "the retired handle destroyed while scrapes go on")
    scraping.set()
    scraper.join(10)
    faults.stop(h)
    assert any(x.get("msg") == "kafka producer re-created after fatal error" for x in h.log_lines_json()), h.log_tail()
    rep = check(warm + entries + after, faults.read(t))
    assert_checked("P-9", rep)


FATAL_PRODUCE_ERROR = os.environ.get("HANDOFF_P9_ERROR", "OUT_OF_ORDER_SEQUENCE_NUMBER")


# ----------------------------------------------------------------------------------------------
# P-10 callers that go away
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p10_callers_disconnecting_while_waiting_leak_nothing_and_the_outcome_is_still_recorded(faults):
    t = faults.mock.topic(unique("p10"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "5s")], {"message.timeout.ms": "10000"})
    LedgerClient(h.port, concurrency=1).run(load("/commit", "commit", t, 1, keys=1))
    fds0 = fd_count(h.proc.pid)
    faults.mock.cmd("broker_set_rtt 1 4000")   # time for all 50 to be held before the first ack
    cids = [f"p10-{i}-{unique('c')}" for i in range(50)]
    socks = []
    for i, cid in enumerate(cids):
        body = json.dumps({"key": f"k{i % 5}"}).encode()
        s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
        s.sendall(b"POST /commit HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: " + cid.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        socks.append(s)
    wait_until(lambda: scrape(h).value("handoff_inflight_commits") == 50, 5, 0.05, "50 commits waiting")
    for s in socks:
        s.close()  # the callers give up while their commits wait for the ack
    # The callers never saw their request IDs: each record names it (ce_id) next to the caller's label.
    # Reading it back goes through the slowed broker too: let the acks (and the reads) through now.
    faults.mock.cmd("broker_set_rtt 1 0")
    landed = wait_until(lambda: (lambda rs: rs if set(cids) <= {r.correlation_id for r in rs} else None)(faults.read(t)),
                        20, 0.2, "every abandoned commit in Kafka")
    rids = [r.ce_id for r in landed if r.correlation_id in set(cids)]
    wait_until(lambda: all(http_request(h.port, "GET", f"/_handoff/requests/{rid}").json()["state"] == "persisted"
                           for rid in rids), 20, 0.2, "every abandoned commit's outcome recorded")
    wait_until(lambda: scrape(h).value("handoff_inflight_commits") == 0, 10, 0.1, "no commit held")
    wait_until(lambda: fd_count(h.proc.pid) <= fds0 + 1, 10, 0.1, f"FDs back to {fds0}")
    assert h.proc.poll() is None
    faults.stop(h)
    recs = faults.read(t)
    found = {r.correlation_id for r in recs}
    assert set(cids) <= found and len(recs) == 51, (len(recs), set(cids) - found)
    CHECKED["P-10"] = CHECKED.get("P-10", 0) + 50


# ----------------------------------------------------------------------------------------------
# P-12 permanent errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p12_permanent_errors_map_deterministically_and_do_not_loop(faults):
    bad = faults.mock.topic(unique("p12-bad"), 1, leaders=[1])
    ok = faults.mock.topic(unique("p12-ok"), 1, leaders=[1])
    faults.mock.cmd(f"topic_set_error {bad} UNKNOWN_TOPIC_OR_PART")
    routes = [commit_route(bad, "6s", "/bad"), {**commit_route(ok, "6s", "/big"), "max_body_bytes": "1MiB"}]
    h = faults.handoff(routes, {"message.timeout.ms": "3000", "message.max.bytes": "20000"})
    unknown = LedgerClient(h.port, concurrency=4, deadline=10).run(load("/bad", "commit", bad, 4, keys=4))
    assert all(e.status == 503 and e.error == "delivery_failed" for e in unknown), \
        [(e.status, e.error) for e in unknown]
    assert all(e.elapsed < 6 for e in unknown), [e.elapsed for e in unknown]
    big = [Request("/big", "commit", ok, key="big", body=json.dumps({"key": "big", "pad": "x" * 30000}).encode())
           for _ in range(3)]
    big_entries = LedgerClient(h.port, concurrency=1, deadline=5).run(big)
    assert all(e.status == 413 and e.elapsed < 3 for e in big_entries), [(e.status, e.error) for e in big_entries]
    small = LedgerClient(h.port, concurrency=1, deadline=8).run(load("/big", "commit", ok, 3, keys=1))
    assert statuses(small) == {201: 3}
    faults.mock.cmd(f"topic_set_error {bad} NO_ERROR")
    m = scrape(h)
    faults.stop(h)
    assert m.total("handoff_produce_total", outcome="not_persisted") == 4, m.text
    rep = check(unknown + big_entries + small, faults.read(ok))
    assert rep.records == 3, rep
    assert_checked("P-12", rep)


# ----------------------------------------------------------------------------------------------
# P-13 client retry with the same idempotency key after a 504
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_p13_a_retry_with_the_same_idempotency_key_after_504_stays_within_the_documented_duplicate_bound(faults):
    t = faults.mock.topic(unique("p13"), 1, leaders=[1])
    h = faults.handoff([commit_route(t, "1s")], {"message.timeout.ms": "10000"})
    warm_up(h, t)
    faults.mock.cmd("broker_set_rtt 1 2500")
    n = 10
    firsts = LedgerClient(h.port, concurrency=n, deadline=5).run(load("/commit", "commit", t, n, keys=n,
                                                                      idempotency=True))
    assert all(e.status == 504 for e in firsts), statuses(firsts)
    faults.mock.cmd("broker_set_rtt 1 0")
    # The caller retries each one with the same Idempotency-Key (and body) after the 504.
    retries = LedgerClient(h.port, concurrency=n, deadline=8).run(
        [Request("/commit", "commit", t, key=e.key, idempotency_key=e.idempotency_key,
                 body=json.dumps({"key": e.key, "seq": 0, "cid": e.correlation_id}).encode())
         for e in firsts])
    faults.stop(h)
    recs = faults.read(t)
    rep = check(firsts + retries, recs)
    # The documented bound (README, "Idempotency-Key"): the retry gets 409 while the first is
    # still waiting for its report, or the stored answer once it is settled; never a second record.
    attempts = {e.idempotency_key: [e] for e in firsts}
    for e in retries:
        attempts[e.idempotency_key].append(e)
    cid_to_idem = {e.correlation_id: e.idempotency_key for es in attempts.values() for e in es}
    copies: dict = {}
    for r in recs:
        if r.correlation_id in cid_to_idem:
            copies[cid_to_idem[r.correlation_id]] = copies.get(cid_to_idem[r.correlation_id], 0) + 1
    assert all(e.status == 409 or (e.status == 201 and e.replayed) for e in retries), \
        [(e.status, e.error, e.replayed) for e in retries]
    assert all(copies.get(k, 0) == 1 for k in attempts), copies
    assert not rep.acked_missing and not rep.ack_mismatch and not rep.hung, rep
    CHECKED["P-13"] = CHECKED.get("P-13", 0) + rep.total
    print(f"P-13: copies per idempotency key {sorted(copies.values())}, retry statuses {statuses(retries)}")


# ----------------------------------------------------------------------------------------------
# P-14 durability guard
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prop,value", [("acks", "1"), ("acks", "0"), ("request.required.acks", "1"),
                                        ("enable.idempotence", "false")])
def test_p14_a_weakened_durability_setting_with_a_commit_route_refuses_to_start(tmp_path, upstream, prop, value):
    from conftest import handoff_bin, to_yaml
    cfg = base_config("127.0.0.1:1", upstream.port, [commit_route("p14")],
                      kafka={"properties": {"linger.ms": "1", prop: value}})
    p = tmp_path / "p14.yaml"
    p.write_text(to_yaml(cfg) + "\n")
    r = subprocess.run([handoff_bin(), "run", "--config", str(p)], capture_output=True, text=True, timeout=20)
    out = r.stdout + r.stderr
    assert r.returncode == 78, (r.returncode, out)
    assert f"kafka.properties.{prop}" in out and "commit" in out and "acks=all" in out, out
    with socket.socket() as s:  # it never listened
        assert s.connect_ex(("127.0.0.1", cfg["listen"]["port"])) != 0


# ----------------------------------------------------------------------------------------------
# A-1 SIGTERM with queued 202'd events
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(120)
def test_a1_sigterm_with_unacked_202_events_flushes_every_one_within_the_budget(faults):
    t = faults.mock.topic(unique("a1"), 2, leaders=[1, 2])
    # linger.ms 3000: the events wait in the producer queue; each Produce then takes 300 ms.
    h = faults.handoff([event_route(t)], {"message.timeout.ms": "20000", "linger.ms": "3000"},
                       kafka={"flush_timeout": "15s"})
    faults.mock.cmd("broker_set_rtt -1 300")
    entries = LedgerClient(h.port, concurrency=8, deadline=5).run(load("/event", "event", t, 400, keys=16))
    assert statuses(entries) == {202: 400}, statuses(entries)
    queued = scrape(h).value("handoff_producer_queue_messages")
    assert queued > 0, "events were still queued at SIGTERM"
    faults.stop(h)
    stopped = [x for x in h.log_lines_json() if x.get("msg") == "stopped"]
    assert stopped and stopped[-1].get("undelivered") == 0, h.log_tail()
    rep = check(entries, faults.read(t), events_must_persist=True)
    assert rep.acknowledged == 400 and rep.records == 400, rep
    assert_checked("A-1", rep)


def test_zz_report_the_requests_checked_by_the_ledger():
    print("ledger-checked requests per scenario:", json.dumps(CHECKED, sort_keys=True))


# ----------------------------------------------------------------------------------------------
# P-16 no progress while the cluster answers (issue 14 part 5)
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout_s(150)
def test_p16_no_progress_while_the_cluster_answers_recreates_the_producer_with_an_honest_outcome_for_every_record(
        faults):
    t = faults.mock.topic(unique("p16"), 1, leaders=[1])
    # message.timeout.ms far away: librdkafka alone would keep these records for 10 minutes.
    h = faults.handoff([commit_route(t, "3s"), event_route(t)], {"message.timeout.ms": "600000"},
                       kafka={"stall_timeout": "4s"})
    warm = warm_up(h, t)
    # Every Produce is answered at once with a retriable error, and metadata as usual: records
    # pending, the cluster answering, nothing persisted. librdkafka alone would retry until
    # message.timeout.ms (10 minutes here).
    faults.mock.cmd("push_request_errors Produce " + " ".join(["NOT_ENOUGH_REPLICAS"] * 5000))
    t_fault = time.monotonic()
    events = LedgerClient(h.port, concurrency=4, deadline=10).run(load("/event", "event", t, 200, keys=8))
    assert statuses(events) == {202: 200}, statuses(events)
    commits = LedgerClient(h.port, concurrency=4, deadline=12).run(load("/commit", "commit", t, 8, keys=4,
                                                                        prefix="held"))
    assert all(e.status in (503, 504) for e in commits), statuses(commits)   # no 2xx: nothing persisted

    wait_until(lambda: scrape(h).value("handoff_kafka_producer_recreations_total", reason="stalled") >= 1, 30, 0.2,
               "the stalled producer re-created")
    detected_after = time.monotonic() - t_fault
    stall_logs = [x for x in h.log_lines_json() if x.get("msg", "").startswith("kafka producer made no progress")]
    assert stall_logs and stall_logs[0]["stall"] == "no_deliveries" and stall_logs[0]["pending_records"] > 0, \
        h.log_tail()
    assert scrape(h).value("handoff_kafka_producer_recreations_total", reason="fatal") == 0
    faults.mock.cmd("clear_request_errors Produce")   # the cluster takes records again

    after = wait_until(lambda: (lambda es: es if es[0].status == 201 else None)(
        LedgerClient(h.port, concurrency=1, deadline=12).run(load("/commit", "commit", t, 1, keys=1, prefix="after"))),
        30, 0.2, "a commit to succeed on the re-created producer")
    wait_until(lambda: h.admin_get("/readyz").status == 200, 20, 0.1, "/readyz 200 after the re-creation")
    assert any(x.get("msg") == "kafka producer re-created after a stall" for x in h.log_lines_json()), h.log_tail()

    # Every event and held commit has its final state at once (the purge reported them all):
    # not persisted (never sent, or refused by the broker) -> failed, sent and unanswered ->
    # unknown; none is left at accepted.
    def final_state(cid):
        return http_request(h.port, "GET", f"/_handoff/requests/{cid}").json()
    held = events + commits
    assert all(e.request_id for e in held), [e for e in held if not e.request_id][:3]
    wait_until(lambda: all(final_state(e.request_id)["state"] != "accepted" for e in held), 10, 0.2,
               "every held record has a final state")
    states = {e.request_id: final_state(e.request_id) for e in held}
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    assert set(counts) <= {"failed", "unknown", "persisted"}, counts
    assert counts.get("failed", 0) > 0, counts
    faults.stop(h)
    records = faults.read(t)
    present = {r.ce_id for r in records}   # the request IDs
    for cid, s in states.items():
        if s["state"] == "failed":   # "failed" promises the record is not in Kafka: safe to retry
            assert cid not in present, f"{cid} is failed but present: {s}"
            assert s.get("reason", "").startswith("_PURGE_QUEUE"), s
        if s["state"] == "persisted":
            assert cid in present, s
    rep = check(warm + commits + after, records)
    assert_checked("P-16", rep)
    print(f"P-16: stall re-creation {detected_after:.1f}s after the fault; outcomes of the held records: {counts}")


@pytest.mark.timeout_s(120)
def test_p17_readiness_waits_for_the_idempotent_producer_id_and_a_producer_that_never_gets_one_is_recreated(faults):
    t = faults.mock.topic(unique("p17"), 1, leaders=[1])
    # The cluster answers metadata but not InitProducerId (a retriable error, over and over).
    faults.mock.cmd("push_request_errors InitProducerId " + " ".join(["COORDINATOR_LOAD_IN_PROGRESS"] * 5000))
    h = faults.handoff([commit_route(t, "3s")], kafka={"stall_timeout": "3s"}, wait="live")
    with ProbeWatch(h) as probes:
        # Metadata is there; the producer ID is not: not ready, and /readyz says why.
        wait_until(lambda: (lambda r: r.status == 503 and r.json().get("reason") ==
                            "kafka idempotent producer has no producer ID yet")(h.admin_get("/readyz")),
                   15, 0.1, "/readyz 503 for want of a producer ID")
        wait_until(lambda: scrape(h).value("handoff_kafka_producer_recreations_total", reason="stalled") >= 1, 30,
                   0.2, "the producer without a producer ID re-created")
        r = h.admin_get("/readyz")
        assert r.status == 503, r
        assert r.json()["reason"] in ("kafka idempotent producer has no producer ID yet",
                                      "kafka producer is being re-created"), r.json()
        r = h.request("POST", "/commit", b'{"key":"k"}', {"Content-Type": "application/json"})
        assert r.status in (503, 504), r   # never 2xx without a producer ID
        faults.mock.cmd("clear_request_errors InitProducerId")
        wait_until(lambda: h.admin_get("/readyz").status == 200, 30, 0.1, "/readyz 200 once the producer ID came")
        # The probe thread polls on its own (every 50 ms, slower under ASan): wait until it has seen
        # the 200 too before it stops.
        wait_until(lambda: any(st == 200 for _, st in probes.ready), 15, 0.05, "the probe to record the 200")
    stalls = [x for x in h.log_lines_json() if x.get("msg", "").startswith("kafka producer made no progress")]
    assert stalls and stalls[0]["stall"] == "no_producer_id" and stalls[0]["producer_id_assigned"] is False, stalls
    assert any(x.get("msg") == "kafka idempotent producer state" and x.get("idemp_state") == "Assigned"
               for x in h.log_lines_json()), h.log_tail()
    # Before the producer ID came, /readyz never said 200 (the probe answers up to the first 200).
    first_200 = next(i for i, (_, st) in enumerate(probes.ready) if st == 200)
    assert first_200 > 10 and all(st == 503 for _, st in probes.ready[:first_200]), probes.ready[:first_200 + 1]
    after = warm_up(h, t)
    faults.stop(h)
    assert_checked("P-17", check(after, faults.read(t)))
