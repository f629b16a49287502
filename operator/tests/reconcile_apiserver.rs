//! The reconciler against a real kube-apiserver: a policy becomes its ConfigMap with the compiled
//! JSON, updates follow, invalid policies are refused at apply time (validating webhook) or reported in
//! status, and a restarted operator writes nothing when nothing changed.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{Operator, cluster, create_namespace, eventually, kubectl, kubectl_ok};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject};
use mcp_guard_crds::McpGuardPolicy;
use mcp_guard_e2e::workspace_root;
use mcp_guard_policy::compiled::PolicySource;
use mcp_guard_policy::load::parse_spec;

const NS: &str = "mcp";

fn policies(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::erase::<McpGuardPolicy>(&()),
    )
}

/// What the ConfigMap must hold: the stored spec (with the server's defaults) compiled here.
fn expected_json(stored: &DynamicObject) -> String {
    let spec = parse_spec(stored.data["spec"].clone()).unwrap();
    mcp_guard_policy::compile(&spec)
        .unwrap()
        .with_source(PolicySource {
            name: stored.metadata.name.clone(),
            namespace: Some(NS.to_owned()),
            generation: stored.metadata.generation,
        })
        .to_json()
}

/// Waits until the ConfigMap reflects the policy's current generation; returns both.
async fn synced(client: &kube::Client, name: &str) -> Result<(DynamicObject, ConfigMap)> {
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let cm_name = format!("mcp-guard-policy-{name}");
    eventually(
        Duration::from_secs(20),
        "ConfigMap follows the policy",
        || async {
            let policy = policies(client).get(name).await?;
            let Some(cm) = cms.get_opt(&cm_name).await? else {
                return Ok(None);
            };
            let generation = policy.metadata.generation.unwrap().to_string();
            let status_gen = policy
                .data
                .get("status")
                .and_then(|s| s["observedGeneration"].as_i64());
            let cm_gen = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("mcpguard.io/policy-generation"));
            Ok(
                (cm_gen == Some(&generation) && status_gen == policy.metadata.generation)
                    .then_some((policy, cm)),
            )
        },
    )
    .await
}

#[tokio::test]
async fn a_policy_becomes_its_config_map_and_updates_follow() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    let _op = Operator::start(&api, "op-1", &[])?;
    let file = workspace_root().join("policies/library/filesystem-readonly.yaml");
    kubectl_ok(
        &api,
        &["apply", "-n", NS, "-f", file.to_str().unwrap()],
        None,
    )?;

    let (policy, cm) = synced(&client, "filesystem-readonly").await?;
    let json = &cm.data.as_ref().unwrap()["policy.json"];
    assert_eq!(
        json,
        &expected_json(&policy),
        "the ConfigMap holds the compiled policy"
    );
    let ann = cm.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["mcpguard.io/policy-generation"], "1");
    assert_eq!(
        ann["mcpguard.io/policy-sha256"],
        mcp_guard_operator::reconcile::desired::sha256_hex(json)
    );
    let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("McpGuardPolicy", "filesystem-readonly")
    );
    assert_eq!(owner.uid, policy.metadata.uid.clone().unwrap());
    let status = &policy.data["status"];
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Compiled");
    assert_eq!(status["configMap"], "mcp-guard-policy-filesystem-readonly");
    assert_eq!(status["guardedPods"], 0);

    // An update: a new generation, a new ConfigMap content, the status follows.
    kubectl_ok(
        &api,
        &[
            "patch",
            "-n",
            NS,
            "mcpguardpolicy",
            "filesystem-readonly",
            "--type=merge",
            "-p",
            r#"{"spec":{"mode":"audit"}}"#,
        ],
        None,
    )?;
    let (policy, cm) = synced(&client, "filesystem-readonly").await?;
    assert_eq!(policy.metadata.generation, Some(2));
    let json = &cm.data.as_ref().unwrap()["policy.json"];
    assert_eq!(json, &expected_json(&policy));
    let compiled: serde_json::Value = serde_json::from_str(json)?;
    assert_eq!(compiled["mode"], "audit", "{compiled}");
    let events = kubectl_ok(&api, &["get", "events", "-n", NS, "-o", "json"], None)?;
    assert!(
        events.contains("Compiled"),
        "a Normal event per write: {events}"
    );
    Ok(())
}

const INVALID: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: bad}
spec:
  rules:
    - id: r1
      tools: ["["]
      action: block
      args: [{pointer: /path, regex: "(unclosed"}]
    - id: r1
      tools: ["*"]
      action: log
      args: [{pointer: /path, regex: "x"}]
"#;

