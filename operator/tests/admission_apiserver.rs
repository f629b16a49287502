//! The pod-mutating webhook called by a real kube-apiserver over TLS: pods created with kubectl come
//! back with the sidecar (HTTP transport) or the wrapped command (stdio transport); pods without
//! opt-in are untouched; a pod naming a missing policy, or an invalid annotation, is refused with a
//! message that says what to fix.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

mod common;

use anyhow::Result;
use common::{Operator, cluster, create_namespace, kubectl, kubectl_ok};
use mcp_guard_e2e::workspace_root;
use serde_json::Value;

const NS: &str = "mcp";

fn pod(name: &str, annotations: &str, container: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  containers:
{container}
"#
    )
}

const HTTP_SERVER: &str = r#"
    - name: server
      image: example.test/everything:1
      args: ["streamableHttp"]
      ports: [{name: http, containerPort: 3001}]
      readinessProbe: {tcpSocket: {port: http}}
"#;

const STDIO_SERVER: &str = r#"
    - name: server
      image: example.test/filesystem:1
      command: ["node", "/app/dist/index.js", "/data"]
"#;

/// Creates a pod with kubectl; returns the object as the API server stored it.
fn create(api: &mcp_guard_e2e::apiserver::ApiServer, manifest: &str) -> Result<Value> {
    let out = kubectl_ok(
        api,
        &["create", "-n", NS, "-o", "json", "-f", "-"],
        Some(manifest),
    )?;
    Ok(serde_json::from_str(&out)?)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

async fn setup() -> Result<(mcp_guard_e2e::apiserver::ApiServer, Operator)> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    create_namespace(&client, "auto", &[("mcpguard.io/injection", "enabled")]).await?;
    let op = Operator::start(&api, "op-1", &[])?;
    let file = workspace_root().join("policies/library/filesystem-readonly.yaml");
    for ns in [NS, "auto"] {
        kubectl_ok(
            &api,
            &["apply", "-n", ns, "-f", file.to_str().unwrap()],
            None,
        )?;
    }
    Ok((api, op))
}

