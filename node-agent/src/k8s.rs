//! Kubernetes mode: keeps the kernel in step with the guarded pods of this node and their policies.
//!
//! * Pods: one watch, field selector `spec.nodeName=<node>`, label `mcpguard.io/guarded=true`.
//! * Policies: for each `(namespace, mcpguard.io/policy)` the pods name, one watch of the ConfigMap
//!   `mcp-guard-policy-<name>` in that namespace (field selector on its name), started when the first
//!   pod names it and stopped when the last one goes. Key `policy.json` is a `CompiledPolicy`; an
//!   invalid one keeps the last good rules.
//! * Every change recomputes the desired state ([`state::NodeState`]) and applies the difference
//!   through the [`Enforcer`] ([`Reconciler`]); pods leaving and ConfigMaps changing act both ways.
//!   What is guarded is each pod's cgroup, as soon as the pod is on this node: the kubelet creates
//!   it before the pod's sandbox and containers, and everything beneath it is confined from its
//!   first instruction (while programs of an older agent remain, the running containers' own
//!   cgroups too: [`state::OlderPrograms`]). Until it appears the pending pods' cgroups are polled every
//!   `pod_poll_interval` (for at most `pod_poll_window`, then with the other retries). Containers
//!   whose cgroup is not there yet (their file and exec rules resolve inside their root) and failed
//!   map updates are retried every `retry_interval`; every `resync_interval` all cgroups are looked
//!   up afresh.
//! * Nothing is touched before the first full pod list, and cgroups of a policy whose ConfigMap is
//!   not listed yet are left as they are, so a restarted agent adopts pinned state without a gap.
//! * Public ports come only from the proxy the operator injects, told by its image
//!   ([`Config::proxy_image`], see [`pod::public_ports`]): at most two per pod.
//! * Kernel events from `events` are enriched with their pod and delivered to the [`EventSink`].
//! * At start, the capability report is logged, recorded in metrics and, when something is missing,
//!   published as a Warning Event (`events.k8s.io/v1`) on the Node.
//!
//! RBAC: `pods` list/watch, `configmaps` list/watch (namespaces of guarded pods),
//! `events.k8s.io` `events` create/patch. The DaemonSet needs `hostPID` (paths resolve under
//! `/proc/<pid>/root`) and the host's cgroup v2 mount.

pub mod pod;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use mcp_guard_crds::names::{LABEL_GUARDED, config_map_name};
use tokio::sync::mpsc;

use crate::cgroup::{HostCgroupFs, Layout};
use crate::metrics::Metrics;
use crate::model::{Enforcer, KernelEvent, MAX_LEVELS};
use crate::otlp::EventSink;
use crate::probe::{NodeEvent, Report};
use crate::rules::HostResolver;
use crate::slots::{Op, PolicyRef, Reconciler};
use pod::{PodInfo, load_policy};
use state::{NodeState, OlderPrograms, PolicyState, Summary};

/// The name the agent reports Events under.
pub const REPORTER: &str = "mcp-guard-agent";

/// How the agent runs in Kubernetes.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node (`spec.nodeName`; from the downward API's `NODE_NAME`).
    pub node_name: String,
    /// The cgroup v2 mount and the kubelet's cgroup root.
    pub layout: Layout,
    /// The host's `/proc`.
    pub proc_root: PathBuf,
    /// The capability probe's decision.
    pub report: Report,
    /// How often pending containers and failed updates are retried.
    pub retry_interval: Duration,
    /// How often the cgroups of pods that are not there yet are looked for (the kubelet creates a
    /// pod's cgroup, then its sandbox and containers: the sooner the pod is guarded, the less of
    /// its start escapes, and guarding takes effect from then on).
    pub pod_poll_interval: Duration,
    /// How long a pod's cgroup is polled for, from when the pod is first seen without it (a pod
    /// the kubelet rejects never gets one); `retry_interval` applies after that.
    pub pod_poll_window: Duration,
    /// How often every cgroup is looked up afresh.
    pub resync_interval: Duration,
    /// The proxy image the operator injects (`--proxy-image`): only the proxy it runs opens public
    /// ports. `None`: no port is public.
    pub proxy_image: Option<String>,
    /// Programs of an older agent still attached (their hooks match containers' own cgroups only).
    pub older_programs: OlderPrograms,
}

impl Config {
    pub fn new(node_name: impl Into<String>, layout: Layout, report: Report) -> Self {
        Self {
            node_name: node_name.into(),
            layout,
            proc_root: PathBuf::from("/proc"),
            report,
            retry_interval: Duration::from_secs(2),
            pod_poll_interval: Duration::from_millis(20),
            pod_poll_window: Duration::from_secs(60),
            resync_interval: Duration::from_secs(60),
            proxy_image: None,
            older_programs: OlderPrograms::default(),
        }
    }
}

