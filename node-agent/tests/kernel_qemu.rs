//! The real `mcp-guard-agent` inside a QEMU guest running Debian's stock kernel with BPF LSM
//! (docs/kernel-tests.md). The host kernel of the build machines refuses BPF LSM programs, so file and
//! exec enforcement can only be checked in a guest.
//!
//! `harness/kernel-build.sh` builds (cached) the guest: the stock kernel, the agent linked statically,
//! busybox, the test policy (`harness/guest-policy.yaml`) and `/init` (`harness/guest-init.sh`).
//! `harness/kernel-boot.sh` boots it under software emulation; `/init` starts the agent in standalone
//! mode, runs every check from processes in a guarded and an unguarded cgroup, and prints one
//! `MCP-GUARD-KERNEL: PASS <check>` or `FAIL <check>: <reason>` line per check. Each test here boots once
//! and requires every check it names to pass.
//!
//! Skipped, with the reason printed, only when `MCP_GUARD_SKIP_KERNEL_TESTS` is set, off x86_64 Linux,
//! or when QEMU/busybox-static are missing and cannot be installed (not root).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

const MARK: &str = "MCP-GUARD-KERNEL: ";

/// Booted with `bpf` in `lsm=`: everything in the policy is enforced for the guarded cgroup only (and
/// a cgroup created beneath it afterwards: the ancestor lookup, in the LSM and socket programs alike),
/// keeps being enforced through the pins while no agent runs, is re-adopted by a restarted agent, and
/// ends with `--unpin`.
const LSM_CHECKS: &[&str] = &[
    "lsm-active",
    "probe-reports-lsm",
    "probe-reports-cgroup-v2",
    "probe-reports-sock-addr",
    "agent-ready",
    "guarded-file-denied",
    "guarded-subtree-file-denied",
    "guarded-subtree-dir-denied",
    "guarded-hardlink-denied",
    "guarded-other-file-allowed",
    "guarded-exec-denied",
    "guarded-exec-symlink-denied",
    "guarded-connect-denied",
    "free-file-allowed",
    "free-subtree-allowed",
    "free-exec-allowed",
    "free-connect-allowed",
    "event-file-denied",
    "event-subtree-denied",
    "event-exec-denied",
    "event-connect-denied",
    "no-deny-events-for-free-cgroup",
    "free-listener-wildcard",
    "guarded-listener-v4-loopback",
    "guarded-listener-refused-outside",
    "guarded-listener-reachable-on-127",
    "guarded-v6only-listener-v6-loopback",
    "agent-sets-level",
    "nested-connect-denied",
    "nested-file-denied",
    "nested-exec-denied",
    "nested-other-file-allowed",
    "nested-listener-v4-loopback",
    "nested-public-port-wildcard",
    "public-port-reachable-outside",
    "event-nested-guard-id",
    "event-nested-file-guard-id",
    "agent-alive",
    "agent-sigterm",
    "pinned-file-denied-while-agent-down",
    "pinned-exec-denied-while-agent-down",
    "restart-ready",
    "restart-readopts-pins",
    "restart-subtree-denied",
    "restart-event-delivered",
    "events-while-down-delivered-after-restart",
    "restart-sigterm",
    "unpin-exit-0",
    "unpinned-file-allowed",
    "unpinned-connect-allowed",
];

