//! One session: its own process of the stdio server, the client's messages written to its stdin,
//! its stdout routed to the session's HTTP answers ([`Routes`]), and its end.
//!
//! A session ends when the server closes its stdout or exits, when the client sends DELETE, when it
//! idles out, or at shutdown. Ending fails every request still awaiting an answer (-32603), ends
//! its streams, and takes it out of the registry (later requests get 404); the process then gets
//! the stdio shutdown sequence: stdin closed, [`STDIN_GRACE`] to exit, SIGTERM, [`TERM_GRACE`],
//! SIGKILL. Each process leads its own process group, and the group is signalled, so helpers it
//! started (e.g. `npx` → `node`) go with it; the process is always waited for (no zombie).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;

use super::body::{Message, messages};
use super::routes::{Routes, Target, Tx};
use crate::jsonrpc::{self, Kind, code};
use crate::transport::lines::{Line, LineReader};

/// How long a process may take to exit after its stdin closes (DELETE, idle).
pub const STDIN_GRACE: Duration = Duration::from_secs(2);
/// How long a process may take to exit after SIGTERM, before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long ending a session may wait to write one error into a stream not being read.
const ERROR_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Deleted,
    Idle,
    Shutdown,
    /// The server closed its stdout or exited.
    ServerGone,
}

impl End {
    fn pending_error(self) -> &'static str {
        match self {
            End::Deleted => "the session was ended before the MCP server answered",
            End::Idle => "the session expired before the MCP server answered",
            End::Shutdown => "the proxy is shutting down",
            End::ServerGone => "the MCP server exited before answering",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session of the bridge.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// A small number for logs (the session id itself is a credential).
    pub ordinal: u64,
    pub pid: Option<u32>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    routes: Mutex<Routes>,
    last_used: Mutex<Instant>,
    stop: watch::Sender<Option<End>>,
    max_message: usize,
}

impl Session {
    pub fn new(id: String, ordinal: u64, child: &mut Child, max_message: usize) -> Option<Self> {
        Some(Self {
            id,
            ordinal,
            pid: child.id(),
            stdin: tokio::sync::Mutex::new(Some(child.stdin.take()?)),
            routes: Mutex::new(Routes::default()),
            last_used: Mutex::new(Instant::now()),
            stop: watch::channel(None).0,
            max_message,
        })
    }

    pub fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// Whether the session has been unused for `idle`, with nothing in flight.
    pub fn idle(&self, idle: Duration) -> bool {
        lock(&self.last_used).elapsed() >= idle && !lock(&self.routes).busy()
    }

    /// Asks the session's supervisor to end it.
    pub fn stop(&self, why: End) {
        self.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Registers a POST awaiting `ids` (see [`Routes::open`]); `None` once the session ended.
    pub fn open_post(
        &self,
        ids: Vec<String>,
        tokens: Vec<String>,
        tx: Tx,
        sse: bool,
    ) -> Option<u64> {
        lock(&self.routes).open(ids, tokens, tx, sse)
    }

    pub fn close_post(&self, key: u64) {
        lock(&self.routes).close(key);
        self.touch();
    }

    /// Makes `tx` the GET stream; false once the session ended.
    pub fn open_get(&self, tx: Tx) -> bool {
        lock(&self.routes).open_get(tx)
    }

    /// The client cancelled these requests: no answer is awaited for them any more.
    pub fn cancelled(&self, msgs: &[Message]) {
        let mut routes = lock(&self.routes);
        for id in msgs.iter().filter_map(|m| m.cancels.as_deref()) {
            routes.cancel(id);
        }
    }

    /// Writes the messages to the server's stdin, one line each; false if it is closed.
    pub async fn write(&self, msgs: &[Message]) -> bool {
        let mut buf = Vec::new();
        for m in msgs {
            buf.extend_from_slice(m.raw.as_bytes());
            buf.push(b'\n');
        }
        let mut stdin = self.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return false;
        };
        w.write_all(&buf).await.is_ok() && w.flush().await.is_ok()
    }

