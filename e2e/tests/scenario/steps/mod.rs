//! The nine steps of the scenario (issue 8), in order.

mod install;
mod kernel;
mod operator;
mod servers;

use std::time::Duration;

use anyhow::{Context, Result};
use mcp_guard_e2e::workspace_root;
use serde_json::{Value, json};

use crate::world::*;
use install::{s1_install, s2_policy, s9_uninstall};
use kernel::{s6_agent, s7_agent_restart};
use operator::s8_failover;
use servers::{s3_servers, s4_calls, s5_edit};

pub struct Step {
    pub name: &'static str,
    pub run: fn(&mut World) -> Result<()>,
    /// Runs even after a failure (cleanup).
    pub always: bool,
}

pub fn all() -> Vec<Step> {
    let step = |name, run| Step {
        name,
        run,
        always: false,
    };
    vec![
        step("s1_chart_installs_and_components_become_ready", s1_install),
        step(
            "s2_library_policy_becomes_ready_with_its_configmap",
            s2_policy,
        ),
        step(
            "s3_annotated_servers_are_injected_plain_one_untouched",
            s3_servers,
        ),
        step("s4_calls_through_the_proxy_allowed_and_blocked", s4_calls),
        step(
            "s5_policy_edit_changes_the_verdict_without_restart",
            s5_edit,
        ),
        step("s6_node_agent_enforces_in_the_pods_cgroups", s6_agent),
        step(
            "s7_enforcement_holds_while_the_agent_is_away",
            s7_agent_restart,
        ),
        step("s8_operator_leader_failover_keeps_admissions", s8_failover),
        Step {
            name: "s9_uninstall_removes_everything",
            run: s9_uninstall,
            always: true,
        },
    ]
}

const MINUTE: Duration = Duration::from_secs(60);

/// The library policy, as a JSON object, in the scenario's namespace, optionally with edits.
pub(super) fn library_policy() -> Result<Value> {
    let text =
        std::fs::read_to_string(workspace_root().join(format!("policies/library/{POLICY}.yaml")))?;
    let mut policy: Value = serde_saphyr::from_str(&text).context("library policy YAML")?;
    policy["metadata"]["namespace"] = json!(NS);
    Ok(policy)
}

/// Applies the whole policy (server-side, one field manager: what the object leaves out is removed).
pub(super) fn apply_policy(w: &mut World, policy: &Value) -> Result<()> {
    w.kubectl.apply(&policy.to_string(), "mcp-guard-e2e")?;
    w.policy = Some(policy.clone());
    Ok(())
}
