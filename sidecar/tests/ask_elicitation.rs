//! ASK by MCP elicitation, with the real Python SDK client answering `elicitation/create` through the
//! proxy in front of the real server-everything: accept forwards the held call (and the approval is
//! remembered for exactly that call), decline refuses it, no answer in time applies the fallback, and a
//! client without the capability gets the fallback at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{everything, peer_file, proxy_bin, py_venv};
use serde_json::Value;

const POLICY: &str = "rules:\n  - {id: ask-deploys, action: ask, args: [{pointer: /message, regex: '(?i)deploy'}]}\n\
                      ask: {via: elicitation, timeout: 1s, fallback: block}\n";

fn run(answer: &str, policy: &str) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let out = Command::new(py_venv().join("bin/python"))
        .arg(peer_file("py_elicit_client.py"))
        .arg(answer)
        .arg(proxy_bin())
        .arg("--policy")
        .arg(&policy_path)
        .arg("--")
        .args(everything())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["step"].as_str().unwrap().to_owned(), v["value"].clone())
        })
        .collect()
}

#[test]
fn accepted_calls_run_and_the_approval_is_bound_to_the_arguments() {
    let s = run("accept", POLICY);
    assert_eq!(s["first"]["ok"][0], "Echo: deploy to production");
    assert_eq!(s["asked_first"], 1);
    assert_eq!(s["same_again"]["ok"][0], "Echo: deploy to production");
    assert_eq!(s["asked_again"], 1, "the same call is not asked twice");
    assert_eq!(s["other_args"]["ok"][0], "Echo: deploy to production now");
    assert_eq!(s["asked_total"], 2, "other arguments are asked again");
    let question = s["question"].as_str().unwrap();
    assert!(
        question.contains("Tool: echo") && question.contains("ask-deploys"),
        "{question}"
    );
}

#[test]
fn declined_calls_are_refused() {
    let s = run("decline", POLICY);
    assert_eq!(s["first"]["code"], -32600);
    assert_eq!(s["first"]["rule"], "ask-deploys");
    assert!(
        s["first"]["error"]
            .as_str()
            .unwrap()
            .contains("the user declined it")
    );
    assert_eq!(
        s["asked_total"], 3,
        "a declined call is asked again next time"
    );
}

#[test]
fn no_answer_in_time_applies_the_fallback() {
    let s = run("slow", POLICY);
    assert!(
        s["first"]["error"]
            .as_str()
            .unwrap()
            .contains("nobody answered within 1000 ms"),
        "{:?}",
        s["first"]
    );
}

#[test]
fn clients_without_elicitation_get_the_fallback_at_once() {
    // The harness's initialize declares no capabilities, so the proxy cannot ask.
    for (fallback, blocked, outcome) in [
        ("block", true, "ask-fallback-blocked"),
        ("allow", false, "ask-fallback-allowed"),
    ] {
        let policy = POLICY.replace("fallback: block", &format!("fallback: {fallback}"));
        let mut p = common::Peer::proxied(&policy, &[], &everything());
        p.initialize();
        let r = p.call("echo", serde_json::json!({"message": "deploy"}));
        if blocked {
            common::assert_blocked(&r, "ask-deploys");
        } else {
            assert_eq!(r["result"]["content"][0]["text"], "Echo: deploy", "{r}");
        }
        let (_, p) = p.finish();
        let call = p
            .audit()
            .into_iter()
            .find(|r| r["type"] == "tools/call")
            .unwrap();
        assert_eq!(
            (call["outcome"].as_str(), call["decision"].as_str()),
            (Some(outcome), Some("ask"))
        );
    }
}
