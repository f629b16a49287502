//! ASK by MCP elicitation. When a call's decision is `ask` (enforce mode) and the client declared the
//! `elicitation` capability at initialize, the proxy holds the call, sends the client an
//! `elicitation/create` request (the tool, redacted arguments, the rule and why), and waits up to
//! `spec.ask.timeout`. Accept forwards the held call; decline, cancel or an error answer refuses it;
//! no answer in time applies `spec.ask.fallback`. Clients without the capability get the fallback at
//! once.
//!
//! An approval is remembered for [`APPROVAL_TTL`], bound to a digest of the tool name and the exact
//! arguments and to the policy generation: the same call is not asked twice in a row, and an approval
//! cannot be replayed for other arguments or survive a policy change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::decision::Decision;

/// How long an approval stays valid for the same tool, arguments and policy generation.
pub const APPROVAL_TTL: Duration = Duration::from_secs(600);
/// Most calls held at once per session; more asks get the fallback.
pub const MAX_HELD: usize = 64;
/// Prefix of the ids of the proxy's own requests to the client.
pub const ID_PREFIX: &str = "mcp-guard-ask-";

/// A call waiting for the user's answer.
#[derive(Debug)]
pub struct HeldCall {
    /// The client's request id (raw JSON text).
    pub id: String,
    /// The request as the client sent it, forwarded unchanged when approved.
    pub raw: String,
    pub tool: String,
    pub args_text: String,
    pub decision: Decision,
    pub decide_us: u64,
    pub digest: [u8; 32],
    pub generation: Option<i64>,
    pub deadline: Instant,
    /// The call reads a taint source (see `CallInFlight`).
    pub taint_source: bool,
    /// OpenTelemetry: the call's span (see `CallInFlight`).
    pub span: crate::otel::CallSpan,
}

#[derive(Debug)]
struct Approval {
    digest: [u8; 32],
    generation: Option<i64>,
    expires: Instant,
}

/// How the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Decline,
    /// The client answered with an error (it could not ask): the fallback applies.
    Failed,
}

/// Per-session elicitation state.
#[derive(Debug, Default)]
pub struct Asks {
    /// The client declared `capabilities.elicitation` at initialize.
    pub client_can_elicit: bool,
    /// The transport can send the client a request while a call waits (stdio can, and Streamable
    /// HTTP sessions, on an SSE stream opened for the POST; the HTTP transport's shared no-session
    /// state and legacy HTTP+SSE cannot). Without it the fallback applies.
    pub transport_can_ask: bool,
    held: HashMap<String, HeldCall>,
    approvals: Vec<Approval>,
    next: u64,
}

/// SHA-256 over the tool name and the arguments' JSON (object keys sorted by serde_json's map), so
/// the same call always has the same digest and any change to any argument changes it.
pub fn digest(tool: &str, args: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0]);
    h.update(serde_json::to_string(args).unwrap_or_default().as_bytes());
    h.finalize().into()
}

impl Asks {
    /// Records the client's capabilities from its `initialize` params.
    pub fn observe_initialize(&mut self, params: Option<&str>) {
        self.client_can_elicit = params
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .is_some_and(|p| p["capabilities"].get("elicitation").is_some());
    }

    /// Whether the same call was approved recently under the same policy generation.
    pub fn approved(&mut self, digest: &[u8; 32], generation: Option<i64>, now: Instant) -> bool {
        self.approvals.retain(|a| a.expires > now);
        self.approvals
            .iter()
            .any(|a| a.digest == *digest && a.generation == generation)
    }

    /// Whether a call can be held and the user asked now.
    pub fn can_ask(&self) -> bool {
        self.client_can_elicit && self.transport_can_ask && self.held.len() < MAX_HELD
    }

