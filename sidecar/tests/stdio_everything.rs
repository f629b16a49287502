//! The proxy over stdio in front of the real `@modelcontextprotocol/server-everything` (npm): a full
//! session works exactly as directly, blocked calls come back as specified, and the audit log,
//! shutdown and failure handling behave.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Peer, assert_blocked, everything};
use serde_json::{Value, json};

const OPEN: &str =
    "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: open}\nspec: {}\n";

fn policy(spec: &str) -> String {
    format!(
        "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: test, generation: 3}}\nspec:\n{spec}"
    )
}

/// The same scripted session, directly and through the proxy.
fn scripted_session(peer: &mut Peer) -> Vec<Value> {
    let mut out = vec![peer.initialize()];
    out.push(peer.request("tools/list", json!({})));
    out.push(peer.call("echo", json!({"message": "hello through the guard"})));
    out.push(peer.call("get-sum", json!({"a": 40, "b": 2})));
    out.push(peer.request("prompts/list", json!({})));
    out.push(peer.request("resources/list", json!({})));
    out.push(peer.request("no/such-method", json!({})));
    out
}

#[test]
fn a_full_session_is_the_same_through_the_proxy() {
    let mut direct = Peer::direct(&everything());
    let mut proxied = Peer::proxied(OPEN, &[], &everything());
    let a = scripted_session(&mut direct);
    let b = scripted_session(&mut proxied);
    assert_eq!(a, b, "the proxy must be invisible when it does not block");
    assert_eq!(
        b[2]["result"]["content"][0]["text"],
        "Echo: hello through the guard"
    );
    assert!(
        b[6]["error"].is_object(),
        "unknown methods pass through to the server"
    );
}

#[test]
fn argument_rules_block_with_the_request_id_and_rule() {
    let spec = r#"  rules:
    - id: no-secrets-word
      action: block
      tools: ["echo"]
      args: [{pointer: /message, regex: "(?i)top.?secret"}]
"#;
    let mut p = Peer::proxied(&policy(spec), &[], &everything());
    p.initialize();
    p.send(&json!({"jsonrpc": "2.0", "id": "call-7", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "TOP SECRET plans"}}}));
    let blocked = p.response_to(&json!("call-7"));
    assert_blocked(&blocked, "no-secrets-word");
    assert_eq!(blocked["id"], "call-7");
    let ok = p.call("echo", json!({"message": "public"}));
    assert_eq!(ok["result"]["content"][0]["text"], "Echo: public");

    let (code, p) = p.finish();
    assert_eq!(code, 0);
    let audit = p.audit();
    let calls: Vec<&Value> = audit.iter().filter(|r| r["type"] == "tools/call").collect();
    assert_eq!(calls.len(), 2, "{audit:?}");
    assert_eq!(calls[0]["outcome"], "blocked");
    assert_eq!(calls[0]["findings"][0]["rule"], "no-secrets-word");
    assert_eq!(calls[0]["policy"]["name"], "test");
    assert_eq!(calls[0]["policy"]["generation"], 3);
    assert_eq!(calls[1]["outcome"], "allowed");
    assert!(calls[1]["upstream_ms"].as_f64().unwrap() > 0.0);
    let summary = audit.last().unwrap();
    assert_eq!(summary["type"], "proxy_summary");
    assert_eq!(summary["calls"], 2);
    assert_eq!(summary["blocked_by_rule"]["no-secrets-word"], 1);
    assert_eq!(
        mcp_guard_proxy::audit::verify_chain(&p.audit_text()),
        Ok(audit.len())
    );
}

#[test]
fn credentials_are_blocked_and_never_written_to_the_audit_log() {
    let spec = "  detectors:\n    credentialLeak: {action: block, scanResults: true}\n";
    let key = format!("AKIA{}", "QYLPMN5HHHFPZAM2");
    let mut p = Peer::proxied(&policy(spec), &[], &everything());
    p.initialize();
    let blocked = p.call("echo", json!({"message": format!("use {key} please")}));
    assert_blocked(&blocked, "aws-access-key-id");
    assert!(
        !blocked.to_string().contains(&key),
        "the error must not echo the secret"
    );
    let (_, p) = p.finish();
    let log = p.audit_text();
    assert!(
        !log.contains(&key),
        "the audit log must not contain the secret"
    );
    assert!(log.contains("[REDACTED:aws-access-key-id]"), "{log}");
}

