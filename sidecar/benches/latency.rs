//! `make bench`: sequential `tools/call` latency (p50, p99) and throughput, in one run, for each path:
//! direct to the server, through a bare relay (the floor), through mcp-guard-proxy with the full
//! example policy, and through agent-bom's proxy. Over stdio and over Streamable HTTP. Servers: our
//! echo servers (`echo_server`, `echo_http`; so the proxy's cost is not hidden by the server's) and
//! the real server-everything (`stdio`, `streamableHttp`).
//!
//! Over stdio the relay is `examples/relay.rs` and agent-bom runs `proxy --log-only`. Over HTTP the
//! relay is `examples/relay_http.rs` (the proxy's HTTP stack, no parsing) and the client is a
//! keep-alive HTTP/1.1 client over one TCP connection (`HttpClient`) that reads JSON and SSE
//! answers; a call's latency ends when its answer has been read (an SSE stream's end is read
//! after). agent-bom's only HTTP-to-HTTP proxy is `agent-bom gateway serve`, which needs the
//! `agent-bom[api]` extra (fastapi, uvicorn); the row runs when the py-peers venv has it (or the
//! venv named by `BENCH_AGENT_BOM_HTTP_VENV` does), else the table says why not.
//!
//! Run with `make bench`; it needs the release examples and the cached npm and PyPI peers. Prints a
//! Markdown table and writes it to target/bench/latency.md. `BENCH_CALLS` (default 5000) sets the
//! calls per path; `BENCH_DEBUG=1` shows the children's stderr.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    id: u64,
}

impl Session {
    fn start(cmd: &[String], path: &str) -> Self {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("BENCH_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut s = Self {
            child,
            stdin,
            stdout,
            id: 0,
        };
        s.request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}));
        writeln!(
            s.stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .unwrap();
        s.request("tools/list", json!({}));
        s
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params});
        writeln!(self.stdin, "{msg}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "{method}: the peer closed"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == json!(self.id) {
                return v;
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stats {
    p50_us: f64,
    p99_us: f64,
    per_s: f64,
}

impl Stats {
    fn new(mut samples: Vec<Duration>, total: Duration) -> Self {
        samples.sort_unstable();
        let pct =
            |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
        Self {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            per_s: samples.len() as f64 / total.as_secs_f64(),
        }
    }
}

fn call_args() -> Value {
    json!({"name": "echo", "arguments": {"message": "benchmark payload: read /srv/data/report.md"}})
}

fn measure(cmd: &[String], path: &str, calls: usize) -> Stats {
    let mut s = Session::start(cmd, path);
    let args = call_args();
    for _ in 0..calls / 10 {
        let r = s.request("tools/call", args.clone());
        assert!(r.get("result").is_some(), "{r}");
    }
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        s.request("tools/call", args.clone());
        samples.push(t.elapsed());
    }
    Stats::new(samples, start.elapsed())
}

