# Shared settings of the packaging tests (sourced). Go's caches live outside the work tree.
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
export GOPATH="$HANDOFF_CACHE/go"
export GOMODCACHE="$HANDOFF_CACHE/go/mod"
export GOCACHE="$HANDOFF_CACHE/go/cache"
export GOBIN="$HANDOFF_CACHE/bin"
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN=local
PATH="$PATH:/usr/local/go/bin"
# helm keeps its config and cache under these; keep them out of $HOME and the work tree.
export HELM_CACHE_HOME="$HANDOFF_CACHE/helm/cache"
export HELM_CONFIG_HOME="$HANDOFF_CACHE/helm/config"
export HELM_DATA_HOME="$HANDOFF_CACHE/helm/data"
HELM="$GOBIN/helm-$HELM_VERSION"
# Rebuilt whenever the validator's sources change.
_kv_hash="$(cat "$(dirname "${BASH_SOURCE[0]}")"/k8svalidate/{go.mod,go.sum,main.go,composecheck/main.go} | sha256sum | cut -c1-16)"
K8SVALIDATE="$GOBIN/k8svalidate-$_kv_hash"
COMPOSECHECK="$GOBIN/composecheck-$_kv_hash"
_df_hash="$(cat "$(dirname "${BASH_SOURCE[0]}")"/dockerfilecheck/{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)"
DOCKERFILECHECK="$GOBIN/dockerfilecheck-$_df_hash"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$REPO_ROOT/charts/handoff"
# A helm built by `go install` defaults to Kubernetes v1.20 (its release ldflags are missing): pass
# the version to render for explicitly. The chart needs >= 1.29 (native sidecars).
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
