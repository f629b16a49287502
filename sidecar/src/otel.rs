//! OpenTelemetry: a span per `tools/call` and a log record per block, ask and audit-mode would-block,
//! exported over OTLP (gRPC, or HTTP/protobuf) to the collector named by the standard
//! `OTEL_EXPORTER_OTLP_*` variables ([`setup`]).
//!
//! Off unless an endpoint is set, and then free: [`Otel::start_call`] returns an empty [`CallSpan`]
//! after one branch, and no span, attribute or context object is ever made. On, the guard starts a
//! span when it has judged a call (backdated to when the request arrived) and ends it when the
//! call's story ends in [`Guard::finish`](crate::guard::Guard): the server's answer judged, the
//! block answered, the ask resolved. Spans and records go to the SDK's batch processors, which queue
//! them without blocking (a full queue drops) and export from threads of their own; shutdown flushes.
//!
//! The span continues the caller's trace: W3C `traceparent`/`tracestate` from the request's
//! `params._meta` (any transport), else from the HTTP request's headers (Streamable HTTP, legacy
//! SSE). The caller's sampling decision is honoured (`OTEL_TRACES_SAMPLER`, default parent-based
//! always-on). The session is named by a hash of its id, never the id itself, which over HTTP is a
//! bearer of the session.

mod setup;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mcp_guard_policy::Mode;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use setup::{Config, DEFAULT_SERVICE_NAME, Signal};

use crate::decision::{Decision, Finding, Verdict};
use crate::engine::Engine;
use crate::guard::mode_str;
use crate::session::CallInFlight;

/// How long shutdown waits for each signal's last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest tool name put in a span name (the attribute keeps it whole).
const SPAN_NAME_TOOL_MAX: usize = 128;

/// The proxy's OpenTelemetry export; shared by every session. Cloning shares it.
#[derive(Clone, Default)]
pub struct Otel {
    inner: Option<Arc<Exporting>>,
}

struct Exporting {
    config: Config,
    tracer: Option<SdkTracer>,
    logger: Option<SdkLogger>,
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    propagator: TraceContextPropagator,
}

impl fmt::Debug for Otel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Otel(off)"),
            Some(on) => f.debug_tuple("Otel").field(&on.config).finish(),
        }
    }
}

impl Otel {
    /// No export.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// From the process environment (see [`setup`]); off when no OTLP endpoint is set. Must be
    /// called within the Tokio runtime the proxy runs on: the exporters use it.
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok();
        let config = Config::from_vars(var)?;
        if !config.is_enabled() {
            return Ok(Self::disabled());
        }
        let resource = setup::resource(var);
        let tracer_provider = config
            .traces
            .as_ref()
            .map(|s| setup::tracer_provider(s, resource.clone()))
            .transpose()?;
        let logger_provider = config
            .logs
            .as_ref()
            .map(|s| setup::logger_provider(s, resource.clone()))
            .transpose()?;
        let scope = InstrumentationScope::builder("mcp-guard-proxy")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Self {
            inner: Some(Arc::new(Exporting {
                tracer: tracer_provider
                    .as_ref()
                    .map(|p| p.tracer_with_scope(scope.clone())),
                logger: logger_provider.as_ref().map(|p| p.logger_with_scope(scope)),
                tracer_provider,
                logger_provider,
                config,
                propagator: TraceContextPropagator::new(),
            })),
        })
    }

    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// For the startup line on stderr, when on.
    pub fn describe(&self) -> Option<String> {
        let on = self.inner.as_ref()?;
        let show = |s: &Option<Signal>| s.as_ref().map_or("off".to_owned(), Signal::to_string);
        Some(format!(
            "OpenTelemetry: traces to {}, logs to {}",
            show(&on.config.traces),
            show(&on.config.logs)
        ))
    }

    /// Exports what is queued and stops the exporters (both at once, each given
    /// [`SHUTDOWN_TIMEOUT`]). Blocks: call it outside the runtime's worker threads (the proxy's
    /// `run` runs on the main thread). Later calls do nothing.
    pub fn shutdown(&self) {
        let Some(on) = &self.inner else { return };
        std::thread::scope(|s| {
            if let Some(p) = &on.tracer_provider {
                s.spawn(|| p.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
            }
            if let Some(p) = &on.logger_provider {
                s.spawn(|| p.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
            }
        });
    }

    /// A value that calls [`Otel::shutdown`] when dropped, so that every way out of the proxy's
    /// `run` flushes.
    pub fn shutdown_on_drop(&self) -> ShutdownOnDrop {
        ShutdownOnDrop(self.clone())
    }

    /// The span of a call just judged; empty (and free) when export is off.
    #[inline]
    pub fn start_call(&self, call: &CallStart<'_>) -> CallSpan {
        match &self.inner {
            None => CallSpan(None),
            Some(on) => on.start_call(call),
        }
    }

    /// The end of a call: its span ends with the outcome, and a block or ask becomes a log record.
    /// Does nothing for a call without a span (export off, or already ended).
    #[inline]
    pub fn end_call(&self, call: &mut CallInFlight, end: &CallEnd<'_>) {
        if let (Some(on), Some(live)) = (&self.inner, call.span.0.take()) {
            on.end_call(*live, call, end);
        }
    }
}

/// See [`Otel::shutdown_on_drop`].
#[derive(Debug)]
pub struct ShutdownOnDrop(Otel);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// What the guard knows when it has judged a call.
#[derive(Debug)]
pub struct CallStart<'a> {
    /// When the request arrived (the span starts then).
    pub started: Instant,
    pub session: &'a str,
    /// The JSON-RPC id, as raw JSON.
    pub id: &'a str,
    pub tool: &'a str,
    pub decision: &'a Decision,
    pub mode: Mode,
    pub engine: &'a Engine,
    /// The request's `params`, for `_meta.traceparent`.
    pub params: Option<&'a RawValue>,
    /// The HTTP request's trace context headers.
    pub remote: Option<&'a Remote<'a>>,
}

