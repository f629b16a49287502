//! OpenTelemetry from the real proxy binary, in front of the real server-everything (npm), into a real
//! OTLP receiver running in the test: a gRPC server (tonic) implementing the collector's
//! `TraceService` and `LogsService` from `opentelemetry-proto`, and for `http/protobuf` a plain
//! HTTP/1.1 server decoding the same messages. Spans arrive with the call's tool, decision, rules,
//! risk, hashed session, policy and mode; they continue the caller's trace (`params._meta.traceparent`
//! over stdio, the `traceparent` header over Streamable HTTP); blocks, asks and audit-mode would-blocks
//! arrive as log records tied to the span. Without an endpoint nothing is exported and the proxy
//! answers exactly as before.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, TIMEOUT, assert_blocked, everything, npm_bin, proxy_bin};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};
use tonic::codec::CompressionEncoding::Gzip;

/// The caller's trace in the blocked call's `_meta`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// The caller's trace in the Streamable HTTP `traceparent` header.
const HTTP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const HTTP_PARENT_ID: &str = "b7ad6b7169203331";

fn policy(mode_line: &str) -> String {
    format!(
        "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: otel-test, namespace: tools, generation: 4}}\nspec:\n{mode_line}  rules:\n    - {{id: no-secrets-word, action: block, tools: [\"echo\"], args: [{{pointer: /message, regex: \"(?i)top.?secret\"}}]}}\n    - {{id: ask-deploys, action: ask, args: [{{pointer: /message, regex: \"(?i)deploy\"}}]}}\n"
    )
}

// === the receiver ===

