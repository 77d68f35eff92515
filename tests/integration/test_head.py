"""HEAD on every kind of answer Handoff writes itself (tests/CATALOGUE.md, I-7; RFC 9110 §9.3.2).

A HEAD answer is a head alone: a body byte after it would be read by a keep-alive client as the
start of the next response. Each case sends HEAD and then GET on the same connection and checks
that no byte follows the HEAD answer's head and that the next response parses.
"""
from __future__ import annotations

import pytest

from conftest import RawConn, base_config, free_port, standard_routes, unique


def head_then_get(port: int, head_target: str, get_target: str = "/orders/after-head", headers: str = ""):
    c = RawConn(port, timeout=10)
    try:
        c.send(f"HEAD {head_target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
               + f"GET {get_target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = c.read_response(head_request=True)
        if (head.header("Connection") or "").lower() == "close":
            rest = b""
            while c._fill():
                pass
            rest, c.buf = c.buf, b""
            return head, None, rest
        nxt = c.read_response()
        return head, nxt, None
    finally:
        c.close()


@pytest.fixture(scope="module")
def no_upstream(handoff_process, brokers, topics):
    return handoff_process(base_config(brokers, free_port(), standard_routes(topics)), name="head-no-upstream")


@pytest.mark.parametrize("target,status", [
    (f"/_handoff/requests/{unique('none')}", 404),   # the status endpoint: unknown ID
    ("/audit", 405),                                 # a route that does not take HEAD
])
def test_a_head_answer_handoff_writes_itself_has_no_body_and_the_next_response_parses(proxy, target, status):
    head, nxt, _ = head_then_get(proxy.port, target)
    assert head.status == status, head
    assert int(head.header("Content-Length")) > 0, "Content-Length says what a GET would carry"
    assert nxt is not None and nxt.status == 200, nxt
    assert nxt.json()["path"] == "/orders/after-head", nxt


def test_head_on_the_status_endpoint_of_a_known_request_has_no_body(proxy, kafka, topics):
    r = proxy.request("POST", "/keys/corr", b"x")
    assert r.status == 202, r
    head, nxt, _ = head_then_get(proxy.port, f"/_handoff/requests/{r.header('X-Correlation-ID')}")
    assert head.status == 200, head
    assert nxt is not None and nxt.status == 200, nxt


def test_head_on_a_forward_route_whose_upstream_is_down_is_502_without_a_body(no_upstream):
    head, nxt, _ = head_then_get(no_upstream.port, "/orders/1", "/_handoff/requests/none")
    assert head.status == 502, head
    assert nxt is not None and nxt.status == 404 and nxt.json()["error"], nxt


def test_a_head_answer_that_closes_the_connection_sends_no_body_either(proxy):
    head, _, rest = head_then_get(proxy.port, "/orders/1", headers="X-Correlation-ID: not valid!\r\n")
    assert head.status == 400, head
    assert rest == b"", f"bytes after the HEAD answer: {rest[:200]!r}"
