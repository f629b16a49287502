//! Test harness: the real `mcp-guard-proxy` binary in front of real MCP servers from npm
//! (installed and cached by `e2e/harness/npm-peers.sh`).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The npm install prefix holding the MCP servers (built once per machine, cached).
pub fn npm_bin(name: &str) -> PathBuf {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/harness/npm-peers.sh");
        let out = Command::new(script).output().expect("npm-peers.sh runs");
        assert!(
            out.status.success(),
            "npm-peers.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    });
    prefix.join("node_modules/.bin").join(name)
}

/// The Python virtualenv holding the `mcp` SDK (built once per machine, cached).
pub fn py_venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/harness/py-peers.sh");
        let out = Command::new(script).output().expect("py-peers.sh runs");
        assert!(
            out.status.success(),
            "py-peers.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A fixture under `sidecar/tests/peers/`.
pub fn peer_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// A library policy under `policies/library/`.
pub fn library_policy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/library")
        .join(format!("{name}.yaml"));
    std::fs::read_to_string(path).unwrap()
}

pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-guard-proxy")
}

/// Runs a test client that prints one `{"step": ..., "value": ...}` line per step; its steps by name.
pub fn client_steps(client: &mut Command) -> serde_json::Map<String, Value> {
    let out = client.output().unwrap();
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

/// server-everything over stdio.
pub fn everything() -> Vec<String> {
    vec![
        npm_bin("mcp-server-everything").display().to_string(),
        "stdio".into(),
    ]
}

/// A line-oriented JSON-RPC peer over a child's stdin/stdout.
pub struct Peer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub dir: tempfile::TempDir,
    next_id: i64,
}

impl Peer {
    /// Starts `cmd` directly (no proxy).
    pub fn direct(cmd: &[String]) -> Self {
        Self::spawn(
            Command::new(&cmd[0]).args(&cmd[1..]),
            tempfile::tempdir().unwrap(),
        )
    }

    /// Starts the proxy with `policy` (YAML) in front of `cmd`; extra proxy flags in `flags`.
    pub fn proxied(policy: &str, flags: &[&str], cmd: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_mcp-guard-proxy"));
        c.arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .arg("--log")
            .arg(dir.path().join("audit.jsonl"))
            .arg("--reload-interval")
            .arg("100ms")
            .args(flags)
            .arg("--")
            .args(cmd);
        Self::spawn(&mut c, dir)
    }

    /// Starts any command (e.g. the proxy with custom flags), logging its stderr into `dir`.
    pub fn spawn_command(cmd: &mut Command, dir: tempfile::TempDir) -> Self {
        Self::spawn(cmd, dir)
    }

    fn spawn(cmd: &mut Command, dir: tempfile::TempDir) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = dir.path().join("stderr.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{line}");
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            dir,
            next_id: 1000,
        }
    }

    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, msg: &Value) {
        self.send_raw(&msg.to_string());
    }

    /// The next line, as JSON.
    pub fn recv(&mut self) -> Value {
        let line = self
            .recv_line()
            .unwrap_or_else(|| panic!("no message within {TIMEOUT:?}; stderr:\n{}", self.stderr()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next response (skipping the server's notifications and requests).
    pub fn next_response(&mut self) -> Value {
        loop {
            let msg = self.recv();
            if msg.get("method").is_none() {
                return msg;
            }
        }
    }

    pub fn recv_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(TIMEOUT).ok()
    }

    /// Sends a request and returns its response, skipping notifications and other messages.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response_to(&json!(id))
    }

    pub fn response_to(&mut self, id: &Value) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let msg = self.recv();
            if msg.get("id") == Some(id)
                && (msg.get("result").is_some() || msg.get("error").is_some())
            {
                return msg;
            }
        }
        panic!("no response to {id}");
    }

    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// initialize + notifications/initialized; returns the initialize result.
    pub fn initialize(&mut self) -> Value {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-guard-test", "version": "1"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r
    }

    /// Closes stdin and waits for the exit code.
    pub fn finish(mut self) -> (i32, Self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self);
            }
            assert!(Instant::now() < deadline, "did not exit after stdin closed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a stderr line containing `marker`; returns what follows it on that line.
pub fn wait_for_stderr(p: &Peer, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = p.stderr().lines().find(|l| l.contains(marker)) {
            return line
                .split(marker)
                .nth(1)
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no `{marker}` on stderr: {}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-shot HTTP/1.1 request to `addr` (host:port); returns the body.
pub fn http(addr: &str, method: &str, path: &str) -> String {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// The error of a blocked call: code -32600, the request's id, and the rule named.
pub fn assert_blocked(response: &Value, rule: &str) {
    let err = response
        .get("error")
        .unwrap_or_else(|| panic!("not blocked: {response}"));
    assert_eq!(err["code"], -32600, "{response}");
    assert_eq!(err["data"]["rule"], rule, "{response}");
    assert!(
        err["message"].as_str().unwrap().contains(rule),
        "{response}"
    );
}
