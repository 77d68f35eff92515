"""The calling side's reply topic (issue 14, part 3), against a real Kafka broker of this module's own
that does not create topics on its own (auto.create.topics.enable=false):

- a missing reply topic is created at start (partitions and retention as configured), and then
  a `reply` route works end to end;
- creation turned off, or refused by the broker: /readyz stays 503 with the reason, and a log
  line names the topic;
- a reply written to a partition added to the reply topic after start completes a held request;
- a reply written while the caller's connection to Kafka is down (longer than a consumer-group
  session) completes the held request once the connection is back.

The caller reaches the broker through a relay (relay.Relay) that the test can take down and bring back;
every other client (the receiving sidecar, the test's own producer and admin client) talks to the
broker directly. Waits are conditions with deadlines, never sleeps."""
from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions

from conftest import (Kafka, PrivateKafka, base_config, free_port, free_port_pair, hdrs, http_request, unique,
                      wait_until)
from relay import Relay


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A private broker that never auto-creates topics, with a RELAY listener advertised at a relay's
    port (so every connection a client opens after bootstrap goes through the relay too)."""
    d = tmp_path_factory.mktemp("strict-kafka")
    inner, outer = free_port(), free_port()
    extra = d / "strict.properties"
    extra.write_text(f"extra.listeners=RELAY://127.0.0.1:{inner}\n"
                     f"extra.advertised.listeners=RELAY://127.0.0.1:{outer}\n"
                     "extra.listener.security.protocol.map=RELAY:PLAINTEXT\n"
                     "auto.create.topics.enable=false\n")
    relay = Relay(inner, listen_port=outer)   # bound before the broker advertises its port
    pk = PrivateKafka(d, free_port_pair()).start(extra=extra)
    yield pk, relay
    relay.close()
    pk.stop()


def reply_headers(rid: str, status: bytes = b"200") -> list[tuple[str, bytes]]:
    """The headers a receiving sidecar writes on a reply record (proxy/src/delivery/subscription_rules.cpp):
    the request ID it answers (the request record's ce_id), the status, the content type."""
    return [("handoff_request_id", rid.encode()), ("handoff_reply_status", status),
            ("content-type", b"text/plain")]


def status_of(h, cid: str):
    r = http_request(h.port, "GET", f"/_handoff/requests/{cid}")
    return r.json() if r.status == 200 else None


def unserved_route(topic: str, timeout: str) -> dict:
    """A reply route whose requests nobody serves: the test writes the reply itself."""
    return {"name": "held", "match": {"methods": ["POST"], "path": "/held/{id}"}, "mode": "reply",
            "topic": topic, "key": "path:id", "timeout": timeout}


def hold(h, kafka: Kafka, topic: str, cid: str, timeout: float) -> tuple[threading.Thread, dict, str]:
    """Sends a request to the held route in a thread; returns once it is in Kafka (so it waits for
    its reply), with its request ID, read from its record (the caller has no answer yet)."""
    got: dict = {}
    th = threading.Thread(target=lambda: got.update(r=http_request(
        h.port, "POST", "/held/1", b"{}", {"X-Correlation-ID": cid}, timeout=timeout)), daemon=True)
    th.start()
    [msg] = kafka.with_label(topic, cid, timeout=20)
    return th, got, hdrs(msg)["ce_id"].decode()


def topic_config(brokers: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": brokers})
    fs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)], request_timeout=15)
    (res,) = fs.values()
    return {k: v.value for k, v in res.result(timeout=20).items()}


def readyz(h):
    r = h.admin_get("/readyz")
    return r.status, (r.json() if r.body else {})


# ---- (1) creation ----------------------------------------------------------------------------

