//! `--install-to DIR`: the proxy copies its own binary to `DIR/mcp-guard-proxy`.
//!
//! In Kubernetes an init container runs this from the proxy's (distroless, non-root, read-only root
//! filesystem) image with DIR an `emptyDir` shared with the MCP server's container, whose command
//! then starts `DIR/mcp-guard-proxy ... -- <its original command>`. The copy is atomic: it is written
//! to a temporary file in DIR, made executable (0755) and synced, then renamed over the target, so a
//! reader never sees a partial binary, and a restarted init container simply replaces it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The name of the installed binary inside DIR.
pub const BINARY_NAME: &str = "mcp-guard-proxy";

/// Copies the running binary into `dir`; returns the installed path.
pub fn install_to(dir: &Path) -> Result<PathBuf, String> {
    let meta = fs::metadata(dir).map_err(|e| format!("--install-to {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("--install-to {}: not a directory", dir.display()));
    }
    let (mut source, from) = open_self()?;
    let target = dir.join(BINARY_NAME);
    let temp = dir.join(format!(".{BINARY_NAME}.{}.tmp", std::process::id()));
    let result = write_executable(&mut source, &temp).and_then(|()| fs::rename(&temp, &target));
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(format!(
            "--install-to {}: copying {} failed: {e}",
            dir.display(),
            from.display()
        ));
    }
    // The rename is durable once the directory is synced; not every filesystem allows it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// The running executable: `/proc/self/exe` (right even if the file was replaced or deleted
/// since), else `current_exe()`.
fn open_self() -> Result<(File, PathBuf), String> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if let Ok(f) = File::open(&proc_exe) {
        return Ok((f, proc_exe));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("--install-to: cannot find the running binary: {e}"))?;
    let f = File::open(&exe).map_err(|e| format!("--install-to: {}: {e}", exe.display()))?;
    Ok((f, exe))
}

fn write_executable(source: &mut File, temp: &Path) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(temp)?;
    io::copy(source, &mut out)?;
    // The umask may have narrowed the mode given at creation.
    out.set_permissions(fs::Permissions::from_mode(0o755))?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn installs_an_executable_copy_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BINARY_NAME), b"old").unwrap();
        let path = install_to(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(BINARY_NAME));
        let installed = std::fs::read(&path).unwrap();
        assert_eq!(installed, std::fs::read("/proc/self/exe").unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = install_to(&dir.path().join("nope")).unwrap_err();
        assert!(e.contains("--install-to"), "{e}");
    }
}
