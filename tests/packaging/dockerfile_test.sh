#!/usr/bin/env bash
# docker/Dockerfile parses with BuildKit's Dockerfile frontend and passes its lint rules (no Docker
# engine runs on the test machines, so this is what `docker build` would reject before building);
# and the check itself rejects a broken copy.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
[ -x "$DOCKERFILECHECK" ] || { echo "tools missing: run ensure_tools.sh" >&2; exit 1; }
"$DOCKERFILECHECK" "$REPO_ROOT/docker/Dockerfile"
tmp="$(mktemp)"; trap 'rm -f "$tmp"' EXIT
sed 's/COPY --from=build/COPY --from=no-such-stage/' "$REPO_ROOT/docker/Dockerfile" >"$tmp"
if "$DOCKERFILECHECK" "$tmp" 2>/dev/null; then echo "FAIL: a COPY --from of an unknown stage passed" >&2; exit 1; fi
echo "ok: a broken copy is rejected"
