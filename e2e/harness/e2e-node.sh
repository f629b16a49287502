#!/usr/bin/env bash
# `make e2e-node`: the end-to-end scenario (e2e/tests/scenario) on a real single-node Kubernetes on this
# host: builds what is missing (cached), packs the images, starts the node with them imported, runs the
# scenario against it with this environment's chart values, and tears everything down, leaving the
# host as it found it. After a failure the run dir is kept (stopped) with every log.
#   usage: e2e-node.sh [--keep]     (--keep: leave the node and the release running; stop later with
#                                    e2e/harness/node-stop.sh RUN_DIR --purge)
#   env:   MCP_GUARD_E2E_RUN (run dir, default /tmp/mcp-guard-e2e-node), MCP_GUARD_CACHE
#   needs: root on Linux (mounts, network namespaces, cgroups, BPF), Debian bookworm's apt sources
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN=${MCP_GUARD_E2E_RUN:-/tmp/mcp-guard-e2e-node}
KEEP=${1:-}
T0=$SECONDS
log() { printf '[e2e-node %3ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (a kubelet, containerd, BPF)"; exit 1; }

log "building (cached): the node, the static binaries, the images"
"$HERE/node-build.sh" >/dev/null || exit 1
IMAGES=$ROOT/target/e2e-images
"$HERE/oci-images.sh" "$IMAGES" >/dev/null || exit 1
"$HERE/node-stop.sh" "$RUN" --purge >/dev/null   # leftovers of an earlier failed run
mkdir -p "$RUN"

FAIL=1
teardown() {
  [ "$KEEP" = --keep ] && { log "kept running: KUBECONFIG=$RUN/cp/kubeconfig"; return; }
  if [ "$FAIL" = 0 ]; then "$HERE/node-stop.sh" "$RUN" --purge >/dev/null
  else "$HERE/node-stop.sh" "$RUN" >/dev/null; log "logs kept in $RUN/logs, $RUN/cp/*.log"; fi
  log "node stopped, host restored"
}
trap teardown EXIT
KC=$("$HERE/node-start.sh" "$RUN" "$IMAGES"/*.tar 2>"$RUN/start.log") || { cat "$RUN/start.log" >&2; exit 1; }
log "node Ready"

# The chart values of this environment: the imported images (never pulled), the API server where pods
# reach it (no kube-proxy here), the cgroup v2 hierarchy (hybrid hosts mount it at .../unified).
V2=$(findmnt -n -t cgroup2 -o TARGET | head -1)
PORT=$(sed -n 's#.*server: "https://[0-9.]*:\([0-9]*\)".*#\1#p' "$KC")
cat > "$RUN/values.json" <<JSON
{"image": {"registry": "localhost/mcp-guard", "tag": "e2e", "pullPolicy": "Never"},
 "proxy": {"pullPolicy": "Never"},
 "apiServer": {"host": "10.88.0.1", "port": "$PORT"},
 "nodeAgent": {"cgroupRoot": "$V2"}}
JSON
(cd "$ROOT" && KUBECONFIG=$KC MCP_GUARD_E2E_VALUES=$RUN/values.json \
  cargo test -q --locked -p mcp-guard-e2e --test scenario) && FAIL=0
log "scenario $([ "$FAIL" = 0 ] && echo passed || echo FAILED)"
exit $FAIL
