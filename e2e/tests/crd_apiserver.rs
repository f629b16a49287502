//! The generated McpGuardPolicy CRD on a real kube-apiserver (v1.20.2 from Debian's sources):
//! the server accepts the schema, stores every library policy with the same defaults our own parser
//! applies, keeps status separate, and refuses schema-invalid policies with the field path.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use anyhow::{Context, Result};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use mcp_guard_crds::{McpGuardPolicy, McpGuardPolicyStatus, ready_condition};
use mcp_guard_e2e::apiserver::{ApiServer, install_crd};
use mcp_guard_e2e::workspace_root;
use serde_json::json;

/// Every policy users are offered: the library and the issue's contract.
fn shipped_policies() -> Result<Vec<(String, McpGuardPolicy)>> {
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("policies/library"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files.push(root.join("policies/tests/fixtures/contract.yaml"));
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            let policy: McpGuardPolicy = serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not an McpGuardPolicy", path.display()))?;
            Ok((path.display().to_string(), policy))
        })
        .collect()
}

#[tokio::test]
async fn crd_is_accepted_and_every_shipped_policy_applies() -> Result<()> {
    let server = ApiServer::start()?;
    let client = server.client().await?;
    install_crd(&client).await?;
    let api: Api<McpGuardPolicy> = Api::namespaced(client.clone(), "default");

    let policies = shipped_policies()?;
    assert!(
        policies.len() >= 7,
        "the library has at least six policies plus the contract"
    );
    for (file, mut policy) in policies {
        policy.metadata.namespace = None;
        let created = api
            .create(&PostParams::default(), &policy)
            .await
            .with_context(|| format!("the API server refused {file}"))?;
        // The server applied the schema's defaults; they must equal the ones our parser applies,
        // or the sidecar and `kubectl get -o yaml` would disagree about what a policy means.
        assert_eq!(
            created.spec, policy.spec,
            "{file}: server-side defaults differ"
        );
        mcp_guard_policy::compile(&created.spec.0).map_err(|e| anyhow::anyhow!("{file}: {e:?}"))?;
        assert!(
            created.status.is_none(),
            "{file}: a new policy has no status"
        );
    }

    // Status is a subresource: writing it does not touch the spec, and writing the spec does not
    // touch the status.
    let name = "example";
    let condition = ready_condition(Ok(()), Some(1), None, Timestamp::now());
    let status = McpGuardPolicyStatus {
        conditions: vec![condition],
        observed_generation: Some(1),
        config_map: Some(format!("mcp-guard-policy-{name}")),
        guarded_pods: Some(0),
    };
    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    assert_eq!(patched.status.as_ref(), Some(&status));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "a status write is not a new generation"
    );
    let respec = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "audit"}, "status": {"guardedPods": 99}})),
        )
        .await?;
    assert_eq!(respec.metadata.generation, Some(2));
    assert_eq!(
        respec.status.as_ref(),
        Some(&status),
        "the main resource ignores status"
    );
    Ok(())
}

#[tokio::test]
async fn server_refuses_schema_invalid_policies_with_the_field_path() -> Result<()> {
    let server = ApiServer::start()?;
    let client = server.client().await?;
    install_crd(&client).await?;
    let resource = ApiResource::erase::<McpGuardPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);

    // (spec, what the server's message contains, the path our checker reports). The 1.20 server
    // leaves list indices out of its paths (`spec.rules.action`); the checker keeps them.
    let cases = [
        (json!({"mode": 5}), "spec.mode", "spec.mode"),
        (
            json!({"mode": "deny"}),
            r#"spec.mode: Unsupported value: "deny""#,
            "spec.mode",
        ),
        (json!({"rules": "notalist"}), "spec.rules", "spec.rules"),
        (
            json!({"rules": [{"id": "r", "action": "deny", "args": [{"anyString": true, "regex": "x"}]}]}),
            r#"spec.rules.action: Unsupported value: "deny""#,
            "spec.rules[0].action",
        ),
        (
            json!({"detectors": {"rateLimit": {"action": "block", "perTool": {"maxCalls": 20, "window": "10"}}}}),
            "spec.detectors.rateLimit.perTool.window",
            "spec.detectors.rateLimit.perTool.window",
        ),
        (
            json!({"runtime": {"network": {"egress": {"denyPorts": [70000]}}}}),
            "spec.runtime.network.egress.denyPorts",
            "spec.runtime.network.egress.denyPorts[0]",
        ),
        (
            json!({"detectors": {"taint": {"action": "block", "sources": {"secrets": true}, "sinks": {"tools": ["x"]}, "minMatch": 2}}}),
            "spec.detectors.taint.minMatch",
            "spec.detectors.taint.minMatch",
        ),
    ];
    for (i, (spec, expected, path)) in cases.iter().enumerate() {
        let mut obj = DynamicObject::new(&format!("bad-{i}"), &resource);
        obj.data = json!({ "spec": spec });
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{spec}: {}", status.message);
                assert!(
                    status.message.contains(expected),
                    "{spec}: expected `{expected}` in: {}",
                    status.message
                );
            }
            other => panic!("{spec}: the API server accepted it: {other:?}"),
        }
        // Our own checker refuses the same input, with the same field path.
        let ours = mcp_guard_policy::load::parse_spec(spec.clone())
            .and_then(|s| mcp_guard_policy::compile(&s).map(|_| ()));
        let errors = ours.expect_err("the checker must refuse what the server refuses");
        assert!(
            errors.iter().any(|e| e.path == *path),
            "{spec}: checker errors {errors:?} lack {path}"
        );
    }

    // Kubernetes 1.20 has no strict field validation: the server prunes unknown fields instead of
    // refusing them. The validating webhook (operator) and `mcp-guard-policy check` refuse them.
    let mut obj = DynamicObject::new("pruned", &resource);
    obj.data = json!({"spec": {"tools": {"allow": ["*"], "bogus": true}}});
    let stored = api.create(&PostParams::default(), &obj).await?;
    assert_eq!(stored.data["spec"]["tools"].get("bogus"), None);
    assert_eq!(McpGuardPolicy::kind(&()), "McpGuardPolicy");
    Ok(())
}
