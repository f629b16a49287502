#!/usr/bin/env bash
# Installs the Python MCP SDK, and agent-bom with its HTTP gateway (the peer proxy the benchmark compares
# against), from PyPI, pinned, into a virtualenv in a cache outside the clone keyed by the versions.
# Prints the venv path.
#   env: MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
set -euo pipefail
MCP_VERSION=2.3.0
AGENT_BOM_VERSION=0.109.0
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
DEST=$CACHE/py-mcp-$MCP_VERSION-agent-bom-api-$AGENT_BOM_VERSION
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
# Tests call this concurrently (the first run installs): one installer at a time, the others wait
# for it and find the install complete.
mkdir -p "$CACHE" && exec 9>"$CACHE/.py-peers.lock" && flock 9
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
command -v python3 >/dev/null || { echo "py-peers: python3 (>= 3.10) is required" >&2; exit 1; }
echo "py-peers: installing mcp $MCP_VERSION and agent-bom $AGENT_BOM_VERSION into $DEST" >&2
# Built in place (a virtualenv cannot be moved: its scripts embed its path); `.complete` marks success.
rm -rf "$DEST"
python3 -m venv "$DEST"
"$DEST/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_VERSION" "agent-bom[api]==$AGENT_BOM_VERSION" >&2
touch "$DEST/.complete"
echo "$DEST"
