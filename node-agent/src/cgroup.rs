//! From a pod to its containers' cgroup v2 directories, and from a directory to its cgroup id.
//!
//! The kubelet names a pod's cgroup after its QoS class and UID; the container runtime names the
//! container's cgroup beneath it after the container ID. Two drivers spell the same hierarchy:
//!
//! | driver   | pod (Burstable)                                                        | container (containerd / CRI-O / Docker)                 |
//! |----------|------------------------------------------------------------------------|---------------------------------------------------------|
//! | systemd  | `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice` | `cri-containerd-<id>.scope` / `crio-<id>.scope` / `docker-<id>.scope` |
//! | cgroupfs | `kubepods/burstable/pod<uid>`                                          | `<id>` / `crio-<id>` / `<id>`                           |
//!
//! Guaranteed pods sit directly under `kubepods`; systemd slice names carry the UID with `-`
//! replaced by `_`. The kubelet's `--cgroup-root` ([`Layout::parent`]) goes in front of `kubepods`.
//! Kubernetes mode guards the pod's directory ([`locate_pod`]), which exists before anything of the
//! pod runs; the containers' directories ([`locate`]) are only needed to find a process of each
//! (file and exec rules resolve inside its root) and to name the container in events. Everything here is a pure function of its inputs except [`HostCgroupFs`], the
//! real filesystem behind the [`CgroupFs`] trait that tests replace. The cgroup id the kernel reports
//! (`bpf_get_current_cgroup_id()`) is the inode number of the cgroup v2 directory.

use std::io;
use std::path::{Path, PathBuf};

/// A pod's QoS class, from `status.qosClass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// All classes, for when a pod's status does not say yet.
    pub const ALL: [QosClass; 3] = [Self::Guaranteed, Self::Burstable, Self::BestEffort];

    /// Parses `status.qosClass`.
    pub fn from_status(s: &str) -> Option<Self> {
        match s {
            "Guaranteed" => Some(Self::Guaranteed),
            "Burstable" => Some(Self::Burstable),
            "BestEffort" => Some(Self::BestEffort),
            _ => None,
        }
    }

    /// The kubelet's cgroup name component for the class (Guaranteed pods have none).
    fn component(self) -> Option<&'static str> {
        match self {
            Self::Guaranteed => None,
            Self::Burstable => Some("burstable"),
            Self::BestEffort => Some("besteffort"),
        }
    }
}

/// The container runtime, from the scheme of a `containerID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerRuntime {
    Containerd,
    CriO,
    Docker,
}

/// A container as `status.containerStatuses[].containerID` names it (`containerd://<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId {
    pub runtime: ContainerRuntime,
    pub id: String,
}

impl ContainerId {
    /// Parses `<runtime>://<id>`. The id becomes a path component, so it must be a plain name.
    pub fn parse(s: &str) -> Result<Self, CgroupError> {
        let bad = || CgroupError::BadContainerId(s.to_owned());
        let (scheme, id) = s.split_once("://").ok_or_else(bad)?;
        let runtime = match scheme {
            "containerd" => ContainerRuntime::Containerd,
            "cri-o" => ContainerRuntime::CriO,
            "docker" => ContainerRuntime::Docker,
            _ => return Err(bad()),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if id.is_empty() || !id.chars().all(plain) {
            return Err(bad());
        }
        Ok(Self {
            runtime,
            id: id.to_owned(),
        })
    }

    /// The container's own cgroup directory name under its pod's.
    fn leaf(&self, driver: Driver) -> String {
        let id = &self.id;
        match (driver, self.runtime) {
            (Driver::Systemd, ContainerRuntime::Containerd) => format!("cri-containerd-{id}.scope"),
            (Driver::Systemd, ContainerRuntime::CriO) => format!("crio-{id}.scope"),
            (Driver::Systemd, ContainerRuntime::Docker) => format!("docker-{id}.scope"),
            (Driver::Cgroupfs, ContainerRuntime::CriO) => format!("crio-{id}"),
            (Driver::Cgroupfs, _) => id.clone(),
        }
    }
}

/// The kubelet's (and runtime's) cgroup driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

impl Driver {
    pub const ALL: [Driver; 2] = [Self::Systemd, Self::Cgroupfs];
}

/// Where the kubelet's pods live: the cgroup v2 mount and the kubelet's `--cgroup-root` (as
/// components; empty, the default, means the hierarchy's root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The cgroup v2 mount point, e.g. `/sys/fs/cgroup` (or `/sys/fs/cgroup/unified` on hybrid hosts).
    pub mount: PathBuf,
    /// The kubelet's `--cgroup-root`, split into components (`/kubelet` is `["kubelet"]`).
    pub parent: Vec<String>,
}

