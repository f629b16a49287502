//! Turning the standard `OTEL_*` environment variables into exporters and providers.
//!
//! Each signal (traces, logs) is on when its endpoint is set: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as given), else `OTEL_EXPORTER_OTLP_ENDPOINT` (the
//! exporter adds `/v1/traces` or `/v1/logs` for HTTP). The protocol is `grpc` unless
//! `OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]PROTOCOL` says `http/protobuf`. Headers, timeouts and
//! compression (`OTEL_EXPORTER_OTLP_[SIGNAL_]HEADERS`, `..._TIMEOUT`, `..._COMPRESSION`) are read by
//! the exporter itself; batching (`OTEL_BSP_*`, `OTEL_BLRP_*`) and sampling (`OTEL_TRACES_SAMPLER`)
//! by the SDK.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, LogBatch, LogExporter, SdkLoggerProvider};
use opentelemetry_sdk::resource::{EnvResourceDetector, Resource, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tokio::runtime::Handle;

/// The service name unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "mcp-guard-proxy";

/// How often an exporter's failures are reported on stderr, at most.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// One signal's exporter settings, as read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub endpoint: String,
    pub grpc: bool,
}

/// Which signals export where; both `None` means OpenTelemetry is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub traces: Option<Signal>,
    pub logs: Option<Signal>,
}

impl Config {
    /// Reads the environment through `var` (the process environment in the proxy).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self::default());
        }
        let signal = |name: &str, exporter_var: &str| -> Result<Option<Signal>, String> {
            if get(exporter_var).is_some_and(|v| v.eq_ignore_ascii_case("none")) {
                return Ok(None);
            }
            let specific = format!("OTEL_EXPORTER_OTLP_{name}_ENDPOINT");
            let (var_name, endpoint) = match (get(&specific), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(e), _) => (specific, e),
                (None, Some(e)) => ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), e),
                (None, None) => return Ok(None),
            };
            let protocol_var = format!("OTEL_EXPORTER_OTLP_{name}_PROTOCOL");
            let (protocol_var, protocol) = match get(&protocol_var) {
                Some(p) => (protocol_var, Some(p)),
                None => (
                    "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                    get("OTEL_EXPORTER_OTLP_PROTOCOL"),
                ),
            };
            let grpc = match protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("grpc") => true,
                Some("http/protobuf") => false,
                Some(other) => {
                    return Err(format!(
                        "{protocol_var}={other}: supported are grpc (the default) and http/protobuf"
                    ));
                }
            };
            let lower = endpoint.to_ascii_lowercase();
            if !lower.starts_with("http://") && !lower.starts_with("https://") {
                return Err(format!(
                    "{var_name}={endpoint}: an http:// or https:// URL is needed"
                ));
            }
            if !grpc && lower.starts_with("https://") {
                return Err(format!(
                    "{var_name}={endpoint}: OTLP over HTTPS is supported with {protocol_var}=grpc; http/protobuf needs an http:// endpoint"
                ));
            }
            Ok(Some(Signal { endpoint, grpc }))
        };
        Ok(Self {
            traces: signal("TRACES", "OTEL_TRACES_EXPORTER")?,
            logs: signal("LOGS", "OTEL_LOGS_EXPORTER")?,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.traces.is_some() || self.logs.is_some()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = if self.grpc { "grpc" } else { "http/protobuf" };
        write!(f, "{} ({protocol})", redact_userinfo(&self.endpoint))
    }
}

/// The endpoint as it may be logged: credentials in its userinfo (`https://user:token@host`)
/// replaced by `***`.
fn redact_userinfo(endpoint: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return endpoint.into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]).into(),
        None => endpoint.into(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_userinfo;

    #[test]
    fn credentials_in_the_endpoint_are_not_logged() {
        assert_eq!(
            redact_userinfo("https://user:s3cret@otel.example:4317/v1"),
            "https://***@otel.example:4317/v1"
        );
        assert_eq!(
            redact_userinfo("http://collector:4317"),
            "http://collector:4317"
        );
        assert_eq!(redact_userinfo("http://c:4317/p@q"), "http://c:4317/p@q");
    }
}

/// The resource: `service.name` (default `mcp-guard-proxy`), `service.version`, the pod from the
/// downward API (`POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`), then `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_SERVICE_NAME`, which win.
pub fn resource(var: impl Fn(&str) -> Option<String>) -> Resource {
    let get = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes([
            KeyValue::new("service.name", DEFAULT_SERVICE_NAME),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ]);
    for (env_var, key) in [
        ("POD_NAME", "k8s.pod.name"),
        ("POD_NAMESPACE", "k8s.namespace.name"),
        ("NODE_NAME", "k8s.node.name"),
    ] {
        if let Some(v) = get(env_var) {
            builder = builder.with_attribute(KeyValue::new(key, v));
        }
    }
    builder = builder.with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = get("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// The trace provider for `signal`, batching on the SDK's own thread. Call within the runtime.
pub fn tracer_provider(signal: &Signal, resource: Resource) -> Result<SdkTracerProvider, String> {
    let exporter = if signal.grpc {
        let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        if let Some(tls) = tls_config(&signal.endpoint, "TRACES")? {
            b = b.with_tls_config(tls);
        }
        b.build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
    }
    .map_err(|e| format!("the OTLP trace exporter for {signal}: {e}"))?;
    let exporter = OnRuntime::new(exporter, "traces");
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource)
        .build())
}