/// What the receiver got: spans and log records, each with its resource's attributes, and the
/// `x-mcp-guard-test` header of every export.
#[derive(Default)]
struct Received {
    spans: Vec<(Vec<KeyValue>, Span)>,
    logs: Vec<(Vec<KeyValue>, LogRecord)>,
    headers: Vec<String>,
    /// `grpc-encoding` of each gRPC export.
    encodings: Vec<String>,
    exports: usize,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

impl Collector {
    fn traces(&self, request: ExportTraceServiceRequest) {
        let mut got = self.0.lock().unwrap();
        got.exports += 1;
        for rs in request.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.spans.push((resource.clone(), span));
                }
            }
        }
    }

    fn logs(&self, request: ExportLogsServiceRequest) {
        let mut got = self.0.lock().unwrap();
        got.exports += 1;
        for rl in request.resource_logs {
            let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                for record in sl.log_records {
                    got.logs.push((resource.clone(), record));
                }
            }
        }
    }

    fn header(&self, metadata: &tonic::metadata::MetadataMap) {
        let mut got = self.0.lock().unwrap();
        if let Some(v) = metadata.get("x-mcp-guard-test") {
            got.headers.push(v.to_str().unwrap().to_owned());
        }
        let encoding = metadata
            .get("grpc-encoding")
            .map_or("identity", |v| v.to_str().unwrap());
        got.encodings.push(encoding.to_owned());
    }

    /// Waits until `ready` holds for what arrived, then returns its answer.
    fn wait<T>(&self, what: &str, ready: impl Fn(&Received) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(t) = ready(&self.0.lock().unwrap()) {
                return t;
            }
            assert!(Instant::now() < deadline, "no {what} within {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spans(&self) -> Vec<Span> {
        let got = self.0.lock().unwrap();
        got.spans.iter().map(|(_, s)| s.clone()).collect()
    }

    fn logs_now(&self) -> Vec<LogRecord> {
        let got = self.0.lock().unwrap();
        got.logs.iter().map(|(_, l)| l.clone()).collect()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.header(request.metadata());
        self.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.header(request.metadata());
        self.logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC receiver on a loopback port, for as long as it lives.
struct GrpcReceiver {
    got: Collector,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcReceiver {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Collector::default();
        let incoming = {
            let _entered = runtime.enter();
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap()
        };
        let addr = incoming.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(got.clone()).accept_compressed(Gzip))
            .add_service(LogsServiceServer::new(got.clone()).accept_compressed(Gzip))
            .serve_with_incoming(incoming);
        runtime.spawn(server);
        Self {
            got,
            addr,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// An OTLP/HTTP (protobuf) receiver: `POST /v1/traces` and `/v1/logs`, keep-alive, one thread per
/// connection.
struct HttpReceiver {
    got: Collector,
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl HttpReceiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Collector::default();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (g, p) = (got.clone(), paths.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let (g, p) = (g.clone(), p.clone());
                std::thread::spawn(move || serve_otlp_http(conn, &g, &p));
            }
        });
        Self { got, addr, paths }
    }
}

fn serve_otlp_http(conn: TcpStream, got: &Collector, paths: &Mutex<Vec<String>>) {
    use prost::Message;
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                "x-mcp-guard-test" => got.0.lock().unwrap().headers.push(value.trim().into()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(content_type, "application/x-protobuf");
        match path.as_str() {
            "/v1/traces" => got.traces(ExportTraceServiceRequest::decode(&body[..]).unwrap()),
            "/v1/logs" => got.logs(ExportLogsServiceRequest::decode(&body[..]).unwrap()),
            _ => {}
        }
        paths.lock().unwrap().push(path);
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

// === reading what arrived ===

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(kvs: &[KeyValue], key: &str) -> String {
    match attr(kvs, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key}: not a string: {other:?} in {kvs:?}"),
    }
}

fn int(kvs: &[KeyValue], key: &str) -> i64 {
    match attr(kvs, key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{key}: not an int: {other:?}"),
    }
}

fn double(kvs: &[KeyValue], key: &str) -> f64 {
    match attr(kvs, key) {
        Some(Any::DoubleValue(d)) => *d,
        other => panic!("{key}: not a double: {other:?}"),
    }
}

fn strings(kvs: &[KeyValue], key: &str) -> Vec<String> {
    match attr(kvs, key) {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| match &v.value {
                Some(Any::StringValue(s)) => s.clone(),
                other => panic!("{key}: not strings: {other:?}"),
            })
            .collect(),
        other => panic!("{key}: not an array: {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The span of the call with JSON-RPC id `id`.
fn span_of(spans: &[Span], id: &str) -> Span {
    spans
        .iter()
        .find(|s| attr(&s.attributes, "jsonrpc.request.id") == Some(&Any::StringValue(id.into())))
        .unwrap_or_else(|| panic!("no span for request {id} in {spans:#?}"))
        .clone()
}

const SPAN_KIND_SERVER: i32 = 2;
const STATUS_ERROR: i32 = 2;
const SEVERITY_INFO: i32 = 9;
const SEVERITY_WARN: i32 = 13;

/// The attributes every call span carries, whatever its decision.
fn assert_call_span(span: &Span, tool: &str, decision: &str, outcome: &str, mode: &str) {
    let a = &span.attributes;
    assert_eq!(span.name, format!("tools/call {tool}"));
    assert_eq!(span.kind, SPAN_KIND_SERVER);
    assert_eq!(text(a, "mcp.method.name"), "tools/call");
    assert_eq!(text(a, "gen_ai.tool.name"), tool);
    assert_eq!(text(a, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(a, "mcp_guard.decision"), decision);
    assert_eq!(text(a, "mcp_guard.outcome"), outcome);
    assert_eq!(text(a, "mcp_guard.mode"), mode);
    assert_eq!(text(a, "mcp_guard.policy.name"), "otel-test");
    assert_eq!(text(a, "mcp_guard.policy.namespace"), "tools");
    assert_eq!(int(a, "mcp_guard.policy.generation"), 4);
    let session = text(a, "mcp_guard.session");
    assert!(
        session.len() == 16 && session.chars().all(|c| c.is_ascii_hexdigit()),
        "the session is a hash: {session}"
    );
    assert!(int(a, "mcp_guard.decide_us") >= 0);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);
}

// === processes ===

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with no `OTEL_*` variables from the test's own environment.
fn clean(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            c.env_remove(k);
        }
    }
    c
}

/// The proxy over stdio in front of server-everything, with `env` and `flags`.
fn stdio_proxy(policy: &str, flags: &[&str], env: &[(&str, String)]) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let mut c = clean(proxy_bin());
    c.arg("--policy")
        .arg(dir.path().join("policy.yaml"))
        .arg("--log")
        .arg(dir.path().join("audit.jsonl"))
        .args(flags)
        .arg("--")
        .args(everything());
    for (k, v) in env {
        c.env(k, v);
    }
    Peer::spawn_command(&mut c, dir)
}

fn call_with_meta(p: &mut Peer, id: &str, message: &str, meta: Value) -> Value {
    p.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}, "_meta": meta}}));
    p.response_to(&json!(id))
}

