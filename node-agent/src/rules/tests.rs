#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mcp_guard_policy::compiled::{DeniedPath, Egress, Network, PathRules, Runtime};

use super::*;

/// Paths per root, as a container's filesystem would answer.
struct FakeResolver(BTreeMap<(PathBuf, String), Inode>);

impl PathResolver for FakeResolver {
    fn resolve(&self, root: &Path, path: &str) -> io::Result<Inode> {
        self.0
            .get(&(root.to_owned(), path.to_owned()))
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn inode(dev: u64, ino: u64) -> Inode {
    Inode { dev, ino }
}

fn denied(path: &str, subtree: bool) -> DeniedPath {
    DeniedPath {
        path: path.to_owned(),
        subtree,
    }
}

fn runtime() -> Runtime {
    Runtime {
        files: PathRules {
            deny: vec![
                denied("/var/run/secrets/kubernetes.io/serviceaccount", true),
                denied("/etc/shadow", false),
            ],
        },
        exec: PathRules {
            deny: vec![denied("/bin/sh", false), denied("/usr/bin/curl", false)],
        },
        network: Network {
            egress: Egress {
                allow: vec!["10.0.0.0/8".parse::<IpNet>().unwrap()],
                deny: vec!["169.254.169.254/32".parse().unwrap()],
                deny_ports: vec![25],
            },
            confine_listeners: true,
        },
    }
}

#[test]
fn network_rules_carry_over_and_paths_resolve_per_root() {
    let a = PathBuf::from("/proc/10/root");
    let b = PathBuf::from("/proc/20/root");
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount".to_owned();
    let resolver = FakeResolver(BTreeMap::from([
        ((a.clone(), sa.clone()), inode(50, 7)),
        ((a.clone(), "/etc/shadow".to_owned()), inode(60, 11)),
        ((a.clone(), "/bin/sh".to_owned()), inode(60, 12)),
        // The second container shares the token volume's inode and has its own shell.
        ((b.clone(), sa.clone()), inode(50, 7)),
        ((b.clone(), "/etc/shadow".to_owned()), inode(61, 11)),
        ((b.clone(), "/bin/sh".to_owned()), inode(61, 12)),
    ]));
    let resolved = slot_rules(&runtime(), &[a.clone(), b.clone()], &resolver);
    let rules = &resolved.rules;
    assert_eq!(
        rules.egress_allow,
        vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        rules.egress_deny,
        vec!["169.254.169.254/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(rules.deny_ports, vec![25]);
    assert!(rules.confine_listeners);

    let files: Vec<_> = rules
        .files
        .iter()
        .map(|d| (d.path.as_str(), d.inode, d.subtree))
        .collect();
    assert_eq!(
        files,
        vec![
            (sa.as_str(), inode(50, 7), true),
            ("/etc/shadow", inode(60, 11), false),
            ("/etc/shadow", inode(61, 11), false),
        ],
        "the union over both roots, without duplicates"
    );
    let exec: Vec<_> = rules.exec.iter().map(|d| d.inode).collect();
    assert_eq!(exec, vec![inode(60, 12), inode(61, 12)]);

    let skipped: Vec<_> = resolved
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.root.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![("/usr/bin/curl", a.clone()), ("/usr/bin/curl", b.clone())],
        "missing paths are skipped and reported"
    );
}

#[test]
fn an_empty_runtime_gives_empty_rules() {
    let resolved = slot_rules(
        &Runtime::default(),
        &[PathBuf::from("/")],
        &FakeResolver(BTreeMap::new()),
    );
    assert!(is_empty(&resolved.rules));
    assert!(resolved.skipped.is_empty());
    let network_only = Runtime {
        network: Network {
            confine_listeners: true,
            ..Network::default()
        },
        ..Runtime::default()
    };
    let resolved = slot_rules(&network_only, &[], &FakeResolver(BTreeMap::new()));
    assert!(!is_empty(&resolved.rules));
}

#[test]
fn kernel_dev_uses_the_20_bit_minor_encoding() {
    use nix::sys::stat::makedev;
    assert_eq!(kernel_dev(makedev(8, 1)), (8 << 20) | 1);
    assert_eq!(kernel_dev(makedev(259, 3)), (259 << 20) | 3);
    // Minors above 255 are split in st_dev but contiguous in s_dev.
    assert_eq!(kernel_dev(makedev(0, 4096)), 4096);
    assert_eq!(makedev(0, 4096), 0x100_0000, "st_dev splits the minor");
}

/// The real resolver on this machine's filesystem, with a tempdir as the container root.
#[test]
fn host_resolver_resolves_inside_the_root() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/shadow"), "x").unwrap();
    // An absolute symlink resolves inside the root, as the container would see it.
    std::os::unix::fs::symlink("/etc/shadow", root.path().join("link")).unwrap();

    let meta = std::fs::metadata(root.path().join("etc/shadow")).unwrap();
    let want = Inode {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
    };
    assert_eq!(
        HostResolver.resolve(root.path(), "/etc/shadow").unwrap(),
        want
    );
    assert_eq!(HostResolver.resolve(root.path(), "/link").unwrap(), want);
    let dir = std::fs::metadata(root.path()).unwrap();
    assert_eq!(
        HostResolver.resolve(root.path(), "/").unwrap().ino,
        dir.ino()
    );
    let missing = HostResolver
        .resolve(root.path(), "/usr/bin/curl")
        .unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
}
