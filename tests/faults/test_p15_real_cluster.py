"""P-15 (tests/CATALOGUE.md): commit load against a real 3-node KRaft cluster (RF 3,
min.insync.replicas=2) while the leader of the partitions is killed with SIGKILL every few seconds
and restarted; afterwards the ledger checker reads the topic back: nothing acknowledged may be
missing, every 2xx must name the record's real partition/offset, nothing may hang; unknown
outcomes and duplicates are counted and reported.

Its own ctest entry (`handoff_real_cluster_faults`, RUN_SERIAL) with its own cluster on free ports
below the ephemeral range (conftest.free_block). Duration: HANDOFF_P15_SECONDS (60 in CI); the soak is
    HANDOFF_P15_SECONDS=1800 HANDOFF_P15_NEMESIS_S=30 ctest -R handoff_real_cluster_faults --timeout 2400
Needs HANDOFF_BIN (set by ctest), Java 17 and the Kafka jars (scripts/setup.sh).
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "ledger"))
from conftest import Handoff, RoundRobin, at_once, base_config, free_block, free_port, http_request, to_yaml, wait_until  # noqa: E402
from ledger import LedgerClient, check, load, read_topics, save  # noqa: E402

KAFKA_SH = REPO / "tests" / "kafka" / "kafka.sh"
DURATION_S = float(os.environ.get("HANDOFF_P15_SECONDS", "60"))
NEMESIS_S = float(os.environ.get("HANDOFF_P15_NEMESIS_S", "8"))   # one leader kill per period
DOWN_S = float(os.environ.get("HANDOFF_P15_DOWN_S", "2"))         # how long the killed node stays dead
ROUTE_TIMEOUT_S = 15


class Cluster:
    def __init__(self, d: Path, base: int):
        self.dir, self.base = d, base
        self.brokers = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3))

    def sh(self, *args, timeout=240):
        r = subprocess.run([str(KAFKA_SH), *args], capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"kafka.sh {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def start(self):
        self.sh("start-cluster", str(self.dir), str(self.base))

    def pid(self, i: int) -> int:
        return int((self.dir / f"node{i}" / "pid").read_text())

    def alive(self, i: int) -> bool:
        try:
            pid = self.pid(i)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return not _reaped(pid)

    def kill9(self, i: int):
        pid = self.pid(i)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.alive(i), 10, 0.05, f"node {i} dead")

    def terminate(self, i: int):
        """SIGTERM: a controlled shutdown, which hands the node's leaderships to other in-sync
        replicas before it stops."""
        os.kill(self.pid(i), signal.SIGTERM)
        wait_until(lambda: not self.alive(i), 60, 0.05, f"node {i} stopped")

    def restart(self, i: int):
        self.sh("start-node", str(self.dir), str(self.base), str(i), timeout=150)

    def stop(self):
        self.sh("stop", str(self.dir), timeout=120)

    def revive_all(self):
        """Every node running again (a test leaves the cluster whole for the next one)."""
        for i in range(3):
            if not self.alive(i):
                self.restart(i)


def _reaped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def leader_of(admin, topic: str, partition: int = 0) -> int:
    md = admin.list_topics(topic, timeout=5)
    return md.topics[topic].partitions[partition].leader


def commit_handoff(cluster: Cluster, topic: str, tmp_path: Path, name: str) -> Handoff:
    """A handoff with one commit route to `topic` on the cluster (started; not yet ready)."""
    routes = [{"name": "commit", "match": {"methods": ["POST"], "path": "/commit"}, "mode": "commit",
               "topic": topic, "key": "body:/key", "timeout": f"{ROUTE_TIMEOUT_S}s", "success_status": 201}]
    cfg = base_config(cluster.brokers, free_port(), routes, log={"level": "info", "requests": False},
                      kafka={"flush_timeout": "20s", "properties": {
                          "linger.ms": "2", "message.timeout.ms": str((ROUTE_TIMEOUT_S - 2) * 1000),
                          "socket.connection.setup.timeout.ms": "3000", "reconnect.backoff.max.ms": "1000",
                          "topic.metadata.refresh.interval.ms": "2000"}})
    cfg_path = tmp_path / f"{name}.yaml"
    cfg_path.write_text(to_yaml(cfg) + "\n")
    return Handoff(name, cfg, cfg_path, tmp_path / f"{name}.log", None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module: each test leaves every node running."""
    c = Cluster(tmp_path_factory.mktemp("p15") / "cluster", free_block(6))
    c.start()
    yield c
    c.stop()


