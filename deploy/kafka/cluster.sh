#!/usr/bin/env bash
# A secured three-node Apache Kafka 4.x KRaft cluster on this machine, for tests
# and benchmarks, from the same Maven Central jars as kafka.sh (no Docker).
# Each node is broker and controller in one JVM; the three form a static quorum.
#
# Usage: cluster.sh start|stop|status|wait|fetch
#        cluster.sh start-node N|stop-node N|kill-node N|pid N     (N = 1, 2, 3)
#        cluster.sh env ROLE        export lines for a role user's client settings
#        cluster.sh admin-config    path of a Java client properties file for patchgate-admin
#        cluster.sh acls ARGS...    Kafka's AclCommand (kafka-acls.sh) as patchgate-admin
#        cluster.sh kafka-acls ARGS...  AclCommand with ARGS as given, as kafka-acls.sh runs it
# Env: PATCHGATE_CLUSTER_HOME (default <repo>/.kafka/cluster), CLUSTER_BASE_PORT
#      (29092), KAFKA_START_TIMEOUT (90 s), PATCHGATE_CLUSTER_FRESH=1 (wipe the
#      nodes' data, not the certificates or passwords, before start),
#      PATCHGATE_KAFKA_CACHE (default <repo>/.kafka: jars in its lib/, shared with kafka.sh),
#      CLUSTER_JAVA_OPTS (more JVM options for the brokers, after the defaults,
#      e.g. -Xmx2g for a benchmark).
#
# Ports on 127.0.0.1, for node N = 1..3:
#   BASE+N-1      CLIENT      SASL_SSL, SCRAM-SHA-512: what every client uses
#   BASE+100+N-1  CONTROLLER  SSL, client certificate required (KRaft quorum)
#   BASE+200+N-1  MTLS        SSL, client certificate required: inter-broker
#                             replication, and mutual-TLS clients (client.pem)
#
# Files under PATCHGATE_CLUSTER_HOME:
#   tls/ca.pem            the CA clients trust (made here with openssl on first start)
#   tls/client.pem, .key  a client certificate (principal User:patchgate-client)
#   tls/node-N.*          each node's certificate, key and PEM keystore
#   users/ROLE.password   each role user's SCRAM password: 48 hex digits, mode 600,
#                         no trailing newline
#   node-N/               server.properties, data/, broker.log, broker.pid
#   cluster.id, admin.properties
#
# Ready means: every broker accepts a SCRAM login as patchgate-admin over TLS
# (CA and hostname checked) and answers a metadata request listing all three
# brokers, i.e. all are registered with the controller quorum and unfenced.
#
# Security choices, and why:
# - Brokers talk to each other and to the controllers with mutual TLS, as
#   principal User:patchgate-broker (the CN of all three node certificates).
#   SCRAM cannot serve the controller listener in KRaft (the credentials live in
#   the metadata log the controllers serve), so the controllers need certificates
#   anyway; using the same certificates for replication gives each node one
#   identity, no broker password to keep, and keeps the SCRAM listener for
#   clients only. SASL PLAIN on the controller listener would mean a static
#   password in every server.properties instead.
# - super.users is that broker principal and patchgate-admin, nothing else.
#   Every other user, and a mutual-TLS client, needs ACLs (`cluster.sh acls`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# Absolute, because its paths end up in server.properties and the JVMs' cmdlines.
CH="$(d="${PATCHGATE_CLUSTER_HOME:-$REPO/.kafka/cluster}"; mkdir -p "$d" && cd "$d" && pwd)"
CACHE="$(d="${PATCHGATE_KAFKA_CACHE:-$REPO/.kafka}"; mkdir -p "$d" && cd "$d" && pwd)"
LIB="$CACHE/lib" TLS="$CH/tls" USERS="$CH/users"
: "${CLUSTER_BASE_PORT:=29092}" "${KAFKA_START_TIMEOUT:=90}"
NODES=(1 2 3)
ROLES=(patchgate-admin patchgate-operator patchgate-worker patchgate-sink
       patchgate-shipper patchgate-mta patchgate-notify)
ADMIN=patchgate-admin BROKER_USER=patchgate-broker
SCRAM_ITERATIONS=8192  # SCRAM-SHA-512 in Kafka accepts 4096..16384
START_T0=""

# shellcheck source=deploy/kafka/jars.sh
source "$HERE/jars.sh"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "cluster: $*" >&2; exit 1; }