/// A proxy in front of an HTTP server: its command, environment, and the MCP endpoint's path.
type Front = (Vec<String>, Vec<(&'static str, String)>, &'static str);

/// A child process, killed when dropped (also when the bench panics).
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child_stderr() -> Stdio {
    if std::env::var_os("BENCH_DEBUG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` (with `env`) and waits until it accepts connections on `port`.
fn spawn_listening(
    cmd: &[String],
    env: &[(&str, String)],
    search_path: &str,
    port: u16,
) -> Result<Guarded, String> {
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("PATH", search_path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(child_stderr())
        .stderr(child_stderr())
        .spawn()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    let mut child = Guarded(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            return Err(format!("{} exited ({status}) before listening", cmd[0]));
        }
        if Instant::now() > deadline {
            return Err(format!("{} not listening on {port} after 60 s", cmd[0]));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal MCP Streamable HTTP client: HTTP/1.1 with keep-alive over one TCP connection (opened
/// again if the server closes it), one JSON-RPC message per POST, answers as JSON or SSE.
struct HttpClient {
    port: u16,
    path: String,
    conn: Option<BufReader<TcpStream>>,
    session: Option<String>,
    id: u64,
}

/// An HTTP answer: status, body, the JSON-RPC answer with the wanted id (if any) and when its last
/// byte was read.
struct Reply {
    status: u16,
    body: Vec<u8>,
    session: Option<String>,
    close: bool,
    answer: Option<(Value, Instant)>,
}

impl HttpClient {
    fn start(port: u16, path: &str) -> Result<Self, String> {
        let mut c = Self {
            port,
            path: path.to_owned(),
            conn: None,
            session: None,
            id: 0,
        };
        c.request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}))?;
        c.notify("notifications/initialized")?;
        c.request("tools/list", json!({}))?;
        Ok(c)
    }

    /// Sends a request; its answer and the time from sending to having read it.
    fn request(&mut self, method: &str, params: Value) -> Result<(Value, Duration), String> {
        self.id += 1;
        let id = self.id;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let t = Instant::now();
        let r = self
            .post(&msg, Some(id))
            .map_err(|e| format!("{method}: {e}"))?;
        if r.status != 200 {
            return Err(format!("{method}: HTTP {} {}", r.status, snippet(&r.body)));
        }
        if method == "initialize" {
            self.session = r.session;
        }
        let (answer, at) = r
            .answer
            .ok_or_else(|| format!("{method}: no answer in {}", snippet(&r.body)))?;
        Ok((answer, at - t))
    }

    fn notify(&mut self, method: &str) -> Result<(), String> {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "method": method}), None)
            .map_err(|e| format!("{method}: {e}"))?;
        if !(200..300).contains(&r.status) {
            return Err(format!("{method}: HTTP {} {}", r.status, snippet(&r.body)));
        }
        Ok(())
    }

    fn post(&mut self, msg: &Value, want: Option<u64>) -> std::io::Result<Reply> {
        let body = serde_json::to_vec(msg).unwrap();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.path,
            self.port,
            body.len()
        );
        if let Some(s) = &self.session {
            head.push_str("Mcp-Session-Id: ");
            head.push_str(s);
            head.push_str("\r\nMcp-Protocol-Version: 2025-11-25\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::with_capacity(64 << 10, stream));
        }
        let conn = self.conn.as_mut().unwrap();
        conn.get_mut().write_all(&bytes)?;
        let reply = read_reply(conn, want);
        if reply.as_ref().map_or(true, |r| r.close) {
            self.conn = None;
        }
        reply
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn io_error(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Reads one HTTP/1.1 response; with `want`, finds the JSON-RPC answer with that id in a JSON body
/// or, as the events arrive, in an SSE body.
fn read_reply(conn: &mut BufReader<TcpStream>, want: Option<u64>) -> std::io::Result<Reply> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(io_error("the server closed the connection".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_error(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut sse, mut close, mut session) =
        (None, false, false, false, None);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(io_error("the server closed the connection".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => sse = value.to_ascii_lowercase().starts_with("text/event-stream"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "mcp-session-id" => session = Some(value.to_owned()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    let mut events = SseScan::default();
    let mut answer = None;
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io_error(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if conn.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..])?;
            body.truncate(start + size);
            if sse
                && answer.is_none()
                && let Some(id) = want
            {
                answer = events.scan(&body, id).map(|v| (v, Instant::now()));
            }
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body)?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        conn.read_to_end(&mut body)?;
        close = true;
    }
    if answer.is_none()
        && let Some(id) = want
    {
        let found = if sse {
            events.scan(&body, id)
        } else {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| match v {
                    Value::Array(all) => all.into_iter().find(|m| m["id"] == json!(id)),
                    v => Some(v).filter(|m| m["id"] == json!(id)),
                })
        };
        answer = found.map(|v| (v, Instant::now()));
    }
    Ok(Reply {
        status,
        body,
        session,
        close,
        answer,
    })
}

/// An incremental SSE reader over a growing body: the `data` of each event, joined by newlines.
#[derive(Default)]
struct SseScan {
    pos: usize,
    data: String,
}

impl SseScan {
    /// The first message with `id` among the events completed since the last call.
    fn scan(&mut self, body: &[u8], id: u64) -> Option<Value> {
        while let Some(n) = body[self.pos..].iter().position(|&b| b == b'\n') {
            let raw = &body[self.pos..self.pos + n];
            self.pos += n + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.is_empty() {
                let data = std::mem::take(&mut self.data);
                if let Ok(v) = serde_json::from_str::<Value>(&data)
                    && v["id"] == json!(id)
                {
                    return Some(v);
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
            }
        }
        None
    }
}

fn measure_http(port: u16, path: &str, calls: usize) -> Result<Stats, String> {
    let mut c = HttpClient::start(port, path)?;
    let args = call_args();
    let mut samples = Vec::with_capacity(calls);
    let mut start = Instant::now();
    for i in 0..calls / 10 + calls {
        if i == calls / 10 {
            samples.clear();
            start = Instant::now();
        }
        let (r, took) = c.request("tools/call", args.clone())?;
        if r.get("result").is_none() {
            return Err(format!("tools/call: {r}"));
        }
        samples.push(took);
    }
    Ok(Stats::new(samples, start.elapsed()))
}

fn row(server: &str, path: &str, st: &Stats, direct_p50: f64) -> String {
    format!(
        "| {server} | {path} | {:.0} | {:.0} | {:+.0} | {:.0} |",
        st.p50_us,
        st.p99_us,
        st.p50_us - direct_p50,
        st.per_s
    )
}

/// One table row without numbers: `why` the path was not measured.
fn not_measured(server: &str, path: &str, why: &str) -> String {
    format!("| {server} | {path}: not measured ({why}) | – | – | – | – |")
}

/// The added p50 of the proxy and of the bare relay (the rows after `direct`) as a summary line.
fn verdict(what: &str, added_relay: f64, added_proxy: f64, target_us: f64) -> String {
    format!(
        "{what}: mcp-guard-proxy added p50 {added_proxy:.0} µs (target < {target_us:.0} µs: {}); {:.2}x the bare relay's added {added_relay:.0} µs (target ≤ 2x: {})",
        if added_proxy < target_us {
            "met"
        } else {
            "missed"
        },
        added_proxy / added_relay.max(1.0),
        if added_proxy <= 2.0 * added_relay.max(1.0) {
            "met"
        } else {
            "missed"
        },
    )
}

fn cache_path(script: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("e2e/harness").join(script))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release");
    let s = |p: PathBuf| p.display().to_string();
    let proxy = s(release.join("mcp-guard-proxy"));
    let relay = s(release.join("examples/relay"));
    let relay_http = s(release.join("examples/relay_http"));
    let policy = s(root.join("sidecar/benches/bench-policy.yaml"));
    let npm = cache_path("npm-peers.sh");
    let py = cache_path("py-peers.sh");
    // agent-bom finds the echo server as `mcp-server` through PATH.
    let shim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        release.join("examples/echo_server"),
        shim.path().join("mcp-server"),
    )
    .unwrap();
    let search_path = format!(
        "{}:{}",
        shim.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);

    let servers: Vec<(&str, Vec<String>)> = vec![
        (
            "echo (Rust, stdio)",
            vec![s(release.join("examples/echo_server"))],
        ),
        (
            "server-everything (stdio)",
            vec![
                s(npm.join("node_modules/.bin/mcp-server-everything")),
                "stdio".into(),
            ],
        ),
    ];
    let mut rows = Vec::new();
    // (server, path) -> added p50 µs, for the verdicts under the table.
    let mut added: HashMap<(&str, &str), f64> = HashMap::new();
    for (server_name, server) in &servers {
        let with = |prefix: &[&str]| -> Vec<String> {
            prefix
                .iter()
                .map(|p| (*p).to_owned())
                .chain(server.iter().cloned())
                .collect()
        };
        // agent-bom accepts only launchers from its allow-list (node, python, mcp-server, ...), so our
        // echo server is offered to it as `mcp-server` on PATH and server-everything through node.
        let agent_bom: Vec<String> = {
            let (launcher, rest) = if server[0].ends_with("mcp-server-everything") {
                let js = std::fs::canonicalize(&server[0]).unwrap();
                (
                    "node".to_owned(),
                    std::iter::once(s(js))
                        .chain(server[1..].iter().cloned())
                        .collect::<Vec<_>>(),
                )
            } else {
                ("mcp-server".to_owned(), server[1..].to_vec())
            };
            [
                s(py.join("bin/agent-bom")),
                "proxy".into(),
                "--no-isolate".into(),
                "--log-only".into(),
                "--log".into(),
                "/dev/null".into(),
                "--".into(),
                launcher,
            ]
            .into_iter()
            .chain(rest)
            .collect()
        };
        let paths: Vec<(&str, Vec<String>, usize)> = vec![
            ("direct", server.clone(), calls),
            ("bare relay (floor)", with(&[&relay, "--"]), calls),
            (
                "mcp-guard-proxy (full policy)",
                with(&[&proxy, "--policy", &policy, "--"]),
                calls,
            ),
            (
                "agent-bom 0.109.0 --log-only",
                agent_bom,
                (calls / 5).max(200),
            ),
        ];
        let mut direct_p50 = 0.0;
        for (path, cmd, n) in paths {
            eprintln!("bench: {server_name} / {path} ({n} calls)");
            let st = measure(&cmd, &search_path, n);
            if path == "direct" {
                direct_p50 = st.p50_us;
            }
            added.insert((*server_name, path), st.p50_us - direct_p50);
            rows.push(row(server_name, path, &st, direct_p50));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Streamable HTTP: a fresh server (and proxy) per path, on free ports.
    let agent_bom_http = agent_bom_gateway(&py);
    let upstreams = shim.path().join("agent-bom-upstreams.yaml");
    let http_servers: Vec<(&str, Vec<String>, bool)> = vec![
        (
            "echo (Rust, HTTP)",
            vec![s(release.join("examples/echo_http"))],
            false,
        ),
        (
            "server-everything (HTTP)",
            vec![
                s(npm.join("node_modules/.bin/mcp-server-everything")),
                "streamableHttp".into(),
            ],
            true,
        ),
    ];
    for (server_name, server, port_in_env) in &http_servers {
        let mut direct_p50 = 0.0;
        for path in [
            "direct",
            "bare relay (floor)",
            "mcp-guard-proxy (full policy)",
            "agent-bom 0.109.0 gateway",
        ] {
            let (sp, lp) = (free_port(), free_port());
            let upstream_url = format!("http://127.0.0.1:{sp}/mcp");
            let (mut cmd, mut env) = (server.clone(), Vec::new());
            if *port_in_env {
                env.push(("PORT", sp.to_string()));
            } else {
                cmd.push(sp.to_string());
            }
            let front: Option<Front> = match path {
                "direct" => None,
                "bare relay (floor)" => Some((
                    vec![relay_http.clone(), lp.to_string(), upstream_url.clone()],
                    Vec::new(),
                    "/mcp",
                )),
                "mcp-guard-proxy (full policy)" => Some((
                    vec![
                        proxy.clone(),
                        "--policy".into(),
                        policy.clone(),
                        "--listen".into(),
                        format!("127.0.0.1:{lp}"),
                        "--upstream".into(),
                        upstream_url.clone(),
                    ],
                    Vec::new(),
                    "/mcp",
                )),
                _ => match &agent_bom_http {
                    Ok(bin) => {
                        std::fs::write(
                            &upstreams,
                            format!(
                                "upstreams:\n  - name: bench\n    url: {upstream_url}\n    transport: streamable-http\n    auth: none\n"
                            ),
                        )
                        .unwrap();
                        Some((
                            vec![
                                bin.clone(),
                                "gateway".into(),
                                "serve".into(),
                                "--upstreams".into(),
                                s(upstreams.clone()),
                                "--bind".into(),
                                format!("127.0.0.1:{lp}"),
                            ],
                            vec![("AGENT_BOM_SKIP_UPDATE_CHECK", "1".to_owned())],
                            "/mcp/bench",
                        ))
                    }
                    Err(why) => {
                        rows.push(not_measured(server_name, path, why));
                        continue;
                    }
                },
            };
            let n = if path.starts_with("agent-bom") {
                (calls / 5).max(200)
            } else {
                calls
            };
            eprintln!("bench: {server_name} / {path} ({n} calls)");
            let result = (|| {
                let _server = spawn_listening(&cmd, &env, &search_path, sp)?;
                match &front {
                    None => measure_http(sp, "/mcp", n),
                    Some((front, env, mcp_path)) => {
                        let _front = spawn_listening(front, env, &search_path, lp)?;
                        measure_http(lp, mcp_path, n)
                    }
                }
            })();
            match result {
                Ok(st) => {
                    if path == "direct" {
                        direct_p50 = st.p50_us;
                    }
                    added.insert((*server_name, path), st.p50_us - direct_p50);
                    rows.push(row(server_name, path, &st, direct_p50));
                }
                Err(e) => {
                    assert!(path.starts_with("agent-bom"), "{server_name} / {path}: {e}");
                    eprintln!("bench: {server_name} / {path}: {e}");
                    rows.push(not_measured(server_name, path, &format!("fails: {e}")));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let mut table = format!(
        "| server | path | p50 µs | p99 µs | added p50 µs | calls/s |\n|---|---|---:|---:|---:|---:|\n{}\n",
        rows.join("\n")
    );
    let mut verdicts = Vec::new();
    for (server_name, target_us) in [("echo (Rust, stdio)", 50.0), ("echo (Rust, HTTP)", 150.0)] {
        if let (Some(relay), Some(proxy)) = (
            added.get(&(server_name, "bare relay (floor)")),
            added.get(&(server_name, "mcp-guard-proxy (full policy)")),
        ) {
            verdicts.push(verdict(server_name, *relay, *proxy, target_us));
        }
    }
    table.push('\n');
    table.push_str(&verdicts.join("\n\n"));
    table.push('\n');
    println!("\n{table}");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("latency.md"), &table).unwrap();
}

/// agent-bom's HTTP-to-HTTP proxy (`agent-bom gateway serve`), if the venv has its `api` extra.
fn agent_bom_gateway(py: &Path) -> Result<String, String> {
    let venv =
        std::env::var_os("BENCH_AGENT_BOM_HTTP_VENV").map_or_else(|| py.to_owned(), PathBuf::from);
    let ok = Command::new(venv.join("bin/python"))
        .args(["-c", "import fastapi, uvicorn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(venv.join("bin/agent-bom").display().to_string())
    } else {
        Err("`agent-bom gateway serve`, its only HTTP proxy, needs the agent-bom[api] extra, not in the py-peers venv; `proxy --url` is a stdio-to-HTTP bridge".into())
    }
}
