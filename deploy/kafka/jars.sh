# shellcheck shell=bash
# Sourced by kafka.sh and cluster.sh: the Kafka jars named in pom.xml, fetched
# with maven once into a lib dir and reused from there. Both scripts default to
# <repo>/.kafka/lib, so the single broker and the cluster share one copy.
# Defines jars_fetch LIB LOGFILE WHO (WHO prefixes the messages).

JARS_POM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pom.xml"

# The stamp holds the Kafka version plus a pom hash, so bumping any version in
# the pom re-fetches, while an unchanged pom never runs mvn (offline, fast).
jars_stamp() {
  local v; v="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$JARS_POM")"
  echo "$v $(sha256sum "$JARS_POM" | cut -c1-16)"
}
jars_fetched() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$(jars_stamp)" ]]; }

jars_fetch() {
  local lib="$1" log="$2" who="$3"
  jars_fetched "$lib" && return 0
  # Two scripts may fetch into the same lib at once (a broker and the cluster
  # started together on a fresh checkout); each would delete the other's temp
  # dir. A lock on the parent dir makes the second wait and then find the jars.
  local parent fd; parent="$(dirname "$lib")"; mkdir -p "$parent"
  exec {fd}< "$parent"; flock "$fd"
  if ! jars_fetched "$lib"; then
    local t0; t0="$(date +%s.%N)"
    echo "$who: fetching $(jars_stamp | cut -d' ' -f1) jars with maven (first run takes a while)"
    # Copy into a temp dir and rename, so an interrupted fetch never looks complete.
    rm -rf "$lib" "$lib.tmp"
    mvn -q -B -f "$JARS_POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$lib.tmp" > "$log" 2>&1 \
      || { tail -n 30 "$log" >&2; echo "$who: maven fetch failed (see $log)" >&2; exit 1; }
    jars_stamp > "$lib.tmp/.stamp" && mv "$lib.tmp" "$lib"
    echo "$who: fetched $(ls "$lib"/*.jar | wc -l) jars in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
  fi
  exec {fd}<&-
}
