#!/usr/bin/env bash
# Configures and builds Handoff (after scripts/setup.sh). BUILD_DIR and BUILD_TYPE may be set; any
# arguments go to the configure step (e.g. -DHANDOFF_SANITIZE=ON).
#
# Compiles go through ccache (from setup.sh) with its cache outside the work tree, in
# $HANDOFF_CACHE/ccache, keyed on paths relative to the clone: a fresh clone anywhere on the same
# machine recompiles only what changed. HANDOFF_CCACHE=0 turns it off.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
launcher=()
if [ "${HANDOFF_CCACHE:-1}" = 1 ] && command -v ccache >/dev/null; then
  export CCACHE_DIR="${CCACHE_DIR:-${HANDOFF_CACHE:-/var/cache/handoff}/ccache}"
  export CCACHE_BASEDIR="$ROOT"   # absolute paths inside the clone hash as relative ones
  export CCACHE_NOHASHDIR=1       # -g builds: the clone's directory is not part of the key
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-6G}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
else
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER= -DCMAKE_C_COMPILER_LAUNCHER=)
fi
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DHANDOFF_WERROR=ON "${launcher[@]}" "$@" >/dev/null
[ -z "${CCACHE_DIR:-}" ] || ccache --zero-stats >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
[ -z "${CCACHE_DIR:-}" ] || ccache --print-stats 2>/dev/null |
  awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{h+=$2} $1=="cache_miss"{m=$2}
               END{printf "[build] ccache: %d hits, %d compiled\n", h, m}' >&2
