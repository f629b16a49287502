#!/usr/bin/env bash
# `make demo`: mcp-guard-proxy in front of a real MCP server, no cluster needed.
#   1. A scripted agent session through the proxy and @modelcontextprotocol/server-filesystem (from npm,
#      installed into ~/.cache/mcp-guard by the demo itself), with the library policy
#      filesystem-workspace: each call's decision, then the audit summary.
#   2. The policy checker on a broken policy: every error with its field path.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}/release
PEERS=$(e2e/harness/npm-peers.sh)

"$TARGET/examples/demo" "$TARGET/mcp-guard-proxy" "$PEERS/node_modules/.bin/mcp-server-filesystem" \
  policies/library/filesystem-workspace.yaml "${CARGO_TARGET_DIR:-target}/demo"

broken=$(mktemp --suffix=.yaml)
trap 'rm -f "$broken"' EXIT
cat > "$broken" <<'YAML'
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: broken}
spec:
  rules:
    - id: block-sensitive-paths
      action: block
      args: [{pointer: /path, regex: "(/etc/(passwd|shadow)"}]
  detectors:
    rateLimit: {action: block, perTool: {maxCalls: 20, window: 10h30}}
    sequences: [{id: write-then-exec, action: block, steps: [], within: 60s}]
  runtime:
    network: {egress: {allow: ["10.0.0.0/33"], denyPorts: [22, 70000]}}
YAML
printf '\n== The policy checker on a broken policy: every error, with its field path\n$ mcp-guard-policy check broken.yaml\n'
set +e
"$TARGET/mcp-guard-policy" check "$broken" 2>&1 | sed "s|$broken|broken.yaml|"
echo "(exit code ${PIPESTATUS[0]})"
