//! What a policy's ConfigMap and status should be: pure functions of the policy object (and, for the
//! status, the pods counted and the clock), so the reconciler's decisions are tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use mcp_guard_crds::McpGuardPolicyStatus;
use mcp_guard_crds::names::{
    ANNOTATION_POLICY, ANNOTATION_POLICY_GENERATION, ANNOTATION_POLICY_SHA256, POLICY_KEY,
    config_map_name,
};
use mcp_guard_crds::ready_condition;
use mcp_guard_policy::compiled::PolicySource;
use mcp_guard_policy::load::{API_VERSION, KIND, check_name, parse_spec};
use mcp_guard_policy::{CompiledPolicy, PolicyError, compile};
use sha2::{Digest, Sha256};

/// Label on every ConfigMap the operator writes (the controller watches only these).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mcp-guard-operator");

/// A policy object, read and compiled.
#[derive(Debug)]
pub struct Evaluated {
    pub name: String,
    pub namespace: String,
    pub generation: Option<i64>,
    pub uid: String,
    /// The compiled `policy.json`, or every error with its field path.
    pub compiled: Result<String, Vec<PolicyError>>,
}

/// Reads and compiles a policy as the API server stored it. Never fails: a policy that cannot be read
/// is an invalid policy, reported in its status with the field paths.
pub fn evaluate(obj: &DynamicObject) -> Result<Evaluated, String> {
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or("policy without metadata.name")?;
    let namespace = obj
        .metadata
        .namespace
        .clone()
        .ok_or("policy without metadata.namespace")?;
    let uid = obj
        .metadata
        .uid
        .clone()
        .ok_or("policy without metadata.uid")?;
    let generation = obj.metadata.generation;
    let spec = obj.data.get("spec").cloned().unwrap_or_default();
    let compiled = check(Some(&name), spec).map(|c| {
        c.with_source(PolicySource {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            generation,
        })
        .to_json()
    });
    Ok(Evaluated {
        name,
        namespace,
        generation,
        uid,
        compiled,
    })
}

/// Validates and compiles a policy's name (when known) and spec, collecting every error with its path.
pub fn check(
    name: Option<&str>,
    spec: serde_json::Value,
) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let mut errors = Vec::new();
    if let Some(Err(e)) = name.map(check_name) {
        errors.push(PolicyError::new("metadata.name", e));
    }
    match parse_spec(spec).and_then(|spec| compile(&spec)) {
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors)
        }
        Ok(_) if !errors.is_empty() => Err(errors),
        Ok(c) => Ok(c),
    }
}

/// Hex SHA-256 of a `policy.json`.
pub fn sha256_hex(json: &str) -> String {
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// The ConfigMap for a policy that compiled to `json`.
pub fn config_map(policy: &Evaluated, json: &str) -> ConfigMap {
    let mut annotations = BTreeMap::new();
    if let Some(g) = policy.generation {
        annotations.insert(ANNOTATION_POLICY_GENERATION.to_owned(), g.to_string());
    }
    annotations.insert(ANNOTATION_POLICY_SHA256.to_owned(), sha256_hex(json));
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (ANNOTATION_POLICY.to_owned(), policy.name.clone()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&policy.name)),
            namespace: Some(policy.namespace.clone()),
            annotations: Some(annotations),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.to_owned(),
                kind: KIND.to_owned(),
                name: policy.name.clone(),
                uid: policy.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(POLICY_KEY.to_owned(), json.to_owned())])),
        ..ConfigMap::default()
    }
}

/// Whether `existing` already carries everything in `desired`: the data, our annotations and labels,
/// and the owner reference. (Other fields, added by people or other tools, do not matter.)
pub fn config_map_current(existing: &ConfigMap, desired: &ConfigMap) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    existing.data == desired.data
        && subset(
            &desired.metadata.annotations,
            &existing.metadata.annotations,
        )
        && subset(&desired.metadata.labels, &existing.metadata.labels)
        && desired.metadata.owner_references.iter().flatten().all(|o| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|e| e == o)
        })
}

/// The status a policy should have. `config_map` is the ConfigMap the pods use (for an invalid policy,
/// the last good one if it exists).
pub fn status(
    policy: &Evaluated,
    previous: Option<&McpGuardPolicyStatus>,
    config_map: Option<String>,
    guarded_pods: i32,
    now: Timestamp,
) -> McpGuardPolicyStatus {
    let previous_ready = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let result = policy.compiled.as_ref().map(|_| ()).map_err(Vec::as_slice);
    McpGuardPolicyStatus {
        conditions: vec![ready_condition(
            result,
            policy.generation,
            previous_ready,
            now,
        )],
        observed_generation: policy.generation,
        config_map,
        guarded_pods: Some(guarded_pods),
    }
}

/// The status as stored on the object, if it can be read.
pub fn current_status(obj: &DynamicObject) -> Option<McpGuardPolicyStatus> {
    obj.data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: serde_json::Value, generation: i64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "fs", "namespace": "mcp", "uid": "u-1", "generation": generation},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_policy_compiles_into_an_owned_config_map() {
        let p = evaluate(&policy(json!({"mode": "enforce"}), 3)).unwrap();
        let json = p.compiled.as_ref().unwrap();
        let cm = config_map(&p, json);
        assert_eq!(cm.metadata.name.as_deref(), Some("mcp-guard-policy-fs"));
        let ann = cm.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_POLICY_GENERATION], "3");
        assert_eq!(ann[ANNOTATION_POLICY_SHA256], sha256_hex(json));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), (KIND, "u-1"));
        let compiled: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(compiled["source"]["generation"], 3, "{compiled}");
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let p = evaluate(&policy(
            json!({"mode": "block", "rules": [{"id": "r", "tools": ["*"], "args": [{"pointer": "/p", "regex": "x"}], "action": "deny"}]}),
            1,
        ))
        .unwrap();
        let errors = p.compiled.unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.mode", "spec.rules[0].action"], "{errors:?}");
    }

    #[test]
    fn an_overlong_name_is_invalid() {
        let mut obj = policy(json!({}), 1);
        obj.metadata.name = Some("x".repeat(240));
        let errors = evaluate(&obj).unwrap().compiled.unwrap_err();
        assert_eq!(errors[0].path, "metadata.name");
    }

    #[test]
    fn a_config_map_with_extra_fields_is_current_and_a_changed_one_is_not() {
        let p = evaluate(&policy(json!({}), 1)).unwrap();
        let desired = config_map(&p, p.compiled.as_ref().unwrap());
        let mut existing = desired.clone();
        existing
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("someone/else".into(), "x".into());
        assert!(config_map_current(&existing, &desired));
        existing.data = Some(BTreeMap::from([(POLICY_KEY.into(), "{}".into())]));
        assert!(!config_map_current(&existing, &desired));
        let mut unowned = desired.clone();
        unowned.metadata.owner_references = None;
        assert!(!config_map_current(&unowned, &desired));
    }

    #[test]
    fn status_is_stable_when_nothing_changed() {
        let p = evaluate(&policy(json!({}), 2)).unwrap();
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(9_000).unwrap();
        let first = status(&p, None, Some("mcp-guard-policy-fs".into()), 1, t0);
        let again = status(&p, Some(&first), Some("mcp-guard-policy-fs".into()), 1, t1);
        assert_eq!(
            first, again,
            "a later reconcile must not rewrite the status"
        );
        assert_eq!(first.observed_generation, Some(2));
    }
}
