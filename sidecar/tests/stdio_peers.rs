//! The proxy over stdio between other real MCP implementations: the Python SDK (`mcp` 2.3.0) as client
//! and as server, the MCP Inspector CLI, and `@modelcontextprotocol/server-filesystem` with the library
//! policy written for it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Peer, assert_blocked, library_policy, npm_bin, peer_file, proxy_bin, py_venv};
use serde_json::{Value, json};

/// Runs the Python client against `server_cmd`; returns its steps as a map.
fn python_session(server_cmd: &[String]) -> serde_json::Map<String, Value> {
    let mut client = Command::new(py_venv().join("bin/python"));
    client.arg(peer_file("py_client.py")).args(server_cmd);
    common::client_steps(&mut client)
}

fn python_server() -> Vec<String> {
    vec![
        py_venv().join("bin/python").display().to_string(),
        peer_file("py_server.py").display().to_string(),
        "stdio".into(),
    ]
}

#[test]
fn python_client_and_server_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - {id: no-rm-rf, action: block, args: [{anyString: true, regex: 'rm\\s+-rf\\s+/'}]}\n\
         detectors:\n  credentialLeak: {action: block, scanResults: true}\n",
    )
    .unwrap();
    let direct = python_session(&python_server());
    let mut proxied_cmd = vec![
        proxy_bin().to_owned(),
        "--policy".into(),
        policy.display().to_string(),
        "--".into(),
    ];
    proxied_cmd.extend(python_server());
    let proxied = python_session(&proxied_cmd);

    for step in ["initialize", "tools", "echo", "add", "after"] {
        assert_eq!(
            direct[step], proxied[step],
            "step {step} differs through the proxy"
        );
    }
    assert_eq!(proxied["add"]["ok"][0], "42");
    // What the policy stops, the Python client sees as an MCP error with the rule.
    assert_eq!(
        direct["blocked"]["ok"][0],
        "echo: rm -rf / --no-preserve-root"
    );
    assert_eq!(proxied["blocked"]["code"], -32600);
    assert_eq!(proxied["blocked"]["data"]["rule"], "no-rm-rf");
    assert!(direct["secret"]["ok"][0].as_str().unwrap().contains("ghp_"));
    assert_eq!(proxied["secret"]["data"]["rule"], "github-token");
    assert!(
        !proxied["secret"].to_string().contains("ghp_"),
        "the secret never reaches the client"
    );
}

#[test]
fn rust_harness_to_python_server() {
    let mut p = Peer::proxied("tools: {deny: [read_config]}\n", &[], &python_server());
    p.initialize();
    let tools = p.request("tools/list", json!({}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 3);
    assert_eq!(
        p.call("add", json!({"a": 1, "b": 2}))["result"]["content"][0]["text"],
        "3"
    );
    assert_blocked(&p.call("read_config", json!({"name": "x"})), "tools.deny");
    let (code, _) = p.finish();
    assert_eq!(code, 0);
}

#[test]
fn mcp_inspector_cli_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), "tools: {deny: [echo]}\n").unwrap();
    // The Inspector appends its own flags after the server's arguments and treats everything after a
    // `--` as positional, so the guarded server is started through a wrapper script.
    let wrapper = dir.path().join("guarded.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --policy {} -- {} stdio\n",
            proxy_bin(),
            dir.path().join("policy.yaml").display(),
            npm_bin("mcp-server-everything").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let inspector = |args: &[&str]| {
        let out = Command::new(npm_bin("mcp-inspector"))
            .arg("--cli")
            .arg(&wrapper)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = inspector(&["--method", "tools/list"]);
    assert!(ok, "{out}");
    assert!(out.contains("\"get-sum\""), "{out}");
    let (ok, out) = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get-sum",
        "--tool-arg",
        "a=1",
        "--tool-arg",
        "b=2",
    ]);
    assert!(ok && out.contains("The sum of 1 and 2 is 3."), "{out}");
    let (ok, out) = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        "message=hi",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("MCP error -32600: blocked by mcp-guard policy policy: rule tools.deny"),
        "{out}"
    );
}

#[test]
fn server_filesystem_with_the_readonly_library_policy() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("notes.md"), "hello from the workspace\n").unwrap();
    std::fs::write(root.path().join(".env"), "API_TOKEN=abc\n").unwrap();
    let root_path = std::fs::canonicalize(root.path())
        .unwrap()
        .display()
        .to_string();
    let server = vec![
        npm_bin("mcp-server-filesystem").display().to_string(),
        root_path.clone(),
    ];
    let mut p = Peer::proxied(&library_policy("filesystem-readonly"), &[], &server);
    p.initialize();
    let tools = p.request("tools/list", json!({}));
    assert_eq!(
        tools["result"]["tools"].as_array().unwrap().len(),
        14,
        "the server's 14 tools"
    );
    let read = p.call(
        "read_text_file",
        json!({"path": format!("{root_path}/notes.md")}),
    );
    assert_eq!(
        read["result"]["content"][0]["text"],
        "hello from the workspace\n"
    );
    let listed = p.call("list_directory", json!({"path": root_path}));
    assert!(
        listed["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("notes.md")
    );
    assert_blocked(
        &p.call(
            "write_file",
            json!({"path": format!("{root_path}/x"), "content": "x"}),
        ),
        "tools.deny",
    );
    assert_blocked(
        &p.call(
            "read_text_file",
            json!({"path": format!("{root_path}/../../etc/passwd")}),
        ),
        "block-path-traversal",
    );
    assert_blocked(
        &p.call(
            "read_text_file",
            json!({"path": format!("{root_path}/.env")}),
        ),
        "block-env-and-key-files",
    );
    assert_blocked(
        &p.call("read_text_file", json!({"path": "/etc/shadow"})),
        "block-system-secrets",
    );
    let (code, p) = p.finish();
    assert_eq!(code, 0);
    assert!(
        !root.path().join("x").exists(),
        "the blocked write never reached the server"
    );
    let summary = p.audit().pop().unwrap();
    assert_eq!(summary["outcomes"]["blocked"], 4, "{summary}");
}
