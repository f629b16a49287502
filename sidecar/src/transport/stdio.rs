//! stdio: spawn the MCP server, relay newline-delimited JSON-RPC both ways through the guard.
//!
//! The server's stderr passes straight through. A line from the server that is not JSON-RPC (a server
//! logging to stdout) is diverted to stderr instead of confusing the client. On stdin EOF the server's
//! stdin is closed and the server gets [`SHUTDOWN_GRACE`] to exit before SIGTERM, then SIGKILL (the MCP
//! stdio shutdown sequence). SIGINT and SIGTERM are forwarded. If the server exits while calls are
//! pending, each gets a JSON-RPC error. The proxy exits with the server's exit code.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::guard::{Forward, Guard};
use crate::jsonrpc::{self, code};
use crate::session::SessionState;
use crate::transport::lines::{Line, LineReader};

/// How long the server may take to exit after its stdin closes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Shared<W> = Arc<tokio::sync::Mutex<W>>;

/// Runs the server `cmd` behind the guard on this process's stdin/stdout; returns the exit code.
pub async fn run(cmd: &[OsString], guard: Arc<Guard>, max_message: usize) -> anyhow::Result<i32> {
    run_with(
        cmd,
        guard,
        max_message,
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .await
}

/// [`run`] over any client streams (tests use pipes).
pub async fn run_with<R, W>(
    cmd: &[OsString],
    guard: Arc<Guard>,
    max_message: usize,
    client_in: R,
    client_out: W,
) -> anyhow::Result<i32>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no server command given after `--`"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the MCP server `{}`: {e}",
                program.to_string_lossy()
            )
        })?;
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    // Shared by the client side and the ask timer; `None` once the client hung up (dropping it closes
    // the server's stdin).
    let server_in: Shared<Option<ChildStdin>> = Arc::new(tokio::sync::Mutex::new(Some(
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin pipe"))?,
    )));
    let server_out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout pipe"))?;

    guard.metrics.active_sessions.inc();
    let mut state = SessionState::new(format!("stdio-{}", std::process::id()));
    // stdio can send the client an elicitation request while a call waits, and sees the whole
    // session, so it enforces the lifecycle.
    state.asks.transport_can_ask = true;
    state.enforce_lifecycle = true;
    let session = Arc::new(Mutex::new(state));
    let client_out: Shared<W> = Arc::new(tokio::sync::Mutex::new(client_out));

    let asks = tokio::spawn(expire_asks(
        server_in.clone(),
        client_out.clone(),
        guard.clone(),
        session.clone(),
    ));
    let upstream = tokio::spawn(client_to_server(
        client_in,
        server_in,
        client_out.clone(),
        guard.clone(),
        session.clone(),
        max_message,
    ));
    let downstream = tokio::spawn(server_to_client(
        server_out,
        client_out.clone(),
        guard.clone(),
        session.clone(),
        max_message,
    ));
    let signals = tokio::spawn(forward_signals(pid));

    // Either the client hung up (stdin EOF) or the server's stdout closed (it exited).
    let status = tokio::select! {
        _ = upstream => shutdown(&mut child, pid).await,
        _ = &mut Box::pin(wait_downstream(downstream)) => child.wait().await,
    };
    signals.abort();
    asks.abort();
    // Calls the server never answered.
    let errors = {
        let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
        guard.fail_pending(&mut s, "the MCP server exited before answering")
    };
    for e in errors {
        write_line(&client_out, &e).await;
    }
    guard.metrics.active_sessions.dec();
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(e) => {
            eprintln!("mcp-guard-proxy: waiting for the server failed: {e}");
            1
        }
    };
    Ok(code)
}

async fn wait_downstream(task: tokio::task::JoinHandle<()>) {
    let _ = task.await;
}

