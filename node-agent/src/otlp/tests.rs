#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue as ProtoValue, KeyValue as ProtoKv};
use tokio::sync::mpsc;

use super::*;

/// An OTLP/gRPC logs receiver: hands each request (and its `authorization` metadata) to the test.
struct Receiver(mpsc::UnboundedSender<(Option<String>, ExportLogsServiceRequest)>);

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = self.0.send((auth, request.into_inner()));
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(v: &Option<ProtoValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[ProtoKv]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn connect_event() -> KernelEvent {
    KernelEvent {
        kind: EventKind::Connect,
        verdict: Verdict::Denied,
        cgroup_id: 4242,
        guard_cgroup_id: 4200,
        slot: 3,
        pid: 77,
        comm: "curl".to_owned(),
        path: None,
        inode: None,
        addr: Some("169.254.169.254".parse::<IpAddr>().unwrap()),
        port: Some(80),
    }
}

fn file_event() -> KernelEvent {
    KernelEvent {
        kind: EventKind::FileOpen,
        verdict: Verdict::Denied,
        cgroup_id: 4242,
        guard_cgroup_id: 4200,
        slot: 3,
        pid: 78,
        comm: "cat".to_owned(),
        path: Some("/var/run/secrets/kubernetes.io/serviceaccount/token".to_owned()),
        inode: Some((52, 9)),
        addr: None,
        port: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_at_an_otlp_receiver_with_their_attributes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let config = OtlpConfig {
        endpoint: format!("http://{addr}"),
        headers: vec![("authorization".to_owned(), "Bearer t0ken".to_owned())],
        service_name: "mcp-guard-agent".to_owned(),
        node_name: Some("node-1".to_owned()),
    };
    let exporter = Arc::new(EventExporter::new(&config).unwrap());
    let metrics = Arc::new(Metrics::new());
    let sink = EventSink::new(metrics.clone(), Some(exporter.clone()));
    let owner = Owner {
        namespace: Some("tools".to_owned()),
        pod: Some("fs-server-0".to_owned()),
        container: Some("server".to_owned()),
        policy: Some("filesystem-readonly".to_owned()),
    };
    sink.deliver(&connect_event(), Some(&owner));
    sink.deliver(&file_event(), Some(&owner));
    let flusher = exporter.clone();
    tokio::task::spawn_blocking(move || flusher.flush())
        .await
        .unwrap()
        .unwrap();

    let mut records = Vec::new();
    let mut auth_seen = None;
    let mut resource = BTreeMap::new();
    while records.len() < 2 {
        let (auth, req) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the receiver got the logs")
            .unwrap();
        auth_seen = auth;
        for rl in req.resource_logs {
            if let Some(r) = &rl.resource {
                resource = attrs(&r.attributes);
            }
            for sl in rl.scope_logs {
                records.extend(sl.log_records);
            }
        }
    }
    assert_eq!(auth_seen.as_deref(), Some("Bearer t0ken"));
    assert_eq!(resource["service.name"], "mcp-guard-agent");
    assert_eq!(resource["k8s.node.name"], "node-1");

    let connect = &records[0];
    assert_eq!(connect.event_name, "mcpguard.kernel_event");
    assert_eq!(connect.severity_text, "WARN");
    assert_eq!(
        text(&connect.body),
        "connect 169.254.169.254:80 denied (curl[77])"
    );
    let a = attrs(&connect.attributes);
    for (k, v) in [
        ("k8s.namespace.name", "tools"),
        ("k8s.pod.name", "fs-server-0"),
        ("k8s.container.name", "server"),
        ("mcpguard.policy", "filesystem-readonly"),
        ("mcpguard.kind", "connect"),
        ("mcpguard.verdict", "denied"),
        ("mcpguard.slot", "3"),
        ("mcpguard.cgroup_id", "4242"),
        ("mcpguard.guard_cgroup_id", "4200"),
        ("process.pid", "77"),
        ("process.command", "curl"),
        ("network.peer.address", "169.254.169.254"),
        ("network.peer.port", "80"),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k} in {a:?}");
    }
    assert!(!a.contains_key("file.path"));

    let file = attrs(&records[1].attributes);
    assert_eq!(file["mcpguard.kind"], "file_open");
    assert_eq!(
        file["file.path"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(file["file.inode"], "52:9");

    let text = metrics.encode();
    assert!(
        text.contains("mcp_guard_agent_events_total{kind=\"connect\",verdict=\"denied\"} 1"),
        "{text}"
    );
    let stopper = exporter.clone();
    tokio::task::spawn_blocking(move || stopper.shutdown())
        .await
        .unwrap()
        .unwrap();
    server.abort();
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn config_comes_from_the_standard_variables() {
    assert_eq!(
        OtlpConfig::from_vars(vars(&[])).unwrap(),
        None,
        "off by default"
    );
    assert_eq!(
        OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true")
        ]))
        .unwrap(),
        None
    );
    let c = OtlpConfig::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Basic%20abc, x-tenant = a",
        ),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(c.endpoint, "http://logs:4317", "the signal's variable wins");
    assert_eq!(
        c.headers,
        vec![
            ("authorization".to_owned(), "Basic abc".to_owned()),
            ("x-tenant".to_owned(), "a".to_owned())
        ]
    );
    assert_eq!(c.service_name, "mcp-guard-agent");
    let err = OtlpConfig::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ]))
    .unwrap_err();
    assert!(err.contains("http/protobuf"), "{err}");
    assert!(
        OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ]))
        .is_err()
    );
}

#[test]
fn summaries_read_well() {
    assert_eq!(
        summary(&file_event()),
        "file_open /var/run/secrets/kubernetes.io/serviceaccount/token denied (cat[78])"
    );
    let bind = KernelEvent {
        kind: EventKind::Bind,
        verdict: Verdict::Rewritten,
        addr: Some("::".parse().unwrap()),
        port: Some(8080),
        ..connect_event()
    };
    assert_eq!(summary(&bind), "bind [::]:8080 rewritten (curl[77])");
    let exec = KernelEvent {
        kind: EventKind::Exec,
        path: None,
        inode: Some((1, 2)),
        ..file_event()
    };
    assert_eq!(summary(&exec), "exec inode 1:2 denied (cat[78])");
}