/// A ConfigMap watch; aborted when dropped.
#[derive(Debug)]
struct PolicyWatch(tokio::task::JoinHandle<()>);

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a ConfigMap watch reports: the ConfigMap, or `None` when there is none.
type PolicyUpdate = (PolicyRef, Option<ConfigMap>);

/// Runs Kubernetes mode until `shutdown` resolves. Returns an error only when the pod watch ends.
pub async fn run<E: Enforcer>(
    client: Client,
    config: Config,
    mut enforcer: E,
    events: impl Stream<Item = KernelEvent> + Unpin + Send,
    sink: EventSink,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.report.log();
    config.report.record(&metrics);
    if let Some(event) = &config.report.event
        && let Err(e) = publish_node_event(&client, &config.node_name, event).await
    {
        tracing::warn!(error = %e, "could not publish the capability Event on the Node");
    }

    let proxy_image = config.proxy_image.as_deref();
    if proxy_image.is_none() {
        tracing::warn!(
            "no --proxy-image (MCP_GUARD_PROXY_IMAGE) given: the agent cannot tell the proxy the \
             operator injects from a container a pod author named like it, so it opens no public \
             port; under confineListeners the injected proxy's wildcard --listen and --metrics \
             binds are confined to loopback like any other, and such pods are unreachable through \
             their Service. Pass the operator's --proxy-image to the agent"
        );
    }
    let selector = watcher::Config::default()
        .fields(&format!("spec.nodeName={}", config.node_name))
        .labels(&format!("{LABEL_GUARDED}=true"));
    let mut pods = watcher::watcher(Api::<Pod>::all(client.clone()), selector)
        .default_backoff()
        .boxed();
    let (cm_tx, mut cm_rx) = mpsc::unbounded_channel::<PolicyUpdate>();
    let mut watches: BTreeMap<PolicyRef, PolicyWatch> = BTreeMap::new();
    let mut state = NodeState::new(
        config.layout.clone(),
        config.proc_root.clone(),
        config.report.enforcement,
    );
    state.set_older_programs(config.older_programs);
    let mut reconciler = Reconciler::new();
    let mut listing: Option<Vec<PodInfo>> = None;
    let (mut synced, mut dirty, mut retry) = (false, false, false);
    let mut events = events.fuse();
    let mut tick = tokio::time::interval(config.retry_interval);
    let mut resync = tokio::time::interval(config.resync_interval);
    let mut poll = tokio::time::interval(config.pod_poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending_pods = PendingPods::default();
    tokio::pin!(shutdown);

    loop {
        let polling = pending_pods.polling(config.pod_poll_window);
        tokio::select! {
            () = &mut shutdown => break,
            ev = pods.next() => match ev {
                Some(Ok(Event::Init)) => listing = Some(Vec::new()),
                Some(Ok(Event::InitApply(p))) => {
                    listing.get_or_insert_default().extend(PodInfo::from_pod(&p, proxy_image));
                }
                Some(Ok(Event::InitDone)) => {
                    let listed = listing.take().unwrap_or_default();
                    for info in &listed {
                        note_refused_ports(&state, info);
                    }
                    state.replace_pods(listed);
                    (synced, dirty) = (true, true);
                }
                Some(Ok(Event::Apply(p))) => {
                    if let Some(info) = PodInfo::from_pod(&p, proxy_image) {
                        note_refused_ports(&state, &info);
                        state.upsert_pod(info);
                    }
                    dirty = true;
                }
                Some(Ok(Event::Delete(p))) => {
                    if let (Some(ns), Some(name)) = (&p.metadata.namespace, &p.metadata.name) {
                        state.remove_pod(ns, name);
                    }
                    dirty = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                None => anyhow::bail!("the pod watch ended"),
            },
            Some((policy, cm)) = cm_rx.recv() => {
                dirty |= policy_changed(&mut state, &metrics, policy, cm.as_ref());
            }
            Some(ev) = events.next() => sink.deliver(&ev, state.owner_of(&ev)),
            _ = tick.tick() => dirty |= retry,
            _ = poll.tick(), if polling => dirty |= state.pods_appeared(&HostCgroupFs),
            _ = resync.tick() => {
                state.forget_cgroups();
                dirty = true;
            }
        }
        let wanted = state.wanted_policies();
        watches.retain(|p, _| wanted.contains(p));
        state.retain_policies(&wanted);
        for policy in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = watches.entry(policy) {
                let policy = slot.key().clone();
                state.set_policy(policy.clone(), PolicyState::Pending);
                slot.insert(PolicyWatch(watch_policy(
                    client.clone(),
                    policy,
                    cm_tx.clone(),
                )));
                dirty = true;
            }
        }
        if dirty && synced {
            dirty = false;
            let summary = reconcile(&mut state, &mut reconciler, &mut enforcer, &metrics);
            retry = summary.retry;
            pending_pods.update(summary.pending_pods);
            metrics.set_ready(true);
        }
    }
    Ok(())
}

/// Logs why a pod's spec opened no public port, when that changed since the pod was last seen.
fn note_refused_ports(state: &NodeState, info: &PodInfo) {
    let before = state.pod(&info.namespace, &info.name);
    if info.refused_ports.is_empty()
        || before.is_some_and(|b| b.refused_ports == info.refused_ports)
    {
        return;
    }
    for why in &info.refused_ports {
        tracing::warn!(
            pod = %format!("{}/{}", info.namespace, info.name),
            "public port refused: {why}"
        );
    }
}

/// The pods whose cgroup is not there yet, and since when: polled for a while.
#[derive(Debug, Default)]
struct PendingPods(BTreeMap<String, tokio::time::Instant>);

impl PendingPods {
    fn update(&mut self, now_pending: BTreeSet<String>) {
        let now = tokio::time::Instant::now();
        self.0.retain(|pod, _| now_pending.contains(pod));
        for pod in now_pending {
            self.0.entry(pod).or_insert(now);
        }
    }

    /// Whether a pod has been pending for less than `window`.
    fn polling(&self, window: Duration) -> bool {
        self.0.values().any(|since| since.elapsed() < window)
    }
}

/// What a reconcile leaves to do.
struct Leftover {
    /// Something to retry on the next tick.
    retry: bool,
    /// Pods whose cgroup is not there yet.
    pending_pods: BTreeSet<String>,
}

/// Applies a ConfigMap update; whether anything changed.
fn policy_changed(
    state: &mut NodeState,
    metrics: &Metrics,
    policy: PolicyRef,
    cm: Option<&ConfigMap>,
) -> bool {
    let next = match cm.map(load_policy) {
        None => {
            if state.policy(&policy) != Some(&PolicyState::Missing) {
                tracing::warn!(%policy, "guarded pods name a policy that has no ConfigMap");
                metrics.policy_error("missing");
            }
            PolicyState::Missing
        }
        Some(Ok(loaded)) => {
            tracing::info!(%policy, sha256 = loaded.sha256.as_deref().unwrap_or("-"), "policy loaded");
            PolicyState::Loaded(loaded)
        }
        Some(Err(e)) => {
            tracing::warn!(%policy, error = %e, "invalid policy ConfigMap; keeping the last good rules");
            metrics.policy_error("invalid");
            return false;
        }
    };
    if state.policy(&policy) == Some(&next) {
        return false;
    }
    state.set_policy(policy, next);
    true
}

/// One reconcile with the real filesystem.
fn reconcile<E: Enforcer>(
    state: &mut NodeState,
    reconciler: &mut Reconciler,
    enforcer: &mut E,
    metrics: &Metrics,
) -> Leftover {
    let current = match Reconciler::current(enforcer) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the guarded cgroups; retrying");
            metrics.map_update_error("read_guarded");
            return Leftover {
                retry: true,
                pending_pods: BTreeSet::new(),
            };
        }
    };
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &current);
    report(&summary);
    let outcome = reconciler.reconcile(enforcer, &desired);
    for f in &outcome.failures {
        match &f.op {
            Some(Op::OpenPort(cg, port)) => tracing::warn!(
                cgroup = cg,
                port,
                error = %f.error,
                "could not open a public port; its pod is guarded anyway, so a wildcard bind to \
                 the port is confined to loopback until it opens (retrying)"
            ),
            Some(Op::SetLevels(levels)) => tracing::warn!(
                ?levels,
                error = %f.error,
                "could not set the cgroup levels; the pods that need a new level are not guarded \
                 yet and the container entries they replace stay (retrying)"
            ),
            op => tracing::warn!(?op, error = %f.error, "kernel map update failed; retrying"),
        }
        metrics.map_update_error(f.label());
    }
    for op in &outcome.deferred {
        tracing::debug!(?op, "deferred until the call it depends on succeeds");
    }
    if !outcome.applied.is_empty() {
        tracing::info!(
            updates = outcome.applied.len(),
            guarded = desired.cgroups.len(),
            public_ports = desired.ports.len(),
            levels = ?desired.levels,
            "kernel state updated"
        );
    }
    for (pod, id) in &summary.late {
        let guarded = |op: &Op| matches!(op, Op::Guard(cg, _) if cg == id);
        if outcome.applied.iter().any(guarded) {
            tracing::warn!(
                pod = %pod,
                "guarded a pod whose containers already ran: what they did before (binds, \
                 connects) was not confined; the agent was down or slow when the pod started"
            );
            metrics.late_pod();
        }
    }
    if let Some(n) = outcome.guarded {
        metrics.set_guarded_cgroups(n);
    }
    metrics.set_policies(desired.rules.len());
    metrics.set_pods(state.pod_count());
    metrics.set_pending_pods(summary.pending_pods.len());
    metrics.set_pending_containers(summary.pending.len());
    metrics.set_skipped_paths(summary.skipped.len());
    metrics.set_pods_beyond_levels(summary.beyond_levels.len());
    Leftover {
        retry: !summary.pending.is_empty()
            || !summary.pending_pods.is_empty()
            || !outcome.failures.is_empty()
            || !outcome.deferred.is_empty(),
        pending_pods: summary.pending_pods.into_iter().collect(),
    }
}

