//! A stdio MCP server served as Streamable HTTP (`--listen ADDR -- COMMAND`, the Kubernetes stdio
//! sidecar mode), with the real `@modelcontextprotocol/server-everything` (npm) as the stdio server
//! and the real Python MCP SDK (`mcp` from PyPI) as the Streamable HTTP client: the guard works as
//! over any HTTP upstream, server requests (elicitation, roots) and progress reach the client and
//! its answers reach the server, every session has its own process, and sessions end (DELETE, the
//! server dying, idling, the session limit) the way the protocol says. Audit records on the proxy's
//! stdout (as injected in Kubernetes), refused in the stdio mode. Also `--install-to`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, everything, proxy_bin, py_venv};
use serde_json::{Value, json};

const DENY_GET_ENV: &str = "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: bridge}\nspec:\n  tools:\n    deny: [get-env]\n";

const CLIENT: &str = r#"
import asyncio
import json
import sys
from contextlib import AsyncExitStack

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client


def out(step, value):
    print(json.dumps({"step": step, "value": value}), flush=True)


async def on_elicit(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada", "check": True})


async def on_roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///srv/data", name="data")])


async def call(session, name, args, progress=None):
    try:
        result = await session.call_tool(name, args, progress_callback=progress)
        return {"ok": [c.text for c in result.content if getattr(c, "type", "") == "text"]}
    except Exception as e:
        error = getattr(e, "error", None)
        return {"error": getattr(error, "message", str(e)), "code": getattr(error, "code", None),
                "data": getattr(error, "data", None)}


async def full(url):
    async with streamable_http_client(url) as (read, write, *_):
        async with ClientSession(read, write, elicitation_callback=on_elicit,
                                 list_roots_callback=on_roots) as session:
            init = await session.initialize()
            out("initialize", init.server_info.name)
            tools = await session.list_tools()
            out("tools", sorted(t.name for t in tools.tools))
            out("echo", await call(session, "echo", {"message": "hi"}))
            out("blocked", await call(session, "get-env", {}))
            out("elicit", await call(session, "trigger-elicitation-request", {}))
            out("roots", await call(session, "get-roots-list", {}))
            steps = []

            async def progress(p, total, message):
                steps.append(p)

            out("long", await call(session, "trigger-long-running-operation",
                                   {"duration": 1, "steps": 2}, progress))
            out("progress", steps)
            out("after", await call(session, "echo", {"message": "still"}))


async def concurrent(url):
    async with AsyncExitStack() as stack:
        sessions = []
        for _ in range(2):
            read, write, *_ = await stack.enter_async_context(streamable_http_client(url))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            sessions.append(session)
        out("open", 2)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(*(call(s, "echo", {"message": f"s{i}"})
                                         for i, s in enumerate(sessions)))
        out("echoes", [r["ok"][0] for r in results])


asyncio.run({"full": full, "concurrent": concurrent}[sys.argv[1]](sys.argv[2]))
"#;

/// The proxy serving server-everything's stdio mode on a port of its own choosing.
struct Bridge {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Bridge {
    fn start(policy: &str, flags: &[&str]) -> Self {
        Self::serving(policy, flags, &everything())
    }

    fn serving(policy: &str, flags: &[&str], command: &[String]) -> Self {
        Self::spawn(policy, flags, command, None)
    }

    /// With `--log STDOUT` (`-` or `/dev/stdout`) and the proxy's stdout a pipe, as a container
    /// runtime gives it (containerd: a FIFO); read it with [`Bridge::stdout`].
    fn auditing_to_stdout(policy: &str, stdout: &str) -> Self {
        Self::spawn(policy, &[], &everything(), Some(stdout))
    }

    /// The proxy with `--log FILE` in its directory, or `--log STDOUT` when given.
    fn spawn(policy: &str, flags: &[&str], command: &[String], stdout: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let mut proxy = Command::new(proxy_bin());
        proxy.arg("--policy").arg(dir.path().join("policy.yaml"));
        match stdout {
            Some(log) => proxy.args(["--log", log]).stdout(Stdio::piped()),
            None => proxy
                .arg("--log")
                .arg(dir.path().join("audit.jsonl"))
                .stdout(Stdio::null()),
        };
        let mut child = proxy
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let addr = loop {
            let err = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
            if let Some(rest) = err.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the proxy exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "the proxy does not listen: {err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, addr, dir }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap()
    }

    /// Everything the proxy wrote to its stdout (a pipe), once it has exited.
    fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut pipe) = self.child.stdout.take() {
            pipe.read_to_string(&mut out).unwrap();
        }
        out
    }

    /// SIGTERM; waits for the proxy to exit.
    fn terminate(&mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the proxy did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The proxy's live child processes (the server processes), by pid.
    fn children(&self) -> Vec<u32> {
        children_of(self.child.id(), false)
    }

    /// Waits until the proxy has exactly `n` children, zombies included (none may be left).
    fn wait_children(&self, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let all = children_of(self.child.id(), true);
            if all.len() == n {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "{} children, not {n}: {}",
                all.len(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audit_calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["type"] == "tools/call")
            .collect()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes whose parent is `parent` (with `zombies`, also those exited and not waited for).
fn children_of(parent: u32, zombies: bool) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&parent.to_string().as_str()) && (zombies || fields[0] != "Z") {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// === raw HTTP ===

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The JSON-RPC messages of the body: one JSON document, or SSE `data` lines.
    fn messages(&self) -> Vec<Value> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return vec![v];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// The response to request `id` (an SSE stream may also carry the server's notifications, e.g.
    /// server-everything's `notifications/tools/list_changed` right after initialize).
    fn response(&self, id: i64) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no response to id {id} in {}", self.body))
    }
}

/// Sends one request and returns its head and a reader positioned at the body.
fn send(
    addr: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} /mcp HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    req += body;
    s.write_all(req.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head += &line;
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, reader)
}

/// One complete request (the body de-chunked).
fn request(addr: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let (status, headers, mut reader) = send(addr, method, headers, body);
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&raw)
    } else {
        raw
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out += &rest[..n];
        raw = &rest[n + 2..];
    }
    out
}

const BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON: (&str, &str) = ("content-type", "application/json");

fn initialize(addr: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let a = request(addr, "POST", &[JSON, BOTH], &init.to_string());
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.messages()[0]["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    let id = a.header("mcp-session-id").expect("a session id");
    let done = request(
        addr,
        "POST",
        &[JSON, BOTH, ("mcp-session-id", &id)],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(done.status, 202);
    id
}

fn call(
    addr: &str,
    session: &str,
    accept: (&str, &str),
    id: i64,
    tool: &str,
    args: Value,
) -> Answer {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    request(
        addr,
        "POST",
        &[JSON, accept, ("mcp-session-id", session)],
        &msg.to_string(),
    )
}

// === the Python client ===

fn python(dir: &Path, scenario: &str, url: &str) -> Command {
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();
    let mut c = Command::new(py_venv().join("bin/python"));
    c.arg(dir.join("client.py")).args([scenario, url]);
    c
}

/// The next step line of a running client.
fn next_step(out: &mut BufReader<ChildStdout>) -> (String, Value) {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (v["step"].as_str().unwrap().to_owned(), v["value"].clone())
}

#[test]
fn the_python_client_works_through_the_stdio_bridge() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let dir = tempfile::tempdir().unwrap();
    let s = common::client_steps(&mut python(dir.path(), "full", &b.url()));
    assert_eq!(s["initialize"], "mcp-servers/everything");
    let tools: Vec<&str> = s["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"trigger-elicitation-request"),
        "{tools:?}"
    );
    assert_eq!(s["echo"]["ok"][0], "Echo: hi");
    assert_eq!(s["blocked"]["code"], -32600, "{s:?}");
    assert_eq!(s["blocked"]["data"]["rule"], "tools.deny");
    // The server's elicitation/create reached the client on the call's stream, and its answer
    // reached the server.
    let elicit = s["elicit"]["ok"].to_string();
    assert!(elicit.contains("Name: Ada"), "{elicit}");
    // roots/list, sent by the server when the session started, unrelated to any call.
    assert!(
        s["roots"]["ok"][0]
            .as_str()
            .unwrap()
            .contains("file:///srv/data"),
        "{s:?}"
    );
    assert_eq!(
        s["progress"],
        json!([1.0, 2.0]),
        "progress on the call's stream"
    );
    assert!(
        s["long"]["ok"][0].as_str().unwrap().contains("completed"),
        "{s:?}"
    );
    assert_eq!(s["after"]["ok"][0], "Echo: still");
    let outcomes: Vec<String> = b
        .audit_calls()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        [
            "allowed", "blocked", "allowed", "allowed", "allowed", "allowed"
        ]
    );
    // The client sent DELETE when it closed: its process is gone.
    b.wait_children(0);
}