#[tokio::test]
async fn invalid_policies_are_refused_at_apply_time_and_reported_in_status() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    // Created before any webhook exists (as after an outage): the reconciler must report it.
    kubectl_ok(&api, &["create", "-n", NS, "-f", "-"], Some(INVALID))?;
    let op = Operator::start(&api, "op-1", &[])?;

    let status = eventually(Duration::from_secs(20), "InvalidPolicy status", || async {
        let p = policies(&client).get("bad").await?;
        Ok(p.data
            .get("status")
            .filter(|s| s["conditions"][0]["status"] == "False")
            .cloned())
    })
    .await?;
    let cond = &status["conditions"][0];
    assert_eq!(cond["reason"], "InvalidPolicy");
    let message = cond["message"].as_str().unwrap();
    for path in [
        "spec.rules[0].tools[0]",
        "spec.rules[0].args[0].regex",
        "spec.rules[1].id",
    ] {
        assert!(message.contains(path), "status names {path}: {message}");
    }
    assert!(
        status.get("configMap").is_none(),
        "no ConfigMap for a policy that never compiled"
    );
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    assert!(cms.get_opt("mcp-guard-policy-bad").await?.is_none());
    let events = kubectl_ok(&api, &["get", "events", "-n", NS, "-o", "json"], None)?;
    assert!(
        events.contains("InvalidPolicy"),
        "a Warning event: {events}"
    );

    // Now the webhook is registered: the same mistakes are refused by kubectl, with the paths.
    let renamed = INVALID.replace("name: bad", "name: bad-2");
    let out = kubectl(&api, &["apply", "-n", NS, "-f", "-"], Some(&renamed))?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"admission webhook "policies.mcpguard.io" denied the request"#),
        "{stderr}"
    );
    for path in [
        "spec.rules[0].tools[0]",
        "spec.rules[0].args[0].regex",
        "spec.rules[1].id",
    ] {
        assert!(stderr.contains(path), "kubectl shows {path}: {stderr}");
    }
    assert!(
        policies(&client).get_opt("bad-2").await?.is_none(),
        "nothing was stored"
    );

    // An update that breaks a valid policy is refused too, and the stored one stays.
    let file = workspace_root().join("policies/library/memory.yaml");
    kubectl_ok(
        &api,
        &["apply", "-n", NS, "-f", file.to_str().unwrap()],
        None,
    )?;
    let out = kubectl(
        &api,
        &[
            "patch",
            "-n",
            NS,
            "mcpguardpolicy",
            "memory",
            "--type=merge",
            "-p",
            r#"{"spec":{"rules":[{"id":"x","tools":["*"],"action":"block","args":[{"pointer":"/a","regex":"["}]}]}}"#,
        ],
        None,
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("spec.rules[0].args[0].regex"),
        "{stderr}"
    );
    assert!(
        op.metric(
            "mcp_guard_operator_admissions_total{webhook=\"validate-policies\",result=\"denied\"}"
        ) >= 2.0
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_operator_writes_nothing_when_nothing_changed() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    let mut op = Operator::start(&api, "op-1", &[])?;
    for name in ["filesystem-readonly", "memory", "no-exec"] {
        let file = workspace_root().join(format!("policies/library/{name}.yaml"));
        kubectl_ok(
            &api,
            &["apply", "-n", NS, "-f", file.to_str().unwrap()],
            None,
        )?;
    }
    kubectl_ok(&api, &["create", "-n", NS, "-f", "-"], Some(INVALID)).ok(); // refused: not part of this test
    let mut versions = Vec::new();
    for name in ["filesystem-readonly", "memory", "no-exec"] {
        let (p, cm) = synced(&client, name).await?;
        versions.push((
            name,
            p.metadata.resource_version.clone(),
            cm.metadata.resource_version.clone(),
        ));
    }
    op.stop().context("stopping the first operator")?;

    // The same URL as before (a new pod behind the same Service, in a cluster).
    let op = Operator::start_at(&api, "op-2", op.webhook, &[])?;
    // Wait until the new replica leads and has reconciled every policy once.
    eventually(
        Duration::from_secs(30),
        "three reconciles after the restart",
        || async {
            Ok((op.metric("mcp_guard_operator_leader") == 1.0
                && op.metric("mcp_guard_operator_reconciles_total{result=\"unchanged\"}") >= 3.0)
                .then_some(()))
        },
    )
    .await?;
    let text = op.metrics_text()?;
    for kind in ["configmap", "status", "event", "secret", "webhook"] {
        assert_eq!(
            op.metric(&format!(
                "mcp_guard_operator_writes_total{{kind=\"{kind}\"}}"
            )),
            0.0,
            "no {kind} writes after a restart:\n{text}"
        );
    }
    assert_eq!(
        op.metric("mcp_guard_operator_reconciles_total{result=\"changed\"}"),
        0.0,
        "{text}"
    );
    for (name, policy_rv, cm_rv) in versions {
        let (p, cm) = synced(&client, name).await?;
        assert_eq!(
            p.metadata.resource_version, policy_rv,
            "{name}: policy (and status) untouched"
        );
        assert_eq!(
            cm.metadata.resource_version, cm_rv,
            "{name}: ConfigMap untouched"
        );
    }
    Ok(())
}
