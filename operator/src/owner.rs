//! The operator's own Deployment, as the owner of what it creates at run time (the webhook
//! certificate Secret and the leader Lease), so that the garbage collector deletes them with the
//! Deployment (`helm uninstall`).
//!
//! Found once at startup from the operator's pod: pod → its controller (a ReplicaSet) → that
//! ReplicaSet's controller (a Deployment). When a link is missing (not in a pod, not in a Deployment,
//! or not allowed to read them) the objects get no owner and outlive the operator, as before.
//!
//! The reference is not a controller reference and does not block the Deployment's deletion.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::Api;

/// Finds the Deployment that runs pod `namespace/pod`, through its ReplicaSet. `None` (logged once
/// at info, with the reason) when there is no such chain or it cannot be read.
pub async fn find(client: &Client, namespace: &str, pod: Option<&str>) -> Option<OwnerReference> {
    let found = match pod {
        Some(pod) => lookup(client, namespace, pod).await,
        None => Err("no pod name (--identity/POD_NAME)".to_owned()),
    };
    match found {
        Ok(owner) => {
            tracing::info!(deployment = %owner.name, uid = %owner.uid, "the certificate Secret and the leader Lease are owned by this Deployment");
            Some(owner)
        }
        Err(why) => {
            tracing::info!(reason = %why, "no owning Deployment found: the certificate Secret and the leader Lease get no owner");
            None
        }
    }
}

async fn lookup(client: &Client, namespace: &str, pod: &str) -> Result<OwnerReference, String> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .map_err(|e| format!("reading Pod {namespace}/{pod}: {e}"))?;
    let rs = controller(&pod.metadata, "ReplicaSet")?;
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .get(&rs.name)
        .await
        .map_err(|e| format!("reading ReplicaSet {namespace}/{}: {e}", rs.name))?;
    controller(&rs.metadata, "Deployment").map(deployment)
}

/// The controller reference of `meta`, which must point at an `apps` object of `kind`.
fn controller<'a>(meta: &'a ObjectMeta, kind: &str) -> Result<&'a OwnerReference, String> {
    let name = meta.name.as_deref().unwrap_or_default();
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .ok_or_else(|| format!("{name} has no controller"))?;
    if owner.kind != kind || !owner.api_version.starts_with("apps/") {
        return Err(format!(
            "{name} is controlled by {} {}, not a {kind}",
            owner.kind, owner.name
        ));
    }
    Ok(owner)
}

/// A plain (non-controller, non-blocking) reference to the Deployment `of` points at.
fn deployment(of: &OwnerReference) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "Deployment".to_owned(),
        name: of.name.clone(),
        uid: of.uid.clone(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// True when `meta` already names `owner` (by uid) among its owners.
pub fn is_owned_by(meta: &ObjectMeta, owner: &OwnerReference) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.uid)
}

/// `meta`'s owner references with `owner` added when it is missing; the others are kept.
pub fn with_owner(
    meta: &ObjectMeta,
    owner: Option<&OwnerReference>,
) -> Option<Vec<OwnerReference>> {
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    if let Some(owner) = owner.filter(|o| !is_owned_by(meta, o)) {
        refs.push(owner.clone());
    }
    (!refs.is_empty()).then_some(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: &str, name: &str, uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            controller,
            block_owner_deletion: Some(true),
        }
    }

    fn meta(refs: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some("obj".to_owned()),
            owner_references: Some(refs),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_controller_of_the_right_kind_is_followed() {
        let m = meta(vec![
            reference("Deployment", "other", "u0", None),
            reference("ReplicaSet", "op-5d8f", "u1", Some(true)),
        ]);
        assert_eq!(controller(&m, "ReplicaSet").unwrap().uid, "u1");
        let err = controller(&m, "Deployment").unwrap_err();
        assert!(err.contains("ReplicaSet op-5d8f"), "{err}");
        let bare = ObjectMeta::default();
        assert!(controller(&bare, "ReplicaSet").is_err());
        let not_controller = meta(vec![reference("ReplicaSet", "rs", "u1", Some(false))]);
        assert!(controller(&not_controller, "ReplicaSet").is_err());
        let mut foreign = reference("ReplicaSet", "rs", "u1", Some(true));
        foreign.api_version = "example.com/v1".to_owned();
        assert!(controller(&meta(vec![foreign]), "ReplicaSet").is_err());
    }

    #[test]
    fn the_owner_neither_controls_nor_blocks_deletion() {
        let owner = deployment(&reference("Deployment", "op", "u2", Some(true)));
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("apps/v1", "Deployment", "op")
        );
        assert_eq!(owner.uid, "u2");
        assert_eq!(owner.controller, Some(false));
        assert_eq!(owner.block_owner_deletion, Some(false));
    }

    #[test]
    fn the_owner_is_added_once_and_others_are_kept() {
        let owner = deployment(&reference("Deployment", "op", "u2", Some(true)));
        assert_eq!(with_owner(&ObjectMeta::default(), None), None);
        assert_eq!(
            with_owner(&ObjectMeta::default(), Some(&owner)),
            Some(vec![owner.clone()])
        );
        let other = reference("Something", "x", "u9", None);
        let m = meta(vec![other.clone()]);
        assert!(!is_owned_by(&m, &owner));
        assert_eq!(with_owner(&m, None), Some(vec![other.clone()]));
        let both = with_owner(&m, Some(&owner)).unwrap();
        assert_eq!(both, vec![other, owner.clone()]);
        let m = meta(both.clone());
        assert!(is_owned_by(&m, &owner));
        assert_eq!(with_owner(&m, Some(&owner)), Some(both));
    }
}
