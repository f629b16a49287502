//! HTTP transports: a reverse proxy in front of an MCP server's HTTP endpoint, for Streamable HTTP
//! (2025-03-26 .. 2025-11-25, and the stateless 2026-07-28 form) and legacy HTTP+SSE (2024-11-05).
//!
//! A client cannot tell the proxy is there except when it blocks:
//! * every request goes to the upstream's host and port with its own method, path, query and
//!   end-to-end headers (see `upstream`); the answer's status and headers come back the same way;
//! * a POST body (any but a form) is read (up to `max_message`, else 413) and judged by
//!   [`Guard::client_frame`] with the state of its session (`sessions`); a compressed body,
//!   which could not be judged, gets a 415. What the guard answers
//!   itself comes back as an MCP server would send it: a blocked call as `200 application/json`
//!   with the JSON-RPC error; invalid JSON as `400` with the parse error (what the MCP TypeScript
//!   SDK server answers); a batch with some calls blocked is forwarded without them, and their errors
//!   are merged into the server's answer (into the JSON array, or as extra SSE events);
//! * answers are judged by [`Guard::server_frame`]: a JSON body whole, an SSE stream event by event,
//!   incrementally, with backpressure (`stream`, `sse`);
//! * in legacy mode (a GET stream whose `endpoint` event names the POST URL) POSTs are judged with
//!   that stream's session, a blocked call gets the `202` the server would give, and its error is
//!   written into the session's SSE stream, where the client expects all answers.
//!
//! When the upstream cannot be reached, or breaks off an answer, every request of the POST gets a
//! JSON-RPC error (-32603) naming the problem, in a `200` answer: MCP clients match errors to
//! requests by id and fail just those calls, while a `502` makes some clients (e.g. the Python SDK)
//! fail the transport or leave the request waiting until its timeout. Requests carrying no JSON-RPC
//! request (GET, DELETE, notifications) get a `502` with a JSON-RPC error body.
//!
//! With `--listen ADDR -- COMMAND` the upstream is the stdio bridge ([`super::bridge`]) on a loopback
//! port, reached with its secret header ([`Upstream::with_header`]).
//!
//! Each client connection is its own hyper task: a bad connection affects nobody else. On SIGINT or
//! SIGTERM the proxy stops accepting, gives in-flight requests [`SHUTDOWN_GRACE`], and returns.
//!
//! Files: this one serves connections and routes GET/DELETE/other methods; `post` judges POSTs and
//! their answers; `stream` is the guarded SSE body, on the incremental parser in `sse`;
//! `sessions` maps requests to session states; `ask` holds a call's POST open while the user is
//! asked by elicitation; `upstream` is the pooled client and the header
//! rules; `frames` and `respond` are small helpers.

mod ask;
mod frames;
mod post;
mod respond;
mod sessions;
mod sse;
mod stream;
mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::guard::Guard;
use respond::{MCP_SESSION_ID, boxed, header_str, is_sse, passthrough};
use sessions::{SESSION_IDLE, Sessions, State};
use stream::{GuardedSse, LegacyWatch};
use upstream::Body;
pub use upstream::Upstream;
pub use upstream::strip_hop_by_hop;

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves MCP over HTTP on `listener`, forwarding to `upstream` (an `http://` URL), until shut down
/// (SIGINT/SIGTERM, after which it returns Ok).
pub async fn serve(
    listener: TcpListener,
    upstream: &str,
    guard: Arc<Guard>,
    max_message: usize,
) -> anyhow::Result<()> {
    serve_until(listener, upstream, guard, max_message, shutdown_signal()).await
}

/// [`serve`] to an [`Upstream`] already set up (e.g. the stdio bridge, with its secret header).
pub async fn serve_upstream(
    listener: TcpListener,
    upstream: Upstream,
    guard: Arc<Guard>,
    max_message: usize,
) -> anyhow::Result<()> {
    serve_upstream_until(listener, upstream, guard, max_message, shutdown_signal()).await
}

