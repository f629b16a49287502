//! Step 8: operator leader failover.

use anyhow::{Context, Result, ensure};
use mcp_guard_e2e::cluster::{container_names, eventually, pod_ready};
use serde_json::{Value, json};

use super::*;
use crate::world::*;

// ---- 8 ------------------------------------------------------------------------------------------

pub(super) fn s8_failover(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    let lease_name = format!("{FULLNAME}-operator");
    let leader = k.json(&["get", "lease", "-n", SYSTEM_NS, &lease_name])?["spec"]["holderIdentity"]
        .as_str()
        .context("no leader")?
        .to_owned();
    k.run(&["delete", "pod", "-n", SYSTEM_NS, &leader, "--wait=false"])?;
    let new = eventually("another replica takes the Lease", 2 * MINUTE, || {
        let lease = k.json(&["get", "lease", "-n", SYSTEM_NS, &lease_name])?;
        let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
        ensure!(!holder.is_empty() && holder != leader, "holder {holder}");
        Ok(holder.to_owned())
    })?;
    eprintln!("  leader {leader} deleted, {new} took over");
    // Admissions keep working: a new annotated pod is injected, and the new leader reconciles.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-failover", "namespace": NS,
                     "annotations": {"mcpguard.io/inject": "true", "mcpguard.io/policy": POLICY}},
        "spec": {"containers": [{"name": "server", "image": w.server_image()?,
                                 "imagePullPolicy": w.pull_policy(), "args": ["streamableHttp"],
                                 "ports": [{"name": "http", "containerPort": HTTP_PORT}]}]}
    });
    let created = eventually("an annotated pod is admitted and injected", MINUTE, || {
        let out = k.run_with_input(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            &pod.to_string(),
        )?;
        let created: Value = serde_json::from_str(&out)?;
        ensure!(
            container_names(&created)
                .iter()
                .any(|c| c == PROXY_CONTAINER),
            "not injected"
        );
        Ok(created)
    })?;
    ensure!(created["metadata"]["labels"]["mcpguard.io/guarded"] == "true");
    let mut policy = match w.policy.clone() {
        Some(p) => p,
        None => library_policy()?,
    };
    policy["spec"]["detectors"]["rateLimit"]["perTool"]["maxCalls"] = json!(31);
    apply_policy(w, &policy)?;
    let cm_name = mcp_guard_crds::names::config_map_name(POLICY);
    eventually("the new leader reconciles an edit", MINUTE, || {
        let p = k.json(&["get", "mcpguardpolicy", "-n", NS, POLICY])?;
        ensure!(
            p["status"]["observedGeneration"] == p["metadata"]["generation"],
            "not reconciled"
        );
        let cm = k.json(&["get", "configmap", "-n", NS, &cm_name])?;
        let compiled = cm["data"]["policy.json"].as_str().unwrap_or_default();
        ensure!(
            compiled.contains("31"),
            "the ConfigMap does not carry the edit"
        );
        Ok(())
    })?;
    eventually(
        "the operator is back to 2 ready replicas",
        2 * MINUTE,
        || {
            let ready = k
                .pods(SYSTEM_NS, "app.kubernetes.io/component=operator")?
                .iter()
                .filter(|p| pod_ready(p))
                .count();
            ensure!(ready == 2, "{ready} ready");
            Ok(())
        },
    )
}
