"""Test-time TLS material and a real Kafka broker with TLS listeners (tests/CATALOGUE.md, X-3, X-5).

`make_certs(dir)` writes, with the `openssl` command line only:
  * a CA (`ca.pem`), valid for a day;
  * `good`: signed by the CA for 127.0.0.1 / localhost, valid now;
  * `self_signed`: for 127.0.0.1 / localhost, but signed by itself, not by the CA;
  * `mismatch`: signed by the CA, valid now, but for wrong.example.com only;
  * `expired`: signed by the CA for 127.0.0.1 / localhost, valid only in January 2020
    (`openssl ca -startdate/-enddate`: no faketime needed);
each as a PKCS12 keystore for the broker.

`TlsKafka` starts one KRaft node with tests/kafka/kafka.sh and an extra-properties file: the usual
PLAINTEXT listener (inter-broker; the tests' admin client and read-back use it) plus one SSL listener
per certificate and a SASL_SSL listener (PLAIN, good certificate) for the secrets-hygiene case. One
JVM serves every case, so the module pays one broker start.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO_ROOT, free_port, free_port_pair

CERT_NAMES = ("good", "self_signed", "mismatch", "expired")
SASL_USER = "handoff"
SASL_PASSWORD = "sasl-pw-" + secrets.token_hex(8)


def _openssl(*args: str, cwd: Path):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


_CA_CONF = """\
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any_name
copy_extensions = copy
unique_subject = no
[ any_name ]
commonName = supplied
"""


def make_certs(d: Path, store_password: str) -> dict[str, Path]:
    """Writes the CA and the four broker keystores into `d`; returns their paths (see module doc)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.cnf").write_text(_CA_CONF)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "issued").mkdir(exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=handoff-test-ca", cwd=d)
    local_san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    plan = {  # name -> (subject CN, SAN, how it is signed)
        "good": ("127.0.0.1", local_san, ["-days", "1"]),
        "mismatch": ("wrong.example.com", "subjectAltName=DNS:wrong.example.com", ["-days", "1"]),
        "expired": ("127.0.0.1", local_san, ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]),
    }
    out = {"ca": d / "ca.pem"}
    for name, (cn, san, validity) in plan.items():
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", "-addext", san, cwd=d)
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", f"{name}.csr",
                 "-out", f"{name}.pem", "-notext", *validity, cwd=d)
    # Self-signed: the right names, but no CA vouches for it.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self_signed.key", "-out", "self_signed.pem",
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", local_san, cwd=d)
    for name in CERT_NAMES:
        _openssl("pkcs12", "-export", "-in", f"{name}.pem", "-inkey", f"{name}.key", "-name", name,
                 "-out", f"{name}.p12", "-passout", f"pass:{store_password}", cwd=d)
        out[name] = d / f"{name}.p12"
        out[name + "_pem"] = d / f"{name}.pem"
    return out


@dataclass
class TlsKafka:
    """One broker: PLAINTEXT on `port` (controller on port+1), SSL listeners GOOD, SELF_SIGNED,
    MISMATCH, EXPIRED and a SASL_SSL listener SASL (PLAIN, good certificate) on ports of their own."""

    base_dir: Path
    certs: dict[str, Path] = field(default_factory=dict)
    port: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # listener name (lower case) -> port
    dir: Path | None = None

    SCRIPT = REPO_ROOT / "tests" / "kafka" / "kafka.sh"

    def _choose_ports(self):
        # HANDOFF_TLS_BROKER_PORT pins a base (PORT..PORT+6) for machines with reserved ranges;
        # otherwise free ports are picked.
        base = int(os.environ.get("HANDOFF_TLS_BROKER_PORT", "0"))
        names = [n for n in CERT_NAMES] + ["sasl"]
        if base:
            self.port = base
            self.ports = {n: base + 2 + i for i, n in enumerate(names)}
        else:
            self.port = free_port_pair()
            self.ports = {n: free_port() for n in names}

    @property
    def plaintext(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bootstrap(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def start(self, timeout: float = 150) -> "TlsKafka":
        password = "store-" + secrets.token_hex(6)
        self.certs = make_certs(self.base_dir / "certs", password)
        self._choose_ports()
        names = list(self.ports)
        props = [
            "extra.listeners=" + ",".join(f"{n.upper()}://127.0.0.1:{p}" for n, p in self.ports.items()),
            "extra.listener.security.protocol.map=" + ",".join(
                f"{n.upper()}:{'SASL_SSL' if n == 'sasl' else 'SSL'}" for n in names),
        ]
        for n in names:
            store = self.certs["good" if n == "sasl" else n]
            props += [f"listener.name.{n}.ssl.keystore.type=PKCS12",
                      f"listener.name.{n}.ssl.keystore.location={store}",
                      f"listener.name.{n}.ssl.keystore.password={password}",
                      f"listener.name.{n}.ssl.key.password={password}",
                      f"listener.name.{n}.ssl.client.auth=none"]
        props += ["listener.name.sasl.sasl.enabled.mechanisms=PLAIN",
                  "listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
                  f'required user_{SASL_USER}="{SASL_PASSWORD}";']
        extra = self.base_dir / "tls.properties"
        extra.write_text("\n".join(props) + "\n")
        self.dir = self.base_dir / "kafka"
        r = subprocess.run([str(self.SCRIPT), "start", str(self.dir), str(self.port), str(extra)],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"kafka.sh start (TLS listeners) failed:\n{r.stdout}\n{r.stderr}"
        return self

    def stop(self, timeout: float = 60):
        if self.dir is None:
            return
        r = subprocess.run([str(self.SCRIPT), "stop", str(self.dir)], capture_output=True, text=True, timeout=timeout)
        self.dir = None
        assert r.returncode == 0, f"kafka.sh stop failed:\n{r.stdout}\n{r.stderr}"

    def log_text(self) -> str:
        try:
            return (self.dir / "kafka.log").read_text(errors="replace") if self.dir else ""
        except OSError:
            return ""


def tls_records_only(stream: bytes) -> str | None:
    """None when `stream` is a sequence of whole-or-trailing TLS records (content types 20-23, version
    3.x) starting with a handshake; else a description of the first byte that is not TLS."""
    if not stream:
        return None
    if stream[0] != 22:
        return f"first byte {stream[0]:#x} is not a TLS handshake record: {stream[:40]!r}"
    i = 0
    while i + 5 <= len(stream):
        ctype, major, length = stream[i], stream[i + 1], int.from_bytes(stream[i + 3:i + 5], "big")
        if ctype not in (20, 21, 22, 23) or major != 3 or length > 18432:
            return f"bytes at offset {i} are not a TLS record: {stream[i:i + 40]!r}"
        i += 5 + length
    return None
