//! The HTTP proxy in front of a scripted upstream (raw TCP), for what a real server does not show:
//! exactly which headers pass, absolute legacy endpoints, CRLF and split SSE, replaced results that
//! keep their SSE fields, and upstream answers that break off or are too large.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(20);

const POLICY: &str = "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: fake}\nspec:\n  tools:\n    deny: [echo]\n  detectors:\n    credentialLeak: {action: block, scanResults: true}\n";

/// A request as the upstream received it.
#[derive(Debug, Clone)]
struct Captured {
    head: String,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// What the upstream writes back: pieces written one by one (a little apart, so they arrive as
/// separate chunks); an empty piece keeps the connection open until the proxy closes it.
type Script = Arc<dyn Fn(&Captured) -> Vec<Vec<u8>> + Send + Sync>;

struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Fake {
    async fn start(script: impl Fn(u16) -> Script) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = script(port);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_one(sock, script.clone(), log.clone()));
            }
        });
        Self { port, seen }
    }

    fn seen(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_one(
    mut sock: tokio::net::TcpStream,
    script: Script,
    log: Arc<Mutex<Vec<Captured>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut req = Captured {
        head,
        body: buf[head_end + 4..].to_vec(),
    };
    let len: usize = req
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    while req.body.len() < len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.body.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().unwrap().push(req.clone());
    for piece in script(&req) {
        if piece.is_empty() {
            let _ = sock.read(&mut chunk).await; // until the proxy closes
            return;
        }
        if sock.write_all(&piece).await.is_err() {
            return;
        }
        let _ = sock.flush().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn response(status: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for h in headers {
        out += h;
        out += "\r\n";
    }
    out += &format!("content-length: {}\r\n\r\n{body}", body.len());
    out.into_bytes()
}

fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n".to_vec()
}

/// The JSON-RPC message in a captured body (`null` if none).
fn rpc(req: &Captured) -> Value {
    serde_json::from_slice(&req.body).unwrap_or(Value::Null)
}

struct Proxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(upstream: u16, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-guard-proxy"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(format!("http://127.0.0.1:{upstream}/mcp"))
            .arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .arg("--log")
            .arg(dir.path().join("audit.jsonl"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "the proxy exited");
            assert!(Instant::now() < deadline, "the proxy does not listen");
            std::thread::sleep(Duration::from_millis(25));
        }
        Self { child, port, dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// A raw HTTP exchange: the response's head (lower-cased names) and body, read until the body
/// is complete (Content-Length), the connection closes, or `until` appears in the body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn exchange(port: u16, request: &str, until: Option<&str>) -> (Raw, std::net::TcpStream) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(i) = text.find("\r\n\r\n") {
            let head = text[..i].to_owned();
            let body = text[i + 4..].to_owned();
            let raw = Raw {
                status: head.split(' ').nth(1).unwrap().parse().unwrap(),
                head,
                body,
            };
            let done = match (until, raw.header("content-length")) {
                (Some(u), _) => raw.body.contains(u),
                (None, Some(len)) => raw.body.len() >= len.parse::<usize>().unwrap(),
                (None, None) => false,
            };
            if done {
                return (raw, s);
            }
        }
        match s.read(&mut buf) {
            Ok(0) => {
                let text = String::from_utf8_lossy(&out).into_owned();
                let (head, body) = text.split_once("\r\n\r\n").expect("a response");
                let raw = Raw {
                    status: head.split(' ').nth(1).unwrap().parse().unwrap(),
                    head: head.to_owned(),
                    body: body.to_owned(),
                };
                return (raw, s);
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the answer: {e}; so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Decodes a chunked body (as the proxy streams SSE).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out += &after[..n];
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_headers_pass_and_hop_by_hop_headers_do_not() {
    let fake = Fake::start(|_| {
        Arc::new(|req: &Captured| {
            if req.head.starts_with("GET /status") {
                return vec![response(
                    "503 Service Unavailable",
                    &["content-type: text/plain"],
                    "down",
                )];
            }
            if req.head.starts_with("POST /token") {
                return vec![response(
                    "200 OK",
                    &["content-type: application/json"],
                    "{\"access_token\":\"t\"}",
                )];
            }
            vec![response(
                "200 OK",
                &[
                    "content-type: application/json",
                    "x-upstream: 1",
                    "set-cookie: a=b",
                    "x-secret-hop: 1",
                    "connection: x-secret-hop",
                    "mcp-session-id: s-1",
                ],
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
            )]
        }) as Script
    })
    .await;
    let proxy = Proxy::start(fake.port, &[]);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let headers = "host: example.test:1234\r\nauthorization: Bearer tok\r\norigin: http://example.test\r\n\
        mcp-protocol-version: 2025-11-25\r\nmcp-session-id: s-1\r\nlast-event-id: ev-9\r\n\
        accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n\
        x-custom: yes\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\n\
        te: trailers\r\nproxy-authorization: Basic eA==\r\naccept-encoding: gzip\r\n";
    let request = format!(
        "POST /mcp?x=1&y=%20z HTTP/1.1\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (answer, _) = exchange(proxy.port, &request, None);
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    assert_eq!(answer.header("x-upstream"), Some("1"));
    assert_eq!(answer.header("set-cookie"), Some("a=b"));
    assert_eq!(answer.header("mcp-session-id"), Some("s-1"));
    assert_eq!(answer.header("x-secret-hop"), None, "named by Connection");

    let seen = fake.seen();
    let req = &seen[0];
    assert!(
        req.head.starts_with("POST /mcp?x=1&y=%20z HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    for (name, value) in [
        ("host", "example.test:1234"),
        ("authorization", "Bearer tok"),
        ("origin", "http://example.test"),
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-session-id", "s-1"),
        ("last-event-id", "ev-9"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("x-custom", "yes"),
        ("accept-encoding", "identity"),
    ] {
        assert_eq!(
            req.header(name).as_deref(),
            Some(value),
            "{name} in {}",
            req.head
        );
    }
    for name in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(req.header(name), None, "{name} in {}", req.head);
    }
    assert_eq!(req.body, body.as_bytes());
    assert_eq!(req.header("content-length"), Some(body.len().to_string()));

    // Status codes and bodies of other answers pass unchanged.
    let (status, _) = exchange(
        proxy.port,
        "GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        None,
    );
    assert_eq!((status.status, status.body.as_str()), (503, "down"));
    // A form (e.g. OAuth) is not JSON-RPC: forwarded as is.
    let form = "grant_type=client_credentials&scope=a%20b";
    let (token, _) = exchange(
        proxy.port,
        &post(
            "/token",
            "content-type: application/x-www-form-urlencoded\r\n",
            form,
        ),
        None,
    );
    assert_eq!(token.status, 200);
    assert_eq!(fake.seen()[2].body, form.as_bytes());
    // A compressed body cannot be judged.
    let (gz, _) = exchange(
        proxy.port,
        &post(
            "/mcp",
            "content-type: application/json\r\ncontent-encoding: gzip\r\n",
            "xx",
        ),
        None,
    );
    assert_eq!(gz.status, 415);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_absolute_endpoints_are_made_relative_and_blocked_calls_answer_on_the_stream() {
    let fake = Fake::start(|port| {
        Arc::new(move |req: &Captured| {
            if req.head.starts_with("GET /sse") {
                // CRLF line ends, the CRLF of the blank line split between two writes.
                return vec![
                    sse_head(),
                    format!(
                        "event: endpoint\r\ndata: http://localhost:{port}/messages/?session_id=abc\r"
                    )
                    .into_bytes(),
                    b"\n\r".to_vec(),
                    b"\n: keepalive\r\n\r\n".to_vec(),
                    Vec::new(),
                ];
            }
            vec![response("202 Accepted", &[], "Accepted")]
        }) as Script
    })
    .await;
    let proxy = Proxy::start(fake.port, &[]);
    let (stream, mut sock) = exchange(
        proxy.port,
        "GET /sse HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n",
        Some(": keepalive"),
    );
    assert_eq!(stream.status, 200);
    let events = dechunk(&stream.body);
    assert!(
        events.starts_with("event: endpoint\ndata: /messages/?session_id=abc\n\n"),
        "rewritten to the proxy: {events:?}"
    );
    assert!(events.ends_with(": keepalive\r\n\r\n"), "{events:?}");

    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"}}}"#;
    let (accepted, _) = exchange(
        proxy.port,
        &post(
            "/messages/?session_id=abc",
            "content-type: application/json\r\n",
            call,
        ),
        None,
    );
    assert_eq!((accepted.status, accepted.body.as_str()), (202, "Accepted"));
    // The error arrives on the stream, as a `message` event.
    let mut buf = [0u8; 8192];
    let mut more = String::new();
    while !more.contains("\n\n") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed");
        more += &String::from_utf8_lossy(&buf[..n]);
    }
    let event = dechunk(&more);
    let data = event
        .strip_prefix("event: message\ndata: ")
        .unwrap_or_else(|| panic!("{event:?}"))
        .trim_end();
    let err: Value = serde_json::from_str(data).unwrap();
    assert_eq!(err["id"], 7);
    assert_eq!(err["error"]["code"], -32600);
    // This scripted session never initializes, so the lifecycle rule decides; the policy's deny
    // matched too.
    assert_eq!(err["error"]["data"]["rule"], "session.notInitialized");
    let rules: Vec<&str> = err["error"]["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["session.notInitialized", "tools.deny"]);
    assert_eq!(fake.seen().len(), 1, "only the GET reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_results_are_replaced_keeping_the_event_fields() {
    let key = format!("AKIA{}", "QYLPMN5HHHFPZAM2");
    let fake = Fake::start(|_| {
        let key = key.clone();
        Arc::new(move |req: &Captured| {
            let id = rpc(req)["id"].clone();
            let result = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"the key is {key}"}}]}}}}"#
            );
            if id == 5 {
                // SSE: a comment, then the result with an id, its data over two lines.
                // Split between two JSON tokens, where a newline is only whitespace.
                let (a, b) = result.split_at(result.find("\"result\"").unwrap());
                vec![
                    sse_head(),
                    b": hello\r\n\r\n".to_vec(),
                    format!("event: message\r\nid: ev-1\r\ndata: {a}\r\ndata:{b}\r\nretry: 900\r\n\r\n")
                        .into_bytes(),
                ]
            } else {
                vec![response("200 OK", &["content-type: application/json"], &result)]
            }
        }) as Script
    })
    .await;
    let proxy = Proxy::start(fake.port, &[]);
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}})
            .to_string()
    };
    let headers =
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n";
    let (sse, _) = exchange(proxy.port, &post("/mcp", headers, &call(5)), None);
    let body = dechunk(&sse.body);
    assert!(
        !body.contains(&key),
        "the secret never reaches the client: {body}"
    );
    assert!(
        body.starts_with(": hello\r\n\r\nevent: message\nid: ev-1\ndata: {"),
        "{body:?}"
    );
    assert!(body.ends_with("}\nretry: 900\n\n"), "{body:?}");
    let data = body.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let err: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        (err["id"].as_i64(), err["error"]["code"].as_i64()),
        (Some(5), Some(-32600))
    );
    assert_eq!(err["error"]["data"]["rule"], "aws-access-key-id");

    let (json_answer, _) = exchange(proxy.port, &post("/mcp", headers, &call(6)), None);
    assert_eq!(json_answer.status, 200);
    assert!(!json_answer.body.contains(&key));
    assert_eq!(
        json_answer.header("content-length"),
        Some(json_answer.body.len().to_string().as_str()),
        "Content-Length fits the replaced body"
    );
    let err: Value = serde_json::from_str(&json_answer.body).unwrap();
    assert_eq!(err["error"]["data"]["rule"], "aws-access-key-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stops_the_upstream() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The upstream writes 64 KiB events for as long as it can, counting what it wrote.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        sock.write_all(&sse_head()).await.unwrap();
        let mut event = b"data: ".to_vec();
        event.extend(std::iter::repeat_n(b'x', 64 * 1024));
        event.extend_from_slice(b"\n\n");
        for _ in 0..4096 {
            // 256 MiB in all, if nothing holds it back.
            if sock.write_all(&event).await.is_err() {
                return;
            }
            counter.fetch_add(event.len(), Ordering::Relaxed);
        }
    });
    let proxy = Proxy::start(upstream, &[]);
    let (first, sock) = exchange(
        proxy.port,
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n",
        Some("xxxx"),
    );
    assert_eq!(first.status, 200);
    // The client reads nothing more; the upstream can only fill the buffers in between.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled = written.load(Ordering::Relaxed);
    assert!(
        stalled < 96 << 20,
        "the upstream wrote {stalled} bytes to a client that reads nothing"
    );
    drop(sock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_oversize_upstream_answers_fail_their_requests() {
    let fake = Fake::start(|_| {
        Arc::new(|req: &Captured| {
            let id = rpc(req)["id"].clone();
            match id.as_i64() {
                // Announces 500 bytes, sends 20, closes.
                Some(1) => vec![
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"jsonrpc\":\"2.0\",".to_vec(),
                ],
                // Larger than the proxy's limit.
                Some(2) => vec![response(
                    "200 OK",
                    &["content-type: application/json"],
                    &format!(r#"{{"jsonrpc":"2.0","id":2,"result":{{"pad":"{}"}}}}"#, "p".repeat(3000)),
                )],
                _ => vec![response("202 Accepted", &[], "")],
            }
        }) as Script
    })
    .await;
    let proxy = Proxy::start(fake.port, &["--max-message-bytes", "2048"]);
    let headers =
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n";
    let (broken, _) = exchange(
        proxy.port,
        &post(
            "/mcp",
            headers,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ),
        None,
    );
    assert_eq!(broken.status, 200, "{}", proxy.stderr());
    let err: Value = serde_json::from_str(&broken.body).unwrap();
    assert_eq!(
        (err["id"].as_i64(), err["error"]["code"].as_i64()),
        (Some(1), Some(-32603))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "{err}"
    );

    let (big, _) = exchange(
        proxy.port,
        &post(
            "/mcp",
            headers,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        ),
        None,
    );
    let err: Value = serde_json::from_str(&big.body).unwrap();
    assert_eq!(
        (err["id"].as_i64(), err["error"]["code"].as_i64()),
        (Some(2), Some(-32603))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2048 bytes"),
        "{err}"
    );

    // A batch of a blocked call and a notification: the server answers 202 to the notification,
    // and the client gets the blocked call's error as the answer.
    let batch = r#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]"#;
    let (mixed, _) = exchange(proxy.port, &post("/mcp", headers, batch), None);
    assert_eq!(mixed.status, 200);
    assert_eq!(mixed.header("content-type"), Some("application/json"));
    let err: Value = serde_json::from_str(&mixed.body).unwrap();
    assert_eq!(err["id"], 3);
    assert_eq!(err["error"]["data"]["rule"], "tools.deny");
    let forwarded: Value = serde_json::from_slice(&fake.seen()[2].body).unwrap();
    assert_eq!(
        forwarded,
        json!([{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}]),
        "only the notification went on"
    );
}
