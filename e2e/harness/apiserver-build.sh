#!/usr/bin/env bash
# Builds a real kube-apiserver (v1.20.2) and etcd (3.4.23) from Debian bookworm's own packages, for tests.
# The `kubernetes` source package ships the upstream tree with vendor/; Debian's golang-1.19 builds it
# offline. Nothing is installed system-wide; everything lives in a cache outside the clone, keyed by
# version, so the second run returns in well under a second.
#
#   usage: apiserver-build.sh            prints the bin dir (containing kube-apiserver, etcd, etcdctl)
#   env:   MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
#   cost:  ~6 min cold on 2 cores, ~1.5 GB of Go build cache; instant when cached.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=1.20.2
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
DEST=$CACHE/kube-apiserver-$K8S_VERSION
if [ -x "$DEST/bin/kube-apiserver" ] && [ -x "$DEST/bin/etcd" ]; then echo "$DEST/bin"; exit 0; fi
log() { printf 'apiserver-build: %s\n' "$*" >&2; }
log "building kube-apiserver $K8S_VERSION from Debian sources into $DEST (first run only, ~6 min)"

A=$DEST/apt
mkdir -p "$A"/lists/partial "$A"/cache/archives/partial "$A"/etc/sources.list.d "$A"/etc/preferences.d \
         "$DEST"/{debs,src,root,shims,gopath/src/k8s.io,cache}
# A private apt configuration over the machine's own Debian sources, with source packages enabled.
src=/etc/apt/sources.list.d/debian.sources
[ -f "$src" ] || { log "no $src: expected Debian bookworm's deb822 sources"; exit 1; }
sed 's/^Types: deb$/Types: deb deb-src/' "$src" > "$A/etc/sources.list.d/debian.sources"
: > "$A/etc/sources.list"
cat > "$A/apt.conf" <<CONF
Dir::Etc::SourceList "$A/etc/sources.list";
Dir::Etc::SourceParts "$A/etc/sources.list.d";
Dir::Etc::PreferencesParts "$A/etc/preferences.d";
Dir::State::Lists "$A/lists";
Dir::Cache "$A/cache";
CONF
export APT_CONFIG=$A/apt.conf
apt-get -qq update

cd "$DEST/src"
if [ ! -d "kubernetes-$K8S_VERSION" ]; then
  apt-get -qq source --download-only "kubernetes=$K8S_DEB_VERSION"
  tar -xzf "kubernetes_1.20.5+really$K8S_VERSION.orig.tar.gz"
fi
cd "$DEST/debs"
apt-get -qq download golang-1.19-go golang-1.19-src etcd-server etcd-client golang-github-modern-go-reflect2-dev
for d in *.deb; do dpkg-deb -x "$d" "$DEST/root"; done

K=$DEST/src/kubernetes-$K8S_VERSION
# The vendored reflect2 1.0.1 crashes with Go >= 1.18; Debian's 1.0.2 is a drop-in replacement.
rm -rf "$K/vendor/github.com/modern-go/reflect2"
cp -r "$DEST/root/usr/share/gocode/src/github.com/modern-go/reflect2" "$K/vendor/github.com/modern-go/reflect2"
# Kubernetes' code generators call `rsync -pc SRC... DST`; a plain copy does the same job.
cat > "$DEST/shims/rsync" <<'SH'
#!/bin/sh
for a; do case "$a" in -*) ;; *) set -- "$@" "$a";; esac; shift; done
exec cp -p "$@"
SH
chmod +x "$DEST/shims/rsync"

. "$HERE/k8s-go.sh"
k8s_go_env "$DEST" "$DEST/gopath" "$DEST/cache/go-build"
ln -sfn "$K" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
# zz_generated.openapi.go is not in the tarball; 1.20's own make rule generates it (GOPATH mode).
[ -f pkg/generated/openapi/zz_generated.openapi.go ] || make gen_openapi >/dev/null
LD=$(k8s_ldflags "$K8S_VERSION")
mkdir -p "$DEST/bin.tmp"
go build -ldflags "$LD" -o "$DEST/bin.tmp/kube-apiserver" ./cmd/kube-apiserver
cp "$DEST/root/usr/bin/etcd" "$DEST/root/usr/bin/etcdctl" "$DEST/bin.tmp/"
# Publish atomically: an interrupted build never looks complete.
rm -rf "$DEST/bin" && mv "$DEST/bin.tmp" "$DEST/bin"
# The Go build cache and sources are only needed to rebuild; drop the bulk of them.
rm -rf "$DEST/cache" "$DEST/gopath" "$DEST/debs"
log "done"
echo "$DEST/bin"
