//! Steps 1, 2 and 9: the chart in and out, a library policy.

use anyhow::{Context, Result, bail, ensure};
use mcp_guard_e2e::cluster::{eventually, name, pod_ready};
use mcp_guard_e2e::helm;
use serde_json::{Value, json};

use super::*;
use crate::world::*;

// ---- 1 ------------------------------------------------------------------------------------------

pub(super) fn s1_install(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    // Kubernetes before 1.21 has no kubernetes.io/metadata.name label, so the chart's namespace
    // exclusion cannot match the release namespace there: the label mcp-guard documents does.
    k.apply(
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SYSTEM_NS}\n  labels: {{mcpguard.io/injection: disabled}}\n\
             ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n"
        ),
        "mcp-guard-e2e",
    )?;
    let mut values = w.values.clone();
    let pdb = if k.run(&["api-versions"])?.lines().any(|l| l == "policy/v1") {
        "policy/v1"
    } else {
        "policy/v1beta1"
    };
    values["operator"]["pdbApiVersion"] = json!(pdb);
    let manifests = helm::render(RELEASE, SYSTEM_NS, &values).context("helm template")?;
    // As `helm install` does: crds/ first, established before the templates that use them.
    let crd = std::fs::read_to_string(helm::chart_dir().join("crds/mcpguardpolicy.yaml"))?;
    k.apply(&crd, "helm")?;
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/mcpguardpolicies.mcpguard.io",
        "--timeout=60s",
    ])?;
    w.manifests = Some(manifests.clone());
    k.apply(&manifests, "helm")?;

    let operator = format!("{FULLNAME}-operator");
    let pods = eventually("2 operator replicas ready", 3 * MINUTE, || {
        let pods = k.pods(SYSTEM_NS, "app.kubernetes.io/component=operator")?;
        let ready: Vec<Value> = pods.into_iter().filter(pod_ready).collect();
        ensure!(ready.len() == 2, "{} ready", ready.len());
        Ok(ready)
    })?;
    let names: Vec<&str> = pods.iter().map(name).collect();
    let holder = eventually("one operator holds the Lease", MINUTE, || {
        let lease = k.json(&["get", "lease", "-n", SYSTEM_NS, &operator])?;
        let holder = lease["spec"]["holderIdentity"]
            .as_str()
            .context("no holder")?
            .to_owned();
        ensure!(
            names.contains(&holder.as_str()),
            "holder {holder} is not a replica"
        );
        Ok(holder)
    })?;
    eprintln!("  operator replicas {names:?}, leader {holder}");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        eventually(&format!("{kind} has its caBundle"), MINUTE, || {
            let cfg = k.json(&["get", kind, FULLNAME])?;
            let hooks = cfg["webhooks"].as_array().context("no webhooks")?;
            ensure!(!hooks.is_empty(), "no webhooks");
            for h in hooks {
                let ca = h["clientConfig"]["caBundle"].as_str().unwrap_or_default();
                ensure!(ca.len() > 100, "webhook {} has no caBundle", h["name"]);
            }
            Ok(())
        })?;
    }
    eventually("the node-agent DaemonSet is ready", 3 * MINUTE, || {
        let ds = k.json(&[
            "get",
            "daemonset",
            "-n",
            SYSTEM_NS,
            &format!("{FULLNAME}-agent"),
        ])?;
        let want = ds["status"]["desiredNumberScheduled"].as_u64().unwrap_or(0);
        let ready = ds["status"]["numberReady"].as_u64().unwrap_or(0);
        ensure!(want >= 1 && ready == want, "{ready}/{want} ready");
        Ok(())
    })?;
    // The webhooks answer (not only exist): a broken policy is refused with its field path.
    let broken = format!(
        "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: broken, namespace: {NS}}}\n\
         spec:\n  rules:\n    - id: bad\n      action: block\n      args: [{{anyString: true, regex: '(unclosed'}}]\n"
    );
    let refused = eventually(
        "the policy webhook refuses a broken policy",
        MINUTE,
        || match k.run_with_input(&["apply", "--dry-run=server", "-f", "-"], &broken) {
            Ok(out) => bail!("accepted: {out}"),
            Err(e) => {
                let e = format!("{e:#}");
                ensure!(e.contains("policies.mcpguard.io"), "not the webhook: {e}");
                Ok(e)
            }
        },
    )?;
    ensure!(
        refused.contains("spec.rules[0]"),
        "no field path in: {refused}"
    );
    Ok(())
}

