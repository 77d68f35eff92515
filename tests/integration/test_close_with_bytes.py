"""A close that arrives in the same TCP segment as the last bytes, on either side of the proxy.

Handoff's reads tell Asio's epoll reactor when they drained a socket (a read that came back short),
so that the next read waits for the socket's readiness event instead of trying a recv that finds
nothing (proxy/common/include/handoff/common/drain_aware_read.hpp). An end of stream that came
with the bytes of such a read raises no new readiness event; these tests hold that it is still seen
at once wherever a read must see it. Every peer here sends its last bytes and its FIN in one
segment (TCP_CORK, then shutdown: the kernel puts the FIN on the queued segment), and every
timeout of the proxy is long (30 s), so a read that waited for an event would show as a hang.
"""
from __future__ import annotations

import socket
import threading

import pytest

from conftest import RawConn, base_config, free_port

SLOW = "30s"  # the proxy's timeouts: far beyond each test's own wait


def send_with_fin(sock: socket.socket, data: bytes) -> None:
    """`data` and the FIN in one segment."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


class RawService:
    """A service on raw sockets: answers each request by its path, keep-alive unless told."""

    ANSWERS = {
        # A body delimited by the close (no Content-Length), sent with the FIN.
        "/close-delimited": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                             b"the whole body, ended by the close", True),
        # 10 bytes of the 100 announced, then the FIN.
        "/cut": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", True),
        "/ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    }

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        conn.settimeout(30)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                with self.lock:
                    self.requests.append(path)
                answer, close = self.ANSWERS.get(path.split("?")[0], self.ANSWERS["/ok"])
                if close:
                    send_with_fin(conn, answer)
                    return
                conn.sendall(answer)
        except OSError:
            return
        finally:
            conn.close()

    def seen(self, path: str) -> int:
        with self.lock:
            return sum(1 for p in self.requests if p == path)

    def stop(self):
        self.listener.close()


@pytest.fixture(scope="module")
def service():
    s = RawService()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def edge(handoff_process, brokers, service):
    cfg = base_config(brokers, service.port, [
        {"name": "fwd", "match": {"path": "/**"}, "mode": "forward"},
    ], listen={"address": "127.0.0.1", "port": free_port(), "threads": 1, "header_timeout": SLOW,
               "body_timeout": SLOW, "idle_timeout": "1s"},
       upstream={"host": "127.0.0.1", "port": service.port, "timeout": SLOW},
       defaults={"mode": "forward", "timeout": SLOW, "ce_source": "/handoff-test"})
    return handoff_process(cfg)


def get(c: RawConn, path: str) -> None:
    c.send(f"GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n".encode())


def test_a_body_delimited_by_the_close_that_came_with_it_is_relayed_at_once(edge, service):
    # Each answer is read by one short read with the end of stream behind it; the proxy must try
    # the socket again (read_now) rather than wait for an event that will not come.
    for i in range(20):
        c = RawConn(edge.port, timeout=10)
        try:
            get(c, f"/close-delimited?i={i}")
            r = c.read_response()
        finally:
            c.close()
        assert r.status == 200, (i, r)
        assert r.body == b"the whole body, ended by the close", (i, r)


def test_an_answer_cut_off_by_the_service_is_a_502_at_once(edge, service):
    for i in range(10):
        c = RawConn(edge.port, timeout=10)
        try:
            get(c, f"/cut?i={i}")
            r = c.read_response()
        finally:
            c.close()
        assert r.status == 502, (i, r)


def test_keep_alive_answers_on_reused_connections_after_drained_reads(edge, service):
    # The first read of each exchange waits for the answer without trying the socket first (the
    # last exchange drained it): 200 requests over one client connection, each answered.
    c = RawConn(edge.port, timeout=10)
    try:
        for i in range(200):
            get(c, f"/ok?k={i}")
            r = c.read_response()
            assert r.status == 200 and r.body == b"ok", (i, r)
    finally:
        c.close()


def test_a_request_head_cut_off_by_the_clients_close_is_answered_at_once(edge, service):
    # The idle read takes the partial head and drains the socket; the read of the rest of the head
    # re-arms the socket's registration first, so the close is seen now, not at header_timeout.
    before = service.seen("/never")
    for i in range(5):
        c = RawConn(edge.port, timeout=10)
        try:
            send_with_fin(c.sock, b"GET /never HTTP/1.1\r\nHost: edge.test\r\nX-Half: ")
            r = c.read_response()
            assert r.status == 400, (i, r)
            assert c.closed_by_peer(timeout=10)
        finally:
            c.close()
    assert service.seen("/never") == before


def test_a_body_cut_off_by_the_clients_close_closes_at_once_and_forwards_nothing(edge, service):
    before = service.seen("/never-body")
    for i in range(5):
        c = RawConn(edge.port, timeout=10)
        try:
            send_with_fin(c.sock, b"POST /never-body HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 100\r\n\r\n"
                                  b"only ten b")
            assert c.closed_by_peer(timeout=10), i
        finally:
            c.close()
    assert service.seen("/never-body") == before


def test_a_partial_http2_preface_then_the_clients_close_closes_at_once(edge):
    c = RawConn(edge.port, timeout=10)
    try:
        send_with_fin(c.sock, b"PRI * HTTP/2.0\r\n")
        assert c.closed_by_peer(timeout=10)
    finally:
        c.close()


def test_a_client_that_half_closes_after_a_whole_request_gets_its_answer(edge, service):
    # The one case drained reads leave (README, "HTTP handling"): the answer is written, and the
    # connection is closed at idle_timeout (1 s here), not at once.
    c = RawConn(edge.port, timeout=10)
    try:
        send_with_fin(c.sock, b"GET /ok?half HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok", r
        assert c.closed_by_peer(timeout=10)
    finally:
        c.close()