    /// Reads the server's stdout until it closes, routing every message.
    async fn read(&self, stdout: ChildStdout) {
        let mut lines = LineReader::new(stdout, self.max_message);
        while let Ok(Some(line)) = lines.next().await {
            let n = self.ordinal;
            let line = match line {
                Line::Text(l) => l,
                Line::TooLong(len) => {
                    eprintln!(
                        "mcp-guard-proxy: session {n}: the server sent a message of {len} bytes, over the limit of {}; dropped",
                        self.max_message
                    );
                    continue;
                }
                Line::NotUtf8 => {
                    eprintln!(
                        "mcp-guard-proxy: session {n}: the server sent a line that is not UTF-8; dropped"
                    );
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match messages(&line) {
                Ok((msgs, _)) => {
                    for m in msgs {
                        self.route(m).await;
                    }
                }
                Err(_) => {
                    let shown: String = line.chars().take(200).collect();
                    eprintln!(
                        "mcp-guard-proxy: session {n}: non-JSON-RPC line on the server's stdout (not forwarded): {shown}"
                    );
                }
            }
        }
    }

    async fn route(&self, m: Message) {
        match m.kind {
            Kind::Response => {
                let tx =
                    m.id.as_deref()
                        .and_then(|id| lock(&self.routes).response(id));
                // No POST awaits it (its client went away): a response has nowhere else to go.
                if let Some(tx) = tx {
                    let _ = tx.send(m.raw).await;
                }
            }
            Kind::Request | Kind::Notification => {
                let target = lock(&self.routes).related(m.progress.as_deref(), &m.raw);
                match target {
                    Target::Post(tx) => {
                        if let Err(e) = tx.send(m.raw).await {
                            self.keep(e.0);
                        }
                    }
                    Target::Get(tx) => {
                        if let Err(e) = tx.send(m.raw).await {
                            self.keep(e.0);
                        }
                    }
                    Target::Backlog { dropped } => self.warn_dropped(dropped),
                }
            }
            Kind::Invalid => {
                let shown: String = m.raw.chars().take(200).collect();
                eprintln!(
                    "mcp-guard-proxy: session {}: the server sent an invalid JSON-RPC message (not forwarded): {shown}",
                    self.ordinal
                );
            }
        }
    }

    /// A message whose stream went away in the meantime: kept for the next GET stream.
    fn keep(&self, message: String) {
        let dropped = lock(&self.routes).keep(message);
        self.warn_dropped(dropped);
    }

    fn warn_dropped(&self, dropped: bool) {
        if dropped {
            eprintln!(
                "mcp-guard-proxy: session {}: no GET stream reads the server's messages; the oldest kept one was dropped",
                self.ordinal
            );
        }
    }

    /// Ends the session's routes: every request still awaiting an answer gets an error.
    fn end_routes(&self, why: End) {
        let owed = lock(&self.routes).end();
        for (tx, ids) in owed {
            if ids.is_empty() {
                continue;
            }
            tokio::spawn(async move {
                for id in ids {
                    let e = jsonrpc::error_response(
                        Some(&id),
                        code::INTERNAL_ERROR,
                        why.pending_error(),
                        None,
                    );
                    if !matches!(
                        tokio::time::timeout(ERROR_SEND_TIMEOUT, tx.send(e)).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                }
            });
        }
    }

    /// Runs the session until it ends; `ended` (removing it from the registry) is called as soon
    /// as it does, before the process is stopped. Returns why it ended, and how the process exited.
    pub async fn supervise(
        self: Arc<Self>,
        mut child: Child,
        stdout: ChildStdout,
        ended: impl FnOnce(&Session),
    ) -> (End, String) {
        let mut stop = self.stop.subscribe();
        let mut reader = Box::pin(self.read(stdout));
        let mut status = None;
        let why = tokio::select! {
            () = &mut reader => End::ServerGone,
            s = child.wait() => {
                // Answers it wrote just before exiting are still in the pipe.
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
                status = Some(s);
                End::ServerGone
            }
            w = async { stop.wait_for(Option::is_some).await.ok().and_then(|w| *w) } => {
                w.unwrap_or(End::Shutdown)
            }
        };
        // Nothing more is routed; a server still writing gets EPIPE.
        drop(reader);
        self.stop(why);
        self.end_routes(why);
        ended(&self);
        let status = match status {
            Some(s) => s,
            None => self.terminate(&mut child, why != End::Shutdown).await,
        };
        // Helpers the server started and left behind.
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        (why, how)
    }

    /// Stops the process: stdin closed (and, if `polite`, time to exit on its own), SIGTERM to its
    /// group, then SIGKILL.
    async fn terminate(
        &self,
        child: &mut Child,
        polite: bool,
    ) -> std::io::Result<std::process::ExitStatus> {
        // A writer blocked on a full pipe holds the lock; the signals below unblock it.
        if let Ok(mut stdin) =
            tokio::time::timeout(Duration::from_millis(100), self.stdin.lock()).await
        {
            stdin.take();
        }
        if polite && let Ok(s) = tokio::time::timeout(STDIN_GRACE, child.wait()).await {
            return s;
        }
        let group = self
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        if let Some(g) = group {
            let _ = killpg(g, Signal::SIGTERM);
        }
        if let Ok(s) = tokio::time::timeout(TERM_GRACE, child.wait()).await {
            return s;
        }
        if let Some(g) = group {
            let _ = killpg(g, Signal::SIGKILL);
        }
        child.kill().await?;
        child.wait().await
    }
}
