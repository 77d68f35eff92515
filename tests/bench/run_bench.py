#!/usr/bin/env python3
"""Drives the benchmark suite (tests/bench/README.md); scripts/bench.sh is the entry point (it builds,
starts the broker and calls this with every path it needs).

For every system under test (SUT): start it pinned to --sut-cpus, read its idle RSS, warm it up,
measure its peak with wrk (CPU µs per request from /proc/<pid>/stat over that run), then offer
fixed rates with handoff_loadgen (open loop) and record latency percentiles; RSS under load is the
process tree's VmHWM at the end. Handoff's `event` route is also measured over HTTP/2 (h2c) with
h2load in place of wrk (its peak only: handoff_loadgen speaks HTTP/1.1). The load generator, wrk,
h2load, the broker and the forward upstream all run on --load-cpus. Results: results.json,
table.md and latency.png in --out.

--smoke: tiny rates and one-second runs; checks only that every stage produced numbers (exit 1
otherwise), never anything about speed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BODY_SIZE = 100
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port below the ephemeral range (32768-60999), where no outgoing socket can
    take it between this choice and the bind of the process it is handed to."""
    rng = random.Random()
    for _ in range(2000):
        p = rng.randrange(20000, 32768)
        if p in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _HANDED_OUT.add(p)
        return p
    raise RuntimeError("no free port below the ephemeral range")


def body() -> str:
    b = '{"bench":"'
    b += "x" * (BODY_SIZE - len(b) - 2)
    return b + '"}'


@dataclass(frozen=True)
class Request:
    """What one benchmark request is: wrk and handoff_loadgen send `body` to `path` with this
    Content-Type. Handoff, the limits and Camel take the bare 100-byte JSON body; a peer with its
    own API (Dapr's publish, the Strimzi bridge's records envelope) gets its own."""
    path: str
    body: str
    content_type: str = "application/json"


# --- /proc ------------------------------------------------------------------------------------
def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx master + workers, a shell's child, ...)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def status_kb(pid: int, key: str) -> int:
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


# --- processes --------------------------------------------------------------------------------
class Proc:
    """A started process; stop() sends SIGTERM, waits (bounded), then SIGKILL."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict | None = None):
        self.name = name
        self.logf = open(logdir / f"{name}.log", "w")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.logf.close()


def wait_port(port: int, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up (see its log)")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name}: port {port} not open after {timeout}s")


def wait_post_ok(port: int, path: str, data: str, proc: Proc, timeout: float = 90,
                 content_type: str = "application/json") -> None:
    """Until a POST is answered 2xx: a JVM opens its port before its routes are in place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up (see its log)")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data.encode(), method="POST",
                                         headers={"Content-Type": content_type})
            with urllib.request.urlopen(req, timeout=5) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{proc.name}: POST {path} not answered 2xx after {timeout}s")


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name}: {url} not 200 after {timeout}s")


# --- the bench --------------------------------------------------------------------------------
@dataclass
class Plan:
    smoke: bool
    rates: list[int]
    rate_fraction_of_peak: float = 0.8
    duration: float = 5.0
    warmup: float = 1.0
    peak_duration: float = 5.0
    peak_warmup: float = 2.0
    jvm_warmup: float = 10.0
    wrk_connections: int = 128
    # The peak run is repeated and its median reported, with the spread (one run on a shared
    # machine can be off by 20 %).
    peak_repeats: int = 3
    # The two sides of a target ratio (`forward` and nginx, `event` and the Beast limit) are
    # started together and their peak runs alternate, so that a drift of the machine's speed
    # lands on both sides; they get more repeats, and the ratio is the median of the pairs'.
    paired_repeats: int = 5
    # A freshly started broker (a JVM) answers produce requests slowly for its first minute, and
    # the first system measured paid for it: Handoff's event route measured 72 instead of 33 CPU
    # µs per request (librdkafka's broker thread 28 instead of 6). The broker is warmed first.
    broker_warmup: float = 40.0


GENERATOR_SATURATED = 0.90  # of wrk's one core


@dataclass
class Result:
    name: str
    group: str                      # what it is compared with
    note: str = ""
    peak_rps: float = 0.0
    peak_errors: int = 0
    cpu_us_per_req: float = 0.0
    rss_idle_kb: int = 0
    rss_load_kb: int = 0
    runs: list[dict] = field(default_factory=list)   # one per offered rate (loadgen JSON + cpu)
    skipped: str = ""
    generator_cpu: float = 0.0      # wrk's CPU over the peak run, in cores (wrk -t1: at most 1)
    generator: str = "wrk"          # the peak's load generator: wrk (HTTP/1.1) or h2load (HTTP/2, h2c)
    plain_wrk_rps: float = 0.0      # the limit only: a plain `wrk -t1 -c32` GET, the cross-check
    peak_rps_runs: list[float] = field(default_factory=list)      # every repeat of the peak run
    cpu_us_runs: list[float] = field(default_factory=list)
    alternated_with: list[str] = field(default_factory=list)     # measured in turns with these

    @property
    def generator_bound(self) -> bool:
        """wrk used >= 90 % of its core: the peak is the generator's, not the server's."""
        return self.generator_cpu >= GENERATOR_SATURATED


