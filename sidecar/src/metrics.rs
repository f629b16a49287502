//! Prometheus metrics (prometheus-client), prefix `mcp_guard_`, served as text on `--metrics ADDR`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub tool: String,
    pub decision: String,
    /// `enforce` or `audit`.
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub detector: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `client_to_server` or `server_to_client`.
    pub direction: String,
}

/// Counters of one family per direction, shared with the family (same series).
#[derive(Debug, Clone)]
pub struct DirectionCounters {
    pub client_to_server: Counter,
    pub server_to_client: Counter,
    pub malformed_client_to_server: Counter,
    pub malformed_server_to_client: Counter,
}

impl DirectionCounters {
    fn resolve(
        messages: &Family<DirectionLabels, Counter>,
        malformed: &Family<DirectionLabels, Counter>,
    ) -> Self {
        let get = |f: &Family<DirectionLabels, Counter>, d: &str| {
            f.get_or_create(&DirectionLabels {
                direction: d.to_owned(),
            })
            .clone()
        };
        Self {
            client_to_server: get(messages, "client_to_server"),
            server_to_client: get(messages, "server_to_client"),
            malformed_client_to_server: get(malformed, "client_to_server"),
            malformed_server_to_client: get(malformed, "server_to_client"),
        }
    }
}

/// Most distinct tool names used as label values; further names count as `other`, so a client
/// inventing tool names cannot grow the metrics without bound.
pub const MAX_TOOL_LABELS: usize = 256;

/// The proxy's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub calls: Family<CallLabels, Counter>,
    pub findings: Family<FindingLabels, Counter>,
    /// Time the proxy itself spends on a message (parse, judge, audit), in seconds.
    pub added_latency: Histogram,
    pub active_sessions: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub messages: Family<DirectionLabels, Counter>,
    pub malformed: Family<DirectionLabels, Counter>,
    /// The per-direction series of `messages` and `malformed`, resolved once: every frame counts
    /// into one of them, so the hot path does no label lookup.
    pub frames: DirectionCounters,
    /// Taint fingerprints evicted to keep sessions within `taint.maxFingerprints`.
    pub taint_evictions: Counter,
    /// Tainted values only partly fingerprinted (over 1 MiB, or over half the fingerprint budget).
    pub taint_truncated: Counter,
    tool_labels: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_guard");
        let calls = Family::default();
        let findings = Family::default();
        // 2 µs .. ~0.5 s
        let added_latency = Histogram::new(exponential_buckets(2e-6, 2.0, 18));
        let active_sessions = Gauge::default();
        let reloads = Family::default();
        let messages = Family::default();
        let malformed = Family::default();
        let taint_evictions = Counter::default();
        let taint_truncated = Counter::default();
        registry.register(
            "tool_calls",
            "tools/call requests by tool and decision",
            calls.clone(),
        );
        registry.register(
            "findings",
            "Detector findings by detector and rule",
            findings.clone(),
        );
        registry.register(
            "proxy_added_latency_seconds",
            "Time the proxy adds to a message (parsing, detectors, audit)",
            added_latency.clone(),
        );
        registry.register(
            "active_sessions",
            "MCP sessions currently open",
            active_sessions.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads by result (ok, invalid)",
            reloads.clone(),
        );
        registry.register("messages", "JSON-RPC frames by direction", messages.clone());
        registry.register(
            "malformed_messages",
            "Frames that were not valid JSON-RPC, by direction",
            malformed.clone(),
        );
        registry.register(
            "taint_evictions",
            "Taint fingerprints evicted to keep a session within taint.maxFingerprints",
            taint_evictions.clone(),
        );
        registry.register(
            "taint_truncated",
            "Tainted values only partly fingerprinted (over 1 MiB, or over half of taint.maxFingerprints)",
            taint_truncated.clone(),
        );
        Self {
            registry,
            taint_evictions,
            taint_truncated,
            calls,
            findings,
            added_latency,
            active_sessions,
            reloads,
            frames: DirectionCounters::resolve(&messages, &malformed),
            messages,
            malformed,
            tool_labels: Mutex::new(HashSet::new()),
        }
    }

    /// The label value for a tool name: the name itself for the first [`MAX_TOOL_LABELS`] names seen.
    pub fn tool_label(&self, tool: &str) -> String {
        let mut seen = self.tool_labels.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(tool) {
            return tool.to_owned();
        }
        if seen.len() < MAX_TOOL_LABELS {
            seen.insert(tool.to_owned());
            return tool.to_owned();
        }
        "other".to_owned()
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until the task is dropped. (Binding happens
/// at startup, so a busy port is a startup error that names the setting.)
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

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
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app).await
}
