#!/bin/busybox sh
# PID 1 inside the QEMU guest of the kernel test (packed as /init by kernel-build.sh; booted by
# kernel-boot.sh). It runs the real mcp-guard-agent against the guest's stock Debian kernel and prints,
# on the serial console, one line per check and a summary, which the host reads:
#   MCP-GUARD-KERNEL: PASS <check>
#   MCP-GUARD-KERNEL: FAIL <check>: <reason>
#   MCP-GUARD-KERNEL: SUMMARY mode=<mode> passed=<n> failed=<n>
# Kernel command line: mcpguard.mode=lsm  (booted with bpf in lsm=: everything is enforced)
#                      mcpguard.mode=nolsm (booted without bpf in lsm=: the probe must say so, the agent
#                                           must still start, enforce the network and nothing for files)
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin:/usr/local/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /srv

T=MCP-GUARD-KERNEL
AGENT=/usr/local/bin/mcp-guard-agent
POLICY=/etc/mcp-guard/policy.yaml
EVENTS=/tmp/events.jsonl
ALOG=/tmp/agent.log
CG=/sys/fs/cgroup
MODE=lsm
READY_TIMEOUT=120 # seconds: software emulation is slow, and the agent parses the kernel's BTF
SHOW_LOG=1 # the agent log and events are short: always print them (evidence for the checks)
for a in $(cat /proc/cmdline); do
  case "$a" in
    mcpguard.mode=*) MODE=${a#mcpguard.mode=} ;;
    mcpguard.ready_timeout=*) READY_TIMEOUT=${a#mcpguard.ready_timeout=} ;;
    mcpguard.quiet=1) SHOW_LOG= ;;
  esac
done

NPASS=0
NFAIL=0
pass() { echo "$T: PASS $1"; NPASS=$((NPASS + 1)); }
fail() { echo "$T: FAIL $1: $(echo "$2" | tr '\n' ' ' | cut -c1-300)"; NFAIL=$((NFAIL + 1)); }
info() { echo "$T: INFO $*"; }
# check NAME CONDITION-STATUS REASON: PASS when the previous command succeeded.
check() { if [ "$2" = 0 ]; then pass "$1"; else fail "$1" "$3"; fi; }
finish() {
  if [ -n "$APID" ] && kill -0 "$APID" 2>/dev/null; then kill -KILL "$APID" 2>/dev/null; fi
  if [ "$NFAIL" != 0 ] || [ -n "$SHOW_LOG" ]; then
    for _f in $ALOG $EVENTS $ALOG.2 $EVENTS.2; do
      [ -f "$_f" ] || continue
      echo "----- $_f -----"; tail -n 60 "$_f" | sed 's/^/| /'
    done
  fi
  echo "$T: SUMMARY mode=$MODE passed=$NPASS failed=$NFAIL"
  sync
  poweroff -f
  sleep 5
}

# run_in CGROUP CMD ARGS...: run CMD in a shell that first moves itself into the cgroup, then execs CMD
# (same pid, and comm = CMD's name). Output: "pid=<pid>" then CMD's stdout+stderr; status: CMD's.
run_in() {
  _cg=$1; shift
  timeout 30 sh -c 'echo $$ > "$0/cgroup.procs" || exit 99; echo "pid=$$"; exec "$@"' "$CG/$_cg" "$@" 2>&1
}
pid_of() { echo "$1" | sed -n 's/^pid=//p' | head -n1; }
DENIED_RE='Operation not permitted|Permission denied'

