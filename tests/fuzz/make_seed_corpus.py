#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (checked in; rerun after adding cases).

h2_frames: HTTP/2 frame sequences after the client preface (requests, bodies, trailers, resets,
floods, a header block left open), each prefixed with the harness's read-size byte;
http_request: every hostile-HTTP case of tests/integration/test_hostile_http.py (B-1..B-23) plus
valid requests, each prefixed with the harness's read-size byte; route_table, record, config:
small hand-written seeds. Files are named after the case, so a failing replay names the case."""
from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import test_hostile_http as hostile  # noqa: E402

CORPUS = HERE / "corpus"


def write(target: str, name: str, data: bytes):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / re.sub(r"[^A-Za-z0-9._-]", "_", name)).write_bytes(data)


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(name: str, value: str) -> bytes:
    """A literal field without indexing, new name (RFC 7541 §6.2.2), lengths under 127."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def h2_request(method: str, path: str, *fields: tuple[str, str]) -> bytes:
    block = hpack_literal(":method", method) + hpack_literal(":path", path) + hpack_literal(":scheme", "http")
    block += hpack_literal(":authority", "svc")
    for n, v in fields:
        block += hpack_literal(n, v)
    return block


def h2_seeds() -> list[tuple[str, bytes]]:
    HEADERS, DATA, RST, SETTINGS, PING, CONT, WINDOW, GOAWAY = 1, 0, 3, 4, 6, 9, 8, 7
    END_STREAM, END_HEADERS = 0x1, 0x4
    settings = h2_frame(SETTINGS, 0, 0, (3).to_bytes(2, "big") + (100).to_bytes(4, "big"))
    get = h2_request("GET", "/orders/1")
    post = h2_request("POST", "/audit", ("content-type", "application/json"))
    return [
        ("get", settings + h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, get)),
        ("post-body", settings + h2_frame(HEADERS, END_HEADERS, 1, post) + h2_frame(DATA, 0, 1, b"{\"a\":")
         + h2_frame(DATA, END_STREAM, 1, b"1}")),
        ("post-trailer", settings + h2_frame(HEADERS, END_HEADERS, 1, post) + h2_frame(DATA, 0, 1, b"x")
         + h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_literal("authorization", "x"))),
        ("body-over-limit", settings + h2_frame(HEADERS, END_HEADERS, 1, post)
         + h2_frame(DATA, 0, 1, b"z" * 800) + h2_frame(DATA, END_STREAM, 1, b"z" * 800)),
        ("refused-at-head", settings + h2_frame(HEADERS, END_HEADERS, 1, h2_request("POST", "/refuse"))
         + h2_frame(DATA, END_STREAM, 1, b"body")),
        ("continuation", settings + h2_frame(HEADERS, END_STREAM, 1, get[:20]) + h2_frame(CONT, 0, 1, get[20:30])
         + h2_frame(CONT, END_HEADERS, 1, get[30:])),
        ("continuation-flood", settings + h2_frame(HEADERS, END_STREAM, 1, get)
         + b"".join(h2_frame(CONT, 0, 1, hpack_literal("x-a", "b")) for _ in range(20))),
        ("rapid-reset", settings + b"".join(h2_frame(HEADERS, END_STREAM | END_HEADERS, i, get)
                                            + h2_frame(RST, 0, i, (8).to_bytes(4, "big")) for i in range(1, 80, 2))),
        ("held-then-reset", settings + b"".join(h2_frame(HEADERS, END_STREAM | END_HEADERS, i, get)
                                                for i in (3, 7, 11)) + h2_frame(RST, 0, 3, (8).to_bytes(4, "big"))),
        ("many-streams", settings + b"".join(h2_frame(HEADERS, END_HEADERS, i, post) for i in range(1, 40, 2))),
        ("ping-settings-flood", b"".join(h2_frame(PING, 0, 0, bytes(8)) + h2_frame(SETTINGS, 0, 0) for _ in range(50))),
        ("window-goaway", settings + h2_frame(WINDOW, 0, 0, (1000).to_bytes(4, "big"))
         + h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, get) + h2_frame(GOAWAY, 0, 0, bytes(8))),
        ("cookies-host", settings + h2_frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                             h2_request("GET", "/a", ("cookie", "a=1"), ("cookie", "b=2"),
                                                        ("host", "other")))),
        ("bad-preface-tail", b"GET / HTTP/1.1\r\n\r\n"),
    ]