#[test]
fn secrets_in_tool_results_are_blocked() {
    // get-env returns the server's environment: a real result carrying a secret.
    let spec = "  detectors:\n    credentialLeak: {action: block, scanResults: true}\n";
    let token = format!("ghp_{}", "Zx7Qw3Er5Ty8Ui1Op2As4Df6Gh9Jk0Lz3Xc5V");
    let mut cmd = vec!["/usr/bin/env".to_owned(), format!("GITHUB_TOKEN={token}")];
    cmd.extend(everything());
    let mut p = Peer::proxied(&policy(spec), &[], &cmd);
    p.initialize();
    let r = p.call("get-env", json!({}));
    assert_blocked(&r, "github-token");
    assert!(!r.to_string().contains(&token));
    let (_, p) = p.finish();
    let call = p
        .audit()
        .into_iter()
        .find(|r| r["type"] == "tools/call")
        .unwrap();
    assert_eq!(call["outcome"], "result-blocked");
    assert_eq!(call["result_findings"][0]["rule"], "github-token");
}

#[test]
fn deny_allow_and_undeclared_tools() {
    let spec = "  tools:\n    allow: [\"echo\", \"get-*\", \"ghost\"]\n    deny: [\"get-env\"]\n    blockUndeclared: true\n";
    let mut p = Peer::proxied(&policy(spec), &[], &everything());
    p.initialize();
    // Before tools/list nothing is declared yet.
    assert_blocked(
        &p.call("echo", json!({"message": "early"})),
        "tools.undeclared",
    );
    p.request("tools/list", json!({}));
    assert!(p.call("echo", json!({"message": "x"}))["result"].is_object());
    assert_blocked(&p.call("get-env", json!({})), "tools.deny");
    assert_blocked(
        &p.call("toggle-simulated-logging", json!({})),
        "tools.allow",
    );
    assert_blocked(&p.call("ghost", json!({})), "tools.undeclared");
}

#[test]
fn rate_limits_and_sequences() {
    let spec = r#"  detectors:
    rateLimit: {action: block, perTool: {maxCalls: 3, window: 1m}}
    sequences:
      - {id: env-then-echo, action: block, steps: ["get-env", "echo"], within: 1m}
"#;
    let mut p = Peer::proxied(&policy(spec), &[], &everything());
    p.initialize();
    for i in 0..3 {
        assert!(p.call("get-sum", json!({"a": i, "b": 1}))["result"].is_object());
    }
    assert_blocked(
        &p.call("get-sum", json!({"a": 9, "b": 1})),
        "rate-limit.per-tool",
    );
    assert!(p.call("get-env", json!({}))["result"].is_object());
    assert!(
        p.call("get-tiny-image", json!({}))["result"].is_object(),
        "benign call in between"
    );
    assert_blocked(
        &p.call("echo", json!({"message": "exfil"})),
        "env-then-echo",
    );
}

#[test]
fn audit_mode_forwards_and_records_what_would_have_happened() {
    let spec = "  tools:\n    deny: [\"echo\"]\n";
    let mut p = Peer::proxied(&policy(spec), &["--mode", "audit"], &everything());
    p.initialize();
    let r = p.call("echo", json!({"message": "allowed in audit"}));
    assert_eq!(r["result"]["content"][0]["text"], "Echo: allowed in audit");
    let (_, p) = p.finish();
    let call = p
        .audit()
        .into_iter()
        .find(|r| r["type"] == "tools/call")
        .unwrap();
    assert_eq!(
        (call["outcome"].as_str(), call["mode"].as_str()),
        (Some("audit-would-block"), Some("audit"))
    );
    assert_eq!(call["decision"], "block");
}

#[test]
fn malformed_input_gets_errors_and_the_session_goes_on() {
    let mut p = Peer::proxied(OPEN, &["--max-message-bytes", "4096"], &everything());
    p.initialize();
    p.send_raw("{this is not json");
    let e = p.next_response();
    assert_eq!(
        (e["error"]["code"].as_i64(), e["id"].is_null()),
        (Some(-32700), true),
        "{e}"
    );
    p.send_raw(&format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#, "x".repeat(5000)));
    let big = p.next_response();
    assert!(
        big["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the proxy's limit of 4096 bytes"),
        "{big}"
    );
    p.send_raw(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"arguments":{}}}"#);
    let no_name = p.response_to(&json!(6));
    assert_eq!(no_name["error"]["code"], -32602);
    assert_eq!(
        p.call("echo", json!({"message": "still alive"}))["result"]["content"][0]["text"],
        "Echo: still alive"
    );
}

#[test]
fn exit_code_follows_the_server_and_eof_shuts_down() {
    let p = Peer::proxied(
        OPEN,
        &[],
        &["/bin/sh".into(), "-c".into(), "read line; exit 7".into()],
    );
    let (code, p) = p.finish();
    assert_eq!(code, 7, "{}", p.stderr());
    let audit = p.audit();
    assert_eq!(audit.last().unwrap()["type"], "proxy_summary");
}

#[test]
fn a_server_that_dies_mid_call_fails_the_pending_call() {
    let mut p = Peer::proxied(OPEN, &[], &everything());
    p.initialize();
    p.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 3}}}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Kill the real server (the proxy's child) while the call is running.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", p.child.id())).unwrap();
    let server: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let failed = p.response_to(&json!(77));
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited before answering")
    );
    let (code, _) = p.finish();
    assert_eq!(code, 128 + 9, "killed by SIGKILL");
}

