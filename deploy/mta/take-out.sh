# Sourced by debian-exim.sh and debian-sendmail.sh: `take_out PACKAGE HOME [PACKAGE...]` downloads
# Debian's PACKAGE, unpacks it into HOME (replacing what was there) and installs the libraries its
# Depends names (the lib* ones: the MTA's own set-up packages are not needed to run its binary
# with a configuration of one's own) and the other PACKAGEs given. Needs root.
take_out() {
  local package=$1 home=$2
  shift 2
  local download deb libraries
  download=$(mktemp -d)
  chmod 755 "$download"  # apt downloads as its own user
  (cd "$download" && apt-get download -qq "$package" 2>/dev/null)
  deb=$(ls "$download"/"${package}"_*.deb)
  rm -rf "$home"
  dpkg-deb -x "$deb" "$home"
  libraries=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/^ *([^ |]+).*/\1/' | grep '^lib' || true)
  rm -rf "$download"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" $libraries >/dev/null
}
