#!/usr/bin/env bash
# Sets up everything from nothing, builds, and runs the whole test suite: unit tests (in memory),
# adapter tests (librdkafka mock cluster, loopback HTTP), and integration/end-to-end tests of the
# built binary against a real Apache Kafka broker (KRaft) that ctest starts and stops on loopback.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
# -j1: the integration tests share one broker and measure deadlines; the suite is short.
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900
