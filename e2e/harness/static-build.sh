#!/usr/bin/env bash
# Builds the three mcp-guard binaries as the images ship them: release, glibc static-pie
# (`-C target-feature=+crt-static`, as images/Dockerfile), in their own target dir (target/static) so
# the main debug build stays warm. Used by the kernel tests (the agent in the QEMU guest) and by
# oci-images.sh (the node e2e): one build serves both.
#   usage: static-build.sh      prints the directory holding mcp-guard-{proxy,operator,agent}
#   cost:  ~6 min cold on 2 cores; an edit rebuilds incrementally in well under a minute.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/target/static
mkdir -p "$OUT"
exec 8>"$OUT/.build.lock" && flock 8 # one build at a time (make and cargo test may overlap)
# Run from `cargo test`, the environment holds the test crate's CARGO_MANIFEST_DIR, CARGO_PKG_*, ...;
# build scripts that read them would see them change and rebuild everything. Drop them.
for v in $(compgen -e); do
  case "$v" in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
      CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$v" ;;
  esac
done
# RUSTFLAGS with --target applies to the binaries only, not to build scripts.
(cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$OUT" \
  CARGO_PROFILE_RELEASE_INCREMENTAL=true cargo build -q --release --locked --target x86_64-unknown-linux-gnu \
  -p mcp-guard-proxy -p mcp-guard-operator -p mcp-guard-agent \
  --bin mcp-guard-proxy --bin mcp-guard-operator --bin mcp-guard-agent >&2)
BIN=$OUT/x86_64-unknown-linux-gnu/release
for b in mcp-guard-proxy mcp-guard-operator mcp-guard-agent; do
  [ -x "$BIN/$b" ] || { echo "static-build: no $BIN/$b" >&2; exit 1; }
  if readelf -d "$BIN/$b" 2>/dev/null | grep -q NEEDED; then
    echo "static-build: $BIN/$b is dynamically linked" >&2; exit 1
  fi
done
echo "$BIN"
