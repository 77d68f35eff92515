#!/usr/bin/env python3
"""The ledger: what clients were told, checked against what Kafka holds.

Two halves (tests/CATALOGUE.md, "Shared harness"):

* **Client side** (`LedgerClient`): sends requests concurrently over raw HTTP/1.1 keep-alive
  connections (one thread per connection), always with its own `X-Correlation-ID` (and an
  `Idempotency-Key` when asked), and records one `Entry` per request: route, mode, topic, key,
  correlation and idempotency key, HTTP status, the response's partition/offset/outcome/error, and
  the send/answer times. Requests with the same key always go to the same connection, one after
  the other, so each one is sent only after the previous one for that key was answered: that is
  the order the checker holds Kafka to.

* **Checker** (`check(entries, records, ...)`): given the ledger and the records read back from
  the topics from the beginning (`read_topics`, matched by the `handoff_correlation_id` header: the
  client's own `X-Correlation-ID`, unique per request here; Handoff's request ID is the `ce_id`), computes
    (a) acknowledged-but-missing: 2xx on commit routes (and 202 on event routes when the caller
        says the flush budget sufficed) whose record is not in the topic; must be empty.
        Also `ack_mismatch`: a 2xx whose partition/offset does not hold that record.
    (b) unknown outcomes (504, or no response at all) counted, with how many did land;
    (c) duplicates: correlation IDs found more than once;
    (d) per-key order violations: a record sent after an earlier same-key request was answered
        sits before it in the partition (or in another partition).
  plus `failed_but_present` (a definite 4xx/503 failure whose record is in Kafka anyway: the
  caller was told "safe to retry"), `hung` (no answer within the client deadline) and `foreign`
  (records with no ledger entry, e.g. from another writer).

CLI (JSON-lines ledger files, so a long soak can be checked afterwards):
    ledger.py run   --port P --path /orders --mode commit --topic T --count N [--keys K]
                    [--concurrency C] [--out ledger.jsonl]
    ledger.py check --ledger ledger.jsonl --brokers B [--events-must-persist]
Both print a JSON report; `check` exits 1 when an invariant is broken.
"""
from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One request as the client saw it."""

    correlation_id: str
    route: str                      # the request path, e.g. /orders
    mode: str                       # "commit" or "event"
    topic: str
    key: str | None = None
    idempotency_key: str | None = None
    seq: int = 0                    # per-key send order (0, 1, 2, ...)
    status: int | None = None       # None: no response (transport error or client timeout)
    error: str | None = None        # the response's "error" code, or the transport error
    outcome: str | None = None      # the response's "outcome" ("persisted", "unknown")
    partition: int | None = None
    offset: int | None = None
    sent_at: float = 0.0            # time.monotonic() when the request was written
    done_at: float = 0.0            # when the answer (or the failure) was seen
    timed_out: bool = False         # the client's deadline passed with no answer
    replayed: bool = False          # `Idempotent-Replayed: true`: a stored answer, nothing produced
    request_id: str | None = None   # Handoff's own ID for the request (its status URL), from the answer

    @property
    def elapsed(self) -> float:
        return self.done_at - self.sent_at


@dataclass
class Record:
    """One Kafka record, as read back."""

    topic: str
    partition: int
    offset: int
    correlation_id: str | None   # the handoff_correlation_id header: the label the client sent
    key: str | None = None
    ce_id: str | None = None     # the CloudEvents id: Handoff's request ID


@dataclass
class Report:
    total: int = 0
    by_status: dict = field(default_factory=dict)          # "201" / "503" / "none" -> count
    acknowledged: int = 0                                  # entries the checker holds to NAL
    acked_missing: list = field(default_factory=list)      # (a) correlation ids
    ack_mismatch: list = field(default_factory=list)       # 2xx naming the wrong partition/offset
    unknown: int = 0                                       # (b) 504 or no response
    unknown_present: int = 0                               #     ... of which landed in Kafka
    failed_but_present: list = field(default_factory=list) # 4xx/503 whose record is in Kafka
    duplicates: dict = field(default_factory=dict)         # (c) correlation id -> copies
    order_violations: list = field(default_factory=list)   # (d) descriptions
    hung: list = field(default_factory=list)               # no answer within the deadline
    foreign: int = 0                                       # records with no ledger entry
    records: int = 0

    @property
    def duplicate_copies(self) -> int:
        """Extra copies beyond the first, summed over correlation ids."""
        return sum(n - 1 for n in self.duplicates.values())

    def ok(self, max_duplicates: int = 0, allow_failed_present: bool = False) -> bool:
        return (not self.acked_missing and not self.ack_mismatch and not self.order_violations
                and not self.hung and self.duplicate_copies <= max_duplicates
                and (allow_failed_present or not self.failed_but_present))

    def summary(self) -> dict:
        d = asdict(self)
        d["duplicate_copies"] = self.duplicate_copies
        for k in ("acked_missing", "ack_mismatch", "failed_but_present", "order_violations", "hung"):
            d[k + "_count"] = len(d[k])
            d[k] = d[k][:20]
        d["duplicates"] = dict(list(d["duplicates"].items())[:20])
        return d

    def __str__(self) -> str:
        return json.dumps(self.summary(), indent=1, default=str)


# ----------------------------------------------------------------------------------------------
# The checker (pure: no sockets, no Kafka)
# ----------------------------------------------------------------------------------------------


def is_acknowledged(e: Entry, events_must_persist: bool) -> bool:
    if e.status is None:
        return False
    if e.mode == "commit":
        return 200 <= e.status < 300
    if e.mode == "event":
        return events_must_persist and e.status == 202
    return False


def is_unknown(e: Entry) -> bool:
    return e.status is None or e.status == 504


def is_definite_failure(e: Entry) -> bool:
    """The caller was told nothing was (or will be) persisted: 4xx, 503 (README, "Route modes")."""
    return e.status is not None and (400 <= e.status < 500 or e.status == 503)


def check(entries: Iterable[Entry], records: Iterable[Record], events_must_persist: bool = False) -> Report:
    entries = list(entries)
    records = list(records)
    rep = Report(total=len(entries), records=len(records))
    by_cid: dict[str, list[Record]] = {}
    for r in records:
        if r.correlation_id is None:
            rep.foreign += 1
            continue
        by_cid.setdefault(r.correlation_id, []).append(r)
    at: dict[tuple[str, int, int], Record] = {(r.topic, r.partition, r.offset): r for r in records}
    known = {e.correlation_id for e in entries}
    rep.foreign += sum(len(v) for k, v in by_cid.items() if k not in known)

    for e in entries:
        s = "none" if e.status is None else str(e.status)
        rep.by_status[s] = rep.by_status.get(s, 0) + 1
        found = by_cid.get(e.correlation_id, [])
        if e.timed_out:
            rep.hung.append(e.correlation_id)
        if is_acknowledged(e, events_must_persist) and e.replayed:
            # A stored answer to an Idempotency-Key retry: it names the first attempt's record.
            rep.acknowledged += 1
            if e.mode == "commit" and (e.topic, e.partition, e.offset) not in at:
                rep.acked_missing.append(e.correlation_id)
        elif is_acknowledged(e, events_must_persist):
            rep.acknowledged += 1
            if not found:
                rep.acked_missing.append(e.correlation_id)
            elif e.mode == "commit" and e.partition is not None and e.offset is not None:
                if not any(r.topic == e.topic and r.partition == e.partition and r.offset == e.offset for r in found):
                    where = [(r.topic, r.partition, r.offset) for r in found]
                    rep.ack_mismatch.append(f"{e.correlation_id}: told {e.topic}/{e.partition}@{e.offset}, "
                                            f"found at {where}")
        elif is_unknown(e):
            rep.unknown += 1
            if found:
                rep.unknown_present += 1
        elif is_definite_failure(e) and found:
            rep.failed_but_present.append(f"{e.correlation_id}: HTTP {e.status} {e.error}")

    for cid, rs in by_cid.items():
        if cid in known and len(rs) > 1:
            rep.duplicates[cid] = len(rs)

    rep.order_violations = order_violations(entries, by_cid)
    return rep


def order_violations(entries: list[Entry], by_cid: dict[str, list[Record]]) -> list[str]:
    """Per key: for each request B, every same-key request A answered before B was sent must, if
    both are in Kafka, sit in the same topic-partition at a lower offset (first copy counts)."""
    out: list[str] = []
    per_key: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.key is not None:
            per_key.setdefault((e.topic, e.key), []).append(e)
    for (topic, key), es in per_key.items():
        pending = sorted(es, key=lambda e: e.sent_at)
        # Walk B in send order; move every A answered before B was sent into the predecessors.
        pred_max: dict[int, tuple[int, str]] = {}   # partition -> (max offset, cid)
        done_sorted = sorted(es, key=lambda e: e.done_at)
        j = 0
        for b in pending:
            while j < len(done_sorted) and done_sorted[j].done_at < b.sent_at:
                a = done_sorted[j]
                j += 1
                ra = first_copy(by_cid.get(a.correlation_id, []), topic)
                if ra is not None and (ra.partition not in pred_max or ra.offset > pred_max[ra.partition][0]):
                    pred_max[ra.partition] = (ra.offset, a.correlation_id)
            rb = first_copy(by_cid.get(b.correlation_id, []), topic)
            if rb is None:
                continue
            for part, (off, acid) in pred_max.items():
                if part != rb.partition:
                    out.append(f"key {key!r}: {b.correlation_id} in partition {rb.partition}, "
                               f"but earlier {acid} in partition {part}")
                elif off >= rb.offset:
                    out.append(f"key {key!r}: {b.correlation_id} at offset {rb.offset} was sent after "
                               f"{acid} (offset {off}) was answered")
    return out


def first_copy(rs: list[Record], topic: str) -> Record | None:
    rs = [r for r in rs if r.topic == topic]
    return min(rs, key=lambda r: (r.partition, r.offset)) if rs else None


# ----------------------------------------------------------------------------------------------
# Reading the topics back (confluent-kafka)
# ----------------------------------------------------------------------------------------------


def read_topics(brokers: str, topics: Iterable[str], timeout: float = 60.0,
                extra_conf: dict | None = None) -> list[Record]:
    """Every record of `topics` from the beginning up to the high watermarks seen at the start."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": brokers, "group.id": f"ledger-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": False, **(extra_conf or {})})
    deadline = time.monotonic() + timeout
    try:
        want: dict[tuple[str, int], int] = {}
        assign = []
        for t in topics:
            md = None
            while md is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no metadata for topic {t}")
                m = c.list_topics(t, timeout=5).topics.get(t)
                if m is not None and m.error is None and m.partitions:
                    md = m
            for p in sorted(md.partitions):
                lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                if hi > lo:
                    want[(t, p)] = hi
                    assign.append(TopicPartition(t, p, OFFSET_BEGINNING))
        out: list[Record] = []
        if not assign:
            return out
        c.assign(assign)
        remaining = dict(want)
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_topics: still missing {remaining} after {timeout}s "
                                   f"({len(out)} records read)")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise RuntimeError(f"consumer error: {m.error()}")
            tp = (m.topic(), m.partition())
            label = ce_id = None
            for k, v in m.headers() or []:
                if k == "handoff_correlation_id":
                    label = v.decode() if v is not None else None
                elif k == "ce_id":
                    ce_id = v.decode() if v is not None else None
            key = m.key().decode(errors="replace") if m.key() is not None else None
            out.append(Record(m.topic(), m.partition(), m.offset(), label, key, ce_id))
            if tp in remaining and m.offset() + 1 >= remaining[tp]:
                del remaining[tp]
        return out
    finally:
        c.close()


