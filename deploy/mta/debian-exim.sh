#!/usr/bin/env bash
# Debian's Exim (exim4-daemon-light) for the tests, beside Debian's Postfix. The two packages
# conflict (each is the system's mail-transport-agent), so Exim's binary is taken out of its
# package into .exim/ instead of installed; its libraries are installed, and the user it is built
# to run as is created. Prints the binary's path. Needs root the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
home=$PWD/.exim
binary=$home/usr/sbin/exim4

usable() { [[ -x $binary ]] && ! ldd "$binary" | grep -q "not found" && getent passwd Debian-exim >/dev/null; }

if ! usable; then
  if [[ $(id -u) != 0 ]]; then
    echo "Debian's exim4-daemon-light is needed in $home, and only root can fetch it" >&2
    exit 1
  fi
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  chmod 755 "$download"  # apt downloads as its own user
  (cd "$download" && apt-get download -qq exim4-daemon-light 2>/dev/null)
  package=$(ls "$download"/exim4-daemon-light_*.deb)
  rm -rf "$home"
  dpkg-deb -x "$package" "$home"
  # Its libraries, from the package's own Depends (the exim4-base and debconf it names are the
  # MTA's set-up, not needed to run the binary).
  libraries=$(dpkg-deb -f "$package" Depends | tr ',' '\n' | sed -E 's/^ *([^ |]+).*/\1/' | grep '^lib' || true)
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $libraries >/dev/null
  getent passwd Debian-exim >/dev/null \
    || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
  usable || { echo "Exim from $package cannot run here:" >&2; ldd "$binary" >&2; exit 1; }
fi
echo "$binary"
