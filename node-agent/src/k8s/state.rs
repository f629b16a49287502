//! The node's guarded pods and their policies, and the desired kernel state they add up to.
//!
//! Pure apart from the [`CgroupFs`] and [`PathResolver`] it is handed (real ones on the node, fakes in
//! tests). What is guarded is each pod's cgroup: it exists before anything of the pod runs, and the
//! BPF programs find it as an ancestor of every container's cgroup (at the pod cgroup's level, which
//! goes into [`Desired::levels`]), so every container, the proxy, init containers, native sidecars
//! and ephemeral containers, is confined from its first instruction. The pod's public ports (the
//! proxy's listeners) are opened for that cgroup. The containers' own cgroups are still looked up
//! when they run: file and exec rules resolve inside each one's root (so they apply from then on),
//! and events name the container. They are guarded themselves only when the pod's cgroup cannot
//! cover them: while programs of an older agent remain attached ([`OlderPrograms`]: those look up a
//! process's own cgroup only), and for pods whose cgroup lies beyond the levels the kernel looks up.
//!
//! Pods and containers whose cgroup (or first process) is not there yet are counted as pending and
//! looked up again on the next call; found ones are cached (by pod UID and container ID) until
//! [`NodeState::forget_cgroups`]. [`NodeState::pods_appeared`] looks only for the pending pods'
//! cgroups, cheaply enough to be polled while the kubelet creates them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use mcp_guard_policy::compiled::Runtime;

use super::pod::{LoadedPolicy, PodInfo};
use crate::cgroup::{CgroupError, CgroupFs, ContainerId, Layout, PodCgroup, locate, locate_pod};
use crate::model::{KernelEvent, Levels, MAX_LEVELS, Slot};
use crate::otlp::Owner;
use crate::probe::Enforcement;
use crate::rules::{PathResolver, Skipped, is_empty, slot_rules};
use crate::slots::{Desired, PolicyRef, SlotAllocator, SlotsExhausted};

/// What the agent knows of a policy a pod refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// Its ConfigMap has not been listed yet: leave its cgroups as they are.
    Pending,
    /// It has no ConfigMap: nothing to enforce.
    Missing,
    Loaded(LoadedPolicy),
}

/// A container's cgroup, found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    cgroup_id: u64,
    /// A process of the container: paths resolve under `/proc/<pid>/root`.
    pid: u32,
}

/// Programs of an older agent that stay attached because this build's could not replace them
/// ([`crate::bpf::AttachState::KeptOlder`]). They look up a process's own cgroup only, not its
/// ancestors: while any remains, each running container's own cgroup is guarded as well (with its
/// pod's slot and public ports), as the older agent did, instead of being retired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OlderPrograms {
    /// Some hook runs an older program.
    pub any: bool,
    /// `bind4` or `bind6` runs an older program: it knows no public ports and would confine the
    /// injected `http` proxy's listeners, so the proxy container gets no entry of its own (as the
    /// older agent did; the pod's entry still covers it for this build's programs).
    pub bind: bool,
}

impl OlderPrograms {
    /// From the hooks (`cgroup/bind4`, `lsm/file_open`, ...) that run an older program.
    pub fn from_hooks<'a>(hooks: impl IntoIterator<Item = &'a str>) -> Self {
        let mut older = Self::default();
        for hook in hooks {
            older.any = true;
            older.bind |= hook == "cgroup/bind4" || hook == "cgroup/bind6";
        }
        older
    }
}

/// What a desired-state computation ran into.
#[derive(Debug, Default)]
pub struct Summary {
    /// Pods whose cgroup is not there yet (the kubelet has not created it): polled.
    pub pending_pods: Vec<String>,
    /// Containers whose cgroup or process is not there yet (retry).
    pub pending: Vec<String>,
    /// Pods and containers that will never be found (unknown runtime, I/O errors).
    pub errors: Vec<String>,
    /// Pods whose cgroup lies at a level beyond the [`MAX_LEVELS`] the kernel looks up, with that
    /// level: not guarded through their pod cgroup (only their running containers' own cgroups are).
    pub beyond_levels: Vec<(String, u32)>,
    /// Denied paths missing in some container.
    pub skipped: Vec<Skipped>,
    /// Policies left unenforced because every slot is taken.
    pub exhausted: Vec<SlotsExhausted>,
    /// Pods referring to a policy that has no ConfigMap.
    pub missing_policies: BTreeSet<PolicyRef>,
    /// Pods about to be guarded although a container of theirs already runs unguarded (the agent
    /// was down or slow when it started): what it did before is not confined. With their cgroup id.
    pub late: Vec<(String, u64)>,
}

