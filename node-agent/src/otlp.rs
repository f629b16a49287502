//! Kernel events, enriched with the pod they came from, as OTLP log records (gRPC).
//!
//! Configured by the standard environment variables: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (export is off when neither is set, or with `OTEL_SDK_DISABLED=true`),
//! `OTEL_EXPORTER_OTLP_LOGS_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, URL-encoded values),
//! `OTEL_EXPORTER_OTLP_*TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`. Only the `grpc` protocol is built in.
//!
//! Each record has event name `mcpguard.kernel_event`, severity WARN for denials (INFO otherwise), a
//! one-line body, and the attributes `k8s.namespace.name`, `k8s.pod.name`, `k8s.container.name`,
//! `mcpguard.policy`, `mcpguard.kind`, `mcpguard.verdict`, `mcpguard.slot`, `mcpguard.cgroup_id`,
//! `process.pid`, `process.command`, and `file.path` or `network.peer.address` and
//! `network.peer.port`. [`EventSink`] also counts every event and logs it.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};

use crate::metrics::{Metrics, kind_label, verdict_label};
use crate::model::{EventKind, KernelEvent, Verdict};

/// Who an event is about (unknown parts are `None`, e.g. outside Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The policy's name.
    pub policy: Option<String>,
}

/// Where and how to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// A gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// Request metadata (e.g. an `authorization` header).
    pub headers: Vec<(String, String)>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `k8s.node.name` of the resource, when known.
    pub node_name: Option<String>,
}

impl OtlpConfig {
    /// Reads the standard variables from the environment; `Ok(None)` when export is off.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the standard variables through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |names: [&str; 2]| {
            names.into_iter().find_map(|n| {
                get(n)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
            })
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some(endpoint) = var([
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]) else {
            return Ok(None);
        };
        if let Some(p) = var([
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]) && p != "grpc"
        {
            return Err(format!(
                "OTLP protocol {p:?} is not supported by mcp-guard-agent (use grpc)"
            ));
        }
        let headers = var([
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ])
        .map(|h| parse_headers(&h))
        .transpose()?
        .unwrap_or_default();
        Ok(Some(Self {
            endpoint,
            headers,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "mcp-guard-agent".to_owned()),
            node_name: None,
        }))
    }
}

