#!/usr/bin/env bash
# Debian's Sendmail (sendmail-bin) for the tests, beside Debian's Postfix. The two packages conflict
# (each is the system's mail-transport-agent), so Sendmail's binary is taken out of its package
# into .sendmail/ instead of installed; its libraries are installed, with sendmail-cf and m4, which
# build a sendmail.cf from a sendmail.mc. Prints the binary's path. Needs root the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/mta/take-out.sh
home=$PWD/.sendmail
binary=$home/usr/libexec/sendmail/sendmail

usable() { [[ -x $binary ]] && ! ldd "$binary" | grep -q "not found" && [[ -f /usr/share/sendmail/cf/m4/cf.m4 ]] \
  && command -v m4 >/dev/null; }

if ! usable; then
  if [[ $(id -u) != 0 ]]; then
    echo "Debian's sendmail-bin is needed in $home, and only root can fetch it" >&2
    exit 1
  fi
  take_out sendmail-bin "$home" sendmail-cf m4
  usable || { echo "Sendmail in $home cannot run here:" >&2; ldd "$binary" >&2; exit 1; }
fi
echo "$binary"