# ---- the guest's world: cgroups, files, a reachable-but-denied address ---------------------------------
mkdir -p $CG/guarded $CG/free
GUARDED_ID=$(stat -c %i $CG/guarded)
FREE_ID=$(stat -c %i $CG/free)
echo "secret-content" > /srv/secret.txt
ln /srv/secret.txt /srv/secret-hardlink.txt
mkdir -p /srv/private/dir
echo "private-content" > /srv/private/dir/file.txt
echo "ok-content" > /srv/ok.txt
mkdir -p /usr/local/bin
cp /bin/busybox /usr/local/bin/denied-tool # its own inode: denying it must not deny busybox
ln -s /usr/local/bin/denied-tool /usr/local/bin/denied-tool-link
ip link set lo up
ip addr add 10.1.2.3/32 dev lo # a denied address (10.0.0.0/8) that answers with RST when allowed

LSMS=$(cat /sys/kernel/security/lsm 2>/dev/null)
info "mode=$MODE kernel=$(uname -r) lsm=$LSMS guarded_cgroup_id=$GUARDED_ID free_cgroup_id=$FREE_ID"
info "agent=$($AGENT --version 2>&1 | head -n1)"

# ---- capability probe --------------------------------------------------------------------------------
PROBE=$(timeout 120 $AGENT --probe 2>/tmp/probe.err)
PROBE_RC=$?
info "probe rc=$PROBE_RC: $(echo "$PROBE" | tr '\n' ' ')"
# The probe prints JSON: {"cgroup_v2":{"available":true,"detail":...},"bpf_lsm":{...},"sock_addr":{...}}
# (a bare true/false per feature is accepted too). probe_cap KEY... prints the first KEY's verdict.
probe_cap() {
  _p=$(echo "$PROBE" | tr -d ' \n\t')
  for _k; do
    _v=$(echo "$_p" | sed -n "s/.*\"$_k\":\({[^}]*}\|true\|false\).*/\1/p" |
      sed -n 's/.*"available":\(true\|false\).*/\1/p; /^\(true\|false\)$/p' | head -n1)
    [ -n "$_v" ] && { echo "$_v"; return; }
  done
  echo missing
}
probe_lsm() { probe_cap bpf_lsm lsm; }

if [ "$MODE" = lsm ]; then
  case ",$LSMS," in *,bpf,*) pass lsm-active ;; *) fail lsm-active "bpf not in /sys/kernel/security/lsm: $LSMS" ;; esac
  [ "$PROBE_RC" = 0 ] && [ "$(probe_lsm)" = true ]
  check probe-reports-lsm $? "want exit 0 and lsm available; rc=$PROBE_RC out=$PROBE err=$(cat /tmp/probe.err)"
else
  case ",$LSMS," in *,bpf,*) fail lsm-inactive "bpf is active: $LSMS" ;; *) pass lsm-inactive ;; esac
  [ "$PROBE_RC" = 0 ] && [ "$(probe_lsm)" = false ]
  check probe-reports-no-lsm $? "want exit 0 and lsm unavailable; rc=$PROBE_RC out=$PROBE err=$(cat /tmp/probe.err)"
fi
[ "$(probe_cap cgroup_v2)" = true ]
check probe-reports-cgroup-v2 $? "out=$PROBE"
[ "$(probe_cap sock_addr)" = true ]
check probe-reports-sock-addr $? "out=$PROBE"