// === tests ===

#[test]
fn stdio_calls_become_spans_and_blocks_and_asks_become_logs() {
    let receiver = GrpcReceiver::start();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-mcp-guard-test=42".into()),
        // Export while the proxy runs, not only at exit.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".into()),
        ("POD_NAME", "web-0".into()),
        ("POD_NAMESPACE", "tools".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test".into(),
        ),
    ];
    let mut p = stdio_proxy(&policy(""), &[], &env);
    p.initialize();
    let allowed = call_with_meta(&mut p, "ok-1", "hello", json!({}));
    assert_eq!(allowed["result"]["content"][0]["text"], "Echo: hello");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let blocked = call_with_meta(
        &mut p,
        "blocked-1",
        "TOP SECRET plans",
        json!({"traceparent": traceparent, "tracestate": "vendor=abc", "progressToken": 1}),
    );
    assert_blocked(&blocked, "no-secrets-word");
    // No elicitation capability: the ask falls back (block).
    let asked = call_with_meta(&mut p, "ask-1", "deploy now", json!({}));
    assert!(asked["error"].is_object(), "{asked}");

    // The spans arrive while the proxy still runs.
    let spans = receiver.got.wait("three spans", |r| {
        (r.spans.len() >= 3).then(|| r.spans.clone())
    });
    let resource = &spans[0].0;
    assert_eq!(text(resource, "service.name"), "mcp-guard-proxy");
    assert_eq!(text(resource, "k8s.pod.name"), "web-0");
    assert_eq!(text(resource, "k8s.namespace.name"), "tools");
    assert_eq!(text(resource, "deployment.environment.name"), "test");
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();

    let ok = span_of(&spans, "ok-1");
    assert_call_span(&ok, "echo", "allow", "allowed", "enforce");
    assert!(ok.parent_span_id.is_empty(), "a new trace: {ok:?}");
    assert!(double(&ok.attributes, "mcp_guard.upstream_ms") > 0.0);
    assert!(attr(&ok.attributes, "mcp_guard.rule_ids").is_none());
    assert_ne!(ok.status.as_ref().map_or(0, |s| s.code), STATUS_ERROR);

    let bl = span_of(&spans, "blocked-1");
    assert_call_span(&bl, "echo", "block", "blocked", "enforce");
    assert_eq!(hex(&bl.trace_id), TRACE_ID, "continues the caller's trace");
    assert_eq!(hex(&bl.parent_span_id), PARENT_ID);
    assert_eq!(bl.trace_state, "vendor=abc");
    assert_eq!(
        strings(&bl.attributes, "mcp_guard.rule_ids"),
        ["no-secrets-word"]
    );
    assert_eq!(text(&bl.attributes, "mcp_guard.rule"), "no-secrets-word");
    assert_eq!(text(&bl.attributes, "mcp_guard.detector"), "rules");
    assert!(double(&bl.attributes, "mcp_guard.risk") > 0.0);
    assert_eq!(text(&bl.attributes, "error.type"), "blocked");
    assert_eq!(bl.status.as_ref().unwrap().code, STATUS_ERROR);
    assert!(attr(&bl.attributes, "mcp_guard.upstream_ms").is_none());

    let ask = span_of(&spans, "ask-1");
    assert_call_span(&ask, "echo", "ask", "ask-fallback-blocked", "enforce");
    assert_eq!(ask.trace_id.len(), 16);
    assert_ne!(hex(&ask.trace_id), TRACE_ID);
    // One session, one hash, never the session's id.
    let session = text(&ok.attributes, "mcp_guard.session");
    assert_eq!(text(&bl.attributes, "mcp_guard.session"), session);
    assert!(!format!("{spans:?}").contains("stdio-"));

    // Log records: a WARN for the block, an INFO for the ask, none for the allowed call.
    let logs = receiver.got.wait("two log records", |r| {
        (r.logs.len() >= 2).then(|| r.logs.clone())
    });
    assert_eq!(logs.len(), 2, "{logs:#?}");
    assert_eq!(text(&logs[0].0, "service.name"), "mcp-guard-proxy");
    let log_of = |id: &str| {
        logs.iter()
            .map(|(_, l)| l)
            .find(|l| text(&l.attributes, "jsonrpc.request.id") == id)
            .unwrap_or_else(|| panic!("no log for {id}: {logs:#?}"))
            .clone()
    };
    let warn = log_of("blocked-1");
    assert_eq!(warn.severity_number, SEVERITY_WARN);
    assert_eq!(warn.severity_text, "WARN");
    assert_eq!(warn.event_name, "mcp_guard.tools_call");
    let body = match warn.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("body: {other:?}"),
    };
    let reason = blocked["error"]["message"].as_str().unwrap();
    assert!(
        !body.is_empty() && reason.ends_with(&body),
        "the body is the reason the client was given: {body:?} / {reason:?}"
    );
    assert!(!body.contains("TOP SECRET"), "never the matched value");
    assert_eq!(hex(&warn.trace_id), TRACE_ID);
    assert_eq!(warn.span_id, bl.span_id, "tied to the call's span");
    assert_eq!(text(&warn.attributes, "gen_ai.tool.name"), "echo");
    assert_eq!(text(&warn.attributes, "mcp_guard.rule"), "no-secrets-word");
    assert_eq!(text(&warn.attributes, "mcp_guard.outcome"), "blocked");
    assert_eq!(text(&warn.attributes, "mcp_guard.decision"), "block");
    assert_eq!(text(&warn.attributes, "mcp_guard.mode"), "enforce");
    assert_eq!(text(&warn.attributes, "mcp_guard.policy.name"), "otel-test");
    assert_eq!(text(&warn.attributes, "mcp_guard.session"), session);
    assert!(double(&warn.attributes, "mcp_guard.risk") > 0.0);
    let info = log_of("ask-1");
    assert_eq!(info.severity_number, SEVERITY_INFO);
    assert_eq!(text(&info.attributes, "mcp_guard.rule"), "ask-deploys");
    assert_eq!(
        text(&info.attributes, "mcp_guard.outcome"),
        "ask-fallback-blocked"
    );
    assert_eq!(info.span_id, ask.span_id);

    // OTEL_EXPORTER_OTLP_HEADERS travel with every export.
    let headers = receiver.got.0.lock().unwrap().headers.clone();
    assert!(!headers.is_empty() && headers.iter().all(|h| h == "42"));
    assert!(
        p.stderr().contains(&format!(
            "OpenTelemetry: traces to {} (grpc), logs to {} (grpc)",
            receiver.endpoint(),
            receiver.endpoint()
        )),
        "{}",
        p.stderr()
    );
    let (code, _p) = p.finish();
    assert_eq!(code, 0);
}

