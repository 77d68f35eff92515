#!/usr/bin/env bash
# Sets up everything from nothing, builds, and runs the whole test suite: unit tests (in memory),
# adapter tests (librdkafka mock cluster, loopback HTTP), and integration/end-to-end tests of the
# built binary against a real Apache Kafka broker (KRaft) that ctest starts and stops on loopback.
# Then the ASan/UBSan stage: a second build of the whole tree (-DHANDOFF_SANITIZE=ON, in
# $ASAN_BUILD_DIR) and the whole suite again against it. SKIP_SANITIZE=1 skips that stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
# HANDOFF_TEST_KAFKA_PORT: the test broker's loopback port (default 19092, controller +1), e.g. to
# run two suites side by side from two clones.
port_args=()
if [ -n "${HANDOFF_TEST_KAFKA_PORT:-}" ]; then port_args=(-DHANDOFF_TEST_KAFKA_PORT="$HANDOFF_TEST_KAFKA_PORT"); fi
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh" "${port_args[@]}"
# -j1: the integration tests share one broker and measure deadlines; the suite is short.
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  ASAN_BUILD_DIR="${ASAN_BUILD_DIR:-$ROOT/build-asan}"
  start=$(date +%s)
  # The whole tree again, built with -fsanitize=address,undefined (gcc), and the whole suite run
  # against it: the unit and adapter tests, the fuzz-corpus replays, and every integration test
  # driving the sanitized `handoff` (and handoff_mockctl) against the real broker. Left out: the
  # timed benchmark smoke run (its numbers mean nothing under ASan) and the check that the runtime
  # image's packages cover `ldd handoff` (a sanitized binary links libasan/libubsan, not mimalloc).
  BUILD_DIR="$ASAN_BUILD_DIR" "$ROOT/scripts/build.sh" -DHANDOFF_SANITIZE=ON "${port_args[@]}"
  echo "[test] ASan/UBSan build took $(( $(date +%s) - start ))s" >&2
  # halt_on_error + no recover: any report fails the test (a `handoff` child aborts, so the test
  # that drove it fails). Leak checking is on (LSan): a `handoff` that leaks exits non-zero on
  # SIGTERM, and the fixture that stopped it fails. The suite's timing and RSS bounds hold as
  # they are: the integration tests wait on the broker and the network far more than on the CPU.
  ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$ASAN_BUILD_DIR" --output-on-failure --timeout 900 \
      -E '^(bench_smoke|packaging_dockerfile_libs|packaging_image|format)$'
  echo "[test] ASan/UBSan stage took $(( $(date +%s) - start ))s" >&2
fi
