#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x (KRaft: broker and controller in one JVM),
# built from Maven Central jars so no tarball download or Docker is needed.
# Usage: kafka.sh fetch|start|stop|status|wait
# Env: PATCHGATE_KAFKA_HOME (default <repo>/.kafka), KAFKA_PORT (9092),
#      KAFKA_CONTROLLER_PORT (9093), KAFKA_START_TIMEOUT (90 s),
#      PATCHGATE_KAFKA_FRESH=1 (wipe the broker's data before start).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# Absolute, because its paths end up in server.properties and the JVM's cmdline.
HOME_DIR="$(d="${PATCHGATE_KAFKA_HOME:-$REPO/.kafka}"; mkdir -p "$d" && cd "$d" && pwd)"
LIB="$HOME_DIR/lib" DATA="$HOME_DIR/data" LOG="$HOME_DIR/broker.log" PIDFILE="$HOME_DIR/broker.pid"
: "${KAFKA_PORT:=9092}" "${KAFKA_CONTROLLER_PORT:=9093}" "${KAFKA_START_TIMEOUT:=90}"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "kafka: $*" >&2; exit 1; }

# Fetching is shared with cluster.sh (same pom, same default lib dir).
# shellcheck source=deploy/kafka/jars.sh
source "$HERE/jars.sh"
fetch() { jars_fetch "$LIB" "$HOME_DIR/fetch.log" kafka; }

# A pid file can outlive its JVM and the pid be reused, so also check the
# process really is a Kafka broker.
pid_alive() {
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
    && [[ "$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline")" == *kafka.Kafka* ]]
}
answers() { python3 "$HERE/probe.py" 127.0.0.1 "$KAFKA_PORT" 2 >/dev/null 2>&1; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The cause of a failed start sits above the shutdown noise, so show ERROR lines first.
show_log() {
  echo "kafka: $1; errors and tail of $LOG:" >&2
  grep -A1 -E '^\[[^]]*\] (ERROR|FATAL) ' "$LOG" 2>/dev/null | head -n 12 >&2 || true
  echo "..." >&2; tail -n 15 "$LOG" >&2 2>/dev/null || true
}

wait_ready() {
  local t0="${1:-$(now)}" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    pid_alive || { show_log "broker not running"; return 1; }
    answers && { echo "kafka ready on 127.0.0.1:$KAFKA_PORT in $(since "$t0")s"; return 0; }
    sleep 0.25
  done
  show_log "not ready after ${KAFKA_START_TIMEOUT}s"
  return 1
}

write_config() {
  # Static voters (not controller.quorum.bootstrap.servers + --standalone) keep
  # the controller endpoint out of the stored metadata, so changing the ports
  # later works on the same data dir.
  cat > "$HOME_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.enable=true
EOF
  # Kafka 4 logs through log4j2; without a config it would log only errors, to stdout.
  # shutdownHook=disable: log4j's own hook otherwise races Kafka's and drops
  # the broker's last shutdown lines (immediateFlush keeps the file complete).
  cat > "$HOME_DIR/log4j2.properties" <<EOF
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = $LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOF
}

start() {
  if pid_alive; then
    if [[ "${PATCHGATE_KAFKA_FRESH:-0}" == 1 ]]; then stop; else
      answers && { echo "kafka already running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$PIDFILE"))"; return 0; }
      wait_ready || exit 1; return 0  # still starting up
    fi
  fi
  # Otherwise the probe could be answered by someone else's broker on that port.
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is already in use"
  done
  fetch
  local t0; t0="$(now)"
  [[ "${PATCHGATE_KAFKA_FRESH:-0}" == 1 ]] && rm -rf "$DATA"
  write_config
  [[ -f "$LOG" ]] && mv "$LOG" "$LOG.1"  # so a failure's tail shows this run only
  local java=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
              "-Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties" -cp "$LIB/*")
  if [[ ! -f "$DATA/meta.properties" ]]; then
    # Any valid base64url UUID works as cluster id (python avoids a second JVM start), but one that
    # starts with '-' (1 in 64) reads as an option to the storage tool.
    local id; id="$(python3 -c 'import base64,uuid; print(next(i for i in iter(lambda: base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="), None) if not i.startswith("-")))')"
    "${java[@]}" kafka.tools.StorageTool format -t "$id" -c "$HOME_DIR/server.properties" >> "$LOG" 2>&1 \
      || { show_log "storage format failed"; exit 1; }
  fi
  # setsid + nohup: the broker must outlive the shell (and CI step) that started it.
  # Without job control setsid execs in place, so $! is the JVM's own pid.
  setsid nohup "${java[@]}" kafka.Kafka "$HOME_DIR/server.properties" >> "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  # $! is the subshell that goes on to exec setsid, nohup and java: until it has, its cmdline is
  # this script's, and pid_alive would take a broker that is starting for one that is not.
  for _ in $(seq 200); do
    pid_alive && break
    kill -0 $! 2>/dev/null || break
    sleep 0.05
  done
  # All or nothing: a half-started broker left behind would hold the ports.
  wait_ready "$t0" || { stop >&2; exit 1; }
}

stop() {
  pid_alive || { rm -f "$PIDFILE"; echo "kafka not running"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"; kill -TERM "$pid"
  # A clean shutdown flushes logs; only force it if it hangs.
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && { echo "kafka: pid $pid ignored SIGTERM for 30s, killing" >&2; kill -KILL "$pid"; sleep 0.5; }
  rm -f "$PIDFILE"
  echo "kafka stopped (pid $pid)"
}

status() {
  if pid_alive && answers; then echo "running"; else echo "not running"; exit 1; fi
}

case "${1:-}" in
  fetch | start | stop | status) "$1" ;;
  wait) wait_ready || exit 1 ;;
  *) echo "usage: $0 fetch|start|stop|status|wait" >&2; exit 2 ;;
esac
