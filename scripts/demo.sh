#!/usr/bin/env bash
# `make demo`: what mcp-guard does today, without a cluster. Checks the shipped policy library,
# shows the field-path errors a broken policy gets, and prints the compiled policy.json the
# operator will publish for the sidecar and the node-agent.
set -euo pipefail
POLICY=${1:-target/debug/mcp-guard-policy}
cd "$(dirname "$0")/.."
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "1. Check the policy library" "mcp-guard-policy check policies/library/*.yaml"
"$POLICY" check policies/library/*.yaml

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
step "2. A broken policy: every error, with its field path (exit 1)" "mcp-guard-policy check broken.yaml"
sed 's/^/    /' "$broken"
set +e
"$POLICY" check "$broken" 2>&1 | sed "s|$broken|broken.yaml|"
echo "exit code: ${PIPESTATUS[0]}"
set -e

step "3. Compile a library policy into the policy.json the sidecar loads" \
  "mcp-guard-policy compile policies/library/filesystem-readonly.yaml | head -40"
"$POLICY" compile policies/library/filesystem-readonly.yaml | head -40
echo "    ..."