/// What the guard knows when a call's story ends.
#[derive(Debug)]
pub struct CallEnd<'a> {
    pub engine: &'a Engine,
    pub mode: Mode,
    pub session: &'a str,
    pub id: &'a str,
    pub outcome: &'static str,
    pub upstream_ms: Option<f64>,
    /// The judgement of the server's result, when it had findings.
    pub result: Option<&'a Decision>,
}

/// A call's span while the call is in flight; empty when export is off.
#[derive(Default)]
pub struct CallSpan(Option<Box<Live>>);

impl fmt::Debug for CallSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("CallSpan(none)"),
            Some(live) => write!(
                f,
                "CallSpan({}-{})",
                live.context.trace_id(),
                live.context.span_id()
            ),
        }
    }
}

struct Live {
    /// `None` when only logs are exported.
    span: Option<opentelemetry_sdk::trace::Span>,
    /// What the call's log records carry: the span's context, else (traces off) the caller's.
    context: SpanContext,
    session: String,
}

/// W3C trace context from an HTTP request's headers.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub traceparent: &'a str,
    pub tracestate: Option<&'a str>,
}

impl<'a> Remote<'a> {
    /// `traceparent` and `tracestate`, when the request has a `traceparent`.
    pub fn from_headers(headers: &'a hyper::HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Some(Self {
            traceparent: text("traceparent")?,
            tracestate: text("tracestate"),
        })
    }
}

impl Extractor for Remote<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

impl Exporting {
    fn start_call(&self, call: &CallStart<'_>) -> CallSpan {
        let parent = call
            .params
            .and_then(|p| self.meta_parent(p))
            .or_else(|| call.remote.and_then(|r| self.parent(r)));
        let session = session_hash(call.session);
        let span = self.tracer.as_ref().map(|tracer| {
            let cx = match &parent {
                Some(sc) => Context::new().with_remote_span_context(sc.clone()),
                None => Context::new(),
            };
            let start = SystemTime::now()
                .checked_sub(call.started.elapsed())
                .unwrap_or_else(SystemTime::now);
            let mut attributes = identity(
                call.tool,
                call.id,
                &session,
                call.mode,
                call.engine,
                call.decision,
            );
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            tracer
                .span_builder(span_name(call.tool))
                .with_kind(SpanKind::Server)
                .with_start_time(start)
                .with_attributes(attributes)
                .start_with_context(tracer, &cx)
        });
        let context = match &span {
            Some(s) => s.span_context().clone(),
            None => parent.unwrap_or_else(SpanContext::empty_context),
        };
        CallSpan(Some(Box::new(Live {
            span,
            context,
            session,
        })))
    }

