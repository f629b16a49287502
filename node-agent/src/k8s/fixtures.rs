//! Pods as the webhook leaves them, for the tests of `k8s`.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::pod::PROXY_CONTAINER;

pub(crate) const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
pub(crate) const SERVER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub(crate) const PROXY: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub(crate) const SIDECAR: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
pub(crate) const DEBUG: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
/// The image the operator injects (the agent's `--proxy-image`).
pub(crate) const PROXY_IMAGE: &str = "ghcr.io/mcp-guard/mcp-guard-proxy:1";

/// The proxy's flags as the webhook writes them (`mcp_guard_operator::inject::common::proxy_args`),
/// up to a stdio server's `--`.
pub(crate) fn proxy_args(listen: u16, upstream: Option<u16>, metrics: u16) -> Vec<String> {
    let mut args = vec![
        "--policy".to_owned(),
        "/etc/mcp-guard/policy/policy.json".to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{listen}"),
    ];
    if let Some(upstream) = upstream {
        args.extend([
            "--upstream".to_owned(),
            format!("http://127.0.0.1:{upstream}"),
        ]);
    }
    args.extend(
        [
            "--metrics",
            &format!("0.0.0.0:{metrics}"),
            "--log",
            "/dev/stdout",
        ]
        .map(str::to_owned),
    );
    args
}

/// The containers of an `http` pod after injection (docs/injection.md): the server, told to move to
/// port 18080, and the proxy container on 8080, metrics on 9464.
pub(crate) fn http_containers() -> serde_json::Value {
    json!([
        {"name": "server", "image": "server:1", "env": [{"name": "PORT", "value": "18080"}],
         "ports": [{"name": "mcp-server", "containerPort": 18080}]},
        {"name": PROXY_CONTAINER, "image": PROXY_IMAGE,
         "args": proxy_args(8080, Some(18080), 9464),
         "ports": [{"name": "http", "containerPort": 8080},
                   {"name": "guard-metrics", "containerPort": 9464}]},
    ])
}

/// The spec of a `stdio` pod after injection (`mcp_guard_operator::inject::stdio`): the install
/// init container copies the proxy from its image into the `mcp-guard-bin` emptyDir, which the
/// server container mounts read-only at `/mcp-guard/bin`; the server container runs the proxy,
/// which runs the server's command after `--`.
pub(crate) fn stdio_spec() -> serde_json::Value {
    let mut command = vec!["/mcp-guard/bin/mcp-guard-proxy".to_owned()];
    command.extend(proxy_args(8080, None, 9464));
    command
        .extend(["--", "npx", "server-everything", "--listen", "0.0.0.0:7000"].map(str::to_owned));
    json!({
        "containers": [{"name": "server", "image": "node:22", "command": command,
            "ports": [{"name": "mcp", "containerPort": 8080},
                      {"name": "guard-metrics", "containerPort": 9464}],
            "volumeMounts": [
                {"name": "mcp-guard-bin", "mountPath": "/mcp-guard/bin", "readOnly": true},
                {"name": "mcp-guard-policy", "mountPath": "/etc/mcp-guard/policy", "readOnly": true}]}],
        "initContainers": [{"name": "mcp-guard-install", "image": PROXY_IMAGE,
            "command": ["/usr/local/bin/mcp-guard-proxy", "--install-to", "/mcp-guard/bin"],
            "volumeMounts": [{"name": "mcp-guard-bin", "mountPath": "/mcp-guard/bin"}]}],
        "volumes": [
            {"name": "mcp-guard-policy", "configMap": {"name": "mcp-guard-policy-x"}},
            {"name": "mcp-guard-bin", "emptyDir": {}}],
    })
}

/// A pod of these containers (every other spec field empty).
pub(crate) fn pod_with(
    name: &str,
    policy: Option<&str>,
    spec_containers: serde_json::Value,
    statuses: Option<serde_json::Value>,
) -> Pod {
    pod_with_spec(
        name,
        policy,
        json!({"containers": spec_containers}),
        statuses,
    )
}

/// A pod of this spec, on `node-1`.
pub(crate) fn pod_with_spec(
    name: &str,
    policy: Option<&str>,
    mut spec: serde_json::Value,
    statuses: Option<serde_json::Value>,
) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(p) = policy {
        annotations.insert("mcpguard.io/policy".into(), json!(p));
    }
    spec["nodeName"] = json!("node-1");
    let mut status = json!({"phase": "Pending", "qosClass": "Burstable"});
    if let Some(statuses) = statuses {
        status["phase"] = json!("Running");
        status["containerStatuses"] = statuses;
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "tools", "uid": UID,
                     "labels": {"mcpguard.io/guarded": "true"}, "annotations": annotations},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

pub(crate) fn pod(name: &str, policy: Option<&str>, containers: serde_json::Value) -> Pod {
    pod_with(name, policy, http_containers(), Some(containers))
}

pub(crate) fn running(name: &str, id: &str) -> serde_json::Value {
    json!({"name": name, "containerID": id, "ready": true, "restartCount": 0, "image": "i",
           "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
}
