"""The suite's one TCP relay: a loopback forwarder between a client (Handoff) and one listener of a
real Kafka broker, which a test can cut, take down, bring back, retarget and record.

`Relay(target_port, listen_port=0)` listens on 127.0.0.1 (`listen_port` 0: the kernel picks one;
otherwise a port from `conftest.free_port`, below the ephemeral range) and forwards every accepted
connection to 127.0.0.1:`target_port`, byte for byte. A test can
  * `cut()`: close every relayed connection (new ones are still accepted);
  * `down()` / `up()`: close every relayed connection and refuse new ones (accepted and closed at
    once) until `up()`: to the client, the broker is unreachable;
  * `retarget(port)`: send connections accepted from now on to another port;
  * `snapshot()` (with `record=True`): every byte the client sent, one buffer per accepted
    connection, to show e.g. that nothing left the client unencrypted;
  * `close()`: stop listening and close every relayed connection.

`KafkaCutter` (a Relay) reads Kafka's framing just far enough to lose a Produce response. Kafka's
wire protocol frames every request and response as a big-endian int32 size and a payload; a
request's payload starts with api_key (int16), api_version (int16) and correlation_id (int32), a
response's with the correlation_id it answers. Armed with `cut_next_produce_responses(n)`, it closes
the client's connection when the broker's answer to a Produce request arrives, instead of passing it
on: the broker has appended the batch, and the client sees a transport error with the request in
flight (librdkafka: *possibly persisted*). The client must then retry the very same batch (same
producer id, epoch and sequence), which Kafka drops as a duplicate — the case librdkafka's mock
cluster cannot show, because it checks sequences only for transactional producers and appends such
a retry again.

For a relay in front of a broker, the broker must advertise the relay's address for the listener
behind it (kafka.sh's `extra.advertised.listeners`), so that every connection the client opens after
bootstrap goes through the relay too.
"""
from __future__ import annotations

import socket
import struct
import threading

PRODUCE = 0   # Kafka api_key


class _Conn:
    """One relayed connection: the accepted client socket and the one to the target."""

    def __init__(self, client: socket.socket, target: socket.socket, stream: bytearray | None):
        self.client = client
        self.target = target
        self.stream = stream             # client -> target bytes when recording
        self.produce_ids: set[int] = set()   # KafkaCutter: Produce requests not answered yet

    def close(self):
        _close(self.client)
        _close(self.target)


class Relay:
    """A TCP relay on 127.0.0.1 to one target port (see the module docstring)."""

    def __init__(self, target_port: int, listen_port: int = 0, *, record: bool = False):
        self.target_port = target_port
        self.record = record
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.streams: list[bytearray] = []   # with record: client -> target bytes, one per accepted connection
        self.is_down = False
        self.closed = False
        self._conns: list[_Conn] = []
        threading.Thread(target=self._accept, daemon=True).start()

    # -- control ------------------------------------------------------------------------------
    def cut(self):
        """Closes every relayed connection; new ones are accepted as before."""
        with self.lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    def down(self):
        """Closes every relayed connection and refuses new ones until `up()`."""
        with self.lock:
            self.is_down = True
        self.cut()

    def up(self):
        with self.lock:
            self.is_down = False

    def retarget(self, target_port: int):
        """Connections accepted from now on go to `target_port` (the current ones stay; `cut()` them)."""
        with self.lock:
            self.target_port = target_port

    def snapshot(self) -> list[bytes]:
        """With record=True: what the client sent, one buffer per accepted connection."""
        with self.lock:
            return [bytes(s) for s in self.streams]

    def close(self):
        self.closed = True
        _close(self.sock)   # shutdown wakes the blocked accept()
        self.down()

    # -- relay --------------------------------------------------------------------------------
    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                refuse, target_port = self.is_down or self.closed, self.target_port
                stream = None
                if self.record and not refuse:
                    stream = bytearray()
                    self.streams.append(stream)
            if refuse:
                _close(client)
                continue
            try:
                target = socket.create_connection(("127.0.0.1", target_port), timeout=10)
                target.settimeout(None)
            except OSError:
                _close(client)
                continue
            conn = _Conn(client, target, stream)
            with self.lock:
                refuse = self.is_down or self.closed   # taken down while connecting
                if not refuse:
                    self._conns.append(conn)
            if refuse:
                conn.close()
                continue
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._responses, args=(conn,), daemon=True).start()

    def _requests(self, conn: _Conn):
        """Client -> target."""
        try:
            while True:
                data = conn.client.recv(65536)
                if not data:
                    break
                if conn.stream is not None:
                    with self.lock:
                        conn.stream += data
                conn.target.sendall(data)
        except OSError:
            pass
        finally:
            self._done(conn)

    def _responses(self, conn: _Conn):
        """Target -> client."""
        try:
            while True:
                data = conn.target.recv(65536)
                if not data:
                    break
                conn.client.sendall(data)
        except OSError:
            pass
        finally:
            self._done(conn)

    def _done(self, conn: _Conn):
        conn.close()
        with self.lock:
            if conn in self._conns:
                self._conns.remove(conn)


class KafkaCutter(Relay):
    """A Relay that can lose the broker's answer to a Produce request (see the module docstring)."""

    def __init__(self, target_port: int, listen_port: int = 0):
        self.armed = 0              # Produce responses still to lose
        self.cuts = 0               # connections closed with a Produce response lost
        self.produce_requests = 0
        super().__init__(target_port, listen_port)

    def cut_next_produce_responses(self, n: int = 1):
        with self.lock:
            self.armed += n

    def wait_cuts(self, n: int, timeout: float) -> bool:
        """True once `n` connections in all were cut with a Produce response lost."""
        with self.cond:
            return self.cond.wait_for(lambda: self.cuts >= n, timeout)

    def _requests(self, conn: _Conn):
        try:
            for frame in _frames(conn.client):
                if len(frame) >= 12:
                    api_key, _version, corr = struct.unpack(">hhi", frame[4:12])
                    if api_key == PRODUCE:
                        with self.lock:
                            conn.produce_ids.add(corr)   # before the broker can answer it
                            self.produce_requests += 1
                conn.target.sendall(frame)
        except OSError:
            pass
        finally:
            self._done(conn)

    def _responses(self, conn: _Conn):
        try:
            for frame in _frames(conn.target):
                corr = struct.unpack(">i", frame[4:8])[0] if len(frame) >= 8 else None
                with self.lock:
                    cut = corr in conn.produce_ids and self.armed > 0
                    conn.produce_ids.discard(corr)
                    if cut:
                        self.armed -= 1
                if cut:
                    conn.close()
                    with self.cond:
                        self.cuts += 1
                        self.cond.notify_all()
                    return
                conn.client.sendall(frame)
        except OSError:
            pass
        finally:
            self._done(conn)


def _frames(sock: socket.socket):
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
