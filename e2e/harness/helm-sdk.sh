#!/usr/bin/env bash
# Installs Helm's own engine for Python (PyPI helm-python-sdk, which wraps Helm v4's Go SDK) into a
# virtualenv in the cache, keyed by version. There is no helm binary in any registry here; this renders
# and lints charts exactly as `helm template` / `helm lint` do. Prints the venv path.
#   env: MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
set -euo pipefail
VERSION=0.2.2
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
DEST=$CACHE/helm-python-sdk-$VERSION
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
# Tests call this concurrently (the first run installs): one installer at a time, the others wait
# for it and find the install complete.
mkdir -p "$CACHE" && exec 9>"$CACHE/.helm-sdk.lock" && flock 9
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
command -v python3 >/dev/null || { echo "helm-sdk: python3 (>= 3.11) is required" >&2; exit 1; }
echo "helm-sdk: installing helm-python-sdk $VERSION into $DEST" >&2
rm -rf "$DEST"
python3 -m venv "$DEST"
"$DEST/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==$VERSION" >&2
touch "$DEST/.complete"
echo "$DEST"
