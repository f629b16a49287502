//! The validating webhook for McpGuardPolicy: the API server in 1.20 has no CEL rules, so this is
//! where a user applying a policy sees every error, with its field path.

use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use crate::metrics::AdmissionResult;
use crate::reconcile::desired;

/// Judges one AdmissionReview body.
pub fn review(body: &[u8]) -> Result<(AdmissionResponse, AdmissionResult), String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let req: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| "AdmissionReview without a request".to_owned())?;
    Ok(judge(&req))
}

/// Allows a policy that compiles; refuses one that does not, listing every error.
pub fn judge(req: &AdmissionRequest<DynamicObject>) -> (AdmissionResponse, AdmissionResult) {
    let resp = AdmissionResponse::from(req);
    let Some(obj) = req.object.as_ref() else {
        return (resp, AdmissionResult::Allowed);
    };
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return (resp, AdmissionResult::Allowed);
    }
    let name = obj.metadata.name.as_deref().filter(|n| !n.is_empty());
    let spec = obj.data.get("spec").cloned().unwrap_or_default();
    match desired::check(name, spec) {
        Ok(_) => (resp, AdmissionResult::Allowed),
        Err(errors) => {
            let shown = name.unwrap_or(req.name.as_str());
            let list = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let n = errors.len();
            let noun = if n == 1 { "error" } else { "errors" };
            (
                resp.deny(format!(
                    "McpGuardPolicy {shown:?} is invalid ({n} {noun}): {list}"
                )),
                AdmissionResult::Denied,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(spec: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "7f0b", "kind": {"group": "mcpguard.io", "version": "v1alpha1", "kind": "McpGuardPolicy"},
                "resource": {"group": "mcpguard.io", "version": "v1alpha1", "resource": "mcpguardpolicies"},
                "name": "fs", "namespace": "mcp", "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": {"apiVersion": "mcpguard.io/v1alpha1", "kind": "McpGuardPolicy",
                           "metadata": {"name": "fs", "namespace": "mcp"}, "spec": spec},
                "dryRun": false
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_policy_is_allowed() {
        let (resp, result) = review(&request(json!({"mode": "audit"}))).unwrap();
        assert!(resp.allowed);
        assert_eq!(result, AdmissionResult::Allowed);
        assert_eq!(resp.uid, "7f0b");
    }

    #[test]
    fn an_invalid_policy_is_refused_with_every_path() {
        let spec = json!({"mode": "enforce",
                          "rules": [{"id": "r", "tools": ["*"], "action": "block", "args": [{"pointer": "/p", "regex": "("}]}],
                          "detectors": {"rateLimit": {"action": "block", "perTool": {"maxCalls": 5, "window": "10"}}}});
        let (resp, result) = review(&request(spec)).unwrap();
        assert!(!resp.allowed);
        assert_eq!(result, AdmissionResult::Denied);
        let msg = resp.result.message;
        assert!(msg.starts_with("McpGuardPolicy \"fs\" is invalid"), "{msg}");
        assert!(msg.contains("spec.rules[0].args[0].regex"), "{msg}");
        assert!(
            msg.contains("spec.detectors.rateLimit.perTool.window"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(review(b"{").is_err());
        assert!(
            review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).is_err()
        );
    }
}
