//! `make bench` (as root): what the cgroup sock_addr programs cost, on this host kernel.
//!
//! 1. The average run time per call of `cgroup/connect4`, `connect6`, `bind4` and `bind6`
//!    (`run_time_ns / run_cnt` of `BPF_OBJ_GET_INFO_BY_FD`, counted while `BPF_ENABLE_STATS` is
//!    held, which is what `sysctl kernel.bpf_stats_enabled=1` switches on), on the miss path (the
//!    calling process is in an unguarded cgroup: one hash lookup and one array read while no levels
//!    are set, as on a node without guarded pods; plus, per level, one helper call and one hash
//!    lookup with the two levels a node with guarded pods sets) and on the hit path (to an allowed
//!    non-loopback destination from a guarded cgroup: the lookup plus the rule evaluation; and from
//!    a container cgroup beneath a guarded pod cgroup, found at its level).
//! 2. connect() latency (TCP, and UDP where connect() is one cheap syscall) from a process in an
//!    unguarded cgroup with no programs attached, with the programs attached (miss path), and from
//!    a guarded cgroup (hit path).
//!
//! For scale, the capability probe's connect4 program, which only returns 1, is attached to a
//! cgroup of its own and measured the same way: the floor of any connect4 program, the counters'
//! own clock reads included.
//!
//! The programs are loaded by the agent's own loader ([`bpf::load`]) into a private pin directory
//! and attached, not at the cgroup v2 root as the agent does, but at a private cgroup
//! `<root>/mcp-guard-bench-<pid>/attached`, so that only this bench's processes run them (and their
//! counters count only this bench's calls). Layout:
//!
//! ```text
//! <cgroup v2 root>/mcp-guard-bench-<pid>/plain                  no programs: the baseline
//! <cgroup v2 root>/mcp-guard-bench-<pid>/empty                  the empty connect4 program
//! <cgroup v2 root>/mcp-guard-bench-<pid>/attached/unguarded     programs attached: miss path
//! <cgroup v2 root>/mcp-guard-bench-<pid>/attached/guarded       guarded with slot 0: hit path
//! <cgroup v2 root>/mcp-guard-bench-<pid>/attached/pod-other/c   miss path, levels set
//! <cgroup v2 root>/mcp-guard-bench-<pid>/attached/pod/c         `pod` guarded: hit through the pod
//! /sys/fs/bpf/mcp-guard-bench-<pid>                             the pins
//! ```
//!
//! The levels are those of `attached` and `attached/pod` (2 and 3 below the cgroup v2 root, like
//! `kubepods/burstable` and a Guaranteed pod's `kubepods/pod<uid>`, and a Burstable pod's
//! `kubepods/burstable/pod<uid>`): set while the last two phases run, unset during the others.
//!
//! Each measurement runs in a child (this binary again) in a network namespace of its own with
//! 192.0.2.77 and 2001:db8::77 on its loopback interface (not loopback addresses, so the egress
//! rules are evaluated), like the host tests; one child per kind of call (TCP connects, UDP
//! connects, binds), so each program's counters are read per kind. Rounds go through the four
//! cgroups in a rotating order; the report gives medians over rounds. Everything created is
//! removed at the end, on error, on panic, and on SIGINT/SIGTERM; a bench killed harder is cleaned
//! up by the next run.
//!
//! The BPF LSM programs are not measured (the report says whether this kernel loads them at all).
//! `BENCH_BPF_ROUNDS` (default 11) and `BENCH_BPF_CONNECTS` (TCP connects per child, default
//! 20000; UDP connects are 2.5 times as many, binds a quarter) tune the run. Prints a Markdown
//! report and writes it to target/bench/bpf.md. Without root it says why and exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aya::programs::ProgramInfo;
use mcp_guard_agent::bpf::{self, Capabilities, Capability, LoadOptions, Loaded};
use mcp_guard_agent::model::{Enforcer, Levels};
use mcp_guard_agent::rules::{HostResolver, slot_rules};
use mcp_guard_agent::standalone::load_policy;

