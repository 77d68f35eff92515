#!/usr/bin/env bash
# Real Apache Kafka (KRaft, combined broker+controller) on loopback, for tests and demos.
#
#   kafka.sh start DIR PORT [EXTRA]    one node: PLAINTEXT on 127.0.0.1:PORT, controller on PORT+1.
#                                      EXTRA: a file of broker properties appended to server.properties,
#                                      for more listeners (SSL, SASL_SSL): its
#                                        extra.listeners=NAME://127.0.0.1:P,...
#                                        extra.listener.security.protocol.map=NAME:SSL,...
#                                      are merged into listeners, advertised.listeners and the protocol
#                                      map (extra.advertised.listeners=NAME://127.0.0.1:Q,... advertises
#                                      other addresses for them, e.g. a relay's); every other line (listener.name.<name>.ssl.keystore.location,
#                                      ...) is appended as written. Readiness is still checked on PORT.
#   kafka.sh start-cluster DIR BASEPORT three nodes: node i (0..2) PLAINTEXT on BASEPORT+2i,
#                                      controller on BASEPORT+2i+1; RF 3, min.insync.replicas=2
#   kafka.sh start-node DIR BASEPORT I  (re)start node I (0..2) of a cluster made by start-cluster,
#                                      e.g. after a test killed it; waits until it serves metadata
#   kafka.sh stop DIR                  SIGTERM every node, bounded wait, SIGKILL fallback, rm DIR
#
# Uses Java 17 and the jars fetched by fetch_kafka.sh (called here; idempotent) in
# ${HANDOFF_CACHE:-/var/cache/handoff}/kafka-${KAFKA_VERSION:-4.1.1}/libs.
# Readiness: bounded poll (90 s) with `kcat -L` until the broker answers metadata.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
HANDOFF_CACHE="${HANDOFF_CACHE:-/var/cache/handoff}"
LIBS="$HANDOFF_CACHE/kafka-$KAFKA_VERSION/libs"
EXTRA="$HANDOFF_CACHE/kafka-$KAFKA_VERSION/extra"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
# Maven resolves slf4j-api 1.7.36 next to log4j-slf4j2-impl (nearest-wins), which leaves the
# broker with a NOP logger (no log at all). slf4j-api 2.x is fetched once into $EXTRA and put
# first on the class path.
SLF4J_VERSION=2.0.16

die() { echo "kafka.sh: $*" >&2; exit 1; }

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; else command -v java || die "java not found"; fi
}