# ---- the agent (standalone mode) ----------------------------------------------------------------------
PIN=/sys/fs/bpf/mcp-guard
# Ready = the agent has attached what this kernel allows and says so (its status line on stderr).
READY_RE='^mcp-guard-agent: ready$'
# start_agent CHECK LOG EVENTS: start it in the background (APID), wait for its ready line.
start_agent() {
  : > "$3"
  $AGENT --policy $POLICY --cgroup $CG/guarded --public-port 9095 --pin-dir $PIN --events "$3" > "$2" 2>&1 &
  APID=$!
  _t=0
  while ! grep -Eq "$READY_RE" "$2" 2>/dev/null; do
    kill -0 $APID 2>/dev/null || break
    [ $_t -ge $((READY_TIMEOUT * 5)) ] && break
    usleep 200000; _t=$((_t + 1))
  done
  if grep -Eq "$READY_RE" "$2" 2>/dev/null && kill -0 $APID 2>/dev/null; then
    pass "$1"
    info "agent ready after ~$((_t / 5))s"
    return 0
  fi
  _rc=
  kill -0 $APID 2>/dev/null || { wait $APID; _rc=$?; }
  fail "$1" "no ready line within ${READY_TIMEOUT}s (agent exit=${_rc:-still running}): $(tail -n 5 "$2")"
  finish
}
# stop_agent CHECK LOG: SIGTERM, expect exit 0 within 20 s.
stop_agent() {
  kill -TERM $APID 2>/dev/null
  _t=0
  while kill -0 $APID 2>/dev/null && [ $_t -lt 100 ]; do usleep 200000; _t=$((_t + 1)); done
  if kill -0 $APID 2>/dev/null; then
    fail "$1" "still running 20s after SIGTERM"
  else
    wait $APID; _rc=$?
    [ $_rc = 0 ]; check "$1" $? "exit status $_rc after SIGTERM: $(tail -n 3 "$2")"
  fi
  APID=
}
start_agent agent-ready $ALOG $EVENTS

# ---- checks --------------------------------------------------------------------------------------------
# expect_denied NAME OUTPUT: the command failed with EPERM/EACCES
# (Both require the "pid=" line run_in prints only once the shell is in its cgroup, so a failed move
# into the cgroup, "Permission denied" included, never passes.)
expect_denied() {
  echo "$2" | grep -q '^pid=' && echo "$2" | grep -Eq "$DENIED_RE"
  check "$1" $? "want EPERM/EACCES, got: $2"
}
# expect_output NAME OUTPUT TEXT: the command ran and printed TEXT
expect_output() {
  echo "$2" | grep -q '^pid=' && echo "$2" | grep -q "$3" && ! echo "$2" | grep -Eq "$DENIED_RE"
  check "$1" $? "want '$3', got: $2"
}

