//! Harnesses for testing mcp-guard as a whole against real components.
//!
//! [`apiserver::ApiServer`] runs a real kube-apiserver and etcd (v1.20.2, built from Debian bookworm's
//! `kubernetes` source package by `e2e/harness/apiserver-build.sh`, cached under
//! `~/.cache/mcp-guard`). [`prometheus::Prometheus`] runs Debian's Prometheus and runs the chart's
//! dashboard queries against it. Nothing here is a mock.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod helm;
pub mod prometheus;

use std::path::PathBuf;

/// The workspace root, for reading committed manifests (CRDs, the policy library).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace")
        .to_path_buf()
}

/// A plain HTTP/1.0 GET of `target` (path and query) on `addr` (`host:port`): the status code and
/// the body. Connecting may take 2 s, the answer `read_timeout`. The test harnesses' one HTTP client
/// (the operator's `/readyz` and `/metrics`, Prometheus' query API).
pub fn http_get(
    addr: &str,
    target: &str,
    read_timeout: std::time::Duration,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;

    use anyhow::Context;

    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))?;
    s.set_read_timeout(Some(read_timeout))?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}
