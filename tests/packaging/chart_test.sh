#!/usr/bin/env bash
# Helm chart tests (run by ctest, after ensure_tools.sh).
#
#   chart_test.sh valid NAME [VALUES...]   helm lint --strict; helm template | k8svalidate; every
#                                          rendered ConfigMap's handoff.yaml through `handoff validate`
#   chart_test.sh invalid FILE             lint and template must FAIL, with the message in FILE's
#                                          first line ("# expect: ..."); only template when the second
#                                          line is "# checked-by: template"
#   chart_test.sh umbrella [VALUES...]     the include-into-my-chart example (charts/examples/my-service)
#   chart_test.sh native-sidecar [VALUES...]  the rendered Deployment's lifecycle shape (Handoff an init
#                                          container with restartPolicy Always, probes, grace period >
#                                          drain + flush, Service -> sidecar port, production profile):
#                                          check_native_sidecar.py, for the chart and the umbrella example
#
# HANDOFF_BIN is the built binary. Environment variables that configs reference as ${NAME} are set
# by the caller (ctest ENVIRONMENT).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
# shellcheck source=tests/packaging/lib.sh
source "$HERE/lib.sh"
: "${HANDOFF_BIN:?set HANDOFF_BIN to the built handoff binary}"
[ -x "$HELM" ] && [ -x "$K8SVALIDATE" ] || { echo "tools missing: run ensure_tools.sh" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT


render_and_check() {  # render_and_check CHART_DIR NAME REQUIRED_KINDS [helm args...]
  local chart="$1" name="$2" kinds="$3"; shift 3
  local out="$WORK/$name"
  mkdir -p "$out/configs"
  say "helm lint --strict $name"
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$chart" "$@"
  say "helm template $name"
  "$HELM" template "test-$name" "$chart" --namespace packaging-test --kube-version "$KUBE_VERSION" "$@" >"$out/rendered.yaml"
  "$K8SVALIDATE" -require "$kinds" -extract "handoff.yaml:$out/configs" "$out/rendered.yaml"
  validate_configs "$out/configs"
  # The minimum Kubernetes version the chart declares must render the same objects.
  "$HELM" template "test-$name" "$chart" --kube-version 1.29.0 "$@" >"$out/rendered-1.29.yaml"
  "$K8SVALIDATE" -require "$kinds" "$out/rendered-1.29.yaml"
}

case "${1:-}" in
  valid)
    name="$2"; shift 2
    args=()
    for v in "$@"; do args+=(-f "$v"); done
    render_and_check "$CHART" "$name" "Deployment,ConfigMap,Service,PodDisruptionBudget" "${args[@]}"
    ;;
  invalid)
    file="$2"
    expect="$(sed -n '1s/^# expect: //p' "$file")"
    [ -n "$expect" ] || { echo "$file: first line must be '# expect: <message>'" >&2; exit 1; }
    # Schema violations fail both; the chart's own `fail` checks only fail rendering (helm lint does
    # not report template `fail` calls), marked "# checked-by: template" on the second line.
    cmds=(lint template)
    sed -n '2p' "$file" | grep -q '^# checked-by: template' && cmds=(template)
    for cmd in "${cmds[@]}"; do
      extra=(--kube-version "$KUBE_VERSION"); [ "$cmd" = lint ] && extra+=(--strict)
      set +e; out="$("$HELM" "$cmd" "${extra[@]}" "$CHART" -f "$file" 2>&1)"; rc=$?; set -e
      if [ "$rc" = 0 ]; then
        echo "$out"; say "FAIL: helm $cmd accepted $(basename "$file")"; exit 1
      fi
      if ! grep -qF -- "$expect" <<<"$out"; then
        echo "$out"; say "FAIL: helm $cmd rejected $(basename "$file") but without '$expect'"; exit 1
      fi
      say "helm $cmd rejected $(basename "$file") as expected: $(grep -F -- "$expect" <<<"$out" | head -1)"
    done
    ;;
  umbrella)
    shift
    # Work on a copy: `helm dependency build` writes charts/ and Chart.lock next to Chart.yaml.
    mkdir -p "$WORK/src/charts/examples"
    cp -a "$CHART" "$WORK/src/charts/handoff"
    cp -a "$REPO_ROOT/charts/examples/my-service" "$WORK/src/charts/examples/my-service"
    chart="$WORK/src/charts/examples/my-service"
    "$HELM" dependency build "$chart" >/dev/null
    args=()
    for v in "$@"; do args+=(-f "$v"); done
    render_and_check "$chart" umbrella "Deployment,ConfigMap,Service" "${args[@]}"
    # The parent's Deployment carries the sidecar from the named template, as a native sidecar.
    grep -q 'restartPolicy: Always' "$WORK/umbrella/rendered.yaml"
    # standalone: false: the dependency rendered none of its own objects.
    if grep -q 'name: test-umbrella-handoff$' "$WORK/umbrella/rendered.yaml"; then
      say "FAIL: the handoff dependency rendered its own objects with standalone: false"; exit 1
    fi
    ;;
  native-sidecar)
    shift
    args=()
    for v in "$@"; do args+=(-f "$v"); done
    "$HELM" template test-sidecar "$CHART" --kube-version "$KUBE_VERSION" "${args[@]}" >"$WORK/sidecar.yaml"
    "$HANDOFF_CACHE/venv/bin/python" "$HERE/check_native_sidecar.py" "$WORK/sidecar.yaml"
    mkdir -p "$WORK/src/charts/examples"
    cp -a "$CHART" "$WORK/src/charts/handoff"
    cp -a "$REPO_ROOT/charts/examples/my-service" "$WORK/src/charts/examples/my-service"
    "$HELM" dependency build "$WORK/src/charts/examples/my-service" >/dev/null
    "$HELM" template test-umbrella "$WORK/src/charts/examples/my-service" --kube-version "$KUBE_VERSION" \
      >"$WORK/umbrella.yaml"
    "$HANDOFF_CACHE/venv/bin/python" "$HERE/check_native_sidecar.py" "$WORK/umbrella.yaml"
    ;;
  *)
    echo "usage: $0 valid NAME [VALUES...] | invalid FILE | umbrella [VALUES...] | native-sidecar [VALUES...]" >&2
    exit 2 ;;
esac
say "ok"
