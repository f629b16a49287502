#!/usr/bin/env bash
# Builds what the node-agent's kernel test boots under QEMU (see docs/kernel-tests.md):
#   - host packages, installed when missing (we are root on CI): qemu-system-x86, busybox-static, and
#     clang-19 + libbpf-dev for the agent's BPF programs;
#   - Debian's stock kernel (the package behind linux-image-amd64: CONFIG_BPF_LSM=y, BTF), downloaded with
#     `apt-get download` and extracted, cached in $MCP_GUARD_CACHE/kernel-<abi>_<version>/;
#   - the real mcp-guard-agent, linked statically (e2e/harness/static-build.sh: the build the images
#     use, in target/static, so the main build stays warm);
#   - an initramfs: busybox, the agent, the test policy, and /init (guest-init.sh).
#
#   usage: kernel-build.sh      prints the guest dir holding vmlinuz and initramfs.cpio.gz
#   env:   MCP_GUARD_CACHE (default ~/.cache/mcp-guard)
#          MCP_GUARD_KERNEL_PKG   a linux-image-* package to use instead of linux-image-amd64's
#          MCP_GUARD_AGENT_BIN    a prebuilt static agent to pack instead of building one
#   cost:  cold ~1 min for the kernel (70 MB download) plus the static agent build; warm: seconds.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${MCP_GUARD_CACHE:-$HOME/.cache/mcp-guard}
OUT=$ROOT/target/kernel
GUEST=$OUT/guest
log() { printf 'kernel-build: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
mkdir -p "$OUT" "$CACHE"
exec 9>"$OUT/.build.lock" && flock 9 # one build at a time (make and cargo test may overlap)

# ---- 1. host packages ----------------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
installed busybox-static || need+=(busybox-static)
if [ -z "${MCP_GUARD_AGENT_BIN:-}" ]; then
  command -v clang-19 >/dev/null || need+=(clang-19)
  [ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
fi
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "$@" >&2
}
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}; install them (apt-get install --no-install-recommends ${need[*]}) or run as root"
  log "installing ${need[*]}"
  apt_install "${need[@]}" || { apt-get -qq update -o DPkg::Lock::Timeout=600 >&2 && apt_install "${need[@]}"; }
fi
{ LC_ALL=C ldd /bin/busybox 2>&1 || true; } | grep -Eq 'not a dynamic|statically linked' || die "/bin/busybox is not static (busybox-static)"

# ---- 2. the guest kernel -------------------------------------------------------------------------------
resolve_kernel() {
  KPKG=${MCP_GUARD_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
  [ -n "$KPKG" ] || return 1
  KVER=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | awk '/^Version:/{print $2; exit}')
  [ -n "$KVER" ]
}
if ! resolve_kernel; then
  if [ "$(id -u)" = 0 ]; then apt-get -qq update -o DPkg::Lock::Timeout=600 >&2 || true; fi
  if ! resolve_kernel; then
    # No package index (offline): fall back to the newest kernel already in the cache.
    k=$(ls -d "$CACHE"/kernel-*/.complete 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$k" ] || die "cannot resolve linux-image-amd64 (apt-get update?) and no cached kernel in $CACHE"
    KDIR=$(dirname "$k")
    log "package index unavailable; using cached $KDIR"
  fi
fi
if [ -z "${KDIR:-}" ]; then
  KDIR=$CACHE/kernel-${KPKG#linux-image-}_$KVER
  if [ ! -f "$KDIR/.complete" ]; then
    log "downloading $KPKG $KVER into $KDIR (first run only, ~70 MB)"
    tmp=$KDIR.tmp
    rm -rf "$tmp" && mkdir -p "$tmp/deb" "$tmp/x" && chmod 755 "$tmp" "$tmp/deb" # _apt downloads here
    (cd "$tmp/deb" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$KPKG=$KVER" >&2)
    dpkg-deb --fsys-tarfile "$tmp"/deb/*.deb | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' './boot/config-*'
    cp "$tmp"/x/boot/vmlinuz-* "$tmp/vmlinuz"
    cp "$tmp"/x/boot/config-* "$tmp/config"
    for o in CONFIG_BPF_LSM=y CONFIG_DEBUG_INFO_BTF=y CONFIG_CGROUP_BPF=y CONFIG_BPF_SYSCALL=y \
      CONFIG_SECURITYFS=y CONFIG_BPF_JIT=y CONFIG_DEVTMPFS=y CONFIG_SERIAL_8250_CONSOLE=y; do
      grep -qx "$o" "$tmp/config" || die "$KPKG: kernel config lacks $o"
    done
    echo "$KPKG $KVER" > "$tmp/package"
    rm -rf "$tmp/deb" "$tmp/x"
    touch "$tmp/.complete"
    rm -rf "$KDIR" && mv "$tmp" "$KDIR"
  fi
fi

# ---- 3. the agent, static ------------------------------------------------------------------------------
if [ -n "${MCP_GUARD_AGENT_BIN:-}" ]; then
  AGENT=$MCP_GUARD_AGENT_BIN
  log "using prebuilt agent $AGENT"
else
  # The static release build the images use too (e2e/harness/static-build.sh, target/static).
  log "static build of the agent (with the proxy and operator, as the images) -> target/static"
  AGENT=$("$ROOT/e2e/harness/static-build.sh")/mcp-guard-agent
fi
[ -x "$AGENT" ] || die "no agent binary at $AGENT"
if head -c4 "$AGENT" | grep -q 'ELF'; then
  ! readelf -d "$AGENT" 2>/dev/null | grep -q NEEDED || die "$AGENT is dynamically linked (needs crt-static)"
fi

# ---- 4. the initramfs ----------------------------------------------------------------------------------
R=$GUEST/root
rm -rf "$R" && mkdir -p "$R"/{bin,dev,proc,sys,srv,tmp,etc/mcp-guard,usr/local/bin}
cp /bin/busybox "$R/bin/busybox"
cp "$AGENT" "$R/usr/local/bin/mcp-guard-agent"
if head -c4 "$AGENT" | grep -q 'ELF' && command -v strip >/dev/null; then strip "$R/usr/local/bin/mcp-guard-agent"; fi
cp "$HERE/guest-policy.yaml" "$R/etc/mcp-guard/policy.yaml"
cp "$HERE/guest-init.sh" "$R/init"
chmod 755 "$R/init" "$R/usr/local/bin/mcp-guard-agent"
(cd "$R" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$GUEST/initramfs.cpio.gz.tmp")
mv "$GUEST/initramfs.cpio.gz.tmp" "$GUEST/initramfs.cpio.gz"
cp "$KDIR/vmlinuz" "$GUEST/vmlinuz.tmp" && mv "$GUEST/vmlinuz.tmp" "$GUEST/vmlinuz"
cp "$KDIR/package" "$GUEST/kernel-package"
rm -rf "$R"
echo "$GUEST"
