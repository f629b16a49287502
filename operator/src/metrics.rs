//! Prometheus metrics of the operator (prefix `mcp_guard_operator_`), and the plain-HTTP server for
//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    webhook: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Something was written (ConfigMap or status).
    Changed,
    /// Everything was already as it should be: no writes.
    Unchanged,
    /// The policy is invalid; status says why.
    Invalid,
    /// The reconcile failed and will be retried.
    Error,
}

impl ReconcileResult {
    fn label(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }
}

/// What an admission request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionResult {
    /// Allowed unchanged.
    Allowed,
    /// Allowed with a patch (sidecar injected).
    Mutated,
    /// Refused with a message.
    Denied,
    /// The request itself could not be read.
    Error,
}

impl AdmissionResult {
    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Mutated => "mutated",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_errors: Family<ErrorLabel, Counter>,
    reconcile_duration: Histogram,
    admissions: Family<AdmissionLabels, Counter>,
    admission_duration: Family<WebhookLabel, Histogram>,
    writes: Family<KindLabel, Counter>,
    leader: Gauge,
    cert_expiry: Gauge,
    cert_rotations: Family<ReasonLabel, Counter>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_guard_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Policy reconciles by result (changed, unchanged, invalid, error)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind (each is retried with backoff)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one policy reconcile took",
            reconcile_duration.clone(),
        );
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission requests by webhook (mutate-pods, validate-policies) and result",
            admissions.clone(),
        );
        let admission_duration = Family::<WebhookLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
            ])
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission request",
            admission_duration.clone(),
        );
        let writes = Family::<KindLabel, Counter>::default();
        registry.register(
            "writes",
            "Writes to the API server by object kind (configmap, status, event, secret, webhook)",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and reconciles",
            leader.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the webhook serving certificate in use expires (Unix time)",
            cert_expiry.clone(),
        );
        let cert_rotations = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "certificate_writes",
            "Webhook certificate Secret writes by reason",
            cert_rotations.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            admissions,
            admission_duration,
            writes,
            leader,
            cert_expiry,
            cert_rotations,
            ready: AtomicBool::new(false),
        }
    }

    pub fn reconciled(&self, result: ReconcileResult, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.label(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn reconcile_error(&self, label: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel { error: label })
            .inc();
    }

    pub fn admission(&self, webhook: &'static str, result: AdmissionResult, took: Duration) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                webhook,
                result: result.label(),
            })
            .inc();
        self.admission_duration
            .get_or_create(&WebhookLabel { webhook })
            .observe(took.as_secs_f64());
    }

    pub fn wrote(&self, kind: &'static str) {
        self.writes.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn certificate(&self, expires_unix: i64) {
        self.cert_expiry.set(expires_unix);
    }

    pub fn certificate_written(&self, reason: &'static str) {
        self.cert_rotations
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Marks the operator ready (caches synced, serving certificate loaded) for /readyz.
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
mod tests {
    use super::*;

    #[test]
    fn counts_appear_with_their_labels() {
        let m = Metrics::new();
        m.reconciled(ReconcileResult::Unchanged, Duration::from_millis(3));
        m.reconcile_error("conflict");
        m.admission(
            "mutate-pods",
            AdmissionResult::Mutated,
            Duration::from_micros(300),
        );
        m.wrote("configmap");
        m.set_leader(true);
        let text = m.encode();
        for needle in [
            "mcp_guard_operator_reconciles_total{result=\"unchanged\"} 1",
            "mcp_guard_operator_reconcile_errors_total{error=\"conflict\"} 1",
            "mcp_guard_operator_admissions_total{webhook=\"mutate-pods\",result=\"mutated\"} 1",
            "mcp_guard_operator_writes_total{kind=\"configmap\"} 1",
            "mcp_guard_operator_leader 1",
            "mcp_guard_operator_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
