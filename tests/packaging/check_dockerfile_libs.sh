#!/usr/bin/env bash
# Checks docker/Dockerfile against the built binary:
#  - the runtime stage's `apt-get install` list holds the Debian package of every shared library
#    that `ldd $HANDOFF_BIN` lists (found with `dpkg -S`); librdkafka, which is the pinned build in
#    $HANDOFF_CACHE, must instead be copied to the same path (the binary's RPATH);
#  - the build stage runs the same scripts as CI (scripts/setup.sh and scripts/build.sh);
#  - the runtime stage runs as a non-root user, exposes 8080 and 9901 and has a HEALTHCHECK.
set -euo pipefail
# --self-test: the check must fail on a copy of the Dockerfile that lacks one of the packages.
if [ "${1:-}" = --self-test ]; then
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  tmp="$(mktemp)"; trap 'rm -f "$tmp"' EXIT
  pkg="$(sed -n '/AS runtime/,$p' "$here/../../docker/Dockerfile" | grep -oE '^ +lib[a-z0-9.+-]+ +\\$' | grep -v libc6 | head -1 | tr -d ' \\')"
  [ -n "$pkg" ] || { echo "FAIL: no library package found in the runtime stage" >&2; exit 1; }
  sed "/^ *$pkg *\\\\$/d" "$here/../../docker/Dockerfile" >"$tmp"
  if DOCKERFILE="$tmp" "$0" >/dev/null 2>&1; then echo "FAIL: the check passed without $pkg" >&2; exit 1; fi
  out="$(DOCKERFILE="$tmp" "$0" 2>&1 || true)"
  if ! grep -q "package '$pkg'" <<<"$out"; then
    echo "FAIL: the check did not name the missing package $pkg" >&2; exit 1
  fi
  echo "ok: without $pkg the check fails and names it"
  exit 0
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DOCKERFILE="${DOCKERFILE:-$ROOT/docker/Dockerfile}"
: "${HANDOFF_BIN:?set HANDOFF_BIN to the built handoff binary}"
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

# Split the Dockerfile into stages (joined continuation lines, comments dropped).
joined="$(sed -e 's/[[:space:]]*#.*$//' "$DOCKERFILE" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')"
stage() {  # stage NAME: the instructions of the stage "FROM ... AS NAME"
  awk -v name="$1" 'toupper($1)=="FROM" { on = (tolower($NF)==name) } on' <<<"$joined"
}
build="$(stage build)"
runtime="$(stage runtime)"
[ -n "$build" ] || bad "no 'FROM ... AS build' stage"
[ -n "$runtime" ] || bad "no 'FROM ... AS runtime' stage"
grep -q '^FROM debian:12-slim' <<<"$runtime" || bad "runtime stage is not debian:12-slim"

# -- the build stage calls the CI scripts ----------------------------------------------------
# CI runs .ci/run -> scripts/test.sh, which sets up with scripts/setup.sh and builds with scripts/build.sh.
for s in scripts/setup.sh scripts/build.sh; do
  grep -qE "^RUN( |.*[ ;&|])(\./)?$s" <<<"$build" || bad "the build stage does not RUN $s"
  grep -q "$s" "$ROOT/scripts/test.sh" || bad "scripts/test.sh (CI) no longer calls $s: keep the image on the CI path"
done

# -- the runtime stage's package list ----------------------------------------------------------
packages="$(grep -E '^RUN .*apt-get install' <<<"$runtime" \
  | sed -e 's/.*apt-get install//' -e 's/&&.*//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u)"
[ -n "$packages" ] || bad "no apt-get install in the runtime stage"
echo "runtime packages: $(tr '\n' ' ' <<<"$packages")"

package_of() {  # the Debian package that owns a library path
  local lib="$1" p cand
  for cand in "$lib" "$(readlink -f "$lib")" "${lib#/usr}" "/usr$lib"; do
    p="$(dpkg -S "$cand" 2>/dev/null | head -1 | cut -d: -f1)" && [ -n "$p" ] && { echo "$p"; return; }
  done
  p="$(dpkg -S "*/$(basename "$lib")" 2>/dev/null | head -1 | cut -d: -f1)"
  echo "$p"
}

ldd_out="$(ldd "$HANDOFF_BIN")"
echo "$ldd_out"
if grep -q 'not found' <<<"$ldd_out"; then bad "ldd: a library is not found on this machine"; fi
while read -r name path; do
  [ -n "$path" ] || continue
  case "$path" in
    */librdkafka-*/lib/*)
      dir="$(dirname "$path")"
      grep -qE "^COPY --from=build .*" <<<"$runtime" || bad "runtime stage copies nothing from the build stage"
      # The build stage stages librdkafka under /out$HANDOFF_CACHE/librdkafka-X/lib, copied to / at runtime.
      ver_dir="$(basename "$(dirname "$dir")")"
      grep -qE "cp .*librdkafka-?[^ ]*/lib/librdkafka\\*?\\.so\\* .*/out.*$ver_dir/lib" <<<"$build" \
        || grep -qE "COPY --from=build .*$ver_dir/lib" <<<"$runtime" \
        || bad "$name comes from $dir, but the image does not copy $ver_dir/lib to that path"
      grep -qE '^ENV HANDOFF_CACHE=/var/cache/handoff' <<<"$build" && [ "${dir#/var/cache/handoff/}" != "$dir" ] \
        || bad "$name is at $dir; the image puts it under /var/cache/handoff (build with HANDOFF_CACHE=/var/cache/handoff)"
      echo "ok  $name -> copied from the build stage ($dir)"
      continue ;;
  esac
  pkg="$(package_of "$path")"
  if [ -z "$pkg" ]; then bad "$name ($path): no Debian package owns it"; continue; fi
  if grep -qx "$pkg" <<<"$packages"; then
    echo "ok  $name -> $pkg"
  else
    bad "$name ($path) is in Debian package '$pkg', which the runtime stage does not install"
  fi
done < <(awk '/=>/ { if ($3 ~ /^\//) print $1, $3; next } $1 ~ /^\// { print $1, $1 }' <<<"$ldd_out" | grep -v 'ld-linux')

# The dynamic loader itself is libc6's.
grep -qx libc6 <<<"$packages" || bad "libc6 (the dynamic loader) is not in the runtime package list"

# -- runtime hygiene -----------------------------------------------------------------------------
grep -qE '^USER +[^0r]' <<<"$runtime" || bad "runtime stage does not switch to a non-root USER"
grep -qE '^EXPOSE .*\b8080\b' <<<"$runtime" || bad "runtime stage does not EXPOSE 8080"
grep -qE '^EXPOSE .*\b9901\b' <<<"$runtime" || bad "runtime stage does not EXPOSE 9901"
grep -qE '^HEALTHCHECK ' <<<"$runtime" || bad "runtime stage has no HEALTHCHECK"
if grep -qE 'apt-get install' <<<"$runtime" && ! grep -q 'rm -rf /var/lib/apt/lists' <<<"$runtime"; then
  bad "runtime stage keeps the apt lists"
fi

if [ "$fail" != 0 ]; then exit 1; fi
echo "Dockerfile runtime stage provides every shared library of $(basename "$HANDOFF_BIN")"