def test_p15_sigkill_of_the_partition_leader_under_commit_load_loses_nothing_acknowledged(cluster, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("P-15 exceeded its deadline")))
    signal.alarm(int(DURATION_S + 300))
    admin = AdminClient({"bootstrap.servers": cluster.brokers})
    topic = "p15-orders"
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                       config={"min.insync.replicas": "2"})], request_timeout=30)
    fs[topic].result(timeout=60)
    wait_until(lambda: all(p.leader >= 0 and len(p.isrs) == 3
                           for p in admin.list_topics(topic, timeout=5).topics[topic].partitions.values()),
               60, 0.2, "the topic with a leader and 3 in-sync replicas per partition")

    h = commit_handoff(cluster, topic, tmp_path, "p15")
    entries: list = []
    kills: list = []
    skipped: list = []
    stop = threading.Event()
    try:
        h.wait_ready(60)

        def load_loop():
            cl = LedgerClient(h.port, concurrency=8, deadline=ROUTE_TIMEOUT_S + 10)
            i = 0
            while not stop.is_set():
                entries.extend(cl.run(load("/commit", "commit", topic, 64, keys=24, prefix="k")))
                i += 1

        runner = threading.Thread(target=load_loop, daemon=True)
        runner.start()
        wait_until(lambda: sum(1 for e in list(entries) if e.status == 201) >= 100, 60, 0.1, "load before the nemesis")
        # The nemesis: each period, kill -9 the current leader of partition 0 and restart it after
        # DOWN_S (in the background: a JVM takes a while to start). A period in which the last
        # victim is not back yet is skipped, so at most one node is down at a time (2 of 3 keep
        # the KRaft quorum and min.insync.replicas).
        restarting: list[threading.Thread] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < DURATION_S:
            period_start = time.monotonic()
            if all(not t.is_alive() for t in restarting) and all(cluster.alive(i) for i in range(3)):
                leader = leader_of(admin, topic)
                if leader >= 1:
                    node = leader - 1
                    cluster.kill9(node)
                    kills.append((round(time.monotonic() - t0, 1), node))

                    def revive(n=node):
                        stop.wait(DOWN_S)  # the outage's length: a fault parameter
                        cluster.restart(n)
                    restarting.append(threading.Thread(target=revive, daemon=True))
                    restarting[-1].start()
            else:
                skipped.append(round(time.monotonic() - t0, 1))
            while time.monotonic() - period_start < NEMESIS_S and time.monotonic() - t0 < DURATION_S:
                time.sleep(0.1)  # the nemesis schedule, not synchronisation
        for t in restarting:
            t.join(180)
        stop.set()
        runner.join(ROUTE_TIMEOUT_S + 30)
        assert not runner.is_alive(), "the load generator did not finish"
        code = h.stop(40)
        assert code == 0, f"handoff exit code {code}\n{h.log_tail()}"
    finally:
        stop.set()
        if h.proc.poll() is None:
            h.stop(10)
        signal.alarm(0)

    cluster.revive_all()
    save(entries, str(tmp_path / "ledger.jsonl"))
    records = read_topics(cluster.brokers, [topic], timeout=120)
    rep = check(entries, records)
    summary = {"requests": rep.total, "by_status": rep.by_status, "kills": kills, "records": rep.records,
               "acknowledged": rep.acknowledged, "acked_missing": len(rep.acked_missing),
               "ack_mismatch": len(rep.ack_mismatch), "unknown": rep.unknown,
               "unknown_present": rep.unknown_present, "duplicate_copies": rep.duplicate_copies,
               "order_violations": len(rep.order_violations), "hung": len(rep.hung),
               "failed_but_present": len(rep.failed_but_present)}
    print("P-15 summary:", json.dumps(summary))
    assert kills, "the nemesis never ran"
    assert rep.acknowledged > 0, summary
    assert not rep.acked_missing, f"acknowledged but missing: {rep.acked_missing[:10]}\n{rep}"
    assert not rep.ack_mismatch, rep.ack_mismatch[:10]
    assert not rep.hung, f"requests with no answer within {ROUTE_TIMEOUT_S + 10}s: {len(rep.hung)}"
    assert not rep.order_violations, rep.order_violations[:10]


