//! The HTTP proxy with the real Python MCP SDK (`mcp` from PyPI) on either side: its Streamable
//! HTTP client against server-everything, its stateless JSON-answering server (no sessions at all),
//! its legacy HTTP+SSE server and client (endpoint `/messages/?session_id=...`), and its DNS
//! rebinding protection, which sees the client's Host header unchanged.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, npm_bin, py_venv};
use serde_json::{Value, json};

const SERVER: &str = r#"
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("mcp-guard-http-python")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


mode, port = sys.argv[1], int(sys.argv[2])
if mode == "stateless":
    server.run("streamable-http", host="127.0.0.1", port=port, stateless_http=True, json_response=True)
else:
    server.run("sse", host="127.0.0.1", port=port)
"#;

const CLIENT: &str = r#"
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def out(step, value):
    print(json.dumps({"step": step, "value": value}), flush=True)


async def call(session, name, args):
    try:
        result = await session.call_tool(name, args)
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        return {"ok": texts, "isError": bool(result.is_error)}
    except Exception as e:
        error = getattr(e, "error", None)
        return {
            "error": getattr(error, "message", str(e)),
            "code": getattr(error, "code", None),
            "data": getattr(error, "data", None),
        }


async def main():
    transport, url, tool, args, denied, denied_args = sys.argv[1:7]
    connect = sse_client(url) if transport == "sse" else streamable_http_client(url)
    async with connect as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            out("initialize", init.server_info.name)
            tools = await session.list_tools()
            out("tools", sorted(t.name for t in tools.tools))
            out("call", await call(session, tool, json.loads(args)))
            out("blocked", await call(session, denied, json.loads(denied_args)))
            out("after", await call(session, tool, json.loads(args)))


asyncio.run(main())
"#;

fn deny(tool: &str) -> String {
    format!(
        "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: py}}\nspec:\n  tools:\n    deny: [{tool}]\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, with its output in `dir`.
struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command, port: u16, log: &Path) -> Proc {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(log.with_extension("out")).unwrap())
        .stderr(File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{cmd:?} exited with {status}: {}",
                std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{cmd:?} does not listen");
        std::thread::sleep(Duration::from_millis(25));
    }
    Proc { child, port }
}

fn python_server(dir: &Path, mode: &str) -> Proc {
    std::fs::write(dir.join("server.py"), SERVER).unwrap();
    let port = free_port();
    spawn(
        Command::new(py_venv().join("bin/python"))
            .arg(dir.join("server.py"))
            .arg(mode)
            .arg(port.to_string()),
        port,
        &dir.join("server"),
    )
}

fn everything(dir: &Path) -> Proc {
    let port = free_port();
    spawn(
        Command::new(npm_bin("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", port.to_string()),
        port,
        &dir.join("everything"),
    )
}

fn proxy(dir: &Path, policy: &str, upstream: &str) -> Proc {
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let port = free_port();
    spawn(
        Command::new(env!("CARGO_BIN_EXE_mcp-guard-proxy"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(upstream)
            .arg("--policy")
            .arg(dir.join("policy.yaml"))
            .arg("--log")
            .arg(dir.join("audit.jsonl")),
        port,
        &dir.join("proxy"),
    )
}

/// Runs the Python client; its steps by name.
fn python_client(
    dir: &Path,
    transport: &str,
    url: &str,
    call: (&str, Value),
    denied: (&str, Value),
) -> serde_json::Map<String, Value> {
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();
    let mut child = Command::new(py_venv().join("bin/python"))
        .arg(dir.join("client.py"))
        .args([transport, url, call.0, &call.1.to_string()])
        .args([denied.0, &denied.1.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let steps: serde_json::Map<String, Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["step"].as_str().unwrap().to_owned(), v["value"].clone()))
        .collect();
    assert!(
        steps.contains_key("after"),
        "the client did not finish: {out}\n{err}"
    );
    steps
}

fn audit_calls(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "tools/call")
        .collect()
}

fn assert_blocked_step(step: &Value, rule: &str) {
    assert_eq!(step["code"], -32600, "{step}");
    assert_eq!(step["data"]["rule"], rule, "{step}");
}

#[test]
fn the_python_sdk_client_works_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = everything(dir.path());
    let upstream = format!("http://127.0.0.1:{}/mcp", server.port);
    let direct = python_client(
        dir.path(),
        "http",
        &upstream,
        ("echo", json!({"message": "hi"})),
        ("get-env", json!({})),
    );
    let p = proxy(dir.path(), &deny("get-env"), &upstream);
    let url = format!("http://127.0.0.1:{}/mcp", p.port);
    let steps = python_client(
        dir.path(),
        "http",
        &url,
        ("echo", json!({"message": "hi"})),
        ("get-env", json!({})),
    );
    for step in ["initialize", "tools", "call", "after"] {
        assert_eq!(steps[step], direct[step], "{step}: the same as directly");
    }
    assert_eq!(steps["call"]["ok"][0], "Echo: hi");
    assert!(direct["blocked"]["ok"].is_array(), "allowed directly");
    assert_blocked_step(&steps["blocked"], "tools.deny");
    let calls = audit_calls(dir.path());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[1]["outcome"], "blocked");
}

#[test]
fn a_stateless_python_server_is_guarded_without_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = python_server(dir.path(), "stateless");
    let p = proxy(
        dir.path(),
        &deny("add"),
        &format!("http://127.0.0.1:{}/mcp", server.port),
    );
    let url = format!("http://127.0.0.1:{}/mcp", p.port);
    let steps = python_client(
        dir.path(),
        "http",
        &url,
        ("echo", json!({"text": "hi"})),
        ("add", json!({"a": 1, "b": 2})),
    );
    assert_eq!(steps["initialize"], "mcp-guard-http-python");
    assert_eq!(steps["call"]["ok"][0], "echo: hi");
    assert_blocked_step(&steps["blocked"], "tools.deny");
    assert_eq!(steps["after"]["ok"][0], "echo: hi");
    let calls = audit_calls(dir.path());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls.iter().all(|c| c["session"] == "http-no-session"),
        "{calls:?}"
    );
    assert!(calls[0]["upstream_ms"].as_f64().is_some(), "answer matched");
}

#[test]
fn python_legacy_sse_works_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = python_server(dir.path(), "sse");
    let p = proxy(
        dir.path(),
        &deny("add"),
        &format!("http://127.0.0.1:{}/sse", server.port),
    );
    let url = format!("http://127.0.0.1:{}/sse", p.port);
    let steps = python_client(
        dir.path(),
        "sse",
        &url,
        ("echo", json!({"text": "legacy"})),
        ("add", json!({"a": 1, "b": 2})),
    );
    assert_eq!(steps["call"]["ok"][0], "echo: legacy");
    assert_blocked_step(&steps["blocked"], "tools.deny");
    assert_eq!(steps["after"]["ok"][0], "echo: legacy");
    let calls = audit_calls(dir.path());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_ne!(calls[0]["session"], "http-no-session", "{calls:?}");
}

#[test]
fn the_servers_host_check_sees_the_clients_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = python_server(dir.path(), "stateless");
    let p = proxy(
        dir.path(),
        &deny("add"),
        &format!("http://127.0.0.1:{}/mcp", server.port),
    );
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let status = |host: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            s,
            "POST /mcp HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .parse::<u16>()
            .unwrap_or(0)
    };
    // The Python SDK's DNS rebinding protection allows 127.0.0.1:* and refuses other hosts.
    assert_eq!(status(&format!("127.0.0.1:{}", p.port)), 200);
    assert_eq!(
        status("evil.example"),
        421,
        "the client's Host reached the server"
    );
}