fn report(summary: &Summary) {
    for p in &summary.pending_pods {
        tracing::debug!(pod = %p, "pod cgroup not found yet; polling");
    }
    for c in &summary.pending {
        tracing::debug!(container = %c, "container cgroup not found yet; retrying");
    }
    for e in &summary.errors {
        tracing::warn!("cannot guard {e}");
    }
    for (pod, level) in &summary.beyond_levels {
        tracing::warn!(
            pod = %pod,
            level,
            "the pod's cgroup lies beyond the {MAX_LEVELS} cgroup levels the kernel looks up: the \
             pod is not guarded through it; only its running containers' own cgroups are, from \
             when the agent sees them running (not from their first instruction)"
        );
    }
    for s in &summary.skipped {
        tracing::debug!(path = %s.path, root = %s.root.display(), error = %s.error, "denied path not present; skipped");
    }
    for e in &summary.exhausted {
        tracing::error!("{e}");
    }
}

/// Watches one policy's ConfigMap, sending each state (and `None` when it does not exist).
fn watch_policy(
    client: Client,
    policy: PolicyRef,
    tx: mpsc::UnboundedSender<PolicyUpdate>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api = Api::<ConfigMap>::namespaced(client, &policy.namespace);
        let selector = watcher::Config::default()
            .fields(&format!("metadata.name={}", config_map_name(&policy.name)));
        let mut stream = watcher::watcher(api, selector).default_backoff().boxed();
        let mut listed: Option<ConfigMap> = None;
        while let Some(ev) = stream.next().await {
            let update = match ev {
                Ok(Event::Init) => {
                    listed = None;
                    continue;
                }
                Ok(Event::InitApply(cm)) => {
                    listed = Some(cm);
                    continue;
                }
                Ok(Event::InitDone) => listed.take(),
                Ok(Event::Apply(cm)) => Some(cm),
                Ok(Event::Delete(_)) => None,
                Err(e) => {
                    tracing::warn!(%policy, error = %e, "ConfigMap watch failed; retrying");
                    continue;
                }
            };
            if tx.send((policy.clone(), update)).is_err() {
                break;
            }
        }
    })
}