# ----------------------------------------------------------------------------------------------
# The client side
# ----------------------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    mode: str
    topic: str
    key: str | None = None
    body: bytes | None = None          # default: {"key": key, "seq": n, "cid": cid}
    headers: list = field(default_factory=list)
    correlation_id: str | None = None  # default: generated
    idempotency_key: str | None = None
    method: str = "POST"


class _Conn:
    """One keep-alive HTTP/1.1 connection with a minimal Content-Length response parser."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buf = None, b""

    def roundtrip(self, raw: bytes, deadline: float) -> tuple[int, dict, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=max(0.1, deadline - time.monotonic()))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(raw)
        head = self._until(b"\r\n\r\n", deadline)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.partition(":")
                headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        body = self._exact(n, deadline)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _fill(self, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("client deadline")
        assert self.sock is not None
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _until(self, sep: bytes, deadline: float) -> bytes:
        while sep not in self.buf:
            self._fill(deadline)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class LedgerClient:
    """Sends `Request`s over `concurrency` keep-alive connections and records an `Entry` each.

    `deadline` is the longest any request may wait for its answer (NO-HANG): past it the request
    is recorded with `timed_out=True` and its connection is dropped."""

    def __init__(self, port: int, host: str = "127.0.0.1", concurrency: int = 8, deadline: float = 30.0):
        self.host, self.port, self.concurrency, self.deadline = host, port, concurrency, deadline
        self.entries: list[Entry] = []
        self._lock = threading.Lock()
        self._seq: dict[tuple[str, str], int] = {}

    def _build(self, r: Request) -> tuple[Entry, bytes]:
        cid = r.correlation_id or f"ldg-{uuid.uuid4().hex}"
        with self._lock:
            k = (r.topic, r.key or "")
            seq = self._seq.get(k, 0)
            self._seq[k] = seq + 1
        body = r.body if r.body is not None else json.dumps({"key": r.key, "seq": seq, "cid": cid}).encode()
        hs = [("Host", f"{self.host}:{self.port}"), ("X-Correlation-ID", cid),
              ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if r.idempotency_key:
            hs.append(("Idempotency-Key", r.idempotency_key))
        hs += list(r.headers)
        raw = (f"{r.method} {r.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n").encode() + body
        e = Entry(correlation_id=cid, route=r.path, mode=r.mode, topic=r.topic, key=r.key,
                  idempotency_key=r.idempotency_key, seq=seq)
        return e, raw

    def send_one(self, conn: _Conn, r: Request) -> Entry:
        e, raw = self._build(r)
        e.sent_at = time.monotonic()
        try:
            status, headers, body = conn.roundtrip(raw, e.sent_at + self.deadline)
            e.status = status
            e.replayed = headers.get("idempotent-replayed", "").lower() == "true"
            try:
                j = json.loads(body) if body else {}
            except ValueError:
                j = {}
            loc = headers.get("location", "")
            if loc.startswith("/_handoff/requests/"):
                e.request_id = loc[len("/_handoff/requests/"):]
            if isinstance(j, dict):
                e.request_id = e.request_id or j.get("request_id")
                e.error = j.get("error")
                e.outcome = j.get("outcome")
                e.partition = j.get("partition")
                e.offset = j.get("offset")
        except socket.timeout:
            e.timed_out = True
            e.error = "client deadline passed with no answer"
            conn.close()
        except (OSError, ConnectionError, ValueError, IndexError) as ex:
            e.error = f"transport: {ex!r}"
            conn.close()
        e.done_at = time.monotonic()
        with self._lock:
            self.entries.append(e)
        return e

    def run(self, requests: Iterable[Request], on_entry: Callable[[Entry], None] | None = None,
            stop: threading.Event | None = None) -> list[Entry]:
        """Sends every request (same key -> same connection, in order); returns their entries."""
        queues = [queue.Queue() for _ in range(self.concurrency)]
        mine: list[Entry] = []
        mine_lock = threading.Lock()

        def worker(q: queue.Queue):
            conn = _Conn(self.host, self.port)
            try:
                while True:
                    r = q.get()
                    if r is None:
                        return
                    if stop is not None and stop.is_set():
                        continue
                    e = self.send_one(conn, r)
                    with mine_lock:
                        mine.append(e)
                    if on_entry:
                        on_entry(e)
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(q,), daemon=True) for q in queues]
        for t in threads:
            t.start()
        rr = 0
        slots: dict[tuple[str, str], int] = {}  # a key's connection: keys spread evenly, in order
        for r in requests:
            if r.key is not None:
                i = slots.setdefault((r.topic, r.key), len(slots) % self.concurrency)
            else:
                i, rr = rr % self.concurrency, rr + 1
            queues[i].put(r)
        for q in queues:
            q.put(None)
        for t in threads:
            t.join()
        return mine


def load(path: str, mode: str, topic: str, count: int, keys: int = 16, prefix: str = "k",
         idempotency: bool = False) -> list[Request]:
    """`count` requests spread round-robin over `keys` keys."""
    return [Request(path=path, mode=mode, topic=topic, key=f"{prefix}{i % keys}",
                    idempotency_key=f"idem-{uuid.uuid4().hex}" if idempotency else None)
            for i in range(count)]


def save(entries: Iterable[Entry], path: str):
    with open(path, "w") as f:
        for e in entries:
            f.write(json.dumps(asdict(e)) + "\n")


def load_ledger(path: str) -> list[Entry]:
    with open(path) as f:
        return [Entry(**json.loads(ln)) for ln in f if ln.strip()]


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="send requests and write the ledger")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--path", required=True)
    r.add_argument("--mode", choices=["commit", "event"], required=True)
    r.add_argument("--topic", required=True)
    r.add_argument("--count", type=int, default=1000)
    r.add_argument("--keys", type=int, default=16)
    r.add_argument("--concurrency", type=int, default=8)
    r.add_argument("--deadline", type=float, default=30.0)
    r.add_argument("--idempotency", action="store_true", help="send an Idempotency-Key with each request")
    r.add_argument("--out", default="ledger.jsonl")
    c = sub.add_parser("check", help="read the topics back and check the ledger")
    c.add_argument("--ledger", required=True)
    c.add_argument("--brokers", required=True)
    c.add_argument("--events-must-persist", action="store_true")
    c.add_argument("--max-duplicates", type=int, default=0)
    c.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args(argv)
    if a.cmd == "run":
        cl = LedgerClient(a.port, a.host, a.concurrency, a.deadline)
        entries = cl.run(load(a.path, a.mode, a.topic, a.count, a.keys, idempotency=a.idempotency))
        save(entries, a.out)
        counts: dict[str, int] = {}
        for e in entries:
            counts[str(e.status)] = counts.get(str(e.status), 0) + 1
        print(json.dumps({"requests": len(entries), "by_status": counts, "ledger": a.out}))
        return 0
    entries = load_ledger(a.ledger)
    records = read_topics(a.brokers, sorted({e.topic for e in entries}), a.timeout)
    rep = check(entries, records, a.events_must_persist)
    print(rep)
    return 0 if rep.ok(a.max_duplicates) else 1


if __name__ == "__main__":
    sys.exit(main())
