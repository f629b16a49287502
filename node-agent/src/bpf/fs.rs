//! The file systems the agent needs: cgroup v2 (where sock_addr programs attach and whose
//! directory inodes are cgroup ids) and bpffs (where programs, links and maps are pinned).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, statfs};

/// Where the agent mounts cgroup v2 when nothing has: the hybrid-mode location that systemd and
/// runc use (so container runtimes started later find it), else a directory of its own.
pub const CGROUP2_MOUNT_POINTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/run/mcp-guard/cgroup2"];

/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/mcp-guard";

/// The cgroup v2 mount point named in `/proc/self/mountinfo`, if any (the first whose root is `/`).
pub fn find_cgroup2() -> io::Result<Option<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(cgroup2_in_mountinfo(&info))
}

/// Parses mountinfo lines: `id parent major:minor root mountpoint opts [optional...] - fstype src opts`.
fn cgroup2_in_mountinfo(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let fields: Vec<&str> = left.split_whitespace().collect();
        let mount_point = fields.get(4)?;
        (fstype == "cgroup2" && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The cgroup v2 root: found in mountinfo, or mounted at the first usable of
/// [`CGROUP2_MOUNT_POINTS`]. Returns the path and whether this call mounted it.
pub fn ensure_cgroup2() -> io::Result<(PathBuf, bool)> {
    if let Some(p) = find_cgroup2()? {
        return Ok((p, false));
    }
    let mut last = io::Error::other("no mount point tried");
    for dir in CGROUP2_MOUNT_POINTS {
        let dir = Path::new(dir);
        if let Err(e) = std::fs::create_dir_all(dir) {
            last = e;
            continue;
        }
        match mount(
            Some("cgroup2"),
            dir,
            Some("cgroup2"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ) {
            Ok(()) => return Ok((dir.to_path_buf(), true)),
            Err(e) => last = io::Error::other(format!("mount cgroup2 at {}: {e}", dir.display())),
        }
    }
    Err(last)
}

/// The cgroup id of a cgroup v2 directory: its inode number (what `bpf_get_current_cgroup_id()`
/// returns for the processes inside it). Refuses directories outside cgroup v2.
pub fn cgroup_id(dir: &Path) -> io::Result<u64> {
    let fs = statfs(dir).map_err(|e| io::Error::other(format!("statfs {}: {e}", dir.display())))?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Err(io::Error::other(format!(
            "{} is not a cgroup v2 directory (cgroup v1 ids are invisible to BPF)",
            dir.display()
        )));
    }
    Ok(std::fs::metadata(dir)?.ino())
}

/// Makes sure `pin_dir` lies on bpffs and exists. When its parent is not bpffs and is
/// `/sys/fs/bpf`, mounts bpffs there first.
pub fn ensure_pin_dir(pin_dir: &Path) -> io::Result<()> {
    let parent = pin_dir
        .parent()
        .ok_or_else(|| io::Error::other("the pin directory needs a parent"))?;
    if !is_bpffs(parent) {
        if parent == Path::new("/sys/fs/bpf") {
            std::fs::create_dir_all(parent)?;
            mount(
                Some("bpf"),
                parent,
                Some("bpf"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| io::Error::other(format!("mount bpffs at /sys/fs/bpf: {e}")))?;
        } else {
            return Err(io::Error::other(format!(
                "{} is not on a BPF file system (mount -t bpf bpf {})",
                parent.display(),
                parent.display()
            )));
        }
    }
    for sub in ["", "maps", "progs", "links"] {
        let d = pin_dir.join(sub);
        match std::fs::create_dir(&d) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` is on bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_mountinfo() {
        let info = "\
25 30 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/un\\040ified rw,relatime shared:9 - cgroup2 cgroup2 rw
42 31 0:39 /sub /mnt/nested rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_in_mountinfo(info),
            Some(PathBuf::from("/sys/fs/cgroup/un ified"))
        );
        assert_eq!(
            cgroup2_in_mountinfo("1 2 0:1 / / rw - ext4 /dev/sda rw\n"),
            None
        );
    }
}
