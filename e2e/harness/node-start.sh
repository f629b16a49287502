#!/usr/bin/env bash
# Starts a real single-node Kubernetes on this host (built by node-build.sh), all state under RUN_DIR:
# etcd + kube-apiserver (apiserver-start.sh), containerd, kubelet, kube-scheduler,
# kube-controller-manager; imports the pause image and any OCI archives given; waits for the node to be
# Ready and prints the admin kubeconfig path last. Undo with node-stop.sh RUN_DIR (also after a failed
# start).
#   usage: node-start.sh RUN_DIR [IMAGE.tar...]
#   env:   NODE_NAME (e2e-node), NODE_IP (IPv4 of the default-route interface), APISERVER_PORT (16443),
#          ETCD_PORT (12379)
# What differs from a real cluster: no kube-proxy (no Service IPs, no DNS) and no masquerade. Pods reach
# each other and the host on the bridge (10.88.0.1), where the API server listens (only there): in-
# cluster clients are pointed at it (the chart's `apiServer` values), and the API server reaches Service-backed webhooks by routing to their endpoints
# (--enable-aggregator-routing). ServiceAccount admission and the token controller are on, so pods run
# with their ServiceAccount's token and RBAC applies to them.
# One instance per host (kubelet ports 10250/10248, bridge knode0 with 10.88.0.0/16, /run/containerd/s).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=$(realpath -m "${1:?usage: node-start.sh RUN_DIR [IMAGE.tar...]}"); shift
SOCK=$RUN/containerd/containerd.sock
log() { echo "[$(date +%T)] node-start: $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (mounts, network namespaces, cgroups)"
[ ${#SOCK} -lt 100 ] || die "RUN_DIR is too long for a unix socket path ($SOCK)"
ip link show knode0 >/dev/null 2>&1 && die "bridge knode0 exists: another node runs (node-stop.sh its RUN_DIR)"
# Never next to a real node: its kubelet would share (and clean up) the kubepods cgroups and the
# runtime paths, and a real node-agent's pins would be adopted by ours. Skip the node e2e there
# (MCP_GUARD_SKIP_E2E_NODE=1 for make test).
for p in /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice /sys/fs/cgroup/*/kubepods \
  /sys/fs/cgroup/*/kubepods.slice /run/containerd/containerd.sock /var/lib/kubelet /sys/fs/bpf/mcp-guard; do
  [ -e "$p" ] && die "$p exists: this host runs (or ran) Kubernetes or mcp-guard; the e2e node needs a host without them"
done
ss -Hltn 'sport = :10250' 2>/dev/null | grep -q . && die "port 10250 is in use: a kubelet runs on this host"
DEST=$("$HERE/node-build.sh"); APISERVER_BIN=$("$HERE/apiserver-build.sh")
NODE_NAME=${NODE_NAME:-e2e-node}
# The kubelet refuses a loopback node IP; the API server reaches it (logs, exec) on this address.
NODE_IP=${NODE_IP:-$(ip -4 -o addr show dev "$(ip -4 route show default | awk '{print $5; exit}')" | awk '{print $4; exit}' | cut -d/ -f1)}
[ -n "$NODE_IP" ] || die "no default route: set NODE_IP"
mkdir -p "$RUN"/{logs,state,cni}
echo "$DEST" > "$RUN/dest"                      # node-stop.sh needs ctr and the apiserver scripts' dir
export PATH=$DEST/bin:$DEST/root/usr/bin:$PATH  # containerd finds containerd-shim-runc-v2 on PATH

# Host state the kubelet (sysctls), the CNI bridge (ip_forward) and hard-coded paths change, recorded
# before the first start so that node-stop.sh undoes exactly that and nothing that was there before.
[ -f "$RUN/sysctl.saved" ] || for s in net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic \
  kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do echo "$s=$(sysctl -n $s)"; done > "$RUN/sysctl.saved"
[ -f "$RUN/created-paths.txt" ] || for p in /run/containerd /run/netns /var/log/pods /var/log/containers \
  /var/lib/kubelet /var/lib/cni /sys/fs/cgroup/kubepods $(printf '%skubepods ' /sys/fs/cgroup/*/) /sys/fs/bpf/mcp-guard; do
  [ -e "$p" ] || echo "$p"; done > "$RUN/created-paths.txt"
[ -f "$RUN/netns.before" ] || ls /run/netns 2>/dev/null > "$RUN/netns.before" || true
# The node-agent mounts the BPF filesystem with HostToContainer propagation, which the runtime allows
# only from a shared or slave mount (systemd makes mounts shared; minimal hosts and sandboxes do not).
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf && echo unmount > "$RUN/bpffs.restore"
elif [ "$(findmnt -n -o PROPAGATION /sys/fs/bpf)" = private ]; then
  mount --make-shared /sys/fs/bpf && echo private > "$RUN/bpffs.restore"
fi

# The bridge the CNI plugin would create with the first pod, created now so that the API server can
# listen on its address from the start (node-stop.sh deletes it).
ip link add knode0 type bridge && ip addr add 10.88.0.1/16 dev knode0 && ip link set knode0 up
APISERVER_BIND=10.88.0.1 APISERVER_SANS=IP:10.88.0.1 SERVICE_ACCOUNTS=1 KUBELET_CLIENT_CERT=1 \
  EXTRA_APISERVER_FLAGS="--kubelet-preferred-address-types=InternalIP,Hostname --enable-aggregator-routing=true" \
  "$HERE/apiserver-start.sh" "$APISERVER_BIN" "$RUN/cp" >/dev/null
export KUBECONFIG=$RUN/cp/kubeconfig; C=$RUN/cp/certs
log "API server ready"

render() { sed -e "s|@DEST@|$DEST|g" -e "s|@RUN@|$RUN|g" -e "s|@NODE_IP@|$NODE_IP|g" "$HERE/node/$1"; }
render containerd.toml.in > "$RUN/containerd.toml"
render 10-bridge.conflist.in > "$RUN/cni/10-bridge.conflist"
render kubelet.yaml.in > "$RUN/kubelet.yaml"

containerd --config "$RUN/containerd.toml" > "$RUN/logs/containerd.log" 2>&1 &
echo $! > "$RUN/containerd.pid"
for _ in $(seq 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -a "$SOCK" version >/dev/null 2>&1 || die "containerd did not start; see $RUN/logs/containerd.log"
for i in "$DEST/images/pause.tar" "$@"; do
  ctr -a "$SOCK" -n k8s.io images import "$i" >/dev/null || die "importing $i failed"
done
log "containerd up, $(( $# + 1 )) images imported"

kubectl delete node "$NODE_NAME" --ignore-not-found >/dev/null   # a Node left by an earlier run looks Ready
# All components use the admin token kubeconfig: fine for a throw-away test node, nothing else.
kubelet --config="$RUN/kubelet.yaml" --kubeconfig="$KUBECONFIG" \
  --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
  --root-dir="$RUN/state/kubelet" --cert-dir="$RUN/state/kubelet/pki" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2 > "$RUN/logs/kubelet.log" 2>&1 &
echo $! > "$RUN/kubelet.pid"
kube-scheduler --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
  --bind-address=127.0.0.1 --secure-port=10259 --port=0 --leader-elect=false > "$RUN/logs/kube-scheduler.log" 2>&1 &
echo $! > "$RUN/kube-scheduler.pid"
kube-controller-manager --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
  --authorization-kubeconfig="$KUBECONFIG" --bind-address=127.0.0.1 --secure-port=10257 --port=0 --leader-elect=false \
  --service-account-private-key-file="$C/sa.key" --root-ca-file="$C/ca.crt" \
  --cluster-signing-cert-file="$C/ca.crt" --cluster-signing-key-file="$C/ca.key" \
  --controllers='*,-cloud-node-lifecycle,-route,-service' > "$RUN/logs/kube-controller-manager.log" 2>&1 &
echo $! > "$RUN/kube-controller-manager.pid"

ready() { [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }
for _ in $(seq 600); do    # ~13 s, 5 of them in cAdvisor's machine detection
  ready && break
  kill -0 "$(cat "$RUN/kubelet.pid")" 2>/dev/null || die "kubelet died; see $RUN/logs/kubelet.log"
  sleep 0.1
done
ready || die "node $NODE_NAME not Ready in time; see $RUN/logs/kubelet.log"
# The token controller gives `default` its token before pods of the namespace can be admitted.
for _ in $(seq 300); do
  [ -n "$(kubectl get serviceaccount default -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ] && break; sleep 0.1
done
log "node $NODE_NAME ($NODE_IP) Ready"
echo "$KUBECONFIG"
