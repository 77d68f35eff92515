#!/usr/bin/env bash
# Sets up everything from nothing, builds, and runs the whole test suite: unit tests (in memory),
# adapter tests (librdkafka mock cluster, loopback HTTP), and integration/end-to-end tests of the
# built binary against a real Apache Kafka broker (KRaft) that ctest starts and stops on loopback.
# Then the ASan/UBSan stage: a second build (-DHANDOFF_SANITIZE=ON, in $ASAN_BUILD_DIR) runs the
# unit tests and the fuzz-corpus replays (label "unit"). SKIP_SANITIZE=1 skips that stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
# -j1: the integration tests share one broker and measure deadlines; the suite is short.
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  ASAN_BUILD_DIR="${ASAN_BUILD_DIR:-$ROOT/build-asan}"
  start=$(date +%s)
  # Only what the in-memory stage runs is built (the whole tree under ASan would double the time):
  # the core and config tests and the fuzz-corpus replays. ASAN_FULL=1 adds the adapter tests
  # (librdkafka mock cluster, upstream pool), which keeps CI over 40 minutes on 2 cores.
  targets=(handoff_config_test handoff_proxy_test fuzz_http_request_replay fuzz_route_table_replay
           fuzz_record_replay fuzz_config_replay)
  tests='handoff_config_test|handoff_proxy_test|fuzz_replay_.*'
  if [ "${ASAN_FULL:-0}" = 1 ]; then
    targets+=(handoff_http_upstream_test handoff_kafka_mock_test handoff_kafka_consumer_mock_test
              handoff_bench_histogram_test)
    tests+='|handoff_http_upstream_test|handoff_kafka_mock_test|handoff_kafka_consumer_mock_test|handoff_bench_histogram_test'
  fi
  cmake -S "$ROOT" -B "$ASAN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHANDOFF_SANITIZE=ON >/dev/null
  cmake --build "$ASAN_BUILD_DIR" -j"$(nproc)" --target "${targets[@]}"
  echo "[test] ASan/UBSan build took $(( $(date +%s) - start ))s" >&2
  # halt_on_error + no recover: any report fails the test. Leak checking is on (LSan).
  ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$ASAN_BUILD_DIR" --output-on-failure --timeout 900 -R "^($tests)\$"
  echo "[test] ASan/UBSan stage took $(( $(date +%s) - start ))s" >&2
fi
