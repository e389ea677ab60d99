#!/usr/bin/env bash
# Debian's Exim (exim4-daemon-light) for the tests, beside Debian's Postfix. The two packages
# conflict (each is the system's mail-transport-agent), so Exim's binary is taken out of its
# package into .exim/ instead of installed; its libraries are installed, and the user it is built
# to run as is created. Prints the binary's path. Needs root the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/mta/take-out.sh
home=$PWD/.exim
binary=$home/usr/sbin/exim4

usable() { [[ -x $binary ]] && ! ldd "$binary" | grep -q "not found" && getent passwd Debian-exim >/dev/null; }

if ! usable; then
  if [[ $(id -u) != 0 ]]; then
    echo "Debian's exim4-daemon-light is needed in $home, and only root can fetch it" >&2
    exit 1
  fi
  take_out exim4-daemon-light "$home"
  getent passwd Debian-exim >/dev/null \
    || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
  usable || { echo "Exim in $home cannot run here:" >&2; ldd "$binary" >&2; exit 1; }
fi
echo "$binary"
