#!/usr/bin/env bash
# `make test`: the whole suite, unit and integration, on a real Kafka broker started here (and
# stopped again on exit, also on failure). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

started_broker=0
cleanup() {
  if [[ "$started_broker" == 1 ]]; then bash deploy/kafka/kafka.sh stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Lint and types first: they take seconds and need no broker (ruff.toml, mypy.ini).
ruff check pipeline tests bench testkit
mypy

# The MTA and notice tests drive a real Postfix with swaks (Exim and Sendmail: below), the report
# page test a headless Chromium, the shipper tests rsyslog's Kafka output and kcat: Debian's
# packages, installed when missing.
packages=(postfix swaks chromium rsyslog-kafka kcat)
if ! command -v postfix >/dev/null || ! command -v swaks >/dev/null || ! command -v chromium >/dev/null \
    || ! command -v kcat >/dev/null || ! dpkg-query -W -f='${Status}' rsyslog-kafka 2>/dev/null | grep -q "ok installed"; then
  if [[ $(id -u) != 0 ]]; then
    echo "${packages[*]} are needed (apt-get install ${packages[*]}) and only root can install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# Debian's Exim and Sendmail cannot be installed beside its Postfix (each is the system's MTA):
# their binaries are taken out of the packages into .exim/ and .sendmail/.
bash deploy/mta/debian-exim.sh >/dev/null
bash deploy/mta/debian-sendmail.sh >/dev/null

if ! bash deploy/kafka/kafka.sh status >/dev/null 2>&1; then
  bash deploy/kafka/kafka.sh start
  started_broker=1
fi
pytest "$@"
