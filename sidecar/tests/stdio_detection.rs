//! Tool poisoning and secret taint through the real proxy, with a real Python SDK server that declares
//! a poisoned tool (an `<IMPORTANT>` block asking for ~/.ssh/id_rsa), a private source and a public sink.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Peer, assert_blocked, peer_file, py_venv};
use serde_json::json;

const POLICY: &str = r#"tools: {pinDefinitions: true}
detectors:
  promptInjection: {action: block, scanDescriptions: true, scanResults: true}
  taint:
    action: block
    sources: {tools: [read_notes]}
    sinks: {tools: [post_message]}
"#;

fn server() -> Vec<String> {
    vec![
        py_venv().join("bin/python").display().to_string(),
        peer_file("py_poisoned_server.py").display().to_string(),
    ]
}

#[test]
fn a_poisoned_tool_is_removed_from_the_list_and_its_calls_blocked() {
    let mut p = Peer::proxied(POLICY, &[], &server());
    p.initialize();
    let list = p.request("tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["read_notes", "post_message"],
        "the poisoned `add` is not offered"
    );
    let r = p.call("add", json!({"a": 1, "b": 2, "sidenote": ""}));
    assert_eq!(r["error"]["data"]["detector"], "promptInjection", "{r}");
    let (_, p) = p.finish();
    let listed = p
        .audit()
        .into_iter()
        .find(|r| r["type"] == "tools/list")
        .unwrap();
    assert_eq!(listed["outcome"], "tools-removed");
    assert_eq!(listed["removed"], json!(["add"]));
}

#[test]
fn private_data_quoted_into_a_sink_is_blocked_with_its_origin() {
    let mut p = Peer::proxied(POLICY, &[], &server());
    p.initialize();
    p.request("tools/list", json!({}));
    let notes = p.call("read_notes", json!({}));
    assert!(
        notes["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("AURORA-7731")
    );
    let ok = p.call(
        "post_message",
        json!({"channel": "#general", "text": "standup at 10"}),
    );
    assert!(ok["result"].is_object(), "{ok}");
    // Quoted, and hidden as base64: both carry the private plan.
    let leak = p.call("post_message", json!({"channel": "#public", "text": "FYI: project codename AURORA-7731 launches on 2026-03-01"}));
    assert_blocked(&leak, "taint");
    assert!(
        leak["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read_notes"),
        "{leak}"
    );
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "codename AURORA-7731 launches on 2026-03-01",
    );
    assert_blocked(
        &p.call("post_message", json!({"channel": "#x", "text": b64})),
        "taint",
    );
}
