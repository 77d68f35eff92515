"""`profile: production` and `kafka.allow_insecure` through the binary (tests/CATALOGUE.md, X-4).

`handoff validate` and `handoff run` refuse a production config whose Kafka connection would be
plaintext or unverified with exit 78 and `file:line:column: path: message` on stderr (run never
listens); kafka.allow_insecure: true lets it run, with one loud warning line at start naming every
such setting; the development profile (the default) runs the same settings without one. The loader
rules themselves are unit-tested in tests/config/profile_test.cpp; the schema in test_config_schema.py.
"""
from __future__ import annotations

import socket
import subprocess

import pytest

from conftest import base_config, free_port, handoff_bin

EXIT_CONFIG = 78
WARNING = "INSECURE KAFKA CONNECTION"

PRODUCTION_PLAINTEXT = """\
# a production config that forgot TLS
profile: production
listen: {address: 127.0.0.1, port: %(port)d}
admin: {address: 127.0.0.1, port: %(admin)d}
kafka:
  brokers: "127.0.0.1:9092"
  properties:
    linger.ms: 5
    ssl.endpoint.identification.algorithm: none
routes: []
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_validate_refuses_production_plaintext_with_file_line_and_path_and_exits_78(tmp_path):
    f = write(tmp_path, "prod.yaml", PRODUCTION_PLAINTEXT % {"port": 8080, "admin": 9901})
    r = subprocess.run([handoff_bin(), "validate", "--config", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_CONFIG, r
    lines = [ln for ln in r.stderr.splitlines() if "not allowed with profile: production (line 2)" in ln]
    assert len(lines) == 2, r.stderr
    # No security.protocol: reported at the properties map (line 8); the hostname check at its value (line 9).
    assert lines[0].startswith(f"{f}:8:") and "kafka.properties.security.protocol:" in lines[0], lines
    assert "PLAINTEXT" in lines[0] and "kafka.allow_insecure: true" in lines[0], lines
    assert lines[1].startswith(f"{f}:9:") and "kafka.properties.ssl.endpoint.identification.algorithm:" in lines[1]


def test_run_refuses_production_plaintext_with_78_and_never_listens(tmp_path):
    port, admin = free_port(), free_port()
    f = write(tmp_path, "prod.yaml", PRODUCTION_PLAINTEXT % {"port": port, "admin": admin})
    r = subprocess.run([handoff_bin(), "run", "--config", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_CONFIG, r
    assert "kafka.properties.security.protocol" in r.stderr
    for p in (port, admin):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()


@pytest.mark.parametrize("brokers", ["embedded", "127.0.0.1:9092"])
def test_validate_refuses_production_embedded_and_sasl_plaintext(tmp_path, brokers):
    text = (f"profile: production\nkafka:\n  brokers: {brokers}\n"
            "  properties: {security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN}\n")
    r = subprocess.run([handoff_bin(), "validate", "--config", str(write(tmp_path, "p.yaml", text))],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_CONFIG, r
    expected = "kafka.brokers: not allowed" if brokers == "embedded" else "security.protocol=SASL_PLAINTEXT"
    assert expected in r.stderr, r.stderr


@pytest.mark.timeout_s(40)
def test_allow_insecure_runs_production_on_plaintext_with_one_loud_warning(handoff_process, brokers, upstream):
    cfg = base_config(brokers, upstream.port, [])
    cfg["profile"] = "production"
    cfg["kafka"] = {**cfg["kafka"], "allow_insecure": True}
    h = handoff_process(cfg, name="prod-insecure")
    warnings = [j for j in h.log_lines_json() if j.get("msg", "").startswith(WARNING)]
    assert len(warnings) == 1, h.log_tail()
    assert warnings[0]["level"] == "warn"
    assert [s.split(":")[0] for s in warnings[0]["settings"]] == ["kafka.properties.security.protocol"], warnings
    j = h.admin_get("/config").json()
    assert j["profile"] == "production" and j["kafka"]["allow_insecure"] is True
    starting = [x for x in h.log_lines_json() if x.get("msg") == "starting"]
    assert starting and starting[0]["profile"] == "production"


@pytest.mark.timeout_s(40)
def test_development_runs_plaintext_without_the_warning(handoff_process, brokers, upstream):
    h = handoff_process(base_config(brokers, upstream.port, []), name="dev-plaintext")
    assert h.admin_get("/config").json()["profile"] == "development"
    assert WARNING not in h.log_text()

