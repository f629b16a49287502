//! The bridge's sessions: starting one (a new process of the command, within the limit), finding
//! one, ending idle ones, and ending all at shutdown.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::session::{End, Session};
use super::{Options, SHUTDOWN_WAIT, random_hex, reap};

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Arc<Session>>,
    /// Processes started and not yet waited for (what `max_sessions` limits).
    live: usize,
    started: u64,
    closed: bool,
}

/// The sessions.
#[derive(Debug)]
pub(super) struct Registry {
    command: Vec<OsString>,
    pub(super) options: Options,
    inner: Mutex<Inner>,
    /// `Inner::live`, watched by shutdown.
    live: watch::Sender<usize>,
}

/// Why no session could start.
pub(super) enum Refused {
    Full,
    Closed,
    Spawn(std::io::Error),
}

impl Registry {
    pub(super) fn new(command: &[OsString], options: Options) -> Self {
        Self {
            command: command.to_vec(),
            options,
            inner: Mutex::new(Inner::default()),
            live: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().sessions.get(id).cloned()
    }

    /// Starts a session: a new process of the command.
    pub(super) fn create(self: &Arc<Self>) -> Result<Arc<Session>, Refused> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Refused::Closed);
        }
        if inner.live >= self.options.max_sessions {
            return Err(Refused::Full);
        }
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = reap::spawn(&mut cmd).map_err(Refused::Spawn)?;
        let (Some(stdout), Some(session)) = (
            child.stdout.take(),
            Session::new(
                random_hex(),
                inner.started + 1,
                &mut child,
                self.options.max_message,
            ),
        ) else {
            reap::untrack(child.id());
            return Err(Refused::Spawn(std::io::Error::other("no stdio pipes")));
        };
        inner.started += 1;
        inner.live += 1;
        self.live.send_replace(inner.live);
        let session = Arc::new(session);
        inner.sessions.insert(session.id.clone(), session.clone());
        drop(inner);
        let n = session.ordinal;
        let pid = session.pid;
        eprintln!(
            "mcp-guard-proxy: session {n} started: pid {}",
            pid.map_or_else(|| "?".into(), |p| p.to_string())
        );
        let me = self.clone();
        let supervised = session.clone();
        tokio::spawn(async move {
            let registry = me.clone();
            let (why, how) = supervised
                .supervise(child, stdout, move |s| {
                    registry.lock().sessions.remove(&s.id);
                })
                .await;
            reap::untrack(pid);
            let mut inner = me.lock();
            inner.live -= 1;
            me.live.send_replace(inner.live);
            drop(inner);
            let why = match why {
                End::Deleted => "deleted by the client",
                End::Idle => "idle",
                End::Shutdown => "shutdown",
                End::ServerGone => "the server exited",
            };
            eprintln!("mcp-guard-proxy: session {n} ended ({why}); the server's exit: {how}");
        });
        Ok(session)
    }

    /// Ends the sessions idle for the configured time.
    pub(super) fn sweep(&self) {
        let idle: Vec<Arc<Session>> = self
            .lock()
            .sessions
            .values()
            .filter(|s| s.idle(self.options.idle))
            .cloned()
            .collect();
        for s in idle {
            s.stop(End::Idle);
        }
    }

    pub(super) async fn shutdown(&self) {
        let all: Vec<Arc<Session>> = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.sessions.values().cloned().collect()
        };
        for s in all {
            s.stop(End::Shutdown);
        }
        let mut live = self.live.subscribe();
        if tokio::time::timeout(SHUTDOWN_WAIT, live.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            eprintln!("mcp-guard-proxy: some server processes did not stop in time");
        }
    }
}