#[test]
fn the_guard_asks_by_elicitation_through_the_bridge() {
    let policy = "rules:\n  - {id: ask-deploys, action: ask, args: [{pointer: /message, regex: '(?i)deploy'}]}\n\
                  ask: {via: elicitation, timeout: 5s, fallback: block}\n";
    let b = Bridge::start(policy, &[]);
    let mut client = Command::new(py_venv().join("bin/python"));
    client
        .arg(common::peer_file("py_elicit_client.py"))
        .arg("accept")
        .arg(b.url());
    let s = common::client_steps(&mut client);
    assert_eq!(s["first"]["ok"][0], "Echo: deploy to production", "{s:?}");
    assert_eq!(
        (s["asked_first"].as_i64(), s["asked_total"].as_i64()),
        (Some(1), Some(2))
    );
    let outcomes: Vec<String> = b
        .audit_calls()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["ask-approved"; 3]);
}

#[test]
fn concurrent_sessions_get_their_own_processes() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut client = python(dir.path(), "concurrent", &b.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(dir.path().join("client.err")).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    assert_eq!(
        next_step(&mut out).0,
        "open",
        "{}",
        std::fs::read_to_string(dir.path().join("client.err")).unwrap()
    );
    let pids = b.wait_children(2);
    assert_ne!(pids[0], pids[1]);
    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let (step, echoes) = next_step(&mut out);
    assert_eq!(
        (step.as_str(), echoes),
        ("echoes", json!(["Echo: s0", "Echo: s1"]))
    );
    assert!(client.wait().unwrap().success());
    b.wait_children(0);
    assert!(pids.iter().all(|p| !alive(*p)));
}

#[test]
fn sessions_answer_as_json_or_sse_and_end_with_delete() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let id = initialize(&b.addr);
    let [pid] = b.wait_children(1)[..] else {
        panic!()
    };
    let sse = call(&b.addr, &id, BOTH, 1, "get-sum", json!({"a": 1, "b": 2}));
    assert_eq!(
        sse.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        sse.response(1)["result"]["content"][0]["text"],
        "The sum of 1 and 2 is 3."
    );
    let plain = call(
        &b.addr,
        &id,
        ("accept", "application/json"),
        2,
        "get-sum",
        json!({"a": 2, "b": 2}),
    );
    assert_eq!(
        plain.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(plain.messages()[0]["id"], 2);
    assert_eq!(
        plain.messages()[0]["result"]["content"][0]["text"],
        "The sum of 2 and 2 is 4."
    );
    // A batch of two calls, one of them blocked by the guard.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "b"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}},
    ]);
    let a = request(
        &b.addr,
        "POST",
        &[
            JSON,
            ("accept", "application/json"),
            ("mcp-session-id", &id),
        ],
        &batch.to_string(),
    );
    let answers = &a.messages()[0];
    let by_id = |n: i64| {
        answers
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_id(3)["result"]["content"][0]["text"],
        "Echo: b",
        "{answers}"
    );
    common::assert_blocked(&by_id(4), "tools.deny");

    let gone = request(&b.addr, "DELETE", &[("mcp-session-id", &id)], "");
    assert_eq!(gone.status, 200);
    b.wait_children(0);
    assert!(!alive(pid));
    assert_eq!(
        call(&b.addr, &id, BOTH, 5, "echo", json!({"message": "x"})).status,
        404
    );
    assert_eq!(
        request(
            &b.addr,
            "GET",
            &[("accept", "text/event-stream"), ("mcp-session-id", &id)],
            ""
        )
        .status,
        404
    );
    assert_eq!(
        request(&b.addr, "DELETE", &[("mcp-session-id", &id)], "").status,
        404
    );
    assert_eq!(
        call(&b.addr, "no-such-session", BOTH, 6, "echo", json!({})).status,
        404
    );
    let no_session = request(
        &b.addr,
        "POST",
        &[JSON, BOTH],
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
    );
    assert_eq!(no_session.status, 400);
}

