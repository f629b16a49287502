#!/usr/bin/env bash
# Boots the kernel test guest built by kernel-build.sh under QEMU (software emulation) and reports what
# its /init (guest-init.sh) printed. Exits 0 iff the guest printed a summary with failed=0.
#
#   usage: kernel-boot.sh GUEST_DIR MODE [LOG]
#     MODE lsm     boot with lsm=lockdown,capability,landlock,bpf: the agent enforces files, exec, network
#     MODE nolsm   boot with lsm=lockdown,capability,landlock: the probe reports LSM unavailable, the agent
#                  still starts and enforces the network only
#     LOG          the serial console log (default GUEST_DIR/console-MODE.log)
#   env:   KERNEL_TEST_TIMEOUT (seconds, default 300)
# Never -enable-kvm: /dev/kvm on these machines is paravirtual and cannot boot a stock kernel.
set -uo pipefail
GUEST=${1:?usage: kernel-boot.sh GUEST_DIR MODE [LOG]}
MODE=${2:?usage: kernel-boot.sh GUEST_DIR MODE [LOG]}
LOG=${3:-$GUEST/console-$MODE.log}
TIMEOUT=${KERNEL_TEST_TIMEOUT:-300}
case "$MODE" in
  lsm) LSM=lockdown,capability,landlock,bpf ;;
  nolsm) LSM=lockdown,capability,landlock ;;
  *) echo "kernel-boot: MODE must be lsm or nolsm" >&2; exit 2 ;;
esac
for f in vmlinuz initramfs.cpio.gz; do
  [ -f "$GUEST/$f" ] || { echo "kernel-boot: no $GUEST/$f (run kernel-build.sh)" >&2; exit 2; }
done
start=$(date +%s.%N)
timeout --foreground -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 \
  -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initramfs.cpio.gz" \
  -append "console=ttyS0 lsm=$LSM panic=-1 quiet loglevel=3 mcpguard.mode=$MODE" \
  -nographic -no-reboot -nodefaults -serial stdio -display none </dev/null >"$LOG" 2>&1
rc=$?
end=$(date +%s.%N)
grep -ao 'MCP-GUARD-KERNEL:.*' "$LOG" | tr -d '\r'
secs=$(awk "BEGIN{printf \"%.1f\", $end - $start}")
echo "kernel-boot: mode=$MODE qemu exit=$rc wall=${secs}s log=$LOG"
[ $rc = 124 ] && echo "kernel-boot: TIMEOUT after ${TIMEOUT}s" && tail -n 30 "$LOG"
if grep -aq "MCP-GUARD-KERNEL: SUMMARY mode=$MODE passed=[0-9]* failed=0" "$LOG"; then exit 0; fi
# On failure, show what the guest printed after the checks (the agent's log and events).
grep -aq 'MCP-GUARD-KERNEL: SUMMARY' "$LOG" && sed -n '/^----- /,/MCP-GUARD-KERNEL: SUMMARY/p' "$LOG" | tr -d '\r'
grep -aq 'MCP-GUARD-KERNEL: SUMMARY' "$LOG" || { echo "kernel-boot: no summary from the guest; console tail:"; tail -n 40 "$LOG"; }
exit 1