@dataclass
class Live:
    """A started system waiting to be measured."""
    res: Result
    proc: Proc
    port: int
    target: str | Request
    warmup: float | None = None     # seconds of wrk before the peak runs (None: the plan's)
    after: object = None            # called once its measurement is done (the limit's plain wrk)
    raw: list[str] = field(default_factory=list)
    generator: str = "wrk"          # "h2load": HTTP/2 peak runs, and no fixed rates (loadgen is HTTP/1.1)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs = self.out / "logs"
        self.logs.mkdir(exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
        self.plan = (Plan(smoke=True, rates=[100, 300], duration=0.5, warmup=0.2, peak_duration=1.0,
                          peak_warmup=0.0, jvm_warmup=1.0, wrk_connections=16, broker_warmup=0.0, peak_repeats=1,
                          paired_repeats=1)
                     if args.smoke else Plan(smoke=False, rates=[1000, 5000, 20000], peak_repeats=args.repeat,
                               paired_repeats=max(args.repeat, 5)))
        self.body = body()
        self.results: list[Result] = []
        self.procs: list[Proc] = []
        self._lua: dict[tuple[str, str], Path] = {}
        self._bodies: dict[str, Path] = {}  # h2load's -d files, one per distinct body

    def request(self, target: str | Request) -> Request:
        """A bare path means the default request: POST of the 100-byte JSON body."""
        return target if isinstance(target, Request) else Request(target, self.body)

    def lua(self, req: Request) -> Path:
        """wrk's script posting this request's body and Content-Type (one file per distinct pair)."""
        key = (req.body, req.content_type)
        if key not in self._lua:
            for level in range(10):  # a Lua long string whose closing bracket is not in the body
                close = "]" + "=" * level + "]"
                if close not in req.body:
                    break
            path = self.tmp / f"post-{len(self._lua)}.lua"
            path.write_text(f'wrk.method = "POST"\nwrk.body = [{"=" * level}[{req.body}]{"=" * level}]\n'
                            f'wrk.headers["Content-Type"] = "{req.content_type}"\n')
            self._lua[key] = path
        return self._lua[key]

    def pin(self, cpus: str, argv: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *argv]

    def start(self, name: str, argv: list[str], cpus: str, env: dict | None = None) -> Proc:
        p = Proc(name, self.pin(cpus, argv), self.logs, env)
        self.procs.append(p)
        return p

    def stop(self, p: Proc) -> None:
        p.stop()
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- load ---------------------------------------------------------------------------------
    def wrk(self, port: int, target: str | Request, seconds: float, connections: int) -> dict:
        req = self.request(target)
        argv = self.pin(self.a.load_cpus, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                                           "-s", str(self.lua(req)), f"http://127.0.0.1:{port}{req.path}"])
        # wrk's own CPU (taskset execs it: the child is wrk), to show the generator had headroom.
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
        r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        gen_cpu = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / max(t1 - t0, 1e-9)

        def num(pattern: str) -> float:
            m = re.search(pattern, out)
            return float(m.group(1)) if m else 0.0
        errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        return {"rps": num(r"Requests/sec:\s+([\d.]+)"), "requests": int(num(r"(\d+) requests in")),
                "non2xx": int(num(r"Non-2xx or 3xx responses: (\d+)")), "errors": errors, "raw": out,
                "generator_cpu": gen_cpu}

    def h2load(self, port: int, target: str | Request, seconds: float, connections: int = 32,
               streams: int = 10) -> dict:
        """h2load over HTTP/2 with prior knowledge (h2c), pinned like wrk: `connections` connections
        of `streams` concurrent streams each, POSTing the request's body; the same keys as wrk()."""
        req = self.request(target)
        if req.body not in self._bodies:
            self._bodies[req.body] = self.tmp / f"h2load-body-{len(self._bodies)}"
            self._bodies[req.body].write_text(req.body)
        argv = self.pin(self.a.load_cpus, ["h2load", "-t1", f"-c{connections}", f"-m{streams}",
                                           f"-D{max(1, round(seconds))}", "-d", str(self._bodies[req.body]),
                                           "-H", f"content-type: {req.content_type}",
                                           f"http://127.0.0.1:{port}{req.path}"])
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
        r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        gen_cpu = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / max(t1 - t0, 1e-9)
        req_m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                          r"(\d+) errored, (\d+) timeout", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        done = int(req_m.group(3)) if req_m else 0
        return {"rps": float(rps.group(1)) if rps else 0.0, "requests": done,
                "non2xx": sum(int(x) for x in codes.groups()[1:]) if codes else 0,
                "errors": int(req_m.group(6)) + int(req_m.group(7)) if req_m else 0, "raw": out,
                "generator_cpu": gen_cpu}

    def peak_load(self, lv: "Live", seconds: float) -> dict:
        """One closed-loop run of the system's generator (wrk, or h2load for an HTTP/2 stage)."""
        if lv.generator == "h2load":
            return self.h2load(lv.port, lv.target, seconds)
        return self.wrk(lv.port, lv.target, seconds, self.plan.wrk_connections)

    def plain_wrk(self, port: int, seconds: float) -> float:
        """`wrk -t1 -c32` GET with no script, pinned like the runner's wrk: what a skeptic runs by hand."""
        argv = self.pin(self.a.load_cpus, ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s",
                                           f"http://127.0.0.1:{port}/event"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        return float(m.group(1)) if m else 0.0

    def loadgen(self, port: int, target: str | Request, rate: float) -> dict:
        req = self.request(target)
        conns = int(min(512, max(16, rate / 100)))
        argv = self.pin(self.a.load_cpus, [str(Path(self.a.tools) / "handoff_loadgen"), "--port", str(port),
                                           "--path", req.path, "--body", req.body,
                                           "--header", f"Content-Type: {req.content_type}", "--rate", str(rate),
                                           "--duration", str(self.plan.duration), "--warmup", str(self.plan.warmup),
                                           "--connections", str(conns), "--timeout", "10"])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=self.plan.duration + self.plan.warmup + 60)
        if r.returncode != 0:
            raise RuntimeError(f"loadgen failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def fixed_rates(self, peak: float) -> list[int]:
        rates = [r for r in self.plan.rates if r <= 0.95 * peak or self.plan.smoke]
        if not self.plan.smoke and peak > 0:
            rates.append(int(peak * self.plan.rate_fraction_of_peak))
        return sorted(set(rates))

    def measure_http(self, res: Result, proc: Proc, port: int, target: str | Request,
                     warmup: float | None = None) -> None:
        self.measure([Live(res, proc, port, target, warmup)])

    def measure(self, lives: list[Live]) -> None:
        """Idle RSS, warm-up, the peak runs, then the fixed rates, of one system or of several
        started together. Several take their peak runs in turns (the order rotated each round),
        so that the machine's drift during the stage is shared; their fixed rates follow."""
        time.sleep(0.5 if self.plan.smoke else 1.0)
        for lv in lives:
            lv.res.rss_idle_kb = status_kb(lv.proc.pid, "VmRSS")
            lv.res.alternated_with = [o.res.name for o in lives if o is not lv]
        for lv in lives:
            warm = lv.warmup if lv.warmup is not None else self.plan.peak_warmup
            if warm > 0:
                self.peak_load(lv, warm)
        rounds = self.plan.peak_repeats if len(lives) == 1 else self.plan.paired_repeats
        for i in range(max(1, rounds)):
            for lv in lives[i % len(lives):] + lives[:i % len(lives)]:
                self.peak_once(lv)
        for lv in lives:
            self.finish(lv)

    def peak_once(self, lv: Live) -> None:
        res = lv.res
        c0 = cpu_seconds(lv.proc.pid)
        w = self.peak_load(lv, self.plan.peak_duration)
        c1 = cpu_seconds(lv.proc.pid)
        res.peak_rps_runs.append(w["rps"])
        res.cpu_us_runs.append((c1 - c0) * 1e6 / w["requests"] if w["requests"] else 0.0)
        res.generator_cpu = max(res.generator_cpu, w["generator_cpu"])
        res.peak_errors += w["errors"] + w["non2xx"]
        lv.raw.append(w["raw"])

    def finish(self, lv: Live) -> None:
        res, proc, port, target = lv.res, lv.proc, lv.port, lv.target
        res.peak_rps = statistics.median(res.peak_rps_runs)
        res.cpu_us_per_req = statistics.median(res.cpu_us_runs)
        if res.generator_bound:
            log(f"{res.name}: the load generator used {res.generator_cpu * 100:.0f} % of its core: the peak req/s is "
                "the generator's limit and is not reported; CPU µs per request still is")
        (self.logs / f"{res.name}.{lv.generator}.txt").write_text("\n".join(lv.raw))
        # handoff_loadgen speaks HTTP/1.1 only: an HTTP/2 stage has its peak and no fixed rates.
        for rate in (self.fixed_rates(res.peak_rps) if lv.generator == "wrk" else []):
            time.sleep(0.3)
            c0 = cpu_seconds(proc.pid)
            run = self.loadgen(port, target, rate)
            c1 = cpu_seconds(proc.pid)
            total = run["completed"] * (1 + self.plan.warmup / self.plan.duration)
            run["cpu_us_per_req"] = (c1 - c0) * 1e6 / total if total else 0.0
            res.runs.append(run)
            log(f"  {res.name} @ {rate}/s: achieved {run['achieved_rate']:.0f}/s p50 {run['latency_us']['p50']:.0f} µs "
                f"p99 {run['latency_us']['p99']:.0f} µs errors {run['errors']} status {run['status']}")
        res.rss_load_kb = status_kb(proc.pid, "VmHWM")
        log(f"{res.name}: peak {res.peak_rps:.0f} req/s, {res.cpu_us_per_req:.1f} CPU µs/req, "
            f"RSS idle {res.rss_idle_kb / 1024:.1f} MB, under load {res.rss_load_kb / 1024:.1f} MB")
        if lv.after:
            lv.after()

    def stage(self, *starters) -> None:
        """Starts the systems (each starter returns a Live), measures them together, stops them."""
        lives: list[Live] = []
        try:
            for start in starters:
                lives.append(start())
            self.measure(lives)
        finally:
            for lv in lives:
                self.stop(lv.proc)
        self.results.extend(lv.res for lv in lives)

    # --- systems ------------------------------------------------------------------------------
    def nginx_conf(self, name: str, port: int, server_block: str, upstream_block: str = "") -> Path:
        d = self.tmp / name
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  {upstream_block}
  server {{
    listen 127.0.0.1:{port} reuseport;
    {server_block}
  }}
}}
""")
        return conf

    def start_nginx(self, name: str, conf: Path, cpus: str, port: int) -> Proc:
        d = conf.parent
        p = self.start(name, [self.a.nginx, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")], cpus)
        wait_port(port, p)
        return p

    def start_upstream(self) -> tuple[Proc, int]:
        port = free_port()
        conf = self.nginx_conf("upstream", port, 'location / { return 200 "ok\\n"; }')
        return self.start_nginx("upstream-nginx", conf, self.a.load_cpus, port), port

    def handoff_config(self, threads: int, port: int, admin: int, upstream: int) -> Path:
        cfg = self.tmp / f"handoff-t{threads}-{port}.yaml"
        cfg.write_text(f"""
