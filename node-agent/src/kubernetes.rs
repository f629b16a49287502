//! Kubernetes mode: probe the kernel, load (or re-adopt) the pinned programs, serve metrics, and
//! run the discovery loop ([`crate::k8s::run`]) until SIGTERM.
//!
//! It never crash-loops on what the kernel lacks: a capability that is missing is reported (log
//! line, `mcp_guard_agent_capability{feature}`, a Node Event) and the rest is enforced. Only a
//! setting that is wrong (no node name, a busy metrics port) stops it.

use std::path::Component;
use std::sync::Arc;

use anyhow::Context;

use crate::bpf::{self, LoadOptions};
use crate::cgroup::{self, Layout};
use crate::config::KubernetesConfig;
use crate::k8s;
use crate::metrics::{self, Metrics};
use crate::otlp::{EventExporter, EventSink, OtlpConfig};
use crate::probe;

/// Runs Kubernetes mode until SIGINT/SIGTERM.
pub async fn run(cfg: KubernetesConfig) -> anyhow::Result<()> {
    let node_name = cfg.node_name.clone().context(
        "--node-name (or NODE_NAME from the downward API) is required in Kubernetes mode",
    )?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(cfg.metrics)
        .await
        .with_context(|| format!("--metrics: cannot listen on {}", cfg.metrics))?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));

    let caps = bpf::capabilities();
    let mut report = probe::assess(&caps.probes());
    let mount = match caps.cgroup_root.clone() {
        Some(root) => root,
        None => match cgroup::find_cgroup2_mount() {
            Ok(Some(root)) => root,
            _ => {
                return idle(&report, &metrics, "no cgroup v2 hierarchy on this node").await;
            }
        },
    };
    let mut layout = Layout::new(mount);
    layout.parent = cfg
        .kubelet_cgroup_root
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let loaded = match bpf::load(&LoadOptions {
        pin_dir: cfg.pin_dir.clone(),
        capabilities: Some(caps),
    }) {
        Ok(l) => l,
        Err(e) => {
            return idle(
                &report,
                &metrics,
                &format!("loading the BPF programs: {e:#}"),
            )
            .await;
        }
    };
    for p in &loaded.programs {
        tracing::info!(program = %p.program, hook = %p.hook, state = ?p.state, "program");
    }
    let older = older_programs(&loaded, &metrics, &mut report);

    let exporter = match OtlpConfig::from_env().map_err(anyhow::Error::msg)? {
        Some(c) => Some(Arc::new(
            EventExporter::new(&c).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let sink = EventSink::new(metrics.clone(), exporter);
    let (mut rx, _reader) = loaded.events.spawn(4096);
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let mut config = k8s::Config::new(node_name, layout, report);
    config.proxy_image = cfg.proxy_image.clone();
    config.older_programs = older;
    k8s::run(
        client,
        config,
        loaded.enforcer,
        events,
        sink,
        metrics,
        shutdown_signal(),
    )
    .await
}

/// The hooks that still run an older agent's program (its `KeptOlder`): recorded in
/// `mcp_guard_agent_older_programs{hook}` and reported as a degradation (log line and Node Event),
/// and returned for the discovery loop, which then guards containers' own cgroups as well.
fn older_programs(
    loaded: &bpf::Loaded,
    metrics: &Metrics,
    report: &mut probe::Report,
) -> k8s::state::OlderPrograms {
    for p in &loaded.programs {
        metrics.set_older_program(&p.hook, p.state.older());
    }
    let older = loaded.older_programs();
    if older.is_empty() {
        return k8s::state::OlderPrograms::default();
    }
    let hooks: Vec<&str> = older.iter().map(|p| p.hook.as_str()).collect();
    for p in &older {
        if let bpf::AttachState::KeptOlder { reason } = &p.state {
            tracing::warn!(program = %p.program, hook = %p.hook, %reason, "this build's program could not replace the older one");
        }
    }
    report.degrade(format!(
        "{} still run(s) the program of an older agent (pinned layout version {}), this build's          could not attach: it confines only processes whose own cgroup is guarded, so each running          container's cgroup is guarded as well, from when the agent sees it running (not from its          first instruction); restart the agent to retry",
        hooks.join(", "),
        loaded
            .pinned_layout
            .map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
    ));
    k8s::state::OlderPrograms::from_hooks(hooks)
}

/// Nothing can be enforced on this node: say so (log, metrics) and keep serving /metrics until
/// shutdown instead of exiting, which would only make the DaemonSet crash-loop.
async fn idle(report: &probe::Report, metrics: &Metrics, why: &str) -> anyhow::Result<()> {
    tracing::error!(reason = why, "enforcing nothing on this node");
    report.log();
    report.record(metrics);
    shutdown_signal().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The pins stay: enforcement continues while the agent is away.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down; pinned programs keep enforcing");
}
