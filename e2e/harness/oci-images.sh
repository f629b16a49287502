#!/usr/bin/env bash
# Builds the e2e images without Docker, as single-layer OCI archives that containerd (`ctr images
# import`) and kind (`kind load image-archive`) take:
#   REGISTRY/mcp-guard-proxy:TAG, mcp-guard-operator:TAG, mcp-guard-agent:TAG
#       the static binaries of static-build.sh at /usr/local/bin, on the layout images/Dockerfile gets
#       from distroless/static (passwd with nonroot 65532, CA certificates, /tmp); same user and
#       entrypoint as the Dockerfile's targets.
#   REGISTRY/mcp-server-everything:TAG
#       the real reference MCP server (@modelcontextprotocol/server-everything, the version the other
#       tests pin in npm-peers.sh) with the Node.js runtime of this machine and its shared libraries,
#       as images/mcp-server-everything.Dockerfile builds it on GitHub Actions.
#   usage: oci-images.sh OUT_DIR     prints one "NAME FILE" line per image
#   env:   MCP_GUARD_IMAGE_REGISTRY (localhost/mcp-guard), MCP_GUARD_IMAGE_TAG (e2e),
#          MCP_GUARD_STATIC_BIN (a directory of prebuilt static binaries instead of static-build.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(realpath -m "${1:?usage: oci-images.sh OUT_DIR}")
REGISTRY=${MCP_GUARD_IMAGE_REGISTRY:-localhost/mcp-guard}
TAG=${MCP_GUARD_IMAGE_TAG:-e2e}
BIN=${MCP_GUARD_STATIC_BIN:-$("$HERE/static-build.sh")}   # prebuilt binaries, or build them
PEERS=$("$HERE/npm-peers.sh")
W=$OUT/rootfs
rm -rf "$W" && mkdir -p "$OUT"

# The distroless/static layout: users, CA bundle, a writable /tmp.
base() {
  local r=$1
  mkdir -p "$r"/{etc/ssl/certs,tmp,usr/local/bin,home/nonroot}
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
  chmod 1777 "$r/tmp"
}
for b in proxy operator agent; do
  r=$W/$b; base "$r"
  cp "$BIN/mcp-guard-$b" "$r/usr/local/bin/"
  user=65532:65532; [ "$b" = agent ] && user=0:0   # the agent needs root's kernel capabilities
  python3 "$HERE/mkoci.py" "$r" "$REGISTRY/mcp-guard-$b:$TAG" "$OUT/mcp-guard-$b.tar" \
    --entrypoint "/usr/local/bin/mcp-guard-$b" --user "$user" >/dev/null
  echo "$REGISTRY/mcp-guard-$b:$TAG $OUT/mcp-guard-$b.tar"
done

# server-everything: node, the libraries it links, and the package with its dependency closure.
r=$W/everything; base "$r"
NODE=$(command -v node)
cp "$NODE" "$r/usr/local/bin/node"
for lib in $(ldd "$NODE" | awk '/=>/ {print $3} /^[ \t]*\// {print $1}'); do
  mkdir -p "$r$(dirname "$lib")" && cp -L "$lib" "$r$lib"
done
python3 - "$PEERS/node_modules" "$r/app/node_modules" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
def find(name, pkg):
    # Node's resolution: node_modules/<name> in the package's directory, then in each parent.
    d = pkg
    while True:
        cand = os.path.join(d, "node_modules", name)
        if os.path.isfile(os.path.join(cand, "package.json")):
            return cand
        if d == top:
            raise SystemExit(f"oci-images: {name} (needed by {pkg}) not found")
        d = os.path.dirname(d)
top = os.path.dirname(src)
seen, todo = set(), [os.path.join(src, "@modelcontextprotocol/server-everything")]
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    with open(os.path.join(p, "package.json")) as f:
        pkg = json.load(f)
    for dep in pkg.get("dependencies", {}):
        todo.append(find(dep, p))
    # optional and peer dependencies come along when installed (npm installs peers too)
    for dep in list(pkg.get("optionalDependencies", {})) + list(pkg.get("peerDependencies", {})):
        try:
            todo.append(find(dep, p))
        except SystemExit:
            pass
for p in sorted(seen):
    rel = os.path.relpath(p, src)
    shutil.copytree(p, os.path.join(dst, rel), symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
print(f"{len(seen)} packages", file=sys.stderr)
PY
python3 "$HERE/mkoci.py" "$r" "$REGISTRY/mcp-server-everything:$TAG" "$OUT/mcp-server-everything.tar" \
  --entrypoint /usr/local/bin/node,/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js \
  --cmd streamableHttp --user 65532:65532 --workdir /app >/dev/null
echo "$REGISTRY/mcp-server-everything:$TAG $OUT/mcp-server-everything.tar"
rm -rf "$W"
