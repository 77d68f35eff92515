"""A TCP relay in front of one listener of a real Kafka broker that can lose a Produce response.

Kafka's wire protocol frames every request and response as a big-endian int32 size and a payload;
a request's payload starts with api_key (int16), api_version (int16) and correlation_id (int32), a
response's with the correlation_id it answers. The relay reads just that much. Armed with
`cut_next_produce_responses(n)`, it closes the client's connection when the broker's answer to a
Produce request arrives, instead of passing it on: the broker has appended the batch, and the
client sees a transport error with the request in flight (librdkafka: *possibly persisted*). The
client must then retry the very same batch (same producer id, epoch and sequence), which Kafka
drops as a duplicate — the case librdkafka's mock cluster cannot show, because it checks
sequences only for transactional producers and appends such a retry again.

The broker must advertise the relay's address for the listener behind it (kafka.sh's
`extra.advertised.listeners`), so that every connection the client opens after bootstrap goes
through the relay too.
"""
from __future__ import annotations

import socket
import struct
import threading

PRODUCE = 0


class KafkaCutter:
    def __init__(self, listen_port: int, broker_port: int):
        self.broker_port = broker_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.port = listen_port
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.armed = 0          # Produce responses still to lose
        self.cuts = 0           # connections closed with a Produce response lost
        self.produce_requests = 0
        self.closed = False
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    # -- control ------------------------------------------------------------------------------
    def cut_next_produce_responses(self, n: int = 1):
        with self.lock:
            self.armed += n

    def wait_cuts(self, n: int, timeout: float) -> bool:
        """True once `n` connections in all were cut with a Produce response lost."""
        with self.cond:
            return self.cond.wait_for(lambda: self.cuts >= n, timeout)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            _close(a)
            _close(b)

    # -- relay --------------------------------------------------------------------------------
    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(("127.0.0.1", self.broker_port), timeout=10)
                broker.settimeout(None)
            except OSError:
                _close(client)
                continue
            produce_ids: set[int] = set()
            with self.lock:
                self._conns.append((client, broker))
            threading.Thread(target=self._requests, args=(client, broker, produce_ids), daemon=True).start()
            threading.Thread(target=self._responses, args=(client, broker, produce_ids), daemon=True).start()

    def _requests(self, client, broker, produce_ids: set[int]):
        try:
            for frame in _frames(client):
                if len(frame) >= 12:
                    api_key, _version, corr = struct.unpack(">hhi", frame[4:12])
                    if api_key == PRODUCE:
                        with self.lock:
                            produce_ids.add(corr)   # before the broker can answer it
                            self.produce_requests += 1
                broker.sendall(frame)
        except OSError:
            pass
        finally:
            _close(client)
            _close(broker)

    def _responses(self, client, broker, produce_ids: set[int]):
        try:
            for frame in _frames(broker):
                corr = struct.unpack(">i", frame[4:8])[0] if len(frame) >= 8 else None
                with self.lock:
                    cut = corr in produce_ids and self.armed > 0
                    produce_ids.discard(corr)
                    if cut:
                        self.armed -= 1
                if cut:
                    _close(client)
                    _close(broker)
                    with self.cond:
                        self.cuts += 1
                        self.cond.notify_all()
                    return
                client.sendall(frame)
        except OSError:
            pass
        finally:
            _close(client)
            _close(broker)


def _frames(sock):
    """Whole Kafka frames (size prefix included) read from sock until EOF."""
    buf = b""
    while True:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        n = 4 + struct.unpack(">i", buf[:4])[0]
        frame, buf = buf[:n], buf[n:]
        yield frame


def _close(s: socket.socket):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
