#!/usr/bin/env bash
# Debian's Sendmail (sendmail-bin) for the tests, beside Debian's Postfix. The two packages conflict
# (each is the system's mail-transport-agent), so Sendmail's binary is taken out of its package
# into .sendmail/ instead of installed; its libraries are installed, with sendmail-cf and m4, which
# build a sendmail.cf from a sendmail.mc. Prints the binary's path. Needs root the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
home=$PWD/.sendmail
binary=$home/usr/libexec/sendmail/sendmail

usable() { [[ -x $binary ]] && ! ldd "$binary" | grep -q "not found" && [[ -f /usr/share/sendmail/cf/m4/cf.m4 ]] \
  && command -v m4 >/dev/null; }

if ! usable; then
  if [[ $(id -u) != 0 ]]; then
    echo "Debian's sendmail-bin is needed in $home, and only root can fetch it" >&2
    exit 1
  fi
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  chmod 755 "$download"  # apt downloads as its own user
  (cd "$download" && apt-get download -qq sendmail-bin 2>/dev/null)
  package=$(ls "$download"/sendmail-bin_*.deb)
  rm -rf "$home"
  dpkg-deb -x "$package" "$home"
  # Its libraries, from the package's own Depends (sendmail-base is the MTA's set-up, not needed to
  # run the binary with a configuration of one's own).
  libraries=$(dpkg-deb -f "$package" Depends | tr ',' '\n' | sed -E 's/^ *([^ |]+).*/\1/' | grep '^lib' || true)
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sendmail-cf m4 $libraries >/dev/null
  usable || { echo "Sendmail from $package cannot run here:" >&2; ldd "$binary" >&2; exit 1; }
fi
echo "$binary"
