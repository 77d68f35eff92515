#!/usr/bin/env bash
# The container image, built and run for real (ctest packaging_image; needs root, as buildah does
# here). No Docker engine runs on the test machines: docker/build.sh builds docker/Dockerfile with
# buildah, and every check below runs the image's own files with `buildah run --isolation chroot`
# (the host's network, the image's user and environment):
#
#   - the image's configured user is not root, and a process started in it runs with uid 10001;
#   - no compiler, linker, build tool or C/C++ headers, and no build tree (/src, /build, /out, the
#     compiler cache), are in the image;
#   - its size beyond the base image (debian:12-slim) is reported, and must stay under 60 MB;
#   - `handoff version`; `handoff validate` on the chart's rendered config, on the configs the
#     Compose stack mounts, and on the image's default config;
#   - `handoff run` on the embedded broker (the image's own examples/embedded-demo.yaml): /readyz,
#     the image's HEALTHCHECK script, an `event` answered 202 whose status URL reaches `persisted`,
#     a `commit` answered 201 with its partition and offset, a 400 for a missing key; then SIGTERM
#     drains it and it exits 0.
#
#   image_test.sh [TAG]   TAG defaults to localhost/handoff:dev; the image is (re)built first
#                         unless SKIP_IMAGE_BUILD=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/packaging/env.sh
source "$HERE/env.sh"
# shellcheck source=tests/packaging/lib.sh
source "$HERE/lib.sh"
# shellcheck source=docker/store.sh
source "$REPO_ROOT/docker/store.sh"
TAG="${1:-localhost/handoff:dev}"
BASE="localhost/debian:12-slim"
MAX_BEYOND_BASE_MB=60
[ "$(id -u)" = 0 ] || { say "FAIL: buildah needs root here"; exit 1; }
[ -x "$HELM" ] && [ -x "$K8SVALIDATE" ] || { echo "tools missing: run ensure_tools.sh" >&2; exit 1; }

if [ "${SKIP_IMAGE_BUILD:-0}" != 1 ]; then
  "$REPO_ROOT/docker/build.sh" "$TAG" >/dev/null
fi

WORK="$(mktemp -d)"
containers=()
run_pid=""
cleanup() {
  [ -z "$run_pid" ] || kill -KILL "$run_pid" 2>/dev/null || true
  for c in "${containers[@]}"; do hbuildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { say "FAIL: $*"; exit 1; }

# --- the user ---------------------------------------------------------------------------------
user="$(hbuildah inspect --type image --format '{{.OCIv1.Config.User}}' "$TAG")"
case "${user%%:*}" in
  "" | 0 | root) fail "the image runs as root (USER '$user')" ;;
esac
say "image user: $user"
# The Docker image format keeps the HEALTHCHECK (OCI's has none); the command is run below.
health="$(hbuildah inspect --type image --format '{{if .Docker.Config.Healthcheck}}{{range .Docker.Config.Healthcheck.Test}}{{.}} {{end}}{{end}}' "$TAG")"
health="${health% }"
[ "$health" = "CMD /usr/local/bin/handoff-healthcheck /healthz 9901" ] || fail "the image's HEALTHCHECK is '$health'"
signal="$(hbuildah inspect --type image --format '{{.Docker.Config.StopSignal}}' "$TAG")"
[ "$signal" = SIGTERM ] || fail "the image's STOPSIGNAL is '$signal'"
say "image HEALTHCHECK: $health; STOPSIGNAL $signal"

ctr="$(hbuildah from --pull=never "$TAG")"
containers+=("$ctr")
irun() { hbuildah run --isolation chroot "$ctr" -- "$@"; }
uid="$(irun id -u)"
[ "$uid" = "${user%%:*}" ] && [ "$uid" != 0 ] || fail "a process in the image runs with uid '$uid', not ${user%%:*}"
say "a process in the image runs with uid $uid"