def test_p7_leader_moves_under_commit_load_on_a_real_cluster_lose_nothing_duplicate_nothing_keep_key_order(
        cluster, tmp_path):
    """P-7 where Kafka itself checks producer sequences (the mock cluster does not for idempotent,
    non-transactional producers): under commit load the leaders move, twice per round — a
    controlled shutdown (SIGTERM) hands a partition's leadership to another in-sync replica, and
    after the node is back a preferred-leader election hands it back. Nothing acknowledged may be
    lost, nothing duplicated, no key reordered, nothing left unanswered."""
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("P-7 exceeded its deadline")))
    signal.alarm(420)
    admin = AdminClient({"bootstrap.servers": cluster.brokers})
    topic = "p7-orders"
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3,
                                  config={"min.insync.replicas": "2"})], request_timeout=30)[topic].result(timeout=60)

    def settled():
        parts = admin.list_topics(topic, timeout=5).topics[topic].partitions.values()
        return all(p.leader >= 0 and len(p.isrs) == 3 for p in parts)
    wait_until(settled, 90, 0.2, "every partition with a leader and 3 in-sync replicas")

    h = commit_handoff(cluster, topic, tmp_path, "p7")
    entries: list = []
    moves: list = []
    stop = threading.Event()
    try:
        h.wait_ready(60)

        def load_loop():
            cl = LedgerClient(h.port, concurrency=8, deadline=ROUTE_TIMEOUT_S + 10)
            i = 0
            while not stop.is_set():
                entries.extend(cl.run(load("/commit", "commit", topic, 64, keys=16, prefix=f"r{i}-")))
                i += 1

        runner = threading.Thread(target=load_loop, daemon=True)
        runner.start()

        def more_commits(what: str, n: int = 50):
            acked = lambda: sum(1 for e in list(entries) if e.status == 201)  # noqa: E731
            base = acked()
            wait_until(lambda: acked() >= base + n, 60, 0.05, what)

        for rnd in range(2):
            part = rnd % 2
            more_commits("commits before the move")
            old = leader_of(admin, topic, part)
            cluster.terminate(old - 1)
            wait_until(lambda: leader_of(admin, topic, part) not in (-1, old), 30, 0.1, "a new leader")
            moves.append((part, old, leader_of(admin, topic, part), "controlled shutdown"))
            more_commits("commits on the new leader")
            cluster.restart(old - 1)
            wait_until(settled, 90, 0.2, "the node back in sync")
            before = leader_of(admin, topic, part)
            admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, part)]).result(timeout=30)
            wait_until(lambda: leader_of(admin, topic, part) == old, 30, 0.1, "the preferred leader back")
            moves.append((part, before, old, "preferred election"))
        more_commits("commits after the last move")
        stop.set()
        runner.join(ROUTE_TIMEOUT_S + 30)
        assert not runner.is_alive(), "the load generator did not finish"
        code = h.stop(40)
        assert code == 0, f"handoff exit code {code}\n{h.log_tail()}"
    finally:
        stop.set()
        if h.proc.poll() is None:
            h.stop(10)
        signal.alarm(0)
        cluster.revive_all()

    rep = check(entries, read_topics(cluster.brokers, [topic], timeout=120))
    print("P-7 real cluster:", json.dumps({"requests": rep.total, "by_status": rep.by_status, "moves": moves,
                                           "records": rep.records, "duplicate_copies": rep.duplicate_copies,
                                           "unknown": rep.unknown}))
    assert len(moves) == 4, moves
    assert all(e.status in (201, 503, 504) for e in entries), rep.by_status
    assert rep.acknowledged > 0, rep
    assert rep.ok(max_duplicates=0) and rep.duplicates == {}, rep


