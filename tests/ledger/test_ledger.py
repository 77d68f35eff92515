"""The ledger checker's logic on synthetic ledgers (no broker, no sockets except one local server)."""
from __future__ import annotations

import json
import socket
import threading

import pytest

from ledger import Entry, LedgerClient, Record, Request, check, load, load_ledger, main, save

T = "orders"


def entry(cid, status, mode="commit", key="k", t0=0.0, t1=0.0, partition=None, offset=None, error=None,
          timed_out=False, topic=T):
    return Entry(correlation_id=cid, route="/orders", mode=mode, topic=topic, key=key, status=status,
                 partition=partition, offset=offset, error=error, sent_at=t0, done_at=t1, timed_out=timed_out)


def rec(cid, partition=0, offset=0, topic=T):
    return Record(topic, partition, offset, cid)


def test_a_clean_run_is_ok_with_every_acknowledgement_found_where_it_was_promised():
    es = [entry("a", 201, t0=0, t1=1, partition=0, offset=0), entry("b", 201, t0=2, t1=3, partition=0, offset=1)]
    rep = check(es, [rec("a", 0, 0), rec("b", 0, 1)])
    assert rep.ok(), rep
    assert rep.acknowledged == 2 and rep.by_status == {"201": 2} and rep.records == 2


def test_a_2xx_commit_missing_from_the_topic_is_acknowledged_but_missing():
    rep = check([entry("a", 200, partition=0, offset=0), entry("b", 200, partition=0, offset=1)], [rec("a")])
    assert rep.acked_missing == ["b"] and not rep.ok()


def test_a_2xx_whose_partition_and_offset_hold_another_record_is_a_mismatch():
    rep = check([entry("a", 200, partition=0, offset=5)], [rec("a", 0, 4)])
    assert len(rep.ack_mismatch) == 1 and "a:" in rep.ack_mismatch[0] and not rep.ok()


def test_an_event_202_counts_as_acknowledged_only_when_the_flush_budget_sufficed():
    es = [entry("e", 202, mode="event")]
    assert check(es, []).ok()
    rep = check(es, [], events_must_persist=True)
    assert rep.acked_missing == ["e"] and not rep.ok()


def test_504_and_no_response_are_unknown_outcomes_counted_whether_or_not_they_landed():
    es = [entry("u1", 504), entry("u2", 504), entry("u3", None, error="transport: reset")]
    rep = check(es, [rec("u1")])
    assert rep.unknown == 3 and rep.unknown_present == 1 and rep.ok()


def test_a_definite_503_failure_found_in_the_topic_is_reported():
    rep = check([entry("f", 503, error="delivery_failed"), entry("g", 503, error="queue_full")], [rec("f")])
    assert rep.failed_but_present == ["f: HTTP 503 delivery_failed"]
    assert not rep.ok() and rep.ok(allow_failed_present=True)


def test_duplicates_are_counted_per_correlation_id_against_the_bound():
    rep = check([entry("a", 200, partition=0, offset=0), entry("b", 504)],
                [rec("a", 0, 0), rec("a", 0, 3), rec("b", 0, 1), rec("b", 0, 2), rec("b", 0, 4)])
    assert rep.duplicates == {"a": 2, "b": 3} and rep.duplicate_copies == 3
    assert not rep.ok() and rep.ok(max_duplicates=3)


def test_a_replayed_idempotent_answer_is_checked_at_the_position_it_names():
    first = entry("a", 504)
    retry = entry("b", 201, partition=0, offset=3)
    retry.replayed = True
    assert check([first, retry], [rec("a", 0, 3)]).ok()
    rep = check([first, retry], [rec("a", 0, 2)])
    assert rep.acked_missing == ["b"] and not rep.ok()


def test_a_hung_request_fails_the_run():
    rep = check([entry("h", None, timed_out=True)], [])
    assert rep.hung == ["h"] and rep.unknown == 1 and not rep.ok()


def test_records_without_a_ledger_entry_are_foreign_not_failures():
    rep = check([entry("a", 200, partition=0, offset=0)], [rec("a"), rec("zzz", 0, 1), Record(T, 0, 2, None)])
    assert rep.foreign == 2 and rep.ok()


def test_a_later_same_key_request_stored_before_an_answered_earlier_one_is_an_order_violation():
    es = [entry("a", 200, t0=0, t1=1, partition=0, offset=7), entry("b", 200, t0=2, t1=3, partition=0, offset=6)]
    rep = check(es, [rec("a", 0, 7), rec("b", 0, 6)])
    assert len(rep.order_violations) == 1 and "b" in rep.order_violations[0] and not rep.ok()


def test_concurrent_same_key_requests_may_land_in_any_order():
    # b was sent before a was answered: no order is promised between them.
    es = [entry("a", 200, t0=0, t1=5, partition=0, offset=7), entry("b", 200, t0=1, t1=3, partition=0, offset=6)]
    assert check(es, [rec("a", 0, 7), rec("b", 0, 6)]).order_violations == []


def test_different_keys_are_not_ordered_against_each_other():
    es = [entry("a", 200, key="x", t0=0, t1=1, partition=0, offset=7),
          entry("b", 200, key="y", t0=2, t1=3, partition=0, offset=6)]
    assert check(es, [rec("a", 0, 7), rec("b", 0, 6)]).ok()


