#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

const UID: &str = "8d5e1c2a-0b7f-4c39-9a51-2f3e4d5c6b7a";
const UID_: &str = "8d5e1c2a_0b7f_4c39_9a51_2f3e4d5c6b7a";
const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn id(runtime: &str) -> ContainerId {
    ContainerId::parse(&format!("{runtime}://{ID}")).unwrap()
}

/// A fake cgroup tree: directories with inode numbers, and the pids in them.
#[derive(Default)]
struct FakeFs {
    dirs: BTreeMap<PathBuf, u64>,
    pids: BTreeMap<PathBuf, u32>,
}

impl FakeFs {
    fn with(paths: &[&str]) -> Self {
        let mut fs = Self::default();
        for (n, p) in paths.iter().enumerate() {
            let mut path = PathBuf::new();
            for c in Path::new(p).components() {
                path.push(c);
                let next = fs.dirs.len() as u64 + 1000;
                fs.dirs.entry(path.clone()).or_insert(next);
            }
            fs.dirs.insert(PathBuf::from(p), 100 + n as u64);
        }
        fs
    }
}

impl CgroupFs for FakeFs {
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.contains_key(path)
    }
    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.dirs
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn first_pid(&self, path: &Path) -> io::Result<Option<u32>> {
        Ok(self.pids.get(path).copied())
    }
}

