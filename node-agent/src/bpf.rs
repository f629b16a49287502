//! Loading, pinning and driving the BPF programs of `ebpf/` (aya 0.14).
//!
//! [`load`] probes the kernel ([`capabilities`]), loads `mcp_guard.bpf.o` with the kernel's BTF,
//! re-adopts or creates the maps pinned under the pin directory (default
//! [`fs::DEFAULT_PIN_DIR`], `/sys/fs/bpf/mcp-guard`; bpffs is mounted at `/sys/fs/bpf` when it is
//! not), and attaches what the kernel allows: the LSM hooks globally (only when the probe saw a BPF
//! LSM program actually run), the sock_addr programs at the cgroup v2 root (found in mountinfo, or
//! mounted at `/sys/fs/cgroup/unified`, else `/run/mcp-guard/cgroup2`). Each program's
//! [`ProgramStatus`] says what happened. Programs stay attached through their pinned links after
//! the agent exits; a restarted agent re-adopts them (see [`pins`]) and reconciles the maps through
//! [`BpfEnforcer`]. [`unpin`] removes everything and so stops enforcement.
//!
//! Every program looks up the current cgroup id in `guarded_cgroups` first, then, when levels are
//! set ([`crate::model::Levels`]), the current task's ancestors at those levels; so attaching at
//! the root costs unguarded processes one hash lookup and one array read, plus one helper call and
//! one hash lookup per level. Map layouts: `ebpf/common.h` and [`layout`].

pub mod enforcer;
pub mod events;
pub mod fs;
pub mod layout;
pub mod pins;
pub mod probe;
pub mod rules;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, LpmTrie, Map, PerCpuArray, RingBuf};
use aya::{Btf, EbpfLoader};

pub use enforcer::{BpfEnforcer, BpfStats};
pub use events::{EventSource, PathIndex};
pub use pins::{AttachState, ProgramStatus, Unpinned, unpin};
pub use probe::{Capabilities, Capability, capabilities};

use layout::{LAYOUT_VERSION, MAP_SPECS, Meta};

/// The compiled programs (built from `ebpf/mcp_guard.bpf.c` by build.rs).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mcp_guard.bpf.o"));

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where programs, links and maps are pinned (must lie on bpffs, or directly under
    /// `/sys/fs/bpf`, which is then mounted).
    pub pin_dir: PathBuf,
    /// A probe already run; [`load`] probes when `None`.
    pub capabilities: Option<Capabilities>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(fs::DEFAULT_PIN_DIR),
            capabilities: None,
        }
    }
}

/// The loaded (or re-adopted) programs and maps.
#[derive(Debug)]
pub struct Loaded {
    pub pin_dir: PathBuf,
    pub capabilities: Capabilities,
    pub programs: Vec<ProgramStatus>,
    /// Whether the maps already existed (pinned by an earlier run) and were re-adopted.
    pub maps_adopted: bool,
    /// The layout version the pinned programs were recorded with (`None`: nothing was pinned). It
    /// stays the older one while an older program is kept ([`AttachState::KeptOlder`]).
    pub pinned_layout: Option<u32>,
    /// The maps, behind [`crate::model::Enforcer`].
    pub enforcer: BpfEnforcer,
    /// The event ring buffer.
    pub events: EventSource,
}

impl Loaded {
    /// Whether `hook` (e.g. `cgroup/connect4`) runs a program (this build's or a kept older one).
    pub fn enforcing(&self, hook: &str) -> bool {
        self.programs
            .iter()
            .any(|p| p.hook == hook && p.state.enforcing())
    }

    /// The programs whose hook still runs an older build's program, this build's having failed to
    /// attach over it ([`AttachState::KeptOlder`]): enforcement is degraded to what that build did.
    pub fn older_programs(&self) -> Vec<&ProgramStatus> {
        self.programs.iter().filter(|p| p.state.older()).collect()
    }
}

