//! What the operator creates at run time goes away with its Deployment (`helm uninstall`): on a real
//! kube-apiserver, an operator whose pod belongs to a Deployment (through a ReplicaSet, all created by
//! hand: nothing runs, and without a controller-manager nothing is garbage-collected, but owner
//! references are stored) gives the certificate Secret and the leader Lease an owner reference to
//! that Deployment, adds it to both when they already exist without it, and writes neither again
//! after a restart. It acts as the chart's ServiceAccount with the chart's RBAC; without the Role
//! that lets it read its pod and ReplicaSet, both objects get no owner and all else works.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{OPERATOR_NS, Operator, cluster, eventually, kubectl_ok};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use mcp_guard_e2e::apiserver::ApiServer;
use serde_json::json;

const SECRET: &str = "mcp-guard-webhook-tls";
const LEASE: &str = "mcp-guard-operator";
const DEPLOYMENT: &str = "mcp-guard-operator";
const REPLICA_SET: &str = "mcp-guard-operator-5d8f9c7b6";
const POD: &str = "mcp-guard-operator-5d8f9c7b6-x7k2p";
/// The chart's ServiceAccount for the operator (release `mcp-guard`).
const SERVICE_ACCOUNT: &str = "system:serviceaccount:mcp-guard:mcp-guard-operator";
/// The chart's Role (and RoleBinding) for reading the operator's pod and ReplicaSet.
const OWNER_ROLE: &str = "mcp-guard-operator-owner";

/// Applies the chart's RBAC for the operator (default values), except objects named `except`.
fn chart_rbac(api: &ApiServer, except: Option<&str>) -> Result<()> {
    let stream = mcp_guard_e2e::helm::render("mcp-guard", OPERATOR_NS, &json!({}))?;
    let kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple::<serde_json::Value>(&stream)?
            .into_iter()
            .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or_default()))
            .filter(|o| {
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                name.starts_with("mcp-guard-operator") && Some(name) != except
            })
            .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    kubectl_ok(api, &["apply", "-f", "-"], Some(&list.to_string()))?;
    Ok(())
}

/// Creates `object` (JSON) in the operator's namespace; returns what the server stored.
async fn create<K>(client: &kube::Client, object: serde_json::Value) -> Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object)?;
    Ok(Api::<K>::namespaced(client.clone(), OPERATOR_NS)
        .create(&PostParams::default(), &object)
        .await?)
}

/// A controller reference to the `kind` object `meta`, as the controller-manager sets it.
fn controller_ref(kind: &str, meta: &ObjectMeta) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": meta.name, "uid": meta.uid,
        "controller": true, "blockOwnerDeletion": true})
}

/// The chart's Deployment, one ReplicaSet of it and one pod of that, linked by owner references;
/// returns the Deployment's uid.
async fn deployment_with_a_pod(client: &kube::Client) -> Result<String> {
    let labels = json!({"app.kubernetes.io/name": "mcp-guard-operator"});
    let template = json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "operator", "image": "example.test/operator:test"}]},
    });
    let deployment: Deployment = create(
        client,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT},
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        }),
    )
    .await?;
    let rs: ReplicaSet = create(
        client,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": REPLICA_SET, "labels": labels,
                "ownerReferences": [controller_ref("Deployment", &deployment.metadata)]},
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        }),
    )
    .await?;
    let mut pod = template.clone();
    pod["metadata"] = json!({"name": POD, "labels": labels,
        "ownerReferences": [controller_ref("ReplicaSet", &rs.metadata)]});
    create::<Pod>(client, pod).await?;
    Ok(deployment.metadata.uid.unwrap())
}

async fn secret(client: &kube::Client) -> Result<Secret> {
    Ok(Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .get(SECRET)
        .await?)
}

async fn lease(client: &kube::Client) -> Result<Lease> {
    Ok(Api::<Lease>::namespaced(client.clone(), OPERATOR_NS)
        .get(LEASE)
        .await?)
}

/// Waits until `op` leads: by then it has set (or checked) the Lease's owner.
async fn leading(op: &Operator) -> Result<()> {
    eventually(Duration::from_secs(20), "the operator leads", || async {
        Ok((op.metric("mcp_guard_operator_leader") == 1.0).then_some(()))
    })
    .await
}

#[tokio::test]
async fn the_secret_and_the_lease_are_owned_by_the_operators_deployment() -> Result<()> {
    let (api, client) = cluster().await?;
    let uid = deployment_with_a_pod(&client).await?;
    let start = || Operator::start_in_cluster_mode_as(&api, POD, Some(SERVICE_ACCOUNT), &[]);

    // Not allowed to read its pod (as with an earlier chart): neither object gets an owner.
    chart_rbac(&api, Some(OWNER_ROLE))?;
    let mut op = start()?;
    leading(&op).await?;
    op.stop()?;
    assert!(
        op.log().contains("no owning Deployment found") && op.log().contains("forbidden"),
        "{}",
        op.log()
    );
    let before = secret(&client).await?;
    assert_eq!(before.metadata.owner_references, None);
    assert_eq!(lease(&client).await?.metadata.owner_references, None);

    // With the chart's whole RBAC: both objects, which already exist, get the owner; the
    // certificate stays.
    chart_rbac(&api, None)?;
    let want = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: DEPLOYMENT.into(),
        uid,
        controller: Some(false),
        block_owner_deletion: Some(false),
    }];
    let mut op = start()?;
    leading(&op).await?;
    let owned = secret(&client).await?;
    assert_eq!(owned.metadata.owner_references.as_ref(), Some(&want));
    assert_eq!(owned.data, before.data, "the certificate is kept");
    assert_eq!(
        lease(&client).await?.metadata.owner_references.as_ref(),
        Some(&want)
    );
    for kind in ["secret", "lease"] {
        assert_eq!(
            op.metric(&format!(
                "mcp_guard_operator_writes_total{{kind=\"{kind}\"}}"
            )),
            1.0,
            "one {kind} write"
        );
    }
    op.stop()?;

    // A restarted replica finds both owned and writes neither.
    let op = start()?;
    leading(&op).await?;
    for kind in ["secret", "lease"] {
        assert_eq!(
            op.metric(&format!(
                "mcp_guard_operator_writes_total{{kind=\"{kind}\"}}"
            )),
            0.0,
            "no {kind} write after a restart:\n{}",
            op.log()
        );
    }
    let after = secret(&client).await?;
    assert_eq!(
        after.metadata.resource_version,
        owned.metadata.resource_version
    );
    assert_eq!(
        lease(&client).await?.metadata.owner_references.as_ref(),
        Some(&want)
    );
    assert!(
        op.log().contains("owned by this Deployment"),
        "{}",
        op.log()
    );
    Ok(())
}
