#!/usr/bin/env python3
"""Checks the shape of a rendered chart (helm template output) for the native-sidecar lifecycle
(tests/CATALOGUE.md, S-3, S-4): chart_test.sh native-sidecar runs it.

  check_native_sidecar.py RENDERED.yaml [--sidecar NAME]

* Handoff is an init container with restartPolicy: Always (a Kubernetes >= 1.29 native sidecar): the
  kubelet starts it before the app containers and sends it SIGTERM only after they have exited, so
  the app's produce calls keep working while it shuts down (S-4); it is not in `containers`, and no
  app container has a restartPolicy.
* Probes: startup and liveness on /healthz, readiness on /readyz (readiness goes false on SIGTERM).
* terminationGracePeriodSeconds exceeds drain.delay + drain.timeout + kafka.flush_timeout of the
  rendered handoff.yaml, so a SIGKILL does not cut the flush short (the S-3 case is the exception the
  product meters, not the plan).
* The Service targets the sidecar's port, not the app's.
* The rendered handoff.yaml is in the production profile unless the values chose otherwise.
Exits 1 with every problem found.
"""
from __future__ import annotations

import argparse
import re
import sys

import yaml


def seconds(d: str) -> float:
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", str(d))
    assert m, f"not a duration: {d!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("--sidecar", default="handoff")
    ap.add_argument("--profile", default="production")
    a = ap.parse_args()
    docs = [d for d in yaml.safe_load_all(open(a.rendered)) if d]
    problems: list[str] = []

    def need(ok: bool, what: str):
        if not ok:
            problems.append(what)

    deployments = [d for d in docs if d["kind"] == "Deployment"]
    configs = [yaml.safe_load(d["data"]["handoff.yaml"]) for d in docs
               if d["kind"] == "ConfigMap" and "handoff.yaml" in (d.get("data") or {})]
    need(len(deployments) == 1, f"expected one Deployment, got {len(deployments)}")
    need(len(configs) == 1, f"expected one ConfigMap with handoff.yaml, got {len(configs)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    pod = deployments[0]["spec"]["template"]["spec"]
    cfg = configs[0]
    inits = [c for c in pod.get("initContainers") or [] if c["name"] == a.sidecar]
    need(len(inits) == 1, f"no init container named {a.sidecar}")
    need(all(c["name"] != a.sidecar for c in pod["containers"]), f"{a.sidecar} is also a regular container")
    need(all("restartPolicy" not in c for c in pod["containers"]), "an app container has a restartPolicy")
    if inits:
        h = inits[0]
        need(h.get("restartPolicy") == "Always", f"{a.sidecar}: restartPolicy is {h.get('restartPolicy')!r}, not Always")
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            p = h.get(probe) or {}
            got = (p.get("httpGet") or {}).get("path") or " ".join((p.get("exec") or {}).get("command", []))
            need(path in str(got), f"{a.sidecar}: {probe} does not check {path} (got {got!r})")
        need(h.get("args", [])[:1] == ["run"], f"{a.sidecar}: args {h.get('args')!r} do not run handoff")
        ports = {p["name"]: p["containerPort"] for p in h.get("ports", [])}
        need(ports.get("http") == cfg["listen"]["port"], f"{a.sidecar}: port http {ports.get('http')} is not "
                                                         f"the listener's {cfg['listen']['port']}")
        services = [d for d in docs if d["kind"] == "Service" and not d["metadata"]["name"].endswith("-metrics")]
        for s in services:
            for sp in s["spec"]["ports"]:
                need(sp.get("targetPort") in ("http", ports.get("http")),
                     f"Service {s['metadata']['name']} targets {sp.get('targetPort')!r}, not the sidecar's http port")
    drain = cfg.get("drain") or {}
    need_s = seconds(drain.get("delay", "0s")) + seconds(drain.get("timeout", "20s")) + \
        seconds(cfg["kafka"].get("flush_timeout", "10s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(grace > need_s, f"terminationGracePeriodSeconds {grace} <= drain + flush ({need_s:g} s)")
    need(cfg.get("profile", "development") == a.profile, f"handoff.yaml profile is {cfg.get('profile')!r}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"native sidecar ok: {a.sidecar} is an init container with restartPolicy Always; grace {grace}s > "
          f"drain + flush {need_s:g}s; profile {cfg.get('profile')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
