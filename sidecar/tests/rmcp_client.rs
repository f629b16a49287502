//! The official Rust SDK's client (`rmcp` 3.9, child-process transport) through the proxy to the real
//! server-everything: the session works as directly, and a blocked call arrives as an `McpError` with
//! code -32600 and the rule in its data.
#![allow(clippy::unwrap_used)]

mod common;

use common::{everything, proxy_bin};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value, json};

fn args(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn session(
    cmd: tokio::process::Command,
) -> (Vec<String>, Value, Result<Value, ServiceError>) {
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(json!({"message": "from rmcp"}))),
        )
        .await
        .unwrap();
    let sum = client
        .call_tool(
            CallToolRequestParams::new("get-sum").with_arguments(args(json!({"a": 20, "b": 22}))),
        )
        .await
        .map(|r| serde_json::to_value(r).unwrap());
    client.cancel().await.unwrap();
    (tools, serde_json::to_value(echo).unwrap(), sum)
}

#[tokio::test]
async fn rmcp_client_through_the_proxy() {
    let server = everything();
    let mut direct = tokio::process::Command::new(&server[0]);
    direct.args(&server[1..]);
    let (tools_direct, echo_direct, sum_direct) = session(direct).await;

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "tools: {deny: [get-sum]}\n").unwrap();
    let mut proxied = tokio::process::Command::new(proxy_bin());
    proxied.arg("--policy").arg(&policy).arg("--").args(&server);
    let (tools, echo, sum) = session(proxied).await;

    assert_eq!(tools, tools_direct);
    assert_eq!(echo, echo_direct);
    assert_eq!(echo["content"][0]["text"], "Echo: from rmcp");
    assert!(sum_direct.is_ok());
    match sum {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code.0, -32600);
            assert_eq!(e.data.as_ref().unwrap()["rule"], "tools.deny");
            assert!(
                e.message
                    .contains("blocked by mcp-guard policy policy: rule tools.deny"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a blocked call, got {other:?}"),
    }
}