@pytest.mark.timeout_s(150)
def test_a_missing_reply_topic_is_created_with_the_configured_partitions_and_retention_and_replies_flow(
        strict, handoff_process, upstream):
    pk, relay = strict
    kafka = Kafka(pk.brokers)
    p = unique("created")
    requests, replies = f"{p}.requests", f"{p}.replies.pod-a"
    kafka.create_topic(requests, 1)
    assert replies not in kafka.admin.list_topics(timeout=10).topics
    receiver = handoff_process(base_config(pk.brokers, upstream.port, [], subscriptions=[{
        "name": "quotes", "topics": [requests], "group": unique("quotes"), "reply_topics": [f"{p}.replies.*"]}]),
        name="created-receiver")
    route = {"name": "quote", "match": {"methods": ["POST"], "path": "/quotes/{id}"}, "mode": "reply",
             "topic": requests, "key": "path:id", "timeout": "20s"}
    caller = handoff_process(base_config(pk.brokers, upstream.port, [route], replies={
        "topic": replies, "create": {"partitions": 2, "retention": "2h"}}), name="created-caller")
    assert kafka.partitions(replies) == [0, 1]
    cfg = topic_config(pk.brokers, replies)
    assert cfg["retention.ms"] == str(2 * 3600 * 1000), cfg
    assert any(x.get("msg") == "reply topic created" and x.get("topic") == replies for x in caller.log_lines_json())
    wait_until(lambda: any(x.get("msg") == "subscription partitions assigned" for x in receiver.log_lines_json()), 60,
               0.1, "the receiver's partitions assigned")
    upstream.script("/quotes/77", status=201, headers=[("Content-Type", "application/json")], body=b'{"q":77}')
    r = http_request(caller.port, "POST", "/quotes/77", b"{}", timeout=30)
    assert r.status == 201 and r.body == b'{"q":77}', r


@pytest.mark.timeout_s(90)
def test_with_no_create_settings_a_missing_reply_topic_is_created_with_the_defaults(strict, handoff_process, upstream):
    pk, relay = strict
    replies = unique("defaults") + ".replies.pod-c"
    route = unserved_route(unique("unused"), "2s")
    h = handoff_process(base_config(pk.brokers, upstream.port, [route], replies={"topic": replies}),
                        name="defaults-caller")
    assert Kafka(pk.brokers).partitions(replies) == [0]
    cfg = topic_config(pk.brokers, replies)
    # retention bounds the data of a topic nobody deletes; segment.ms lets it apply on a quiet topic
    assert (cfg["retention.ms"], cfg["segment.ms"]) == ("3600000", "3600000"), cfg
    assert readyz(h)[0] == 200


# ---- (2) creation off or refused -----------------------------------------------------------

@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("create,reason", [
    (False, "replies.create"),                        # off: the reason says what to do
    ({"replication_factor": 3}, "INVALID_REPLICATION_FACTOR"),   # refused by a 1-node broker
])
def test_a_reply_topic_that_is_missing_and_not_created_keeps_readyz_503_with_the_reason(
        strict, handoff_process, upstream, create, reason):
    pk, relay = strict
    replies = unique("missing") + ".replies.pod-b"
    route = unserved_route(unique("unused"), "2s")
    h = handoff_process(base_config(pk.brokers, upstream.port, [route], replies={"topic": replies, "create": create}),
                        wait="live", name=unique("not-created"))
    st = wait_until(lambda: (x := readyz(h))[0] == 503 and replies in x[1].get("reason", "") and x, 30,
                    what="/readyz 503 naming the reply topic")
    assert reason in st[1]["reason"], st
    lines = [x for x in h.log_lines_json() if x.get("topic") == replies and x.get("level") in ("error", "warn")]
    assert lines, h.log_tail()
    assert "CREATE" in lines[0]["msg"] + str(lines[0].get("needs", "")), lines[0]
    assert replies not in Kafka(pk.brokers).admin.list_topics(timeout=10).topics


@pytest.fixture(scope="module")
def authz(tmp_path_factory):
    """A private broker with ACLs (StandardAuthorizer, deny when no ACL matches): its PLAINTEXT
    listener is a super user (the test's admin client), its SASL listener (PLAIN) authenticates
    User:caller, which gets only the ACLs a test grants."""
    d = tmp_path_factory.mktemp("authz-kafka")
    sasl = free_port()
    extra = d / "authz.properties"
    extra.write_text(f"extra.listeners=SASL://127.0.0.1:{sasl}\n"
                     "extra.listener.security.protocol.map=SASL:SASL_PLAINTEXT\n"
                     "listener.name.sasl.sasl.enabled.mechanisms=PLAIN\n"
                     "listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
                     'required user_caller="caller-pw";\n'
                     "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
                     "super.users=User:ANONYMOUS\n"
                     "allow.everyone.if.no.acl.found=false\n"
                     "auto.create.topics.enable=false\n")
    pk = PrivateKafka(d, free_port_pair()).start(extra=extra)
    yield pk, f"127.0.0.1:{sasl}"
    pk.stop()


