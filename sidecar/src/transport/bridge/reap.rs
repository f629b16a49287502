//! Starting session processes, and reaping orphans when the proxy is PID 1.
//!
//! In Kubernetes the proxy is its container's command, so it is PID 1 of the container's PID
//! namespace, and every orphan in the container (a helper of a server that exited, e.g. the `node`
//! started by `npx`) becomes its child. Nobody else would wait for those: they would stay zombies.
//! So when PID 1, the bridge waits for every exited child that is not one of its own session
//! processes (which their supervisors wait for, through tokio): it peeks at an exited child with
//! `waitid(WNOWAIT)`, which leaves it waitable, and reaps it only if it is not tracked here.
//! Spawning and reaping take the same lock, so a session process is tracked before it can exit.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The session processes (pids) not yet waited for.
static TRACKED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn tracked() -> MutexGuard<'static, BTreeSet<u32>> {
    TRACKED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns a session process, tracked until [`untrack`].
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut t = tracked();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        t.insert(pid);
    }
    Ok(child)
}

/// A session process has been waited for.
pub fn untrack(pid: Option<u32>) {
    if let Some(pid) = pid {
        tracked().remove(&pid);
    }
}

/// Whether this process must reap orphans.
pub fn is_init() -> bool {
    std::process::id() == 1
}

/// Reaps every exited child that is not a session process (call when PID 1); returns how many.
pub fn reap_orphans() -> usize {
    let t = tracked();
    let mut reaped = 0;
    loop {
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => pid,
            _ => return reaped,
        };
        // A session process: its supervisor waits for it (soon); the others wait until then.
        if u32::try_from(pid.as_raw()).is_ok_and(|p| t.contains(&p)) {
            return reaped;
        }
        if waitpid(Pid::from_raw(pid.as_raw()), Some(WaitPidFlag::WNOHANG)).is_err() {
            return reaped;
        }
        reaped += 1;
    }
}
