//! What this kernel lets the agent enforce, found by trying rather than by reading lists.

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::maps::Array;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, Lsm};
use aya::{Btf, EbpfLoader, Pod};
use serde::Serialize;

use super::fs;

static PROBE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// One probed feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub available: bool,
    /// Why (not): the mount point, the error, the probe's observation.
    pub detail: String,
}

impl Capability {
    fn yes(detail: impl Into<String>) -> Self {
        Self {
            available: true,
            detail: detail.into(),
        }
    }
    fn no(detail: impl Into<String>) -> Self {
        Self {
            available: false,
            detail: detail.into(),
        }
    }
}

/// The capability probe's result: plain data, for logs, metrics
/// (`mcp_guard_agent_capability{feature}`) and Kubernetes Events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// A cgroup v2 hierarchy is mounted (or the probe mounted one); `detail` is its path.
    pub cgroup_v2: Capability,
    /// A BPF LSM program loaded, attached AND ran (files and exec can be enforced).
    pub bpf_lsm: Capability,
    /// A cgroup sock_addr program attached at the cgroup v2 root (egress and listeners).
    pub sock_addr: Capability,
    /// The cgroup v2 root, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_root: Option<PathBuf>,
}

impl Capabilities {
    /// The same results in the form [`crate::probe::assess`] takes (metrics, Events).
    pub fn probes(&self) -> crate::probe::Capabilities {
        let p = |c: &Capability| {
            if c.available {
                crate::probe::Probe::available()
            } else {
                crate::probe::Probe::unavailable(c.detail.clone())
            }
        };
        crate::probe::Capabilities {
            cgroup_v2: p(&self.cgroup_v2),
            bpf_lsm: p(&self.bpf_lsm),
            sock_addr: p(&self.sock_addr),
        }
    }

    /// `(feature label, capability)` for each feature, in a stable order (the labels of
    /// `mcp_guard_agent_capability{feature}`).
    pub fn features(&self) -> [(&'static str, &Capability); 3] {
        [
            ("cgroup_v2", &self.cgroup_v2),
            ("bpf_lsm", &self.bpf_lsm),
            ("cgroup_sock_addr", &self.sock_addr),
        ]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ProbeState {
    pid: u32,
    hits: u32,
}
// SAFETY: `#[repr(C)]`, two u32 with no padding, every bit pattern valid; matches
// `struct mg_probe_state` in ebpf/probe.bpf.c.
#[allow(unsafe_code)]
unsafe impl Pod for ProbeState {}

/// Probes cgroup v2 (mounting it when absent, see [`fs::ensure_cgroup2`]), BPF LSM and sock_addr.
/// Never fails: every failure is a capability marked unavailable with its reason. Needs root.
pub fn capabilities() -> Capabilities {
    let (cgroup_v2, cgroup_root) = match fs::ensure_cgroup2() {
        Ok((p, mounted)) => {
            let how = if mounted {
                "mounted by the agent at"
            } else {
                "at"
            };
            (Capability::yes(format!("{how} {}", p.display())), Some(p))
        }
        Err(e) => (Capability::no(format!("no cgroup v2 hierarchy: {e}")), None),
    };
    let (bpf_lsm, sock_addr) = match Btf::from_sys_fs() {
        Err(e) => {
            let why = format!("no kernel BTF at /sys/kernel/btf/vmlinux: {e}");
            (
                Capability::no(why.clone()),
                probe_sock_addr(cgroup_root.as_deref()),
            )
        }
        Ok(btf) => (probe_lsm(&btf), probe_sock_addr(cgroup_root.as_deref())),
    };
    Capabilities {
        cgroup_v2,
        bpf_lsm,
        sock_addr,
        cgroup_root,
    }
}

fn probe_lsm(btf: &Btf) -> Capability {
    match try_lsm(btf) {
        Ok(c) => c,
        Err(e) => Capability::no(format!("{e:#}")),
    }
}

fn try_lsm(btf: &Btf) -> anyhow::Result<Capability> {
    use anyhow::Context as _;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .load(PROBE_OBJECT)
        .context("loading the probe object")?;
    let mut state: Array<_, ProbeState> = Array::try_from(
        ebpf.take_map("probe_state")
            .context("probe_state map missing")?,
    )?;
    state.set(
        0,
        ProbeState {
            pid: std::process::id(),
            hits: 0,
        },
        0,
    )?;
    let prog: &mut Lsm = ebpf
        .program_mut("mg_probe_file_open")
        .context("probe program missing")?
        .try_into()?;
    prog.load("file_open", btf)
        .context("BPF_PROG_LOAD of an LSM program (file_open)")?;
    let link = prog.attach().context("attaching an LSM program")?;
    // Any open by this process runs the hook once BPF LSM is active.
    let _ = File::open("/proc/self/stat");
    let hits = state.get(&0, 0)?.hits;
    prog.detach(link)?;
    let active = std::fs::read_to_string("/sys/kernel/security/lsm").ok();
    let lsm_list = active.map_or_else(
        || "securityfs not mounted".to_owned(),
        |l| format!("lsm={}", l.trim()),
    );
    Ok(if hits > 0 {
        Capability::yes(format!("loaded, attached and ran ({lsm_list})"))
    } else {
        Capability::no(format!(
            "loads and attaches but never runs: bpf is not an active LSM (boot with lsm=...,bpf; {lsm_list})"
        ))
    })
}

fn probe_sock_addr(root: Option<&Path>) -> Capability {
    let Some(root) = root else {
        return Capability::no("no cgroup v2 root to attach to");
    };
    let attempt = || -> anyhow::Result<()> {
        use anyhow::Context as _;
        let mut ebpf = EbpfLoader::new().load(PROBE_OBJECT)?;
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut("mg_probe_connect4")
            .context("probe program missing")?
            .try_into()?;
        prog.load()
            .context("BPF_PROG_LOAD of a cgroup/connect4 program")?;
        let cg = File::open(root).with_context(|| format!("open {}", root.display()))?;
        let link = prog
            .attach(&cg, CgroupAttachMode::Single)
            .context("attaching cgroup/connect4 at the cgroup v2 root")?;
        prog.detach(link)?;
        Ok(())
    };
    match attempt() {
        Ok(()) => Capability::yes(format!("attached at {}", root.display())),
        Err(e) => Capability::no(format!("{e:#}")),
    }
}
