#!/usr/bin/env bash
# Fetches Debian's `prometheus` package (Prometheus and promtool) and extracts its two binaries into the
# cache, keyed by the package version; nothing is installed system-wide. Prints the directory holding
# `prometheus` and `promtool`. Instant when cached.
#   env: MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
# Needs apt-get and dpkg-deb (Debian, Ubuntu). On a fresh machine whose package lists are missing,
# it runs `apt-get update` once (as root).
set -euo pipefail
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
cached() {
  for dir in "$CACHE"/prometheus-*/; do
    if [ -f "$dir.complete" ]; then echo "${dir%/}/bin"; return 0; fi
  done
  return 1
}
cached && exit 0
# Tests run in parallel: one fetches, the others wait for it.
mkdir -p "$CACHE"
exec 9>"$CACHE/.prometheus.lock"
flock 9
cached && exit 0
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || { echo "prometheus.sh: apt-get and dpkg-deb are required (Debian's prometheus package)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "prometheus.sh: fetching Debian's prometheus package" >&2
if ! apt-get download prometheus >&2 2>"$WORK/apt.err"; then
  echo "prometheus.sh: apt-get download failed ($(tail -1 "$WORK/apt.err")); running apt-get update" >&2
  apt-get update -qq >&2
  apt-get download prometheus >&2
fi
DEB=$(ls prometheus_*.deb)
# The whole Debian version (e.g. 2.42.0+ds-5+deb12u1) keys the cache.
VERSION=$(dpkg-deb -f "$DEB" Version)
DEST=$CACHE/prometheus-$VERSION
dpkg-deb -x "$DEB" root
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/bin"
cp root/usr/bin/prometheus root/usr/bin/promtool "$DEST.tmp/bin/"
"$DEST.tmp/bin/prometheus" --version >&2
"$DEST.tmp/bin/promtool" --version >/dev/null
touch "$DEST.tmp/.complete"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST/bin"