/// One guarded pod of a policy, found on the node.
#[derive(Debug)]
struct Member<'a> {
    label: String,
    pod: &'a PodInfo,
    cgroup: Option<PodCgroup>,
    /// Running containers found, with their names.
    containers: Vec<(Found, &'a str)>,
}

/// One pod of the desired state, before its level is known to be looked up.
#[derive(Debug)]
struct PodPlan {
    label: String,
    cgroup: PodCgroup,
    ports: Vec<u16>,
    /// `None`: its policy is pending, keep its entry as it is.
    slot: Option<Slot>,
    /// Running containers' cgroups, and whether each is the `http` proxy container.
    containers: Vec<(u64, bool)>,
    /// Guarded now although a container of it already ran unconfined.
    late: bool,
}

/// The node's pods, policies and slots.
#[derive(Debug)]
pub struct NodeState {
    layout: Layout,
    proc_root: PathBuf,
    enforcement: Enforcement,
    pods: BTreeMap<(String, String), PodInfo>,
    policies: BTreeMap<PolicyRef, PolicyState>,
    found: HashMap<ContainerId, Found>,
    found_pods: HashMap<String, PodCgroup>,
    owners: HashMap<u64, Owner>,
    slots: SlotAllocator,
    older: OlderPrograms,
    /// How many levels the kernel looks up ([`MAX_LEVELS`]; fewer in tests).
    max_levels: usize,
}

impl NodeState {
    /// `proc_root` is the host's `/proc` (the agent runs with the host PID namespace).
    pub fn new(layout: Layout, proc_root: impl Into<PathBuf>, enforcement: Enforcement) -> Self {
        Self {
            layout,
            proc_root: proc_root.into(),
            enforcement,
            pods: BTreeMap::new(),
            policies: BTreeMap::new(),
            found: HashMap::new(),
            found_pods: HashMap::new(),
            owners: HashMap::new(),
            slots: SlotAllocator::new(),
            older: OlderPrograms::default(),
            max_levels: MAX_LEVELS,
        }
    }

    /// Pretends the kernel looks up only `n` levels (pods beyond them are hard to lay out).
    #[cfg(test)]
    pub(crate) fn set_max_levels(&mut self, n: usize) {
        self.max_levels = n;
    }

    /// Says which older programs stay attached (see [`OlderPrograms`]).
    pub fn set_older_programs(&mut self, older: OlderPrograms) {
        self.older = older;
    }