/// Parses `k=v,k2=v2` with percent-encoded values.
fn parse_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("OTLP header {kv:?} is not key=value"))?;
            Ok((k.trim().to_ascii_lowercase(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Exports kernel events as OTLP log records through a batching processor.
#[derive(Debug)]
pub struct EventExporter {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl EventExporter {
    /// Builds the exporter; call inside a Tokio runtime (the gRPC channel lives there). Connects
    /// lazily: an unreachable collector costs dropped batches, never a failure here.
    pub fn new(config: &OtlpConfig) -> Result<Self, String> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (k, v) in &config.headers {
            let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_bytes())
                .map_err(|e| format!("OTLP header name {k:?}: {e}"))?;
            let value = v
                .parse()
                .map_err(|e| format!("OTLP header {k:?} value: {e}"))?;
            metadata.insert(key, value);
        }
        let exporter = LogExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_metadata(metadata)
            .build()
            .map_err(|e| format!("OTLP exporter for {}: {e}", config.endpoint))?;
        let mut resource = Resource::builder().with_service_name(config.service_name.clone());
        if let Some(node) = &config.node_name {
            resource = resource.with_attribute(KeyValue::new("k8s.node.name", node.clone()));
        }
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let logger = provider.logger("mcp-guard-agent");
        Ok(Self { provider, logger })
    }

    /// Queues one event for export.
    pub fn emit(&self, event: &KernelEvent, owner: Option<&Owner>) {
        let mut record = self.logger.create_log_record();
        let now = SystemTime::now();
        record.set_event_name("mcpguard.kernel_event");
        record.set_timestamp(now);
        record.set_observed_timestamp(now);
        let (severity, text) = match event.verdict {
            Verdict::Denied => (Severity::Warn, "WARN"),
            _ => (Severity::Info, "INFO"),
        };
        record.set_severity_number(severity);
        record.set_severity_text(text);
        record.set_body(AnyValue::from(summary(event)));
        let owner = owner.cloned().unwrap_or_default();
        for (key, value) in [
            ("k8s.namespace.name", owner.namespace),
            ("k8s.pod.name", owner.pod),
            ("k8s.container.name", owner.container),
            ("mcpguard.policy", owner.policy),
        ] {
            if let Some(v) = value {
                record.add_attribute(key, v);
            }
        }
        record.add_attribute("mcpguard.kind", kind_label(event.kind));
        record.add_attribute("mcpguard.verdict", verdict_label(event.verdict));
        record.add_attribute("mcpguard.slot", i64::from(event.slot));
        record.add_attribute("mcpguard.cgroup_id", event.cgroup_id.to_string());
        record.add_attribute(
            "mcpguard.guard_cgroup_id",
            event.guard_cgroup_id.to_string(),
        );
        record.add_attribute("process.pid", i64::from(event.pid));
        record.add_attribute("process.command", event.comm.clone());
        if let Some(path) = &event.path {
            record.add_attribute("file.path", path.clone());
        }
        if let Some((dev, ino)) = event.inode {
            record.add_attribute("file.inode", format!("{dev}:{ino}"));
        }
        if let Some(addr) = event.addr {
            record.add_attribute("network.peer.address", addr.to_string());
        }
        if let Some(port) = event.port {
            record.add_attribute("network.peer.port", i64::from(port));
        }
        self.logger.emit(record);
    }

    /// Exports what is queued. Blocks: call it from `spawn_blocking` inside a runtime.
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Flushes and stops the exporter. Blocks, like [`flush`](Self::flush).
    pub fn shutdown(&self) -> Result<(), String> {
        self.provider.shutdown().map_err(|e| e.to_string())
    }
}

/// A one-line description of an event.
pub fn summary(event: &KernelEvent) -> String {
    let verdict = verdict_label(event.verdict);
    let target = match event.kind {
        EventKind::FileOpen | EventKind::Exec => event
            .path
            .clone()
            .or_else(|| event.inode.map(|(d, i)| format!("inode {d}:{i}")))
            .unwrap_or_default(),
        EventKind::Connect | EventKind::Bind => match (event.addr, event.port) {
            (Some(a @ std::net::IpAddr::V6(_)), Some(p)) => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.to_string(),
            (None, Some(p)) => format!("port {p}"),
            (None, None) => String::new(),
        },
    };
    format!(
        "{} {target} {verdict} ({}[{}])",
        kind_label(event.kind),
        event.comm,
        event.pid
    )
}

/// Where every kernel event goes: the events counter, the agent's log and, when configured, OTLP.
#[derive(Clone, Debug)]
pub struct EventSink {
    metrics: Arc<Metrics>,
    exporter: Option<Arc<EventExporter>>,
}

impl EventSink {
    pub fn new(metrics: Arc<Metrics>, exporter: Option<Arc<EventExporter>>) -> Self {
        Self { metrics, exporter }
    }

    pub fn deliver(&self, event: &KernelEvent, owner: Option<&Owner>) {
        self.metrics.event(event.kind, event.verdict);
        let o = owner.cloned().unwrap_or_default();
        tracing::info!(
            namespace = o.namespace.as_deref().unwrap_or("-"),
            pod = o.pod.as_deref().unwrap_or("-"),
            container = o.container.as_deref().unwrap_or("-"),
            policy = o.policy.as_deref().unwrap_or("-"),
            cgroup_id = event.cgroup_id,
            "{}",
            summary(event)
        );
        if let Some(exporter) = &self.exporter {
            exporter.emit(event, owner);
        }
    }
}

#[cfg(test)]
mod tests;