def allow(admin: AdminClient, resource, name: str, pattern, *ops):
    from confluent_kafka.admin import AclBinding, AclPermissionType
    fs = admin.create_acls([AclBinding(resource, name, pattern, "User:caller", "*", op, AclPermissionType.ALLOW)
                            for op in ops], request_timeout=15)
    for f in fs.values():
        f.result(timeout=20)


@pytest.mark.timeout_s(120)
def test_a_reply_topic_the_principal_may_not_create_keeps_readyz_503_and_the_log_names_the_create_permission(
        authz, handoff_process, upstream):
    from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
    pk, sasl = authz
    kafka = Kafka(pk.brokers)
    p = unique("acl")
    replies, requests = f"{p}.replies.pod-d", kafka.create_topic(f"{p}.requests", 1)
    # What a caller needs, except CREATE on its reply topic.
    allow(kafka.admin, ResourceType.TOPIC, f"{p}.replies.", ResourcePatternType.PREFIXED,
          AclOperation.DESCRIBE, AclOperation.READ)
    allow(kafka.admin, ResourceType.TOPIC, requests, ResourcePatternType.LITERAL,
          AclOperation.DESCRIBE, AclOperation.WRITE)
    allow(kafka.admin, ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
          AclOperation.IDEMPOTENT_WRITE)
    allow(kafka.admin, ResourceType.GROUP, "handoff-replies-", ResourcePatternType.PREFIXED, AclOperation.ALL)
    cfg = base_config(sasl, upstream.port, [unserved_route(requests, "5s")],
                      replies={"topic": replies, "refresh_interval": "1s"},
                      kafka={"properties": {"linger.ms": "1", "security.protocol": "SASL_PLAINTEXT",
                                            "sasl.mechanisms": "PLAIN", "sasl.username": "caller",
                                            "sasl.password": "caller-pw"}})
    h = handoff_process(cfg, wait="live", name="acl-caller")
    st = wait_until(lambda: (x := readyz(h))[0] == 503 and "AUTHORIZATION_FAILED" in x[1].get("reason", "") and x,
                    30, 0.1, "/readyz 503 with the authorization failure")
    assert replies in st[1]["reason"], st
    lines = [x for x in h.log_lines_json() if x.get("topic") == replies and x.get("level") == "error"]
    assert lines and f"CREATE operation on topic '{replies}'" in lines[0]["needs"], lines or h.log_tail()
    # The operator grants CREATE: the sidecar creates its topic and turns ready, without a restart.
    allow(kafka.admin, ResourceType.TOPIC, f"{p}.replies.", ResourcePatternType.PREFIXED, AclOperation.CREATE)
    h.wait_ready(30)
    assert kafka.partitions(replies) == [0]


@pytest.mark.timeout_s(90)
def test_a_reply_topic_the_principal_may_not_even_describe_keeps_readyz_503_and_the_log_names_describe_and_read(
        authz, handoff_process, upstream):
    pk, sasl = authz
    replies = unique("no-acl") + ".replies.pod-e"   # no ACL of User:caller matches it
    cfg = base_config(sasl, upstream.port, [unserved_route(unique("unused"), "5s")], replies={"topic": replies},
                      kafka={"properties": {"linger.ms": "1", "security.protocol": "SASL_PLAINTEXT",
                                            "sasl.mechanisms": "PLAIN", "sasl.username": "caller",
                                            "sasl.password": "caller-pw"}})
    h = handoff_process(cfg, wait="live", name="no-acl-caller")
    st = wait_until(lambda: (x := readyz(h))[0] == 503 and "TOPIC_AUTHORIZATION_FAILED" in x[1].get("reason", "") and x,
                    30, 0.1, "/readyz 503 with the authorization failure")
    assert replies in st[1]["reason"], st
    lines = [x for x in h.log_lines_json() if x.get("topic") == replies and x.get("level") == "error"]
    assert lines and f"DESCRIBE and READ on topic '{replies}'" in lines[0]["needs"], lines or h.log_tail()