    /// A pod, by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn upsert_pod(&mut self, pod: PodInfo) {
        self.pods
            .insert((pod.namespace.clone(), pod.name.clone()), pod);
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.pods.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Replaces every pod (after a full list).
    pub fn replace_pods(&mut self, pods: impl IntoIterator<Item = PodInfo>) {
        self.pods.clear();
        for pod in pods {
            self.upsert_pod(pod);
        }
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The policies the pods refer to: each needs its ConfigMap watched.
    pub fn wanted_policies(&self) -> BTreeSet<PolicyRef> {
        self.pods
            .values()
            .filter_map(|p| Some(PolicyRef::new(&p.namespace, p.policy.as_deref()?)))
            .collect()
    }

    pub fn set_policy(&mut self, policy: PolicyRef, state: PolicyState) {
        self.policies.insert(policy, state);
    }

    pub fn policy(&self, policy: &PolicyRef) -> Option<&PolicyState> {
        self.policies.get(policy)
    }

    /// Forgets policies no pod refers to any more.
    pub fn retain_policies(&mut self, wanted: &BTreeSet<PolicyRef>) {
        self.policies.retain(|p, _| wanted.contains(p));
    }

    /// Drops every cached cgroup lookup, so that the next computation finds them afresh.
    pub fn forget_cgroups(&mut self) {
        self.found.clear();
        self.found_pods.clear();
    }

    /// Who owns a guarded cgroup (as of the last computation): a pod's, or one of its containers'.
    pub fn owner(&self, cgroup_id: u64) -> Option<&Owner> {
        self.owners.get(&cgroup_id)
    }

    /// Who an event is about: the container whose cgroup it names when the agent has seen it
    /// running, else the pod whose cgroup guarded it.
    pub fn owner_of(&self, event: &KernelEvent) -> Option<&Owner> {
        self.owner(event.cgroup_id)
            .or_else(|| self.owner(event.guard_cgroup_id))
    }

    /// Whether a pending pod's cgroup has appeared (and is now cached): only the pending pods are
    /// looked up, a few `stat`s each, so this can be polled while pods start.
    pub fn pods_appeared(&mut self, fs: &dyn CgroupFs) -> bool {
        let mut appeared = false;
        for pod in self.pods.values() {
            if pod.policy.is_none() || pod.finished || self.found_pods.contains_key(&pod.uid) {
                continue;
            }
            if let Ok(found) = locate_pod(fs, &self.layout, pod.qos, &pod.uid) {
                self.found_pods.insert(pod.uid.clone(), found);
                appeared = true;
            }
        }
        appeared
    }

    /// Finds the pods' and their running containers' cgroups, grouped by policy.
    fn members(
        &mut self,
        fs: &dyn CgroupFs,
        summary: &mut Summary,
    ) -> BTreeMap<PolicyRef, Vec<Member<'_>>> {
        let mut groups: BTreeMap<PolicyRef, Vec<Member<'_>>> = BTreeMap::new();
        let mut live = HashMap::new();
        let mut live_pods = HashMap::new();
        let mut owners = HashMap::new();
        for pod in self.pods.values() {
            let Some(name) = &pod.policy else { continue };
            let group = groups
                .entry(PolicyRef::new(&pod.namespace, name))
                .or_default();
            if pod.finished {
                continue;
            }
            let label = format!("{}/{}", pod.namespace, pod.name);
            summary
                .errors
                .extend(pod.unreadable.iter().map(|c| format!("{label}: {c}")));
            let owner = |container: Option<&str>| Owner {
                namespace: Some(pod.namespace.clone()),
                pod: Some(pod.name.clone()),
                container: container.map(str::to_owned),
                policy: Some(name.clone()),
            };
            let cgroup = match self.found_pods.get(&pod.uid) {
                Some(f) => Ok(f.clone()),
                None => locate_pod(fs, &self.layout, pod.qos, &pod.uid),
            };
            let cgroup = match cgroup {
                Ok(found) => {
                    owners.insert(found.id, owner(None));
                    live_pods.insert(pod.uid.clone(), found.clone());
                    Some(found)
                }
                Err(CgroupError::PodNotFound { .. }) => {
                    summary.pending_pods.push(label.clone());
                    None
                }
                Err(e) => {
                    summary.errors.push(format!("{label}: {e}"));
                    None
                }
            };
            let mut containers = Vec::new();
            for c in &pod.containers {
                let found = match self.found.get(&c.id) {
                    Some(f) => Ok(f.clone()),
                    None => find(fs, &self.layout, pod, &c.id),
                };
                match found {
                    Ok(f) => {
                        owners.insert(f.cgroup_id, owner(Some(&c.name)));
                        live.insert(c.id.clone(), f.clone());
                        containers.push((f, c.name.as_str()));
                    }
                    Err(CgroupError::NotFound { .. }) => {
                        summary.pending.push(format!("{label}/{}", c.name));
                    }
                    Err(e) => summary.errors.push(format!("{label}/{}: {e}", c.name)),
                }
            }
            group.push(Member {
                label,
                pod,
                cgroup,
                containers,
            });
        }
        self.found = live;
        self.found_pods = live_pods;
        self.owners = owners;
        groups
    }