if [ "$MODE" = lsm ]; then
  out=$(run_in guarded cat /srv/secret.txt); SECRET_PID=$(pid_of "$out")
  expect_denied guarded-file-denied "$out"
  out=$(run_in guarded head /srv/private/dir/file.txt); SUBTREE_PID=$(pid_of "$out")
  expect_denied guarded-subtree-file-denied "$out"
  out=$(run_in guarded ls /srv/private)
  expect_denied guarded-subtree-dir-denied "$out"
  out=$(run_in guarded tail /srv/secret-hardlink.txt)
  expect_denied guarded-hardlink-denied "$out"
  out=$(run_in guarded cat /srv/ok.txt)
  expect_output guarded-other-file-allowed "$out" ok-content
  out=$(run_in guarded /usr/local/bin/denied-tool); EXEC_PID=$(pid_of "$out")
  expect_denied guarded-exec-denied "$out"
  out=$(run_in guarded /usr/local/bin/denied-tool-link)
  expect_denied guarded-exec-symlink-denied "$out"
  out=$(run_in guarded nc -w 5 10.1.2.3 80 </dev/null); CONNECT_PID=$(pid_of "$out")
  expect_denied guarded-connect-denied "$out"

  out=$(run_in free cat /srv/secret.txt)
  expect_output free-file-allowed "$out" secret-content
  out=$(run_in free head /srv/private/dir/file.txt)
  expect_output free-subtree-allowed "$out" private-content
  out=$(run_in free /usr/local/bin/denied-tool) # busybox under an unknown name: it ran if it says so
  expect_output free-exec-allowed "$out" "applet not found"
  out=$(run_in free nc -w 5 10.1.2.3 80 </dev/null)
  expect_output free-connect-allowed "$out" "Connection refused"

  # ---- events: each denial above, with the guarded cgroup's id, the pid and the comm ------------------
  J='[[:space:]]*'
  # ev_find REGEX...: a line of the events file matching every REGEX
  ev_find() {
    _l=$(cat $EVENTS)
    for _re; do _l=$(echo "$_l" | grep -E -- "$_re"); done
    [ -n "$_l" ]
  }
  DENY="\"verdict\":$J\"(deny|denied|block|blocked)\""
  CGID="\"cgroup_id\":$J$GUARDED_ID[,}]"
  want_file1() { ev_find "\"kind\":$J\"file_open\"" "$DENY" "$CGID" "\"comm\":$J\"cat\"" "\"pid\":$J${SECRET_PID:-x}[,}]" "/srv/secret\\.txt"; }
  want_file2() { ev_find "\"kind\":$J\"file_open\"" "$DENY" "$CGID" "\"comm\":$J\"head\"" "\"pid\":$J${SUBTREE_PID:-x}[,}]" "/srv/private"; }
  want_exec() { ev_find "\"kind\":$J\"exec\"" "$DENY" "$CGID" "\"comm\":$J\"sh\"" "\"pid\":$J${EXEC_PID:-x}[,}]" "/usr/local/bin/denied-tool"; }
  want_conn() { ev_find "\"kind\":$J\"connect\"" "$DENY" "$CGID" "\"comm\":$J\"nc\"" "10\\.1\\.2\\.3" "\"port\":${J}80[,}]"; }
  t=0
  while ! { want_file1 && want_file2 && want_exec && want_conn; } && [ $t -lt 50 ]; do usleep 200000; t=$((t + 1)); done
  want_file1; check event-file-denied $? "no file_open deny event with cgroup_id=$GUARDED_ID comm=cat pid=$SECRET_PID path=/srv/secret.txt"
  want_file2; check event-subtree-denied $? "no file_open deny event with cgroup_id=$GUARDED_ID comm=head pid=$SUBTREE_PID path=/srv/private/"
  want_exec; check event-exec-denied $? "no exec deny event with cgroup_id=$GUARDED_ID comm=sh pid=$EXEC_PID path=/usr/local/bin/denied-tool"
  want_conn; check event-connect-denied $? "no connect deny event with cgroup_id=$GUARDED_ID comm=nc addr=10.1.2.3 port=80"
  ! ev_find "\"cgroup_id\":$J$FREE_ID[,}]" "$DENY"
  check no-deny-events-for-free-cgroup $? "a deny event names the unguarded cgroup $FREE_ID"
  info "events: $(wc -l < $EVENTS) lines"
else
  # No BPF LSM: files and exec cannot be enforced (and the agent must not pretend otherwise), the
  # cgroup socket programs still work.
  out=$(run_in guarded cat /srv/secret.txt)
  expect_output guarded-file-not-enforced "$out" secret-content
  out=$(run_in guarded /usr/local/bin/denied-tool)
  expect_output guarded-exec-not-enforced "$out" "applet not found"
  out=$(run_in guarded nc -w 5 10.1.2.3 80 </dev/null)
  expect_denied guarded-connect-denied "$out"
  out=$(run_in free nc -w 5 10.1.2.3 80 </dev/null)
  expect_output free-connect-allowed "$out" "Connection refused"
  grep -i 'lsm' $ALOG | grep -Eqi 'unavailable|not available|disabled|not enforced|skipp|cannot'
  check agent-logs-lsm-unavailable $? "no log line saying BPF LSM is unavailable: $(grep -i lsm $ALOG | head -n 3)"
fi

