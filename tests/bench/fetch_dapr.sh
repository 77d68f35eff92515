#!/usr/bin/env bash
# Builds the Dapr sidecar `daprd` (pinned version) — the benchmark's second HTTP→Kafka peer — from
# the Go module proxy alone (no GitHub): the dapr module's source is fetched with `go mod download`
# into a module cache under $HANDOFF_CACHE, copied to a writable work dir, and built with
# `-tags stablecomponents` (without it daprd registers no components and panics at start).
# Idempotent: does nothing when $HANDOFF_CACHE/peers/daprd-<version> exists.
#
# Cost, first time (2 cores shared with a CI run): 708 s, 2.9 GB into the module cache
# $HANDOFF_CACHE/go/mod, 1.7 GB into the build cache $HANDOFF_CACHE/go/cache, a 131 MB binary.
# Needs Go >= 1.24 on the PATH (this machine kind has it; Debian 12's golang-go is too old).
# Not called by scripts/setup.sh (too heavy for the test command); scripts/bench.sh calls it.
set -euo pipefail
VERSION="${1:-1.16.0}"   # 1.16.1: the proxy refuses its .info (403), so `go mod download` fails; newer: deps do not resolve
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
PEERS="$HANDOFF_CACHE/peers"
BIN="$PEERS/daprd-$VERSION"
[ -x "$BIN" ] && exit 0
command -v go >/dev/null || { echo "[fetch_dapr] Go >= 1.24 is needed on the PATH" >&2; exit 1; }
log() { printf '[fetch_dapr] %s\n' "$*" >&2; }
export GOPATH="$HANDOFF_CACHE/go"
export GOMODCACHE="$HANDOFF_CACHE/go/mod"
export GOCACHE="$HANDOFF_CACHE/go/cache"
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local
# The module proxy only: Go's configured proxy list without `direct` (version control hosts).
GOPROXY="$(go env GOPROXY | tr ',|' '\n\n' | grep -v -x -e direct -e off | paste -sd, -)"
[ -n "$GOPROXY" ] || { log "no Go module proxy configured (go env GOPROXY)"; exit 1; }
export GOPROXY
mkdir -p "$PEERS"
started=$SECONDS
log "fetching github.com/dapr/dapr@v$VERSION from the Go module proxy"
dir="$(go mod download -json "github.com/dapr/dapr@v$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$dir" ] || { log "go mod download gave no source directory"; exit 1; }
src="$PEERS/dapr-src-$VERSION"
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
log "building daprd (-tags stablecomponents, -p 1, nice 19) in $src"
( cd "$src" && nice -n 19 go build -p 1 -trimpath -tags stablecomponents \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$VERSION" \
    -o "$BIN.tmp" ./cmd/daprd )
mv "$BIN.tmp" "$BIN"
rm -rf "$src"
log "daprd $VERSION built in $((SECONDS - started))s: $BIN ($(du -h "$BIN" | cut -f1))"