#[test]
fn audit_mode_would_blocks_are_logged_and_everything_is_flushed_at_exit() {
    let receiver = GrpcReceiver::start();
    // Default batching (spans every 5 s): what arrives after a quick exit was flushed by shutdown.
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())];
    let mut p = stdio_proxy(&policy("  mode: audit\n"), &[], &env);
    p.initialize();
    let forwarded = call_with_meta(&mut p, "audit-1", "TOP SECRET plans", json!({}));
    assert_eq!(
        forwarded["result"]["content"][0]["text"],
        "Echo: TOP SECRET plans"
    );
    let started = Instant::now();
    let (code, p) = p.finish();
    assert_eq!(code, 0, "{}", p.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
    let spans = receiver.got.spans();
    assert_eq!(spans.len(), 1, "flushed at exit: {spans:#?}");
    let span = &spans[0];
    assert_call_span(span, "echo", "block", "audit-would-block", "audit");
    assert_ne!(span.status.as_ref().map_or(0, |s| s.code), STATUS_ERROR);
    let logs = receiver.got.logs_now();
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_eq!(logs[0].severity_number, SEVERITY_WARN);
    assert_eq!(
        text(&logs[0].attributes, "mcp_guard.outcome"),
        "audit-would-block"
    );
    assert_eq!(logs[0].trace_id, span.trace_id);
    assert_eq!(logs[0].span_id, span.span_id);
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_answers_are_unchanged() {
    let receiver = GrpcReceiver::start();
    let session = |p: &mut Peer| -> Vec<Value> {
        let mut out = vec![p.initialize()];
        out.push(call_with_meta(p, "a", "hello", json!({})));
        out.push(call_with_meta(
            p,
            "b",
            "top secret",
            json!({"traceparent": format!("00-{TRACE_ID}-{PARENT_ID}-01")}),
        ));
        out.push(call_with_meta(p, "c", "deploy", json!({})));
        out
    };
    // Settings that name no endpoint: off.
    let off_env = [
        ("OTEL_SERVICE_NAME", "guard".to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-mcp-guard-test=1".into()),
    ];
    let mut off = stdio_proxy(&policy(""), &[], &off_env);
    let a = session(&mut off);
    let mut on = stdio_proxy(
        &policy(""),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
    );
    let b = session(&mut on);
    assert_eq!(a, b, "exporting changes no answer");
    assert_blocked(&a[2], "no-secrets-word");
    let (code, off) = off.finish();
    assert_eq!(code, 0);
    assert!(!off.stderr().contains("OpenTelemetry"), "{}", off.stderr());
    let audit = off.audit();
    assert_eq!(
        audit.iter().filter(|r| r["type"] == "tools/call").count(),
        3
    );
    let (_, on) = on.finish();
    assert!(on.stderr().contains("OpenTelemetry: traces to"));
    // Only the proxy that was told the endpoint exported (and with no header it was not given).
    let got = receiver.got.0.lock().unwrap();
    assert_eq!(got.spans.len(), 3);
    assert!(got.headers.is_empty());
}

#[test]
fn bad_settings_stop_the_proxy_at_startup() {
    for (var, value, expect) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), policy("")).unwrap();
        let mut c = clean(proxy_bin());
        c.arg("--policy")
            .arg(dir.path().join("p.yaml"))
            .arg("--")
            .args(everything());
        if var != "OTEL_EXPORTER_OTLP_ENDPOINT" {
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1");
        }
        let out = c.env(var, value).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{stderr}");
    }
}

