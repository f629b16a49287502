//! The stdio bridge: a stdio MCP server served as Streamable HTTP (protocol 2025-03-26 ..
//! 2025-11-25, with sessions), one process of the server per session. It is what
//! `--listen ADDR -- COMMAND` runs behind the guard: the guarded HTTP proxy ([`super::http`])
//! listens on ADDR and forwards to this bridge on a loopback port of its own, so every guard
//! behaviour of HTTP (blocks, asks by elicitation, audit, metrics, reload, kill switch) applies
//! unchanged. Requests must carry a per-process secret header ([`SECRET_HEADER`]), which the proxy
//! adds: other containers of a Kubernetes pod share its loopback, and must not bypass the guard.
//!
//! The protocol, on every path:
//! * `POST` with JSON-RPC (a message or a batch). An `initialize` without `Mcp-Session-Id` starts
//!   a session: a new process of COMMAND ([`session`]), its id in the answer's `Mcp-Session-Id`
//!   (beyond `max_sessions` live processes: 503). Every other POST names its session (missing:
//!   400; unknown or ended: 404). Messages go to the process's stdin, a line each. A POST of only
//!   notifications and responses gets 202; one with requests gets their answers: as an SSE stream
//!   when the client accepts `text/event-stream` (which also carries the server's requests and
//!   notifications while the requests run, see [`routes`]), else as one `application/json` body.
//! * `GET` (accepting `text/event-stream`) opens the session's stream of server-initiated messages
//!   not sent on a POST stream (messages from before it opened come first); a newer GET replaces it.
//! * `DELETE` ends the session (200): the process is stopped.
//!
//! A session unused for `idle` (no request, nothing pending, no GET stream open) ends. SSE streams
//! get a comment every 30 s, so a vanished client is noticed. No resumability (`Last-Event-ID`):
//! a stdio server cannot replay. At shutdown every session ends and its process is stopped; when
//! the proxy is PID 1 (a container's command) it also reaps orphaned processes ([`reap`]).
//!
//! Files: this one starts the bridge and accepts connections; `handlers` serves the requests;
//! `registry` starts, finds and ends sessions; `session` is one session's process and messages;
//! `routes` decides where the server's messages go; `body` holds the answers' bodies and what is
//! read from messages; `reap` spawns processes and reaps orphans.

mod body;
mod handlers;
mod reap;
mod registry;
mod routes;
mod session;

use std::convert::Infallible;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use body::empty;
use handlers::handle;
use registry::Registry;

/// The header carrying the bridge's secret.
pub const SECRET_HEADER: &str = "x-mcp-guard-bridge";
const MCP_SESSION_ID: &str = "mcp-session-id";
/// How long ending all sessions may take at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(6);

/// The bridge's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_sessions: usize,
    pub idle: Duration,
    pub max_message: usize,
}

/// A running bridge.
#[derive(Debug)]
pub struct Bridge {
    addr: SocketAddr,
    secret: HeaderValue,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Starts serving `command` on a loopback port (checked to exist first).
    pub async fn start(command: &[OsString], options: Options) -> anyhow::Result<Self> {
        let (program, _) = command
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("no server command given after `--`"))?;
        if !runnable(Path::new(program)) {
            anyhow::bail!(
                "cannot start the MCP server `{}`: not found, or not executable",
                program.to_string_lossy()
            );
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let secret = HeaderValue::from_str(&random_hex())?;
        let registry = Arc::new(Registry::new(command, options));
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, registry.clone(), secret.clone(), stopped));
        Ok(Self {
            addr,
            secret,
            registry,
            stop,
            server,
        })
    }

    /// The URL the proxy forwards to.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The header the proxy must add to every request.
    pub fn secret(&self) -> (HeaderName, HeaderValue) {
        (HeaderName::from_static(SECRET_HEADER), self.secret.clone())
    }

    /// Ends every session, stops their processes (waiting up to [`SHUTDOWN_WAIT`]), and stops.
    pub async fn shutdown(self) {
        self.registry.shutdown().await;
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

/// Whether `program` names an executable file, directly or on `PATH`.
fn runnable(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program);
    }
    // Without PATH, exec searches a default path.
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|dir| executable(&dir.join(program)))
}

/// 128 random bits as hex (session ids, the secret).
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // SipHash with the process's random keys, over a counter and the time.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for half in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            h.write_u128(
                std::time::SystemTime::UNIX_EPOCH
                    .elapsed()
                    .map_or(0, |d| d.as_nanos()),
            );
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    hex::encode(bytes)
}

async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    secret: HeaderValue,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let every =
        (registry.options.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut sweep = tokio::time::interval(every);
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    let init = reap::is_init();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let registry = registry.clone();
                    let secret = secret.clone();
                    let service = service_fn(move |req| {
                        let registry = registry.clone();
                        let allowed = req.headers().get(SECRET_HEADER).is_some_and(|v| same(v, &secret));
                        async move {
                            if !allowed {
                                return Ok::<_, Infallible>(empty(StatusCode::FORBIDDEN));
                            }
                            Ok(handle(&registry, req).await)
                        }
                    });
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(30))
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    eprintln!("mcp-guard-proxy: bridge accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = sweep.tick() => registry.sweep(),
            _ = reap.tick(), if init => { reap::reap_orphans(); }
        }
    }
    connections.shutdown().await;
}

/// Constant-time comparison of the secret.
fn same(a: &HeaderValue, b: &HeaderValue) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_and_ids() {
        let a = HeaderValue::from_static("abc");
        assert!(same(&a, &HeaderValue::from_static("abc")));
        assert!(
            !same(&a, &HeaderValue::from_static("abd"))
                && !same(&a, &HeaderValue::from_static("ab"))
        );
        assert_eq!(random_hex().len(), 32);
        assert_ne!(random_hex(), random_hex());
    }

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(runnable(Path::new("sh")));
        assert!(runnable(Path::new("/bin/sh")));
        assert!(!runnable(Path::new("no-such-program-mcp-guard")));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(!runnable(&plain));
        assert!(!runnable(dir.path()), "a directory");
    }
}
