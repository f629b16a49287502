//! The policy reconciler: each `McpGuardPolicy` becomes the ConfigMap `mcp-guard-policy-<name>`
//! (key `policy.json`, the compiled policy), and its status says whether it compiled.
//!
//! * The ConfigMap is written with server-side apply under [`FIELD_MANAGER`], only when its content,
//!   our annotations or the owner reference differ. An invalid policy leaves the last good ConfigMap in
//!   place, so running sidecars keep enforcing it, and its status lists every error.
//! * The status (`Ready` condition, `observedGeneration`, `configMap`, `guardedPods`) is written only
//!   when it changed, and Events are published only with a write: a restart does no writes.
//! * Errors are retried with exponential backoff per policy (1 s doubling to 5 min) and counted.
//!
//! Policies are read as dynamic objects and parsed by `mcp_guard_policy::load::parse_spec`, so one
//! policy the operator cannot decode becomes an `InvalidPolicy` status instead of stopping the watch.

pub mod desired;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource};
use mcp_guard_crds::McpGuardPolicy;
use mcp_guard_crds::names::{ANNOTATION_POLICY, LABEL_GUARDED, config_map_name};
use serde_json::json;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, ReconcileResult};
use desired::{Evaluated, MANAGED_BY};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "mcp-guard-operator";
/// How often a policy is reconciled when nothing happens (drift repair).
const RESYNC: Duration = Duration::from_secs(600);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the reconciler needs.
pub struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    resource: ApiResource,
    failures: Mutex<HashMap<ObjectRef<DynamicObject>, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, identity: &str) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            resource: policy_resource(),
            failures: Mutex::default(),
        })
    }
}

/// The McpGuardPolicy API resource (for dynamic access).
pub fn policy_resource() -> ApiResource {
    ApiResource::erase::<McpGuardPolicy>(&())
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let ar = ctx.resource.clone();
    let policies = Api::<DynamicObject>::all_with(client.clone(), &ar);
    let config_maps = Api::<ConfigMap>::all(client.clone());
    let pods = Api::<Pod>::all(client);
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let guarded = format!("{LABEL_GUARDED}=true");
    let pod_ar = ar.clone();
    Controller::new_with(policies, watcher::Config::default(), ar)
        .owns(config_maps, watcher::Config::default().labels(&managed))
        .watches(
            pods,
            watcher::Config::default().labels(&guarded),
            move |pod| {
                let ns = pod.metadata.namespace.as_deref()?;
                let name = pod.metadata.annotations.as_ref()?.get(ANNOTATION_POLICY)?;
                Some(ObjectRef::new_with(name, pod_ar.clone()).within(ns))
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_policy(&obj, &ctx).await;
    let outcome = match &result {
        Ok(r) => *r,
        Err(_) => ReconcileResult::Error,
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&ObjectRef::from_obj_with(
            obj.as_ref(),
            ctx.resource.clone(),
        ));
    }
    Ok(Action::requeue(RESYNC))
}

fn error_policy(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(err.metric_label());
    let key = ObjectRef::from_obj_with(obj.as_ref(), ctx.resource.clone());
    let attempt = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key.clone()).or_default();
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(attempt);
    tracing::warn!(policy = %key, error = %err, attempt, retry_in = ?delay, "reconcile failed");
    // The first failure in a row is an Event on the policy (later ones are in the log and metrics).
    if attempt == 1 {
        let note = format!("{err}; retrying with backoff");
        tokio::spawn(async move {
            publish(&ctx, &obj, EventType::Warning, "ReconcileFailed", note).await;
        });
    }
    Action::requeue(delay)
}

/// 1 s, 2 s, 4 s, ... capped at five minutes.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(9)).min(BACKOFF_MAX)
}