# http2: h2c beside HTTP/1.1 (the ...-h2 stage); an HTTP/1.1 connection pays one look at its
# first bytes for the preface.
listen: {{address: 127.0.0.1, port: {port}, threads: {threads}, http2: {{enabled: true}}}}
admin: {{address: 127.0.0.1, port: {admin}}}
upstream: {{host: 127.0.0.1, port: {upstream}, max_connections: 512, max_idle: 512}}
kafka:
  brokers: "{self.a.brokers}"
  properties: {{linger.ms: "{self.a.linger_ms}"}}
log: {{level: info, requests: true}}  # the defaults: one access-log line per request
defaults: {{mode: forward, timeout: 10s}}
routes:
  - {{name: event, match: {{methods: [POST], path: /event}}, mode: event, topic: bench.event}}
  - {{name: commit, match: {{methods: [POST], path: /commit}}, mode: commit, topic: bench.commit}}
""")
        return cfg

    def start_beast(self, threads: int) -> Live:
        res = Result(f"beast-202-t{threads}", "limit", "minimal Beast server, 202 and no work")
        port = free_port()
        p = self.start(res.name, [str(Path(self.a.tools) / "handoff_bench_http202"), "--port", str(port),
                                  "--threads", str(threads)], self.a.sut_cpus)
        wait_port(port, p)

        def cross_check() -> None:
            res.plain_wrk_rps = self.plain_wrk(port, self.plan.peak_duration)
            log(f"{res.name}: plain wrk -t1 -c32 GET {res.plain_wrk_rps:.0f} req/s; the runner's peak "
                f"{res.peak_rps:.0f} ({res.peak_rps / res.plain_wrk_rps:.2f}x)" if res.plain_wrk_rps else
                f"{res.name}: plain wrk produced no number")
        return Live(res, p, port, "/event", after=cross_check)

    def start_handoff(self, route: str, threads: int, upstream: int, io: str = "epoll",
                      generator: str = "wrk") -> Live:
        """`io` "io_uring": the binary built with -DHANDOFF_IO_URING=ON (--handoff-io-uring), same
        config and load, its result named ...-io_uring and compared with the epoll stage.
        `generator` "h2load": the same over HTTP/2 (h2c, prior knowledge), named ...-h2."""
        suffix = ("" if io == "epoll" else f"-{io}") + ("-h2" if generator == "h2load" else "")
        res = Result(f"handoff-{route}-t{threads}{suffix}", route,
                     f"Handoff `{route}` route, listen.threads {threads}, asio {io}"
                     + (", HTTP/2 (h2c) under h2load -c32 -m10" if generator == "h2load" else ""),
                     generator=generator)
        binary = self.a.handoff if io == "epoll" else self.a.handoff_io_uring
        port, admin = free_port(), free_port()
        cfg = self.handoff_config(threads, port, admin, upstream)
        p = self.start(res.name, [binary, "run", "--config", str(cfg)], self.a.sut_cpus)
        try:
            wait_http(f"http://127.0.0.1:{admin}/readyz", p)
        except Exception:
            self.stop(p)
            raise
        return Live(res, p, port, f"/{route}", generator=generator)

    def start_nginx_forward(self, upstream: int, access_log: bool = False) -> Live:
        """nginx proxy_pass; `access_log`: with a buffered access log line per request (64 KiB
        buffer), like Handoff's request log (batched by a writer thread), for a like-for-like row."""
        name = "nginx-proxy_pass-log" if access_log else "nginx-proxy_pass"
        res = Result(name, "forward", "nginx proxy_pass, 1 worker, upstream keepalive pool"
                     + (", access log (buffer=64k)" if access_log else ""))
        port = free_port()
        d = self.tmp / name
        log_line = f"access_log {d}/access.log combined buffer=64k flush=1s;" if access_log else ""
        conf = self.nginx_conf(
            name, port,
            f"{log_line} location / {{ proxy_pass http://app; proxy_http_version 1.1; "
            "proxy_set_header Connection \"\"; }",
            f"upstream app {{ server 127.0.0.1:{upstream}; keepalive 512; }}")
        p = self.start_nginx(res.name, conf, self.a.sut_cpus, port)
        return Live(res, p, port, "/forward")

    def produce(self, rate: float, duration: float, warmup: float) -> dict:
        argv = self.pin(self.a.sut_cpus, [str(Path(self.a.tools) / "handoff_bench_produce"), "--brokers",
                                          self.a.brokers, "--topic", "bench.direct", "--rate", str(rate),
                                          "--duration", str(duration), "--warmup", str(warmup),
                                          "--size", str(BODY_SIZE), "--linger-ms", str(self.a.linger_ms)])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 120)
        if r.returncode != 0:
            raise RuntimeError(f"handoff_bench_produce failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def bench_direct_produce(self) -> None:
        res = Result("librdkafka-direct", "commit", "librdkafka produce, acks=all, idempotent, delivery report")
        peak = self.produce(0, self.plan.peak_duration, self.plan.peak_warmup)
        res.peak_rps = peak["achieved_rate"]
        res.peak_errors = peak["errors"]
        res.cpu_us_per_req = peak["cpu_us_per_req"]
        res.rss_idle_kb = peak["rss_idle_kb"]
        res.rss_load_kb = peak["rss_load_kb"]
        for rate in self.fixed_rates(res.peak_rps):
            run = self.produce(rate, self.plan.duration, self.plan.warmup)
            res.runs.append(run)
            res.rss_load_kb = max(res.rss_load_kb, run["rss_load_kb"])
            log(f"  {res.name} @ {rate}/s: achieved {run['achieved_rate']:.0f}/s p50 {run['latency_us']['p50']:.0f} µs "
                f"p99 {run['latency_us']['p99']:.0f} µs failed {run['errors']}")
        log(f"{res.name}: peak {res.peak_rps:.0f} msg/s, {res.cpu_us_per_req:.1f} CPU µs/msg")
        self.results.append(res)

    def bench_peer(self) -> None:
        """The HTTP→Kafka peer (see tests/bench/README.md for why it is not the Strimzi bridge)."""
        name = "camel-http-kafka"
        res = Result(name, "peer", "Apache Camel (Vert.x HTTP → Kafka producer, acks=all, idempotent), JVM")
        libs = Path(self.a.peer_libs) if self.a.peer_libs else None
        if not libs or not (libs / ".complete").exists():
            res.skipped = f"peer jars not in {libs} (scripts/setup.sh fetches them)"
            log(f"{name}: skipped: {res.skipped}")
            self.results.append(res)
            return
        port = free_port()
        routes = self.tmp / "peer-routes.yaml"
        routes.write_text(Path(self.a.peer_template).read_text()
                          .replace("@PORT@", str(port)).replace("@BROKERS@", self.a.brokers)
                          .replace("@LINGER@", str(self.a.linger_ms)))
        props = self.tmp / "peer.properties"
        props.write_text(f"camel.main.routesIncludePattern=file:{routes}\ncamel.main.shutdownTimeout=5\n")
        java = shutil.which("java") or "java"
        p = self.start(name, [java, "-Xms64m", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                              "-cp", f"{libs}/*", "org.apache.camel.main.Main", "-pl", f"file:{props}"],
                       self.a.sut_cpus)
        try:
            wait_post_ok(port, "/peer", self.body, p)
            self.measure_http(res, p, port, "/peer", warmup=self.plan.jvm_warmup)
        finally:
            self.stop(p)
        self.results.append(res)

    def bench_dapr(self) -> None:
        """The Dapr sidecar (daprd, built by tests/bench/fetch_dapr.sh) with its Kafka pub/sub
        component: POST /v1.0/publish/<component>/<topic> is answered 204 only after sarama's
        SyncProducer got the broker's acknowledgement (RequiredAcks = WaitForAll, hard-coded for the
        component's producer: it has no metadata field for acks)."""
        name = "dapr-http-kafka"
        res = Result(name, "peer", "Dapr sidecar daprd, Kafka pub/sub (sarama sync producer, acks=all), Go")
        daprd = Path(self.a.dapr_bin) if self.a.dapr_bin else None
        if not daprd or not os.access(daprd, os.X_OK):
            res.skipped = (f"no daprd at {daprd}" if daprd else "no --dapr-bin") + \
                " (tests/bench/fetch_dapr.sh builds it; scripts/bench.sh calls it)"
            log(f"{name}: skipped: {res.skipped}")
            self.results.append(res)
            return
        d = self.tmp / "dapr"
        (d / "components").mkdir(parents=True, exist_ok=True)
        (d / "components" / "kafka.yaml").write_text(f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: bench-kafka
spec:
  type: pubsub.kafka
  version: v1
  metadata:
    - {{name: brokers, value: "{self.a.brokers}"}}
    - {{name: authType, value: "none"}}
    - {{name: consumerGroup, value: "bench-dapr"}}
    - {{name: clientId, value: "bench-dapr"}}
    - {{name: disableTls, value: "true"}}
""")
        # Standalone mode would announce the sidecar with mDNS (multicast on the machine's network
        # interfaces); the kubernetes resolver does nothing until a service invocation, never made here.
        (d / "config.yaml").write_text("""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: bench
spec:
  nameResolution:
    component: kubernetes
  tracing:
    samplingRate: "0"
""")
        http, grpc, internal, metrics = free_port(), free_port(), free_port(), free_port()
        argv = [str(daprd), "--mode", "standalone", "--app-id", "bench", "--log-level", "warn",
                "--dapr-listen-addresses", "127.0.0.1", "--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc),
                "--dapr-internal-grpc-port", str(internal), "--dapr-internal-grpc-listen-address", "127.0.0.1",
                "--metrics-port", str(metrics), "--metrics-listen-address", "127.0.0.1",
                "--resources-path", str(d / "components"), "--config", str(d / "config.yaml")]
        # No --placement-host-address / --scheduler-host-address: without them daprd runs with no
        # actors and no scheduler, and waits for neither.
        p = self.start(name, argv, self.a.sut_cpus)  # Go sizes GOMAXPROCS from the CPU affinity
        req = Request("/v1.0/publish/bench-kafka/bench.dapr", self.body)
        try:
            wait_post_ok(http, req.path, req.body, p, content_type=req.content_type)
            self.measure_http(res, p, http, req)
        finally:
            self.stop(p)
        self.results.append(res)

    def bench_strimzi(self) -> None:
        """The Strimzi Kafka Bridge, when STRIMZI_BRIDGE_HOME (--strimzi-home) names a built one (the
        recipe: tests/bench/README.md). POST /topics/<t> with a records envelope is answered 200
        after the producer's send completed; acks=all and idempotence set here (the shipped
        config has acks=1)."""
        name = "strimzi-bridge"
        res = Result(name, "peer", "Strimzi Kafka Bridge (Vert.x HTTP → Kafka producer, acks=all, idempotent), JVM")
        home = Path(self.a.strimzi_home) if self.a.strimzi_home else None
        if not home or not list((home / "libs").glob("io.strimzi.kafka-bridge-*.jar")):
            res.skipped = ("STRIMZI_BRIDGE_HOME not set (the bridge is not in the registries; build recipe in "
                           "tests/bench/README.md)" if not home else f"no built bridge in {home}/libs")
            log(f"{name}: skipped: {res.skipped}")
            self.results.append(res)
            return
        d = self.tmp / "strimzi"
        d.mkdir(exist_ok=True)
        port, mgmt = free_port(), free_port()
        cfg = d / "application.properties"
        cfg.write_text(f"""bridge.id=bench
kafka.bootstrap.servers={self.a.brokers}
kafka.producer.acks=all
kafka.producer.enable.idempotence=true
kafka.producer.linger.ms={self.a.linger_ms}
http.host=127.0.0.1
http.port={port}
http.management.port={mgmt}
http.cors.enabled=false
http.consumer.enabled=false
http.producer.enabled=true
""")
        log4j = d / "log4j2.properties"
        log4j.write_text("name = BridgeConfig\nappender.console.type = Console\nappender.console.name = STDOUT\n"
                         "appender.console.layout.type = PatternLayout\n"
                         "appender.console.layout.pattern = %d %-5p [%t] %c{1}:%L - %m%n\n"
                         "rootLogger.level = WARN\nrootLogger.appenderRefs = console\n"
                         "rootLogger.appenderRef.console.ref = STDOUT\n")
        java = shutil.which("java") or "java"
        p = self.start(name, [java, "-Xms64m", "-Xmx512m", f"-Dlog4j2.configurationFile=file:{log4j}",
                              f"-Dvertx.cacheDirBase={d}/vertx-cache", "-cp", f"{home}/libs/*",
                              "io.strimzi.kafka.bridge.Application", f"--config-file={cfg}"],
                       self.a.sut_cpus)
        req = Request("/topics/bench.strimzi", '{"records":[{"value":%s}]}' % self.body,
                      "application/vnd.kafka.json.v2+json")
        try:
            wait_post_ok(port, req.path, req.body, p, content_type=req.content_type)
            self.measure_http(res, p, port, req, warmup=self.plan.jvm_warmup)
        finally:
            self.stop(p)
        self.results.append(res)

    def run(self) -> int:
        if self.plan.broker_warmup > 0:
            log(f"--- broker warm-up: direct produce at 20,000/s for {self.plan.broker_warmup:.0f} s")
            self.produce(20000, self.plan.broker_warmup, 0)
        up, up_port = self.start_upstream()
        # Each target ratio's two sides are measured in turns (Plan.paired_repeats): the limit with
        # `event`, nginx (with and without its access log) with `forward`.
        stages = []
        for threads in (1, 2):
            stages.append((f"beast t{threads} and handoff event t{threads}, alternating",
                           lambda threads=threads: self.stage(lambda: self.start_beast(threads),
                                                              lambda: self.start_handoff("event", threads, up_port))))
            if threads == 1:
                # The same route over HTTP/2: h2load's streams on 32 connections in place of wrk's 128
                # HTTP/1.1 connections; compared per core with handoff-event-t1.
                stages.append(("handoff event t1 over HTTP/2 (h2load)",
                               lambda: self.stage(lambda: self.start_handoff("event", 1, up_port,
                                                                             generator="h2load"))))
            stages.append((f"handoff commit t{threads}",
                           lambda threads=threads: self.stage(lambda: self.start_handoff("commit", threads, up_port))))
        stages.append(("handoff forward t1 and nginx proxy_pass (without and with its access log), alternating",
                       lambda: self.stage(lambda: self.start_handoff("forward", 1, up_port),
                                          lambda: self.start_nginx_forward(up_port),
                                          lambda: self.start_nginx_forward(up_port, access_log=True))))
        stages.append(("handoff forward t2", lambda: self.stage(lambda: self.start_handoff("forward", 2, up_port))))
        if self.a.handoff_io_uring:
            # The io_uring build on the same routes, right after the epoll ones (same broker state).
            for route in ("event", "commit", "forward"):
                stages.append((f"handoff {route} t1 io_uring",
                               lambda route=route: self.stage(lambda: self.start_handoff(route, 1, up_port, "io_uring"))))
        stages += [("direct produce", self.bench_direct_produce),
                   ("peer camel", self.bench_peer), ("peer dapr", self.bench_dapr),
                   ("peer strimzi", self.bench_strimzi)]
        failed = []
        for label, fn in stages:
            log(f"--- {label}")
            try:
                fn()
            except Exception as e:  # a failed stage is reported, the others still run
                log(f"{label}: FAILED: {e}")
                failed.append(f"{label}: {e}")
        self.stop(up)
        report = write_report(self.results, self.out, self.a, failed)
        print(report)
        problems = failed + smoke_problems(self.results)
        for p in problems:
            log(f"problem: {p}")
        return 1 if problems else 0


def smoke_problems(results: list[Result]) -> list[str]:
    """Every stage that ran must have produced numbers (nothing is said about how good they are)."""
    out = []
    for r in results:
        if r.skipped:
            continue
        if r.peak_rps <= 0:
            out.append(f"{r.name}: no peak throughput")
        if not r.runs and r.generator == "wrk":
            out.append(f"{r.name}: no fixed-rate run")
        if r.generator != "wrk" and r.peak_errors:
            out.append(f"{r.name}: {r.peak_errors} failed or non-2xx requests under {r.generator}")
        for run in r.runs:
            ok = sum(v for k, v in run["status"].items() if k.startswith("2") or k == "persisted")
            if ok == 0 or run["latency_us"]["p50"] <= 0:
                out.append(f"{r.name} @ {run['target_rate']:.0f}/s: no successful response measured")
    return out


# --- report -----------------------------------------------------------------------------------
def by_name(results: list[Result]) -> dict[str, Result]:
    return {r.name: r for r in results}


def run_at(r: Result | None, rate: float) -> dict | None:
    if not r:
        return None
    for run in r.runs:
        if abs(run["target_rate"] - rate) < 0.5:
            return run
    return None


def per_core(r: Result | None) -> float:
    return 1e6 / r.cpu_us_per_req if r and r.cpu_us_per_req > 0 else 0.0


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if a and b else "—"


def paired(a: Result, b: Result, by_rps: bool) -> tuple[float, str]:
    """a's figure over b's (req/s, or req/s per core), and how it was obtained. When the two were
    measured in turns, the median of the ratios within each round, and their min-max: a drift of
    the machine between rounds then cancels out. Otherwise the ratio of the medians."""
    if b.name in a.alternated_with and len(a.cpu_us_runs) == len(b.cpu_us_runs) > 1:
        if by_rps:
            xs = [x / y for x, y in zip(a.peak_rps_runs, b.peak_rps_runs) if x and y]
        else:
            xs = [y / x for x, y in zip(a.cpu_us_runs, b.cpu_us_runs) if x and y]
        if xs:
            return statistics.median(xs), (f"median of {len(xs)} alternating rounds, "
                                           f"{min(xs):.2f}–{max(xs):.2f}")
    x = (a.peak_rps / b.peak_rps if b.peak_rps else 0.0) if by_rps else \
        (per_core(a) / per_core(b) if per_core(b) else 0.0)
    return x, "ratio of the medians"


def write_report(results: list[Result], out: Path, args, failed: list[str]) -> str:
    R = by_name(results)
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"Machine: {os.cpu_count()} CPUs ({model}); system under test on CPUs {args.sut_cpus}, load generator, "
             f"wrk, broker and upstream on CPUs {args.load_cpus}; load average at start {args.load_at_start}, "
             f"at end {' '.join(open('/proc/loadavg').read().split()[:3])}"
             + ("; SMOKE run (tiny rates: the numbers mean nothing)" if args.smoke else ""), ""]
    lines.append("| system | peak req/s | wrk CPU | CPU µs/req | CPU µs/req, min–max of the repeats | req/s per core | "
                 "RSS idle MB | RSS load MB | compared with | ratio (per core) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    base_for = {"handoff-event-t1": "beast-202-t1", "handoff-event-t2": "beast-202-t2",
                "handoff-forward-t1": "nginx-proxy_pass", "handoff-forward-t2": "nginx-proxy_pass",
                "handoff-commit-t1": "camel-http-kafka", "handoff-commit-t2": "camel-http-kafka",
                # HTTP/2 (h2load) against HTTP/1.1 (wrk), the same route and config
                "handoff-event-t1-h2": "handoff-event-t1",
                # the io_uring build against the epoll build of the same route
                **{f"handoff-{route}-t1-io_uring": f"handoff-{route}-t1" for route in ("event", "commit", "forward")}}
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | skipped: {r.skipped} | | | | | | | | |")
            continue
        base = R.get(base_for.get(r.name, ""))
        ratio = f"{paired(r, base, by_rps=False)[0]:.2f}×" if base and not base.skipped and per_core(base) else ""
        peak = f"generator-bound (>= {r.peak_rps:,.0f})" if r.generator_bound else f"{r.peak_rps:,.0f}"
        spread = (f"{min(r.cpu_us_runs):.1f}–{max(r.cpu_us_runs):.1f} ({len(r.cpu_us_runs)} runs)"
                  if len(r.cpu_us_runs) > 1 else "")
        lines.append(f"| {r.name} | {peak} | {r.generator_cpu * 100:.0f} % | {r.cpu_us_per_req:.1f} | {spread} | "
                     f"{per_core(r):,.0f} | "
                     f"{r.rss_idle_kb / 1024:.1f} | {r.rss_load_kb / 1024:.1f} | "
                     f"{base.name if base and not base.skipped else ''} | {ratio} |")
    lim = R.get("beast-202-t1")
    if lim and lim.plain_wrk_rps and lim.peak_rps:
        x = lim.peak_rps / lim.plain_wrk_rps
        lines.append("")
        lines.append(f"Cross-check of the runner: the Beast limit under a plain `wrk -t1 -c32` GET (no script) did "
                     f"{lim.plain_wrk_rps:,.0f} req/s, the runner's peak (POST, 100-byte body) {lim.peak_rps:,.0f}: "
                     f"{x:.2f}x ({'within' if abs(1 - x) <= 0.15 else 'NOT within'} 15 %). A peak is reported only "
                     f"when wrk used less than {GENERATOR_SATURATED * 100:.0f} % of its core (column `wrk CPU`).")
    lines.append("")
    lines.append("Latency at fixed offered rates (open loop, from the scheduled send time), µs:")
    lines.append("")
    lines.append("| system | offered req/s | achieved | p50 | p99 | p99.9 | max | errors | CPU µs/req |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for run in r.runs:
            l = run["latency_us"]
            lines.append(f"| {r.name} | {run['target_rate']:,.0f} | {run['achieved_rate']:,.0f} | {l['p50']:,.0f} | "
                         f"{l['p99']:,.0f} | {l['p999']:,.0f} | {l['max']:,.0f} | {run['errors']} | "
                         f"{run.get('cpu_us_per_req', 0):.1f} |")
    lines.append("")
    lines.append("Targets (tests/bench/README.md):")
    lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    ev, lim = R.get("handoff-event-t1"), R.get("beast-202-t1")
    if ev and lim and per_core(lim):
        x, how = paired(ev, lim, by_rps=False)
        lines.append(f"| `event` ≥ 55 % of the Beast limit per core, request log on (threads 1; the goal is 90 %) | "
                     f"{x * 100:.0f} % ({how}; medians {per_core(ev):,.0f} vs {per_core(lim):,.0f} req/s per core) | "
                     f"{'yes' if x >= 0.55 else 'no'} |")
    fw, ng = R.get("handoff-forward-t1"), R.get("nginx-proxy_pass")
    if fw and ng and ng.peak_rps:
        # req/s when wrk had headroom in both runs; else per core (CPU µs per request).
        by_rps = not (fw.generator_bound or ng.generator_bound)
        x, how = paired(fw, ng, by_rps)
        c, _ = paired(fw, ng, by_rps=False)
        a, b = run_at(fw, 5000) or run_at(fw, 100), run_at(ng, 5000) or run_at(ng, 100)
        lat = (f"; p50 at {a['target_rate']:.0f}/s {a['latency_us']['p50']:.0f} vs {b['latency_us']['p50']:.0f} µs"
               if a and b else "")
        lines.append(f"| `forward` ≥ 0.9× nginx (threads 1) | {x:.2f}× nginx {'req/s' if by_rps else 'per core'} "
                     f"({how}; {c:.2f}× per core){lat} | {'yes' if x >= 0.9 else 'no'} |")
    e2 = R.get("handoff-event-t1-h2")
    if ev and e2 and not e2.skipped and per_core(ev):
        x, how = paired(e2, ev, by_rps=False)
        lines.append(f"| (`event` over HTTP/2, h2load -c32 -m10, against HTTP/1.1 under wrk, threads 1) | "
                     f"{x:.2f}× per core ({how}; {e2.cpu_us_per_req:.1f} vs {ev.cpu_us_per_req:.1f} CPU µs/req; "
                     f"{e2.peak_rps:,.0f} vs {ev.peak_rps:,.0f} req/s, h2load CPU {e2.generator_cpu * 100:.0f} %) | "
                     f"not a target |")
    ngl = R.get("nginx-proxy_pass-log")
    if fw and ngl and per_core(ngl):
        x, how = paired(fw, ngl, by_rps=False)
        lines.append(f"| (`forward` against nginx with its access log on, as Handoff's request log is) | {x:.2f}× "
                     f"per core ({how}) | not a target |")
    cm, dp = R.get("handoff-commit-t1"), R.get("librdkafka-direct")
    for rate in (1000, 100):
        a, b = run_at(cm, rate), run_at(dp, rate)
        if a and b:
            d = a["latency_us"]["p50"] - b["latency_us"]["p50"]
            # The direct produce has no HTTP hop; the Beast limit's p50 at the same rate is what one
            # loopback HTTP round trip costs on this machine, before Handoff does any work.
            h = run_at(lim, rate) if lim else None
            hop = (f"; the HTTP round trip alone (Beast limit p50) is {h['latency_us']['p50']:.0f} µs, "
                   f"Handoff's own share {d - h['latency_us']['p50']:+.0f} µs" if h else "")
            lines.append(f"| `commit` p50 within 100 µs of the direct produce (at {rate}/s) | {d:+.0f} µs "
                         f"({a['latency_us']['p50']:.0f} vs {b['latency_us']['p50']:.0f}{hop}) | "
                         f"{'yes' if d <= 100 else 'no'} |")
    for peer in ("camel-http-kafka", "dapr-http-kafka", "strimzi-bridge"):
        pe = R.get(peer)
        if cm and pe and not pe.skipped and per_core(pe):
            x = per_core(cm) / per_core(pe)
            lines.append(f"| `commit` ≥ 5× the HTTP→Kafka peer `{peer}` per core (acks=all both) | {x:.1f}× | "
                         f"{'yes' if x >= 5 else 'no'} |")
    if ev:
        lines.append(f"| idle RSS < 15 MB | {ev.rss_idle_kb / 1024:.1f} MB | {'yes' if ev.rss_idle_kb < 15 * 1024 else 'no'} |")
    lines += io_uring_vs_epoll(R)
    if failed:
        lines.append("")
        lines.append("Failed stages: " + "; ".join(failed))
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))
    plot(results, out / "latency.png")
    return table


def io_uring_vs_epoll(R: dict[str, Result]) -> list[str]:
    """The io_uring build against the epoll build, route by route (threads 1): which is faster."""
    rows = []
    for route in ("event", "commit", "forward"):
        ep, ur = R.get(f"handoff-{route}-t1"), R.get(f"handoff-{route}-t1-io_uring")
        if not ep or not ur or ep.skipped or ur.skipped:
            continue
        a, b = run_at(ep, 5000) or run_at(ep, 100), run_at(ur, 5000) or run_at(ur, 100)
        p50 = (f"{b['latency_us']['p50']:.0f} vs {a['latency_us']['p50']:.0f} (at {a['target_rate']:.0f}/s)"
               if a and b else "—")
        rows.append(f"| {route} | {ur.peak_rps:,.0f} vs {ep.peak_rps:,.0f} | {fmt_ratio(ur.peak_rps, ep.peak_rps)} | "
                    f"{per_core(ur):,.0f} vs {per_core(ep):,.0f} | {fmt_ratio(per_core(ur), per_core(ep))} | {p50} |")
    if not rows:
        return []
    return ["", "io_uring vs epoll (the same Handoff built with -DHANDOFF_IO_URING=ON, threads 1; ratio > 1: "
            "io_uring is better):", "",
            "| route | peak req/s io_uring vs epoll | ratio | req/s per core io_uring vs epoll | ratio (per core) | "
            "p50 µs io_uring vs epoll |",
            "|---|---:|---:|---:|---:|---:|", *rows]


def plot(results: list[Result], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot (run scripts/setup.sh)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, q, title in ((axes[0], "p50", "p50"), (axes[1], "p99", "p99")):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more systems than tab10 has colours
        for r in results:
            if not r.runs:
                continue
            xs = [run["target_rate"] for run in r.runs]
            ys = [max(run["latency_us"][q], 1) for run in r.runs]
            ax.plot(xs, ys, marker="o", label=r.name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (req/s, open loop)")
        ax.set_title(f"{title} latency")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (µs, from scheduled send)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--handoff", required=True)
    ap.add_argument("--handoff-io-uring", default="",
                    help="handoff built with -DHANDOFF_IO_URING=ON: adds the ...-t1-io_uring stages, "
                         "compared with the epoll build (not used by --instructions)")
    ap.add_argument("--tools", required=True, help="directory of handoff_loadgen & co")
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--sut-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--peer-libs", default="")
    ap.add_argument("--peer-template", default=str(Path(__file__).with_name("peer_routes.yaml")))
    ap.add_argument("--dapr-bin", default="", help="daprd built by tests/bench/fetch_dapr.sh (stage skipped if absent)")
    ap.add_argument("--strimzi-home", default=os.environ.get("STRIMZI_BRIDGE_HOME", ""),
                    help="a built Strimzi Kafka Bridge (its libs/ folder); stage skipped if absent")
    ap.add_argument("--linger-ms", default="1")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")),
                    help="repeats of each peak run (median reported, with min-max); --smoke: 1")
    ap.add_argument("--profile", default="", help="instead of the suite: perf record this route (event)")
    ap.add_argument("--instructions", action="store_true",
                    help="instead of the suite: instructions per request under callgrind")
    args = ap.parse_args()
    args.load_at_start = " ".join(open("/proc/loadavg").read().split()[:3])
    b = Bench(args)
    try:
        if args.profile:
            return profile(b, args.profile)
        if args.instructions:
            return instructions(b)
        return b.run()
    finally:
        b.cleanup()


def wait_port(port: int, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up (see its log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name}: port {port} not accepting after {timeout}s")


def callgrind_total(path: Path) -> int:
    """The instruction total of one callgrind dump ("summary:" or "totals:" line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def instructions(b: Bench, seconds: float = 10.0) -> int:
    """User-space instructions per request, every thread of the process, under callgrind.

    Unlike the timed runs this does not depend on what else the machine is doing, so it shows the
    effect of a change on a busy machine too. Kernel time (the syscalls) is not counted: compare
    with the Beast limit, which makes the same socket calls per request. Each system runs under
    valgrind (about 50× slower), is warmed up with wrk, then callgrind's counters are zeroed, wrk
    runs for `seconds` with 8 connections and the counters are dumped.
    """
    up, up_port = b.start_upstream()
    tools = Path(b.a.tools)
    rows = []
    systems = [("beast-202-t1", "limit", "/event"), ("handoff-event-t1", "event", "/event"),
               ("handoff-commit-t1", "commit", "/commit"), ("handoff-forward-t1", "forward", "/forward")]
    # No io_uring rows: under valgrind 3.19 the io_uring build stalls (one request took 114 s and
    # librdkafka's produce requests timed out; a thread blocked in io_uring_enter apparently holds
    # valgrind's lock), and callgrind would not count the kernel's io_uring work anyway.
    for name, kind, path in systems:
        port, admin = free_port(), free_port()
        if kind == "limit":
            argv = [str(tools / "handoff_bench_http202"), "--port", str(port)]
        else:
            argv = [b.a.handoff, "run", "--config", str(b.handoff_config(1, port, admin, up_port))]
        out = b.tmp / f"callgrind-{name}.out"
        p = b.start(f"callgrind-{name}", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                    b.a.sut_cpus)
        try:
            if kind == "limit":
                wait_port(port, p)
            else:
                wait_http(f"http://127.0.0.1:{admin}/readyz", p, timeout=120)
            b.wrk(port, path, 3, 8)
            subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True, timeout=60)
            w = b.wrk(port, path, seconds, 8)
            subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True, timeout=60)
            dumps = sorted(b.tmp.glob(f"callgrind-{name}.out.*"), key=lambda f: f.stat().st_mtime)
            if not dumps or not w["requests"]:
                raise RuntimeError(f"{name}: no callgrind dump or no requests")
            per = callgrind_total(dumps[-1]) / w["requests"]
            rows.append((name, w["requests"], per, w["non2xx"] + w["errors"]))
            log(f"{name}: {per:,.0f} instructions per request over {w['requests']} requests")
        finally:
            b.stop(p)
    b.stop(up)
    base = rows[0][2] if rows else 0
    lines = ["| system | requests | instructions per request | × the Beast limit | errors |",
             "|---|---:|---:|---:|---:|"]
    for name, n, per, errors in rows:
        lines.append(f"| {name} | {n:,} | {per:,.0f} | {per / base:.2f}× | {errors} |")
    table = "\n".join(lines) + "\n"
    (b.out / "instructions.md").write_text(table)
    print(table)
    return 0


