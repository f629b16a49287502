#!/usr/bin/env bash
# Builds a real single-node Kubernetes (v1.20.2) for `make e2e-node`, from Debian bookworm's packages,
# into a cache outside the clone keyed by version; instant when cached. On top of apiserver-build.sh
# (same source tree and Go toolchain):
#   - kubelet, kube-scheduler and kube-controller-manager from Debian's `kubernetes` source package;
#   - containerd 1.6, runc and the CNI plugins from bookworm's debs, extracted (nothing is installed);
#   - the pause image (the tree's build/pause/linux/pause.c, static) as an OCI archive.
#   usage: node-build.sh      prints the node dir (bin/, root/usr/{bin,sbin,lib/cni}, images/pause.tar)
#   env:   MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
#   cost:  ~4 min cold on 2 cores after the API server (its own ~6 min), ~300 MB; instant when cached.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=1.20.2
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
DEST=$CACHE/k8s-node-$K8S_VERSION
B=$DEST/bin; R=$DEST/root/usr
built() {
  for f in "$B"/{kubelet,kube-scheduler,kube-controller-manager} "$R"/bin/{containerd,containerd-shim-runc-v2,ctr} \
    "$R"/sbin/runc "$R"/lib/cni/{bridge,host-local,loopback} "$DEST"/images/pause.tar; do [ -e "$f" ] || return 1; done
}
built && { echo "$DEST"; exit 0; }
log() { printf 'node-build: %s\n' "$*" >&2; }
APISERVER_BIN=$("$HERE/apiserver-build.sh")
AS=$(dirname "$APISERVER_BIN")                      # its source tree, Go toolchain and apt configuration
K=$AS/src/kubernetes-$K8S_VERSION
log "building kubelet, scheduler, controller-manager $K8S_VERSION and the node runtime into $DEST (first run only, ~4 min)"
mkdir -p "$B" "$DEST/images"

# Runtime debs from the API server's private apt configuration. The kubelet of 1.20 speaks CRI v1alpha2
# only, which containerd 1.6/1.7 still serve (2.x dropped it): refuse anything else now, not at run time.
if [ ! -x "$R/bin/containerd" ]; then
  export APT_CONFIG=$AS/apt/apt.conf
  apt-get -qq update
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get -qq download containerd runc containernetworking-plugins)
  for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$DEST/root"; done
fi
"$R/bin/containerd" --version | grep -Eq ' v?1\.[67]\.' || { log "need containerd 1.6/1.7 (CRI v1alpha2)"; exit 1; }

# The Go build cache lives only for this build (~1.5 GB); the binaries are what is kept.
WORK=$(mktemp -d); trap 'rm -rf "$WORK" ${tmp:+"$tmp"}' EXIT
. "$HERE/k8s-go.sh"
k8s_go_env "$AS" "$WORK/gopath" "$WORK/go-build"
mkdir -p "$GOPATH/src/k8s.io" && ln -s "$K" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
LD=$(k8s_ldflags "$K8S_VERSION")
for c in kubelet kube-scheduler kube-controller-manager; do  # CGO off is fine for all (cgroupfs driver)
  [ -x "$B/$c" ] || { go build -ldflags "$LD" -o "$B/$c.tmp" "./cmd/$c" && mv "$B/$c.tmp" "$B/$c"; }
done

# The sandbox image: no registry is ever contacted, so it is built here and imported by node-start.sh.
mkdir -p "$WORK/pause"
gcc -Os -Wall -static -DVERSION=v3.4.1 -o "$WORK/pause/pause" "$K/build/pause/linux/pause.c"
strip "$WORK/pause/pause"
python3 "$HERE/mkoci.py" "$WORK/pause" localhost/pause:local "$DEST/images/pause.tar.tmp" --entrypoint /pause >/dev/null
mv "$DEST/images/pause.tar.tmp" "$DEST/images/pause.tar"
log "done"
echo "$DEST"