# --- no toolchain, no build tree ----------------------------------------------------------------
mnt="$(hbuildah mount "$ctr")"
found=()
for p in usr/bin/gcc usr/bin/g++ usr/bin/cc usr/bin/c++ usr/bin/cpp usr/bin/clang usr/bin/clang++ \
         usr/bin/ld usr/bin/as usr/bin/make usr/bin/cmake usr/bin/ninja usr/bin/ccache usr/lib/gcc \
         usr/include/c++ usr/include/stdio.h src build out var/cache/handoff/ccache; do
  if [ -e "$mnt/$p" ] || [ -L "$mnt/$p" ]; then found+=("/$p"); fi
done
[ "${#found[@]}" = 0 ] || fail "the image holds build tools or build files: ${found[*]}"
for f in "$mnt"/usr/local/bin/handoff "$mnt"/var/cache/handoff/librdkafka-*/lib/librdkafka.so.1; do
  sections="$(readelf -S --wide "$f")" || fail "${f#"$mnt"} is not an ELF file"
  if grep -qE '\.(symtab|debug_info)( |$)' <<<"$sections"; then fail "${f#"$mnt"} is not stripped"; fi
done
say "no compiler, linker, build tool, headers or build tree in the image"

# --- size ---------------------------------------------------------------------------------------
base_ctr="$(hbuildah from --pull=never "$BASE")"
containers+=("$base_ctr")
base_mnt="$(hbuildah mount "$base_ctr")"
image_bytes="$(du -sxb "$mnt" | cut -f1)"
base_bytes="$(du -sxb "$base_mnt" | cut -f1)"
beyond=$(( (image_bytes - base_bytes + 524288) / 1048576 ))
say "size: image $(( image_bytes / 1048576 )) MB, base $BASE $(( base_bytes / 1048576 )) MB, beyond the base ${beyond} MB (bound ${MAX_BEYOND_BASE_MB} MB)"
say "beyond the base: handoff $(( $(stat -c %s "$mnt/usr/local/bin/handoff") / 1024 )) KiB, librdkafka $(( $(du -sxb "$mnt/var/cache/handoff" | cut -f1) / 1024 )) KiB, Debian packages: $(comm -13 \
  <(chroot "$base_mnt" dpkg-query -W -f='${Package}\n' 2>/dev/null | sort) \
  <(chroot "$mnt" dpkg-query -W -f='${Package}\n' 2>/dev/null | sort) | tr '\n' ' ')"
[ "$beyond" -lt "$MAX_BEYOND_BASE_MB" ] || fail "the image is ${beyond} MB beyond its base (bound ${MAX_BEYOND_BASE_MB} MB)"
hbuildah umount "$base_ctr" "$ctr" >/dev/null