async fn client_to_server<R, W>(
    client_in: R,
    server_in: Shared<Option<ChildStdin>>,
    client_out: Shared<W>,
    guard: Arc<Guard>,
    session: Arc<Mutex<SessionState>>,
    max_message: usize,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = LineReader::new(client_in, max_message);
    while let Ok(Some(line)) = lines.next().await {
        let line = match line {
            Line::Text(l) => l,
            Line::TooLong(n) => {
                let msg = format!(
                    "message of {n} bytes exceeds the proxy's limit of {max_message} bytes"
                );
                write_line(
                    &client_out,
                    &jsonrpc::error_response(None, code::INVALID_REQUEST, &msg, None),
                )
                .await;
                continue;
            }
            Line::NotUtf8 => {
                let msg = "message is not valid UTF-8";
                write_line(
                    &client_out,
                    &jsonrpc::error_response(None, code::PARSE_ERROR, msg, None),
                )
                .await;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let outcome = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            guard.client_frame(&mut s, &line)
        };
        if let Some(reply) = &outcome.reply {
            write_line(&client_out, reply).await;
        }
        let forward = match &outcome.forward {
            Forward::Original => line.as_str(),
            Forward::Replaced(r) => r.as_str(),
            Forward::Nothing => continue,
        };
        let mut buf = Vec::with_capacity(forward.len() + 1);
        buf.extend_from_slice(forward.as_bytes());
        buf.push(b'\n');
        if !write_server(&server_in, &buf).await {
            break; // the server is gone; the downstream side reports it
        }
    }
    // Closing the server's stdin is the first step of the stdio shutdown.
    server_in.lock().await.take();
}

async fn server_to_client<W: AsyncWrite + Unpin>(
    server_out: tokio::process::ChildStdout,
    client_out: Shared<W>,
    guard: Arc<Guard>,
    session: Arc<Mutex<SessionState>>,
    max_message: usize,
) {
    let mut lines = LineReader::new(server_out, max_message);
    while let Ok(Some(line)) = lines.next().await {
        let line = match line {
            Line::Text(l) => l,
            Line::TooLong(n) => {
                eprintln!(
                    "mcp-guard-proxy: the server sent a message of {n} bytes, over the limit of {max_message}; dropped"
                );
                continue;
            }
            Line::NotUtf8 => {
                eprintln!("mcp-guard-proxy: the server sent a line that is not UTF-8; dropped");
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let outcome = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            guard.server_frame(&mut s, &line)
        };
        match outcome {
            Ok(o) => match &o.forward {
                Forward::Original => write_line(&client_out, &line).await,
                Forward::Replaced(r) => write_line(&client_out, r).await,
                Forward::Nothing => {}
            },
            Err(_) => {
                let shown: String = line.chars().take(200).collect();
                eprintln!(
                    "mcp-guard-proxy: non-JSON-RPC line on the server's stdout (not forwarded): {shown}"
                );
            }
        }
    }
}

/// Writes to the server's stdin; false when it is closed or gone.
async fn write_server(server_in: &Shared<Option<ChildStdin>>, buf: &[u8]) -> bool {
    let mut guard = server_in.lock().await;
    let Some(stdin) = guard.as_mut() else {
        return false;
    };
    stdin.write_all(buf).await.is_ok() && stdin.flush().await.is_ok()
}

/// Applies `spec.ask.fallback` to held calls whose time ran out, a few times a second.
async fn expire_asks<W: AsyncWrite + Unpin>(
    server_in: Shared<Option<ChildStdin>>,
    client_out: Shared<W>,
    guard: Arc<Guard>,
    session: Arc<Mutex<SessionState>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let (to_client, to_server) = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            guard.expire_asks(&mut s)
        };
        for reply in to_client {
            write_line(&client_out, &reply).await;
        }
        for call in to_server {
            let mut buf = call.into_bytes();
            buf.push(b'\n');
            write_server(&server_in, &buf).await;
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(out: &Shared<W>, line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut w = out.lock().await;
    if w.write_all(&buf).await.is_ok() {
        let _ = w.flush().await;
    }
}

/// The client hung up: give the server time to exit on its own, then SIGTERM, then SIGKILL.
async fn shutdown(
    child: &mut Child,
    pid: Option<Pid>,
) -> std::io::Result<std::process::ExitStatus> {
    if let Ok(status) = tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await {
        return status;
    }
    if let Some(pid) = pid {
        let _ = kill(pid, Signal::SIGTERM);
    }
    if let Ok(status) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        return status;
    }
    child.kill().await?;
    child.wait().await
}

/// Passes SIGINT and SIGTERM on to the server; the proxy exits when the server does.
async fn forward_signals(pid: Option<Pid>) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        let sig = tokio::select! {
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
        };
        if let Some(pid) = pid {
            let _ = kill(pid, sig);
        }
    }
}
