//! Harnesses for testing mcp-guard as a whole against real components.
//!
//! [`apiserver::ApiServer`] runs a real kube-apiserver and etcd (v1.20.2, built from Debian bookworm's
//! `kubernetes` source package by `e2e/harness/apiserver-build.sh`, cached under
//! `~/.cache/mcp-guard`). [`prometheus::Prometheus`] runs Debian's Prometheus and runs the chart's
//! dashboard queries against it. Nothing here is a mock.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod cluster;
pub mod helm;
pub mod mcp;
pub mod prometheus;

use std::path::PathBuf;

/// The workspace root, for reading committed manifests (CRDs, the policy library).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace")
        .to_path_buf()
}

/// An HTTP response read to its end: status code, headers (names lower-cased) and body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.0 request (the answer ends when the server closes): the test harnesses' one HTTP
/// client (the operator's `/readyz` and `/metrics`, Prometheus' query API, MCP over Streamable HTTP).
/// Connecting may take 2 s, the answer `read_timeout`.
pub fn http_request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    read_timeout: std::time::Duration,
) -> anyhow::Result<HttpResponse> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;

    use anyhow::Context;

    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(read_timeout))?;
    let mut head = format!("{method} {target} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {method} {target} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A plain HTTP/1.0 GET of `target` (path and query) on `addr` (`host:port`): the status code and
/// the body.
pub fn http_get(
    addr: &str,
    target: &str,
    read_timeout: std::time::Duration,
) -> anyhow::Result<(u16, String)> {
    let r = http_request(addr, "GET", target, &[], &[], read_timeout)?;
    Ok((r.status, r.body))
}