/// Booted without `bpf` in `lsm=`: the probe says so, the agent starts anyway and enforces the network.
const NOLSM_CHECKS: &[&str] = &[
    "lsm-inactive",
    "probe-reports-no-lsm",
    "probe-reports-cgroup-v2",
    "probe-reports-sock-addr",
    "agent-ready",
    "guarded-file-not-enforced",
    "guarded-exec-not-enforced",
    "guarded-connect-denied",
    "free-connect-allowed",
    "agent-logs-lsm-unavailable",
    "free-listener-wildcard",
    "guarded-listener-v4-loopback",
    "guarded-listener-refused-outside",
    "guarded-listener-reachable-on-127",
    "guarded-v6only-listener-v6-loopback",
    "agent-sets-level",
    "nested-connect-denied",
    "nested-listener-v4-loopback",
    "nested-public-port-wildcard",
    "public-port-reachable-outside",
    "event-nested-guard-id",
    "agent-alive",
    "agent-sigterm",
];

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("harness")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn skip_reason() -> Option<String> {
    if std::env::var_os("MCP_GUARD_SKIP_KERNEL_TESTS").is_some() {
        return Some("MCP_GUARD_SKIP_KERNEL_TESTS is set".into());
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some("the guest is x86_64 Linux; this host is not".into());
    }
    let tools_installed = have("qemu-system-x86_64") && Path::new("/bin/busybox").exists();
    if is_root() || tools_installed {
        return None;
    }
    Some(
        "not root, and qemu-system-x86 / busybox-static are not installed (run as root, or \
         apt-get install --no-install-recommends qemu-system-x86 busybox-static)"
            .into(),
    )
}

/// Builds the guest once per test binary (kernel-build.sh is cached and serialises itself too).
fn guest_dir() -> &'static Result<PathBuf, String> {
    static GUEST: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    GUEST.get_or_init(|| {
        let out = Command::new(harness().join("kernel-build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run kernel-build.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kernel-build.sh failed ({}); its messages are above",
                out.status
            ));
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(PathBuf::from(dir))
    })
}

#[derive(Debug, Default)]
struct Outcome {
    passed: Vec<String>,
    failed: Vec<String>,
    summary: Option<String>,
}

fn parse(console: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in console.lines() {
        let Some(i) = line.find(MARK) else { continue };
        let rest = line[i + MARK.len()..].trim_end();
        if let Some(name) = rest.strip_prefix("PASS ") {
            o.passed.push(name.trim().to_string());
        } else if let Some(f) = rest.strip_prefix("FAIL ") {
            o.failed.push(f.to_string());
        } else if let Some(s) = rest.strip_prefix("SUMMARY ") {
            o.summary = Some(s.to_string());
        }
    }
    o
}

fn boot_and_check(mode: &str, expected: &[&str]) {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED kernel test ({mode}): {why}");
        return;
    }
    let guest = match guest_dir() {
        Ok(d) => d,
        Err(e) => panic!("cannot build the kernel test guest: {e}"),
    };
    let out = Command::new(harness().join("kernel-boot.sh"))
        .arg(guest)
        .arg(mode)
        .stderr(Stdio::inherit())
        .output()
        .expect("run kernel-boot.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    eprintln!("---- kernel-boot.sh {mode} ----\n{console}");
    let o = parse(&console);
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|c| !o.passed.iter().any(|p| p == c))
        .collect();
    let summary = o
        .summary
        .as_deref()
        .unwrap_or("<none: the guest did not finish>");
    assert!(
        o.failed.is_empty() && missing.is_empty() && o.summary.is_some() && out.status.success(),
        "kernel test ({mode}) failed: {} check(s) failed: {:#?}\nnot passed: {missing:?}\nsummary: {summary}\n\
         (console log: {}/console-{mode}.log)",
        o.failed.len(),
        o.failed,
        guest.display(),
    );
}

#[test]
fn bpf_lsm_guest_enforces_files_exec_and_network_for_guarded_cgroup_only() {
    boot_and_check("lsm", LSM_CHECKS);
}

#[test]
fn without_bpf_lsm_probe_reports_it_and_agent_still_enforces_network() {
    boot_and_check("nolsm", NOLSM_CHECKS);
}

#[test]
fn console_parser_reads_marked_lines_anywhere() {
    let o = parse(
        "junk\x1b[2JMCP-GUARD-KERNEL: PASS a\r\nMCP-GUARD-KERNEL: FAIL b: why\nMCP-GUARD-KERNEL: SUMMARY mode=lsm passed=1 failed=1\n",
    );
    assert_eq!(o.passed, ["a"]);
    assert_eq!(o.failed, ["b: why"]);
    assert_eq!(o.summary.as_deref(), Some("mode=lsm passed=1 failed=1"));
}
