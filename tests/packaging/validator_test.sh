#!/usr/bin/env bash
# The validator must reject each k8svalidate/testdata/*.yaml with the message on its first line
# ("# expect: ..."): unknown fields, wrong types, case mismatches, bad quantities, selector
# mismatches, unknown probe ports, unknown kinds, duplicate keys, invalid names.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
fail=0
for f in "$HERE"/k8svalidate/testdata/*.yaml; do
  expect="$(sed -n '1s/^# expect: //p' "$f")"
  set +e; out="$("$K8SVALIDATE" "$f" 2>&1)"; rc=$?; set -e
  if [ "$rc" = 0 ]; then
    echo "FAIL: accepted $(basename "$f")"; fail=1
  elif ! grep -qF -- "$expect" <<<"$out"; then
    echo "FAIL: $(basename "$f") rejected without '$expect':"; echo "$out"; fail=1
  else
    echo "ok: $(basename "$f") rejected: $(grep -F -- "$expect" <<<"$out" | head -1)"
  fi
done
exit "$fail"
