//! Prometheus metrics of the node-agent (prefix `mcp_guard_agent_`), and the plain-HTTP server for
//! `/metrics`, `/healthz` and `/readyz`. Labels are bounded: features, event kinds and verdicts, and
//! enforcer operations are fixed sets; nothing is labelled by pod or namespace (OTLP logs carry those).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::model::{EventKind, Verdict};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabel {
    feature: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The label of an event kind (as in OTLP logs).
pub fn kind_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::FileOpen => "file_open",
        EventKind::Exec => "exec",
        EventKind::Connect => "connect",
        EventKind::Bind => "bind",
    }
}

/// The label of a verdict (as in OTLP logs).
pub fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Denied => "denied",
        Verdict::Allowed => "allowed",
        Verdict::Rewritten => "rewritten",
    }
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    capability: Family<FeatureLabel, Gauge>,
    older_programs: Family<HookLabel, Gauge>,
    events: Family<EventLabels, Counter>,
    guarded_cgroups: Gauge,
    policies: Gauge,
    pods: Gauge,
    pending_pods: Gauge,
    pods_beyond_levels: Gauge,
    late_pods: Counter,
    pending_containers: Gauge,
    skipped_paths: Gauge,
    map_update_errors: Family<OpLabel, Counter>,
    policy_errors: Family<ReasonLabel, Counter>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_guard_agent");
        let capability = Family::<FeatureLabel, Gauge>::default();
        registry.register(
            "capability",
            "1 when the kernel feature is available and used (cgroup_v2, bpf_lsm, cgroup_sock_addr), 0 when not",
            capability.clone(),
        );
        let older_programs = Family::<HookLabel, Gauge>::default();
        registry.register(
            "older_programs",
            "1 when the hook (lsm/file_open, cgroup/bind4, ...) still runs an older agent's program because this build's could not attach: it matches containers' own cgroups only, which the agent then guards as well, from when it sees them running (degraded)",
            older_programs.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Kernel events by kind (file_open, exec, connect, bind) and verdict (denied, allowed, rewritten)",
            events.clone(),
        );
        let guarded_cgroups = Gauge::default();
        registry.register(
            "guarded_cgroups",
            "Cgroups in the kernel's guarded map on this node: one per guarded pod (its pod cgroup, which covers its containers), plus one per running container while older programs remain or for pods beyond the looked-up levels",
            guarded_cgroups.clone(),
        );
        let policies = Gauge::default();
        registry.register(
            "policies",
            "Policies holding a slot on this node",
            policies.clone(),
        );
        let pods = Gauge::default();
        registry.register("guarded_pods", "Guarded pods on this node", pods.clone());
        let pending_pods = Gauge::default();
        registry.register(
            "pending_pods",
            "Guarded pods whose pod cgroup the kubelet has not created yet (polled)",
            pending_pods.clone(),
        );
        let pods_beyond_levels = Gauge::default();
        registry.register(
            "pods_beyond_levels",
            "Guarded pods whose pod cgroup lies beyond the 4 cgroup levels the kernel looks up: not guarded through it (only their running containers' own cgroups are)",
            pods_beyond_levels.clone(),
        );
        let late_pods = Counter::default();
        registry.register(
            "late_pods",
            "Pods guarded only after a container of theirs had started (the agent was down or slow): their start was not confined",
            late_pods.clone(),
        );
        let pending_containers = Gauge::default();
        registry.register(
            "pending_containers",
            "Containers of guarded pods whose cgroup was not found yet (retried)",
            pending_containers.clone(),
        );
        let skipped_paths = Gauge::default();
        registry.register(
            "skipped_paths",
            "Denied file and exec paths that do not exist in a guarded container (not enforced there)",
            skipped_paths.clone(),
        );
        let map_update_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "map_update_errors",
            "Failed kernel map updates by operation (set_rules, clear_rules, guard, unguard, open_port, close_port, set_levels, read_guarded); retried",
            map_update_errors.clone(),
        );
        let policy_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "policy_errors",
            "Policies that could not be loaded, by reason (invalid, missing, slots_exhausted)",
            policy_errors.clone(),
        );
        Self {
            registry,
            capability,
            older_programs,
            events,
            guarded_cgroups,
            policies,
            pods,
            pending_pods,
            pods_beyond_levels,
            late_pods,
            pending_containers,
            skipped_paths,
            map_update_errors,
            policy_errors,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_capability(&self, feature: &'static str, available: bool) {
        self.capability
            .get_or_create(&FeatureLabel { feature })
            .set(i64::from(available));
    }

    /// Sets `mcp_guard_agent_older_programs{hook}`.
    pub fn set_older_program(&self, hook: &str, older: bool) {
        self.older_programs
            .get_or_create(&HookLabel {
                hook: hook.to_owned(),
            })
            .set(i64::from(older));
    }

    pub fn event(&self, kind: EventKind, verdict: Verdict) {
        self.events
            .get_or_create(&EventLabels {
                kind: kind_label(kind),
                verdict: verdict_label(verdict),
            })
            .inc();
    }

    pub fn set_guarded_cgroups(&self, n: usize) {
        self.guarded_cgroups.set(gauge(n));
    }

    pub fn set_policies(&self, n: usize) {
        self.policies.set(gauge(n));
    }

    pub fn set_pods(&self, n: usize) {
        self.pods.set(gauge(n));
    }

    pub fn set_pending_pods(&self, n: usize) {
        self.pending_pods.set(gauge(n));
    }

    pub fn set_pods_beyond_levels(&self, n: usize) {
        self.pods_beyond_levels.set(gauge(n));
    }

    pub fn late_pod(&self) {
        self.late_pods.inc();
    }

    pub fn set_pending_containers(&self, n: usize) {
        self.pending_containers.set(gauge(n));
    }

    pub fn set_skipped_paths(&self, n: usize) {
        self.skipped_paths.set(gauge(n));
    }

    pub fn map_update_error(&self, op: &'static str) {
        self.map_update_errors.get_or_create(&OpLabel { op }).inc();
    }

    pub fn policy_error(&self, reason: &'static str) {
        self.policy_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Marks the agent ready (pods listed, kernel state reconciled once) for /readyz.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Serves `/metrics`, `/healthz` (the process runs) and `/readyz` (503 until ready) on `listener`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let m = m.clone();
                async move {
                    if m.is_ready() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                    }
                }
            }),
        );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests;
