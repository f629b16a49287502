//! Programs, links and maps under the pin directory, and how a restarted agent takes them over.
//!
//! Layout: `<pin dir>/maps/<map>`, `<pin dir>/progs/<program>`, `<pin dir>/links/<program>`.
//! A pinned link keeps its program attached with no process holding it. On start, a link pinned
//! by the same object (the `meta` map records the object's hash) is re-adopted as it is: never
//! detached, never re-attached. A link pinned by another build is replaced without a gap: the new
//! program is attached and pinned beside it, then renamed over it (which detaches the old one).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use aya::maps::MapInfo;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, Lsm};
use aya::{Btf, Ebpf};
use serde::Serialize;

use super::layout::MAP_SPECS;

/// Where a program hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A BPF LSM hook, attached globally.
    Lsm(&'static str),
    /// A cgroup sock_addr program, attached at the cgroup v2 root.
    SockAddr(&'static str),
}

/// The programs of `mcp_guard.bpf.o`.
pub const PROGRAMS: [(&str, Hook); 6] = [
    ("mg_file_open", Hook::Lsm("file_open")),
    ("mg_bprm_check", Hook::Lsm("bprm_check_security")),
    ("mg_connect4", Hook::SockAddr("connect4")),
    ("mg_connect6", Hook::SockAddr("connect6")),
    ("mg_bind4", Hook::SockAddr("bind4")),
    ("mg_bind6", Hook::SockAddr("bind6")),
];

/// What happened to one program at load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AttachState {
    /// Attached and pinned by this load.
    Attached,
    /// Its pinned link (from this same build) was kept: it never stopped enforcing.
    Adopted,
    /// Attached by this load, replacing the link another build had pinned (no gap).
    Replaced,
    /// This build's program could not attach; the link another build pinned is kept.
    KeptOlder { reason: String },
    /// Not attached.
    NotAttached { reason: String },
}

impl AttachState {
    /// Whether the hook runs a program now. A [`AttachState::KeptOlder`] program counts, but it
    /// enforces what its own build did (see [`AttachState::older`]).
    pub fn enforcing(&self) -> bool {
        !matches!(self, AttachState::NotAttached { .. })
    }

    /// Whether the hook runs an older build's program (degraded): programs of layout version 1 look
    /// up a process's own cgroup only, never its ancestors, and know no public ports.
    pub fn older(&self) -> bool {
        matches!(self, AttachState::KeptOlder { .. })
    }
}

/// One program's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramStatus {
    pub program: &'static str,
    /// `lsm/file_open`, `cgroup/connect4`, ...
    pub hook: String,
    #[serde(flatten)]
    pub state: AttachState,
}

pub(super) fn link_path(pin_dir: &Path, prog: &str) -> PathBuf {
    pin_dir.join("links").join(prog)
}

pub(super) fn map_path(pin_dir: &Path, map: &str) -> PathBuf {
    pin_dir.join("maps").join(map)
}

fn prog_path(pin_dir: &Path, prog: &str) -> PathBuf {
    pin_dir.join("progs").join(prog)
}

/// Refuses pinned (or freshly created) maps whose layout differs from this build's. With
/// `missing_ok`, a map not pinned at all passes (an older build did not have it).
pub(super) fn check_maps(pin_dir: &Path, missing_ok: bool) -> Result<()> {
    for spec in MAP_SPECS {
        let path = map_path(pin_dir, spec.name);
        if missing_ok && !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
        let got = (info.key_size(), info.value_size(), info.max_entries());
        let want = (spec.key_size, spec.value_size, spec.max_entries);
        if got != want {
            bail!(
                "pinned map {} has (key, value, entries) = {got:?}, this build expects {want:?}: it \
                 was pinned by an incompatible mcp-guard version; remove the pins with \
                 `mcp-guard-agent --unpin --pin-dir {}` (this stops enforcement until the next load)",
                path.display(),
                pin_dir.display()
            );
        }
    }
    Ok(())
}

/// The context [`attach_or_adopt`] needs.
pub(super) struct AttachCtx<'a> {
    pub pin_dir: &'a Path,
    pub btf: &'a Btf,
    pub cgroup_root: Option<&'a Path>,
    /// `Some(reason)` when the probe found BPF LSM unusable.
    pub lsm_unusable: Option<&'a str>,
    /// Whether the pinned programs came from this very object.
    pub same_object: bool,
}

