//! The node's guarded pods and their policies, and the desired kernel state they add up to.
//!
//! Pure apart from the [`CgroupFs`] and [`PathResolver`] it is handed (real ones on the node, fakes in
//! tests). Containers whose cgroup (or first process) is not there yet are counted as pending and
//! looked up again on the next call; found ones are cached by container ID until [`NodeState::forget_cgroups`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use mcp_guard_policy::compiled::Runtime;

use super::pod::{LoadedPolicy, PodInfo};
use crate::cgroup::{CgroupError, CgroupFs, ContainerId, Layout, locate};
use crate::model::Slot;
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

/// What a desired-state computation ran into.
#[derive(Debug, Default)]
pub struct Summary {
    /// Containers whose cgroup or process is not there yet (retry).
    pub pending: Vec<String>,
    /// Containers that will never be found (unknown runtime, I/O errors).
    pub errors: Vec<String>,
    /// Denied paths missing in some container.
    pub skipped: Vec<Skipped>,
    /// Policies left unenforced because every slot is taken.
    pub exhausted: Vec<SlotsExhausted>,
    /// Pods referring to a policy that has no ConfigMap.
    pub missing_policies: BTreeSet<PolicyRef>,
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
    owners: HashMap<u64, Owner>,
    slots: SlotAllocator,
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
            owners: HashMap::new(),
            slots: SlotAllocator::new(),
        }
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
    }

    /// Who owns a guarded cgroup (as of the last computation).
    pub fn owner(&self, cgroup_id: u64) -> Option<&Owner> {
        self.owners.get(&cgroup_id)
    }

    /// The desired kernel state. `current` is what the kernel guards now (slot hints after a restart,
    /// and the cgroups to keep while a policy is pending).
    pub fn desired(
        &mut self,
        fs: &dyn CgroupFs,
        resolver: &dyn PathResolver,
        current: &BTreeMap<u64, Slot>,
    ) -> (Desired, Summary) {
        let mut summary = Summary::default();
        let mut groups: BTreeMap<PolicyRef, Vec<Found>> = BTreeMap::new();
        let mut owners = HashMap::new();
        let mut live = HashMap::new();
        for pod in self.pods.values() {
            let Some(name) = &pod.policy else { continue };
            let policy = PolicyRef::new(&pod.namespace, name);
            let group = groups.entry(policy).or_default();
            summary.errors.extend(
                pod.unreadable
                    .iter()
                    .map(|c| format!("{}/{}: {c}", pod.namespace, pod.name)),
            );
            for c in &pod.containers {
                let label = format!("{}/{}/{}", pod.namespace, pod.name, c.name);
                let found = match self.found.get(&c.id) {
                    Some(f) => Ok(f.clone()),
                    None => find(fs, &self.layout, pod, &c.id),
                };
                match found {
                    Ok(f) => {
                        owners.insert(
                            f.cgroup_id,
                            Owner {
                                namespace: Some(pod.namespace.clone()),
                                pod: Some(pod.name.clone()),
                                container: Some(c.name.clone()),
                                policy: Some(name.clone()),
                            },
                        );
                        live.insert(c.id.clone(), f.clone());
                        group.push(f);
                    }
                    Err(CgroupError::NotFound { .. }) => summary.pending.push(label),
                    Err(e) => summary.errors.push(format!("{label}: {e}")),
                }
            }
        }
        self.found = live;
        self.owners = owners;
        self.slots.retain(|p| groups.contains_key(p));

        let mut desired = Desired::default();
        for (policy, members) in &groups {
            let state = self.policies.get(policy).unwrap_or(&PolicyState::Pending);
            if let PolicyState::Missing = state {
                summary.missing_policies.insert(policy.clone());
                continue;
            }
            // The slot its cgroups already carry (after a restart) is reserved even while pending.
            let hint = members
                .iter()
                .find_map(|f| current.get(&f.cgroup_id).copied());
            let slot = match self.slots.allocate(policy, hint) {
                Ok(slot) => slot,
                Err(e) => {
                    summary.exhausted.push(e);
                    continue;
                }
            };
            let PolicyState::Loaded(loaded) = state else {
                desired.keep.extend(
                    members
                        .iter()
                        .map(|f| f.cgroup_id)
                        .filter(|id| current.contains_key(id)),
                );
                continue;
            };
            if members.is_empty() {
                continue;
            }
            let roots: Vec<PathBuf> = members
                .iter()
                .map(|f| self.proc_root.join(f.pid.to_string()).join("root"))
                .collect();
            let runtime = enforced_runtime(&loaded.runtime, self.enforcement);
            let resolved = slot_rules(&runtime, &roots, resolver);
            summary.skipped.extend(resolved.skipped);
            let rules = self.enforcement.restrict(resolved.rules);
            if is_empty(&rules) {
                continue;
            }
            desired.rules.insert(slot, rules);
            for f in members {
                desired.cgroups.insert(f.cgroup_id, slot);
            }
        }
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