write_log4j() { # DIR
  cat > "$1/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $1/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

# write_props NODEDIR NODE_ID PORT CTRL_PORT VOTERS BOOTSTRAP_CONTROLLERS RF MIN_ISR
write_props() {
  local d="$1" id="$2" port="$3" cport="$4" voters="$5" cboot="$6" rf="$7" isr="$8"
  cat > "$d/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$d/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
log.retention.check.interval.ms=300000
EOF
  : "$cboot"
}

# merge_extra PROPS EXTRA: see `start` above.
merge_extra() {
  local props="$1" extra="$2" listeners advertised map
  [ -f "$extra" ] || die "no such properties file: $extra"
  listeners="$(sed -n 's/^extra\.listeners=//p' "$extra")"
  advertised="$(sed -n 's/^extra\.advertised\.listeners=//p' "$extra")"
  map="$(sed -n 's/^extra\.listener\.security\.protocol\.map=//p' "$extra")"
  if [ -n "$listeners" ]; then
    sed -i -e "s|^listeners=.*|&,$listeners|" -e "s|^advertised\.listeners=.*|&,${advertised:-$listeners}|" "$props"
  fi
  if [ -n "$map" ]; then
    sed -i "s|^listener\.security\.protocol\.map=.*|&,$map|" "$props"
  fi
  grep -v '^extra\.' "$extra" >> "$props" || true
}

jvm() { # NODEDIR MAINCLASS ARGS...
  local d="$1"; shift
  "$(java_bin)" -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$d/log4j2.properties" -Dkafka.logs.dir="$d" \
    -cp "$EXTRA/*:$LIBS/*" "$@"
}

format_node() { # NODEDIR CLUSTER_ID
  local d="$1" cid="$2"
  jvm "$d" kafka.tools.StorageTool format -t "$cid" -c "$d/server.properties" --ignore-formatted \
    >"$d/format.log" 2>&1 || { cat "$d/format.log" >&2; die "storage format failed in $d"; }
}

launch_node() { # NODEDIR
  local d="$1"
  # setsid: the broker must outlive the ctest process that started it (fixture setup).
  setsid nohup "$(java_bin)" -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$d/log4j2.properties" -Dkafka.logs.dir="$d" \
    -cp "$EXTRA/*:$LIBS/*" kafka.Kafka "$d/server.properties" >>"$d/kafka.log" 2>&1 </dev/null &
  echo $! > "$d/pid"
}

wait_ready() { # NODEDIR PORT [EXPECTED_BROKERS]
  local d="$1" port="$2" want="${3:-1}" deadline=$((SECONDS + READY_TIMEOUT)) pid
  pid="$(cat "$d/pid")"
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 60 "$d/kafka.log" >&2 || true
      die "broker in $d exited during start-up"
    fi
    local n
    n="$(kcat -L -b "127.0.0.1:$port" -m 2 2>/dev/null | sed -n 's/^ *\([0-9]*\) brokers:.*/\1/p' | head -n1 || true)"
    if [ -n "$n" ] && [ "$n" -ge "$want" ]; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 60 "$d/kafka.log" >&2 || true
  die "broker on 127.0.0.1:$port not ready after ${READY_TIMEOUT}s"
}

new_cluster_id() {
  jvm /tmp kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1
}

prepare() { # DIR
  command -v kcat >/dev/null || die "kcat not found (apt-get install kcat)"
  "$HERE/fetch_kafka.sh" "$KAFKA_VERSION"
  [ -d "$LIBS" ] || die "no Kafka jars in $LIBS"
  if [ ! -f "$EXTRA/slf4j-api-$SLF4J_VERSION.jar" ]; then
    mkdir -p "$EXTRA"
    (cd /tmp && mvn -q -B -Dmaven.repo.local="$HANDOFF_CACHE/m2" dependency:copy \
      -Dartifact="org.slf4j:slf4j-api:$SLF4J_VERSION" -DoutputDirectory="$EXTRA") >&2 \
      || echo "kafka.sh: could not fetch slf4j-api $SLF4J_VERSION; broker will not log" >&2
  fi
  mkdir -p "$1"
}

start_single() { # DIR PORT [EXTRA]
  local dir="$1" port="$2" extra="${3:-}"
  if [ -n "$extra" ]; then extra="$(cd "$(dirname "$extra")" && pwd)/$(basename "$extra")"; fi
  prepare "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "kafka.sh: already running in $dir" >&2; wait_ready "$dir" "$port"; return 0
  fi
  local cport=$((port + 1))
  write_log4j "$dir"
  write_props "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" "127.0.0.1:$cport" 1 1
  if [ -n "$extra" ]; then merge_extra "$dir/server.properties" "$extra"; fi
  format_node "$dir" "$(new_cluster_id)"
  launch_node "$dir"
  wait_ready "$dir" "$port"
  echo "kafka.sh: broker ready on 127.0.0.1:$port (pid $(cat "$dir/pid"), log $dir/kafka.log)"
}

start_cluster() { # DIR BASEPORT
  local dir="$1" base="$2" i voters="" cboot=""
  prepare "$dir"
  dir="$(cd "$dir" && pwd)"
  for i in 0 1 2; do
    voters+="${voters:+,}$((i + 1))@127.0.0.1:$((base + 2 * i + 1))"
    cboot+="${cboot:+,}127.0.0.1:$((base + 2 * i + 1))"
  done
  local cid; cid="$(new_cluster_id)"
  for i in 0 1 2; do
    local d="$dir/node$i"; mkdir -p "$d"
    write_log4j "$d"
    write_props "$d" $((i + 1)) $((base + 2 * i)) $((base + 2 * i + 1)) "$voters" "$cboot" 3 2
    format_node "$d" "$cid"
  done
  for i in 0 1 2; do launch_node "$dir/node$i"; done
  for i in 0 1 2; do wait_ready "$dir/node$i" $((base + 2 * i)) 3; done
  echo "kafka.sh: 3-node cluster ready on 127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
}

running() { # PID: alive and not a zombie (a killed broker may wait for a reaper that never comes)
  kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]
}

start_node() { # DIR BASEPORT I
  local dir="$1" base="$2" i="$3"
  [ -f "$dir/node$i/server.properties" ] || die "no node $i in $dir (start-cluster first)"
  if [ -f "$dir/node$i/pid" ] && running "$(cat "$dir/node$i/pid")"; then
    die "node $i in $dir is still running (pid $(cat "$dir/node$i/pid"))"
  fi
  launch_node "$dir/node$i"
  wait_ready "$dir/node$i" $((base + 2 * i)) 1
  echo "kafka.sh: node $i ready on 127.0.0.1:$((base + 2 * i)) (pid $(cat "$dir/node$i/pid"))"
}

stop_all() { # DIR
  local dir="$1" f pid pids=()
  [ -d "$dir" ] || return 0
  while IFS= read -r f; do
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
  done < <(find "$dir" -maxdepth 2 -name pid)
  # All nodes at once: stopping a KRaft quorum one by one leaves the last ones waiting for a
  # controller that is gone.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 30))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: pid $pid did not stop in 30s, killing" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: kafka.sh start DIR PORT [EXTRA_PROPERTIES]"; start_single "$2" "$3" "${4:-}" ;;
  start-cluster) [ $# -eq 3 ] || die "usage: kafka.sh start-cluster DIR BASEPORT"; start_cluster "$2" "$3" ;;
  start-node) [ $# -eq 4 ] || die "usage: kafka.sh start-node DIR BASEPORT I"; start_node "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || die "usage: kafka.sh stop DIR"; stop_all "$2" ;;
  *) die "usage: kafka.sh start DIR PORT [EXTRA_PROPERTIES] | start-cluster DIR BASEPORT | start-node DIR BASEPORT I | stop DIR" ;;
esac