    /// The desired kernel state. `current` is what the kernel guards now (slot hints after a restart,
    /// the cgroups to keep while a policy is pending, container entries to retire).
    ///
    /// Each pod's cgroup is guarded, relying on its level. Pods at a level beyond the
    /// [`MAX_LEVELS`] lowest ones, and every pod while [`OlderPrograms`] remain, have their running
    /// containers' own cgroups guarded (with the pod's slot and public ports); otherwise container
    /// entries an older agent left are retired once the pod's entry replaces them.
    pub fn desired(
        &mut self,
        fs: &dyn CgroupFs,
        resolver: &dyn PathResolver,
        current: &BTreeMap<u64, Slot>,
    ) -> (Desired, Summary) {
        let mut summary = Summary::default();
        let (proc_root, enforcement) = (self.proc_root.clone(), self.enforcement);
        let (older, max_levels) = (self.older, self.max_levels);
        let mut slots = std::mem::take(&mut self.slots);
        let policies = std::mem::take(&mut self.policies);
        let groups = self.members(fs, &mut summary);
        slots.retain(|p| groups.contains_key(p));

        let mut desired = Desired::default();
        let mut plans: Vec<PodPlan> = Vec::new();
        for (policy, members) in &groups {
            let state = policies.get(policy).unwrap_or(&PolicyState::Pending);
            if let PolicyState::Missing = state {
                summary.missing_policies.insert(policy.clone());
                continue;
            }
            let pods: Vec<(&Member<'_>, &PodCgroup)> = members
                .iter()
                .filter_map(|m| Some((m, m.cgroup.as_ref()?)))
                .collect();
            let containers = || {
                members
                    .iter()
                    .flat_map(|m| m.containers.iter().map(|(f, _)| f))
            };
            // The slot its cgroups already carry (after a restart, or an upgrade from container
            // entries) is reserved even while pending.
            let hint = pods
                .iter()
                .map(|(_, c)| c.id)
                .chain(containers().map(|f| f.cgroup_id))
                .find_map(|id| current.get(&id).copied());
            let slot = match slots.allocate(policy, hint) {
                Ok(slot) => slot,
                Err(e) => {
                    summary.exhausted.push(e);
                    continue;
                }
            };
            let PolicyState::Loaded(loaded) = state else {
                for (m, c) in &pods {
                    if current.contains_key(&c.id) {
                        plans.push(PodPlan {
                            label: m.label.clone(),
                            cgroup: (*c).clone(),
                            ports: m.pod.public_ports.iter().copied().collect(),
                            slot: None,
                            containers: Vec::new(),
                            late: false,
                        });
                    }
                }
                desired.keep.extend(
                    containers()
                        .map(|f| f.cgroup_id)
                        .filter(|id| current.contains_key(id)),
                );
                continue;
            };
            if pods.is_empty() {
                continue;
            }
            let roots: Vec<PathBuf> = containers()
                .map(|f| proc_root.join(f.pid.to_string()).join("root"))
                .collect();
            let runtime = enforced_runtime(&loaded.runtime, enforcement);
            let resolved = slot_rules(&runtime, &roots, resolver);
            summary.skipped.extend(resolved.skipped);
            let rules = enforcement.restrict(resolved.rules);
            if is_empty(&rules) {
                continue;
            }
            // Only the network rules have a start to miss: file rules wait for a running container.
            let network = rules.confine_listeners
                || !rules.egress_allow.is_empty()
                || !rules.egress_deny.is_empty()
                || !rules.deny_ports.is_empty();
            desired.rules.insert(slot, rules);
            for (m, c) in &pods {
                let proxy = m.pod.proxy_container.as_deref();
                let containers: Vec<(u64, bool)> = m
                    .containers
                    .iter()
                    .map(|(f, name)| (f.cgroup_id, proxy == Some(*name)))
                    .collect();
                let confined = containers
                    .iter()
                    .any(|(cg, _)| current.get(cg) == Some(&slot));
                plans.push(PodPlan {
                    label: m.label.clone(),
                    cgroup: (*c).clone(),
                    ports: m.pod.public_ports.iter().copied().collect(),
                    slot: Some(slot),
                    late: network
                        && !current.contains_key(&c.id)
                        && !confined
                        && !m.pod.containers.is_empty(),
                    containers,
                });
            }
        }
        let levels: Levels = plans.iter().map(|p| p.cgroup.level).collect();
        desired.levels = levels.into_iter().take(max_levels).collect();
        for plan in plans {
            let (id, level) = (plan.cgroup.id, plan.cgroup.level);
            let looked_up = desired.levels.contains(&level);
            let ports = |cg: u64| plan.ports.iter().map(move |p| (cg, *p));
            let Some(slot) = plan.slot else {
                desired.keep.insert(id);
                desired.ports.extend(ports(id));
                continue;
            };
            if looked_up {
                desired.cgroups.insert(id, slot);
                desired.relies_on.insert(id, level);
                desired.ports.extend(ports(id));
                if plan.late {
                    summary.late.push((plan.label.clone(), id));
                }
            } else {
                summary.beyond_levels.push((plan.label.clone(), level));
            }
            let own_entries = older.any || !looked_up;
            for &(cg, proxy) in &plan.containers {
                if own_entries {
                    if older.bind && proxy {
                        continue;
                    }
                    desired.cgroups.insert(cg, slot);
                    desired.ports.extend(ports(cg));
                } else if current.get(&cg) == Some(&slot) {
                    desired.retire.insert(cg, id);
                }
            }
        }
        drop(groups);
        self.slots = slots;
        self.policies = policies;
        (desired, summary)
    }
}

/// Locates a container's cgroup and a process in it.
fn find(
    fs: &dyn CgroupFs,
    layout: &Layout,
    pod: &PodInfo,
    id: &ContainerId,
) -> Result<Found, CgroupError> {
    let cgroup = locate(fs, layout, pod.qos, &pod.uid, id)?;
    let not_yet = || CgroupError::NotFound {
        container: id.id.clone(),
    };
    // No process yet (or any more): the container is starting or stopping.
    let pid = fs.first_pid(&cgroup.path).map_err(|_| not_yet())?;
    Ok(Found {
        cgroup_id: cgroup.id,
        pid: pid.ok_or_else(not_yet)?,
    })
}

/// The runtime section without the path rules this node cannot enforce (so they are not resolved).
fn enforced_runtime(runtime: &Runtime, enforcement: Enforcement) -> Runtime {
    let mut runtime = runtime.clone();
    if !enforcement.files {
        runtime.files.deny.clear();
    }
    if !enforcement.exec {
        runtime.exec.deny.clear();
    }
    runtime
}
