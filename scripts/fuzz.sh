#!/usr/bin/env bash
# Long fuzzing runs (tests/CATALOGUE.md, L-9), separate from CI (which replays the corpora as tests).
#
#   scripts/fuzz.sh                      every target, 60 s each
#   scripts/fuzz.sh http_request 3600    one target for an hour
#
# Builds the libFuzzer targets with clang (-DHANDOFF_FUZZ=ON: ASan + UBSan + coverage) in
# $FUZZ_BUILD_DIR (default build-fuzz), then runs each on a scratch copy of its checked-in corpus
# (tests/fuzz/corpus/<target>) so new inputs do not land in the tree; crashes are written to
# $FUZZ_BUILD_DIR/crashes/<target>/. Copy an interesting new input into the corpus by hand (it is
# then replayed by ctest in every build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
TARGETS=(http_request h2_frames route_table record config)
if [ $# -ge 1 ] && [ "$1" != all ]; then TARGETS=("$1"); fi
SECONDS_EACH="${2:-60}"
JOBS="${FUZZ_JOBS:-1}"

CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHANDOFF_FUZZ=ON -DHANDOFF_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]/#/fuzz_}"

status=0
for t in "${TARGETS[@]}"; do
  work="$BUILD/corpus-work/$t"
  crashes="$BUILD/crashes/$t"
  mkdir -p "$work" "$crashes"
  cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
  echo "[fuzz] $t for ${SECONDS_EACH}s (corpus $(ls "$work" | wc -l) inputs)" >&2
  # One job runs in this process (its log on stderr); more are libFuzzer workers, each logging to
  # fuzz-<n>.log in the build folder (not in the tree).
  parallel=()
  if [ "$JOBS" -gt 1 ]; then parallel=(-jobs="$JOBS" -workers="$JOBS"); fi
  (cd "$BUILD" && ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 "${parallel[@]}" -artifact_prefix="$crashes/" "$work") || status=1
done
exit "$status"
