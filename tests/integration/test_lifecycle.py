"""Process lifecycle: admin probes, keep-alive across modes, SIGTERM flushes every 202'd event."""
from __future__ import annotations

import json
import signal
import subprocess

from conftest import RawConn, base_config, hdrs, standard_routes, unique


def test_healthz_and_readyz_are_200_when_the_config_is_loaded_and_kafka_is_reachable(proxy):
    assert proxy.admin_get("/healthz").status == 200
    assert proxy.admin_get("/readyz").status == 200


def test_one_keep_alive_connection_serves_forward_event_and_commit_requests_in_turn(proxy, kafka, topics):
    c = RawConn(proxy.port)
    try:
        for i in range(2):
            tag = unique(f"ka{i}")
            c.send(f"GET /orders/{tag} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["path"] == f"/orders/{tag}", r
            c.send(b"POST /audit HTTP/1.1\r\nHost: x\r\nX-Tenant: ka\r\nContent-Length: 2\r\n\r\nka")
            r = c.read_response()
            assert r.status == 202, r
            body = b'{"customer":{"id":"k"}}'
            c.send(b"POST /orders/eu HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            r = c.read_response()
            assert r.status == 201 and json.loads(r.body)["outcome"] == "persisted", r
    finally:
        c.close()


def test_error_responses_carry_the_correlation_id_header(proxy):
    cid = unique("errcid")
    r = proxy.request("POST", "/audit", b"a" * 2000, [("X-Tenant", "t"), ("X-Correlation-ID", cid)])
    assert r.status == 413, r
    assert r.header("X-Correlation-ID") == cid, r
    r = proxy.request("DELETE", "/audit", None, [("X-Correlation-ID", cid)])
    assert r.status == 405, r
    assert r.header("X-Correlation-ID") == cid, r
    assert r.json()["correlation_id"] == cid


def test_sigterm_flushes_every_accepted_event_before_exit_0(handoff_process, brokers, upstream, kafka, topics):
    h = handoff_process(base_config(brokers, upstream.port, standard_routes(topics),
                                    kafka={"properties": {"linger.ms": "200"}}), name="sigterm-flush")
    ids = []
    for i in range(30):
        r = h.request("POST", "/audit", b"flush-%d" % i, [("X-Tenant", "flush")])
        assert r.status == 202, r
        ids.append(r.header("X-Correlation-ID"))
    h.proc.send_signal(signal.SIGTERM)
    try:
        code = h.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError("handoff did not exit within 20s of SIGTERM")
    assert code == 0, f"exit code {code}\n{h.log_tail()}"
    want = {i.encode() for i in ids}
    msgs = kafka.read(topics.audit, lambda ms: want <= {hdrs(m).get("ce_id") for m in ms}, timeout=20)
    assert want <= {hdrs(m).get("ce_id") for m in msgs}
