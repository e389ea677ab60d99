#!/usr/bin/env bash
# The main job end to end on local defaults: a local Kafka broker, `patchgate run` (a worker and
# the sink with embedded ClickHouse in one process), the bundled sample logs -> decisions (one JSON
# line each) and the servers report.
# Everything started here is stopped again on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

run_id="demo-$(date +%Y%m%d%H%M%S)"
export PATCHGATE_DATA_DIR="$PWD/.demo/$run_id"
export PATCHGATE_TOPIC_PREFIX="$run_id."
export PATCHGATE_APP_ID="patchgate-$run_id"
export PATCHGATE_WEB_PORT="${PATCHGATE_WEB_PORT:-6066}"
# The sample files are all there is: their sources end after 3 s of quiet (a live stream waits an
# hour of event time), so the decisions are what `patchgate evaluate` gives on the same files.
export PATCHGATE_SOURCE_IDLE_SECONDS="${PATCHGATE_SOURCE_IDLE_SECONDS:-3}"
mkdir -p "$PATCHGATE_DATA_DIR"

started_broker=0
worker_pid=""
cleanup() {
  if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [[ "$started_broker" == 1 ]]; then bash deploy/kafka/kafka.sh stop >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! bash deploy/kafka/kafka.sh status >/dev/null 2>&1; then
  bash deploy/kafka/kafka.sh start >&2
  started_broker=1
fi

patchgate topics >&2
patchgate run >"$PATCHGATE_DATA_DIR/worker.log" 2>&1 &
worker_pid=$!
echo "worker running (log: $PATCHGATE_DATA_DIR/worker.log)" >&2

patchgate ship deploy/samples
if ! patchgate wait --timeout 180; then
  tail -n 40 "$PATCHGATE_DATA_DIR/worker.log" >&2
  exit 1
fi

echo "== decisions (mail.decisions) ==" >&2
patchgate decisions

# The sink owns the embedded ClickHouse: the report is read through its web port.
echo "== servers report (ClickHouse, via the sink on 127.0.0.1:$PATCHGATE_WEB_PORT) ==" >&2
patchgate report