def profile(b: Bench, route: str) -> int:
    """perf record -g on Handoff (threads 1) while wrk drives `route` for 10 s; top symbols."""
    up, up_port = b.start_upstream()
    port, admin = free_port(), free_port()
    cfg = b.handoff_config(1, port, admin, up_port)
    p = b.start("handoff-profile", [b.a.handoff, "run", "--config", str(cfg)], b.a.sut_cpus)
    wait_http(f"http://127.0.0.1:{admin}/readyz", p)
    b.wrk(port, f"/{route}", 2, 128)
    data = b.out / f"perf-{route}.data"
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "--call-graph", "dwarf,16384", "-o", str(data),
                             "-p", str(p.pid), "--", "sleep", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    w = b.wrk(port, f"/{route}", 9, 128)
    perf.wait(60)
    log(f"profile: {w['rps']:.0f} req/s under perf")
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "symbol",
                          "-g", "none", "--percent-limit", "0.5"], capture_output=True, text=True)
    (b.out / f"perf-{route}.txt").write_text(rep.stdout)
    top = []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*\S)", line)
        if m:
            symbol = re.split(r"\s{2,}", m.group(3))[0][:160]
            top.append(f"{float(m.group(1)):6.2f}%  {m.group(2)}  {symbol}")
    dso = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso", "-g", "none",
                          "--percent-limit", "1"], capture_output=True, text=True).stdout
    (b.out / f"perf-{route}-dso.txt").write_text(dso)
    print(f"Top symbols of handoff (threads 1) on the {route} route under wrk, {w['rps']:.0f} req/s:")
    print("\n".join(top[:30]))
    print("By shared object:")
    print("\n".join(re.sub(r"\s+", " ", l).strip() for l in dso.splitlines() if l.strip() and not l.startswith("#")))
    b.stop(p)
    b.stop(up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
