#!/usr/bin/env bash
# Builds the Strimzi Kafka Bridge — the benchmark's third HTTP→Kafka peer — from a source tree
# obtained by hand, into $HANDOFF_CACHE/peers/strimzi-kafka-bridge-<version>; then
#   STRIMZI_BRIDGE_HOME=$HANDOFF_CACHE/peers/strimzi-kafka-bridge-0.33.1 scripts/bench.sh
# measures it. Neither the bridge nor its source is served by the registries this project reaches
# (io.strimzi:kafka-bridge is not on the Maven registry here), so this is not part of set-up.
#
#   tests/bench/build_strimzi_bridge.sh SRC   SRC: the bridge's source at tag 0.33.1 (e.g. a
#                                             `git archive 0.33.1` of github.com/strimzi/strimzi-kafka-bridge)
#
# 0.33.1 is the last release built for Java 17 (1.x needs Java 21, which Debian 12 does not ship).
# On a copy of SRC it drops from pom.xml what the Maven registry here does not serve, none of it on
# the HTTP → producer path: io.strimzi:kafka-oauth-client (OAuth SASL login callbacks, loaded only
# by class name from a Kafka config; no bridge source imports it) and io.strimzi:strimzi-test-container
# (test scope; tests are not built). No Java source is changed. Then `mvn package` without tests,
# checkstyle, spotbugs and dependency analysis (~1 min, dependencies from Maven Central).
set -euo pipefail
SRC="${1:?usage: build_strimzi_bridge.sh SRC (the bridge source at tag 0.33.1)}"
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
VERSION="$(sed -n 's:^\t<version>\(.*\)</version>:\1:p' "$SRC/pom.xml" | head -n1)"
[ "$VERSION" = 0.33.1 ] || echo "[strimzi] warning: source is version '$VERSION', the recipe is for 0.33.1" >&2
DEST="$HANDOFF_CACHE/peers/strimzi-kafka-bridge-$VERSION"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$SRC/." "$work/"
python3 - "$work/pom.xml" <<'PY'
import re, sys
path = sys.argv[1]
pom = open(path).read()
for artifact in ("kafka-oauth-client", "strimzi-test-container"):
    dep = re.compile(r"\s*<dependency>\s*<groupId>io\.strimzi</groupId>\s*<artifactId>" + artifact
                     + r"</artifactId>.*?</dependency>", re.S)
    pom, n = dep.subn("", pom, count=1)
    if n != 1:
        sys.exit(f"pom.xml: no io.strimzi:{artifact} dependency to drop")
    pom = re.sub(r"\s*<ignoredUnusedDeclaredDependency>io\.strimzi:" + artifact + r"</ignoredUnusedDeclaredDependency>",
                 "", pom)
open(path, "w").write(pom)
PY
echo "[strimzi] building the Kafka Bridge $VERSION (mvn package, no tests)" >&2
( cd "$work" && nice -n 19 mvn -q -B -T1 -Dmaven.repo.local="$HANDOFF_CACHE/m2" package -Dmaven.test.skip=true \
    -Dcheckstyle.skip -Dspotbugs.skip -Dmdep.analyze.skip=true -Dmaven.javadoc.skip=true )
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
cp -r "$work/target/kafka-bridge-$VERSION/kafka-bridge-$VERSION" "$DEST"
echo "[strimzi] built: STRIMZI_BRIDGE_HOME=$DEST" >&2