# ---- (3) a partition added after start ----------------------------------------------------

@pytest.mark.timeout_s(150)
def test_a_reply_on_a_partition_added_after_start_completes_the_held_request(strict, handoff_process, upstream):
    pk, relay = strict
    kafka = Kafka(pk.brokers)
    replies = kafka.create_topic(unique("grown") + ".replies", 1)
    requests = kafka.create_topic(unique("grown-req"), 1)
    caller = handoff_process(base_config(pk.brokers, upstream.port, [unserved_route(requests, "60s")],
                                         replies={"topic": replies}), name="grown-caller")
    cid = unique("grown")
    th, got, rid = hold(caller, kafka, requests, cid, 90)
    fs = kafka.admin.create_partitions([NewPartitions(replies, 2)], request_timeout=15)
    fs[replies].result(timeout=20)
    # CreatePartitions returns once the controller has it; the broker's metadata follows a moment
    # later (seen once in CI: [0] right after the call).
    wait_until(lambda: kafka.partitions(replies) == [0, 1], 30, 0.1, f"partition 1 of {replies} in the metadata")
    p = Producer({"bootstrap.servers": pk.brokers})
    p.produce(replies, partition=1, key=rid, value=b"from the new partition", headers=reply_headers(rid))
    assert p.flush(10) == 0
    th.join(90)
    r = got["r"]
    assert r.status == 200 and r.body == b"from the new partition", r


# ---- (4) a reply written while the caller is cut off -----------------------------------------

def group_member_of(admin: AdminClient, client_id: str) -> bool:
    """True while some consumer group on the broker counts a member with this client.id."""
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(timeout=15).valid]
    if not groups:
        return False
    for f in admin.describe_consumer_groups(groups, request_timeout=10).values():
        if any(m.client_id == client_id for m in f.result(timeout=15).members):
            return True
    return False


@pytest.mark.timeout_s(180)
def test_a_reply_written_while_the_caller_is_disconnected_completes_the_held_request(
        strict, handoff_process, upstream):
    pk, relay = strict
    kafka = Kafka(pk.brokers)
    replies = kafka.create_topic(unique("cut") + ".replies", 2)
    client_id = unique("cut-caller")
    requests = kafka.create_topic(unique("cut-req"), 1)
    cfg = base_config(f"127.0.0.1:{relay.port}", upstream.port,
                      [unserved_route(requests, "90s")],
                      replies={"topic": replies},
                      # The shortest session a broker allows: a group member cut off for longer is
                      # expelled (what a long outage or a rebalance does to a group consumer).
                      kafka={"properties": {"linger.ms": "1", "client.id": client_id, "session.timeout.ms": "6000",
                                            "reconnect.backoff.max.ms": "500"}})
    caller = handoff_process(cfg, name="cut-caller")
    cid = unique("cut")
    th, got, rid = hold(caller, kafka, requests, cid, 120)
    wait_until(lambda: status_of(caller, rid)["state"] == "persisted", 20, what="the request persisted")
    relay.down()
    try:
        # The caller knows it is cut off (no broker reachable: /readyz says so) ...
        wait_until(lambda: (x := readyz(caller))[0] == 503 and "not reachable" in x[1].get("reason", ""), 30, 0.1,
                   "the caller to see Kafka unreachable")
        # ... and stays so for longer than a group session: the broker no longer counts it as a member.
        wait_until(lambda: not group_member_of(kafka.admin, client_id), 60, 0.5,
                   "the broker to drop the caller from every consumer group")
        p = Producer({"bootstrap.servers": pk.brokers})
        p.produce(replies, partition=1, key=rid, value=b"written during the outage", headers=reply_headers(rid))
        assert p.flush(10) == 0
    finally:
        relay.up()
    th.join(120)
    r = got["r"]
    assert r.status == 200 and r.body == b"written during the outage", r