client_port() { echo $((CLUSTER_BASE_PORT + $1 - 1)); }
controller_port() { echo $((CLUSTER_BASE_PORT + 100 + $1 - 1)); }
mtls_port() { echo $((CLUSTER_BASE_PORT + 200 + $1 - 1)); }
bootstrap() { local n out=(); for n in "${NODES[@]}"; do out+=("127.0.0.1:$(client_port "$n")"); done; (IFS=,; echo "${out[*]}"); }
node_dir() { echo "$CH/node-$1"; }
pidfile() { echo "$CH/node-$1/broker.pid"; }
logfile() { echo "$CH/node-$1/broker.log"; }
formatted() { [[ -f "$CH/node-$1/data/meta.properties" ]]; }
check_node() { [[ "${1:-}" =~ ^[123]$ ]] || die "node must be 1, 2 or 3 (got '${1:-}')"; }

fetch() { jars_fetch "$LIB" "$CACHE/fetch.log" cluster; }

# A live process, not a zombie left for a parent that has not reaped it yet.
running() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
# A pid file can outlive its JVM and the pid be reused, so also check the
# process really is this node's broker (not kafka.sh's, nor another node's).
pid_alive() {
  local pid; pid="$(cat "$(pidfile "$1")" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && running "$pid" \
    && [[ "$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline")" == *kafka.Kafka\ "$(node_dir "$1")/server.properties"* ]]
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Logs in as patchgate-admin over SASL_SSL and asks for metadata (see cluster_probe.py).
probe() { python3 "$HERE/cluster_probe.py" "$TLS/ca.pem" "$ADMIN" "$USERS/$ADMIN.password" 2 "$@"; }

# The cause of a failed start sits above the shutdown noise, so show ERROR lines first.
show_log() {
  local log; log="$(logfile "$1")"
  echo "cluster: node $1: $2; errors and tail of $log:" >&2
  grep -A1 -E '^\[[^]]*\] (ERROR|FATAL) ' "$log" 2>/dev/null | head -n 12 >&2 || true
  echo "..." >&2; tail -n 15 "$log" >&2 2>/dev/null || true
}