    /// The caller's span from `params._meta.traceparent` (and `tracestate`).
    fn meta_parent(&self, params: &RawValue) -> Option<SpanContext> {
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(rename = "_meta", borrow)]
            meta: Option<Meta<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Meta<'a> {
            #[serde(borrow)]
            traceparent: Option<Cow<'a, str>>,
            #[serde(borrow)]
            tracestate: Option<Cow<'a, str>>,
        }
        let text = params.get();
        memchr::memmem::find(text.as_bytes(), b"\"traceparent\"")?;
        let meta = serde_json::from_str::<Params<'_>>(text).ok()?.meta?;
        self.parent(&Remote {
            traceparent: meta.traceparent.as_deref()?,
            tracestate: meta.tracestate.as_deref(),
        })
    }

    fn parent(&self, remote: &Remote<'_>) -> Option<SpanContext> {
        let cx = self
            .propagator
            .extract_with_context(&Context::new(), remote);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    fn end_call(&self, mut live: Live, call: &CallInFlight, end: &CallEnd<'_>) {
        let verdict = call
            .decision
            .verdict
            .max(end.result.map_or(Verdict::Allow, |r| r.verdict));
        // The finding that decided: the result's when the result weighed more.
        let deciding = match end.result {
            Some(r) if r.verdict > call.decision.verdict => r.deciding(),
            _ => call.decision.deciding(),
        };
        if let Some(logger) = &self.logger
            && matches!(verdict, Verdict::Block | Verdict::Ask)
        {
            let mut record = logger.create_log_record();
            let (severity, text) = if verdict == Verdict::Block {
                (Severity::Warn, "WARN")
            } else {
                (Severity::Info, "INFO")
            };
            record.set_severity_number(severity);
            record.set_severity_text(text);
            record.set_event_name("mcp_guard.tools_call");
            record.set_timestamp(SystemTime::now());
            let reason = deciding.map_or("", |f| f.reason.as_str());
            record.set_body(reason.to_owned().into());
            let attributes = identity(
                &call.tool,
                end.id,
                &live.session,
                end.mode,
                end.engine,
                &call.decision,
            )
            .into_iter()
            .chain(ending(call, end, verdict, deciding));
            record.add_attributes(attributes.map(|kv| (kv.key, value_to_any(kv.value))));
            if live.context.is_valid() {
                record.set_trace_context(
                    live.context.trace_id(),
                    live.context.span_id(),
                    Some(live.context.trace_flags()),
                );
            }
            logger.emit(record);
        }
        if let Some(span) = live.span.as_mut() {
            for kv in ending(call, end, verdict, deciding) {
                span.set_attribute(kv);
            }
            if failed(end.outcome) {
                span.set_attribute(KeyValue::new("error.type", end.outcome));
                let description = deciding.map_or(end.outcome.to_owned(), |f| f.reason.clone());
                span.set_status(Status::error(description));
            }
            span.end();
        }
    }
}

/// The attributes naming a call and its judgement, on its span and its log records.
fn identity(
    tool: &str,
    id: &str,
    session: &str,
    mode: Mode,
    engine: &Engine,
    decision: &Decision,
) -> Vec<KeyValue> {
    let source = &engine.policy().source;
    let mut kv = Vec::with_capacity(16);
    kv.push(KeyValue::new("mcp.method.name", "tools/call"));
    kv.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
    kv.push(KeyValue::new("jsonrpc.request.id", request_id(id)));
    kv.push(KeyValue::new("mcp_guard.session", session.to_owned()));
    kv.push(KeyValue::new("mcp_guard.mode", mode_str(mode)));
    if let Some(name) = &source.name {
        kv.push(KeyValue::new("mcp_guard.policy.name", name.clone()));
    }
    if let Some(ns) = &source.namespace {
        kv.push(KeyValue::new("mcp_guard.policy.namespace", ns.clone()));
    }
    if let Some(generation) = source.generation {
        kv.push(KeyValue::new("mcp_guard.policy.generation", generation));
    }
    kv.push(KeyValue::new(
        "mcp_guard.decision",
        decision.verdict.as_str(),
    ));
    kv.push(KeyValue::new("mcp_guard.risk", decision.risk));
    if !decision.findings.is_empty() {
        kv.push(rule_ids("mcp_guard.rule_ids", &decision.findings));
    }
    if let Some(f) = decision.deciding() {
        kv.push(KeyValue::new(
            "mcp_guard.rule",
            Value::String(f.rule.clone().into()),
        ));
        kv.push(KeyValue::new("mcp_guard.detector", f.detector.as_str()));
    }
    kv
}