/// Set in a measuring child: the cgroup directory it enters.
const CHILD_CGROUP: &str = "MG_BPF_BENCH_CGROUP";
/// Set in a measuring child: what it times, `op:count` separated by spaces.
const CHILD_OPS: &str = "MG_BPF_BENCH_OPS";
const PREFIX: &str = "mcp-guard-bench-";

/// The guarded cgroup's policy: allowed destinations among denied blocks, denied ports, and
/// confined listeners, so the hit path takes every lookup an allowed connect or bind takes.
const POLICY: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: bpf-bench}
spec:
  runtime:
    network:
      egress:
        allow: ["192.0.2.77/32", "2001:db8::77/128", "198.51.100.0/24", "203.0.113.0/24"]
        deny: ["192.0.2.0/24", "2001:db8::/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
               "169.254.0.0/16", "fd00::/8", "fe80::/10"]
        denyPorts: [25, 2525]
      confineListeners: true
"#;

/// The child's network namespace: the test addresses on its own loopback interface.
const NETNS_SETUP: &str = "ip link set lo up \
    && ip addr add 192.0.2.77/32 dev lo \
    && ip -6 addr add 2001:db8::77/128 dev lo nodad \
    && exec \"$0\" \"$@\"";

const V4: &str = "192.0.2.77:8080";
const V6: &str = "[2001:db8::77]:8080";

const PROGRAMS: [(&str, &str); 4] = [
    ("mg_connect4", "cgroup/connect4"),
    ("mg_connect6", "cgroup/connect6"),
    ("mg_bind4", "cgroup/bind4"),
    ("mg_bind6", "cgroup/bind6"),
];

/// The capability probe's programs: a connect4 program that only returns 1 (attached at the
/// `empty` cgroup, for scale), and an LSM program (only loaded, to say why LSM is not measured).
static PROBE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));
const EMPTY_PROGRAM: &str = "mg_probe_connect4";

/// The operations whose latency is reported, in the child's words.
const OPS: [(&str, &str); 3] = [
    (
        "tcp4",
        "TCP connect to 192.0.2.77:8080 (socket + connect + handshake)",
    ),
    (
        "udp4",
        "UDP connect() to 192.0.2.77:8080 (the syscall alone)",
    ),
    (
        "udp6",
        "UDP connect() to [2001:db8::77]:8080 (the syscall alone)",
    ),
];

/// What one child does (one child per group, so that each program's counters can be read per
/// kind of call): the group and its operations.
const GROUPS: [(&str, &[&str]); 3] = [
    ("tcp", &["tcp4"]),
    ("udp", &["udp4", "udp6"]),
    ("bind", &["bind4", "bind6"]),
];

/// The rows of the run-time table: program, group of calls, label.
const PROGRAM_ROWS: [(&str, &str, &str); 5] = [
    ("mg_connect4", "tcp", "cgroup/connect4, TCP connects"),
    ("mg_connect4", "udp", "cgroup/connect4, UDP connect()s"),
    ("mg_connect6", "udp", "cgroup/connect6, UDP connect()s"),
    (
        "mg_bind4",
        "bind",
        "cgroup/bind4, TCP listeners on 127.0.0.1:0",
    ),
    ("mg_bind6", "bind", "cgroup/bind6, TCP listeners on [::1]:0"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Unguarded cgroup, no programs attached.
    Plain,
    /// Unguarded cgroup with a connect4 program that only returns 1 (the floor).
    Empty,
    /// Unguarded cgroup under the attachment point.
    Miss,
    /// Guarded cgroup under the attachment point.
    Hit,
    /// Unguarded cgroup two levels down, while two levels are set (pods are guarded on the node).
    MissPods,
    /// A cgroup beneath a guarded (pod) cgroup, found at its level.
    HitPod,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Plain,
        Phase::Empty,
        Phase::Miss,
        Phase::Hit,
        Phase::MissPods,
        Phase::HitPod,
    ];

    fn label(self) -> &'static str {
        match self {
            Phase::Plain => "unguarded cgroup, programs not attached",
            Phase::Empty => "unguarded cgroup, an empty connect4 program attached",
            Phase::Miss => "unguarded cgroup, programs attached, no levels set (miss path)",
            Phase::Hit => "guarded cgroup, allowed destination (hit path)",
            Phase::MissPods => {
                "unguarded cgroup, programs attached, two levels set (miss path, pods guarded)"
            }
            Phase::HitPod => {
                "container cgroup of a guarded pod cgroup, allowed destination (hit at a level)"
            }
        }
    }

    /// Whether the levels are set while it runs.
    fn levels(self) -> bool {
        matches!(self, Phase::MissPods | Phase::HitPod)
    }
}

