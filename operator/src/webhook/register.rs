//! Keeps both webhook configurations pointing at the operator with the current CA bundle.
//!
//! * `--webhook-url` (outside a cluster): the operator owns both configurations and writes them
//!   whole, by URL, with server-side apply ([`desired_configurations`] is the pure part).
//! * In a cluster: the chart creates them (by Service, with selectors and failure policy); the
//!   operator only keeps each webhook's `clientConfig.caBundle` equal to its CA bundle.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use mcp_guard_crds::names::LABEL_INJECTION;
use serde_json::json;

use super::{MUTATE_PODS, VALIDATE_POLICIES};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::reconcile::FIELD_MANAGER;

/// Name of the pod-mutating webhook inside its configuration.
pub const POD_WEBHOOK: &str = "pods.mcpguard.io";
/// Name of the policy-validating webhook inside its configuration.
pub const POLICY_WEBHOOK: &str = "policies.mcpguard.io";

/// Both configurations as the operator registers them in `--webhook-url` mode.
///
/// Pods are judged in every namespace not labelled `mcpguard.io/injection: disabled`, failing closed:
/// a pod that asks for a guard is not admitted unguarded while the operator is unreachable.
pub fn desired_configurations(
    name: &str,
    base_url: &str,
    ca_bundle: &[u8],
    timeout_seconds: i32,
) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let base = base_url.trim_end_matches('/');
    let client = |path: &str| WebhookClientConfig {
        url: Some(format!("{base}{path}")),
        ca_bundle: Some(ByteString(ca_bundle.to_vec())),
        service: None,
    };
    let rule = |groups: &str, versions: &str, resource: &str, ops: &[&str]| RuleWithOperations {
        api_groups: Some(vec![groups.to_owned()]),
        api_versions: Some(vec![versions.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        operations: Some(ops.iter().map(|o| (*o).to_owned()).collect()),
        scope: Some("Namespaced".to_owned()),
    };
    let meta = ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                FIELD_MANAGER.to_owned(),
            )]
            .into(),
        ),
        ..ObjectMeta::default()
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: POD_WEBHOOK.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: client(MUTATE_PODS),
            rules: Some(vec![rule("", "v1", "pods", &["CREATE"])]),
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(timeout_seconds),
            reinvocation_policy: Some("Never".to_owned()),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: LABEL_INJECTION.to_owned(),
                    operator: "NotIn".to_owned(),
                    values: Some(vec!["disabled".to_owned()]),
                }]),
                match_labels: None,
            }),
            ..MutatingWebhook::default()
        }]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![ValidatingWebhook {
            name: POLICY_WEBHOOK.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: client(VALIDATE_POLICIES),
            rules: Some(vec![rule(
                "mcpguard.io",
                "v1alpha1",
                "mcpguardpolicies",
                &["CREATE", "UPDATE"],
            )]),
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(timeout_seconds),
            ..ValidatingWebhook::default()
        }]),
    };
    (mutating, validating)
}

/// Writes both configurations (`--webhook-url` mode) when they differ from what is stored.
pub async fn apply_configurations(
    client: &Client,
    metrics: &Metrics,
    name: &str,
    base_url: &str,
    ca_bundle: &[u8],
    timeout_seconds: i32,
) -> Result<()> {
    let (m, v) = desired_configurations(name, base_url, ca_bundle, timeout_seconds);
    apply_if_changed(Api::all(client.clone()), metrics, name, &m).await?;
    apply_if_changed(Api::all(client.clone()), metrics, name, &v).await
}

/// The two configuration kinds, seen as what the operator manages in them: each webhook's name
/// and client configuration.
trait Hooks:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    fn hooks(&self) -> Vec<(&String, &WebhookClientConfig)>;
}

impl Hooks for MutatingWebhookConfiguration {
    fn hooks(&self) -> Vec<(&String, &WebhookClientConfig)> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| (&w.name, &w.client_config))
            .collect()
    }
}

impl Hooks for ValidatingWebhookConfiguration {
    fn hooks(&self) -> Vec<(&String, &WebhookClientConfig)> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| (&w.name, &w.client_config))
            .collect()
    }
}

/// Applies `want` (server-side apply) unless every webhook's name, URL and bundle already match.
async fn apply_if_changed<K: Hooks>(
    api: Api<K>,
    metrics: &Metrics,
    name: &str,
    want: &K,
) -> Result<()> {
    let kind = K::kind(&());
    let current = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading {kind}")))?;
    if current.map(|c| endpoints(&c)) != Some(endpoints(want)) {
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(want),
        )
        .await
        .map_err(Error::kube(format!("applying {kind}")))?;
        metrics.wrote("webhook");
    }
    Ok(())
}

