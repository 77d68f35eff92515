#!/usr/bin/env bash
# docker/compose.yaml loads with compose-go (the Compose spec's schema, interpolation, merge keys),
# its bind mounts and Dockerfile exist, and the Handoff configs it mounts pass `handoff validate`.
# (No Docker engine runs on the test machines: `docker compose up` itself is not run here.)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
# shellcheck source=tests/packaging/lib.sh
source "$HERE/lib.sh"
: "${HANDOFF_BIN:?set HANDOFF_BIN to the built handoff binary}"
[ -x "$COMPOSECHECK" ] || { echo "tools missing: run ensure_tools.sh" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$COMPOSECHECK" "$REPO_ROOT/docker/compose.yaml"
# Every config the compose file mounts into a Handoff container.
mounted="$(grep -oE '\./handoff-[a-z-]+\.yaml' "$REPO_ROOT/docker/compose.yaml" | sort -u)"
[ -n "$mounted" ] || { say "FAIL: compose.yaml mounts no Handoff config"; exit 1; }
for m in $mounted; do cp "$REPO_ROOT/docker/$m" "$WORK/"; done
validate_configs "$WORK"
say "ok"
