//! ASK by MCP elicitation, with the real Python SDK client answering `elicitation/create` through the
//! proxy in front of the real server-everything: accept forwards the held call (and the approval is
//! remembered for exactly that call), decline refuses it, no answer in time applies the fallback, and a
//! client without the capability gets the fallback at once. The same over Streamable HTTP, where the
//! question travels on the SSE answer of the held call's POST.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, everything, npm_bin, peer_file, proxy_bin, py_venv};
use serde_json::Value;

const POLICY: &str = "rules:\n  - {id: ask-deploys, action: ask, args: [{pointer: /message, regex: '(?i)deploy'}]}\n\
                      ask: {via: elicitation, timeout: 1s, fallback: block}\n";

fn run(answer: &str, policy: &str) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let mut client = Command::new(py_venv().join("bin/python"));
    client
        .arg(peer_file("py_elicit_client.py"))
        .arg(answer)
        .arg(proxy_bin())
        .arg("--policy")
        .arg(&policy_path)
        .arg("--")
        .args(everything());
    common::client_steps(&mut client)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(cmd: &mut Command, port: u16) -> Proc {
    let mut child = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.0.try_wait().unwrap().is_none(), "{cmd:?} exited");
        assert!(Instant::now() < deadline, "{cmd:?} does not listen");
        std::thread::sleep(Duration::from_millis(25));
    }
    child
}

/// The Python client over Streamable HTTP, through the proxy in front of server-everything's
/// `streamableHttp` mode.
fn run_http(answer: &str, policy: &str) -> (serde_json::Map<String, Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let server_port = free_port();
    let _server = listening(
        Command::new(npm_bin("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", server_port.to_string()),
        server_port,
    );
    let port = free_port();
    let audit = dir.path().join("audit.jsonl");
    let proxy = listening(
        Command::new(proxy_bin())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(format!("http://127.0.0.1:{server_port}"))
            .arg("--policy")
            .arg(&policy_path)
            .arg("--log")
            .arg(&audit),
        port,
    );
    let mut client = Command::new(py_venv().join("bin/python"));
    client
        .arg(peer_file("py_elicit_client.py"))
        .arg(answer)
        .arg(format!("http://127.0.0.1:{port}/mcp"));
    let steps = common::client_steps(&mut client);
    drop(proxy);
    let records = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (steps, records)
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

fn call_outcomes(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .filter(|r| r["type"] == "tools/call")
        .filter_map(|r| r["outcome"].as_str())
        .collect()
}

#[test]
fn over_streamable_http_accepted_calls_run() {
    let (s, audit) = run_http("accept", POLICY);
    assert_eq!(s["first"]["ok"][0], "Echo: deploy to production", "{s:?}");
    assert_eq!(s["asked_first"], 1);
    assert_eq!(s["same_again"]["ok"][0], "Echo: deploy to production");
    assert_eq!(s["asked_again"], 1, "the same call is not asked twice");
    assert_eq!(s["other_args"]["ok"][0], "Echo: deploy to production now");
    assert_eq!(s["asked_total"], 2);
    assert!(
        s["question"].as_str().unwrap().contains("ask-deploys"),
        "{s:?}"
    );
    assert_eq!(
        call_outcomes(&audit),
        ["ask-approved", "ask-approved", "ask-approved"]
    );
}

#[test]
fn over_streamable_http_declined_calls_are_refused() {
    let (s, audit) = run_http("decline", POLICY);
    assert_eq!(s["first"]["code"], -32600, "{s:?}");
    assert_eq!(s["first"]["rule"], "ask-deploys");
    assert!(
        s["first"]["error"]
            .as_str()
            .unwrap()
            .contains("the user declined it")
    );
    assert_eq!(s["asked_total"], 3);
    assert_eq!(call_outcomes(&audit), ["ask-declined"; 3]);
}

#[test]
fn over_streamable_http_no_answer_in_time_applies_the_fallback() {
    let (s, _) = run_http("slow", POLICY);
    assert!(
        s["first"]["error"]
            .as_str()
            .unwrap()
            .contains("nobody answered within 1000 ms"),
        "{:?}",
        s["first"]
    );
    let allow = POLICY.replace("fallback: block", "fallback: allow");
    let (s, _) = run_http("slow", &allow);
    assert_eq!(s["first"]["ok"][0], "Echo: deploy to production", "{s:?}");
}
