//! The policy's status, written by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use mcp_guard_policy::PolicyError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The one condition type: whether the policy compiled and is published.
pub const CONDITION_READY: &str = "Ready";
/// `Ready=True`: the policy compiled and its ConfigMap holds the result.
pub const REASON_COMPILED: &str = "Compiled";
/// `Ready=False`: the policy has errors; the message lists each with its field path.
pub const REASON_INVALID_POLICY: &str = "InvalidPolicy";

/// Observed state of an McpGuardPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpGuardPolicyStatus {
    /// `Ready`: `True` with reason `Compiled`, or `False` with reason `InvalidPolicy` and a message
    /// listing every error with its field path (e.g. `spec.rules[1].args[0].regex: unclosed group at
    /// offset 7`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the ConfigMap holding the compiled policy (`mcp-guard-policy-<name>`, key `policy.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Number of running pods guarded by this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarded_pods: Option<i32>,
}

/// The `Ready` condition for a compilation result. `previous` keeps `lastTransitionTime` when the status
/// did not change, as Kubernetes conventions ask. Times are whole seconds, as the API server stores
/// them (`metav1.Time`), so a condition read back compares equal to the one written.
pub fn ready_condition(
    result: Result<(), &[PolicyError]>,
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match result {
        Ok(()) => ("True", REASON_COMPILED, "policy compiled".to_owned()),
        Err(errors) => (
            "False",
            REASON_INVALID_POLICY,
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(Timestamp::from_second(now.as_second()).unwrap_or(now)),
    };
    Condition {
        type_: CONDITION_READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_condition_reports_errors_and_keeps_transition_time() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let ok = ready_condition(Ok(()), Some(3), None, t0);
        assert_eq!(
            (ok.status.as_str(), ok.reason.as_str()),
            ("True", REASON_COMPILED)
        );
        assert_eq!(ok.observed_generation, Some(3));

        let same = ready_condition(Ok(()), Some(4), Some(&ok), t1);
        assert_eq!(
            same.last_transition_time,
            Time(t0),
            "unchanged status keeps its time"
        );

        let errors = [
            PolicyError::new("spec.rules[1].args[0].regex", "unclosed group at offset 7"),
            PolicyError::new("spec.ask.timeout", "`10` has no unit"),
        ];
        let bad = ready_condition(Err(&errors), Some(5), Some(&ok), t1);
        assert_eq!(bad.status, "False");
        assert_eq!(bad.reason, REASON_INVALID_POLICY);
        assert_eq!(
            bad.message,
            "spec.rules[1].args[0].regex: unclosed group at offset 7; spec.ask.timeout: `10` has no unit"
        );
        assert_eq!(bad.last_transition_time, Time(t1));

        let precise = Timestamp::new(3_000, 123_456_789).unwrap();
        let truncated = ready_condition(Ok(()), None, None, precise);
        assert_eq!(
            truncated.last_transition_time,
            Time(Timestamp::from_second(3_000).unwrap())
        );
    }
}
