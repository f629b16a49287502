//! `mcp-guard-proxy`: wiring only; see the library for everything else.
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mcp_guard_proxy::audit::Audit;
use mcp_guard_proxy::config::{Args, Transport};
use mcp_guard_proxy::engine::Engine;
use mcp_guard_proxy::guard::Guard;
use mcp_guard_proxy::killswitch;
use mcp_guard_proxy::metrics::{self, Metrics};
use mcp_guard_proxy::policy::{self, Reloader};
use mcp_guard_proxy::transport::{bridge, http, stdio};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("mcp-guard-proxy: {e}");
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.install_to {
        return match mcp_guard_proxy::install::install_to(dir) {
            Ok(path) => {
                eprintln!("mcp-guard-proxy: installed {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcp-guard-proxy: {e}");
                ExitCode::from(1)
            }
        };
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
    let policy_path = args
        .policy
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--policy FILE is required"))?;
    let transport = args.transport().map_err(anyhow::Error::msg)?;
    let compiled = policy::load(&policy_path).map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
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
    // OpenTelemetry: spans and logs over OTLP when OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]ENDPOINT is set
    // (src/otel.rs); flushed when `run` returns, however it returns.
    let otel = mcp_guard_proxy::otel::Otel::from_env().map_err(anyhow::Error::msg)?;
    if let Some(described) = otel.describe() {
        eprintln!("mcp-guard-proxy: {described}");
    }
    let _otel_flush = otel.shutdown_on_drop();
    let guard = Arc::new(Guard::new(engine, args.mode, audit, metrics).with_otel(otel));
    tokio::spawn(Reloader::new(policy_path).run(guard.clone(), args.reload_interval));
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
    let code = match (transport, args.listen, &args.upstream) {
        (Transport::Http, Some(listen), Some(upstream)) => {
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
        (Transport::StdioOverHttp, Some(listen), _) => {
            serve_stdio_over_http(&args, listen, guard.clone()).await?;
            0
        }
        _ => stdio::run(&args.command, guard.clone(), args.max_message_bytes).await?,
    };
    guard.audit.write(&guard.summary.record());
    Ok(code)
}

/// `--listen ADDR -- COMMAND`: the guarded HTTP proxy on ADDR in front of the stdio bridge, which
/// runs COMMAND once per session, on a loopback port of its own.
async fn serve_stdio_over_http(
    args: &Args,
    listen: std::net::SocketAddr,
    guard: Arc<Guard>,
) -> anyhow::Result<()> {
    let options = bridge::Options {
        max_sessions: args.max_sessions(),
        idle: args.session_idle(),
        max_message: args.max_message_bytes,
    };
    let bridge = bridge::Bridge::start(&args.command, options).await?;
    let (name, value) = bridge.secret();
    let upstream = http::Upstream::new(&bridge.url())?.with_header(name, value);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            bridge.shutdown().await;
            anyhow::bail!("--listen {listen}: {e}");
        }
    };
    eprintln!(
        "mcp-guard-proxy: stdio bridge on {} (loopback; only the proxy holds its secret)",
        bridge.url()
    );
    let shown: Vec<_> = args.command.iter().map(|a| a.to_string_lossy()).collect();
    eprintln!(
        "mcp-guard-proxy: listening on http://{} for `{}` (one process per session, at most {})",
        listener.local_addr()?,
        shown.join(" "),
        args.max_sessions()
    );
    let served = http::serve_upstream(listener, upstream, guard, args.max_message_bytes).await;
    bridge.shutdown().await;
    served
}