#[test]
fn a_server_dying_mid_call_fails_the_call_and_ends_the_session() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let id = initialize(&b.addr);
    let [pid] = b.wait_children(1)[..] else {
        panic!()
    };
    let msg = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30}, "_meta": {"progressToken": "p"}}});
    let (status, _, mut stream) = send(
        &b.addr,
        "POST",
        &[JSON, BOTH, ("mcp-session-id", &id)],
        &msg.to_string(),
    );
    assert_eq!(status, 200);
    // The call runs: its first progress notification arrives on its stream.
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen += &line;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = Instant::now();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the error came at once"
    );
    let error = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|m| m["id"] == 9)
        .unwrap_or_else(|| panic!("no answer: {rest}"));
    assert_eq!(error["error"]["code"], -32603, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{error}"
    );
    b.wait_children(0);
    assert_eq!(
        call(&b.addr, &id, BOTH, 10, "echo", json!({"message": "x"})).status,
        404
    );
    let calls = b.audit_calls();
    assert_eq!(
        calls.last().unwrap()["tool"],
        "trigger-long-running-operation"
    );
}

#[test]
fn server_messages_outside_calls_arrive_on_the_get_stream() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let id = initialize(&b.addr);
    // Starts a log message every 5 s, outside any call.
    let toggled = call(&b.addr, &id, BOTH, 1, "toggle-simulated-logging", json!({}));
    assert!(
        toggled.messages().iter().any(|m| m["id"] == 1),
        "{}",
        toggled.body
    );
    // With no GET stream open, the next one is kept; a GET stream gets it first, at once.
    std::thread::sleep(Duration::from_millis(5500));
    let (status, head, mut stream) = send(
        &b.addr,
        "GET",
        &[("accept", "text/event-stream"), ("mcp-session-id", &id)],
        "",
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let started = Instant::now();
    let mut seen = String::new();
    while !seen.contains("notifications/message") {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen += &line;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "kept, not waited for: {seen}"
    );
    // A second GET takes over from the first, which ends.
    let (status, _, _second) = send(
        &b.addr,
        "GET",
        &[("accept", "text/event-stream"), ("mcp-session-id", &id)],
        "",
    );
    assert_eq!(status, 200);
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    let refused = request(
        &b.addr,
        "GET",
        &[("accept", "application/json"), ("mcp-session-id", &id)],
        "",
    );
    assert_eq!(refused.status, 406);
}

#[test]
fn a_server_that_exits_at_once_fails_initialize_and_a_missing_one_stops_the_proxy() {
    let broken = ["sh", "-c", "echo 'no config' >&2; exit 3"].map(String::from);
    let b = Bridge::serving(DENY_GET_ENV, &[], &broken);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    for _ in 0..2 {
        let a = request(&b.addr, "POST", &[JSON, BOTH], &init.to_string());
        let error = a
            .messages()
            .into_iter()
            .find(|m| m["id"] == 0)
            .unwrap_or_else(|| panic!("{}", a.body));
        assert_eq!(error["error"]["code"], -32603, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exited"),
            "{error}"
        );
    }
    b.wait_children(0);
    assert!(
        b.stderr().contains("no config"),
        "the server's stderr is the proxy's"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), DENY_GET_ENV).unwrap();
    let out = Command::new(proxy_bin())
        .arg("--policy")
        .arg(dir.path().join("p.yaml"))
        .args(["--listen", "127.0.0.1:0", "--", "no-such-mcp-server-x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-mcp-server-x"));
}

#[test]
fn sessions_are_limited_and_idle_ones_expire() {
    let b = Bridge::start(
        DENY_GET_ENV,
        &["--max-sessions", "1", "--session-idle", "1s"],
    );
    let first = initialize(&b.addr);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let refused = request(&b.addr, "POST", &[JSON, BOTH], &init.to_string());
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.messages()[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-sessions")
    );
    // Unused, the first session expires; its process is stopped and a new session fits.
    b.wait_children(0);
    assert_eq!(
        call(&b.addr, &first, BOTH, 1, "echo", json!({"message": "x"})).status,
        404
    );
    initialize(&b.addr);
    assert_eq!(b.children().len(), 1);
    assert!(
        b.stderr().contains("session 1 ended (idle)"),
        "{}",
        b.stderr()
    );
}

