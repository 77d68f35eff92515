#!/usr/bin/env bash
# The demo: sets up, builds, and runs Handoff on the embedded (in-process, NOT durable) broker in
# front of a small demo service, then prints curl commands for every mode.
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --check   run every printed example, check the answers, and exit (used by tests)
# SKIP_BUILD=1 and HANDOFF_BIN=... reuse an existing binary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$ROOT/scripts/setup.sh"
  "$ROOT/scripts/build.sh"
fi
HANDOFF_BIN="${HANDOFF_BIN:-$ROOT/build/proxy/exe/handoff}"
CONFIG="$ROOT/config/examples/embedded-demo.yaml"
RUN_DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT INT TERM

# The demo's ports: 8080, 9901, 8081. --check (ctest demo_check) picks free ones below the ephemeral
# range instead, unless they are given, so that it never meets another run's demo or an outgoing socket.
if [ "$CHECK" = 1 ] && [ -z "${HANDOFF_DEMO_PORT:-}" ]; then
  read -r HANDOFF_DEMO_PORT HANDOFF_DEMO_ADMIN_PORT HANDOFF_DEMO_SERVICE_PORT < <(python3 - <<'PY'
import random, socket
picked = []
while len(picked) < 3:
    p = random.randrange(20000, 32768)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    if p not in picked:
        picked.append(p)
print(*picked)
PY
)
fi
export HANDOFF_DEMO_PORT="${HANDOFF_DEMO_PORT:-8080}" HANDOFF_DEMO_ADMIN_PORT="${HANDOFF_DEMO_ADMIN_PORT:-9901}"
export HANDOFF_DEMO_SERVICE_PORT="${HANDOFF_DEMO_SERVICE_PORT:-8081}"
PORT="$HANDOFF_DEMO_PORT" ADMIN="$HANDOFF_DEMO_ADMIN_PORT" SERVICE="$HANDOFF_DEMO_SERVICE_PORT"

python3 "$ROOT/scripts/demo_service.py" --port "$SERVICE" &
PIDS+=($!)
"$HANDOFF_BIN" run --config "$CONFIG" > "$RUN_DIR/handoff.log" 2>&1 &
PIDS+=($!)

# Bounded waits: the demo service answers, and Handoff is ready (admin listener).
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$SERVICE/orders/1" 2>/dev/null && break
  sleep 0.1
done
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null && break
  if ! kill -0 "${PIDS[1]}" 2>/dev/null; then cat "$RUN_DIR/handoff.log"; echo "handoff exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { cat "$RUN_DIR/handoff.log"; echo "handoff not ready" >&2; exit 1; }
BOOTSTRAP="$(grep -o '"bootstrap_servers":"[^"]*"' "$RUN_DIR/handoff.log" | head -1 | cut -d'"' -f4)"

EXAMPLES=(
  "forward|200|curl -sS -i http://127.0.0.1:$PORT/orders/1"
  "commit|201|curl -sS -i -X POST http://127.0.0.1:$PORT/orders/eu -H 'Content-Type: application/json' -d '{\"customer\":{\"id\":\"c-42\"},\"items\":[\"book\"]}'"
  "event|202|curl -sS -i -X POST http://127.0.0.1:$PORT/events/signup -H 'Content-Type: application/json' -H 'X-Tenant: acme' -d '{\"user\":\"ada\"}'"
  "event|202|curl -sS -i -X POST http://127.0.0.1:$PORT/audit -H 'X-Correlation-ID: demo-1' -d 'login ok'"
  "405|405|curl -sS -i -X DELETE http://127.0.0.1:$PORT/orders/eu"
  "missing key|400|curl -sS -i -X POST http://127.0.0.1:$PORT/events/signup -d '{}'"
)

if [ "$CHECK" = 1 ]; then
  failed=0
  for ex in "${EXAMPLES[@]}"; do
    name="${ex%%|*}"; rest="${ex#*|}"; want="${rest%%|*}"; cmd="${rest#*|}"
    got="$(eval "$cmd" | head -1 | awk '{print $2}')"
    if [ "$got" = "$want" ]; then echo "ok   $name -> $got"; else echo "FAIL $name -> $got (want $want): $cmd"; failed=1; fi
  done
  # The committed and evented records are readable with a real client.
  if ! kcat -C -b "$BOOTSTRAP" -t orders.eu -o beginning -e -q -f '%k %s\n' | grep -q 'c-42'; then
    echo "FAIL kcat did not read the committed record from orders.eu"; failed=1
  else
    echo "ok   kcat read orders.eu"
  fi
  [ "$failed" = 0 ] && echo "demo check passed" || { tail -20 "$RUN_DIR/handoff.log"; exit 1; }
  exit 0
fi

cat <<MSG

Handoff is running on http://127.0.0.1:$PORT in front of the demo service on :$SERVICE.
The embedded broker is librdkafka's mock cluster: NOT durable, for trying things out only.
Admin: curl -s http://127.0.0.1:$ADMIN/readyz ; curl -s http://127.0.0.1:$ADMIN/config

Try each mode:
MSG
for ex in "${EXAMPLES[@]}"; do
  name="${ex%%|*}"; rest="${ex#*|}"; want="${rest%%|*}"; cmd="${rest#*|}"
  printf '  # %s (expect %s)\n  %s\n\n' "$name" "$want" "$cmd"
done
cat <<MSG
Each 202 and 201 carries Location: /_handoff/requests/{request_id}, the request's status URL
(its own ID, whatever X-Correlation-ID says):
  curl -s http://127.0.0.1:$PORT/_handoff/requests/<request_id>

Read the events with kcat (a real Kafka client):
  kcat -C -b $BOOTSTRAP -t orders.eu -o beginning -e -f 'key=%k headers=%h value=%s\n'
  kcat -C -b $BOOTSTRAP -t events -o beginning -e -f 'key=%k headers=%h value=%s\n'

Logs: $RUN_DIR/handoff.log   (Ctrl-C stops everything)
MSG
tail -f "$RUN_DIR/handoff.log" &
PIDS+=($!)
wait "${PIDS[1]}"