fn main() {
    if std::env::var_os(CHILD_CGROUP).is_some() {
        if let Err(e) = child_main() {
            eprintln!("bpf bench child: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench` passes --bench; anything else (`cargo test --benches`) only checks it starts.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bpf bench: run it with `cargo bench -p mcp-guard-agent --bench bpf` (as root)");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!(
            "bpf bench SKIPPED: needs root (loading BPF programs, cgroup v2 directories, network \
             namespaces); run `make bench` as root"
        );
        return;
    }
    match run() {
        Ok(report) => {
            print!("{report}");
            let out = target_dir().join("bench");
            if let Err(e) = std::fs::create_dir_all(&out)
                .and_then(|()| std::fs::write(out.join("bpf.md"), &report))
            {
                eprintln!("bpf bench: writing {}: {e}", out.join("bpf.md").display());
            }
        }
        Err(e) => {
            eprintln!("bpf bench failed: {e:#}");
            std::process::exit(1);
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

// ---- what the bench creates, and its removal ----

/// The cgroups and pins of one run; removed on drop (and by the signal thread).
struct Resources {
    base: PathBuf,
    pin_dir: PathBuf,
    loaded: Option<Loaded>,
    /// The probe object, its connect4 program attached at the `empty` cgroup.
    probe: Option<aya::Ebpf>,
    /// Holds the kernel's run-time statistics on (`BPF_ENABLE_STATS`) until dropped.
    stats: Option<StatsOn>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        // map file descriptors first, then the pins (which detaches the programs)
        self.loaded.take();
        self.probe.take();
        cleanup(&self.pin_dir, &self.base);
        self.stats.take();
    }
}

static CLEANUP: Mutex<()> = Mutex::new(());

/// Kills what still runs in `base`, removes the pins under `pin_dir` and the cgroups under `base`.
/// Safe to call twice and concurrently.
fn cleanup(pin_dir: &Path, base: &Path) {
    let _once = CLEANUP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if base.exists() {
        let _ = std::fs::write(base.join("cgroup.kill"), "1");
    }
    if let Err(e) = bpf::unpin(pin_dir) {
        eprintln!("bpf bench cleanup: unpin {}: {e}", pin_dir.display());
    }
    for attempt in 0..50 {
        match remove_cgroup_tree(base) {
            Ok(()) => return,
            Err(e) if attempt == 49 => {
                eprintln!("bpf bench cleanup: removing {}: {e}", base.display());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// rmdir of a cgroup directory and its child cgroups, deepest first (cgroupfs files go with their
/// directory).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            remove_cgroup_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes what earlier runs that no longer exist left behind (a bench killed with SIGKILL).
fn remove_stale(cgroup_root: &Path) {
    let mut names: Vec<String> = Vec::new();
    for dir in [Path::new("/sys/fs/bpf"), cgroup_root] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            names.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            eprintln!("bpf bench: removing {name}, left by an earlier run");
            cleanup(
                &Path::new("/sys/fs/bpf").join(&name),
                &cgroup_root.join(&name),
            );
        }
    }
}

/// On SIGINT or SIGTERM: clean up and exit 130. Returns once the handlers are installed.
fn cleanup_on_signal(pin_dir: PathBuf, base: PathBuf) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        rt.block_on(async move {
            let (mut int, mut term) = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("bpf bench: interrupted; removing its programs, pins and cgroups");
        cleanup(&pin_dir, &base);
        restore_sysctl();
        std::process::exit(130);
    });
    rx.recv().context("the signal thread")?
}

// ---- run-time statistics ----

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The sysctl's value before the fallback set it, to restore.
static SYSCTL_BEFORE: Mutex<Option<String>> = Mutex::new(None);

/// Run-time statistics switched on: by a `BPF_ENABLE_STATS` descriptor (the kernel switches them
/// off again when it closes, however this process ends), else by the sysctl, restored on drop.
enum StatsOn {
    Fd { _held: OwnedFd },
    Sysctl,
}

impl StatsOn {
    fn enable() -> Result<(StatsOn, String)> {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Ok((
                StatsOn::Fd { _held: fd },
                "`BPF_ENABLE_STATS`, the switch `sysctl kernel.bpf_stats_enabled=1` flips, held \
                 by a file descriptor, so the kernel turns it off again however the bench ends"
                    .into(),
            )),
            Err(e) => {
                let before = std::fs::read_to_string(STATS_SYSCTL).with_context(|| {
                    format!("BPF_ENABLE_STATS failed ({e}); reading {STATS_SYSCTL}")
                })?;
                if before.trim() != "1" {
                    *SYSCTL_BEFORE
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(before);
                    std::fs::write(STATS_SYSCTL, "1")
                        .with_context(|| format!("setting {STATS_SYSCTL}"))?;
                }
                Ok((
                    StatsOn::Sysctl,
                    "`sysctl kernel.bpf_stats_enabled=1`, restored afterwards".into(),
                ))
            }
        }
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if matches!(self, StatsOn::Sysctl) {
            restore_sysctl();
        }
    }
}

fn restore_sysctl() {
    let before = SYSCTL_BEFORE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(v) = before
        && let Err(e) = std::fs::write(STATS_SYSCTL, v.trim())
    {
        eprintln!("bpf bench: restoring {STATS_SYSCTL}: {e}");
    }
}

/// `(run_time_ns, run_cnt)` of each program, read through its pin.
fn program_stats(pin_dir: &Path) -> Result<BTreeMap<&'static str, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for prog in PROGRAMS.iter().map(|(p, _)| *p).chain([EMPTY_PROGRAM]) {
        let path = pin_dir.join("progs").join(prog);
        let info = ProgramInfo::from_pin(&path)
            .with_context(|| format!("program info of {}", path.display()))?;
        let ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
        out.insert(prog, (ns, info.run_count()));
    }
    Ok(out)
}

/// Loads the probe object: attaches its empty connect4 program at `empty` (pinned beside the
/// others, so [`program_stats`] reads it and `unpin` removes it), and tries to load (never attach)
/// its LSM program. Returns the object and a sentence on BPF LSM.
fn load_probe(pin_dir: &Path, empty: &Path) -> Result<(aya::Ebpf, String)> {
    use aya::programs::{CgroupAttachMode, CgroupSockAddr, Lsm};
    let btf = aya::Btf::from_sys_fs().context("kernel BTF")?;
    let mut probe = aya::EbpfLoader::new()
        .btf(Some(&btf))
        .load(PROBE_OBJECT)
        .context("loading probe.bpf.o")?;
    let prog: &mut CgroupSockAddr = probe
        .program_mut(EMPTY_PROGRAM)
        .context("no empty connect4 program")?
        .try_into()?;
    prog.load()?;
    prog.pin(pin_dir.join("progs").join(EMPTY_PROGRAM))?;
    let cg = std::fs::File::open(empty)?;
    prog.attach(&cg, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {EMPTY_PROGRAM} at {}", empty.display()))?;
    let lsm: &mut Lsm = probe
        .program_mut("mg_probe_file_open")
        .context("no LSM probe program")?
        .try_into()?;
    let note = match lsm.load("file_open", &btf) {
        Err(e) => {
            let msg = e.to_string();
            // aya appends "Verifier output: <log>", empty when the kernel refused before verifying
            let msg = msg
                .trim_end_matches([' ', ':'])
                .trim_end_matches("Verifier output")
                .trim_end_matches(['.', ' ']);
            format!(
                "The LSM programs (file_open, bprm_check_security) are not measured: this kernel \
                 refuses to load a BPF LSM program ({msg})"
            )
        }
        Ok(()) => "BPF LSM programs load on this kernel, but this bench measures only the \
                   cgroup programs"
            .to_owned(),
    };
    Ok((probe, note))
}

// ---- the parent ----

/// One child's timings of one operation.
#[derive(Clone, Copy, Debug, Default)]
struct Timing {
    n: u64,
    mean: u64,
    /// The mean of the calls up to p99: the mean without the preemptions and interrupts that a
    /// loaded machine adds to a few calls (and that dominate the plain mean of a 200 ns call).
    trimmed: u64,
    p50: u64,
    p99: u64,
}

/// `(phase, group of calls, program)`.
type ProgramKey = (Phase, &'static str, &'static str);

#[derive(Debug, Default)]
struct Results {
    /// (phase, op) -> one Timing per round.
    latency: BTreeMap<(Phase, String), Vec<Timing>>,
    /// The programs' (run_time_ns, run_cnt) deltas, one per round.
    programs: BTreeMap<ProgramKey, Vec<(u64, u64)>>,
}

fn run() -> Result<String> {
    let (cgroup_root, _) = bpf::fs::ensure_cgroup2().context("cgroup v2")?;
    remove_stale(&cgroup_root);
    let name = format!("{PREFIX}{}", std::process::id());
    let base = cgroup_root.join(&name);
    let pin_dir = Path::new("/sys/fs/bpf").join(&name);
    cleanup_on_signal(pin_dir.clone(), base.clone())?;
    let mut res = Resources {
        base: base.clone(),
        pin_dir: pin_dir.clone(),
        loaded: None,
        probe: None,
        stats: None,
    };
    let attached = base.join("attached");
    let cgroups: BTreeMap<Phase, PathBuf> = [
        (Phase::Plain, base.join("plain")),
        (Phase::Empty, base.join("empty")),
        (Phase::Miss, attached.join("unguarded")),
        (Phase::Hit, attached.join("guarded")),
        (Phase::MissPods, attached.join("pod-other/c")),
        (Phase::HitPod, attached.join("pod/c")),
    ]
    .into();
    for dir in cgroups.values() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    // Load with the agent's loader, attaching at `attached` instead of the cgroup v2 root.
    let caps = Capabilities {
        cgroup_v2: Capability {
            available: true,
            detail: format!("at {}", cgroup_root.display()),
        },
        bpf_lsm: Capability {
            available: false,
            detail: "not measured by this bench".into(),
        },
        sock_addr: Capability {
            available: true,
            detail: "assumed by this bench".into(),
        },
        cgroup_root: Some(attached.clone()),
    };
    let mut loaded = bpf::load(&LoadOptions {
        pin_dir: pin_dir.clone(),
        capabilities: Some(caps),
    })?;
    for (_, hook) in PROGRAMS {
        if !loaded.enforcing(hook) {
            bail!("{hook} did not attach: {:?}", loaded.programs);
        }
    }
    let tmp = tempfile::tempdir()?;
    let policy_path = tmp.path().join("policy.yaml");
    std::fs::write(&policy_path, POLICY)?;
    let policy = load_policy(&policy_path)?;
    let rules = slot_rules(&policy.runtime, &[PathBuf::from("/")], &HostResolver).rules;
    let guarded_id = bpf::fs::cgroup_id(&cgroups[&Phase::Hit])?;
    let pod = attached.join("pod");
    let pod_id = bpf::fs::cgroup_id(&pod)?;
    let level = |dir: &Path| -> Result<u32> {
        let relative = dir.strip_prefix(&cgroup_root)?;
        Ok(u32::try_from(relative.components().count())?)
    };
    let levels = Levels::from([level(&attached)?, level(&pod)?]);
    loaded.enforcer.reconcile(
        &BTreeMap::from([(0, rules)]),
        &BTreeMap::from([(guarded_id, 0), (pod_id, 0)]),
        &BTreeSet::new(),
        &Levels::new(),
    )?;
    res.loaded = Some(loaded);
    let (probe, lsm_note) = load_probe(&pin_dir, &cgroups[&Phase::Empty])?;
    res.probe = Some(probe);
    let (stats, stats_how) = StatsOn::enable()?;
    res.stats = Some(stats);

    let rounds = env_usize("BENCH_BPF_ROUNDS", 11);
    let tcp = env_usize("BENCH_BPF_CONNECTS", 20_000);
    let counts = Counts {
        tcp,
        udp: tcp * 5 / 2,
        bind: (tcp / 4).max(1),
    };
    let load_before = loadavg();
    let started = Instant::now();
    let mut results = Results::default();
    for round in 0..rounds {
        // rotate the order, so no phase always runs first (or right after another)
        for i in 0..Phase::ALL.len() {
            let phase = Phase::ALL[(round + i) % Phase::ALL.len()];
            if let Some(loaded) = res.loaded.as_mut() {
                let set = if phase.levels() {
                    levels.clone()
                } else {
                    Levels::new()
                };
                loaded.enforcer.set_levels(&set)?;
            }
            for (group, ops) in GROUPS {
                let before = program_stats(&pin_dir)?;
                let timings = run_child(&cgroups[&phase], ops, &counts)
                    .with_context(|| format!("round {}, {}, {group}", round + 1, phase.label()))?;
                let after = program_stats(&pin_dir)?;
                for prog in PROGRAMS.iter().map(|(p, _)| *p).chain([EMPTY_PROGRAM]) {
                    let (t0, c0) = before[prog];
                    let (t1, c1) = after[prog];
                    results
                        .programs
                        .entry((phase, group, prog))
                        .or_default()
                        .push((t1.saturating_sub(t0), c1.saturating_sub(c0)));
                }
                for (op, t) in timings {
                    results.latency.entry((phase, op)).or_default().push(t);
                }
            }
        }
        eprintln!(
            "bpf bench: round {}/{rounds} done ({:.1} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let load_after = loadavg();
    let elapsed = started.elapsed();
    drop(res);

    Ok(report(
        &Meta {
            rounds,
            counts,
            stats_how,
            lsm_note,
            load_before,
            load_after,
            elapsed,
        },
        &results,
    ))
}

/// Calls per child: TCP connects, UDP connects (per family), binds (per family).
#[derive(Clone, Copy, Debug)]
struct Counts {
    tcp: usize,
    udp: usize,
    bind: usize,
}

impl Counts {
    fn of(&self, op: &str) -> usize {
        match op {
            "tcp4" => self.tcp,
            "udp4" | "udp6" => self.udp,
            _ => self.bind,
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs one measuring child doing `ops` in `cgroup` and returns its timings by operation.
fn run_child(cgroup: &Path, ops: &[&str], counts: &Counts) -> Result<BTreeMap<String, Timing>> {
    let exe = std::env::current_exe().context("this bench's executable")?;
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", NETNS_SETUP])
        .arg(&exe)
        .env(CHILD_CGROUP, cgroup)
        .env(
            CHILD_OPS,
            ops.iter()
                .map(|op| format!("{op}:{}", counts.of(op)))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .output()
        .context("running the child (needs unshare and ip)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "child failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut timings = BTreeMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let ["MGB", op, n, mean, trimmed, p50, p99] = f.as_slice() {
            timings.insert(
                (*op).to_owned(),
                Timing {
                    n: n.parse()?,
                    mean: mean.parse()?,
                    trimmed: trimmed.parse()?,
                    p50: p50.parse()?,
                    p99: p99.parse()?,
                },
            );
        }
    }
    for op in ops {
        if !timings.contains_key(*op) {
            bail!("the child reported no {op}:\n{stdout}");
        }
    }
    Ok(timings)
}

// ---- the report ----

struct Meta {
    rounds: usize,
    counts: Counts,
    stats_how: String,
    lsm_note: String,
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

fn signed(d: i128) -> String {
    if d >= 0 {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

/// Median and range of the per-round averages `run_time / run_cnt`, and the median calls per
/// round, of `prog` in `phase`.
fn per_call(r: &Results, phase: Phase, group: &str, prog: &str) -> (String, u64) {
    let rounds = r
        .programs
        .iter()
        .find(|((ph, g, p), _)| *ph == phase && *g == group && *p == prog)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let calls = median(rounds.iter().map(|(_, c)| *c).collect());
    let avgs: Vec<u64> = rounds
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(t, c)| t / c)
        .collect();
    let (Some(lo), Some(hi)) = (avgs.iter().min().copied(), avgs.iter().max().copied()) else {
        return ("no calls".to_owned(), calls);
    };
    (format!("{} [{lo}-{hi}]", median(avgs)), calls)
}

fn report(meta: &Meta, r: &Results) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let date = jiff::Timestamp::now().strftime("%Y-%m-%d");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### cgroup sock_addr programs ({date}, kernel {kernel}, {cpus} cores, load average {} \
         before, {} after; {} rounds in {:.1} s)\n",
        meta.load_before,
        meta.load_after,
        meta.rounds,
        meta.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "Run time per call, `run_time_ns / run_cnt` over each round's calls, median of {} rounds \
         [min-max]. Statistics on: {}.\n",
        meta.rounds, meta.stats_how
    );
    let _ = writeln!(
        s,
        "| program, calls | miss path ns/call (unguarded cgroup, no levels set) | miss path, two \
         levels set (pods guarded on the node) | hit path ns/call (guarded, allowed) | hit through \
         a guarded pod cgroup | calls per round |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for (prog, group, label) in PROGRAM_ROWS {
        let (miss, calls) = per_call(r, Phase::Miss, group, prog);
        let (miss_pods, _) = per_call(r, Phase::MissPods, group, prog);
        let (hit, _) = per_call(r, Phase::Hit, group, prog);
        let (hit_pod, _) = per_call(r, Phase::HitPod, group, prog);
        let _ = writeln!(
            s,
            "| {label} | {miss} | {miss_pods} | {hit} | {hit_pod} | {calls} |"
        );
    }
    for (group, what) in [("tcp", "TCP connects"), ("udp", "UDP connect()s")] {
        let (empty, calls) = per_call(r, Phase::Empty, group, EMPTY_PROGRAM);
        let _ = writeln!(
            s,
            "| for scale: a connect4 program that only returns 1, {what} | {empty} | | | | {calls} |"
        );
    }
    // Where each program is not attached it must not have run at all.
    let stray: u64 = r
        .programs
        .iter()
        .filter(|((phase, _, prog), _)| {
            let empty = *prog == EMPTY_PROGRAM;
            match phase {
                Phase::Plain => true,
                Phase::Empty => !empty,
                Phase::Miss | Phase::Hit | Phase::MissPods | Phase::HitPod => empty,
            }
        })
        .flat_map(|(_, rounds)| rounds.iter().map(|(_, c)| c))
        .sum();
    let _ = writeln!(
        s,
        "\n(Calls counted in cgroups where a program was not attached: {stray}.)\n"
    );

    let _ = writeln!(
        s,
        "Latency seen by the caller, ns: per round p50, p99, mean, and the mean of the calls up to \
         p99 (\"mean<=p99\", which leaves out the preemptions a loaded machine adds to a few calls) \
         over {} TCP connects or {} UDP connects, then the median over rounds; \"added\" is \
         against the same operation with no programs attached:\n",
        meta.counts.tcp, meta.counts.udp
    );
    let _ = writeln!(
        s,
        "| operation | caller | p50 | p99 | mean | mean<=p99 | added p50 | added mean<=p99 |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (op, what) in OPS {
        let med = |phase: Phase| {
            let ts = r
                .latency
                .get(&(phase, op.to_owned()))
                .cloned()
                .unwrap_or_default();
            Timing {
                n: ts.iter().map(|t| t.n).sum(),
                p50: median(ts.iter().map(|t| t.p50).collect()),
                p99: median(ts.iter().map(|t| t.p99).collect()),
                mean: median(ts.iter().map(|t| t.mean).collect()),
                trimmed: median(ts.iter().map(|t| t.trimmed).collect()),
            }
        };
        let base = med(Phase::Plain);
        for phase in Phase::ALL {
            // the empty program is a connect4 program: nothing to see over IPv6
            if phase == Phase::Empty && op.ends_with('6') {
                continue;
            }
            let t = med(phase);
            let (ap, am) = if phase == Phase::Plain {
                (String::new(), String::new())
            } else {
                (
                    signed(i128::from(t.p50) - i128::from(base.p50)),
                    signed(i128::from(t.trimmed) - i128::from(base.trimmed)),
                )
            };
            let _ = writeln!(
                s,
                "| {what} | {} | {} | {} | {} | {} | {ap} | {am} |",
                phase.label(),
                t.p50,
                t.p99,
                t.mean,
                t.trimmed
            );
        }
    }
    let _ = writeln!(
        s,
        "\nThe programs were attached at a private cgroup holding only this bench's processes \
         (the agent attaches at the cgroup v2 root; the per-call cost is the same). {}.\n",
        meta.lsm_note
    );
    s
}

// ---- the child ----

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn summarize(mut ns: Vec<u64>) -> Timing {
    ns.sort_unstable();
    let n = ns.len();
    if n == 0 {
        return Timing::default();
    }
    let mean = |v: &[u64]| {
        let sum: u128 = v.iter().map(|x| u128::from(*x)).sum();
        u64::try_from(sum / v.len().max(1) as u128).unwrap_or(u64::MAX)
    };
    let i99 = (n * 99 / 100).min(n - 1);
    Timing {
        n: n as u64,
        mean: mean(&ns),
        trimmed: mean(&ns[..=i99]),
        p50: ns[n / 2],
        p99: ns[i99],
    }
}

/// One TCP connect (timed: socket + connect), then the accept and an abortive close on both sides
/// (so no TIME_WAIT sockets pile up and ports are never exhausted).
fn tcp_connect(listener: &TcpListener, addr: SocketAddr) -> Result<u64> {
    let t = Instant::now();
    let client = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let ns = elapsed_ns(t);
    let (server, _) = listener.accept().context("accept")?;
    let client = tokio::net::TcpSocket::from_std_stream(client);
    client.set_zero_linger()?;
    drop(client);
    drop(server);
    Ok(ns)
}

fn udp_connect(sock: &UdpSocket, addr: SocketAddr) -> Result<u64> {
    let t = Instant::now();
    sock.connect(addr)
        .with_context(|| format!("UDP connect {addr}"))?;
    Ok(elapsed_ns(t))
}

/// A listener on loopback, port 0 (allowed under confineListeners): runs the bind hook.
fn tcp_bind(addr: SocketAddr) -> Result<u64> {
    let t = Instant::now();
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    let ns = elapsed_ns(t);
    drop(l);
    Ok(ns)
}

fn child_main() -> Result<()> {
    let cgroup = PathBuf::from(std::env::var_os(CHILD_CGROUP).context("no cgroup")?);
    let mut ops: Vec<(String, usize)> = Vec::new();
    for item in std::env::var(CHILD_OPS)
        .context("no ops")?
        .split_whitespace()
    {
        let (op, n) = item.split_once(':').context("op:count")?;
        ops.push((op.to_owned(), n.parse()?));
    }
    let v4: SocketAddr = V4.parse()?;
    let v6: SocketAddr = V6.parse()?;
    let lo4: SocketAddr = "127.0.0.1:0".parse()?;
    let lo6: SocketAddr = "[::1]:0".parse()?;
    // Listen before entering the cgroup: a guarded cgroup (confineListeners) may not listen on
    // 192.0.2.77.
    let listener = if ops.iter().any(|(op, _)| op == "tcp4") {
        Some(TcpListener::bind(v4).context("listen")?)
    } else {
        None
    };
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("entering {}", cgroup.display()))?;
    let udp4 = UdpSocket::bind("0.0.0.0:0")?;
    let udp6 = UdpSocket::bind("[::]:0")?;
    let one = |op: &str| -> Result<u64> {
        match (op, &listener) {
            ("tcp4", Some(l)) => tcp_connect(l, v4),
            ("udp4", _) => udp_connect(&udp4, v4),
            ("udp6", _) => udp_connect(&udp6, v6),
            ("bind4", _) => tcp_bind(lo4),
            ("bind6", _) => tcp_bind(lo6),
            _ => bail!("unknown op {op}"),
        }
    };
    let mut samples: Vec<(String, Vec<u64>)> = Vec::new();
    for (op, n) in ops {
        // warm up (caches, the route, the programs' first runs)
        for _ in 0..(n / 20).max(100) {
            one(&op)?;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(one(&op)?);
        }
        samples.push((op, v));
    }

    let mut out = std::io::stdout().lock();
    for (op, ns) in samples {
        let t = summarize(ns);
        writeln!(
            out,
            "MGB {op} {} {} {} {} {}",
            t.n, t.mean, t.trimmed, t.p50, t.p99
        )?;
    }
    out.flush()?;
    Ok(())
}