impl Layout {
    pub fn new(mount: impl Into<PathBuf>) -> Self {
        Self {
            mount: mount.into(),
            parent: Vec::new(),
        }
    }
}

/// Turns cgroup name components into a path: `a/b/c` (cgroupfs) or
/// `a.slice/a-b.slice/a-b-c.slice` (systemd, each component with `-` escaped to `_`).
fn hierarchy(driver: Driver, components: &[String]) -> PathBuf {
    let mut path = PathBuf::new();
    match driver {
        Driver::Cgroupfs => path.extend(components),
        Driver::Systemd => {
            let mut prefix = String::new();
            for c in components {
                if !prefix.is_empty() {
                    prefix.push('-');
                }
                prefix.push_str(&c.replace('-', "_"));
                path.push(format!("{prefix}.slice"));
            }
        }
    }
    path
}

/// The pod's cgroup directory, relative to the cgroup mount.
pub fn pod_cgroup(driver: Driver, parent: &[String], qos: QosClass, uid: &str) -> PathBuf {
    let mut components = parent.to_vec();
    components.push("kubepods".to_owned());
    components.extend(qos.component().map(str::to_owned));
    components.push(format!("pod{uid}"));
    hierarchy(driver, &components)
}

/// The container's cgroup directory, relative to the cgroup mount.
pub fn container_cgroup(
    driver: Driver,
    parent: &[String],
    qos: QosClass,
    uid: &str,
    container: &ContainerId,
) -> PathBuf {
    pod_cgroup(driver, parent, qos, uid).join(container.leaf(driver))
}

/// The filesystem questions this module asks; [`HostCgroupFs`] answers them for real.
pub trait CgroupFs {
    fn is_dir(&self, path: &Path) -> bool;
    /// The inode number of a directory: its cgroup id when it is a cgroup v2 directory.
    fn inode(&self, path: &Path) -> io::Result<u64>;
    /// A process in the cgroup (from its `cgroup.procs`), if any.
    fn first_pid(&self, path: &Path) -> io::Result<Option<u32>>;
}

/// The node's real cgroup filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCgroupFs;

impl CgroupFs for HostCgroupFs {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::metadata(path)?.ino())
    }

    fn first_pid(&self, path: &Path) -> io::Result<Option<u32>> {
        let procs = std::fs::read_to_string(path.join("cgroup.procs"))?;
        Ok(procs.lines().find_map(|l| l.trim().parse().ok()))
    }
}

/// Which driver the node uses, from the top-level `kubepods` directory that exists.
pub fn detect_driver(fs: &dyn CgroupFs, layout: &Layout) -> Option<Driver> {
    let kubepods = |driver| {
        let mut components = layout.parent.clone();
        components.push("kubepods".to_owned());
        layout.mount.join(hierarchy(driver, &components))
    };
    Driver::ALL
        .into_iter()
        .find(|&driver| fs.is_dir(&kubepods(driver)))
}

/// A pod's cgroup, found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// The absolute directory.
    pub path: PathBuf,
    /// Its cgroup id (the directory's inode).
    pub id: u64,
    /// Its level: how many directories below the cgroup v2 root it lies (what
    /// `bpf_get_current_ancestor_cgroup_id()` takes to name it from any process beneath it).
    pub level: u32,
    pub driver: Driver,
}

/// The drivers to try, the detected one first.
fn drivers(fs: &dyn CgroupFs, layout: &Layout) -> Vec<Driver> {
    let mut drivers = Driver::ALL.to_vec();
    if let Some(detected) = detect_driver(fs, layout) {
        drivers.sort_by_key(|&d| d != detected);
    }
    drivers
}