/// Publishes a Warning Event on the Node (kubelet convention: the Node's UID is its name).
///
/// The [`Recorder`] writes Events about cluster-scoped objects into `default`, which API servers
/// before 1.22 refuse for `events.k8s.io/v1` ("involvedObject.namespace ... does not match"); they
/// accept only `kube-system`. On that refusal the Event is created in `kube-system` instead, which
/// every version accepts and `kubectl describe node` finds as well.
pub async fn publish_node_event(
    client: &Client,
    node_name: &str,
    event: &NodeEvent,
) -> Result<(), kube::Error> {
    let reporter = Reporter {
        controller: REPORTER.to_owned(),
        instance: Some(node_name.to_owned()),
    };
    let reference = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Node".to_owned()),
        name: Some(node_name.to_owned()),
        uid: Some(node_name.to_owned()),
        ..ObjectReference::default()
    };
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: event.reason.to_owned(),
        note: Some(event.note.clone()),
        action: "ProbeKernel".to_owned(),
        secondary: None,
    };
    match Recorder::new(client.clone(), reporter)
        .publish(&ev, &reference)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let now = k8s_openapi::jiff::Timestamp::now();
            let fallback = k8s_openapi::api::events::v1::Event {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{node_name}.{:x}", now.as_nanosecond())),
                    namespace: Some("kube-system".to_owned()),
                    ..Default::default()
                },
                event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    now,
                )),
                type_: Some("Warning".to_owned()),
                reason: Some(ev.reason),
                note: ev.note,
                action: Some(ev.action),
                regarding: Some(reference),
                reporting_controller: Some(REPORTER.to_owned()),
                reporting_instance: Some(node_name.to_owned()),
                ..Default::default()
            };
            Api::namespaced(client.clone(), "kube-system")
                .create(&kube::api::PostParams::default(), &fallback)
                .await
                .map(|_| ())
        }
        other => other,
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
