//! The Helm chart, rendered and linted by Helm's own engine and applied to the real kube-apiserver
//! (v1.20.2 from Debian's sources) with server-side apply: default values and variants.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use anyhow::Result;
use mcp_guard_e2e::apiserver::ApiServer;
use mcp_guard_e2e::cluster::Kubectl;
use mcp_guard_e2e::helm;
use serde_json::{Value, json};

const NS: &str = "mcp-guard";

/// Parses a rendered stream into objects.
fn objects(stream: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(stream)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kubectl_apply(api: &ApiServer, manifests: &str) -> Result<String> {
    Kubectl::with_kubeconfig(api.kubeconfig()).apply(manifests, "helm-test")
}

#[test]
fn lint_is_clean_for_defaults_and_variants() -> Result<()> {
    for values in [
        json!({}),
        json!({"certificates": {"provider": "cert-manager"}}),
        json!({"operator": {"replicas": 1}, "webhook": {"failurePolicy": "Ignore"}}),
        json!({"metrics": {"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}}}),
        json!({"nodeAgent": {"enabled": false}, "dashboards": {"enabled": false}}),
    ] {
        let result = helm::lint(&values)?;
        let errors: Vec<&Value> = result["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64() >= Some(3))
            .collect();
        assert!(
            errors.is_empty() && result["errors"].as_array().is_none_or(Vec::is_empty),
            "{values}: {result}"
        );
    }
    Ok(())
}

#[test]
fn bad_values_are_refused_with_the_field() {
    for (values, needle) in [
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "/webhook/failurePolicy",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 60}}),
            "/webhook/timeoutSeconds",
        ),
        (json!({"operator": {"replicas": 0}}), "/operator/replicas"),
        (
            json!({"certificates": {"validity": "90d"}}),
            "/certificates/validity",
        ),
        (json!({"operater": {}}), "operater"),
    ] {
        let err = helm::render("mcp-guard", NS, &values)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{values}: {err}");
    }
}

#[test]
fn defaults_render_a_least_privilege_fail_closed_install() -> Result<()> {
    let objs = objects(&helm::render("mcp-guard", NS, &json!({}))?);
    let deploy = find(&objs, "Deployment", "mcp-guard-operator");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--webhook-service=mcp-guard-operator"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--proxy-image=ghcr.io/mcp-guard/mcp-guard-proxy:0.1.0"),
        "{args:?}"
    );
    // The node-agent opens the proxy's public ports only for the image the operator injects.
    let agent = find(&objs, "DaemonSet", "mcp-guard-agent");
    let agent_args = agent["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        agent_args.contains("--proxy-image=ghcr.io/mcp-guard/mcp-guard-proxy:0.1.0"),
        "{agent_args}"
    );

    let mutating = find(&objs, "MutatingWebhookConfiguration", "mcp-guard");
    let hook = &mutating["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate/pods");
    let excluded = hook["namespaceSelector"]["matchExpressions"].to_string();
    assert!(
        excluded.contains(NS) && excluded.contains("kube-system") && excluded.contains("disabled"),
        "{excluded}"
    );
    let validating = find(&objs, "ValidatingWebhookConfiguration", "mcp-guard");
    assert_eq!(
        validating["webhooks"][0]["rules"][0]["resources"][0],
        "mcpguardpolicies"
    );

    // Least privilege: secrets and leases only in the release namespace, and only by name after creation.
    let cluster = find(&objs, "ClusterRole", "mcp-guard-operator").to_string();
    assert!(
        !cluster.contains("secrets") && !cluster.contains("leases") && !cluster.contains("\"*\""),
        "{cluster}"
    );
    let role = find(&objs, "Role", "mcp-guard-operator");
    for rule in role["rules"].as_array().unwrap() {
        let verbs = rule["verbs"].to_string();
        assert!(
            verbs == r#"["create"]"# || rule["resourceNames"].is_array(),
            "{rule}"
        );
    }
    Ok(())
}

/// `apiServer` points the operator and the node-agent at an API server address for clusters where
/// the `kubernetes` Service does not route (no kube-proxy); by default nothing overrides it.
#[test]
fn api_server_values_override_the_in_cluster_address() -> Result<()> {
    let env_of = |objs: &[Value], kind: &str, name: &str| {
        find(objs, kind, name)["spec"]["template"]["spec"]["containers"][0]["env"].to_string()
    };
    let defaults = objects(&helm::render("mcp-guard", NS, &json!({}))?);
    for (kind, name) in [
        ("Deployment", "mcp-guard-operator"),
        ("DaemonSet", "mcp-guard-agent"),
    ] {
        assert!(!env_of(&defaults, kind, name).contains("KUBERNETES_SERVICE_HOST"));
    }
    let values = json!({"apiServer": {"host": "10.88.0.1", "port": 16443}});
    let objs = objects(&helm::render("mcp-guard", NS, &values)?);
    for (kind, name) in [
        ("Deployment", "mcp-guard-operator"),
        ("DaemonSet", "mcp-guard-agent"),
    ] {
        let env = env_of(&objs, kind, name);
        assert!(
            env.contains(r#"{"name":"KUBERNETES_SERVICE_HOST","value":"10.88.0.1"}"#)
                && env.contains(r#"{"name":"KUBERNETES_SERVICE_PORT","value":"16443"}"#),
            "{kind} {name}: {env}"
        );
    }
    let err = helm::render(
        "mcp-guard",
        NS,
        &json!({"apiServer": {"host": "10.88.0.1"}}),
    )
    .expect_err("a host without a port");
    assert!(
        err.to_string().contains("apiServer.port is required"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn the_rendered_chart_applies_to_a_real_api_server() -> Result<()> {
    let api = ApiServer::start()?;
    // Helm installs crds/ first, then the templates.
    let crd = std::fs::read_to_string(helm::chart_dir().join("crds/mcpguardpolicy.yaml"))?;
    kubectl_apply(&api, &crd)?;
    kubectl_apply(
        &api,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )?;
    for (release, values) in [
        ("mcp-guard", json!({})),
        (
            "variant",
            json!({"operator": {"replicas": 1}, "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5}}),
        ),
    ] {
        let stream = helm::render(release, NS, &values)?;
        let out = kubectl_apply(&api, &stream)?;
        let applied = out
            .lines()
            .filter(|l| l.contains("serverside-applied"))
            .count();
        assert_eq!(
            applied,
            objects(&stream).len(),
            "{release}: every object applied:\n{out}"
        );
    }
    let out = api
        .kubectl()
        .args([
            "get",
            "deploy,svc,pdb,sa,role,rolebinding",
            "-n",
            NS,
            "-o",
            "name",
        ])
        .output()?;
    let names = String::from_utf8(out.stdout)?;
    for want in [
        "deployment.apps/mcp-guard-operator",
        "service/mcp-guard-operator",
        "poddisruptionbudget.policy/mcp-guard-operator",
        "deployment.apps/variant-mcp-guard-operator",
    ] {
        assert!(names.contains(want), "{want} in {names}");
    }
    assert!(
        !names.contains("poddisruptionbudget.policy/variant"),
        "one replica: no PDB\n{names}"
    );
    Ok(())
}