def test_a_key_that_moves_partition_is_an_order_violation():
    es = [entry("a", 200, t0=0, t1=1, partition=0, offset=0), entry("b", 200, t0=2, t1=3, partition=1, offset=0)]
    rep = check(es, [rec("a", 0, 0), rec("b", 1, 0)])
    assert len(rep.order_violations) == 1 and "partition" in rep.order_violations[0]


def test_an_unknown_outcome_that_landed_still_holds_its_place_in_the_key_order():
    # u timed out (504) but was persisted later than b, which was sent after the 504: a violation
    # (the idempotent producer keeps per-partition order, so this must not happen).
    es = [entry("u", 504, t0=0, t1=5), entry("b", 200, t0=6, t1=7, partition=0, offset=3)]
    rep = check(es, [rec("b", 0, 3), rec("u", 0, 4)])
    assert len(rep.order_violations) == 1
    # ... and one that never landed does not disturb the order check.
    assert check(es, [rec("b", 0, 3)]).order_violations == []


def test_the_order_check_uses_the_first_copy_of_a_duplicated_record():
    es = [entry("a", 200, t0=0, t1=1, partition=0, offset=0), entry("b", 200, t0=2, t1=3, partition=0, offset=1)]
    rep = check(es, [rec("a", 0, 0), rec("b", 0, 1), rec("a", 0, 2)])
    assert rep.order_violations == [] and rep.duplicates == {"a": 2}


def test_the_ledger_round_trips_through_a_json_lines_file(tmp_path):
    es = [entry("a", 201, partition=1, offset=2, t0=1.5, t1=2.5), entry("b", None, error="transport: x")]
    save(es, str(tmp_path / "l.jsonl"))
    assert load_ledger(str(tmp_path / "l.jsonl")) == es


class _FakeProxy:
    """A tiny keep-alive HTTP server answering like a commit route, to test the client side."""

    def __init__(self, answer):
        self.answer = answer
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                hs = dict(ln.split(": ", 1) for ln in head.decode().split("\r\n")[1:])
                n = int(hs.get("Content-Length", "0"))
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.seen.append({"headers": hs, "body": json.loads(body)})
                    i = len(self.seen) - 1
                status, j = self.answer(i, hs)
                if status is None:
                    return  # drop the connection without answering
                out = json.dumps(j).encode()
                c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(out)) + out)

    def close(self):
        self.srv.close()


def test_the_client_records_status_offsets_its_own_correlation_ids_and_keeps_each_key_in_order():
    def answer(i, hs):
        return 201, {"partition": 0, "offset": i, "outcome": "persisted", "correlation_id": hs["X-Correlation-ID"]}
    fp = _FakeProxy(answer)
    try:
        cl = LedgerClient(fp.port, concurrency=4, deadline=5)
        es = cl.run(load("/orders", "commit", T, 200, keys=8, idempotency=True))
    finally:
        fp.close()
    assert len(es) == 200 and all(e.status == 201 and e.outcome == "persisted" for e in es)
    assert len({e.correlation_id for e in es}) == 200
    sent = {s["headers"]["X-Correlation-ID"]: s for s in fp.seen}
    assert set(sent) == {e.correlation_id for e in es}
    assert all(sent[e.correlation_id]["headers"]["Idempotency-Key"] == e.idempotency_key for e in es)
    for k in {e.key for e in es}:
        mine = sorted((e for e in es if e.key == k), key=lambda e: e.sent_at)
        assert [e.seq for e in mine] == list(range(len(mine)))  # one after the other, in order
        assert all(a.done_at <= b.sent_at for a, b in zip(mine, mine[1:]))


def test_the_client_records_a_dropped_connection_and_a_missed_deadline_and_goes_on():
    def answer(i, hs):
        if i == 0:
            return None, None
        if i == 1:
            import time
            time.sleep(1.5)
        return 200, {"partition": 0, "offset": i}
    fp = _FakeProxy(answer)
    try:
        cl = LedgerClient(fp.port, concurrency=1, deadline=1.0)
        es = cl.run([Request("/o", "commit", T, key="k") for _ in range(3)])
    finally:
        fp.close()
    assert es[0].status is None and es[0].error.startswith("transport") and not es[0].timed_out
    assert es[1].status is None and es[1].timed_out
    assert es[2].status == 200


def test_the_cli_check_exits_1_on_a_broken_invariant(tmp_path, monkeypatch, capsys):
    import ledger as L
    save([entry("a", 200, partition=0, offset=0)], str(tmp_path / "l.jsonl"))
    monkeypatch.setattr(L, "read_topics", lambda *a, **k: [])
    assert main(["check", "--ledger", str(tmp_path / "l.jsonl"), "--brokers", "x"]) == 1
    assert '"acked_missing_count": 1' in capsys.readouterr().out
    monkeypatch.setattr(L, "read_topics", lambda *a, **k: [rec("a")])
    assert main(["check", "--ledger", str(tmp_path / "l.jsonl"), "--brokers", "x"]) == 0


@pytest.mark.parametrize("n", [0, 1])
def test_an_empty_or_single_ledger_checks_cleanly(n):
    es = [entry("a", 200, partition=0, offset=0)][:n]
    assert check(es, [rec("a")][:n]).ok()