# --- version and validate -----------------------------------------------------------------------
irun /usr/local/bin/handoff version
mkdir -p "$WORK/cfg/chart"
"$HELM" template test-image "$CHART" --namespace packaging-test --kube-version "$KUBE_VERSION" >"$WORK/rendered.yaml"
"$K8SVALIDATE" -require ConfigMap -extract "handoff.yaml:$WORK/cfg/chart" "$WORK/rendered.yaml" >/dev/null
cp "$REPO_ROOT/docker/handoff-caller.yaml" "$REPO_ROOT/docker/handoff-receiver.yaml" "$WORK/cfg/"
chmod -R a+rX "$WORK"
# Environment variables the configs reference, set in the working container (not the image).
hbuildah config --env KAFKA_USERNAME=image-test --env KAFKA_PASSWORD=image-test-password "$ctr"
ivalidate() {  # ivalidate PATH-IN-IMAGE [bind mount]
  local out
  out="$(hbuildah run --isolation chroot -v "$WORK/cfg:/cfg:ro" "$ctr" -- /usr/local/bin/handoff validate --config "$1" 2>&1)" ||
    { echo "$out" >&2; fail "handoff validate in the image rejected $1"; }
  say "handoff validate in the image: $1 ok"
}
n=0
for f in "$WORK"/cfg/chart/*.yaml; do ivalidate "/cfg/chart/$(basename "$f")"; n=$((n + 1)); done
[ "$n" -gt 0 ] || fail "the chart rendered no handoff.yaml"
ivalidate /cfg/handoff-caller.yaml
ivalidate /cfg/handoff-receiver.yaml
ivalidate /etc/handoff/handoff.yaml

# --- run on the embedded broker ----------------------------------------------------------------
# Free loopback ports below the ephemeral range (a fixed one could collide with an outgoing socket).
read -r port admin_port < <(python3 - <<'EOF'
import random, socket
ports = []
while len(ports) < 2:
    p = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    if p not in ports:
        ports.append(p)
print(*ports)
EOF
)
hbuildah config --env HANDOFF_DEMO_PORT="$port" --env HANDOFF_DEMO_ADMIN_PORT="$admin_port" \
  --env HANDOFF_DEMO_SERVICE_PORT=9 "$ctr"
hbuildah run --isolation chroot "$ctr" -- /usr/local/bin/handoff run \
  --config /usr/share/handoff/examples/embedded-demo.yaml >"$WORK/run.log" 2>&1 &
run_pid=$!
ready=0
for _ in $(seq 1 300); do  # readiness, polled: up to 30 s
  if curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz"; then ready=1; break; fi
  kill -0 "$run_pid" 2>/dev/null || break
  sleep 0.1
done
[ "$ready" = 1 ] || { cat "$WORK/run.log" >&2; fail "handoff run in the image never became ready"; }
say "handoff run in the image: ready on 127.0.0.1:$port (admin $admin_port)"
hpid="$(pgrep -f "^/usr/local/bin/handoff run --config /usr/share/handoff/examples/embedded-demo.yaml" | head -1 || true)"
[ -n "$hpid" ] || fail "the handoff process is not visible"
huid="$(awk '/^Uid:/{print $2}' "/proc/$hpid/status")"
[ "$huid" = "$uid" ] || fail "the running handoff has uid $huid"
say "the running handoff (pid $hpid) has uid $huid"

irun /usr/local/bin/handoff-healthcheck /healthz "$admin_port" >/dev/null || fail "the image's HEALTHCHECK script failed"
say "the image's HEALTHCHECK script: /healthz ok"

code="$(curl -s -o "$WORK/event.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/events/signup" \
         -H 'X-Tenant: t-1' -H 'Content-Type: application/json' -d '{"user":"u-1"}')"
[ "$code" = 202 ] || { cat "$WORK/event.json" >&2; fail "event answered $code, not 202"; }
status_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status_url"])' "$WORK/event.json")"
state=""
for _ in $(seq 1 100); do  # the delivery report, polled: up to 10 s
  state="$(curl -s "http://127.0.0.1:$port$status_url" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))')"
  [ "$state" = persisted ] && break
  sleep 0.1
done
[ "$state" = persisted ] || fail "the event's status is '$state', not persisted"
say "event: 202, then $status_url says persisted"

code="$(curl -s -o "$WORK/commit.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/orders/eu" \
         -H 'Content-Type: application/json' -d '{"customer":{"id":"c-42"},"item":"book"}')"
[ "$code" = 201 ] || { cat "$WORK/commit.json" >&2; fail "commit answered $code, not 201"; }
python3 - "$WORK/commit.json" <<'EOF' || fail "the commit's body lacks its outcome, partition or offset"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["outcome"] == "persisted" and b["topic"] == "orders.eu", b
assert b["partition"] >= 0 and b["offset"] >= 0, b
EOF
say "commit: 201, persisted at $(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["topic"], b["partition"], b["offset"])' "$WORK/commit.json")"

code="$(curl -s -o "$WORK/bad.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/events/signup" -d '{}')"
[ "$code" = 400 ] || fail "an event without its key header answered $code, not 400"
say "event without its key: 400 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$WORK/bad.json")"

kill -TERM "$hpid"
set +e; wait "$run_pid"; rc=$?; set -e
run_pid=""
[ "$rc" = 0 ] || { tail -20 "$WORK/run.log" >&2; fail "handoff exited $rc after SIGTERM"; }
grep -q '"stopped"' "$WORK/run.log" || grep -qi 'drain' "$WORK/run.log" ||
  { tail -20 "$WORK/run.log" >&2; fail "no drain or stop line in the log"; }
say "SIGTERM: drained and exited 0"
say "ok"