#[test]
fn http_protobuf_export() {
    let receiver = HttpReceiver::start();
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-mcp-guard-test=7".into()),
    ];
    let mut p = stdio_proxy(&policy(""), &[], &env);
    p.initialize();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let blocked = call_with_meta(
        &mut p,
        "b-1",
        "top secret",
        json!({"traceparent": traceparent}),
    );
    assert_blocked(&blocked, "no-secrets-word");
    let (code, p) = p.finish();
    assert_eq!(code, 0, "{}", p.stderr());
    assert!(p.stderr().contains("(http/protobuf)"), "{}", p.stderr());
    let spans = receiver.got.spans();
    assert_eq!(spans.len(), 1);
    assert_call_span(&spans[0], "echo", "block", "blocked", "enforce");
    assert_eq!(hex(&spans[0].trace_id), TRACE_ID);
    let logs = receiver.got.logs_now();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].span_id, spans[0].span_id);
    let mut paths = receiver.paths.lock().unwrap().clone();
    paths.sort();
    paths.dedup();
    assert_eq!(paths, ["/v1/logs", "/v1/traces"]);
    let headers = receiver.got.0.lock().unwrap().headers.clone();
    assert!(!headers.is_empty() && headers.iter().all(|h| h == "7"));
}

// === Streamable HTTP ===

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(cmd: &mut Command, port: u16) -> Proc {
    let mut child = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "exited before listening on {port}"
        );
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(25));
    }
    child
}

/// One POST to `/mcp` (`Connection: close`); the session id answered and the JSON-RPC messages of
/// the body (JSON, or SSE `data:` lines; chunked or not).
fn post(
    port: u16,
    session: Option<&str>,
    extra: &[(&str, &str)],
    msg: &Value,
) -> (Option<String>, Vec<Value>) {
    let body = msg.to_string();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = session {
        head += &format!("Mcp-Session-Id: {s}\r\n");
    }
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.write_all(format!("{head}\r\n{body}").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (headers, mut payload) = raw.split_once("\r\n\r\n").unwrap();
    let headers = headers.to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 2"), "{raw}");
    let header = |name: &str| {
        headers
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let session_id = raw.lines().find_map(|l| {
        l.split_once(": ")
            .filter(|(k, _)| k.eq_ignore_ascii_case("mcp-session-id"))
            .map(|(_, v)| v.to_owned())
    });
    let mut dechunked = String::new();
    if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let (size, rest) = payload.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            dechunked += &rest[..size];
            payload = &rest[size + 2..];
        }
        payload = &dechunked;
    }
    let messages = if header("content-type").is_some_and(|c| c.starts_with("text/event-stream")) {
        payload
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect()
    } else if payload.trim().is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(payload).unwrap()]
    };
    (session_id, messages)
}

