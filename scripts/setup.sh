#!/usr/bin/env bash
# Installs everything Handoff needs to build, run its demo and run its tests, from nothing.
# Idempotent: a second run only checks stamps and returns in seconds.
#
#   scripts/setup.sh              Debian packages + pinned librdkafka + Kafka jars + the benchmark's
#                                 peer jars + Python test deps + the image tools (buildah, debootstrap)
#   scripts/setup.sh --build-only what building the binary needs: the build packages and librdkafka
#                                 (the image's build stage, docker/Dockerfile)
#
# Downloads and builds are cached outside the work tree in $HANDOFF_CACHE
# (default /var/cache/handoff), so a fresh clone reuses them.
set -euo pipefail

HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
LIBRDKAFKA_NPM_PACKAGE="@confluentinc/kafka-javascript"
LIBRDKAFKA_NPM_VERSION="1.10.1"      # ships librdkafka 2.15.1 under deps/librdkafka
LIBRDKAFKA_VERSION="2.15.1"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_ONLY=0
case "${1:-}" in
  "") ;;
  --build-only) BUILD_ONLY=1 ;;
  *) echo "usage: scripts/setup.sh [--build-only]" >&2; exit 2 ;;
esac
mkdir -p "$HANDOFF_CACHE"

log() { printf '[setup] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- Debian packages --------------------------------------------------------------------------
DEB_PACKAGES=(  # to build the binary (and the image's build stage)
  build-essential cmake ninja-build pkg-config git curl ca-certificates openssl python3
  libboost1.81-dev libboost-url1.81-dev
  libyaml-cpp-dev nlohmann-json3-dev doctest-dev libcli11-dev prometheus-cpp-dev libmimalloc-dev
  libssl-dev libzstd-dev liblz4-dev zlib1g-dev
  libnghttp2-dev # HTTP/2 (h2c) on the main listener (listen.http2)
  liburing-dev # the io_uring build (-DHANDOFF_IO_URING=ON; scripts/bench.sh compares it with epoll)
  ccache
)
if [ "$BUILD_ONLY" = 0 ]; then
  DEB_PACKAGES+=(  # to test, benchmark and build the image
    python3-venv openjdk-17-jre-headless maven kcat wrk
    nghttp2-client # h2load: HTTP/2 load in the tests and the benchmark
    clang libclang-rt-14-dev clang-format
    nginx linux-perf valgrind # the benchmark (scripts/bench.sh): nginx as forward peer and upstream; perf for --profile; callgrind for --instructions
    buildah debootstrap # the container image, built and run without a Docker engine (docker/build.sh)
  )
fi
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the librdkafka source tree; this machine kind ships Node.js, others get Debian's.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- librdkafka (pinned, from the source tree the npm package ships) ---------------------------
# SASL PLAIN, SCRAM and OAUTHBEARER are built into librdkafka; Cyrus libsasl2 would only add
# GSSAPI (Kerberos). `--enable-sasl` is librdkafka's alias of `--enable-gssapi` and is not given:
# it loaded libsasl2, Berkeley DB and eight SASL plugins into every process (0.75 MB resident).
LIBRDKAFKA_CONFIGURE=(--disable-curl --disable-gssapi --enable-ssl --enable-zstd --enable-lz4-ext)
# rdrand-getentropy (explained where it is applied, below); the expression itself is part of the
# cache key, so editing it rebuilds the cached copy.
LIBRDKAFKA_SEED_PATCH='s|^#if OPENSSL_VERSION_NUMBER >= 0x10101000L$|#if 0 /* handoff: seeded from getentropy(3) */|'
# A change of flags or of the patch rebuilds the cached copy, at the same prefix (the binary's RPATH,
# and the compiler cache's keys, stay the same).
LIBRDKAFKA_PREFIX="$HANDOFF_CACHE/librdkafka-$LIBRDKAFKA_VERSION"
LIBRDKAFKA_STAMP="$LIBRDKAFKA_PREFIX/.complete-$(printf '%s ' "${LIBRDKAFKA_CONFIGURE[@]}" "$LIBRDKAFKA_SEED_PATCH" |
  sha256sum | cut -c1-16)"
