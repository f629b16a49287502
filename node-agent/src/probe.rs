//! What the kernel allows, and what the agent therefore enforces.
//!
//! The BPF side probes each feature at start (cgroup v2 mounted; a trivial LSM program actually
//! loads, since `bpf` in the LSM list is no proof; a sock_addr program attaches) and hands the raw
//! results here as [`Capabilities`]. [`assess`] decides what to enforce and words the report: one log
//! line per feature, the gauge `mcp_guard_agent_capability{feature}`, and the text of a Warning Event
//! on the Node when something is missing. A missing feature is never fatal: the agent enforces the
//! rest and says what it cannot.

use crate::metrics::Metrics;
use crate::model::SlotRules;

/// A kernel feature the agent depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// A cgroup v2 hierarchy: every rule is scoped by cgroup v2 ids.
    CgroupV2,
    /// BPF LSM programs (`file_open`, `bprm_check_security`).
    BpfLsm,
    /// cgroup `sock_addr` programs (`connect4/6`, `bind4/6`).
    SockAddr,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Self::CgroupV2, Self::BpfLsm, Self::SockAddr];

    /// The `feature` label of `mcp_guard_agent_capability`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CgroupV2 => "cgroup_v2",
            Self::BpfLsm => "bpf_lsm",
            Self::SockAddr => "cgroup_sock_addr",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::CgroupV2 => "cgroup v2",
            Self::BpfLsm => "BPF LSM",
            Self::SockAddr => "cgroup sock_addr programs",
        }
    }

    fn governs(self) -> &'static str {
        match self {
            Self::CgroupV2 => "every runtime rule",
            Self::BpfLsm => "runtime.files.deny and runtime.exec.deny",
            Self::SockAddr => "runtime.network.egress and runtime.network.confineListeners",
        }
    }
}

/// The raw result of probing one feature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    pub available: bool,
    /// Why it is unavailable (the error the kernel gave), when it is not.
    pub error: Option<String>,
}

impl Probe {
    pub fn available() -> Self {
        Self {
            available: true,
            error: None,
        }
    }

    pub fn unavailable(error: impl Into<String>) -> Self {
        Self {
            available: false,
            error: Some(error.into()),
        }
    }
}

/// What the BPF side found at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub cgroup_v2: Probe,
    pub bpf_lsm: Probe,
    pub sock_addr: Probe,
}

impl Capabilities {
    pub fn get(&self, feature: Feature) -> &Probe {
        match feature {
            Feature::CgroupV2 => &self.cgroup_v2,
            Feature::BpfLsm => &self.bpf_lsm,
            Feature::SockAddr => &self.sock_addr,
        }
    }
}

/// Which kinds of rules are enforced on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// `files.deny` (LSM `file_open`).
    pub files: bool,
    /// `exec.deny` (LSM `bprm_check_security`).
    pub exec: bool,
    /// `network.egress` (`connect4/6`).
    pub egress: bool,
    /// `network.confineListeners` (`bind4/6`).
    pub listeners: bool,
}

impl Enforcement {
    /// Everything (a kernel with every feature).
    pub fn all() -> Self {
        Self {
            files: true,
            exec: true,
            egress: true,
            listeners: true,
        }
    }

    pub fn any(&self) -> bool {
        self.files || self.exec || self.egress || self.listeners
    }

    /// Drops the parts of `rules` this node cannot enforce (so nothing resolves or stores them).
    pub fn restrict(&self, mut rules: SlotRules) -> SlotRules {
        if !self.files {
            rules.files.clear();
        }
        if !self.exec {
            rules.exec.clear();
        }
        if !self.egress {
            rules.egress_allow.clear();
            rules.egress_deny.clear();
            rules.deny_ports.clear();
        }
        if !self.listeners {
            rules.confine_listeners = false;
        }
        rules
    }
}

/// A log line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// The text of the Kubernetes Event published on the Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// `EnforcementDegraded`.
    pub reason: &'static str,
    /// At most 1 kB, as the Events API requires.
    pub note: String,
}

/// The decision and its report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub capabilities: Capabilities,
    pub enforcement: Enforcement,
    /// One line per feature.
    pub lines: Vec<(Level, String)>,
    /// A Warning Event for the Node when a feature is unavailable; `None` when all are there.
    pub event: Option<NodeEvent>,
}

/// Decides what to enforce from what the kernel offers.
pub fn assess(capabilities: &Capabilities) -> Report {
    let v2 = capabilities.cgroup_v2.available;
    let enforcement = Enforcement {
        files: v2 && capabilities.bpf_lsm.available,
        exec: v2 && capabilities.bpf_lsm.available,
        egress: v2 && capabilities.sock_addr.available,
        listeners: v2 && capabilities.sock_addr.available,
    };
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for feature in Feature::ALL {
        let probe = capabilities.get(feature);
        if probe.available {
            lines.push((
                Level::Info,
                format!(
                    "{} available: enforcing {}",
                    feature.name(),
                    feature.governs()
                ),
            ));
        } else {
            let why = probe.error.as_deref().unwrap_or("probe failed");
            let line = format!(
                "{} unavailable ({why}): {} not enforced on this node",
                feature.name(),
                feature.governs()
            );
            lines.push((Level::Warn, line.clone()));
            missing.push(line);
        }
    }
    let event = (!missing.is_empty()).then(|| NodeEvent {
        reason: "EnforcementDegraded",
        note: truncate(format!("mcp-guard-agent: {}.", missing.join("; ")), 1000),
    });
    Report {
        capabilities: capabilities.clone(),
        enforcement,
        lines,
        event,
    }
}

impl Report {
    /// Adds something found degraded after the probe (older programs kept at load): a warning
    /// line, and a sentence of the Node's Warning Event (created when the probe found nothing
    /// missing).
    pub fn degrade(&mut self, line: impl Into<String>) {
        let line = line.into();
        self.lines.push((Level::Warn, line.clone()));
        let note = match self.event.take() {
            Some(ev) => format!("{} {line}.", ev.note),
            None => format!("mcp-guard-agent: {line}."),
        };
        self.event = Some(NodeEvent {
            reason: "EnforcementDegraded",
            note: truncate(note, 1000),
        });
    }

    /// Writes the log lines.
    pub fn log(&self) {
        for (level, line) in &self.lines {
            match level {
                Level::Info => tracing::info!("{line}"),
                Level::Warn => tracing::warn!("{line}"),
            }
        }
    }

    /// Sets `mcp_guard_agent_capability{feature}`.
    pub fn record(&self, metrics: &Metrics) {
        for feature in Feature::ALL {
            metrics.set_capability(feature.label(), self.capabilities.get(feature).available);
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = (0..=max.saturating_sub(3))
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
