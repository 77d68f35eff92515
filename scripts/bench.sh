#!/usr/bin/env bash
# The benchmark suite in one command (what it measures and why: tests/bench/README.md).
#
#   scripts/bench.sh            full run, < 20 minutes on 2 cores: set-up, a Release build in
#                               build-bench/ (and one on io_uring in build-bench-uring/, see
#                               BENCH_IO_URING), a Kafka broker on 127.0.0.1:19392, then every system
#                               measured in one go; prints the Markdown table and writes
#                               tests/bench/results/{table.md,results.json,latency.png,logs/}
#   scripts/bench.sh --smoke    the same stages at tiny rates for a second each: checks only that
#                               every stage produced numbers (the ctest test bench_smoke)
#   scripts/bench.sh --profile  perf record -g of Handoff's event route under wrk for 10 s;
#                               prints the top symbols (results/perf-event.txt)
#   scripts/bench.sh --instructions
#                               user-space instructions per request under callgrind for the Beast
#                               limit and Handoff's event, commit and forward routes: independent
#                               of other load on the machine (results/instructions.md)
#
# Environment:
#   BENCH_SUT_CPUS   CPUs for the system under test (default 0)
#   BENCH_LOAD_CPUS  CPUs for everything else: load generator, wrk, broker, forward upstream
#                    (default 1; on a 1-CPU machine both are 0 and the numbers mean little)
#   BENCH_KAFKA_PORT loopback port of the broker it starts (default 19392; the tests use 19092)
#   BENCH_BROKERS    use this broker instead of starting one (ctest passes the test broker)
#   BENCH_RESULTS    output folder (default tests/bench/results, git-ignored)
#   BENCH_REPEAT     repeats of each system's peak run (default 3): the table gives the median CPU
#                    µs per request and req/s, and the min-max of the repeats
#   BENCH_BUILD_DIR  build folder (default build-bench)
#   BENCH_IO_URING   1: also build Handoff with Asio's io_uring backend (-DHANDOFF_IO_URING=ON) in
#                    $BENCH_BUILD_DIR-uring and measure its event, commit and forward routes
#                    (threads 1) against the epoll build ("io_uring vs epoll" in the report).
#                    Default 1 for the full run, 0 for --smoke; never for --profile and
#                    --instructions (valgrind 3.19 stalls the io_uring build: tests/bench/README.md)
#   HANDOFF_IO_URING_BIN  with SKIP_BUILD=1: the io_uring binary (no io_uring stages without it)
#   SKIP_BUILD=1     no set-up and no build: HANDOFF_BIN and BENCH_TOOLS_DIR name the binaries
#                    (nor the Dapr build: the Dapr stage runs only if daprd is already built)
#   BENCH_DAPR=0     do not build the Dapr peer (tests/bench/fetch_dapr.sh: ~20 min and ~1 GB the
#                    first time, nothing after); its stage is then skipped unless daprd exists
#   STRIMZI_BRIDGE_HOME  a Strimzi Kafka Bridge built by tests/bench/build_strimzi_bridge.sh (its
#                    source is not in the registries): measured when set, skipped otherwise
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
PEER_VERSION="4.22.0"   # Apache Camel, fetched by tests/bench/fetch_peer.sh (called by setup.sh)
DAPR_VERSION="1.16.0"   # daprd, built from the Go module proxy by tests/bench/fetch_dapr.sh (below)

mode=full
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  --profile) mode=profile ;;
  --instructions) mode=instructions ;;
  *) echo "usage: scripts/bench.sh [--smoke | --profile | --instructions]" >&2; exit 2 ;;
esac
log() { printf '[bench] %s\n' "$*" >&2; }
case "$mode" in
  full) io_uring="${BENCH_IO_URING:-1}" ;;
  smoke) io_uring="${BENCH_IO_URING:-0}" ;;
  *) io_uring=0 ;;