#[test]
fn streamable_http_continues_the_traceparent_header() {
    let receiver = GrpcReceiver::start();
    let server_port = free_port();
    let _server = listening(
        clean(npm_bin("mcp-server-everything").to_str().unwrap())
            .arg("streamableHttp")
            .env("PORT", server_port.to_string()),
        server_port,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy("")).unwrap();
    let port = free_port();
    let _proxy = listening(
        clean(proxy_bin())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(format!("http://127.0.0.1:{server_port}/mcp"))
            .arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
            .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        port,
    );
    let (session, init) = post(
        port,
        None,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "otel-test", "version": "1"}}}),
    );
    let session = session.expect("a session id");
    assert!(init[0]["result"].is_object(), "{init:?}");
    post(
        port,
        Some(&session),
        &[],
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );

    let header = format!("00-{HTTP_TRACE_ID}-{HTTP_PARENT_ID}-01");
    let trace_headers = [
        ("traceparent", header.as_str()),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    let call = |id: &str, message: &str, meta: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": message}, "_meta": meta}})
    };
    let (_, allowed) = post(
        port,
        Some(&session),
        &trace_headers,
        &call("h-ok", "hi", json!({})),
    );
    assert_eq!(
        allowed[0]["result"]["content"][0]["text"], "Echo: hi",
        "{allowed:?}"
    );
    let (_, blocked) = post(
        port,
        Some(&session),
        &trace_headers,
        &call("h-blocked", "top secret", json!({})),
    );
    assert_blocked(&blocked[0], "no-secrets-word");
    // `_meta.traceparent` is the call's own and wins over the request's header.
    let own = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (_, both) = post(
        port,
        Some(&session),
        &trace_headers,
        &call("h-meta", "hello", json!({"traceparent": own})),
    );
    assert!(both[0]["result"].is_object());
    // No header, no _meta: a trace of its own.
    let (_, alone) = post(
        port,
        Some(&session),
        &[],
        &call("h-alone", "hello", json!({})),
    );
    assert!(alone[0]["result"].is_object());

    let spans = receiver.got.wait("four spans", |r| {
        (r.spans.len() >= 4).then(|| r.spans.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>())
    });
    for (id, decision, outcome) in [
        ("h-ok", "allow", "allowed"),
        ("h-blocked", "block", "blocked"),
    ] {
        let span = span_of(&spans, id);
        assert_call_span(&span, "echo", decision, outcome, "enforce");
        assert_eq!(hex(&span.trace_id), HTTP_TRACE_ID, "{id}");
        assert_eq!(hex(&span.parent_span_id), HTTP_PARENT_ID, "{id}");
        assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
    }
    let meta = span_of(&spans, "h-meta");
    assert_eq!(hex(&meta.trace_id), TRACE_ID);
    assert_eq!(hex(&meta.parent_span_id), PARENT_ID);
    let alone = span_of(&spans, "h-alone");
    assert!(alone.parent_span_id.is_empty());
    assert_ne!(hex(&alone.trace_id), HTTP_TRACE_ID);
    // The Mcp-Session-Id (a bearer of the session) is never exported, only its hash.
    assert!(!format!("{spans:?}").contains(&session));
    assert_eq!(
        text(&span_of(&spans, "h-ok").attributes, "mcp_guard.session"),
        {
            use sha2::Digest;
            hex(&sha2::Sha256::digest(session.as_bytes())[..8])
        }
    );

    let logs = receiver.got.wait("the block's log record", |r| {
        (!r.logs.is_empty()).then(|| r.logs.clone())
    });
    let (_, warn) = &logs[0];
    assert_eq!(warn.severity_number, SEVERITY_WARN);
    // OTEL_EXPORTER_OTLP_COMPRESSION=gzip
    let encodings = receiver.got.0.lock().unwrap().encodings.clone();
    assert!(
        !encodings.is_empty() && encodings.iter().all(|e| e == "gzip"),
        "{encodings:?}"
    );
    assert_eq!(hex(&warn.trace_id), HTTP_TRACE_ID);
    assert_eq!(warn.span_id, span_of(&spans, "h-blocked").span_id);
}