// ---- 2 ------------------------------------------------------------------------------------------

pub(super) fn s2_policy(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    apply_policy(w, &library_policy()?)?;
    let cm_name = mcp_guard_crds::names::config_map_name(POLICY);
    eventually("the policy is Ready", MINUTE, || {
        let p = k.json(&["get", "mcpguardpolicy", "-n", NS, POLICY])?;
        let ready = p["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .context("no Ready condition")?;
        ensure!(ready["status"] == "True", "Ready: {ready}");
        ensure!(
            p["status"]["observedGeneration"] == p["metadata"]["generation"],
            "status is for an older generation"
        );
        ensure!(
            p["status"]["configMap"] == cm_name.as_str(),
            "status: {}",
            p["status"]
        );
        Ok(())
    })?;
    let cm = k.json(&["get", "configmap", "-n", NS, &cm_name])?;
    let compiled: Value = serde_json::from_str(
        cm["data"]["policy.json"]
            .as_str()
            .context("ConfigMap without policy.json")?,
    )?;
    ensure!(
        compiled.to_string().contains("block-metadata-endpoints"),
        "the compiled policy lacks the library's rules"
    );
    ensure!(
        cm["metadata"]["ownerReferences"][0]["kind"] == "McpGuardPolicy",
        "ConfigMap not owned by the policy"
    );
    Ok(())
}

// ---- 9 ------------------------------------------------------------------------------------------

pub(super) fn s9_uninstall(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    // The scenario's own objects first (while the webhooks still run), then the release, as
    // `helm uninstall` does (it keeps crds/: deleting the CRD is the documented extra step).
    k.run(&[
        "delete",
        "namespace",
        NS,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ])?;
    if let Some(manifests) = &w.manifests {
        k.run_with_input(
            &["delete", "--ignore-not-found", "--wait=true", "-f", "-"],
            manifests,
        )?;
    }
    k.run(&[
        "delete",
        "crd",
        "mcpguardpolicies.mcpguard.io",
        "--ignore-not-found",
    ])?;
    // What the operator created at run time: its certificate Secret, the Lease, and the webhook
    // configurations' registrations; all must be gone with the release.
    eventually("nothing of mcp-guard is left", 2 * MINUTE, || {
        let mut left = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
            "clusterrole",
            "clusterrolebinding",
        ] {
            let out = k.run(&["get", kind, "-o", "name"])?;
            left.extend(
                out.lines()
                    .filter(|l| l.contains("mcp-guard"))
                    .map(str::to_owned),
            );
        }
        let ns = k.run(&["get", "namespace", "-o", "name"])?;
        left.extend(ns.lines().filter(|l| l.ends_with(NS)).map(str::to_owned));
        let sys = k.run(&[
            "get",
            "all,secret,configmap,lease,serviceaccount,role,rolebinding",
            "-n",
            SYSTEM_NS,
            "-o",
            "name",
        ])?;
        left.extend(
            sys.lines()
                .filter(|l| {
                    !l.contains("default-token")
                        && !l.ends_with("/default")
                        && !l.ends_with("kube-root-ca.crt")
                })
                .map(str::to_owned),
        );
        ensure!(left.is_empty(), "left behind: {left:?}");
        Ok(())
    })?;
    k.run(&[
        "delete",
        "namespace",
        SYSTEM_NS,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ])?;
    Ok(())
}