/// The attributes known when a call ends.
fn ending(
    call: &CallInFlight,
    end: &CallEnd<'_>,
    verdict: Verdict,
    deciding: Option<&Finding>,
) -> Vec<KeyValue> {
    let mut kv = Vec::with_capacity(6);
    kv.push(KeyValue::new("mcp_guard.outcome", end.outcome));
    kv.push(KeyValue::new(
        "mcp_guard.decide_us",
        i64::try_from(call.decide_us).unwrap_or(i64::MAX),
    ));
    if let Some(ms) = end.upstream_ms {
        kv.push(KeyValue::new("mcp_guard.upstream_ms", ms));
    }
    if let Some(result) = end.result {
        kv.push(KeyValue::new(
            "mcp_guard.result.decision",
            result.verdict.as_str(),
        ));
        kv.push(rule_ids("mcp_guard.result.rule_ids", &result.findings));
        if verdict > call.decision.verdict
            && let Some(f) = deciding
        {
            kv.push(KeyValue::new(
                "mcp_guard.result.rule",
                Value::String(f.rule.clone().into()),
            ));
        }
    }
    kv
}

fn rule_ids(key: &'static str, findings: &[Finding]) -> KeyValue {
    let ids: Vec<StringValue> = findings.iter().map(|f| f.rule.clone().into()).collect();
    KeyValue::new(key, Value::Array(Array::String(ids)))
}

/// Outcomes after which the client got an error instead of the server's result.
fn failed(outcome: &str) -> bool {
    matches!(
        outcome,
        "blocked" | "result-blocked" | "error" | "server-failed" | "ask-declined"
    ) || (outcome.starts_with("ask-") && outcome.ends_with("-blocked"))
}

/// `tools/call <tool>` (the MCP semantic conventions' `{mcp.method.name} {target}`).
fn span_name(tool: &str) -> String {
    let mut cut = tool.len().min(SPAN_NAME_TOOL_MAX);
    while !tool.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("tools/call {}", &tool[..cut])
}

/// A JSON-RPC id as an attribute: a string id without its quotes, a number as written.
fn request_id(raw: &str) -> String {
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
    } else {
        raw.to_owned()
    }
}

/// The first 16 hex digits of the SHA-256 of a session id: stable per session, and not the id.
pub fn session_hash(session: &str) -> String {
    hex::encode(&Sha256::digest(session.as_bytes())[..8])
}

fn value_to_any(v: Value) -> opentelemetry::logs::AnyValue {
    use opentelemetry::logs::AnyValue;
    match v {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::String(items)) => {
            AnyValue::ListAny(Box::new(items.into_iter().map(AnyValue::String).collect()))
        }
        other => AnyValue::String(other.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(span_name("echo"), "tools/call echo");
        assert_eq!(span_name(&"é".repeat(100)).len(), "tools/call ".len() + 128);
        assert_eq!(request_id("\"a-1\""), "a-1");
        assert_eq!(request_id("17"), "17");
        let h = session_hash("secret-session-id");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("secret"));
        assert!(failed("blocked") && failed("ask-timeout-blocked") && failed("ask-declined"));
        assert!(!failed("allowed") && !failed("audit-would-block") && !failed("ask-approved"));
    }

    #[test]
    fn off_is_empty() {
        let otel = Otel::disabled();
        assert!(!otel.is_enabled());
        assert!(otel.describe().is_none());
        otel.shutdown();
    }
}
