"""HTTP/1.1 on the wire: pipelining answered in order; ambiguous framing -> 400 + close, and the
legacy service receives nothing (README, "HTTP handling"; tests/CATALOGUE.md, B-1, B-20)."""
from __future__ import annotations

import json

import pytest

from conftest import RawConn, assert_error, hdrs, unique


def req(method: str, path: str, body: bytes = b"", headers=()) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: handoff.test\r\n"
    for k, v in headers:
        head += f"{k}: {v}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_pipelined_forward_event_commit_forward_requests_are_answered_in_order(proxy, upstream, kafka, topics):
    t1, t2 = unique("p1"), unique("p2")
    wire = (req("GET", f"/orders/{t1}")
            + req("POST", "/audit", b"pipelined-event", [("X-Tenant", "pipe"), ("Content-Type", "text/plain")])
            + req("POST", "/orders/eu", b'{"customer":{"id":"pipe"}}', [("Content-Type", "application/json")])
            + req("GET", f"/orders/{t2}"))
    c = RawConn(proxy.port, timeout=15)
    try:
        c.send(wire)  # one write
        rs = [c.read_response() for _ in range(4)]
    finally:
        c.close()
    assert [r.status for r in rs] == [200, 202, 201, 200], rs
    assert json.loads(rs[0].body)["path"] == f"/orders/{t1}"
    assert json.loads(rs[3].body)["path"] == f"/orders/{t2}"
    ev = json.loads(rs[1].body)
    assert ev["topic"] == topics.audit
    assert kafka.find(topics.audit, ev["correlation_id"]).value() == b"pipelined-event"
    cm = json.loads(rs[2].body)
    assert cm["outcome"] == "persisted"
    assert hdrs(kafka.at("orders.eu", cm["partition"], cm["offset"]))["ce_id"] == cm["correlation_id"].encode()


def test_twenty_pipelined_mixed_requests_keep_their_order(proxy):
    tags = [unique(f"o{i}") for i in range(20)]
    wire = b""
    expected = []
    for i, t in enumerate(tags):
        if i % 3 == 0:
            wire += req("GET", f"/orders/{t}")
            expected.append((200, t))
        elif i % 3 == 1:
            wire += req("POST", "/audit", t.encode(), [("X-Tenant", "pipe"), ("X-Correlation-ID", t)])
            expected.append((202, t))
        else:
            wire += req("POST", "/orders/eu", json.dumps({"customer": {"id": t}}).encode(),
                        [("X-Correlation-ID", t)])
            expected.append((201, t))
    c = RawConn(proxy.port, timeout=20)
    try:
        c.send(wire)
        rs = [c.read_response() for _ in tags]
    finally:
        c.close()
    for (status, t), r in zip(expected, rs):
        assert r.status == status, (t, r)
        if status == 200:
            assert json.loads(r.body)["path"] == f"/orders/{t}"
        else:
            assert r.header("X-Correlation-ID") == t, r


@pytest.mark.parametrize("framing", [
    ["Content-Length: 5", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: chunked", "Content-Length: 5"],
    ["content-length: 5", "transfer-encoding: CHUNKED"],
    ["Transfer-Encoding: gzip", "Content-Length: 5"],
    ["Content-Length: 5", "Content-Length: 6"],
], ids=["cl-then-te", "te-then-cl", "lowercase", "te-gzip-cl", "two-different-cl"])
@pytest.mark.parametrize("target", ["forward", "event"])
def test_ambiguous_framing_is_400_the_connection_closes_and_nothing_is_forwarded(proxy, upstream, framing, target):
    tag = unique("smuggle")
    path = f"/smuggle/{tag}" if target == "forward" else "/audit"
    smuggled = f"GET /smuggled/{tag} HTTP/1.1\r\nHost: x\r\nX-Test-Tag: {tag}\r\n\r\n".encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Tenant: t\r\nX-Test-Tag: {tag}\r\n" + "".join(
        h + "\r\n" for h in framing) + "\r\n"
    c = RawConn(proxy.port, timeout=10)
    try:
        c.send(head.encode() + b"0\r\n\r\n" + smuggled)
        r = c.read_response()
        assert_error(r, 400, "bad_request", require_correlation_id=False)
        assert c.closed_by_peer(5.0), "connection not closed after a framing error"
    finally:
        c.close()
    assert not upstream.with_header("X-Test-Tag", tag), "the upstream received part of a malformed request"
    assert not upstream.matching(lambda q: tag in q.path)


def test_a_request_after_a_framing_error_on_a_new_connection_is_served(proxy):
    c = RawConn(proxy.port)
    try:
        c.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert c.read_response().status == 400
    finally:
        c.close()
    assert proxy.request("GET", f"/orders/{unique('after')}").status == 200


def test_an_http_1_0_chunked_request_is_400(proxy, upstream):
    tag = unique("h10")
    c = RawConn(proxy.port)
    try:
        c.send(f"POST /h10/{tag} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
               .encode())
        r = c.read_response()
        assert r.status == 400, r
        assert c.closed_by_peer(5.0)
    finally:
        c.close()
    assert not upstream.matching(lambda q: tag in q.path)


@pytest.mark.parametrize("wire,status", [
    (b"GET /orders/{tag} HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /orders/{tag} HTTP/1.1\r\n\r\n", 400),
    (b"POST /orders/{tag} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    (b"POST /orders/{tag} HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", 400),
    (b"POST /orders/{tag} HTTP/1.1\r\nHost: x\r\nContent-Length : 1\r\n\r\nx", 400),
    (b"GET /orders/{tag} HTTP/1.1\nHost: x\n\n", 400),
    (b"POST /audit HTTP/1.1\r\nHost: x\r\nX-Tenant: t\r\nX-Test-Tag: {tag}\r\nExpect: 100-continue\r\n"
     b"Content-Length: 5000\r\n\r\n", 413),
], ids=["two-hosts", "no-host", "te-identity", "cl-plus", "space-before-colon", "bare-lf", "expect-over-limit"])
def test_malformed_requests_are_rejected_and_the_connection_closed_with_nothing_forwarded(proxy, upstream, wire, status):
    tag = unique("bad")
    c = RawConn(proxy.port, timeout=10)
    try:
        c.send(wire.replace(b"{tag}", tag.encode()))
        r = c.read_response()
        assert r.status == status, r
        assert c.closed_by_peer(5.0), "connection not closed after the error"
    finally:
        c.close()
    assert not upstream.matching(lambda q: tag in q.path or q.header("X-Test-Tag") == tag)
