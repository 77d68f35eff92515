#!/usr/bin/env python3
"""A small legacy REST service for the Handoff demo: an in-memory order store.

GET  /orders/{id}      -> 200 the order, or 404
POST /orders/{region}  -> 201 (only reached through `forward`; in the demo the sidecar commits it to Kafka)
anything else          -> 200 echo of what arrived (method, path, headers, body)
Standard library only.
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = {"1": {"id": "1", "status": "shipped", "region": "eu"},
          "2": {"id": "2", "status": "pending", "region": "us"}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        body = self._body()
        parts = self.path.split("?")[0].strip("/").split("/")
        if self.command == "GET" and len(parts) == 2 and parts[0] == "orders":
            order = ORDERS.get(parts[1])
            return self._send(200 if order else 404, order or {"error": "no such order"})
        self._send(200, {"service": "demo-legacy-service", "method": self.command, "path": self.path,
                         "headers": dict(self.headers), "body": body.decode("utf-8", "replace")})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, fmt, *args):  # quiet: the sidecar logs requests
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
