//! `mcp-guard-proxy`: wiring only; see the library for everything else.
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mcp_guard_proxy::audit::Audit;
use mcp_guard_proxy::config::Args;
use mcp_guard_proxy::engine::Engine;
use mcp_guard_proxy::guard::Guard;
use mcp_guard_proxy::killswitch;
use mcp_guard_proxy::metrics::{self, Metrics};
use mcp_guard_proxy::policy::{self, Reloader};
use mcp_guard_proxy::transport::{http, stdio};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("mcp-guard-proxy: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-guard-proxy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for the blocking thread that reads stdin: when the server exits on its own (or on a
    // forwarded signal) the client may still hold stdin open, and dropping the runtime would block
    // until it closes.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("mcp-guard-proxy: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<i32> {
    let compiled = policy::load(&args.policy).map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let engine = Engine::new(compiled).map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let audit = match &args.log {
        Some(path) => {
            Audit::open(path).map_err(|e| anyhow::anyhow!("--log {}: {e}", path.display()))?
        }
        None => Audit::disabled(),
    };
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
        eprintln!(
            "mcp-guard-proxy: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    let guard = Arc::new(Guard::new(engine, args.mode, audit, metrics));
    tokio::spawn(Reloader::new(args.policy.clone()).run(guard.clone(), args.reload_interval));
    tokio::spawn(killswitch::watch_signals(guard.clone()));
    if let Some(path) = &args.kill_switch_file {
        tokio::spawn(killswitch::watch_file(
            path.clone(),
            guard.clone(),
            args.reload_interval,
        ));
    }
    if let Some(addr) = args.admin {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--admin {addr}: {e}"))?;
        eprintln!(
            "mcp-guard-proxy: admin on http://{}/kill-switch",
            listener.local_addr()?
        );
        tokio::spawn(killswitch::serve_admin(listener, guard.clone()));
    }
    let code = match (args.listen, &args.upstream) {
        (Some(listen), Some(upstream)) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
            eprintln!(
                "mcp-guard-proxy: listening on http://{} for {upstream}",
                listener.local_addr()?
            );
            http::serve(listener, upstream, guard.clone(), args.max_message_bytes).await?;
            0
        }
        _ => stdio::run(&args.command, guard.clone(), args.max_message_bytes).await?,
    };
    guard.audit.write(&guard.summary.record());
    Ok(code)
}
