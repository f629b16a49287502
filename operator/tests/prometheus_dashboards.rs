//! The chart's operator dashboard against a real Prometheus scraping the real operator, which runs
//! against a real kube-apiserver: policies are applied and updated (reconciles), an invalid policy
//! and pods naming a missing policy are refused (denials), a guarded pod is injected and a plain one
//! admitted, a request that is not an AdmissionReview is answered with an error, and a policy in a
//! namespace being deleted cannot get its ConfigMap (reconcile errors: `forbidden`). Prometheus
//! (Debian's 2.42) scrapes the operator every second; every panel query of the operator dashboard,
//! run through its HTTP API, must return data, and the alert rules must match what happened.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Operator, cluster, create_namespace, eventually, kubectl_ok};
use mcp_guard_e2e::prometheus::{self, Prometheus, Target};
use mcp_guard_e2e::workspace_root;
use serde_json::Value;

const NS: &str = "mcp";
const DOOMED: &str = "doomed";
const ALERTS: &str = "charts/mcp-guard/alerts/mcp-guard.rules.yaml";

fn policy(name: &str, deny: &str) -> String {
    format!(
        "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: {name}}}\nspec:\n  tools: {{deny: [\"{deny}\"]}}\n"
    )
}

const INVALID: &str = r#"apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: broken}
spec:
  rules:
    - {id: x, action: block, tools: ["*"], args: [{pointer: /a, regex: "["}]}
"#;

fn pod(name: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  containers:
    - name: server
      image: example.test/filesystem:1
      command: ["node", "/app/dist/index.js", "/data"]
"#
    )
}

/// One round of API activity; `round` keeps object names unique.
fn activity(api: &mcp_guard_e2e::apiserver::ApiServer, op: &Operator, round: u32) -> Result<()> {
    // A policy created (round 0) or changed (round 1): reconciles, ConfigMap and status writes.
    kubectl_ok(
        api,
        &["apply", "-n", NS, "-f", "-"],
        Some(&policy("team", &format!("delete_{round}_*"))),
    )?;
    // Refused by the validating webhook.
    let out = common::kubectl(api, &["create", "-n", NS, "-f", "-"], Some(INVALID))?;
    assert!(!out.status.success(), "an invalid policy is refused");
    // A guarded pod (mutated), a plain one (allowed), one naming a missing policy (denied).
    kubectl_ok(
        api,
        &["create", "-n", NS, "-f", "-"],
        Some(&pod(
            &format!("guarded-{round}"),
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": team, "mcpguard.io/transport": stdio"#,
        )),
    )?;
    kubectl_ok(
        api,
        &["create", "-n", NS, "-f", "-"],
        Some(&pod(&format!("plain-{round}"), "")),
    )?;
    let out = common::kubectl(
        api,
        &["create", "-n", NS, "-f", "-"],
        Some(&pod(
            &format!("orphan-{round}"),
            r#""mcpguard.io/inject": "true", "mcpguard.io/policy": nowhere, "mcpguard.io/transport": stdio"#,
        )),
    )?;
    assert!(
        !out.status.success(),
        "a pod naming a missing policy is refused"
    );
    // Not an AdmissionReview: counted as an error (the API server would apply failurePolicy).
    let status = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-X", "POST", "-d", "not a review"])
        .arg(format!("https://{}/mutate/pods", op.webhook))
        .status()?;
    assert!(status.success(), "curl reached the webhook");
    Ok(())
}

