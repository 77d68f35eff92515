"""`handoff validate` / `handoff version` / `handoff run` on a bad config (README, "Running it")."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, base_config, free_port, handoff_bin, standard_routes, to_yaml, Topics

EX_CONFIG = 78
EXAMPLES = sorted((REPO_ROOT / "config" / "examples").glob("*.yaml"))

BROKEN = """\
listen:
  address: 127.0.0.1
  port: 8080
  bogus_key: 1
kafka:
  brokers: "127.0.0.1:9092"
routes:
  - name: r1
    match: {methods: [GET], path: /x}
    mode: teleport
  - name: r2
    match: {methods: [POST], path: /y}
    mode: commit
"""
# line 4: unknown key listen.bogus_key; line 10: unknown mode; line 11-13: commit route without topic


def run(args, env=None, timeout=30):
    return subprocess.run([handoff_bin(), *args], capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_version_prints_a_version_and_exits_0():
    p = run(["version"])
    assert p.returncode == 0, p
    assert p.stdout.strip(), "version printed nothing on stdout"


def test_validate_reports_every_error_with_file_line_column_and_path_and_exits_78(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    p = run(["validate", "--config", str(f)])
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == EX_CONFIG, f"exit {p.returncode}, output:\n{out}"
    line_re = re.compile(rf"^{re.escape(str(f))}:(\d+):(\d+): (\S+): .+$", re.M)
    errors = {(int(m.group(1)), m.group(3)) for m in line_re.finditer(out)}
    lines = {ln for ln, _ in errors}
    assert 4 in lines, f"unknown key listen.bogus_key (line 4) not reported as file:4:col: ...\n{out}"
    assert 10 in lines, f"unknown mode (line 10) not reported as file:10:col: ...\n{out}"
    assert any(11 <= ln <= 13 for ln in lines), f"commit route without a topic (lines 11-13) not reported\n{out}"
    paths = " ".join(p for _, p in errors)
    assert "bogus_key" in paths, f"the YAML path of the unknown key is not named:\n{out}"
    assert "mode" in paths, f"the YAML path of the bad mode is not named:\n{out}"


def test_validate_reports_a_yaml_syntax_error_with_file_and_line(tmp_path):
    f = tmp_path / "syntax.yaml"
    f.write_text("listen:\n  port: 8080\nroutes: [\n  {name: a\n")
    p = run(["validate", "--config", str(f)])
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == EX_CONFIG, out
    assert re.search(rf"{re.escape(str(f))}:\d+:\d+: ", out), out


def test_validate_warns_of_the_deprecated_listen_max_pipelined_and_still_accepts_the_config(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("listen:\n  port: 8080\n  max_pipelined: 64\nkafka:\n  brokers: 127.0.0.1:9092\n")
    p = run(["validate", "--config", str(f)])
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0, out
    assert re.search(rf"^warning: {re.escape(str(f))}:3:\d+: listen\.max_pipelined: deprecated and ignored", out, re.M), out


def test_validate_of_a_missing_file_exits_78(tmp_path):
    p = run(["validate", "--config", str(tmp_path / "nope.yaml")])
    assert p.returncode == EX_CONFIG, p


def test_validate_accepts_the_suite_s_own_config(tmp_path):
    t = Topics("a", "b", "c", "d")
    f = tmp_path / "good.yaml"
    f.write_text(to_yaml(base_config("127.0.0.1:9092", free_port(), standard_routes(t))) + "\n")
    p = run(["validate", "--config", str(f)])
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace") + "\n" + f.read_text()


def test_there_are_example_configs():
    assert EXAMPLES, "config/examples/*.yaml is empty"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_config_validates(example: Path):
    p = run(["validate", "--config", str(example)], env={"KAFKA_PASSWORD": "x"})
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")


def test_run_with_an_invalid_config_refuses_to_start(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    p = run(["run", "--config", str(f)], timeout=20)
    assert p.returncode != 0


# ---- `handoff routes init --openapi` (migration helper) -----------------------------------------
PETSTORE = REPO_ROOT / "tests" / "config" / "data" / "petstore.yaml"
EX_DATAERR = 65
EX_CANTCREAT = 73


def test_routes_init_turns_the_petstore_into_a_config_that_validates(tmp_path):
    out = tmp_path / "handoff.yaml"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKERS"}  # must validate with it unset
    p = subprocess.run([handoff_bin(), "routes", "init", "--openapi", str(PETSTORE), "--output", str(out)],
                       capture_output=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")
    text = out.read_text()
    assert text.count("\n  - name: ") == 20, text
    assert "mode: forward" in text and "# mode: commit" in text and "# mode: event" in text, text
    v = subprocess.run([handoff_bin(), "validate", "--config", str(out)], capture_output=True, timeout=30, env=env,
                       stdin=subprocess.DEVNULL)
    assert v.returncode == 0, (v.stdout + v.stderr).decode(errors="replace") + "\n" + text
    assert "20 routes" in v.stdout.decode(), v.stdout


def test_routes_init_writes_to_stdout_and_never_overwrites_without_force(tmp_path):
    p = run(["routes", "init", "--openapi", str(PETSTORE)])
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert b"name: \"getPetById\"" in p.stdout
    out = tmp_path / "existing.yaml"
    out.write_text("keep me\n")
    p = run(["routes", "init", "--openapi", str(PETSTORE), "--output", str(out)])
    assert p.returncode == EX_CANTCREAT, p
    assert out.read_text() == "keep me\n"
    p = run(["routes", "init", "--openapi", str(PETSTORE), "--output", str(out), "--force"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert "getPetById" in out.read_text()


@pytest.mark.parametrize("content,expected", [
    (None, "cannot read the file"),
    ("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {/a: {get: {}}}\n", "Swagger 2.0"),
    ("openapi: 3.0.0\ninfo: {title: t, version: '1'}\n", "no paths"),
    ("openapi: 3.0.0\npaths: {/a: [\n", "not readable as YAML or JSON"),
], ids=["missing", "swagger2", "no-paths", "syntax"])
def test_routes_init_refuses_a_bad_document_naming_the_file_and_exits_65(tmp_path, content, expected):
    spec = tmp_path / "spec.yaml"
    if content is not None:
        spec.write_text(content)
    out = tmp_path / "out.yaml"
    p = run(["routes", "init", "--openapi", str(spec), "--output", str(out)])
    err = p.stderr.decode(errors="replace")
    assert p.returncode == EX_DATAERR, err
    assert str(spec) in err and expected in err, err
    assert not out.exists()