/// What must match for a registered configuration to be current: each webhook's name, URL and CA
/// bundle (the API server fills in defaults for the rest, so whole objects never compare equal).
fn endpoints<K: Hooks>(config: &K) -> Vec<(String, Option<String>, Option<Vec<u8>>)> {
    config
        .hooks()
        .into_iter()
        .map(|(n, c)| {
            (
                n.clone(),
                c.url.clone(),
                c.ca_bundle.as_ref().map(|b| b.0.clone()),
            )
        })
        .collect()
}

/// JSON-patch operations setting `caBundle` on each webhook whose bundle differs (each guarded by a
/// `test` of the webhook's name, so a concurrent reordering fails instead of patching the wrong one).
pub fn ca_bundle_patch(
    webhooks: &[(String, Option<Vec<u8>>)],
    ca_bundle: &[u8],
) -> Vec<serde_json::Value> {
    let encoded = serde_json::to_value(ByteString(ca_bundle.to_vec())).unwrap_or_default();
    let mut ops = Vec::new();
    for (i, (name, current)) in webhooks.iter().enumerate() {
        if current.as_deref() != Some(ca_bundle) {
            ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
            ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
        }
    }
    ops
}

/// Keeps `caBundle` current in both chart-created configurations. A missing configuration is not an
/// error (the chart may not have created it yet); it is retried on the next round.
pub async fn patch_ca_bundles(
    client: &Client,
    metrics: &Metrics,
    name: &str,
    ca_bundle: &[u8],
) -> Result<()> {
    patch_one::<MutatingWebhookConfiguration>(client, metrics, name, ca_bundle).await?;
    patch_one::<ValidatingWebhookConfiguration>(client, metrics, name, ca_bundle).await
}

async fn patch_one<K: Hooks>(
    client: &Client,
    metrics: &Metrics,
    name: &str,
    ca_bundle: &[u8],
) -> Result<()> {
    let kind = K::kind(&());
    let api = Api::<K>::all(client.clone());
    let Some(config) = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading {kind}")))?
    else {
        tracing::warn!(name, %kind, "webhook configuration not found; caBundle not set yet");
        return Ok(());
    };
    let hooks: Vec<_> = config
        .hooks()
        .into_iter()
        .map(|(n, c)| (n.clone(), c.ca_bundle.as_ref().map(|b| b.0.clone())))
        .collect();
    patch_if_needed(&api, metrics, name, &hooks, ca_bundle).await
}

async fn patch_if_needed<K>(
    api: &Api<K>,
    metrics: &Metrics,
    name: &str,
    hooks: &[(String, Option<Vec<u8>>)],
    ca_bundle: &[u8],
) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ops = ca_bundle_patch(hooks, ca_bundle);
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|source| {
            Error::Serialize {
                what: "caBundle patch",
                source,
            }
        })?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::kube(format!("patching caBundle of {name}")))?;
    metrics.wrote("webhook");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_mode_registers_both_paths_with_the_bundle() {
        let (m, v) = desired_configurations("mcp-guard", "https://127.0.0.1:9443/", b"PEM", 7);
        let mw = &m.webhooks.unwrap()[0];
        assert_eq!(
            mw.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate/pods")
        );
        assert_eq!(mw.client_config.ca_bundle.as_ref().unwrap().0, b"PEM");
        assert_eq!(mw.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(mw.timeout_seconds, Some(7));
        let vw = &v.webhooks.unwrap()[0];
        assert_eq!(
            vw.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate/mcpguardpolicies")
        );
        assert_eq!(
            vw.rules.as_ref().unwrap()[0].operations.as_ref().unwrap(),
            &["CREATE", "UPDATE"]
        );
    }

    #[test]
    fn only_stale_bundles_are_patched() {
        let hooks = vec![
            ("a.mcpguard.io".to_owned(), Some(b"NEW".to_vec())),
            ("b.mcpguard.io".to_owned(), Some(b"OLD".to_vec())),
            ("c.mcpguard.io".to_owned(), None),
        ];
        let ops = ca_bundle_patch(&hooks, b"NEW");
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0]["path"], "/webhooks/1/name");
        assert_eq!(ops[1]["path"], "/webhooks/1/clientConfig/caBundle");
        assert_eq!(ops[1]["value"], "TkVX", "base64 of NEW");
        assert_eq!(ops[3]["path"], "/webhooks/2/clientConfig/caBundle");
        assert!(ca_bundle_patch(&hooks[..1], b"NEW").is_empty());
    }
}