# ---- confineListeners: a wildcard listener of the guarded cgroup ends up on loopback -----------------
# listen_in CGROUP PORT: busybox `nc -l -p PORT` (binds [::]:PORT, dual-stack unless
# net.ipv6.bindv6only=1) in the cgroup, in the background (LPID); LADDR: where it is bound (netstat).
listen_in() {
  sh -c 'echo $$ > "$0/cgroup.procs" || exit 99; exec nc -l -p "$1"' "$CG/$1" "$2" </dev/null >/dev/null 2>&1 &
  LPID=$!
  _t=0
  while [ $_t -lt 25 ] && ! netstat -ltn | grep -q ":$2 "; do usleep 200000; _t=$((_t + 1)); done
  LADDR=$(netstat -ltn | grep ":$2 " | awk '{print $4}')
}
stop_listener() { kill $LPID 2>/dev/null; wait $LPID 2>/dev/null; }
listen_in free 9093
[ "$LADDR" = ":::9093" ]
check free-listener-wildcard $? "want :::9093 (not confined), got '$LADDR'"
stop_listener
# Dual-stack: v4-mapped 127.0.0.1, where the proxy connects; refused on the guest's other address
# (first: nc -l serves one connection).
listen_in guarded 9093
[ "$LADDR" = "::ffff:127.0.0.1:9093" ]
check guarded-listener-v4-loopback $? "want ::ffff:127.0.0.1:9093, got '$LADDR'"
out=$(run_in free nc -w 5 10.1.2.3 9093 </dev/null)
expect_output guarded-listener-refused-outside "$out" "Connection refused"
out=$(run_in guarded nc -w 5 127.0.0.1 9093 </dev/null)
[ $? = 0 ] && echo "$out" | grep -q '^pid=' && [ "$(echo "$out" | grep -vc '^pid=')" = 0 ]
check guarded-listener-reachable-on-127 $? "want a connection to 127.0.0.1:9093, got: $out"
stop_listener
# IPv6-only (cannot take a v4-mapped address): ::1.
echo 1 > /proc/sys/net/ipv6/bindv6only
listen_in guarded 9094
echo 0 > /proc/sys/net/ipv6/bindv6only
[ "$LADDR" = "::1:9094" ]
check guarded-v6only-listener-v6-loopback $? "want ::1:9094, got '$LADDR'"
stop_listener

# ---- a cgroup created beneath the guarded one after it was guarded (a pod's container) --------------
# The programs find its ancestor at the guarded cgroup's level (bpf_get_current_ancestor_cgroup_id, in
# the LSM and the cgroup sock_addr programs alike); the agent does nothing for it.
mkdir -p $CG/guarded/nested
NESTED_ID=$(stat -c %i $CG/guarded/nested)
grep -q 'and every cgroup beneath it (level 1)' $ALOG
check agent-sets-level $? "no 'every cgroup beneath it (level 1)' in the agent's log: $(grep guarding $ALOG)"
out=$(run_in guarded/nested nc -w 5 10.1.2.3 80 </dev/null); NESTED_CONNECT_PID=$(pid_of "$out")
expect_denied nested-connect-denied "$out"
if [ "$MODE" = lsm ]; then
  out=$(run_in guarded/nested cat /srv/secret.txt); NESTED_FILE_PID=$(pid_of "$out")
  expect_denied nested-file-denied "$out"
  out=$(run_in guarded/nested /usr/local/bin/denied-tool)
  expect_denied nested-exec-denied "$out"
  out=$(run_in guarded/nested cat /srv/ok.txt)
  expect_output nested-other-file-allowed "$out" ok-content
