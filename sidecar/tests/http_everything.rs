//! The proxy over HTTP in front of the real `@modelcontextprotocol/server-everything` (npm), in its
//! Streamable HTTP (`/mcp`) and legacy HTTP+SSE (`/sse` + `/message`) modes: sessions work exactly
//! as directly, blocked calls come back as specified and never reach the server, SSE answers stream
//! through event by event, and bad traffic or a dead server gets errors without stopping the proxy.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TIMEOUT, assert_blocked, npm_bin};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const OPEN: &str =
    "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: open}\nspec: {}\n";
const DENY_ECHO: &str = "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: no-echo, generation: 2}\nspec:\n  tools:\n    deny: [echo]\n";
const PROTOCOL: &str = "2025-11-25";

// === processes ===

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// server-everything over HTTP (`streamableHttp` or `sse`).
struct Server {
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(mode: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(npm_bin("mcp-server-everything"))
            .arg(mode)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, "server-everything");
        Self {
            proc: Proc(child),
            port,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// How many times the server logged `needle` (it logs every POST it receives).
    fn logged(&self, needle: &str) -> usize {
        let mut text = String::new();
        for f in ["stdout.log", "stderr.log"] {
            text += &std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        }
        text.matches(needle).count()
    }

    fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

/// The proxy binary with `--listen` in front of `upstream`.
struct Proxy {
    proc: Proc,
    port: u16,
    metrics: u16,
    dir: tempfile::TempDir,
}

impl Proxy {
    fn start(policy: &str, upstream: &str, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let port = free_port();
        let metrics = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-guard-proxy"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(upstream)
            .arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .arg("--log")
            .arg(dir.path().join("audit.jsonl"))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, "mcp-guard-proxy");
        Self {
            proc: Proc(child),
            port,
            metrics,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn audit(&self) -> Vec<Value> {
        read_jsonl(&self.dir.path().join("audit.jsonl"))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The `mcp_guard_active_sessions` gauge.
    async fn active_sessions(&self) -> i64 {
        let resp = send(
            Method::GET,
            &format!("http://127.0.0.1:{}/metrics", self.metrics),
            &[],
            "",
        )
        .await;
        let text = String::from_utf8(body_bytes(resp).await).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("mcp_guard_active_sessions "))
            .unwrap_or_else(|| panic!("no active_sessions in {text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// === HTTP ===

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response<Incoming> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    tokio::time::timeout(TIMEOUT, client().request(req))
        .await
        .unwrap_or_else(|_| panic!("no answer from {url} within {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{url}: {e:?}"))
}

async fn body_bytes(resp: Response<Incoming>) -> Vec<u8> {
    tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .expect("the body ends")
        .expect("the body is readable")
        .to_bytes()
        .to_vec()
}

fn content_type(resp: &Response<Incoming>) -> String {
    resp.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// One SSE event as a client sees it, with the index of the body chunk that completed it.
#[derive(Debug)]
struct Event {
    event: Option<String>,
    data: String,
    chunk: usize,
}

/// An SSE body read event by event.
struct Sse {
    body: Incoming,
    buf: Vec<u8>,
    chunks: usize,
}

impl Sse {
    fn new(resp: Response<Incoming>) -> Self {
        assert!(
            content_type(&resp).starts_with("text/event-stream"),
            "{resp:?}"
        );
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            chunks: 0,
        }
    }

    /// The next event with data; `None` when the stream ends (or breaks).
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut ev = Event {
                    event: None,
                    data: String::new(),
                    chunk: self.chunks,
                };
                let mut lines = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        lines.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                ev.data = lines.join("\n");
                if !ev.data.trim().is_empty() {
                    return Some(ev);
                }
            }
            match tokio::time::timeout(TIMEOUT, self.body.frame()).await {
                Err(_) => panic!("no SSE event within {TIMEOUT:?}"),
                Ok(None | Some(Err(_))) => return None,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.chunks += 1;
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next JSON-RPC message.
    async fn message(&mut self) -> Option<Value> {
        let ev = self.next().await?;
        Some(serde_json::from_str(&ev.data).unwrap())
    }

    /// Messages until the answer to `id` (returned last).
    async fn until_answer(&mut self, id: &Value) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let msg = self
                .message()
                .await
                .unwrap_or_else(|| panic!("the stream ended before answering {id}: {seen:?}"));
            let done = msg.get("id") == Some(id) && msg.get("method").is_none();
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
}

/// The answer to a POST: its status, content type and JSON-RPC messages (from JSON or SSE).
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    session: Option<String>,
    messages: Vec<Value>,
}

impl Answer {
    /// The response to `id`.
    fn response(&self, id: &Value) -> &Value {
        self.messages
            .iter()
            .find(|m| m.get("id") == Some(id) && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no response to {id} in {self:?}"))
    }
}

async fn read_answer(resp: Response<Incoming>) -> Answer {
    let status = resp.status().as_u16();
    let content_type = content_type(&resp);
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut messages = Vec::new();
    if content_type.starts_with("text/event-stream") {
        let mut sse = Sse::new(resp);
        while let Some(m) = sse.message().await {
            messages.push(m);
        }
    } else {
        let body = body_bytes(resp).await;
        if content_type.starts_with("application/json") {
            match serde_json::from_slice(&body).unwrap() {
                Value::Array(items) => messages = items,
                one => messages.push(one),
            }
        }
    }
    Answer {
        status,
        content_type,
        session,
        messages,
    }
}

/// A Streamable HTTP MCP client.
struct Mcp {
    url: String,
    session: Option<String>,
    protocol: Option<&'static str>,
    next_id: i64,
}

impl Mcp {
    fn new(url: String) -> Self {
        Self {
            url,
            session: None,
            protocol: None,
            next_id: 0,
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = &self.session {
            h.push(("mcp-session-id", s));
        }
        if let Some(p) = self.protocol {
            h.push(("mcp-protocol-version", p));
        }
        h
    }

    async fn post_response(&self, body: &str) -> Response<Incoming> {
        send(Method::POST, &self.url, &self.headers(), body).await
    }

    async fn post(&self, msg: &Value) -> Answer {
        read_answer(self.post_response(&msg.to_string()).await).await
    }

    fn message(&mut self, method: &str, params: Value) -> (Value, Value) {
        self.next_id += 1;
        let id = json!(self.next_id);
        (
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            id,
        )
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let (msg, id) = self.message(method, params);
        self.post(&msg).await.response(&id).clone()
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }

    /// initialize + notifications/initialized; returns the initialize answer.
    async fn initialize(&mut self) -> Answer {
        let (msg, id) = self.message(
            "initialize",
            json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "mcp-guard-http-test", "version": "1"}}),
        );
        let answer = self.post(&msg).await;
        assert!(answer.response(&id)["result"].is_object(), "{answer:?}");
        self.session = answer.session.clone();
        self.protocol = Some(PROTOCOL);
        let note = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(note.status, 202, "{note:?}");
        answer
    }

    async fn delete(&self) -> u16 {
        send(Method::DELETE, &self.url, &self.headers(), "")
            .await
            .status()
            .as_u16()
    }
}

/// Sends raw bytes to `port` and returns what comes back until the connection closes.
fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the status line and headers and whatever body arrives before close.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= head_end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tool_calls(audit: &[Value]) -> Vec<&Value> {
    audit.iter().filter(|r| r["type"] == "tools/call").collect()
}

// === tests ===

/// The same scripted session, directly and through the proxy: status, content type and every
/// JSON-RPC message.
async fn scripted_session(url: String) -> (Vec<(u16, String)>, Vec<Value>) {
    let mut mcp = Mcp::new(url);
    let init = mcp.initialize().await;
    assert!(init.session.is_some(), "the server issues a session id");
    let mut http = vec![(init.status, init.content_type.clone())];
    let mut results = init.messages.clone();
    let steps = [
        ("tools/list", json!({})),
        (
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hello over http"}}),
        ),
        (
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 40, "b": 2}}),
        ),
        ("prompts/list", json!({})),
        ("resources/list", json!({})),
        ("no/such-method", json!({})),
    ];
    for (method, params) in steps {
        let (msg, id) = mcp.message(method, params);
        let answer = mcp.post(&msg).await;
        assert_eq!(answer.session, mcp.session, "Mcp-Session-Id round-trips");
        http.push((answer.status, answer.content_type.clone()));
        results.push(answer.response(&id).clone());
    }
    assert_eq!(mcp.delete().await, 200);
    (http, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_is_the_same_through_the_proxy() {
    let server = Server::start("streamableHttp");
    let proxy = Proxy::start(OPEN, &server.url("/mcp"), &[]);
    let direct = scripted_session(server.url("/mcp")).await;
    let proxied = scripted_session(proxy.url("/mcp")).await;
    assert_eq!(
        direct, proxied,
        "the proxy must be invisible when it does not block"
    );
    let results = &proxied.1;
    assert_eq!(
        results[0]["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    assert!(
        results[1]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );
    assert_eq!(
        results[2]["result"]["content"][0]["text"],
        "Echo: hello over http"
    );
    assert!(
        results[6]["error"].is_object(),
        "unknown methods reach the server"
    );
    assert_eq!(proxied.0[1], (200, "text/event-stream".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_blocked_with_its_id_and_rule_and_never_reaches_the_server() {
    let server = Server::start("streamableHttp");
    let proxy = Proxy::start(DENY_ECHO, &server.url("/mcp"), &[]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let posts = server.logged("Received MCP POST request");

    let blocked = mcp
        .post(&json!({"jsonrpc": "2.0", "id": "call-7", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hi"}}}))
        .await;
    assert_eq!(
        (blocked.status, blocked.content_type.as_str()),
        (200, "application/json")
    );
    let err = blocked.response(&json!("call-7"));
    assert_blocked(err, "tools.deny");
    assert_eq!(err["error"]["data"]["policy"], "no-echo");
    assert_eq!(
        server.logged("Received MCP POST request"),
        posts,
        "the server never saw the blocked call"
    );

    // A batch with one call blocked: the other is forwarded, and both answers come back.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "no"}}},
        {"jsonrpc": "2.0", "id": 22, "method": "tools/call", "params": {"name": "get-sum", "arguments": {"a": 1, "b": 2}}}
    ]);
    let answer = mcp.post(&batch).await;
    assert_blocked(answer.response(&json!(21)), "tools.deny");
    assert_eq!(
        answer.response(&json!(22))["result"]["content"][0]["text"],
        "The sum of 1 and 2 is 3."
    );
    let ok = mcp.call("get-sum", json!({"a": 2, "b": 2})).await;
    assert!(ok["result"].is_object(), "{ok}");
    assert_eq!(server.logged("Received MCP POST request"), posts + 2);

    let audit = proxy.audit();
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 4, "{audit:?}");
    assert_eq!(
        (calls[0]["id"].as_str(), calls[0]["outcome"].as_str()),
        (Some("\"call-7\""), Some("blocked"))
    );
    assert_eq!(calls[0]["findings"][0]["rule"], "tools.deny");
    assert_eq!(calls[0]["policy"]["generation"], 2);
    assert!(calls.iter().all(|c| c["session"] == session.as_str()));
    let allowed: Vec<&&Value> = calls.iter().filter(|c| c["outcome"] == "allowed").collect();
    assert_eq!(allowed.len(), 2);
    assert!(allowed.iter().all(|c| c["upstream_ms"].as_f64().is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_stream_carries_server_messages_and_delete_ends_the_session() {
    let server = Server::start("streamableHttp");
    let proxy = Proxy::start(OPEN, &server.url("/mcp"), &[]);
    assert_eq!(proxy.active_sessions().await, 0);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;
    assert_eq!(proxy.active_sessions().await, 1);

    let session = mcp.session.clone().unwrap();
    let get = send(
        Method::GET,
        &mcp.url,
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", PROTOCOL),
        ],
        "",
    )
    .await;
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["mcp-session-id"].to_str().unwrap(),
        session.as_str()
    );
    let mut stream = Sse::new(get);
    // Simulated logging sends a log message at once, unrelated to any request: on the GET stream.
    let r = mcp.call("toggle-simulated-logging", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    let note = stream.message().await.expect("a message on the GET stream");
    assert_eq!(note["method"], "notifications/message", "{note}");
    let r = mcp.call("toggle-simulated-logging", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    drop(stream);

    assert_eq!(mcp.delete().await, 200);
    assert_eq!(proxy.active_sessions().await, 0);
    // The session is gone upstream too; the server's refusal passes through unchanged.
    let after = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .await;
    assert_eq!(after.status, 400, "{after:?}");
    assert_eq!(after.messages[0]["error"]["code"], -32000);
    assert_eq!(
        proxy.active_sessions().await,
        0,
        "an unknown id keeps no state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_are_forwarded_event_by_event() {
    let server = Server::start("streamableHttp");
    let proxy = Proxy::start(OPEN, &server.url("/mcp"), &[]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;
    let (msg, id) = mcp.message(
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 2, "steps": 2}, "_meta": {"progressToken": "p-1"}}),
    );
    let mut stream = Sse::new(mcp.post_response(&msg.to_string()).await);
    let mut progress = Vec::new();
    let result = loop {
        let ev = stream.next().await.expect("events until the result");
        assert_eq!(ev.event.as_deref(), Some("message"));
        let m: Value = serde_json::from_str(&ev.data).unwrap();
        if m["method"] == "notifications/progress" {
            assert_eq!(m["params"]["progressToken"], "p-1");
            progress.push(ev.chunk);
        } else {
            assert_eq!(m["id"], id);
            break (m, ev.chunk);
        }
    };
    assert_eq!(progress.len(), 2, "{progress:?}");
    assert!(
        progress[0] < result.1,
        "the first progress event arrived in an earlier chunk than the result (not buffered)"
    );
    assert!(
        result.0["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Long running operation completed")
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_sessions_work_and_blocked_errors_arrive_on_the_stream() {
    let server = Server::start("sse");
    let proxy = Proxy::start(DENY_ECHO, &server.url("/sse"), &[]);
    let get = send(
        Method::GET,
        &proxy.url("/sse"),
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(get.status(), 200);
    let mut stream = Sse::new(get);
    let endpoint = stream.next().await.unwrap();
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
    assert!(
        endpoint.data.starts_with("/message?sessionId="),
        "{endpoint:?}"
    );
    let session_id = endpoint.data.split('=').nth(1).unwrap().to_owned();
    let post_url = proxy.url(&endpoint.data);
    let post = |body: Value| {
        let url = post_url.clone();
        async move {
            let resp = send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                &body.to_string(),
            )
            .await;
            let status = resp.status().as_u16();
            (status, String::from_utf8(body_bytes(resp).await).unwrap())
        }
    };

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "legacy-test", "version": "1"}}});
    assert_eq!(post(init).await, (202, "Accepted".to_owned()));
    let answered = stream.until_answer(&json!(1)).await;
    assert_eq!(
        answered.last().unwrap()["result"]["protocolVersion"],
        "2024-11-05"
    );
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .0,
        202
    );
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get-sum", "arguments": {"a": 5, "b": 6}}})).await.0,
        202
    );
    let sum = stream.until_answer(&json!(2)).await;
    assert_eq!(
        sum.last().unwrap()["result"]["content"][0]["text"],
        "The sum of 5 and 6 is 11."
    );

    let seen = server.logged("Client Message from");
    let (status, body) = post(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "blocked"}}})).await;
    assert_eq!(
        (status, body.as_str()),
        (202, "Accepted"),
        "what the server answers"
    );
    let blocked = stream.until_answer(&json!(3)).await;
    assert_blocked(blocked.last().unwrap(), "tools.deny");
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}))
            .await
            .0,
        202
    );
    assert!(stream.until_answer(&json!(4)).await.last().unwrap()["result"].is_object());
    assert_eq!(
        server.logged("Client Message from"),
        seen + 1,
        "the server saw the ping but not the blocked call"
    );

    let calls: Vec<Value> = tool_calls(&proxy.audit()).into_iter().cloned().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c["session"] == session_id.as_str()));
    assert_eq!(calls[1]["outcome"], "blocked");
    assert_eq!(proxy.active_sessions().await, 1);
    drop(stream);
    // The legacy session ends with its stream.
    let deadline = Instant::now() + TIMEOUT;
    while proxy.active_sessions().await != 0 {
        assert!(
            Instant::now() < deadline,
            "the legacy session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_requests_get_errors_and_others_go_on() {
    let server = Server::start("streamableHttp");
    let proxy = Proxy::start(OPEN, &server.url("/mcp"), &["--max-message-bytes", "4096"]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;

    // Invalid JSON: 400 and a parse error, as the MCP TypeScript SDK server answers.
    let bad = read_answer(mcp.post_response("{this is not json").await).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.messages[0]["error"]["code"], -32700);
    assert!(bad.messages[0]["id"].is_null());

    // Over the limit, announced by Content-Length.
    let big = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x".repeat(5000)}}});
    let too_big = read_answer(mcp.post_response(&big.to_string()).await).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    let message = too_big.messages[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("limit of 4096 bytes"), "{message}");

    // Over the limit, chunked (no length announced).
    let chunk = "x".repeat(3000);
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    let raw = raw_exchange(proxy.port, chunked.as_bytes());
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("limit of 4096 bytes"), "{raw}");

    // Not HTTP at all.
    let raw = raw_exchange(proxy.port, b"\x00\x01GARBAGE\r\n\r\n");
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");

    // The session goes on, and so does a new one.
    let echo = mcp.call("echo", json!({"message": "still here"})).await;
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: still here");
    let mut other = Mcp::new(proxy.url("/mcp"));
    other.initialize().await;
    assert_ne!(other.session, mcp.session);
    let sum = other.call("get-sum", json!({"a": 1, "b": 1})).await;
    assert!(sum["result"].is_object(), "{sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_gets_json_rpc_errors() {
    let nobody = format!("http://127.0.0.1:{}/mcp", free_port());
    let proxy = Proxy::start(OPEN, &nobody, &[]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    let (msg, id) = mcp.message(
        "initialize",
        json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let answer = mcp.post(&msg).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let err = answer.response(&id);
    assert_eq!(err["error"]["code"], -32603, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is unreachable"),
        "{err}"
    );
    // Nothing to answer by id: a 502 with a JSON-RPC error body.
    let note = mcp
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(note.status, 502, "{note:?}");
    let get = send(
        Method::GET,
        &mcp.url,
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(get.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_call_fails_the_call_on_its_stream() {
    let mut server = Server::start("streamableHttp");
    let proxy = Proxy::start(OPEN, &server.url("/mcp"), &[]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;
    let (msg, id) = mcp.message(
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30}, "_meta": {"progressToken": 1}}),
    );
    let mut stream = Sse::new(mcp.post_response(&msg.to_string()).await);
    let first = stream.message().await.unwrap();
    assert_eq!(first["method"], "notifications/progress");
    server.kill();
    let failed = stream.until_answer(&id).await;
    let err = failed.last().unwrap();
    assert_eq!(err["error"]["code"], -32603, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "{err}"
    );
    // The proxy goes on answering, now with errors for the dead server.
    let after = mcp.call("echo", json!({"message": "anyone?"})).await;
    assert_eq!(after["error"]["code"], -32603, "{after}");
    let calls: Vec<Value> = tool_calls(&proxy.audit()).into_iter().cloned().collect();
    assert_eq!(calls[0]["outcome"], "server-failed", "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_proxy_and_writes_the_summary() {
    let server = Server::start("streamableHttp");
    let mut proxy = Proxy::start(OPEN, &server.url("/mcp"), &[]);
    let mut mcp = Mcp::new(proxy.url("/mcp"));
    mcp.initialize().await;
    assert!(mcp.call("echo", json!({"message": "x"})).await["result"].is_object());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.proc.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = proxy.proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    let audit = proxy.audit();
    assert_eq!(audit.last().unwrap()["type"], "proxy_summary", "{audit:?}");
    assert_eq!(audit.last().unwrap()["calls"], 1);
    let text = std::fs::read_to_string(proxy.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(mcp_guard_proxy::audit::verify_chain(&text), Ok(audit.len()));
}
