"""P-4 against a real Kafka broker: transport errors with Produce requests in flight.

librdkafka's mock cluster (test_broker_faults.py) checks producer sequences only for
transactional producers, so a batch whose response was lost and that librdkafka retried is
appended there a second time; a real broker drops the retry as a duplicate. What Kafka guarantees
can only be asserted against Kafka, so this module runs the scenario on a single-node broker of
its own, behind a relay (relay.KafkaCutter) that closes the client's connection exactly when
the broker's answer to a Produce request arrives: the batch is in the log, the caller is still
waiting, librdkafka sees *possibly persisted* and retries.

Pass criteria (tests/CATALOGUE.md, P-4): every answer is 201 only if the record is in Kafka at the
offset the answer names (NF2, NAL), nothing hangs, and no record is duplicated (idempotence);
librdkafka's own debug log shows that batches were in doubt and were retried unchanged, so the
test cannot pass without exercising the case.
"""
from __future__ import annotations

import sys
import threading

import pytest

from conftest import (REPO_ROOT, Kafka, PrivateKafka, assert_retried_unchanged, base_config, free_port, free_port_pair,
                      in_doubt_batches, unique, wait_until)
from relay import KafkaCutter

sys.path.insert(0, str(REPO_ROOT / "tests" / "ledger"))
from ledger import LedgerClient, check, load, read_topics  # noqa: E402


@pytest.fixture(scope="module")
def cut_kafka(tmp_path_factory):
    """A private broker whose CUT listener is advertised at a relay's port."""
    d = tmp_path_factory.mktemp("cut-kafka")
    inner, outer = free_port(), free_port()
    extra = d / "cut.properties"
    extra.write_text(f"extra.listeners=CUT://127.0.0.1:{inner}\n"
                     f"extra.advertised.listeners=CUT://127.0.0.1:{outer}\n"
                     "extra.listener.security.protocol.map=CUT:PLAINTEXT\n")
    cutter = KafkaCutter(inner, listen_port=outer)   # bound before the broker advertises its port
    pk = PrivateKafka(d, free_port_pair()).start(extra=extra)
    yield pk, cutter
    cutter.close()
    pk.stop()


@pytest.mark.timeout_s(180)
def test_p4_produce_responses_lost_on_a_real_broker_end_in_2xx_only_if_persisted_and_never_duplicate(
        cut_kafka, handoff_process, upstream):
    pk, cutter = cut_kafka
    topic = Kafka(pk.brokers).create_topic(unique("p4real"), 2)
    route = {"name": "commit", "match": {"methods": ["POST"], "path": "/commit"}, "mode": "commit",
             "topic": topic, "key": "body:/key", "timeout": "20s", "success_status": 201}
    cfg = base_config(f"127.0.0.1:{cutter.port}", upstream.port, [route],
                      log={"level": "debug", "requests": False},
                      kafka={"flush_timeout": "10s", "properties": {
                          "linger.ms": "1", "message.timeout.ms": "15000", "debug": "msg",
                          "reconnect.backoff.ms": "10", "reconnect.backoff.max.ms": "200"}})
    h = handoff_process(cfg, name="p4-real")
    cuts = 6
    client = LedgerClient(h.port, concurrency=8, deadline=30)
    stop = threading.Event()

    def drive():  # batches of 200 until the cuts are done, so the load outlasts them
        i = 0
        while not stop.is_set():
            client.run(load("/commit", "commit", topic, 200, keys=8, prefix=f"r{i}-"), stop=stop)
            i += 1
    runner = threading.Thread(target=drive, daemon=True)
    runner.start()
    answered = lambda: sum(1 for e in list(client.entries) if e.status is not None)  # noqa: E731
    try:
        # Commits go through between the cuts (else one batch is cut again and again on retry).
        for i in range(cuts + 1):
            wait_until(lambda: answered() >= 60 * (i + 1), 60, 0.02, f"60 more commits answered ({i})")
            if i < cuts:
                cutter.cut_next_produce_responses(1)
                assert cutter.wait_cuts(i + 1, 30), f"cut {i + 1}: no Produce response to lose"
    finally:
        stop.set()
        runner.join(120)
    assert not runner.is_alive(), "the load did not finish"
    assert h.stop() == 0, h.log_tail()
    results = client.entries

    doubt = in_doubt_batches(h)
    assert doubt, "no batch was in doubt: the relay cut no connection with a Produce in flight"
    assert_retried_unchanged(h, doubt)
    # A real broker drops the retried batch: not one extra copy, and every caller got 201.
    statuses = {}
    for e in results:
        statuses[e.status] = statuses.get(e.status, 0) + 1
    assert set(statuses) == {201}, statuses
    rep = check(results, read_topics(pk.brokers, [topic], timeout=60))
    assert rep.ok(max_duplicates=0) and rep.records == len(results) and rep.duplicates == {}, rep
    print(f"P-4 real broker: {cutter.cuts} Produce responses lost, {sum(c for c, _, _ in doubt)} record(s) "
          f"in doubt, 0 duplicates among {rep.records} records")
