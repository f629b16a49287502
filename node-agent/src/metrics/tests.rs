#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[test]
fn counts_appear_with_their_labels() {
    let m = Metrics::new();
    m.set_capability("bpf_lsm", false);
    m.set_capability("cgroup_sock_addr", true);
    m.event(EventKind::Connect, Verdict::Denied);
    m.event(EventKind::Connect, Verdict::Denied);
    m.event(EventKind::Bind, Verdict::Rewritten);
    m.set_guarded_cgroups(3);
    m.set_policies(2);
    m.set_pods(2);
    m.set_pending_pods(1);
    m.late_pod();
    m.set_pending_containers(1);
    m.set_skipped_paths(4);
    m.map_update_error("guard");
    m.policy_error("invalid");
    m.set_older_program("cgroup/bind4", true);
    m.set_older_program("lsm/file_open", false);
    m.set_pods_beyond_levels(1);
    let text = m.encode();
    for needle in [
        "mcp_guard_agent_capability{feature=\"bpf_lsm\"} 0",
        "mcp_guard_agent_capability{feature=\"cgroup_sock_addr\"} 1",
        "mcp_guard_agent_events_total{kind=\"connect\",verdict=\"denied\"} 2",
        "mcp_guard_agent_events_total{kind=\"bind\",verdict=\"rewritten\"} 1",
        "mcp_guard_agent_guarded_cgroups 3",
        "mcp_guard_agent_policies 2",
        "mcp_guard_agent_guarded_pods 2",
        "mcp_guard_agent_pending_pods 1",
        "mcp_guard_agent_late_pods_total 1",
        "mcp_guard_agent_pending_containers 1",
        "mcp_guard_agent_skipped_paths 4",
        "mcp_guard_agent_map_update_errors_total{op=\"guard\"} 1",
        "mcp_guard_agent_policy_errors_total{reason=\"invalid\"} 1",
        "mcp_guard_agent_older_programs{hook=\"cgroup/bind4\"} 1",
        "mcp_guard_agent_older_programs{hook=\"lsm/file_open\"} 0",
        "mcp_guard_agent_pods_beyond_levels 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_health_and_readiness() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    metrics.event(EventKind::Exec, Verdict::Denied);
    let server = tokio::spawn(serve(listener, metrics.clone()));

    let body = get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("application/openmetrics-text"), "{body}");
    assert!(
        body.contains("mcp_guard_agent_events_total{kind=\"exec\",verdict=\"denied\"} 1"),
        "{body}"
    );
    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
    metrics.set_ready(true);
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    server.abort();
}