esac
started=$SECONDS

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$ROOT/scripts/setup.sh"
  BUILD_DIR="${BENCH_BUILD_DIR:-$ROOT/build-bench}"
  # Release (-O3) with debug info, so perf can name and unwind what it samples.
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-g >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target handoff handoff_loadgen handoff_bench_http202 handoff_bench_produce
  HANDOFF_BIN="$BUILD_DIR/proxy/exe/handoff"
  if [ "$io_uring" = 1 ]; then
    # The same Release build with Asio's io_uring backend (every socket, timer and descriptor).
    cmake -S "$ROOT" -B "$BUILD_DIR-uring" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-g \
      -DHANDOFF_IO_URING=ON -DHANDOFF_TESTS=OFF >/dev/null
    cmake --build "$BUILD_DIR-uring" -j"$(nproc)" --target handoff
    HANDOFF_IO_URING_BIN="$BUILD_DIR-uring/proxy/exe/handoff"
  fi
  if [ "${BENCH_DAPR:-1}" != 0 ] && [ "$mode" != profile ] && [ "$mode" != instructions ]; then
    # Not in setup.sh: a first build takes ~20 minutes. A failure only skips the Dapr stage.
    "$ROOT/tests/bench/fetch_dapr.sh" "$DAPR_VERSION" || log "fetch_dapr.sh failed: the Dapr stage will be skipped"
  fi
  BENCH_TOOLS_DIR="$BUILD_DIR/tests/bench"
  log "set-up and build took $((SECONDS - started))s"
fi
: "${HANDOFF_BIN:?HANDOFF_BIN must name the handoff binary when SKIP_BUILD=1}"
: "${BENCH_TOOLS_DIR:?BENCH_TOOLS_DIR must name the folder of handoff_loadgen when SKIP_BUILD=1}"

if [ "$(nproc)" -ge 2 ]; then
  SUT_CPUS="${BENCH_SUT_CPUS:-0}"
  LOAD_CPUS="${BENCH_LOAD_CPUS:-1}"
else
  SUT_CPUS="${BENCH_SUT_CPUS:-0}"
  LOAD_CPUS="${BENCH_LOAD_CPUS:-0}"
  log "one CPU only: the system under test shares it with the load generator"
fi

BROKERS="${BENCH_BROKERS:-}"
KAFKA_DIR=""
cleanup() {
  if [ -n "$KAFKA_DIR" ]; then "$ROOT/tests/kafka/kafka.sh" stop "$KAFKA_DIR" || true; fi
}
trap cleanup EXIT
if [ -z "$BROKERS" ]; then
  port="${BENCH_KAFKA_PORT:-19392}"
  KAFKA_DIR="$(mktemp -d /tmp/handoff-bench-kafka.XXXXXX)"
  # The broker shares the load generator's CPUs, so the system under test has its own alone.
  taskset -c "$LOAD_CPUS" "$ROOT/tests/kafka/kafka.sh" start "$KAFKA_DIR" "$port" >&2
  BROKERS="127.0.0.1:$port"
fi

RESULTS="${BENCH_RESULTS:-$ROOT/tests/bench/results}"
args=(--out "$RESULTS" --handoff "$HANDOFF_BIN" --tools "$BENCH_TOOLS_DIR" --brokers "$BROKERS"
      --sut-cpus "$SUT_CPUS" --load-cpus "$LOAD_CPUS"
      --peer-libs "$HANDOFF_CACHE/camel-peer-$PEER_VERSION/libs"
      --dapr-bin "$HANDOFF_CACHE/peers/daprd-$DAPR_VERSION" --strimzi-home "${STRIMZI_BRIDGE_HOME:-}")
if [ "$io_uring" = 1 ] && [ -n "${HANDOFF_IO_URING_BIN:-}" ]; then
  args+=(--handoff-io-uring "$HANDOFF_IO_URING_BIN")
fi
case "$mode" in
  smoke) args+=(--smoke) ;;
  profile) args+=(--profile event) ;;
  instructions) args+=(--instructions) ;;
esac
{
  echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "system under test on CPUs $SUT_CPUS; load generator, wrk, broker and upstream on CPUs $LOAD_CPUS"
} >&2
rc=0
"$HANDOFF_CACHE/venv/bin/python" "$ROOT/tests/bench/run_bench.py" "${args[@]}" || rc=$?
log "$mode run took $((SECONDS - started))s (load average now $(cut -d' ' -f1-3 /proc/loadavg)); results in $RESULTS"
exit "$rc"