/// The log provider for `signal`, batching on the SDK's own thread. Call within the runtime.
pub fn logger_provider(signal: &Signal, resource: Resource) -> Result<SdkLoggerProvider, String> {
    let exporter = if signal.grpc {
        let mut b = opentelemetry_otlp::LogExporter::builder().with_tonic();
        if let Some(tls) = tls_config(&signal.endpoint, "LOGS")? {
            b = b.with_tls_config(tls);
        }
        b.build()
    } else {
        opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
    }
    .map_err(|e| format!("the OTLP log exporter for {signal}: {e}"))?;
    let exporter = OnRuntime::new(exporter, "logs");
    Ok(SdkLoggerProvider::builder()
        .with_log_processor(BatchLogProcessor::builder(exporter).build())
        .with_resource(resource)
        .build())
}

/// TLS for an `https://` gRPC endpoint: the system's roots, plus the CA in
/// `OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE` when set.
fn tls_config(endpoint: &str, signal: &str) -> Result<Option<ClientTlsConfig>, String> {
    if !endpoint.to_ascii_lowercase().starts_with("https://") {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().with_native_roots();
    let specific = format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE");
    let ca = [specific.as_str(), "OTEL_EXPORTER_OTLP_CERTIFICATE"]
        .into_iter()
        .find_map(|v| {
            std::env::var(v)
                .ok()
                .filter(|p| !p.is_empty())
                .map(|p| (v, p))
        });
    if let Some((var, path)) = ca {
        let pem = std::fs::read(&path).map_err(|e| format!("{var}={path}: {e}"))?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Some(tls))
}

/// An exporter whose work runs with the proxy's Tokio runtime entered: the SDK's batch processor
/// calls it from a thread of its own, and the gRPC channel and the HTTP client need the runtime
/// (timers, connection tasks). Export failures are reported on stderr, at most once a minute.
struct OnRuntime<E> {
    inner: E,
    handle: Handle,
    signal: &'static str,
    last_report: Mutex<Option<Instant>>,
}

impl<E> OnRuntime<E> {
    fn new(inner: E, signal: &'static str) -> Self {
        Self {
            inner,
            // Called from `Otel::from_env`, within the runtime.
            handle: Handle::current(),
            signal,
            last_report: Mutex::new(None),
        }
    }

    fn report(&self, result: &OTelSdkResult) {
        let Err(e) = result else { return };
        let mut last = self.last_report.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            *last = Some(Instant::now());
            eprintln!(
                "mcp-guard-proxy: OpenTelemetry {} export failed: {e} (reported at most once a minute)",
                self.signal
            );
        }
    }

    /// Polls `fut` with the runtime entered on every poll.
    async fn entered<F: Future<Output = OTelSdkResult> + Send>(&self, fut: F) -> OTelSdkResult {
        let mut fut: Pin<Box<F>> = Box::pin(fut);
        let result = std::future::poll_fn(|cx| {
            let _entered = self.handle.enter();
            fut.as_mut().poll(cx)
        })
        .await;
        self.report(&result);
        result
    }
}

impl<E> fmt::Debug for OnRuntime<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime")
            .field("signal", &self.signal)
            .finish()
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.entered(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for OnRuntime<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.entered(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        assert!(!config(&[]).unwrap().is_enabled());
        assert!(
            !config(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_SERVICE_NAME", "x")
            ])
            .unwrap()
            .is_enabled()
        );
        assert!(
            !config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_SDK_DISABLED", "true")
            ])
            .unwrap()
            .is_enabled()
        );
    }

    #[test]
    fn endpoints_per_signal_and_protocols() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        let grpc = Signal {
            endpoint: "http://c:4317".into(),
            grpc: true,
        };
        assert_eq!(c.traces, Some(grpc.clone()));
        assert_eq!(c.logs, Some(grpc));
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:4318/v1/logs"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(c.traces, None);
        assert_eq!(
            c.logs,
            Some(Signal {
                endpoint: "http://l:4318/v1/logs".into(),
                grpc: false
            })
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ])
        .unwrap();
        assert!(c.traces.is_some() && c.logs.is_none());
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let e = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"),
            "{e}"
        );
        let e = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")]).unwrap_err();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=c:4317"), "{e}");
        let e = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap_err();
        assert!(e.contains("http/protobuf needs an http:// endpoint"), "{e}");
    }

    #[test]
    fn resource_defaults_and_overrides() {
        let r = resource(|k| match k {
            "POD_NAME" => Some("web-0".into()),
            "POD_NAMESPACE" => Some("tools".into()),
            _ => None,
        });
        let get = |r: &Resource, k: &'static str| {
            r.get(&opentelemetry::Key::new(k)).map(|v| v.to_string())
        };
        assert_eq!(
            get(&r, "service.name").as_deref(),
            Some(DEFAULT_SERVICE_NAME)
        );
        assert_eq!(get(&r, "k8s.pod.name").as_deref(), Some("web-0"));
        assert_eq!(get(&r, "k8s.namespace.name").as_deref(), Some("tools"));
        let r = resource(|k| (k == "OTEL_SERVICE_NAME").then(|| "guard-a".into()));
        assert_eq!(get(&r, "service.name").as_deref(), Some("guard-a"));
    }
}