if [ ! -f "$LIBRDKAFKA_STAMP" ]; then
  log "building librdkafka $LIBRDKAFKA_VERSION into $LIBRDKAFKA_PREFIX"
  work="$(mktemp -d)"
  ( cd "$work"
    npm pack --silent "$LIBRDKAFKA_NPM_PACKAGE@$LIBRDKAFKA_NPM_VERSION" >/dev/null
    tar xzf ./*.tgz package/deps/librdkafka
    cd package/deps/librdkafka
    grep -q "RD_KAFKA_VERSION  *0x020f01" src/rdkafka.h || { log "unexpected librdkafka version in package"; exit 1; }
    # rdrand-getentropy: with OpenSSL >= 1.1.1 librdkafka seeds the PRNG behind its backoff
    # jitter (each thread) and draws its UUIDs from OpenSSL's RAND_priv_bytes, which starts
    # OpenSSL's library context, providers and DRBG in every process, TLS or not: about 2 MB of
    # libcrypto pages and 0.3 MB of heap, a sixth of Handoff's idle RSS. Its own fallback,
    # getentropy(3), reads the kernel's CSPRNG. TLS still uses OpenSSL (initialised when a
    # producer or consumer with an SSL security.protocol is created).
    sed -i "$LIBRDKAFKA_SEED_PATCH" src/rdrand.h
    grep -q "handoff: seeded from getentropy" src/rdrand.h || { log "librdkafka's src/rdrand.h changed: review the seed patch in setup.sh"; exit 1; }
    ./configure --prefix="$LIBRDKAFKA_PREFIX" "${LIBRDKAFKA_CONFIGURE[@]}" >/dev/null
    make -j"$(nproc)" libs >/dev/null
    make -C src install >/dev/null
    make -C src-cpp install >/dev/null )
  rm -rf "$work"
  rm -f "$LIBRDKAFKA_PREFIX"/.complete*
  touch "$LIBRDKAFKA_STAMP"
fi

if [ "$BUILD_ONLY" = 1 ]; then
  log "ready to build (cache: $HANDOFF_CACHE)"
  exit 0
fi

# --- Apache Kafka (KRaft) jars from Maven Central, for the tests -------------------------------
"$SCRIPTS_DIR/../tests/kafka/fetch_kafka.sh" "$KAFKA_VERSION"

# --- the benchmark's HTTP->Kafka peer (Apache Camel jars from Maven Central; tests/bench/README.md)
"$SCRIPTS_DIR/../tests/bench/fetch_peer.sh" 4.22.0
# (The Dapr peer is not built here: tests/bench/fetch_dapr.sh takes ~12 minutes and ~1 GB the first
# time, too much for the test command; scripts/bench.sh calls it.)

# --- Python test dependencies (a real CloudEvents SDK) ----------------------------------------
VENV="$HANDOFF_CACHE/venv"
PY_REQUIREMENTS=("cloudevents==1.12.1" "prometheus-client==0.26.0" "confluent-kafka==2.16.1" "pytest==8.3.4"
                 "jsonschema==4.23.0" "PyYAML==6.0.2"
                 "matplotlib==3.10.7"  # the bench's plot
                 "h2==4.1.0")          # HTTP/2 frames made by hand (test_http2.py's attacks)
# The stamp names the requirement set, so a changed list installs again into an existing venv.
PY_STAMP="$VENV/.complete-$(printf '%s\n' "${PY_REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$PY_STAMP" ]; then
  log "installing the Python test dependencies (CloudEvents SDK, Kafka client, pytest)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${PY_REQUIREMENTS[@]}"
  touch "$PY_STAMP"
fi
log "ready (cache: $HANDOFF_CACHE)"
