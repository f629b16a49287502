//! Session budgets, risk thresholds and the kill switch, through the real proxy in front of the real
//! server-everything.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Peer, assert_blocked, everything};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// Calls `echo` until it is blocked by `rule` (or allowed, when `rule` is None), for up to 2 s.
fn eventually(p: &mut Peer, rule: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = p.call("echo", json!({"message": "x"}));
        match (rule, r.get("error")) {
            (Some(rule), Some(_)) => return assert_blocked(&r, rule),
            (None, None) => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "still {r} after 2 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_kill_switch_answers_to_a_file_signals_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let switch_file = dir.path().join("KILL");
    let file_flag = switch_file.display().to_string();
    let mut p = Peer::proxied(
        "mode: audit\n",
        &["--kill-switch-file", &file_flag, "--admin", "127.0.0.1:0"],
        &everything(),
    );
    p.initialize();
    eventually(&mut p, None);

    std::fs::write(&switch_file, "").unwrap();
    eventually(&mut p, Some("kill-switch"));
    std::fs::remove_file(&switch_file).unwrap();
    eventually(&mut p, None);

    let proxy = Pid::from_raw(p.child.id() as i32);
    kill(proxy, Signal::SIGUSR1).unwrap();
    eventually(&mut p, Some("kill-switch"));
    kill(proxy, Signal::SIGUSR2).unwrap();
    eventually(&mut p, None);

    let admin = common::wait_for_stderr(&p, "admin on http://")
        .trim_end_matches("/kill-switch")
        .to_owned();
    assert_eq!(
        common::http(&admin, "POST", "/kill-switch/on"),
        r#"{"on":true}"#
    );
    eventually(&mut p, Some("kill-switch"));
    assert_eq!(
        common::http(&admin, "GET", "/kill-switch"),
        r#"{"on":true}"#
    );
    assert_eq!(
        common::http(&admin, "POST", "/kill-switch/off"),
        r#"{"on":false}"#
    );
    eventually(&mut p, None);

    let (_, p) = p.finish();
    let switches: Vec<(bool, String)> = p
        .audit()
        .into_iter()
        .filter(|r| r["type"] == "kill_switch")
        .map(|r| {
            (
                r["on"].as_bool().unwrap(),
                r["via"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(bool, String)> = [
        (true, "file"),
        (false, "file"),
        (true, "signal"),
        (false, "signal"),
        (true, "http"),
        (false, "http"),
    ]
    .into_iter()
    .map(|(on, via)| (on, via.to_owned()))
    .collect();
    assert_eq!(switches, expected, "every switch is audited");
}

#[test]
fn budgets_limit_calls_and_bytes_per_session() {
    let mut p = Peer::proxied("budgets: {maxCalls: 3}\n", &[], &everything());
    p.initialize();
    for i in 0..3 {
        assert!(p.call("get-sum", json!({"a": i, "b": 1}))["result"].is_object());
    }
    assert_blocked(
        &p.call("get-sum", json!({"a": 1, "b": 1})),
        "budget.maxCalls",
    );

    let mut p = Peer::proxied("budgets: {maxBytesOut: 2000}\n", &[], &everything());
    p.initialize(); // the initialize answer alone is over 1 KB
    p.request("tools/list", json!({}));
    assert_blocked(
        &p.call("echo", json!({"message": "x"})),
        "budget.maxBytesOut",
    );
}

#[test]
fn accumulated_weak_findings_cross_the_risk_threshold() {
    // Each rule alone only logs (risk 0.3); together (1 - 0.7^3 = 0.66) they cross blockAbove.
    let policy = r#"rules:
  - {id: mentions-password, action: log, args: [{anyString: true, regex: '(?i)password'}]}
  - {id: mentions-curl, action: log, args: [{anyString: true, regex: 'curl '}]}
  - {id: mentions-pipe-sh, action: log, args: [{anyString: true, regex: '\| *sh'}]}
risk: {blockAbove: 0.6}
"#;
    let mut p = Peer::proxied(policy, &[], &everything());
    p.initialize();
    assert!(p.call("echo", json!({"message": "reset my password"}))["result"].is_object());
    let r = p.call("echo", json!({"message": "curl x | sh # password"}));
    assert_blocked(&r, "risk.blockAbove");
    let rules: Vec<&str> = r["error"]["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "mentions-password",
            "mentions-curl",
            "mentions-pipe-sh",
            "risk.blockAbove"
        ]
    );
}

#[test]
fn calls_before_initialize_completes_are_refused() {
    let mut p = Peer::proxied("{}\n", &[], &everything());
    // No initialize yet: refused by the proxy, whatever the server would do.
    assert_blocked(
        &p.call("echo", json!({"message": "too early"})),
        "session.notInitialized",
    );
    p.initialize();
    assert!(p.call("echo", json!({"message": "now"}))["result"].is_object());
}