fn take<T>(ebpf: &mut aya::Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<Map>,
    <T as TryFrom<Map>>::Error: std::error::Error + Send + Sync + 'static,
{
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    T::try_from(map).with_context(|| format!("map {name}"))
}

/// Loads or re-adopts everything; see the module docs. Fails only when nothing sensible can run
/// (no BTF, no bpffs, incompatible pins); a hook the kernel refuses is reported in
/// [`Loaded::programs`] instead.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let capabilities = opts.capabilities.clone().unwrap_or_else(capabilities);
    let pin_dir = opts.pin_dir.as_path();
    fs::ensure_pin_dir(pin_dir)
        .with_context(|| format!("preparing the pin directory {}", pin_dir.display()))?;
    let btf = Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?;
    let maps_adopted = pins::map_path(pin_dir, layout::GUARDED_CGROUPS).exists();
    if maps_adopted {
        // A map this build adds is not pinned yet: the loader creates it.
        pins::check_maps(pin_dir, true)?;
    }
    let paths: Vec<(&str, PathBuf)> = MAP_SPECS
        .iter()
        .map(|s| (s.name, pins::map_path(pin_dir, s.name)))
        .collect();
    let mut loader = EbpfLoader::new();
    loader.btf(Some(&btf));
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(OBJECT).context("loading mcp_guard.bpf.o")?;
    pins::check_maps(pin_dir, false)?;

    let hash = layout::object_hash(OBJECT);
    let mut meta: Array<_, Meta> = take(&mut ebpf, layout::META)?;
    let old = meta.get(&0, 0).context("reading the meta map")?;
    let same_object = old.object_hash == hash && old.layout_version == LAYOUT_VERSION;
    let pinned_layout = maps_adopted.then_some(old.layout_version);
    let lsm_unusable =
        (!capabilities.bpf_lsm.available).then_some(capabilities.bpf_lsm.detail.as_str());
    let ctx = pins::AttachCtx {
        pin_dir,
        btf: &btf,
        cgroup_root: capabilities.cgroup_root.as_deref(),
        lsm_unusable,
        same_object,
    };
    let programs = pins::attach_all(&mut ebpf, &ctx);
    // Record this object once no older program remains attached.
    if !programs
        .iter()
        .any(|p| matches!(p.state, AttachState::KeptOlder { .. }))
    {
        let m = Meta {
            object_hash: hash,
            layout_version: LAYOUT_VERSION,
            reserved: 0,
        };
        meta.set(0, m, 0).context("writing the meta map")?;
    }

    let paths_index = PathIndex::default();
    let enforcer = BpfEnforcer {
        guarded: take::<HashMap<_, u64, u32>>(&mut ebpf, layout::GUARDED_CGROUPS)?,
        slots: take::<Array<_, _>>(&mut ebpf, layout::SLOT_CONFIG)?,
        files: take::<HashMap<_, _, _>>(&mut ebpf, layout::FILE_RULES)?,
        exec: take::<HashMap<_, _, _>>(&mut ebpf, layout::EXEC_RULES)?,
        v4: take::<LpmTrie<_, _, _>>(&mut ebpf, layout::EGRESS_V4)?,
        v6: take::<LpmTrie<_, _, _>>(&mut ebpf, layout::EGRESS_V6)?,
        ports: take::<HashMap<_, _, _>>(&mut ebpf, layout::DENY_PORTS)?,
        public: take::<HashMap<_, _, _>>(&mut ebpf, layout::PUBLIC_PORTS)?,
        settings: take::<Array<_, _>>(&mut ebpf, layout::SETTINGS)?,
        stats: take::<PerCpuArray<_, _>>(&mut ebpf, layout::STATS)?,
        paths: paths_index.clone(),
    };
    let events = EventSource {
        ring: take::<RingBuf<_>>(&mut ebpf, layout::EVENTS)?,
        paths: paths_index,
    };
    Ok(Loaded {
        pin_dir: pin_dir.to_path_buf(),
        capabilities,
        programs,
        maps_adopted,
        pinned_layout,
        enforcer,
        events,
    })
}

/// Whether `pin_dir` holds pinned links (an agent ran and left its programs enforcing).
pub fn has_pins(pin_dir: &Path) -> bool {
    std::fs::read_dir(pin_dir.join("links")).is_ok_and(|mut d| d.next().is_some())
}