def shared_handoff(cluster: Cluster, orders: str, state: str, tmp_path: Path, name: str, port: int) -> Handoff:
    """A replica with state.shared and one keyed commit route to `orders` (started; not yet ready)."""
    routes = [{"name": "orders", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "commit",
               "topic": orders, "timeout": "10s", "success_status": 201}]
    cfg = base_config(cluster.brokers, free_port(), routes, log={"level": "info", "requests": False},
                      listen={"port": port},
                      state={"shared": True, "topic": state, "replica": name, "claim_timeout": "12s",
                             "claim_wait": "5s", "refresh_interval": "2s"},
                      kafka={"flush_timeout": "20s", "properties": {
                          "linger.ms": "2", "message.timeout.ms": "8000",
                          "socket.connection.setup.timeout.ms": "3000", "reconnect.backoff.max.ms": "1000",
                          "topic.metadata.refresh.interval.ms": "2000"}})
    cfg_path = tmp_path / f"{name}.yaml"
    cfg_path.write_text(to_yaml(cfg) + "\n")
    return Handoff(name, cfg, cfg_path, tmp_path / f"{name}.log", None)


def test_shared_state_sigkill_of_a_replica_and_of_the_state_leader_under_load_runs_no_key_twice(cluster, tmp_path):
    """Issue 17 on the real cluster: three replicas with state.shared (the state topic RF 3,
    min.insync.replicas=2) behind nginx round robin (as a Service spreads requests; a connection
    refused goes to the next replica), clients sending keyed commits for 150 keys, each key many
    times. Under that load the leader of the state topic's partitions is SIGKILLed twice (restarted
    after DOWN_S), and one replica is SIGKILLed while it holds claims (started again later on its
    port: it reads the topic before it decides). Then, per key: at most one record; every 201 (first
    or replayed) names that very record; 409, 503 and 504 are the only other answers, and 502 (nginx)
    only for requests sent before the killed replica had exited (on it, or in its accept queue);
    status URLs answered through the balancer with the record's partition and offset."""
    from confluent_kafka.admin import AdminClient, NewTopic

    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("shared state exceeded its deadline")))
    signal.alarm(420)
    admin = AdminClient({"bootstrap.servers": cluster.brokers})
    orders, state = "ss-orders", "ss-state"
    # As a platform team provisions them: RF 3, two in-sync copies for every acknowledgement.
    new = [NewTopic(orders, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"}),
           NewTopic(state, num_partitions=3, replication_factor=3,
                    config={"min.insync.replicas": "2", "cleanup.policy": "compact,delete",
                            # compaction only once idempotency.ttl (24 h) has passed: Handoff checks
                            "min.compaction.lag.ms": str(24 * 3600 * 1000)})]
    for f in admin.create_topics(new, request_timeout=30).values():
        f.result(timeout=60)

    def settled(topic):
        parts = admin.list_topics(topic, timeout=5).topics[topic].partitions.values()
        return all(p.leader >= 0 and len(p.isrs) == 3 for p in parts)
    wait_until(lambda: settled(orders) and settled(state), 90, 0.2, "both topics with 3 in-sync replicas")

    ports = [free_port() for _ in range(3)]
    replicas = [shared_handoff(cluster, orders, state, tmp_path, f"ss{i}", ports[i]) for i in range(3)]
    (tmp_path / "nginx").mkdir()
    balancer = RoundRobin(ports, tmp_path / "nginx", retry_refused=True)
    answers: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    keys = [f"key-{uuid.uuid4().hex[:10]}" for _ in range(150)]
    labels = {k: f"label-{uuid.uuid4().hex[:10]}" for k in keys}
    events: list = []
    clients_n = 6
    try:
        for h in replicas:
            h.wait_ready(60)

        crashed: list = []

        def client(seed: int):
            try:
                send_until_stopped(seed)
            except BaseException as e:  # noqa: BLE001 - reported by the test, not lost in a thread
                crashed.append(repr(e))

        def send_until_stopped(seed: int):
            rnd = random.Random(seed)
            while not stop.is_set():
                key = rnd.choice(keys)
                body = json.dumps({"key": key}).encode()
                a = {"key": key, "status": None, "client": seed, "sent": time.monotonic()}
                try:
                    r = http_request(balancer.port, "POST", "/orders", body,
                                     {"Content-Type": "application/json", "Idempotency-Key": key,
                                      "X-Correlation-ID": labels[key]}, timeout=30)
                    a["status"] = r.status
                    a["replayed"] = r.header("Idempotent-Replayed") == "true"
                    j = r.json() if r.status != 502 else {}  # nginx's own page
                    a["partition"], a["offset"], a["error"] = j.get("partition"), j.get("offset"), j.get("error")
                    a["request_id"] = j.get("request_id")
                except OSError as e:
                    a["error"] = f"transport: {e}"
                a["done"] = time.monotonic()
                with lock:
                    answers.append(a)

        clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients_n)]
        for t in clients:
            t.start()

        def answered_201(n):
            wait_until(lambda: sum(1 for a in list(answers) if a["status"] == 201) >= n, 60, 0.1, f"{n} answers 201")

        def kill_state_leader():
            leader = leader_of(admin, state, 0)
            assert leader >= 1, leader
            cluster.kill9(leader - 1)
            events.append(("state leader killed", leader))
            stop.wait(DOWN_S)  # the outage's length: a fault parameter
            cluster.restart(leader - 1)
            wait_until(lambda: settled(state), 90, 0.2, "the state topic back to 3 in-sync replicas")

        answered_201(50)
        kill_state_leader()
        answered_201(sum(1 for a in list(answers) if a["status"] == 201) + 50)
        # A replica killed under load: it holds claims (requests in flight) when it dies.
        killed_at = time.monotonic()
        replicas[2].proc.kill()
        replicas[2].proc.wait(10)
        exited = time.monotonic()  # its sockets are closed: connections to it are refused from here
        replicas[2]._log.close()
        events.append(("replica killed", "ss2"))
        answered_201(sum(1 for a in list(answers) if a["status"] == 201) + 50)
        kill_state_leader()
        answered_201(sum(1 for a in list(answers) if a["status"] == 201) + 50)
        replicas[2] = shared_handoff(cluster, orders, state, tmp_path, "ss2-again", ports[2])
        replicas[2].wait_ready(90)
        events.append(("replica started again", "ss2-again"))
        answered_201(sum(1 for a in list(answers) if a["status"] == 201) + 50)
        stop.set()
        for t in clients:
            t.join(60)
        assert not any(t.is_alive() for t in clients), "a client did not finish"
        assert not crashed, crashed
        # The same key at all three replicas at once, behind a barrier, 10 keys: one runs.
        for n in range(10):
            key = f"race-{uuid.uuid4().hex[:10]}"
            keys.append(key)
            labels[key] = f"label-{uuid.uuid4().hex[:10]}"
            body = json.dumps({"key": key}).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": key, "X-Correlation-ID": labels[key]}
            raced = at_once([lambda port=port: http_request(port, "POST", "/orders", body, headers, timeout=30)
                             for port in ports], timeout=40)
            for r in raced:
                j = r.json()
                answers.append({"key": key, "status": r.status, "client": "race", "done": time.monotonic(),
                                "replayed": r.header("Idempotent-Replayed") == "true", "partition": j.get("partition"),
                                "offset": j.get("offset"), "error": j.get("error"), "request_id": j.get("request_id")})
            ran_once = [r for r in raced if r.status == 201 and r.header("Idempotent-Replayed") is None]
            assert len(ran_once) == 1, (key, [(r.status, r.body) for r in raced])
        # Status URLs through the balancer: whichever replica answers knows the outcome. Not for
        # requests answered just before the kill: their replica may have died between its answer and
        # the outcome's record (README: such a status stays unknown to the others).
        # Nor for those whose outcome record the killed replica logged as not written: the broker did not
        # persist it within message.timeout.ms (8 s here; a SIGKILLed leader is fenced after the
        # controller's broker.session.timeout.ms, 9 s), and such a record is not written again (README:
        # only its own replica knew that status). Seen once in ~15 CI runs.
        unpublished = set()
        for ln in (tmp_path / "ss2.log").read_text(errors="replace").splitlines():
            if "state record not" in ln:
                j = json.loads(ln)
                if j.get("kind") == "status":
                    unpublished.add(j.get("request_id"))
        ran = [a for a in answers if a["status"] == 201 and not a.get("replayed") and a.get("request_id")
               and not killed_at - 2 <= a["done"] <= exited and a["request_id"] not in unpublished]
        for a in ran[:: max(1, len(ran) // 15)]:
            def known(a=a):
                r = http_request(balancer.port, "GET", f"/_handoff/requests/{a['request_id']}", timeout=10)
                if r.status == 404:
                    return False
                assert r.status == 200, r
                j = r.json()
                return j["state"] == "persisted" and (j["partition"], j["offset"]) == (a["partition"], a["offset"])
            try:
                wait_until(known, 20, 0.1, f"the status of {a['request_id']} through the balancer")
            except AssertionError as e:
                # What each replica says, and what their logs say about state records not written.
                said = []
                for h in replicas:
                    r = http_request(h.port, "GET", f"/_handoff/requests/{a['request_id']}", timeout=10)
                    lost = [ln for ln in h.log_text().splitlines()
                            if "state record not" in ln or "restarting its fetch" in ln]
                    said.append(f"{h.name}: {r.status} {r.body[:200]!r}; {len(lost)} log lines: {lost[:3]}")
                old = (tmp_path / "ss2.log").read_text(errors="replace").splitlines()
                lost = [ln for ln in old if "state record not" in ln]
                said.append(f"ss2 (killed): {len(lost)} log lines: {lost[:3]}")
                raise AssertionError(f"{e}; answered at {a['done'] - killed_at:+.1f}s from the replica's kill; "
                                     f"events {events}; " + " | ".join(said)) from None
        for h in (replicas[0], replicas[1], replicas[2]):
            code = h.stop(40)
            assert code == 0, f"{h.name}: exit code {code}\n{h.log_tail()}"
    finally:
        stop.set()
        balancer.stop()
        for h in replicas:
            if h.proc.poll() is None:
                h.stop(10)
        signal.alarm(0)
        cluster.revive_all()

    records = read_topics(cluster.brokers, [orders], timeout=120)
    by_label: dict[str, list] = {}
    for r in records:
        by_label.setdefault(r.correlation_id, []).append((r.partition, r.offset))
    statuses: dict = {}
    for a in answers:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
    twice = {k: by_label[labels[k]] for k in keys if len(by_label.get(labels[k], [])) > 1}
    summary = {"answers": len(answers), "by_status": statuses, "events": events, "records": len(records),
               "keys_with_a_record": sum(1 for k in keys if labels[k] in by_label), "keys_run_twice": len(twice),
               "replayed": sum(1 for a in answers if a.get("replayed")),
               "abandoned": sum(1 for a in answers if a["status"] == 504 and a.get("error") == "outcome_unknown"),
               "unavailable": sum(1 for a in answers if a["status"] == 503),
               # the state topic dropped and read again: never for a leader's death
               "topic_dropped": sum(p.read_text(errors="replace").count(m) for p in tmp_path.glob("ss*.log")
                                    for m in ("the state topic disappeared", "the state topic was replaced"))}
    print("shared state on the real cluster:", json.dumps(summary))
    assert not twice, f"keys run twice: {twice}"
    assert summary["topic_dropped"] == 0, summary
    for a in answers:
        if a["status"] == 502:
            # nginx: the request was on the replica, or in its accept queue, when it was killed.
            assert a["sent"] <= exited, a
            continue
        assert a["status"] in (201, 409, 503, 504), a
        if a["status"] == 201:
            where = by_label.get(labels[a["key"]], [])
            assert where == [(a["partition"], a["offset"])], (a, where)
    assert summary["replayed"] > 0 and summary["keys_with_a_record"] > 0, summary
