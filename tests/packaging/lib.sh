# Shared shell functions of the packaging tests (sourced after env.sh). Needs HANDOFF_BIN.
say() { printf '[packaging] %s\n' "$*"; }

# validate_configs DIR: `handoff validate` on every extracted config. A config with a
# `subscriptions:` section is accepted while the binary does not know that section yet, as long as
# that is its only error and the rest of the file validates without it.
validate_configs() {
  local dir="$1" f out rc
  for f in "$dir"/*.yaml; do
    set +e; out="$("$HANDOFF_BIN" validate --config "$f" 2>&1)"; rc=$?; set -e
    if [ "$rc" = 0 ]; then
      say "handoff validate: $(basename "$f") ok"
      continue
    fi
    if grep -q '^subscriptions:' "$f" && ! grep -v 'subscriptions' <<<"$out" | grep -q ':.*:.*:'; then
      # Drop the top-level subscriptions block and validate the rest.
      awk '/^subscriptions:/{skip=1; next} skip && /^[^ #-]/{skip=0} !skip' "$f" >"$f.nosubs"
      if "$HANDOFF_BIN" validate --config "$f.nosubs"; then
        say "NOTE: $(basename "$f"): this handoff does not know 'subscriptions:' yet; the rest validates"
        continue
      fi
    fi
    echo "$out" >&2
    say "FAIL: handoff validate rejected the config rendered into $(basename "$f"):"
    cat -n "$f" >&2
    return 1
  done
}