async fn reconcile_policy(obj: &DynamicObject, ctx: &Context) -> Result<ReconcileResult> {
    if obj.metadata.deletion_timestamp.is_some() {
        // The ConfigMap is owned by the policy: the garbage collector removes it.
        return Ok(ReconcileResult::Unchanged);
    }
    let policy = desired::evaluate(obj).map_err(Error::Invalid)?;
    let cms = Api::<ConfigMap>::namespaced(ctx.client.clone(), &policy.namespace);
    let cm_name = config_map_name(&policy.name);
    let existing = cms.get_opt(&cm_name).await.map_err(Error::kube(format!(
        "reading ConfigMap {}/{cm_name}",
        policy.namespace
    )))?;

    let mut changed = false;
    let config_map = match &policy.compiled {
        Ok(json) => {
            let want = desired::config_map(&policy, json);
            if !existing
                .as_ref()
                .is_some_and(|e| desired::config_map_current(e, &want))
            {
                cms.patch(
                    &cm_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&want),
                )
                .await
                .map_err(Error::kube(format!(
                    "applying ConfigMap {}/{cm_name}",
                    policy.namespace
                )))?;
                ctx.metrics.wrote("configmap");
                changed = true;
                let note = format!(
                    "compiled into ConfigMap {cm_name} (generation {}, sha256 {})",
                    policy.generation.unwrap_or_default(),
                    &desired::sha256_hex(json)[..12]
                );
                publish(ctx, obj, EventType::Normal, "Compiled", note).await;
            }
            Some(cm_name)
        }
        Err(_) => existing.is_some().then_some(cm_name),
    };

    let guarded_pods = count_guarded_pods(ctx, &policy).await?;
    let previous = desired::current_status(obj);
    let status = desired::status(
        &policy,
        previous.as_ref(),
        config_map,
        guarded_pods,
        Timestamp::now(),
    );
    if previous.as_ref() != Some(&status) {
        let patch = json!({
            "apiVersion": ctx.resource.api_version,
            "kind": ctx.resource.kind,
            "status": status,
        });
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &policy.namespace, &ctx.resource)
            .patch_status(
                &policy.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::kube(format!(
                "writing the status of {}/{}",
                policy.namespace, policy.name
            )))?;
        ctx.metrics.wrote("status");
        changed = true;
        // One Warning per new generation that fails (or a valid policy turning invalid).
        let already_reported = previous.as_ref().is_some_and(|s| {
            s.observed_generation == policy.generation
                && s.conditions.iter().any(|c| c.status == "False")
        });
        if let (Err(errors), false) = (&policy.compiled, already_reported) {
            let note = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            publish(ctx, obj, EventType::Warning, "InvalidPolicy", note).await;
        }
    }
    Ok(match (&policy.compiled, changed) {
        (Err(_), _) => ReconcileResult::Invalid,
        (Ok(_), true) => ReconcileResult::Changed,
        (Ok(_), false) => ReconcileResult::Unchanged,
    })
}

/// Pods in the policy's namespace that the webhook injected with this policy.
async fn count_guarded_pods(ctx: &Context, policy: &Evaluated) -> Result<i32> {
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &policy.namespace)
        .list_metadata(&ListParams::default().labels(&format!("{LABEL_GUARDED}=true")))
        .await
        .map_err(Error::kube(format!(
            "listing guarded pods in {}",
            policy.namespace
        )))?;
    let n = pods
        .items
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_POLICY))
                    == Some(&policy.name)
        })
        .count();
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Publishes an Event about a policy; a failure to publish is logged, never fatal.
async fn publish(ctx: &Context, obj: &DynamicObject, type_: EventType, reason: &str, note: String) {
    let mut note = note;
    if note.len() > 1000 {
        let cut = (0..=1000)
            .rev()
            .find(|&i| note.is_char_boundary(i))
            .unwrap_or(0);
        note.truncate(cut);
        note.push('…');
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    match ctx
        .recorder
        .publish(&event, &obj.object_ref(&ctx.resource))
        .await
    {
        Ok(()) => ctx.metrics.wrote("event"),
        Err(e) => tracing::warn!(error = %e, reason, "could not publish an Event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
