//! Steps 3, 4 and 5: injected servers, calls through the proxy, a policy edit.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mcp_guard_e2e::cluster::{container_names, eventually, metric_sum, name, pod_ready, restarts};
use mcp_guard_e2e::{http_get, mcp};
use serde_json::{Value, json};

use super::*;
use crate::world::*;

// ---- 3 ------------------------------------------------------------------------------------------

fn server_deployment(w: &World, app: &str, annotations: Value, container: Value) -> Result<Value> {
    let mut c = container;
    c["name"] = json!("server");
    c["image"] = json!(w.server_image()?);
    c["imagePullPolicy"] = json!(w.pull_policy());
    c["securityContext"] = json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false,
                                  "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}});
    Ok(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}, "annotations": annotations},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [c]}
            }
        }
    }))
}

pub(super) fn s3_servers(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    let everything = "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js";
    let deployments = [
        server_deployment(
            w,
            "everything-http",
            json!({"mcpguard.io/inject": "true", "mcpguard.io/policy": POLICY}),
            json!({"args": ["streamableHttp"],
                   "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]}),
        )?,
        server_deployment(
            w,
            "everything-stdio",
            json!({"mcpguard.io/inject": "true", "mcpguard.io/policy": POLICY,
                   "mcpguard.io/transport": "stdio", "mcpguard.io/port": STDIO_PORT.to_string()}),
            json!({"command": ["/usr/local/bin/node", everything], "args": ["stdio"],
                   "ports": [{"name": "mcp", "containerPort": STDIO_PORT, "protocol": "TCP"}]}),
        )?,
        server_deployment(
            w,
            "everything-plain",
            json!({}),
            json!({"args": ["streamableHttp"],
                   "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]}),
        )?,
    ];
    let list = json!({"apiVersion": "v1", "kind": "List", "items": deployments});
    k.apply(&list.to_string(), "mcp-guard-e2e")?;
    for app in ["everything-http", "everything-stdio", "everything-plain"] {
        eventually(&format!("{app} Running and ready"), 3 * MINUTE, || {
            let pod = w.pod(NS, app)?;
            ensure!(
                pod_ready(&pod),
                "{} not ready: {}",
                name(&pod),
                pod["status"]
            );
            Ok(())
        })?;
    }
    let http = w.pod(NS, "everything-http")?;
    ensure!(
        container_names(&http) == ["server", PROXY_CONTAINER],
        "HTTP pod containers: {:?}",
        container_names(&http)
    );
    let guarded = &http["metadata"]["labels"]["mcpguard.io/guarded"];
    ensure!(guarded == "true", "HTTP pod not labelled guarded");
    ensure!(
        http["metadata"]["annotations"]["mcpguard.io/injected"].is_string(),
        "HTTP pod not annotated injected"
    );
    let env = &http["spec"]["containers"][0]["env"];
    ensure!(
        env.as_array()
            .is_some_and(|e| e.iter().any(|v| v["name"] == "PORT"
                && v["value"].as_str().and_then(|p| p.parse().ok()) == Some(HTTP_SERVER_PORT))),
        "the server was not moved to {HTTP_SERVER_PORT}: env {env}"
    );

    let stdio = w.pod(NS, "everything-stdio")?;
    let init: Vec<&str> = stdio["spec"]["initContainers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        init == ["mcp-guard-install"],
        "stdio pod init containers: {init:?}"
    );
    let command = &stdio["spec"]["containers"][0]["command"];
    ensure!(
        command[0] == "/mcp-guard/bin/mcp-guard-proxy",
        "stdio server not wrapped: {command}"
    );

    let plain = w.pod(NS, "everything-plain")?;
    ensure!(container_names(&plain) == ["server"], "plain pod changed");
    let touched = plain["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| a.keys().any(|k| k.starts_with("mcpguard.io/")));
    ensure!(!touched, "plain pod carries mcpguard.io annotations");
    eventually("the policy counts 2 guarded pods", MINUTE, || {
        let p = k.json(&["get", "mcpguardpolicy", "-n", NS, POLICY])?;
        ensure!(p["status"]["guardedPods"] == 2, "status {}", p["status"]);
        Ok(())
    })?;
    Ok(())
}

// ---- 4 ------------------------------------------------------------------------------------------

const ALLOWED: &str = "hello from the e2e scenario";
const METADATA: &str = "fetch http://169.254.169.254/latest/meta-data/iam please";

/// An allowed echo comes back; a call naming the metadata service is blocked by the library rule.
fn allowed_and_blocked(session: &mut mcp::Session) -> Result<()> {
    let ok = session.call_tool("echo", json!({"message": ALLOWED}))?;
    ensure!(
        mcp::result_text(&ok).contains(ALLOWED),
        "allowed call did not come back: {ok}"
    );
    let blocked = session.call_tool("echo", json!({"message": METADATA}))?;
    let message = blocked["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(&format!("blocked by mcp-guard policy {POLICY}"))
            && blocked["error"]["data"]
                .to_string()
                .contains("block-metadata-endpoints"),
        "not blocked by the library rule: {blocked}"
    );
    // A credential in an argument is blocked and redacted everywhere (the answer, the audit log).
    let leak = session.call_tool(
        "echo",
        json!({"message": format!("my token is {}", token())}),
    )?;
    ensure!(
        leak["error"]["data"]["detector"] == "credentialLeak",
        "credential not blocked: {leak}"
    );
    ensure!(
        !leak.to_string().contains(&token()),
        "the refusal echoes the credential"
    );
    Ok(())
}

/// A GitHub-token-shaped credential (made up; built here so that secret scanners skip the source).
fn token() -> String {
    format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
}

/// The audit records (JSON lines with a hash chain) in a container's log.
fn audit_records(w: &World, pod: &Value, container: &str) -> Result<Vec<Value>> {
    let log = w
        .kubectl
        .run(&["logs", "-n", NS, name(pod), "-c", container])?;
    Ok(log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("prev").is_some())
        .collect())
}

pub(super) fn s4_calls(w: &mut World) -> Result<()> {
    for (app, port, audit_container) in [
        ("everything-http", HTTP_PORT, PROXY_CONTAINER),
        ("everything-stdio", STDIO_PORT, "server"),
    ] {
        let pod = w.pod(NS, app)?;
        let addr = w.reach(&pod, port)?;
        let mut session = mcp::Session::connect(&addr, "/mcp")
            .with_context(|| format!("MCP session with {app} at {addr}"))?;
        allowed_and_blocked(&mut session).with_context(|| app.to_owned())?;

        let metrics_addr = w.reach(&pod, PROXY_METRICS_PORT)?;
        let (code, text) = http_get(&metrics_addr, "/metrics", Duration::from_secs(5))?;
        ensure!(code == 200, "{app} metrics: HTTP {code}");
        let calls = |decision| {
            metric_sum(
                &text,
                "mcp_guard_tool_calls_total",
                &[("tool", "echo"), ("decision", decision)],
            )
        };
        ensure!(
            calls("allow") >= 1.0 && calls("block") >= 1.0,
            "{app} metrics: allow {} block {}",
            calls("allow"),
            calls("block")
        );

        let records = eventually(&format!("{app}: audit records in the log"), MINUTE, || {
            let records = audit_records(w, &pod, audit_container)?;
            let has = |d: &str| {
                records
                    .iter()
                    .any(|r| r["tool"] == "echo" && r["decision"] == d)
            };
            ensure!(has("allow") && has("block"), "{} records", records.len());
            Ok(records)
        })?;
        ensure!(
            !records.iter().any(|r| r.to_string().contains(&token())),
            "{app}: the audit log holds the credential"
        );
        ensure!(
            records
                .iter()
                .any(|r| r.to_string().contains("credentialLeak")),
            "{app}: no audit record of the credential leak"
        );
    }
    Ok(())
}

// ---- 5 ------------------------------------------------------------------------------------------

const EDITED: &str = "please DROP TABLE customers";

pub(super) fn s5_edit(w: &mut World) -> Result<()> {
    let pod = w.pod(NS, "everything-http")?;
    let before = restarts(&pod, PROXY_CONTAINER);
    let addr = w.reach(&pod, HTTP_PORT)?;
    let mut session = mcp::Session::connect(&addr, "/mcp")?;
    let first = session.call_tool("echo", json!({"message": EDITED}))?;
    ensure!(
        first.get("result").is_some(),
        "allowed before the edit: {first}"
    );

    let mut policy = library_policy()?;
    let rules = policy["spec"]["rules"]
        .as_array_mut()
        .context("library policy without rules")?;
    rules.push(json!({
        "id": "e2e-no-sql-drop", "action": "block",
        "args": [{"anyString": true, "regex": "(?i)\\bdrop\\s+table\\b"}],
        "description": "added by the e2e scenario"
    }));
    apply_policy(w, &policy)?;
    // The kubelet refreshes the mounted ConfigMap on its sync period (1 min by default), the proxy
    // polls the file: allow two periods.
    let blocked = eventually("the running proxy applies the edit", 3 * MINUTE, || {
        let r = session.call_tool("echo", json!({"message": EDITED}))?;
        ensure!(r.get("error").is_some(), "still allowed");
        Ok(r)
    })?;
    ensure!(
        blocked["error"]["data"]
            .to_string()
            .contains("e2e-no-sql-drop"),
        "blocked by another rule: {blocked}"
    );
    let after = w.pod(NS, "everything-http")?;
    ensure!(
        after["metadata"]["uid"] == pod["metadata"]["uid"]
            && restarts(&after, PROXY_CONTAINER) == before,
        "the proxy restarted or the pod was replaced"
    );
    // Same session, other calls unaffected.
    allowed_and_blocked(&mut session)
}