# wait_ready T0 N...: until each node N answers on its client listener with
# metadata listing all three brokers; with one node, until it lists itself.
wait_ready() {
  local t0="$1"; shift
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) n ports=() answer="" args
  for n in "$@"; do ports+=("$(client_port "$n")"); done
  if (($# == 1)); then args=(--self "$1"); else args=(--expect "${#NODES[@]}"); fi
  while ((SECONDS < deadline)); do
    for n in "$@"; do pid_alive "$n" || { show_log "$n" "broker not running"; return 1; }; done
    if answer="$(probe "${args[@]}" "${ports[@]}")"; then
      if (($# == 1)); then echo "cluster: node $1 ready on 127.0.0.1:${ports[0]} in $(since "$t0")s"
      else echo "cluster ready: $(bootstrap) (SASL_SSL, SCRAM-SHA-512), 3 brokers, in $(since "$t0")s"; fi
      return 0
    fi
    sleep 0.5
  done
  echo "$answer" >&2
  for n in "$@"; do show_log "$n" "not ready after ${KAFKA_START_TIMEOUT}s"; done
  return 1
}

# --- TLS material and users, made once --------------------------------------

# openssl's settings come from here, not the system openssl.cnf, so the
# certificates are the same on every machine.
openssl_conf() {
  cat <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# clientAuth too: a node is the client of the others' MTLS and CONTROLLER listeners.
extendedKeyUsage = serverAuth, clientAuth
# Clients connect to 127.0.0.1 with hostname verification on: the IP must be in the SAN.
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

# openssl, quiet unless it fails (x509 -req chats on stderr even when it works).
ossl() {
  openssl "$@" 2> "$TLS/.openssl.err" || { cat "$TLS/.openssl.err" >&2; die "openssl $1 failed"; }
  rm -f "$TLS/.openssl.err"
}

# sign NAME SUBJECT SECTION: a P-256 key (PKCS#8, unencrypted, mode 600) and a
# certificate signed by the CA. EC keys keep the handshakes cheap on 2 cores.
sign() {
  local name="$1" subj="$2" section="$3" conf="$TLS/.openssl.cnf"
  ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/$name.key"
  ossl req -new -config "$conf" -key "$TLS/$name.key" -subj "$subj" -out "$TLS/$name.csr"
  ossl x509 -req -in "$TLS/$name.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
    -extfile "$conf" -extensions "$section" -out "$TLS/$name.pem"
  rm -f "$TLS/$name.csr"; chmod 644 "$TLS/$name.pem"
}

make_tls() {
  local n f missing=0
  for f in ca.pem ca.key client.pem client.key node-{1,2,3}.keystore.pem; do [[ -f "$TLS/$f" ]] || missing=1; done
  ((missing)) || return 0
  local t0; t0="$(now)"
  (
    umask 077; mkdir -p "$TLS"; openssl_conf > "$TLS/.openssl.cnf"
    if [[ ! -f "$TLS/ca.pem" || ! -f "$TLS/ca.key" ]]; then
      # A new CA invalidates every certificate signed by the old one.
      rm -f "$TLS"/*.pem "$TLS"/*.key
      ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/ca.key"
      ossl req -new -x509 -config "$TLS/.openssl.cnf" -key "$TLS/ca.key" -days 3650 -sha256 \
        -subj "/O=patchgate/CN=patchgate cluster CA" -extensions ca -out "$TLS/ca.pem"
      chmod 644 "$TLS/ca.pem"
    fi
    # All three nodes share the CN, hence one broker principal (see ssl.principal.mapping.rules).
    for n in "${NODES[@]}"; do
      [[ -f "$TLS/node-$n.keystore.pem" ]] && continue
      sign "node-$n" "/O=patchgate/OU=node-$n/CN=$BROKER_USER" server
      # Kafka's PEM keystore: the private key and the certificate in one file.
      cat "$TLS/node-$n.key" "$TLS/node-$n.pem" > "$TLS/node-$n.keystore.pem"
    done
    [[ -f "$TLS/client.pem" && -f "$TLS/client.key" ]] || sign client "/O=patchgate/CN=patchgate-client" client
    rm -f "$TLS/.openssl.cnf"
    chmod 755 "$TLS"  # ca.pem and the certificates are public; the keys stay 600
  )
  echo "cluster: made a CA and certificates in $TLS in $(since "$t0")s"
}

# Passwords are made only before the first format: the SCRAM credentials are
# stored in the metadata log then, so a password made later would not match.
make_users() {
  local u made=()
  (umask 077; mkdir -p "$USERS")
  for u in "${ROLES[@]}"; do
    [[ -f "$USERS/$u.password" ]] && continue
    # Hex: nothing that needs quoting in a JAAS line or in --add-scram.
    (umask 077; openssl rand -hex 24 | tr -d '\n' > "$USERS/$u.password")
    made+=("$u")
  done
  ((${#made[@]} == 0)) || echo "cluster: made passwords in $USERS for ${made[*]}"
}

check_users() {
  local u
  for u in "${ROLES[@]}"; do
    [[ -f "$USERS/$u.password" ]] \
      || die "$USERS/$u.password is missing, but the cluster was formatted with its credentials; restore it, or start with PATCHGATE_CLUSTER_FRESH=1"
  done
}

# --add-scram arguments with salted passwords, so that no password shows in a
# process list; the same salts for all three nodes.
scram_args() {
  python3 - "$USERS" "$SCRAM_ITERATIONS" "${ROLES[@]}" <<'EOF'
import base64, hashlib, os, sys
users, iterations, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
b64 = lambda b: base64.b64encode(b).decode()
for name in names:
    with open(os.path.join(users, name + ".password"), encoding="utf-8") as f:
        password = f.read()
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    print("--add-scram")
    print(f'SCRAM-SHA-512=[name={name},iterations={iterations},salt="{b64(salt)}",saltedpassword="{b64(salted)}"]')
EOF
}

# --- configuration ----------------------------------------------------------

write_config() {
  local n="$1" d voters="" m
  d="$(node_dir "$n")"; mkdir -p "$d"
  for m in "${NODES[@]}"; do voters+="${voters:+,}$m@127.0.0.1:$(controller_port "$m")"; done
  # Static voters (not controller.quorum.bootstrap.servers), as in kafka.sh:
  # the controller endpoints stay out of the stored metadata, so the ports can
  # change later on the same data.
  cat > "$d/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=CLIENT://127.0.0.1:$(client_port "$n"),MTLS://127.0.0.1:$(mtls_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=CLIENT://127.0.0.1:$(client_port "$n"),MTLS://127.0.0.1:$(mtls_port "$n")
listener.security.protocol.map=CLIENT:SASL_SSL,MTLS:SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=MTLS
log.dirs=$d/data

# TLS on every listener, with this node's certificate. The broker is also the
# client of the other nodes' MTLS and CONTROLLER listeners with the same
# keystore, and checks their certificates' 127.0.0.1 SAN (https, the default).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/node-$n.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
ssl.endpoint.identification.algorithm=https
listener.name.mtls.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
# "CN=patchgate-broker,OU=node-1,O=patchgate" -> User:patchgate-broker, and
# "CN=patchgate-client,O=patchgate" -> User:patchgate-client; any other
# subject keeps its full DN as principal.
ssl.principal.mapping.rules=RULE:^CN=([a-z0-9-]+),(OU=[a-z0-9-]+,)?O=patchgate\$/\$1/,DEFAULT

# Clients: SCRAM-SHA-512 over TLS. The credentials come from the metadata log
# (created by kafka-storage format --add-scram); the login module has no options.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$BROKER_USER;User:$ADMIN

num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.cleaner.enable=true
EOF
  # As in kafka.sh: log4j2 to the node's file; no log4j shutdown hook, which
  # would race Kafka's and drop the last shutdown lines.
  cat > "$d/log4j2.properties" <<EOF
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = $d/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOF
}

# Class data sharing (AppCDS): a JVM started with -XX:ArchiveClassesAtExit
# writes the classes it loaded to an archive as it exits, and later JVMs of the
# same program map that archive instead of loading and verifying those classes
# again. Measured here: a broker is ready 2-3 s sooner, an AclCommand run takes
# 1.2 s instead of 2.0 s. An archive fits one JDK and one class path only, so
# it lives in the lib dir (a re-fetch drops it), under the JDK's identity; a
# JVM that cannot use one runs without it. Written under a temporary name and
# renamed only after a clean exit, so a JVM killed while writing leaves none.
CDS_QUIET="-Xlog:cds=off -Xlog:cds+dynamic=off"
cds_archive() {
  local j; j="$(readlink -f "$(command -v java)")"
  echo "$LIB/.cds/$(echo "$j $(stat -c %Y "$j")" | sha256sum | cut -c1-12)/$1.jsa"
}
# The archive a JVM writes at exit (pid's -XX:ArchiveClassesAtExit), if any.
cds_target() { tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | sed -n 's/^-XX:ArchiveClassesAtExit=//p'; }
# cds_finish WRITTEN ARCHIVE CLEAN: what a JVM wrote at exit becomes the archive if it exited cleanly.
cds_finish() {
  [[ -n "$1" ]] || return 0
  if [[ "$3" == 1 && -s "$1" ]]; then mv -f "$1" "$2"; else rm -f "$1"; fi
}

# Short-lived tool JVMs (format, AclCommand): C1 only and the serial GC start
# faster; warnings to stderr, like Kafka's own tools-log4j2.
tool_java() {
  cat > "$CH/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
  local archive="" cds=() rc=0
  # Only tools run again and again get an archive (the format runs once).
  if [[ "$1" == --cds ]]; then
    shift; archive="$(cds_archive "tool-${1##*.}")"
    if [[ -s "$archive" ]]; then read -ra cds <<< "-XX:SharedArchiveFile=$archive $CDS_QUIET"
    else mkdir -p "$(dirname "$archive")"; read -ra cds <<< "-XX:ArchiveClassesAtExit=$archive.$BASHPID.partial $CDS_QUIET"; fi
  fi
  java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true "${cds[@]}" \
    "-Dlog4j2.configurationFile=$CH/tools-log4j2.properties" -cp "$LIB/*" "$@" || rc=$?
  if [[ -n "$archive" ]]; then cds_finish "$archive.$BASHPID.partial" "$archive" "$((rc == 0))"; fi
  return "$rc"
}

write_admin_config() {
  [[ -f "$USERS/$ADMIN.password" && -f "$TLS/ca.pem" ]] || die "no cluster set up in $CH yet (run: cluster.sh start)"
  (umask 077; cat > "$CH/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN" password="$(cat "$USERS/$ADMIN.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
EOF
  )
}

# --- processes --------------------------------------------------------------

# Whether a running node is to write the brokers' class archive at its exit.
archive_pending() {
  local m pid
  for m in "${NODES[@]}"; do
    pid_alive "$m" || continue; pid="$(cat "$(pidfile "$m")")"
    [[ -n "$(cds_target "$pid")" ]] && return 0
  done
  return 1
}

launch() {
  local n="$1" d pid archive cds=(); d="$(node_dir "$n")"
  # One node at a time writes the archive (at its clean stop), the others use it once it exists.
  archive="$(cds_archive broker)"
  if [[ -s "$archive" ]]; then read -ra cds <<< "-XX:SharedArchiveFile=$archive $CDS_QUIET"
  elif ! archive_pending; then mkdir -p "$(dirname "$archive")"; read -ra cds <<< "-XX:ArchiveClassesAtExit=$archive.partial $CDS_QUIET"; fi
  # setsid + nohup: the broker must outlive the shell (and CI step) that started it.
  # Without job control setsid execs in place, so $! is the JVM's own pid.
  # shellcheck disable=SC2086  # CLUSTER_JAVA_OPTS is a list of options
  setsid nohup java -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true "${cds[@]}" ${CLUSTER_JAVA_OPTS:-} \
    "-Dlog4j2.configurationFile=$d/log4j2.properties" -cp "$LIB/*" \
    kafka.Kafka "$d/server.properties" >> "$d/broker.log" 2>&1 < /dev/null &
  pid=$!; echo "$pid" > "$(pidfile "$n")"
  # $pid is the subshell that goes on to exec setsid, nohup and java: until it has, its cmdline is
  # this script's, and pid_alive would take a broker that is starting for one that is not.
  for _ in $(seq 200); do
    pid_alive "$n" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
}

# Whether node N's broker half has finished shutting down since the last
# SIGTERM (its controller half follows; that part needs no quorum to finish).
broker_done() {
  tac "$(logfile "$1")" 2>/dev/null | awk '/Terminating process due to signal/ { exit }
    /\[BrokerServer id=[0-9]+\] Transition from SHUTTING_DOWN to SHUTDOWN/ { found = 1 }
    END { exit !found }'
}

# Nodes whose JVM is up (frozen ones count: they may still come back).
alive_count() { local n c=0; for n in "${NODES[@]}"; do pid_alive "$n" && c=$((c + 1)); done; echo "$c"; }

# stop_nodes SIGNAL N...: SIGTERM waits up to 30 s for a clean shutdown, then kills.
#
# A clean (controlled) shutdown needs the controller quorum to record it, i.e.
# two of the three controllers up; Kafka's broker otherwise waits 5 minutes
# for one. Stopping the whole cluster at once usually lets every node finish
# while all controllers are still up (one node's broker shuts down before its
# controller), but not always: when the other two are gone first, the last one
# cannot finish. So once fewer than two nodes are left, a node whose broker
# is still shutting down gets 10 s more and is then killed; its logs are
# recovered at the next start (nothing acknowledged is lost: the page cache
# keeps what it wrote). (Its controller half, once it gets there, waits 5 s
# for the others to acknowledge its resignation, then exits by itself.)
stop_nodes() {
  local sig="$1" n pid t0 lost_at=""; shift
  local -A pids=() how=() took=() dumps=()
  t0="$(now)"
  for n in "$@"; do
    if pid_alive "$n"; then
      pid="$(cat "$(pidfile "$n")")"; pids[$n]="$pid" how[$n]="SIG$sig" dumps[$n]="$(cds_target "$pid")"
      kill "-$sig" "$pid"
      # A node frozen with SIGSTOP would sit on the SIGTERM until killed.
      if [[ "$sig" == TERM ]]; then kill -CONT "$pid" 2>/dev/null || true; fi
    else
      rm -f "$(pidfile "$n")"; echo "cluster: node $n not running"
    fi
  done
  for _ in $(seq 120); do
    local left=0
    for n in "${!pids[@]}"; do
      if running "${pids[$n]}"; then left=1; elif [[ -z "${took[$n]:-}" ]]; then took[$n]="$(since "$t0")"; fi
    done
    ((left)) || break
    if [[ "$sig" == TERM && -z "$lost_at" ]] && (($(alive_count) < 2)); then lost_at=$SECONDS; fi
    if [[ -n "$lost_at" ]] && ((SECONDS - lost_at >= 10)); then
      for n in "${!pids[@]}"; do
        running "${pids[$n]}" || continue
        broker_done "$n" && continue
        echo "cluster: node $n cannot finish its controlled shutdown with fewer than 2 of 3 controllers left (Kafka would wait 5 min for a quorum); killing it" >&2
        kill -KILL "${pids[$n]}"; how[$n]="SIGTERM, then SIGKILL"
      done
      lost_at=""
    fi
    sleep 0.25
  done
  for n in $(printf '%s\n' "${!pids[@]}" | sort); do
    if running "${pids[$n]}"; then
      echo "cluster: node $n (pid ${pids[$n]}) ignored SIG$sig for 30s, killing" >&2
      kill -KILL "${pids[$n]}"; sleep 0.5; how[$n]="SIGTERM, then SIGKILL"
    fi
    rm -f "$(pidfile "$n")"
    cds_finish "${dumps[$n]}" "${dumps[$n]%.partial}" "$([[ "${how[$n]}" == SIGTERM ]] && echo 1 || echo 0)"
    echo "cluster: node $n stopped (pid ${pids[$n]}, ${how[$n]}) in ${took[$n]:-$(since "$t0")}s"
  done
}

# start_nodes N...: the given nodes, which are not running, in parallel; sets
# START_T0. Launching is its last step, so when it fails no broker was started.
start_nodes() {
  local n p scram=() need_format=()
  for n in "$@"; do
    for p in "$(client_port "$n")" "$(controller_port "$n")" "$(mtls_port "$n")"; do
      # Otherwise the probe could be answered by someone else's broker on that port.
      port_busy "$p" && die "port $p on 127.0.0.1 (node $n) is already in use"
    done
  done
  fetch
  START_T0="$(now)"
  make_tls
  for n in "${NODES[@]}"; do formatted "$n" || need_format+=("$n"); done
  if ((${#need_format[@]} == ${#NODES[@]})); then make_users; fi
  check_users
  [[ -f "$CH/cluster.id" ]] || {
    # Any valid base64url UUID works as cluster id (python avoids a JVM start), but one that
    # starts with '-' (1 in 64) reads as an option to the storage tool.
    python3 -c 'import base64,uuid; print(next(i for i in iter(lambda: base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="), None) if not i.startswith("-")))' > "$CH/cluster.id"
  }
  for n in "$@"; do
    write_config "$n"
    [[ -f "$(logfile "$n")" ]] && mv "$(logfile "$n")" "$(logfile "$n").1"  # so a failure's tail shows this run only
  done
  if ((${#need_format[@]})); then
    local t1 fpids=() i; t1="$(now)"
    mapfile -t scram < <(scram_args)
    # One JVM per node, in parallel: all with the same cluster id and users.
    for n in "${need_format[@]}"; do
      write_config "$n"
      tool_java kafka.tools.StorageTool format -t "$(cat "$CH/cluster.id")" \
        -c "$(node_dir "$n")/server.properties" "${scram[@]}" >> "$(logfile "$n")" 2>&1 &
      fpids+=($!)
    done
    for i in "${!need_format[@]}"; do
      wait "${fpids[$i]}" || { show_log "${need_format[$i]}" "storage format failed"; exit 1; }
    done
    echo "cluster: formatted node(s) ${need_format[*]} in $(since "$t1")s"
  fi
  for n in "$@"; do launch "$n"; done
}

start() {
  local n up=() down=()
  for n in "${NODES[@]}"; do if pid_alive "$n"; then up+=("$n"); else down+=("$n"); fi; done
  if [[ "${PATCHGATE_CLUSTER_FRESH:-0}" == 1 ]]; then
    ((${#up[@]} == 0)) || stop_nodes TERM "${up[@]}"
    up=() down=("${NODES[@]}")
    for n in "${NODES[@]}"; do rm -rf "$(node_dir "$n")/data"; done
    rm -f "$CH/cluster.id"
  elif ((${#down[@]} == 0)); then
    if probe --expect "${#NODES[@]}" "$(client_port 1)" "$(client_port 2)" "$(client_port 3)" > /dev/null; then
      echo "cluster already running on $(bootstrap) (pids $(for n in "${NODES[@]}"; do cat "$(pidfile "$n")"; done | xargs))"
      return 0
    fi
    wait_ready "$(now)" "${NODES[@]}" || exit 1; return 0  # still starting up
  fi
  start_nodes "${down[@]}"
  # All or nothing: a half-started cluster left behind would hold the ports.
  wait_ready "$START_T0" "${NODES[@]}" || { stop_nodes TERM "${NODES[@]}" >&2; exit 1; }
}

start_node() {
  check_node "$1"
  if pid_alive "$1"; then echo "cluster: node $1 already running (pid $(cat "$(pidfile "$1")"))"; wait_ready "$(now)" "$1" || exit 1; return 0; fi
  formatted "$1" || [[ -f "$CH/cluster.id" ]] || die "no cluster set up in $CH yet (run: cluster.sh start)"
  start_nodes "$1"
  wait_ready "$START_T0" "$1" || { stop_nodes TERM "$1" >&2; exit 1; }
}

status() {
  local n ok=1 line
  for n in "${NODES[@]}"; do
    if ! pid_alive "$n"; then echo "node $n: not running"; ok=0; continue; fi
    if line="$(probe --expect "${#NODES[@]}" "$(client_port "$n")")"; then
      echo "node $n: running, pid $(cat "$(pidfile "$n")"), ${line#probe }"
    else
      echo "node $n: running, pid $(cat "$(pidfile "$n")"), not ready: ${line#probe }"; ok=0
    fi
  done
  if ((ok)); then echo "running"; else echo "not running (or not all nodes ready)"; exit 1; fi
}

print_env() {
  local role="${1:-}" r known=0
  for r in "${ROLES[@]}"; do [[ "$r" == "$role" ]] && known=1; done
  ((known)) || die "unknown role '$role' (one of: ${ROLES[*]})"
  [[ -f "$USERS/$role.password" ]] || die "no password for $role in $USERS (run: cluster.sh start)"
  # Plain values as they are (no backslash before the commas, as %q would
  # write), anything else single-quoted: the lines read well and eval safely.
  local name value
  while read -r name value; do
    if [[ "$value" =~ ^[A-Za-z0-9_./:,@+=-]+$ ]]; then echo "export $name=$value"
    else echo "export $name='${value//\'/\'\\\'\'}'"; fi
  done < <(printf '%s %s\n' \
    KAFKA_BOOTSTRAP_SERVERS "$(bootstrap)" \
    KAFKA_SECURITY_PROTOCOL SASL_SSL \
    KAFKA_SASL_MECHANISM SCRAM-SHA-512 \
    KAFKA_SASL_USERNAME "$role" \
    KAFKA_SASL_PASSWORD_FILE "$USERS/$role.password" \
    KAFKA_SSL_CAFILE "$TLS/ca.pem")
}

acls() {
  fetch >&2
  write_admin_config
  # All three brokers, the first one first: a tool started while node 1 is
  # down (fault tests) still reaches the cluster.
  tool_java --cds org.apache.kafka.tools.AclCommand --bootstrap-server "$(bootstrap)" \
    --command-config "$CH/admin.properties" "$@"
}

# What Kafka's bin/kafka-acls.sh runs, with ARGS as given (bootstrap server and
# command config included): `patchgate kafka-acls` prints such lines.
kafka_acls() {
  fetch >&2
  tool_java --cds org.apache.kafka.tools.AclCommand "$@"
}

usage() {
  echo "usage: $0 start|stop|status|wait|fetch | start-node N|stop-node N|kill-node N|pid N | env ROLE | admin-config | acls ARGS... | kafka-acls ARGS..." >&2
  exit 2
}

cmd="${1:-}"; shift || true
case "$cmd" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_nodes TERM "${NODES[@]}" ;;
  status) status ;;
  wait) wait_ready "$(now)" "${NODES[@]}" || exit 1 ;;
  start-node) start_node "${1:-}" ;;
  stop-node) check_node "${1:-}"; stop_nodes TERM "$1" ;;
  kill-node) check_node "${1:-}"; stop_nodes KILL "$1" ;;
  pid) check_node "${1:-}"; pid_alive "$1" || die "node $1 not running"; cat "$(pidfile "$1")" ;;
  env) print_env "${1:-}" ;;
  admin-config) write_admin_config; echo "$CH/admin.properties" ;;
  acls) acls "$@" ;;
  kafka-acls) kafka_acls "$@" ;;
  *) usage ;;
esac
