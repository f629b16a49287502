#!/usr/bin/env bash
# Installs the real MCP servers (and the Inspector CLI) the tests run against, from npm, pinned, into a
# cache outside the clone keyed by the versions below. Prints the install prefix (its node_modules/.bin
# holds the servers). Instant when cached.
#   env: MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
set -euo pipefail
MCP_VERSION=2026.8.31
INSPECTOR_VERSION=0.15.0   # the newest that installs on node 20
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
DEST=$CACHE/npm-mcp-$MCP_VERSION-inspector-$INSPECTOR_VERSION
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
command -v npm >/dev/null || { echo "npm-peers: npm (Node.js 20+) is required" >&2; exit 1; }
echo "npm-peers: installing MCP servers $MCP_VERSION into $DEST" >&2
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
cd "$DEST.tmp"
printf '{"name":"mcp-guard-test-peers","private":true}\n' > package.json
npm install --no-audit --no-fund --loglevel=error \
  "@modelcontextprotocol/server-everything@$MCP_VERSION" \
  "@modelcontextprotocol/server-filesystem@$MCP_VERSION" \
  "@modelcontextprotocol/server-memory@$MCP_VERSION" \
  "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >&2
touch .complete
cd / && rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST"