#[tokio::test]
async fn every_operator_dashboard_query_returns_data_from_a_real_operator() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    create_namespace(&client, DOOMED, &[]).await?;
    // A policy in a namespace that is then deleted: with no namespace controller it stays
    // Terminating, and the API server refuses new objects in it (403), so its ConfigMap can never
    // be created. Applied before the operator registers its webhooks.
    kubectl_ok(
        &api,
        &["apply", "-n", DOOMED, "-f", "-"],
        Some(&policy("stranded", "x_*")),
    )?;
    kubectl_ok(&api, &["delete", "namespace", DOOMED, "--wait=false"], None)?;

    let op = Operator::start(&api, "op-1", &[])?;
    // The target labels prometheus-operator's ServiceMonitor would add (job: the Service's name).
    let target = Target::new("mcp-guard-operator", op.metrics)
        .label("namespace", "mcp-guard")
        .label("pod", "mcp-guard-operator-0")
        .label("node", "node-1");
    let alerts = workspace_root().join(ALERTS);
    let prom = Prometheus::start(&[target], &[alerts.as_path()])?;
    prom.wait_for_targets(Duration::from_secs(30))?;
    eventually(Duration::from_secs(30), "the operator leads", || async {
        Ok((op.metric("mcp_guard_operator_leader") == 1.0).then_some(()))
    })
    .await?;

    // Two rounds with scrapes in between, so that counters rise between samples.
    for round in 0..2 {
        activity(&api, &op, round)?;
        prom.wait_for_scrape()?;
        prom.wait_for_scrape()?;
    }
    eventually(
        Duration::from_secs(30),
        "reconcile errors for the stranded policy",
        || async {
            Ok(
                (op.metric("mcp_guard_operator_reconcile_errors_total{error=\"forbidden\"}")
                    >= 2.0)
                    .then_some(()),
            )
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", op.log()))?;
    prom.wait_for_scrape()?;
    prom.wait_for_scrape()?;

    let d = prometheus::dashboard("operator")?;
    let mut problems = prometheus::check_variables(&prom, &d);
    let results = prometheus::run_panels(&prom, &d);
    problems.extend(prometheus::report("operator", &results));
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\noperator metrics:\n{}",
        problems.len(),
        problems.join("\n"),
        op.metrics_text().unwrap_or_default()
    );

    // What the panels show is what happened.
    let panel = |title: &str, ref_id: &str| {
        results
            .iter()
            .find(|r| r.query.panel == title && r.query.ref_id == ref_id)
            .unwrap_or_else(|| panic!("no panel {title} [{ref_id}]"))
    };
    let single = |title: &str| panel(title, "A").result.as_ref().unwrap()[0].value;
    assert_eq!(single("Leader"), 1.0);
    assert_eq!(single("Replicas reporting"), 1.0);
    let expires_in = single("Certificate expires in");
    assert!(
        expires_in > 80.0 * 86400.0 && expires_in <= 90.0 * 86400.0,
        "the default validity is 90 days: {expires_in}"
    );
    assert!(single("Reconcile errors") >= 2.0);
    assert_eq!(single("Admission errors"), 2.0, "one per round");
    assert_eq!(single("Pods injected"), 2.0, "one per round");
    let reconciles = panel("Reconciles by result", "A");
    for result in ["changed", "error"] {
        assert!(
            reconciles.value_where("result", result) > Some(0.0),
            "{result}: {:?}",
            reconciles.result
        );
    }
    let errors = panel("Reconcile errors by kind", "A");
    assert!(
        errors.value_where("error", "forbidden") > Some(0.0),
        "{errors:?}"
    );
    let admissions = panel("Admissions by webhook and result", "A");
    for (webhook, result) in [
        ("mutate-pods", "mutated"),
        ("mutate-pods", "allowed"),
        ("mutate-pods", "denied"),
        ("mutate-pods", "error"),
        ("validate-policies", "allowed"),
        ("validate-policies", "denied"),
    ] {
        let v = admissions
            .result
            .as_ref()
            .unwrap()
            .iter()
            .find(|s| s.labels["webhook"] == webhook && s.labels["result"] == result)
            .map(|s| s.value);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{webhook} {result}: {v:?} in {:?}",
            admissions.result
        );
    }
    let writes = panel("API server writes by kind", "A");
    for kind in ["configmap", "status"] {
        assert!(writes.value_where("kind", kind) > Some(0.0), "{writes:?}");
    }
    let p99 = panel("Admission latency", "A");
    assert!(
        p99.result
            .as_ref()
            .unwrap()
            .iter()
            .all(|s| s.value.is_finite() && s.value > 0.0),
        "{p99:?}"
    );

    // The alert rules see the same: reconcile and admission errors pending (they need minutes of
    // errors to fire); no leader, certificate or absent-metrics alert.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = prom.alerts()?;
        let names: Vec<&str> = alerts
            .iter()
            .filter_map(|a| a["labels"]["alertname"].as_str())
            .collect();
        let found = |name: &str| -> Option<&Value> {
            alerts.iter().find(|a| a["labels"]["alertname"] == name)
        };
        if let (Some(reconcile), Some(admission)) = (
            found("McpGuardReconcileErrors"),
            found("McpGuardAdmissionErrors"),
        ) {
            assert_eq!(reconcile["labels"]["error"], "forbidden", "{reconcile}");
            assert_eq!(reconcile["labels"]["job"], "mcp-guard-operator");
            assert_eq!(admission["labels"]["webhook"], "mutate-pods", "{admission}");
            for quiet in [
                "McpGuardOperatorNoLeader",
                "McpGuardOperatorMetricsAbsent",
                "McpGuardWebhookCertificateExpiringSoon",
                "McpGuardWebhookCertificateExpiring",
            ] {
                assert!(!names.contains(&quiet), "{quiet}: {alerts:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the error alerts are not pending: {alerts:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}
