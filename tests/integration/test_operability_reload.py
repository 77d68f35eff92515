"""Hot reload: SIGHUP and file changes (a Kubernetes ConfigMap's symlink swap).

* A valid change is applied for new requests without dropping a keep-alive connection: the same
  socket serves the old route before and the new route after.
* An invalid change is rejected (logged, metric result="rejected") and the old routes keep serving.
* A ConfigMap-style update (dir/..data -> ..<timestamp>, dir/config.yaml -> ..data/config.yaml,
  swapped by renaming a new ..data symlink over the old one) is picked up without any signal.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import _LIVE, Handoff, RawConn, base_config, scrape, to_yaml, unique, wait_until


@pytest.fixture(scope="module")
def topic(kafka):
    return kafka.create_topic(unique("ops-reload"), 1)


@pytest.fixture(scope="module")
def start_at(tmp_path_factory):
    """Factory: start_at(cfg, cfg_path, name) -> Handoff, for a config file the test laid out itself
    (written by the caller). Teardown as handoff_process: SIGTERM, exit code 0 required."""
    started: list[Handoff] = []
    logs = tmp_path_factory.mktemp("reload-logs")

    def start(cfg: dict, cfg_path: Path, name: str) -> Handoff:
        h = Handoff(name, cfg, cfg_path, logs / f"{name}.log", None)
        started.append(h)
        _LIVE.append(h)
        h.wait_ready()
        return h

    yield start
    problems = []
    for h in started:
        code = h.stop()
        if h in _LIVE:
            _LIVE.remove(h)
        if code != 0:
            problems.append(f"handoff {h.name}: exit code after SIGTERM = {code}\n{h.log_tail()}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def routes(topic: str, *extra: str) -> list[dict]:
    out = [{"name": "get-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"}]
    for path in extra:
        out.append({"name": path.strip("/"), "match": {"methods": ["POST"], "path": path}, "mode": "event",
                    "topic": topic, "key": "correlation"})
    return out


def ask(c: RawConn, method: str, path: str, body: bytes = b""):
    c.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    r = c.read_response()
    assert (r.header("Connection") or "").lower() != "close", f"the server closed the keep-alive connection: {r!r}"
    return r


def reloads(h: Handoff, result: str) -> float:
    return scrape(h).value("handoff_config_reloads_total", result=result)


def log_msgs(h: Handoff, msg: str) -> list[dict]:
    return [x for x in h.log_lines_json() if x.get("msg") == msg]


def write_atomically(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_sighup_applies_a_valid_change_without_dropping_the_connection_and_rejects_an_invalid_one(
        start_at, tmp_path, brokers, upstream, topic):
    # The config path is a symlink into another directory: writes to the real file make no inotify
    # event in the watched directory, so only SIGHUP can reload here.
    real_dir, link_dir = tmp_path / "real", tmp_path / "link"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "handoff.yaml"
    cfg = base_config(brokers, upstream.port, routes(topic, "/ev1"))
    real.write_text(to_yaml(cfg) + "\n")
    (link_dir / "handoff.yaml").symlink_to(real)
    h = start_at(cfg, link_dir / "handoff.yaml", "ops-reload-sighup")

    c = RawConn(h.port)
    try:
        assert ask(c, "GET", "/orders/1").status == 200
        assert ask(c, "POST", "/ev1", b"a").status == 202
        assert ask(c, "POST", "/ev2", b"a").status == 200  # unmatched: forwarded to the upstream

        # Valid change: a new event route. Nothing reloads without the signal.
        write_atomically(real, to_yaml(base_config(brokers, upstream.port, routes(topic, "/ev1", "/ev2"),
                                                   listen=cfg["listen"], admin=cfg["admin"])) + "\n")
        assert ask(c, "POST", "/ev2", b"a").status == 200
        h.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: ask(c, "POST", "/ev2", b"b").status == 202, 5, 0.05, "the new route on the same socket")
        assert ask(c, "GET", "/orders/2").status == 200 and ask(c, "POST", "/ev1", b"c").status == 202
        assert reloads(h, "ok") == 1 and reloads(h, "rejected") == 0
        ok = log_msgs(h, "config reloaded")
        assert len(ok) == 1 and ok[0]["trigger"] == "SIGHUP" and ok[0]["routes"] == 3, ok
        assert [r["name"] for r in h.admin_get("/config").json()["routes"]] == ["get-order", "ev1", "ev2"]
        assert not log_msgs(h, "config changes that need a restart to take effect were not applied")

        # Invalid change: rejected with its errors logged; the running routes stay.
        bad = to_yaml(base_config(brokers, upstream.port, routes(topic, "/ev1"), listen=cfg["listen"],
                                  admin=cfg["admin"])) + "\nrouts: []\ndrain: {timeout: 5}\n"
        write_atomically(real, bad)
        h.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: reloads(h, "rejected") == 1, 5, 0.05, "the rejected reload")
        rejected = log_msgs(h, "config reload rejected; keeping the running config")
        assert len(rejected) == 1 and rejected[0]["level"] == "error", rejected
        errors = "\n".join(rejected[0]["errors"])
        assert "unknown key 'routs'" in errors and "duration needs a unit" in errors, errors
        assert ask(c, "POST", "/ev2", b"d").status == 202
        assert ask(c, "GET", "/orders/3").status == 200
        assert [r["name"] for r in h.admin_get("/config").json()["routes"]] == ["get-order", "ev1", "ev2"]
        assert reloads(h, "ok") == 1
        assert h.admin_get("/readyz").status == 200
    finally:
        c.close()


class ConfigMapDir:
    """The layout kubelet gives a mounted ConfigMap: dir/..<ts>/handoff.yaml, dir/..data -> ..<ts>,
    dir/handoff.yaml -> ..data/handoff.yaml. An update writes a new ..<ts> dir, points a temporary
    symlink at it and renames it over ..data (atomic), then removes the old dir."""

    def __init__(self, root: Path):
        self.root = root
        self.n = 0
        self.current: Path | None = None
        root.mkdir()

    def _version_dir(self, text: str) -> Path:
        self.n += 1
        d = self.root / f"..2026_01_01_00_00_{self.n:02d}.{unique('v')}"
        d.mkdir()
        (d / "handoff.yaml").write_text(text)
        return d

    def create(self, text: str) -> Path:
        self.current = self._version_dir(text)
        (self.root / "..data").symlink_to(self.current.name)
        (self.root / "handoff.yaml").symlink_to("..data/handoff.yaml")
        return self.root / "handoff.yaml"

    def update(self, text: str):
        old = self.current
        self.current = self._version_dir(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(self.current.name)
        os.replace(tmp, self.root / "..data")
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def test_a_configmap_symlink_swap_reloads_without_a_signal(start_at, tmp_path, brokers, upstream, topic):
    cm = ConfigMapDir(tmp_path / "configmap")
    cfg = base_config(brokers, upstream.port, routes(topic, "/cm1"))
    path = cm.create(to_yaml(cfg) + "\n")
    h = start_at(cfg, path, "ops-reload-configmap")

    def variant(*extra: str, tail: str = "") -> str:
        return to_yaml(base_config(brokers, upstream.port, routes(topic, *extra), listen=cfg["listen"],
                                   admin=cfg["admin"])) + "\n" + tail

    c = RawConn(h.port)
    try:
        assert ask(c, "POST", "/cm1", b"a").status == 202
        assert ask(c, "POST", "/cm2", b"a").status == 200  # unmatched: forwarded

        cm.update(variant("/cm1", "/cm2"))
        wait_until(lambda: ask(c, "POST", "/cm2", b"b").status == 202, 5, 0.05, "the swapped-in route")
        ok = log_msgs(h, "config reloaded")
        assert ok and ok[-1]["trigger"] == "file", ok
        wait_until(lambda: reloads(h, "ok") >= 1, 2, 0.05, "reload metric ok")

        # An invalid version is rejected; the old routes keep serving on the same connection.
        before = reloads(h, "ok")
        cm.update(variant("/cm1", "/cm2", tail="listen: {port: 0}\n"))
        wait_until(lambda: reloads(h, "rejected") >= 1, 5, 0.05, "the rejected reload")
        assert any("listen" in m for x in log_msgs(h, "config reload rejected; keeping the running config")
                   for m in x["errors"])
        assert ask(c, "POST", "/cm2", b"c").status == 202 and ask(c, "POST", "/cm1", b"c").status == 202
        assert reloads(h, "ok") == before

        # The watch survives swaps: a third version (route cm1 removed) is applied too.
        cm.update(variant("/cm2", "/cm3"))
        wait_until(lambda: ask(c, "POST", "/cm3", b"d").status == 202, 5, 0.05, "the third version")
        assert ask(c, "POST", "/cm1", b"d").status == 200  # gone: forwarded again
        assert [r["name"] for r in h.admin_get("/config").json()["routes"]] == ["get-order", "cm2", "cm3"]
    finally:
        c.close()


def test_changes_that_need_a_restart_are_reported_and_not_applied(start_at, tmp_path, brokers, upstream, topic):
    d = tmp_path / "cfg"
    d.mkdir()
    path = d / "handoff.yaml"
    cfg = base_config(brokers, upstream.port, routes(topic))
    path.write_text(to_yaml(cfg) + "\n")
    h = start_at(cfg, path, "ops-reload-restart")
    changed = base_config(brokers, upstream.port, routes(topic, "/later"),
                          listen={**cfg["listen"], "max_connections": 77},
                          admin=cfg["admin"], upstream={"timeout": "3s"})
    write_atomically(path, to_yaml(changed) + "\n")
    warn = wait_until(lambda: log_msgs(h, "config changes that need a restart to take effect were not applied"),
                      5, 0.05, "the needs-a-restart warning")
    assert set(warn[-1]["sections"]) == {"listen", "upstream"}, warn
    # Routes are applied all the same; the listener keeps its settings.
    wait_until(lambda: h.request("POST", "/later", b"x").status == 202, 5, 0.05, "the new route")
    assert h.request("GET", "/orders/1").status == 200
    assert reloads(h, "ok") == 1


def test_a_drain_change_on_reload_is_applied_or_reported_as_needing_a_restart(start_at, tmp_path, brokers, upstream,
                                                                              topic):
    d = tmp_path / "cfg"
    d.mkdir()
    path = d / "handoff.yaml"
    cfg = base_config(brokers, upstream.port, routes(topic), drain={"delay": "0s", "timeout": "5s"})
    path.write_text(to_yaml(cfg) + "\n")
    h = start_at(cfg, path, "ops-reload-drain")
    write_atomically(path, to_yaml({**cfg, "drain": {"delay": "2s", "timeout": "5s"}}) + "\n")
    wait_until(lambda: reloads(h, "ok") == 1, 5, 0.05, "the reload")
    warned = any("drain" in x.get("sections", [])
                 for x in log_msgs(h, "config changes that need a restart to take effect were not applied"))
    t0 = time.monotonic()
    h.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            h.request("GET", "/x", timeout=1)
            return False
        except (ConnectionRefusedError, ConnectionResetError):
            return True

    wait_until(refused, 10, 0.02, "the listener to close")
    applied = time.monotonic() - t0 >= 1.5
    assert applied or warned, ("drain.delay changed 0s -> 2s by a reload: the listener closed after "
                               f"{time.monotonic() - t0:.2f}s and no needs-a-restart warning named 'drain'")


def test_config_endpoint_shows_the_values_in_effect_after_a_reload_that_needs_a_restart(start_at, tmp_path, brokers,
                                                                                        upstream, topic):
    d = tmp_path / "cfg"
    d.mkdir()
    path = d / "handoff.yaml"
    cfg = base_config(brokers, upstream.port, routes(topic))
    path.write_text(to_yaml(cfg) + "\n")
    h = start_at(cfg, path, "ops-reload-config-view")
    before = h.admin_get("/config").json()
    write_atomically(path, to_yaml(base_config(brokers, upstream.port, routes(topic, "/v2"),
                                               listen={**cfg["listen"], "max_connections": 77},
                                               admin=cfg["admin"])) + "\n")
    wait_until(lambda: reloads(h, "ok") == 1, 5, 0.05, "the reload")
    now = h.admin_get("/config").json()
    assert [r["name"] for r in now["routes"]] == ["get-order", "v2"]  # applied
    assert now["listen"] == before["listen"], "listen was not applied (needs a restart) but /config shows it"