#[test]
fn container_ids_parse_for_each_runtime() {
    assert_eq!(id("containerd").runtime, ContainerRuntime::Containerd);
    assert_eq!(id("cri-o").runtime, ContainerRuntime::CriO);
    assert_eq!(id("docker").runtime, ContainerRuntime::Docker);
    assert_eq!(id("docker").id, ID);
    for bad in [
        "",
        "containerd://",
        "abc",
        "rkt://abc",
        "containerd://../../etc",
        "containerd://a/b",
        "containerd://a b",
    ] {
        assert!(ContainerId::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn qos_classes_parse_from_status() {
    assert_eq!(
        QosClass::from_status("Guaranteed"),
        Some(QosClass::Guaranteed)
    );
    assert_eq!(
        QosClass::from_status("Burstable"),
        Some(QosClass::Burstable)
    );
    assert_eq!(
        QosClass::from_status("BestEffort"),
        Some(QosClass::BestEffort)
    );
    assert_eq!(QosClass::from_status("burstable"), None);
}

/// Both drivers × containerd and CRI-O × the three QoS classes.
#[test]
fn container_paths_for_every_driver_runtime_and_qos() {
    use Driver::*;
    use QosClass::*;
    let cases: &[(Driver, &str, QosClass, String)] = &[
        (
            Systemd,
            "containerd",
            Guaranteed,
            format!("kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        ),
        (
            Systemd,
            "containerd",
            Burstable,
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
        ),
        (
            Systemd,
            "containerd",
            BestEffort,
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
        ),
        (
            Systemd,
            "cri-o",
            Guaranteed,
            format!("kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope"),
        ),
        (
            Systemd,
            "cri-o",
            Burstable,
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
            ),
        ),
        (
            Systemd,
            "cri-o",
            BestEffort,
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"
            ),
        ),
        (
            Cgroupfs,
            "containerd",
            Guaranteed,
            format!("kubepods/pod{UID}/{ID}"),
        ),
        (
            Cgroupfs,
            "containerd",
            Burstable,
            format!("kubepods/burstable/pod{UID}/{ID}"),
        ),
        (
            Cgroupfs,
            "containerd",
            BestEffort,
            format!("kubepods/besteffort/pod{UID}/{ID}"),
        ),
        (
            Cgroupfs,
            "cri-o",
            Guaranteed,
            format!("kubepods/pod{UID}/crio-{ID}"),
        ),
        (
            Cgroupfs,
            "cri-o",
            Burstable,
            format!("kubepods/burstable/pod{UID}/crio-{ID}"),
        ),
        (
            Cgroupfs,
            "cri-o",
            BestEffort,
            format!("kubepods/besteffort/pod{UID}/crio-{ID}"),
        ),
    ];
    for (driver, runtime, qos, want) in cases {
        let got = container_cgroup(*driver, &[], *qos, UID, &id(runtime));
        assert_eq!(got, PathBuf::from(want), "{driver:?} {runtime} {qos:?}");
    }
}

#[test]
fn docker_names_its_scopes_and_directories() {
    assert_eq!(
        container_cgroup(
            Driver::Systemd,
            &[],
            QosClass::Burstable,
            UID,
            &id("docker")
        ),
        PathBuf::from(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope"
        ))
    );
    assert_eq!(
        container_cgroup(
            Driver::Cgroupfs,
            &[],
            QosClass::BestEffort,
            UID,
            &id("docker")
        ),
        PathBuf::from(format!("kubepods/besteffort/pod{UID}/{ID}"))
    );
}

#[test]
fn a_kubelet_cgroup_root_nests_the_hierarchy() {
    let parent = vec!["kubelet".to_owned()];
    assert_eq!(
        pod_cgroup(Driver::Systemd, &parent, QosClass::Burstable, UID),
        PathBuf::from(format!(
            "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_}.slice"
        ))
    );
    assert_eq!(
        pod_cgroup(Driver::Cgroupfs, &parent, QosClass::Guaranteed, UID),
        PathBuf::from(format!("kubelet/kubepods/pod{UID}"))
    );
}

/// The local node recipe (ENVIRONMENT.md): cgroupfs paths `/kubepods/<qos>/pod<uid>/<container-id>`
/// in the cgroup v2 hierarchy mounted at /sys/fs/cgroup/unified.
#[test]
fn locates_the_local_node_recipe_layout() {
    let mount = "/sys/fs/cgroup/unified";
    let dir = format!("{mount}/kubepods/besteffort/pod{UID}/{ID}");
    let fs = FakeFs::with(&[&dir, &format!("{mount}/kubepods/burstable")]);
    let layout = Layout::new(mount);
    assert_eq!(detect_driver(&fs, &layout), Some(Driver::Cgroupfs));
    let found = locate(
        &fs,
        &layout,
        Some(QosClass::BestEffort),
        UID,
        &id("containerd"),
    )
    .unwrap();
    assert_eq!(found.path, PathBuf::from(&dir));
    assert_eq!(found.driver, Driver::Cgroupfs);
    assert_eq!(found.id, 100, "the cgroup id is the directory's inode");
}

#[test]
fn locates_systemd_cri_o_and_an_unknown_qos_class() {
    let mount = "/sys/fs/cgroup";
    let dir = format!(
        "{mount}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
    );
    let fs = FakeFs::with(&[&dir]);
    let layout = Layout::new(mount);
    assert_eq!(detect_driver(&fs, &layout), Some(Driver::Systemd));
    let found = locate(&fs, &layout, None, UID, &id("cri-o")).unwrap();
    assert_eq!(
        (found.path, found.driver),
        (PathBuf::from(&dir), Driver::Systemd)
    );
}

#[test]
fn a_container_not_created_yet_is_not_found() {
    let fs = FakeFs::with(&["/sys/fs/cgroup/kubepods.slice"]);
    let err = locate(
        &fs,
        &Layout::new("/sys/fs/cgroup"),
        Some(QosClass::Guaranteed),
        UID,
        &id("containerd"),
    )
    .unwrap_err();
    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    assert_eq!(
        detect_driver(&FakeFs::default(), &Layout::new("/sys/fs/cgroup")),
        None
    );
}

/// The pod's own directory, for both drivers, every QoS class and a kubelet `--cgroup-root`, with
/// its level below the cgroup v2 root (what the BPF programs look up a process's ancestor at).
#[test]
fn locates_pod_cgroups_and_their_levels() {
    use Driver::*;
    use QosClass::*;
    let kubelet = vec!["kubelet".to_owned()];
    let cases: &[(Driver, &[String], QosClass, String, u32)] = &[
        (Cgroupfs, &[], Guaranteed, format!("kubepods/pod{UID}"), 2),
        (
            Cgroupfs,
            &[],
            Burstable,
            format!("kubepods/burstable/pod{UID}"),
            3,
        ),
        (
            Cgroupfs,
            &[],
            BestEffort,
            format!("kubepods/besteffort/pod{UID}"),
            3,
        ),
        (
            Systemd,
            &[],
            Guaranteed,
            format!("kubepods.slice/kubepods-pod{UID_}.slice"),
            2,
        ),
        (
            Systemd,
            &[],
            Burstable,
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
            3,
        ),
        (
            Systemd,
            &[],
            BestEffort,
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"),
            3,
        ),
        (
            Cgroupfs,
            &kubelet,
            Burstable,
            format!("kubelet/kubepods/burstable/pod{UID}"),
            4,
        ),
        (
            Systemd,
            &kubelet,
            Guaranteed,
            format!("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice"),
            3,
        ),
    ];
    let mount = "/sys/fs/cgroup";
    for (driver, parent, qos, relative, level) in cases {
        let dir = format!("{mount}/{relative}");
        // A container beneath it, as the runtime creates it later, changes nothing.
        let fs = FakeFs::with(&[&dir, &format!("{dir}/cri-containerd-{ID}.scope")]);
        let mut layout = Layout::new(mount);
        layout.parent = parent.to_vec();
        for known in [Some(*qos), None] {
            let found = locate_pod(&fs, &layout, known, UID).unwrap();
            let what = format!(
                "{driver:?} {parent:?} {qos:?} (qos known: {})",
                known.is_some()
            );
            assert_eq!(found.path, PathBuf::from(&dir), "{what}");
            assert_eq!(found.id, 100, "{what}: the directory's inode");
            assert_eq!(found.level, *level, "{what}");
            assert_eq!(found.driver, *driver, "{what}");
        }
    }
}

#[test]
fn a_pod_not_created_yet_is_not_found_and_a_strange_uid_is_refused() {
    let fs = FakeFs::with(&["/sys/fs/cgroup/kubepods/burstable"]);
    let layout = Layout::new("/sys/fs/cgroup");
    let err = locate_pod(&fs, &layout, Some(QosClass::Burstable), UID).unwrap_err();
    assert!(matches!(err, CgroupError::PodNotFound { .. }), "{err}");
    for bad in ["", "../x", "a/b", "a.b"] {
        let err = locate_pod(&fs, &layout, None, bad).unwrap_err();
        assert!(matches!(err, CgroupError::BadPodUid(_)), "{bad:?}: {err}");
    }
}

#[test]
fn finds_cgroup2_mounts_in_mountinfo() {
    let mountinfo = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/cpu rw,nosuid shared:11 - cgroup cgroup rw,cpu
90 24 0:33 / /tmp/my\\040cgroup rw,relatime shared:40 - cgroup2 none rw
91 24 0:31 /kubepods /mnt/sub rw,relatime shared:41 - cgroup2 cgroup2 rw
";
    assert_eq!(
        cgroup2_mounts(mountinfo),
        vec![
            PathBuf::from("/sys/fs/cgroup/unified"),
            PathBuf::from("/tmp/my cgroup")
        ]
    );
}

/// On this machine (as root): the real filesystem answers for a real directory.
#[test]
fn host_fs_reports_a_directory_inode_and_its_pids() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let fs = HostCgroupFs;
    assert!(fs.is_dir(dir.path()));
    assert_eq!(
        fs.inode(dir.path()).unwrap(),
        std::fs::metadata(dir.path()).unwrap().ino()
    );
    std::fs::write(dir.path().join("cgroup.procs"), "\n4242\n17\n").unwrap();
    assert_eq!(fs.first_pid(dir.path()).unwrap(), Some(4242));
    assert!(!fs.is_dir(&dir.path().join("nope")));
}
