#!/usr/bin/env bash
# Installs the packaging test tools into $HANDOFF_CACHE/bin (outside the work tree), once:
#   helm         from the Go module proxy (helm.sh/helm/v3/cmd/helm@$HELM_VERSION)
#   k8svalidate  tests/packaging/k8svalidate, built against k8s.io/api from the Go module proxy
#   composecheck tests/packaging/k8svalidate/composecheck (compose-go, the loader of docker compose)
#   dockerfilecheck tests/packaging/dockerfilecheck (BuildKit's Dockerfile parser and lint rules)
# Idempotent: a second run only checks that both binaries exist with the expected version/sources.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
mkdir -p "$GOBIN"
command -v go >/dev/null || { echo "[packaging] Go is needed (helm and the validator come from the Go module proxy)" >&2; exit 1; }

if ! [ -x "$HELM" ] || ! "$HELM" version --short >/dev/null 2>&1; then
  echo "[packaging] installing helm $HELM_VERSION from the Go module proxy" >&2
  go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  # Keep the pinned version under its own name (another `go install` may replace $GOBIN/helm).
  cp "$GOBIN/helm" "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
fi
"$HELM" version --short

if [ ! -x "$K8SVALIDATE" ]; then
  echo "[packaging] building k8svalidate" >&2
  ( cd "$HERE/k8svalidate" && go build -o "$K8SVALIDATE.tmp" . && mv "$K8SVALIDATE.tmp" "$K8SVALIDATE" )
fi
echo "k8svalidate: $K8SVALIDATE"
if [ ! -x "$COMPOSECHECK" ]; then
  echo "[packaging] building composecheck" >&2
  ( cd "$HERE/k8svalidate" && go build -o "$COMPOSECHECK.tmp" ./composecheck && mv "$COMPOSECHECK.tmp" "$COMPOSECHECK" )
fi
echo "composecheck: $COMPOSECHECK"
if [ ! -x "$DOCKERFILECHECK" ]; then
  echo "[packaging] building dockerfilecheck (BuildKit's Dockerfile parser)" >&2
  ( cd "$HERE/dockerfilecheck" && go build -o "$DOCKERFILECHECK.tmp" . && mv "$DOCKERFILECHECK.tmp" "$DOCKERFILECHECK" )
fi
echo "dockerfilecheck: $DOCKERFILECHECK"