def main():
    tag = "seed"
    for name, data in h2_seeds():
        for step in (0, 63):
            write("h2_frames", f"{name}-step{step + 1}", bytes([step]) + data)
    valid = [
        ("valid-get", b"GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("valid-post-cl", b"POST /audit HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\nContent-Length: 5\r\n\r\nhello"),
        ("valid-chunked-trailer", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"5;a=b\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"),
        ("valid-pipelined", b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("valid-leading-crlf", b"\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("valid-http10", b"GET /a HTTP/1.0\r\n\r\n"),
        ("valid-connection-nominated", b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n"),
        ("valid-obs-fold", b"GET /a HTTP/1.1\r\nHost: a\r\nX-F: a\r\n b\r\n\r\n"),
    ]
    # The first byte is the harness's read size - 1: byte-at-a-time (0) and 64-byte reads (63).
    for name, data in valid:
        for step in (0, 63):
            write("http_request", f"{name}-step{step + 1}", bytes([step]) + data)
    for i, (cid, template, _st, _cc, kinds) in enumerate(hostile.BAD):
        step = 0 if i % 2 == 0 else 63
        write("http_request", f"{cid}-{kinds[0]}", bytes([step]) + hostile.render(template, kinds[0], tag))
    for name, data in [
        ("get-order", b"GET /orders/42"), ("special", b"GET /orders/special"), ("post-order", b"POST /orders/eu?x=1"),
        ("wrong-method", b"PATCH /orders/1"), ("multi", b"DELETE /a/1/b/2/c"), ("root", b"HEAD /"),
        ("encoded", b"GET /orders/%2e%2e"), ("empty-segments", b"GET //orders//1"), ("no-method", b"/orders/1"),
        ("bad-escape", b"GET /orders/%zz"), ("long", b"GET /" + b"a/" * 200),
    ]:
        write("route_table", name, data)
    for name, data in [
        ("json-key", b"\x83POST\n/orders/eu\na=1\nX-Tenant: t\nContent-Type: application/json\n\n{\"customer\":{\"id\":\"c-1\"}}"),
        ("json-invalid-utf8", b"\x83POST\n/orders/eu\n\n\n{\"customer\":{\"id\":\"\xff\"}}"),
        ("header-key", b"\x02POST\n/audit\n\nX-Key: k1\nAuthorization: Bearer x\n\nbody"),
        ("path-key-topic", b"\x21POST\n/orders/eu\n\n\nx"),
        ("path-key-bad-topic", b"\x21POST\n/orders/..\n\n\nx"),
        ("traceparent", b"\x04POST\n/a\n\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n\n"),
        ("bad-traceparent", b"\x04POST\n/a\n\ntraceparent: 00-zz-b7-01\ntracestate: a=b\nbaggage: k=v\n\n"),
        ("array-pointer", b"\x03POST\n/a\n\n\n{\"a\":[{\"b\":1}]}"),
    ]:
        write("record", name, data)
    configs = {
        "minimal": "kafka: {brokers: \"127.0.0.1:9092\"}\n",
        "routes": (HERE.parents[1] / "config" / "examples").glob("*.yaml"),
        "env": "kafka: {brokers: \"${FUZZ_SET}\"}\nlisten: {port: ${UNSET:-8080}}\n",
        "errors": "listen: {port: 99999, threads: 0}\nkafka: {}\nroutes: [{name: x, mode: nope}]\nunknown: 1\n",
        "anchors": "a: &a {brokers: x}\nkafka: *a\n",
        "limits": "kafka: {brokers: x}\nlisten: {max_header_bytes: 8KiB, max_body_bytes: 1GiB, header_timeout: 1s}\n",
    }
    for name, text in configs.items():
        if isinstance(text, str):
            write("config", name, text.encode())
        else:
            for f in text:
                write("config", f"example-{f.stem}", f.read_bytes())


if __name__ == "__main__":
    main()