#[test]
fn the_bridge_refuses_requests_that_bypass_the_guard() {
    let b = Bridge::start(DENY_GET_ENV, &[]);
    let stderr = b.stderr();
    let bridge = stderr
        .split("stdio bridge on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_owned();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let direct = request(
        &bridge,
        "POST",
        &[JSON, BOTH, ("x-mcp-guard-bridge", "guess")],
        &init.to_string(),
    );
    assert_eq!(direct.status, 403);
    assert!(b.children().is_empty());
}

#[test]
fn sigterm_stops_every_server_process() {
    let mut b = Bridge::start(DENY_GET_ENV, &[]);
    initialize(&b.addr);
    initialize(&b.addr);
    let pids = b.wait_children(2);
    let status = b.terminate();
    assert!(status.success(), "{status}: {}", b.stderr());
    assert!(pids.iter().all(|p| !alive(*p)), "{pids:?} still running");
}

// === audit records on stdout (the Kubernetes container log) ===

#[test]
fn audit_records_go_to_the_proxys_stdout_pipe() {
    // `/dev/stdout` is what the operator injects; `-` says the same.
    for log in ["/dev/stdout", "-"] {
        let mut b = Bridge::auditing_to_stdout(DENY_GET_ENV, log);
        let id = initialize(&b.addr);
        let echo = call(&b.addr, &id, BOTH, 1, "echo", json!({"message": "hi"}));
        assert_eq!(echo.response(1)["result"]["content"][0]["text"], "Echo: hi");
        let blocked = call(&b.addr, &id, BOTH, 2, "get-env", json!({}));
        assert_eq!(blocked.response(2)["error"]["code"], -32600);
        let status = b.terminate();
        assert!(status.success(), "{log}: {status}: {}", b.stderr());
        // Only audit records: the server's stdout goes to the proxy, never to the proxy's stdout.
        let out = b.stdout();
        let records: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{log}: {e}: {l}")))
            .collect();
        assert_eq!(
            mcp_guard_proxy::audit::verify_chain(&out),
            Ok(records.len()),
            "{log}: {out}"
        );
        assert_eq!(records[0]["prev"], mcp_guard_proxy::audit::GENESIS);
        let calls: Vec<(&Value, &Value)> = records
            .iter()
            .filter(|r| r["type"] == "tools/call")
            .map(|r| (&r["tool"], &r["outcome"]))
            .collect();
        assert_eq!(
            calls,
            [
                (&json!("echo"), &json!("allowed")),
                (&json!("get-env"), &json!("blocked"))
            ],
            "{log}: {out}"
        );
        let last = records.last().unwrap();
        assert_eq!(last["type"], "proxy_summary", "{log}: {out}");
        assert_eq!(last["calls"], 2);
    }
}

#[test]
fn audit_on_stdout_is_refused_where_stdout_carries_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, DENY_GET_ENV).unwrap();
    for log in ["-", "/dev/stdout"] {
        let out = Command::new(proxy_bin())
            .arg("--policy")
            .arg(&policy)
            .args(["--log", log, "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{log}: {err}");
        assert!(
            err.contains(&format!("--log {log}:")) && err.contains("--listen"),
            "{log}: {err}"
        );
        assert!(out.stdout.is_empty(), "{log}: nothing reaches the client");
    }
}

// === --install-to ===

#[test]
fn install_to_copies_a_runnable_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(proxy_bin())
        .arg("--install-to")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = dir.path().join("mcp-guard-proxy");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let help = Command::new(&installed).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--install-to"));
    // Installing again replaces the copy.
    let again = Command::new(proxy_bin())
        .arg("--install-to")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn install_to_takes_no_other_option() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, DENY_GET_ENV).unwrap();
    let out = Command::new(proxy_bin())
        .arg("--install-to")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("mcp-guard-proxy").exists());
    let missing = Command::new(proxy_bin())
        .arg("--install-to")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    // Without --install-to, --policy is required.
    let no_policy = Command::new(proxy_bin())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(no_policy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_policy.stderr).contains("--policy"));
}
