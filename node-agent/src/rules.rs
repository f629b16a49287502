//! From a compiled policy's `runtime` section to the [`SlotRules`] the kernel enforces.
//!
//! Network rules carry over as they are. File and exec rules name paths, but the LSM hooks see
//! inodes, so each path is resolved to a (device, inode) pair *as the guarded processes see it*:
//! relative to a root directory, normally a container's root (`/proc/<pid>/root`, with the host's
//! PID namespace) or `/` for processes on the host. Resolution follows symlinks inside that root
//! (`openat2` with `RESOLVE_IN_ROOT`, so an absolute link cannot escape to the agent's own files).
//! Paths missing from a root are skipped and reported, never fatal: a policy may deny
//! `/usr/bin/curl` on images that do not ship it. With several roots (the containers of every pod
//! under one policy), the rules hold the union of what each root resolved.
//!
//! The kernel identifies a device by `s_dev` (`major << 20 | minor`), not by userspace `st_dev`;
//! [`kernel_dev`] converts.

use std::io;
use std::path::{Path, PathBuf};

use mcp_guard_policy::compiled::{DeniedPath, Runtime};

use crate::model::{DeniedInode, Inode, SlotRules};

/// Resolves a policy path, as seen from `root`, to the inode the kernel will see.
pub trait PathResolver {
    fn resolve(&self, root: &Path, path: &str) -> io::Result<Inode>;
}

/// The real resolver: opens the path beneath `root` with `O_PATH` (no open hook runs, nothing is
/// read) and `fstat`s it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostResolver;

impl PathResolver for HostResolver {
    fn resolve(&self, root: &Path, path: &str) -> io::Result<Inode> {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
        use nix::sys::stat::{fstat, stat};

        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        let dir = std::fs::File::open(root)?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let st = match openat2(&dir, relative, how) {
            Ok(fd) => fstat(&fd)?,
            // Kernels before 5.6 lack openat2: fall back to a plain stat through the root.
            Err(nix::errno::Errno::ENOSYS) => stat(&root.join(relative))?,
            Err(e) => return Err(e.into()),
        };
        Ok(Inode {
            dev: kernel_dev(st.st_dev),
            ino: st.st_ino,
        })
    }
}

/// Converts a userspace `st_dev` to the kernel's `s_dev` encoding (`major << 20 | minor`).
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = nix::sys::stat::major(st_dev);
    let minor = nix::sys::stat::minor(st_dev);
    (major << 20) | (minor & 0xf_ffff)
}

/// A policy path that could not be resolved under one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub root: PathBuf,
    pub error: String,
}

/// The rules of one slot, and the paths left out of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub rules: SlotRules,
    pub skipped: Vec<Skipped>,
}

/// Builds the slot rules of `runtime`, resolving its paths under each of `roots`.
pub fn slot_rules(runtime: &Runtime, roots: &[PathBuf], resolver: &dyn PathResolver) -> Resolved {
    let mut skipped = Vec::new();
    let mut resolve_all = |paths: &[DeniedPath]| {
        let mut out: Vec<DeniedInode> = Vec::new();
        for root in roots {
            for p in paths {
                match resolver.resolve(root, &p.path) {
                    Ok(inode) => {
                        if !out
                            .iter()
                            .any(|d| d.inode == inode && d.subtree == p.subtree)
                        {
                            out.push(DeniedInode {
                                path: p.path.clone(),
                                inode,
                                subtree: p.subtree,
                            });
                        }
                    }
                    Err(e) => skipped.push(Skipped {
                        path: p.path.clone(),
                        root: root.clone(),
                        error: e.to_string(),
                    }),
                }
            }
        }
        out.sort_by(|a, b| (a.inode, &a.path).cmp(&(b.inode, &b.path)));
        out
    };
    let files = resolve_all(&runtime.files.deny);
    let exec = resolve_all(&runtime.exec.deny);
    let egress = &runtime.network.egress;
    let rules = SlotRules {
        files,
        exec,
        egress_allow: egress.allow.clone(),
        egress_deny: egress.deny.clone(),
        deny_ports: egress.deny_ports.clone(),
        confine_listeners: runtime.network.confine_listeners,
    };
    Resolved { rules, skipped }
}

/// Whether rules hold anything to enforce (a slot with none needs no cgroup guarded).
pub fn is_empty(rules: &SlotRules) -> bool {
    rules == &SlotRules::default()
}

#[cfg(test)]
mod tests;
