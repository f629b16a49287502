# Sourced by apiserver-build.sh and node-build.sh: how both compile Debian's Kubernetes tree offline.
#   k8s_go_env GO_DEST GOPATH GOCACHE   Go 1.19 and the shims extracted under GO_DEST (the API server's
#                                       build dir), GOPATH mode, nothing fetched, CGO off
#   k8s_ldflags VERSION                 prints the -ldflags that stamp VERSION as upstream's builds do
k8s_go_env() {
  export GOROOT=$1/root/usr/lib/go-1.19 GOPATH=$2 GOCACHE=$3
  export PATH=$GOROOT/bin:$1/shims:$PATH GO111MODULE=off GOFLAGS= GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=0
}
k8s_ldflags() {
  local ld="-s -w" p
  for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$1 -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean"
  done
  echo "$ld"
}
