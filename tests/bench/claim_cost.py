"""What a claim through the state topic costs (README, "Running several replicas").

Sequential requests, one at a time on one keep-alive connection, to two `handoff` processes on the
same broker: one with in-process Idempotency-Keys, one with `state.shared`; each route with and
without an Idempotency-Key (a fresh key per request, so every keyed request claims). Prints p50 and
p99 of the client's latency; the first 50 requests of each series are left out (warm-up).

    python3 tests/bench/claim_cost.py BROKERS [HANDOFF_BIN]     e.g. 127.0.0.1:19192 build/proxy/exe/handoff
"""
import http.client, statistics, subprocess, sys, tempfile, time, uuid
BROKERS = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
BIN = sys.argv[2] if len(sys.argv) > 2 else "build/proxy/exe/handoff"
WORK = tempfile.mkdtemp(prefix="claim-cost-")
def cfg(port, admin, shared):
    s = f"state: {{shared: true, topic: handoff.state.measure-{uuid.uuid4().hex[:8]}, partitions: 3}}\n" if shared else ""
    return f"""listen: {{address: 127.0.0.1, port: {port}}}
admin: {{address: 127.0.0.1, port: {admin}}}
upstream: {{host: 127.0.0.1, port: 9}}
kafka: {{brokers: "{BROKERS}", properties: {{linger.ms: "1"}}}}
log: {{level: warn}}
{s}routes:
  - {{name: ev, match: {{methods: [POST], path: /ev}}, mode: event, topic: measure.ev}}
  - {{name: cm, match: {{methods: [POST], path: /cm}}, mode: commit, topic: measure.cm}}
"""
def start(name, port, admin, shared):
    path = f"{WORK}/{name}.yaml"; open(path, "w").write(cfg(port, admin, shared))
    p = subprocess.Popen([BIN, "run", "--config", path], stdout=open(f"{WORK}/{name}.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1); c.request("GET", "/readyz")
            if c.getresponse().status == 200: return p
        except OSError: pass
        time.sleep(0.1)
    raise SystemExit(f"{name} not ready")
def run(port, path, keyed, n=400):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10); lat = []
    for i in range(n):
        h = {"Content-Type": "application/json"}
        if keyed: h["Idempotency-Key"] = uuid.uuid4().hex
        t = time.perf_counter(); c.request("POST", path, b'{"n":1}', h); r = c.getresponse(); r.read()
        lat.append((time.perf_counter() - t) * 1000)
        assert r.status in (200, 202), r.status
    lat = lat[50:]; lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99)]
a = start("plain", 21301, 21311, False); b = start("shared", 21302, 21312, True)
try:
    for path in ("/ev", "/cm"):
        for name, port in (("in-process keys", 21301), ("state.shared", 21302)):
            for keyed in (False, True):
                p50, p99 = run(port, path, keyed)
                print(f"{path} {name:16s} keyed={keyed!s:5s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
finally:
    a.terminate(); b.terminate(); a.wait(); b.wait()