    /// Holds the call and returns the `elicitation/create` request to send to the client.
    pub fn ask(&mut self, held: HeldCall, message: &str) -> String {
        self.next += 1;
        let id = format!("{ID_PREFIX}{}", self.next);
        let request = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "elicitation/create",
            "params": {
                "message": message,
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "approve": {
                            "type": "boolean",
                            "title": "Allow this tool call",
                            "description": "Approve once; the same call stays approved for a few minutes"
                        }
                    },
                    "required": ["approve"]
                }
            }
        });
        self.held.insert(format!("\"{id}\""), held);
        request.to_string()
    }

    /// The client's answer to one of our requests (`id` is the raw id text). `None` when the id is not
    /// ours. An approval is remembered.
    pub fn resolve(
        &mut self,
        id: &str,
        result: Option<&str>,
        now: Instant,
    ) -> Option<(HeldCall, Answer)> {
        let held = self.held.remove(id)?;
        let answer = match result.and_then(|r| serde_json::from_str::<Value>(r).ok()) {
            None => Answer::Failed,
            Some(r) => match r["action"].as_str() {
                Some("accept") if r["content"]["approve"] != Value::Bool(false) => Answer::Accept,
                Some(_) => Answer::Decline,
                None => Answer::Failed,
            },
        };
        if answer == Answer::Accept {
            self.approvals.push(Approval {
                digest: held.digest,
                generation: held.generation,
                expires: now + APPROVAL_TTL,
            });
        }
        Some((held, answer))
    }

    /// Calls whose deadline passed, removed.
    pub fn expire(&mut self, now: Instant) -> Vec<HeldCall> {
        let late: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        late.into_iter()
            .filter_map(|k| self.held.remove(&k))
            .collect()
    }

    /// Removes the held call whose client request id (raw JSON text) is `call_id`.
    pub fn cancel(&mut self, call_id: &str) -> Option<HeldCall> {
        let key = self
            .held
            .iter()
            .find(|(_, h)| h.id == call_id)
            .map(|(k, _)| k.clone())?;
        self.held.remove(&key)
    }

    /// Calls still held (when the session ends they are failed).
    pub fn drain(&mut self) -> Vec<HeldCall> {
        self.held.drain().map(|(_, h)| h).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn held(tool: &str, args: &Value, deadline: Instant) -> HeldCall {
        HeldCall {
            id: "7".into(),
            raw: String::new(),
            tool: tool.into(),
            args_text: String::new(),
            decision: Decision::allow(),
            decide_us: 0,
            digest: digest(tool, args),
            generation: Some(1),
            deadline,
            taint_source: false,
            span: Default::default(),
        }
    }

    #[test]
    fn approvals_are_bound_to_the_exact_call_and_policy_generation() {
        let now = Instant::now();
        let mut asks = Asks::default();
        let args = json!({"path": "/srv/a", "mode": "w"});
        let request: Value =
            serde_json::from_str(&asks.ask(held("write", &args, now), "allow?")).unwrap();
        assert_eq!(request["method"], "elicitation/create");
        let id = format!("\"{}\"", request["id"].as_str().unwrap());
        let result = r#"{"action":"accept","content":{"approve":true}}"#;
        let (_, answer) = asks.resolve(&id, Some(result), now).unwrap();
        assert_eq!(answer, Answer::Accept);
        assert!(
            asks.approved(
                &digest("write", &json!({"mode": "w", "path": "/srv/a"})),
                Some(1),
                now
            ),
            "key order does not matter"
        );
        assert!(
            !asks.approved(
                &digest("write", &json!({"path": "/srv/b", "mode": "w"})),
                Some(1),
                now
            ),
            "other arguments"
        );
        assert!(
            !asks.approved(&digest("write", &args), Some(2), now),
            "another policy generation"
        );
        assert!(
            !asks.approved(&digest("write", &args), Some(1), now + APPROVAL_TTL),
            "expired"
        );
        assert!(
            asks.resolve(&id, Some(result), now).is_none(),
            "an answer is used once"
        );
    }

    #[test]
    fn decline_cancel_errors_and_timeouts() {
        let now = Instant::now();
        let mut asks = Asks::default();
        for (result, expected) in [
            (Some(r#"{"action":"decline"}"#), Answer::Decline),
            (Some(r#"{"action":"cancel"}"#), Answer::Decline),
            (
                Some(r#"{"action":"accept","content":{"approve":false}}"#),
                Answer::Decline,
            ),
            (None, Answer::Failed),
        ] {
            let r: Value =
                serde_json::from_str(&asks.ask(held("t", &json!({}), now), "?")).unwrap();
            let id = format!("\"{}\"", r["id"].as_str().unwrap());
            assert_eq!(
                asks.resolve(&id, result, now).unwrap().1,
                expected,
                "{result:?}"
            );
        }
        asks.ask(held("t", &json!({}), now + Duration::from_secs(5)), "?");
        assert!(asks.expire(now).is_empty());
        assert_eq!(asks.expire(now + Duration::from_secs(5)).len(), 1);
    }

    #[test]
    fn capability_comes_from_initialize() {
        let mut asks = Asks::default();
        asks.observe_initialize(Some(
            r#"{"capabilities":{"elicitation":{}},"clientInfo":{"name":"c"}}"#,
        ));
        assert!(asks.client_can_elicit);
        asks.observe_initialize(Some(r#"{"capabilities":{"roots":{}}}"#));
        assert!(!asks.client_can_elicit);
    }
}
