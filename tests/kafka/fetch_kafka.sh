#!/usr/bin/env bash
# Fetches the Apache Kafka broker jars (KRaft) and their runtime dependencies from Maven Central
# with Maven, into $HANDOFF_CACHE/kafka-<version>/libs. Idempotent.
set -euo pipefail
VERSION="${1:-4.1.1}"
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
DEST="$HANDOFF_CACHE/kafka-$VERSION"
[ -f "$DEST/.complete" ] && exit 0
echo "[setup] fetching Apache Kafka $VERSION jars with Maven" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.handoff</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.16</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
mkdir -p "$DEST/libs"
mvn -q -B -f "$work/pom.xml" -Dmaven.repo.local="$HANDOFF_CACHE/m2" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$DEST/libs"
touch "$DEST/.complete"