/// Finds a pod's cgroup directory, trying both drivers (the detected one first) and, when the pod's
/// status does not name its QoS class yet, every class. The kubelet creates it before anything of
/// the pod runs (the sandbox and every container are created beneath it); `PodNotFound` means "not
/// yet". `layout.mount` must be a mount of the whole hierarchy (its root is the cgroup v2 root), so
/// that the path's depth below it is the cgroup's level.
pub fn locate_pod(
    fs: &dyn CgroupFs,
    layout: &Layout,
    qos: Option<QosClass>,
    uid: &str,
) -> Result<PodCgroup, CgroupError> {
    if !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || uid.is_empty() {
        return Err(CgroupError::BadPodUid(uid.to_owned()));
    }
    let classes = qos.map_or(QosClass::ALL.to_vec(), |q| vec![q]);
    for driver in drivers(fs, layout) {
        for &class in &classes {
            let relative = pod_cgroup(driver, &layout.parent, class, uid);
            let path = layout.mount.join(&relative);
            if fs.is_dir(&path) {
                let id = fs.inode(&path).map_err(|e| CgroupError::Io {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let level = u32::try_from(relative.components().count()).unwrap_or(u32::MAX);
                return Ok(PodCgroup {
                    path,
                    id,
                    level,
                    driver,
                });
            }
        }
    }
    Err(CgroupError::PodNotFound {
        uid: uid.to_owned(),
    })
}

/// A container's cgroup, found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The absolute directory.
    pub path: PathBuf,
    /// Its cgroup id (the directory's inode).
    pub id: u64,
    pub driver: Driver,
}

/// Finds a container's cgroup directory, trying both drivers (the detected one first) and, when the
/// pod's status does not name its QoS class yet, every class. `NotFound` means "not yet": the
/// container may still be starting.
pub fn locate(
    fs: &dyn CgroupFs,
    layout: &Layout,
    qos: Option<QosClass>,
    uid: &str,
    container: &ContainerId,
) -> Result<ContainerCgroup, CgroupError> {
    let classes = qos.map_or(QosClass::ALL.to_vec(), |q| vec![q]);
    for driver in drivers(fs, layout) {
        for &class in &classes {
            let path = layout.mount.join(container_cgroup(
                driver,
                &layout.parent,
                class,
                uid,
                container,
            ));
            if fs.is_dir(&path) {
                let id = fs.inode(&path).map_err(|e| CgroupError::Io {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                return Ok(ContainerCgroup { path, id, driver });
            }
        }
    }
    Err(CgroupError::NotFound {
        container: container.id.clone(),
    })
}

/// The cgroup v2 mount points (of the whole hierarchy) listed in a `/proc/self/mountinfo`, in order.
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut fields = left.split_whitespace().skip(3);
            // A bind mount of a subtree (root other than `/`) does not show the whole hierarchy.
            let (root, mount) = (fields.next()?, fields.next()?);
            (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape_octal(mount)))
        })
        .collect()
}

/// Finds the cgroup v2 mount of this host from `/proc/self/mountinfo`, preferring `/sys/fs/cgroup`.
pub fn find_cgroup2_mount() -> io::Result<Option<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = cgroup2_mounts(&mountinfo);
    let preferred = Path::new("/sys/fs/cgroup");
    Ok(mounts
        .iter()
        .find(|m| m.as_path() == preferred)
        .or(mounts.first())
        .cloned())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a container's cgroup could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    #[error("not a container ID the agent understands: {0:?}")]
    BadContainerId(String),
    #[error("no cgroup directory for container {container} (yet)")]
    NotFound { container: String },
    #[error("not a pod UID the agent understands: {0:?}")]
    BadPodUid(String),
    #[error("no cgroup directory for pod {uid} (yet)")]
    PodNotFound { uid: String },
    #[error("{path}: {message}", path = path.display())]
    Io { path: PathBuf, message: String },
}

#[cfg(test)]
mod tests;
