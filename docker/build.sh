#!/usr/bin/env bash
# Builds the Handoff image from docker/Dockerfile with buildah: no Docker engine and no image
# registry needed. The Dockerfile stays an ordinary one (`FROM debian:12`, `docker build` works
# with it elsewhere); what this script adds is the base images, made here from Debian's own
# packages when they are missing:
#
#   localhost/debian:12       debootstrap --variant=minbase bookworm, apt caches and lists removed
#   localhost/debian:12-slim  the same without documentation, manual pages and locales (and dpkg
#                             told not to install them), as Debian's own -slim images do
#
# The mirror is the one this machine's apt uses. With --pull=never buildah resolves the
# Dockerfile's short names `debian:12` and `debian:12-slim` to these local images.
#
#   docker/build.sh [TAG]          build (default tag localhost/handoff:dev); prints the image ID
#   docker/build.sh --base-only    only make the base images
#   REBUILD_BASE=1 docker/build.sh make the base images again (e.g. for Debian's point releases)
#
# The images live in a buildah store of Handoff's own (docker/store.sh, under $HANDOFF_CACHE). After
# a build, what it left behind is pruned from that store: the build stage's images (gigabytes of
# toolchain) do not accumulate. The compiler cache is a cache mount and survives, so a rebuild
# recompiles only what changed and takes a few minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="localhost/handoff:dev"
BASE_ONLY=0
case "${1:-}" in
  --base-only) BASE_ONLY=1 ;;
  "") ;;
  -*) echo "usage: docker/build.sh [TAG] | --base-only" >&2; exit 2 ;;
  *) TAG="$1" ;;
esac
log() { printf '[image] %s\n' "$*" >&2; }
# shellcheck source=docker/store.sh
source "$ROOT/docker/store.sh"

# --- tools (Debian's buildah and debootstrap; scripts/setup.sh installs them too) ---------------
missing=()
for p in buildah debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

image_exists() { hbuildah inspect --type image "$1" >/dev/null 2>&1; }

# The Debian mirror apt uses here (deb822 or one-line sources), for debootstrap.
debian_mirror() {
  local m
  m="$(awk '/^Types:/{deb=($0 ~ /[[:space:]]deb([[:space:]]|$)/)} deb && /^URIs:/{print $2; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [ -z "$m" ]; then
    m="$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
          /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 || true)"
  fi
  [ -n "$m" ] || { log "no Debian mirror found in apt's sources"; return 1; }
  printf '%s\n' "$m"
}

# commit_rootfs DIR NAME: an image of the directory tree DIR, named NAME.
commit_rootfs() {
  local dir="$1" name="$2" ctr mnt
  ctr="$(hbuildah from scratch)"
  mnt="$(hbuildah mount "$ctr")"
  tar -C "$dir" -c . | tar -C "$mnt" -x
  hbuildah umount "$ctr" >/dev/null
  hbuildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --os linux --arch amd64 "$ctr"
  hbuildah commit --rm -q "$ctr" "$name" >/dev/null
}

make_base() {
  if [ "${REBUILD_BASE:-0}" != 1 ] && image_exists localhost/debian:12 && image_exists localhost/debian:12-slim; then
    return 0
  fi
  local mirror work
  mirror="$(debian_mirror)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "making the base images with debootstrap (bookworm, minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; return 1; }
  rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/*
  # As in Debian's images: apt keeps neither downloaded packages nor its binary caches (~75 MB
  # after an update) in a layer.
  cat >"$work/root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Keep-Downloaded-Packages "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  commit_rootfs "$work/root" localhost/debian:12
  # -slim: dpkg leaves documentation, manual pages and translations out, now and for every later
  # package (copyright files stay).
  cat >"$work/root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  find "$work/root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$work/root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$work/root"/usr/share/man/* "$work/root"/usr/share/info/* "$work/root"/usr/share/lintian/*
  find "$work/root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  commit_rootfs "$work/root" localhost/debian:12-slim
  log "base images: localhost/debian:12, localhost/debian:12-slim"
}

make_base
[ "$BASE_ONLY" = 1 ] && exit 0

log "building $TAG from docker/Dockerfile"
start=$(date +%s)
# The host's CA bundle, as the build-time secret `build-ca` (see the Dockerfile): the machine may
# reach package registries through a TLS-intercepting proxy whose CA only the host trusts.
secret=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then secret=(--secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt); fi
# --format docker: the OCI format has no HEALTHCHECK; --force-rm: no working container is left
# behind by a failed step.
hbuildah bud --isolation chroot --layers --pull=never --format docker --force-rm "${secret[@]}" \
  --ignorefile "$ROOT/docker/Dockerfile.dockerignore" \
  -f "$ROOT/docker/Dockerfile" -t "$TAG" "$ROOT" >&2
log "built $TAG in $(( $(date +%s) - start )) s"
# Storage stays bounded: what this build leaves behind (the build stage's images are gigabytes:
# the toolchain and the build packages; an image the tag moved away from) is removed from the
# store. The compiler cache (a cache mount) and the base images stay, so the next build takes a few
# minutes. Pruning is housekeeping: an image that a container still uses (another build or test
# running on the same store, or one left by a run that was killed) is kept, with a warning, and the
# build still succeeds.
if ! prune_err="$(hbuildah rmi --prune 2>&1 >/dev/null)"; then
  log "not everything was pruned (kept what is in use): ${prune_err//$'\n'/ }"
fi
hbuildah inspect --type image --format '{{.FromImageID}}' "$TAG"