#[tokio::test]
async fn annotated_pods_come_back_injected_for_both_transports() -> Result<()> {
    let (api, op) = setup().await?;

    // HTTP: the proxy takes over the Service's port, the server moves to a loopback port.
    let http = create(
        &api,
        &pod(
            "http-server",
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": filesystem-readonly, "mcpguard.io/port": http"#,
            HTTP_SERVER,
        ),
    )?;
    let meta = &http["metadata"];
    assert_eq!(meta["labels"]["mcpguard.io/guarded"], "true");
    assert_eq!(
        meta["annotations"]["mcpguard.io/injected"],
        env!("CARGO_PKG_VERSION")
    );
    let containers = &http["spec"]["containers"];
    assert_eq!(
        names(containers),
        ["server", "mcp-guard-proxy"],
        "{containers}"
    );
    let proxy = &containers[1];
    assert_eq!(proxy["image"], "example.test/mcp-guard-proxy:test");
    let ports = proxy["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "http" && p["containerPort"] == 3001),
        "{ports:?}"
    );
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--listen", "0.0.0.0:3001"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--upstream", "http://127.0.0.1:13001"]),
        "{args:?}"
    );
    let sc = &proxy["securityContext"];
    assert_eq!(
        (
            sc["runAsNonRoot"].as_bool(),
            sc["readOnlyRootFilesystem"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let server = &containers[0];
    assert_eq!(server["ports"][0]["containerPort"], 13001, "{server}");
    assert!(
        server["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "PORT" && e["value"] == "13001")
    );
    assert_eq!(
        server["readinessProbe"]["tcpSocket"]["port"], 3001,
        "the probe goes to the proxy's port (by number), reachable when the server is confined"
    );
    let volumes = &http["spec"]["volumes"];
    let policy_volume = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "mcp-guard-policy")
        .unwrap();
    assert_eq!(
        policy_volume["configMap"]["name"],
        "mcp-guard-policy-filesystem-readonly"
    );

    // stdio: the server's own command is wrapped by the proxy, copied in by an init container.
    let stdio = create(
        &api,
        &pod(
            "stdio-server",
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": filesystem-readonly, "mcpguard.io/transport": stdio"#,
            STDIO_SERVER,
        ),
    )?;
    assert_eq!(
        names(&stdio["spec"]["initContainers"]),
        ["mcp-guard-install"]
    );
    let server = &stdio["spec"]["containers"][0];
    let command: Vec<&str> = server["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[0], "/mcp-guard/bin/mcp-guard-proxy");
    let dashdash = command.iter().position(|a| *a == "--").unwrap();
    assert_eq!(
        &command[dashdash + 1..],
        ["node", "/app/dist/index.js", "/data"]
    );
    assert!(
        command
            .windows(2)
            .any(|w| w == ["--listen", "0.0.0.0:8080"]),
        "{command:?}"
    );
    assert_eq!(stdio["metadata"]["labels"]["mcpguard.io/guarded"], "true");

    // A namespace labelled for injection needs no pod annotation.
    let auto = kubectl_ok(
        &api,
        &["create", "-n", "auto", "-o", "json", "-f", "-"],
        Some(&pod(
            "auto",
            r#""mcpguard.io/policy": filesystem-readonly"#,
            HTTP_SERVER,
        )),
    )?;
    let auto: Value = serde_json::from_str(&auto)?;
    assert_eq!(
        names(&auto["spec"]["containers"]),
        ["server", "mcp-guard-proxy"]
    );

    assert!(
        op.metric(
            "mcp_guard_operator_admissions_total{webhook=\"mutate-pods\",result=\"mutated\"}"
        ) >= 3.0
    );
    Ok(())
}

#[tokio::test]
async fn pods_without_opt_in_are_untouched_and_bad_ones_refused() -> Result<()> {
    let (api, op) = setup().await?;

    let plain = create(&api, &pod("plain", "", HTTP_SERVER))?;
    assert_eq!(names(&plain["spec"]["containers"]), ["server"]);
    assert!(
        plain["metadata"]["labels"].is_null(),
        "{}",
        plain["metadata"]
    );
    assert_eq!(
        plain["spec"]["containers"][0]["ports"][0]["containerPort"],
        3001
    );
    assert!(
        plain["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.iter().all(|v| v["name"] != "mcp-guard-policy"))
    );

    // Opted out inside an injecting namespace.
    let out = kubectl_ok(
        &api,
        &["create", "-n", "auto", "-o", "json", "-f", "-"],
        Some(&pod(
            "opted-out",
            r#""mcpguard.io/inject": "false""#,
            HTTP_SERVER,
        )),
    )?;
    assert_eq!(
        names(&serde_json::from_str::<Value>(&out)?["spec"]["containers"]),
        ["server"]
    );

    for (name, annotations, needles) in [
        (
            "missing-policy",
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": nope"#,
            &["\"nope\"", "mcpguard.io/policy"][..],
        ),
        (
            "no-policy",
            r#""mcpguard.io/inject": "true""#,
            &["mcpguard.io/policy"][..],
        ),
        (
            "bad-inject",
            r#""mcpguard.io/inject": "yes", "mcpguard.io/policy": filesystem-readonly"#,
            &["mcpguard.io/inject", "yes"][..],
        ),
        (
            "bad-transport",
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": filesystem-readonly, "mcpguard.io/transport": grpc"#,
            &["mcpguard.io/transport", "grpc"][..],
        ),
        (
            "bad-port",
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": filesystem-readonly, "mcpguard.io/port": metrics"#,
            &["mcpguard.io/port", "metrics"][..],
        ),
    ] {
        let out = kubectl(
            &api,
            &["create", "-n", NS, "-f", "-"],
            Some(&pod(name, annotations, HTTP_SERVER)),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was admitted");
        assert!(
            stderr.contains(r#"admission webhook "pods.mcpguard.io" denied the request"#),
            "{name}: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: the message names {needle}: {stderr}"
            );
        }
    }
    let pods = kubectl_ok(&api, &["get", "pods", "-n", NS, "-o", "name"], None)?;
    assert_eq!(pods.trim(), "pod/plain", "refused pods were not stored");
    assert!(
        op.metric("mcp_guard_operator_admissions_total{webhook=\"mutate-pods\",result=\"denied\"}")
            >= 5.0
    );
    assert!(
        op.metric(
            "mcp_guard_operator_admissions_total{webhook=\"mutate-pods\",result=\"allowed\"}"
        ) >= 2.0
    );
    Ok(())
}

/// In a cluster the chart creates both webhook configurations (by Service, without a caBundle);
/// the operator only fills in its CA bundle, and keeps it there.
#[tokio::test]
async fn in_cluster_mode_fills_the_charts_ca_bundles() -> Result<()> {
    let (api, _client) = cluster().await?;
    // As the chart renders them (trimmed); Ignore, since no Service routes here.
    let configs = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: mcp-guard}
webhooks:
  - name: pods.mcpguard.io
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Ignore
    clientConfig: {service: {name: mcp-guard-operator, namespace: mcp-guard, path: /mutate/pods}}
    rules: [{apiGroups: [""], apiVersions: [v1], resources: [pods], operations: [CREATE]}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: mcp-guard}
webhooks:
  - name: policies.mcpguard.io
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Ignore
    clientConfig: {service: {name: mcp-guard-operator, namespace: mcp-guard, path: /validate/mcpguardpolicies}}
    rules: [{apiGroups: [mcpguard.io], apiVersions: [v1alpha1], resources: [mcpguardpolicies], operations: [CREATE, UPDATE]}]
"#;
    kubectl_ok(&api, &["create", "-f", "-"], Some(configs))?;
    let op = Operator::start_in_cluster_mode(&api, "op-1", &[])?;
    let secret = kubectl_ok(
        &api,
        &[
            "get",
            "secret",
            "-n",
            "mcp-guard",
            "mcp-guard-webhook-tls",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        None,
    )?;
    assert!(!secret.is_empty());
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let bundle = kubectl_ok(
            &api,
            &[
                "get",
                kind,
                "mcp-guard",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ],
            None,
        )?;
        assert_eq!(bundle, secret, "{kind} trusts the operator's CA");
        let service = kubectl_ok(
            &api,
            &[
                "get",
                kind,
                "mcp-guard",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.service.name}",
            ],
            None,
        )?;
        assert_eq!(
            service, "mcp-guard-operator",
            "{kind}: the chart's Service is kept"
        );
    }
    assert_eq!(
        op.metric("mcp_guard_operator_writes_total{kind=\"webhook\"}"),
        2.0,
        "one patch per configuration"
    );
    Ok(())
}