/// Adopts, attaches or replaces every program.
pub(super) fn attach_all(ebpf: &mut Ebpf, ctx: &AttachCtx<'_>) -> Vec<ProgramStatus> {
    PROGRAMS
        .iter()
        .map(|(prog, hook)| {
            let hook_name = match hook {
                Hook::Lsm(h) => format!("lsm/{h}"),
                Hook::SockAddr(h) => format!("cgroup/{h}"),
            };
            ProgramStatus {
                program: prog,
                hook: hook_name,
                state: attach_or_adopt(ebpf, ctx, prog, *hook),
            }
        })
        .collect()
}

fn attach_or_adopt(ebpf: &mut Ebpf, ctx: &AttachCtx<'_>, prog: &str, hook: Hook) -> AttachState {
    let path = link_path(ctx.pin_dir, prog);
    let pinned = PinnedLink::from_pin(&path).is_ok();
    if pinned && ctx.same_object {
        return AttachState::Adopted;
    }
    match attach_new(ebpf, ctx, prog, hook) {
        Ok(()) if pinned => AttachState::Replaced,
        Ok(()) => AttachState::Attached,
        Err(e) if pinned => AttachState::KeptOlder {
            reason: format!("{e:#}"),
        },
        Err(e) => AttachState::NotAttached {
            reason: format!("{e:#}"),
        },
    }
}

/// Pins `pin` at `dest` through a temporary name, so an existing pin is replaced atomically.
fn pin_over(dest: &Path, pin: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // bpffs refuses names with a dot
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push("_new");
    let tmp = dest.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    pin(&tmp)?;
    std::fs::rename(&tmp, dest).with_context(|| format!("rename to {}", dest.display()))
}

fn attach_new(ebpf: &mut Ebpf, ctx: &AttachCtx<'_>, prog: &str, hook: Hook) -> Result<()> {
    let program = ebpf
        .program_mut(prog)
        .with_context(|| format!("program {prog} missing from the object"))?;
    let link: FdLink = match hook {
        Hook::Lsm(h) => {
            if let Some(why) = ctx.lsm_unusable {
                bail!("BPF LSM unusable: {why}");
            }
            let p: &mut Lsm = program.try_into()?;
            p.load(h, ctx.btf)
                .with_context(|| format!("loading lsm/{h}"))?;
            let id = p.attach().with_context(|| format!("attaching lsm/{h}"))?;
            p.take_link(id)?.into()
        }
        Hook::SockAddr(h) => {
            let root = ctx.cgroup_root.context("no cgroup v2 hierarchy")?;
            let p: &mut CgroupSockAddr = program.try_into()?;
            p.load().with_context(|| format!("loading cgroup/{h}"))?;
            let cg = File::open(root).with_context(|| format!("open {}", root.display()))?;
            let id = p
                .attach(&cg, CgroupAttachMode::Single)
                .with_context(|| format!("attaching cgroup/{h} at {}", root.display()))?;
            p.take_link(id)?.try_into()?
        }
    };
    // The program pin first (informational), then the link pin that keeps it attached.
    if let Some(program) = ebpf.program_mut(prog) {
        pin_over(&prog_path(ctx.pin_dir, prog), |tmp| {
            program.pin(tmp).map_err(anyhow::Error::from)
        })?;
    }
    pin_over(&link_path(ctx.pin_dir, prog), |tmp| {
        link.pin(tmp).map(drop).map_err(anyhow::Error::from)
    })
}

/// What [`unpin`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unpinned {
    pub links: Vec<String>,
    pub programs: Vec<String>,
    pub maps: Vec<String>,
}

/// Removes every pin under `pin_dir`, links first (which detaches the programs), then the
/// directory itself. A missing directory is not an error.
pub fn unpin(pin_dir: &Path) -> io::Result<Unpinned> {
    let mut out = Unpinned::default();
    if !pin_dir.exists() {
        return Ok(out);
    }
    for (sub, list) in [
        ("links", &mut out.links),
        ("progs", &mut out.programs),
        ("maps", &mut out.maps),
    ] {
        let dir = pin_dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            std::fs::remove_file(entry.path())?;
            list.push(entry.file_name().to_string_lossy().into_owned());
        }
        std::fs::remove_dir(&dir)?;
    }
    std::fs::remove_dir(pin_dir)?;
    out.links.sort();
    out.programs.sort();
    out.maps.sort();
    Ok(out)
}