/// [`serve`] until `shutdown` completes.
pub async fn serve_until(
    listener: TcpListener,
    upstream: &str,
    guard: Arc<Guard>,
    max_message: usize,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let upstream = Upstream::new(upstream)?;
    serve_upstream_until(listener, upstream, guard, max_message, shutdown).await
}

/// [`serve_upstream`] until `shutdown` completes.
pub async fn serve_upstream_until(
    listener: TcpListener,
    upstream: Upstream,
    guard: Arc<Guard>,
    max_message: usize,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let proxy = Arc::new_cyclic(|me| Proxy {
        me: me.clone(),
        upstream_url: upstream.url.as_str().into(),
        sessions: Arc::new(Sessions::new(guard.metrics.clone())),
        upstream,
        guard,
        max_message,
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(proxy.clone(), stream, stopped.clone()));
                }
                Err(e) => {
                    // E.g. out of file descriptors: wait a little instead of spinning.
                    eprintln!("mcp-guard-proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = sweep.tick() => proxy.sessions.sweep(SESSION_IDLE),
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        eprintln!(
            "mcp-guard-proxy: {} connection(s) still open after {SHUTDOWN_GRACE:?}; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            eprintln!(
                "mcp-guard-proxy: cannot install signal handlers; stop the proxy with SIGKILL"
            );
            std::future::pending::<()>().await;
        }
    }
}

async fn connection(proxy: Arc<Proxy>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[derive(Debug)]
struct Proxy {
    /// Itself, for tasks that outlive a request (see `ask`).
    me: Weak<Proxy>,
    guard: Arc<Guard>,
    upstream: Upstream,
    upstream_url: Arc<str>,
    sessions: Arc<Sessions>,
    max_message: usize,
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match *req.method() {
            Method::POST => self.post(req).await,
            Method::GET => self.get(req).await,
            Method::DELETE => self.delete(req).await,
            _ => match self.upstream.send(req.map(boxed)).await {
                Ok(resp) => passthrough(resp),
                Err(e) => self.unreachable(None, None, &e),
            },
        }
    }

    async fn get(&self, req: Request<Incoming>) -> Response<Body> {
        let session = header_str(req.headers(), MCP_SESSION_ID).map(str::to_owned);
        let path = req.uri().path().to_owned();
        let resp = match self.upstream.send(req.map(boxed)).await {
            Ok(resp) => resp,
            Err(e) => return self.unreachable(None, None, &e),
        };
        if let Some(id) = &session
            && resp.status() == StatusCode::NOT_FOUND
        {
            self.sessions.end(id);
            return passthrough(resp);
        }
        if !is_sse(resp.headers()) {
            return passthrough(resp);
        }
        let state = match &session {
            Some(id) => self.sessions.session(id).0,
            None => self.sessions.shared(),
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        let mut stream = self.stream(body, state);
        if session.is_none() {
            let watch = LegacyWatch::new(
                self.sessions.clone(),
                self.upstream.authority().clone(),
                path,
            );
            stream = stream.legacy(watch);
        }
        Response::from_parts(parts, stream.boxed_unsync())
    }

    async fn delete(&self, req: Request<Incoming>) -> Response<Body> {
        let session = header_str(req.headers(), MCP_SESSION_ID).map(str::to_owned);
        let resp = match self.upstream.send(req.map(boxed)).await {
            Ok(resp) => resp,
            Err(e) => return self.unreachable(None, None, &e),
        };
        if let Some(id) = &session
            && (resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND)
        {
            self.sessions.end(id);
        }
        passthrough(resp)
    }

    fn stream(&self, body: Incoming, state: State) -> GuardedSse {
        GuardedSse::new(
            body,
            self.guard.clone(),
            state,
            self.max_message,
            self.upstream_url.clone(),
        )
    }
}
