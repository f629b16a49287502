#!/usr/bin/env bash
# Stops what node-start.sh started in RUN_DIR and undoes its host changes, touching only what it
# recorded: processes by pid file (checked to still be ours), shims of our containerd socket, mounts
# under RUN_DIR, network namespaces created since the start, bridge knode0 and its veths, kubepods
# cgroups, BPF pins and fixed host paths that did not exist before, sysctls the kubelet and the bridge
# plugin changed; then etcd and the API server.
#   usage: node-stop.sh RUN_DIR [--purge]   (--purge also deletes RUN_DIR: certificates, etcd, logs)
#   ~15 s with pods running (they are deleted gracefully first), a few seconds otherwise.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=$(realpath -m "${1:?usage: node-stop.sh RUN_DIR [--purge]}"); PURGE=${2:-}
[ -d "$RUN" ] || exit 0
# Only a run dir node-start.sh made (it writes `dest` first), or an empty one: never anything else.
[ -f "$RUN/dest" ] || [ -z "$(ls -A "$RUN")" ] || { echo "node-stop: $RUN is not a node run dir (no dest file)" >&2; exit 1; }
DEST=$(cat "$RUN/dest" 2>/dev/null || echo /nonexistent); SOCK=$RUN/containerd/containerd.sock
export PATH=$DEST/bin:$DEST/root/usr/bin:$PATH KUBECONFIG=$RUN/cp/kubeconfig
CTR="ctr -a $SOCK -n k8s.io"
# PID 1 in some sandboxes reaps orphans only every few seconds: a zombie counts as stopped.
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
stop_pid() {  # NAME: only if the pid still runs with our RUN_DIR on its command line (pids get reused)
  local f=$RUN/$1.pid pid; [ -f "$f" ] || return 0; pid=$(cat "$f")
  if alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$RUN/"; then
    kill -TERM "$pid"; for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid"; echo "stopped $1 ($pid)"
  fi
  rm -f "$f"
}
# 1. Controllers first (a DaemonSet or ReplicaSet would re-create pods), then the pods while the kubelet
#    runs, so that it tears the sandboxes down properly (CNI DEL frees addresses and veths).
stop_pid kube-controller-manager; stop_pid kube-scheduler
if [ -f "$RUN/kubelet.pid" ] && alive "$(cat "$RUN/kubelet.pid")"; then
  kubectl delete pods --all --all-namespaces --grace-period=1 --timeout=30s >/dev/null 2>&1 && echo "pods deleted"
  for _ in $(seq 30); do [ -S "$SOCK" ] && [ -n "$($CTR tasks ls -q 2>/dev/null)" ] || break; sleep 1; done
fi
stop_pid kubelet
# 2. Whatever containerd still runs (the kubelet was killed early, or the wait timed out).
if [ -S "$SOCK" ] && $CTR version >/dev/null 2>&1; then   # (ctr waits ~10 s for a missing socket)
  T=$($CTR tasks ls -q); for t in $T; do $CTR tasks kill -s SIGKILL "$t"; done; [ -n "$T" ] && sleep 1
  for t in $($CTR tasks ls -q); do $CTR tasks delete -f "$t" >/dev/null; done
  for c in $($CTR containers ls -q); do $CTR containers delete "$c"; done
fi
stop_pid containerd
# Shims outlive containerd by design; ours carry our socket on their command line.
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK( |$)"); do kill -KILL "$p" && echo "stopped shim $p"; done
sleep 0.5
# 3. Mounts under RUN_DIR (rootfs overlays, volumes, the kubelet's own bind mount, shm), deepest first.
for m in $(awk '{print $5}' /proc/self/mountinfo | grep "^$RUN/" | sort -r); do umount -l "$m" && echo "umount $m"; done
# 4. Network: our sandboxes' namespaces (those not there before), the bridge's veths, the bridge.
for ns in /run/netns/cni-*; do
  [ -e "$ns" ] && ! grep -qx "$(basename "$ns")" "$RUN/netns.before" 2>/dev/null || continue
  umount "$ns" 2>/dev/null; rm -f "$ns" && echo "removed $ns"
done
for v in $(ip -o link show master knode0 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v"; done
ip link show knode0 >/dev/null 2>&1 && ip link del knode0 && echo "deleted bridge knode0"
rm -rf "$RUN/state/cni-ipam"          # host-local reservations of pods that are gone
# 5. kubepods cgroups (rmdir, deepest first), BPF pins (removing a link's pin detaches it) and fixed
#    host paths: only those that did not exist before the start.
while read -r p; do
  [ -e "$p" ] || continue
  case $p in /sys/fs/cgroup/*) find "$p" -depth -type d -exec rmdir {} + 2>/dev/null ;; *) rm -rf "$p" ;; esac
  [ -e "$p" ] && echo "WARN: could not remove $p" || echo "removed $p"
done < <(cat "$RUN/created-paths.txt" 2>/dev/null)
# 6. Sysctls set by the kubelet (vm.overcommit_memory, kernel.panic*) and the bridge plugin (ip_forward).
while IFS== read -r k v; do
  [ "$(sysctl -n "$k")" = "$v" ] || { sysctl -qw "$k=$v" && echo "restored $k=$v"; }
done < <(cat "$RUN/sysctl.saved" 2>/dev/null)
# 7. The BPF filesystem as it was (pins under it were removed with the created paths above).
case $(cat "$RUN/bpffs.restore" 2>/dev/null) in
  private) mount --make-private /sys/fs/bpf && echo "bpffs private again" ;;
  unmount) umount /sys/fs/bpf && echo "bpffs unmounted" ;;
esac
rm -f "$RUN/bpffs.restore"
"$HERE/apiserver-stop.sh" "$RUN/cp"
if [ "$PURGE" = --purge ]; then
  grep -q " $RUN/" /proc/self/mountinfo && { echo "mounts remain under $RUN: not purging" >&2; exit 1; }
  rm -rf "$RUN" && echo "purged $RUN"
fi
exit 0