#[test]
fn policy_edits_apply_without_restart_and_bad_edits_are_refused() {
    let mut p = Peer::proxied(OPEN, &["--metrics", "127.0.0.1:0"], &everything());
    p.initialize();
    assert!(p.call("echo", json!({"message": "a"}))["result"].is_object());
    std::fs::write(p.policy_path(), policy("  tools:\n    deny: [echo]\n")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let r = p.call("echo", json!({"message": "b"}));
        if r.get("error").is_some() {
            assert_blocked(&r, "tools.deny");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new policy did not apply within 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::write(
        p.policy_path(),
        "rules: [{id: x, action: block, args: [{anyString: true, regex: '('}]}]",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_blocked(&p.call("echo", json!({"message": "c"})), "tools.deny");
    assert!(
        p.stderr()
            .contains("policy reload refused, keeping the previous policy"),
        "{}",
        p.stderr()
    );
    assert!(p.stderr().contains("unclosed group"), "{}", p.stderr());
}

/// Reads `GET /metrics` from the address the proxy printed on stderr.
fn scrape(p: &Peer) -> String {
    let addr = common::wait_for_stderr(p, "metrics on http://");
    common::http(addr.trim_end_matches("/metrics"), "GET", "/metrics")
}

#[test]
fn metrics_count_calls_findings_latency_sessions_and_reloads() {
    let spec = "  tools:\n    deny: [\"get-env\"]\n";
    let mut p = Peer::proxied(&policy(spec), &["--metrics", "127.0.0.1:0"], &everything());
    p.initialize();
    p.call("echo", json!({"message": "m"}));
    p.call("get-env", json!({}));
    std::fs::write(
        p.policy_path(),
        "rules: [{id: x, action: block, args: [{anyString: true, regex: '('}]}]",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let text = scrape(&p);
    for expected in [
        r#"mcp_guard_tool_calls_total{tool="echo",decision="allow",mode="enforce"} 1"#,
        r#"mcp_guard_tool_calls_total{tool="get-env",decision="block",mode="enforce"} 1"#,
        r#"mcp_guard_findings_total{detector="tools",rule="tools.deny"} 1"#,
        r#"mcp_guard_policy_reloads_total{result="invalid"} 1"#,
        "mcp_guard_active_sessions 1",
        "mcp_guard_proxy_added_latency_seconds_count",
        r#"mcp_guard_messages_total{direction="client_to_server"}"#,
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn a_configmap_style_symlink_swap_is_picked_up() {
    // Kubernetes mounts a ConfigMap as `policy.json -> ..data/policy.json` with `..data -> ..<timestamp>`,
    // and updates it by pointing `..data` at a new directory in one rename.
    let mount = tempfile::tempdir().unwrap();
    let write_version = |name: &str, spec: &str| {
        let dir = mount.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("policy.yaml"), policy(spec)).unwrap();
    };
    write_version("..2026_11_21_v1", "  tools:\n    deny: [\"get-env\"]\n");
    std::os::unix::fs::symlink("..2026_11_21_v1", mount.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.yaml", mount.path().join("policy.yaml")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(common::proxy_bin());
    c.arg("--policy")
        .arg(mount.path().join("policy.yaml"))
        .args(["--reload-interval", "100ms", "--"])
        .args(everything());
    let mut p = Peer::spawn_command(&mut c, dir);
    p.initialize();
    assert_blocked(&p.call("get-env", json!({})), "tools.deny");
    assert!(p.call("echo", json!({"message": "v1"}))["result"].is_object());

    write_version("..2026_11_21_v2", "  tools:\n    deny: [\"echo\"]\n");
    std::os::unix::fs::symlink("..2026_11_21_v2", mount.path().join("..data_tmp")).unwrap();
    std::fs::rename(mount.path().join("..data_tmp"), mount.path().join("..data")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let r = p.call("echo", json!({"message": "v2"}));
        if r.get("error").is_some() {
            assert_blocked(&r, "tools.deny");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the swapped ConfigMap did not apply within 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        p.call("get-env", json!({}))["result"].is_object(),
        "the old rule is gone"
    );
}

#[test]
fn sigterm_and_sigint_are_forwarded_and_the_server_code_returned() {
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGTERM, 42),
        (nix::sys::signal::Signal::SIGINT, 43),
    ] {
        let script = "trap 'exit 42' TERM; trap 'exit 43' INT; while true; do sleep 0.05; done";
        let mut p = Peer::proxied(OPEN, &[], &["/bin/sh".into(), "-c".into(), script.into()]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.child.id() as i32), signal).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not exit after {signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(code), "{signal}: {}", p.stderr());
    }
}
