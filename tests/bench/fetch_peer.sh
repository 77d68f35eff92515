#!/usr/bin/env bash
# Fetches the HTTP→Kafka peer of the benchmark — Apache Camel (camel-main, the Vert.x platform-http
# server, camel-kafka, the YAML DSL) and its runtime dependencies — from Maven Central with Maven,
# into $HANDOFF_CACHE/camel-peer-<version>/libs. Idempotent. Why Camel and not the Strimzi Kafka
# Bridge: tests/bench/README.md.
set -euo pipefail
VERSION="${1:-4.22.0}"
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
DEST="$HANDOFF_CACHE/camel-peer-$VERSION"
[ -f "$DEST/libs/.complete" ] && exit 0
echo "[setup] fetching the benchmark's HTTP->Kafka peer (Apache Camel $VERSION) with Maven" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.handoff</groupId><artifactId>bench-peer-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.camel</groupId><artifactId>camel-main</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.camel</groupId><artifactId>camel-platform-http-vertx</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.camel</groupId><artifactId>camel-kafka</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.camel</groupId><artifactId>camel-yaml-dsl</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.16</version></dependency>
  </dependencies>
</project>
POM
rm -rf "$DEST/libs"
mkdir -p "$DEST/libs"
mvn -q -B -f "$work/pom.xml" -Dmaven.repo.local="$HANDOFF_CACHE/m2" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$DEST/libs"
touch "$DEST/libs/.complete"
