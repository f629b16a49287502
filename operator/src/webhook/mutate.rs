//! The pod-mutating webhook's handler: decodes the request, looks up the pod's namespace and the
//! policy it names, runs the pure [`inject`], and turns the injected pod into a JSON patch.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::ObjectRef;

use super::State;
use crate::inject::{self, Outcome, inject};
use crate::metrics::AdmissionResult;
use crate::reconcile::policy_resource;

/// Judges one AdmissionReview body.
pub async fn review(
    state: &State,
    body: &[u8],
) -> Result<(AdmissionResponse, AdmissionResult), String> {
    let review: AdmissionReview<Pod> = serde_json::from_slice(body)
        .map_err(|e| format!("not an AdmissionReview of a Pod: {e}"))?;
    let req: AdmissionRequest<Pod> = review
        .try_into()
        .map_err(|_| "AdmissionReview without a request".to_owned())?;
    let resp = AdmissionResponse::from(&req);
    let (Some(pod), Operation::Create) = (req.object.as_ref(), &req.operation) else {
        return Ok((resp, AdmissionResult::Allowed));
    };
    let namespace = req
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    let ns = match lookup_namespace(state, &namespace).await {
        Ok(ns) => ns,
        // Its labels may opt the pod in: without them the pod cannot be judged, so it waits.
        Err(e) => {
            return Ok((
                resp.deny(format!("mcp-guard: {e}; try again")),
                AdmissionResult::Denied,
            ));
        }
    };
    let empty = BTreeMap::new();
    let info = inject::Namespace {
        name: &namespace,
        labels: ns
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&empty),
        annotations: ns
            .as_ref()
            .and_then(|n| n.metadata.annotations.as_ref())
            .unwrap_or(&empty),
    };

    // The cache answers almost always; a policy created a moment ago may not be in it yet, so a
    // miss is confirmed with a GET before the pod is refused.
    let mut confirmed = BTreeSet::new();
    let outcome = loop {
        let (outcome, missed) = {
            let asked = RefCell::new(Vec::new());
            let exists = |name: &str| {
                let hit = confirmed.contains(name) || in_cache(state, &namespace, name);
                if !hit {
                    asked.borrow_mut().push(name.to_owned());
                }
                hit
            };
            let outcome = inject(pod, &info, &exists, &state.inject);
            (outcome, asked.into_inner())
        };
        if outcome.is_ok() || missed.is_empty() {
            break outcome;
        }
        let mut found = false;
        for name in missed {
            if !confirmed.contains(&name) && policy_exists_now(state, &namespace, &name).await {
                confirmed.insert(name);
                found = true;
            }
        }
        if !found {
            break outcome;
        }
    };

    Ok(match outcome {
        Ok(Outcome::Skip | Outcome::AlreadyInjected) => (resp, AdmissionResult::Allowed),
        Ok(Outcome::Inject(mutated)) => {
            let before = serde_json::to_value(pod).map_err(|e| e.to_string())?;
            let after = serde_json::to_value(&*mutated).map_err(|e| e.to_string())?;
            let patch = json_patch::diff(&before, &after);
            match resp.clone().with_patch(patch) {
                Ok(r) => (r, AdmissionResult::Mutated),
                Err(e) => (
                    resp.deny(format!("mcp-guard could not encode the injection: {e}")),
                    AdmissionResult::Denied,
                ),
            }
        }
        Err(e) => {
            tracing::info!(namespace, pod = pod.metadata.name.as_deref().or(pod.metadata.generate_name.as_deref()), error = %e, "pod refused");
            (
                resp.deny(format!("mcp-guard: {e}")),
                AdmissionResult::Denied,
            )
        }
    })
}

fn in_cache(state: &State, namespace: &str, name: &str) -> bool {
    state
        .policies
        .get(&ObjectRef::new_with(name, policy_resource()).within(namespace))
        .is_some()
}

async fn policy_exists_now(state: &State, namespace: &str, name: &str) -> bool {
    let api =
        Api::<DynamicObject>::namespaced_with(state.client.clone(), namespace, &policy_resource());
    matches!(api.get_metadata_opt(name).await, Ok(Some(_)))
}

async fn lookup_namespace(
    state: &State,
    name: &str,
) -> Result<Option<std::sync::Arc<Namespace>>, String> {
    if let Some(ns) = state.namespaces.get(&ObjectRef::new(name)) {
        return Ok(Some(ns));
    }
    Api::<Namespace>::all(state.client.clone())
        .get_opt(name)
        .await
        .map(|ns| ns.map(std::sync::Arc::new))
        .map_err(|e| format!("cannot read namespace {name}: {e}"))
}