fi
listen_in guarded/nested 9096
[ "$LADDR" = "::ffff:127.0.0.1:9096" ]
check nested-listener-v4-loopback $? "want ::ffff:127.0.0.1:9096, got '$LADDR'"
stop_listener
# A public port (--public-port 9095, the proxy's listener in a pod) keeps its wildcard address, and is
# reachable from outside the guarded cgroup.
listen_in guarded/nested 9095
[ "$LADDR" = ":::9095" ]
check nested-public-port-wildcard $? "want :::9095 (a public port, untouched), got '$LADDR'"
out=$(run_in free nc -w 5 10.1.2.3 9095 </dev/null)
[ $? = 0 ] && echo "$out" | grep -q '^pid=' && [ "$(echo "$out" | grep -vc '^pid=')" = 0 ]
check public-port-reachable-outside $? "want a connection to 10.1.2.3:9095 from free, got: $out"
stop_listener
# The events name the nested cgroup and the guarded cgroup whose entry matched.
GID="\"guard_cgroup_id\":[[:space:]]*$GUARDED_ID[,}]"
NID="\"cgroup_id\":[[:space:]]*$NESTED_ID[,}]"
want_nested() {
  grep "\"pid\":${NESTED_CONNECT_PID:-x}," $EVENTS | grep '"kind":"connect"' | grep -Eq "$NID" &&
    grep "\"pid\":${NESTED_CONNECT_PID:-x}," $EVENTS | grep -Eq "$GID"
}
t=0
while ! want_nested && [ $t -lt 50 ]; do usleep 200000; t=$((t + 1)); done
want_nested
check event-nested-guard-id $? "no connect event with cgroup_id=$NESTED_ID guard_cgroup_id=$GUARDED_ID pid=$NESTED_CONNECT_PID"
if [ "$MODE" = lsm ]; then
  grep "\"pid\":${NESTED_FILE_PID:-x}," $EVENTS | grep '"kind":"file_open"' | grep -Eq "$NID" &&
    grep "\"pid\":${NESTED_FILE_PID:-x}," $EVENTS | grep -Eq "$GID"
  check event-nested-file-guard-id $? "no file_open event with cgroup_id=$NESTED_ID guard_cgroup_id=$GUARDED_ID pid=$NESTED_FILE_PID"
fi

# ---- the agent is still up, and stops cleanly on SIGTERM ----------------------------------------------
kill -0 $APID 2>/dev/null
check agent-alive $? "the agent exited during the checks: $(tail -n 5 $ALOG)"
stop_agent agent-sigterm $ALOG

if [ "$MODE" = lsm ]; then
  # ---- pins: the LSM programs keep enforcing with no agent running; a new agent re-adopts them;
  # ---- --unpin ends enforcement. (The host tests cover this for the socket programs only.)
  out=$(run_in guarded cat /srv/secret.txt); DOWN_PID=$(pid_of "$out")
  expect_denied pinned-file-denied-while-agent-down "$out"
  out=$(run_in guarded /usr/local/bin/denied-tool)
  expect_denied pinned-exec-denied-while-agent-down "$out"
  start_agent restart-ready $ALOG.2 $EVENTS.2
  grep -q 're-adopted' $ALOG.2
  check restart-readopts-pins $? "no 're-adopted' in the restarted agent's log: $(grep -i 'maps\|program' $ALOG.2 | head -n 3)"
  out=$(run_in guarded head /srv/private/dir/file.txt); RPID=$(pid_of "$out")
  expect_denied restart-subtree-denied "$out"
  t=0
  while ! grep -q "\"pid\":$RPID," $EVENTS.2 && [ $t -lt 50 ]; do usleep 200000; t=$((t + 1)); done
  grep "\"pid\":$RPID," $EVENTS.2 | grep '"kind":"file_open"' | grep -q '"comm":"head"'
  check restart-event-delivered $? "no file_open event for pid $RPID from the restarted agent"
  # The ring buffer is pinned too: what was denied while no agent ran is reported by the next one.
  grep "\"pid\":$DOWN_PID," $EVENTS.2 | grep '"kind":"file_open"' | grep -q '"comm":"cat"'
  check events-while-down-delivered-after-restart $? "no file_open event for pid $DOWN_PID (denied while the agent was down)"
  stop_agent restart-sigterm $ALOG.2
  $AGENT --unpin --pin-dir $PIN >/tmp/unpin.log 2>&1
  check unpin-exit-0 $? "$(cat /tmp/unpin.log)"
  out=$(run_in guarded cat /srv/secret.txt)
  expect_output unpinned-file-allowed "$out" secret-content
  out=$(run_in guarded nc -w 5 10.1.2.3 80 </dev/null)
  expect_output unpinned-connect-allowed "$out" "Connection refused"
fi
finish
