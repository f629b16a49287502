//! The floor for the benchmark: a bare stdio relay that spawns the server and copies lines both ways
//! with the same runtime and line reader as the proxy, but no parsing, policy or audit. The proxy's
//! added latency is compared with this pipe hop's.
//!
//!   relay -- COMMAND ARGS...
#![allow(clippy::unwrap_used)]

use std::process::Stdio;

use mcp_guard_proxy::transport::lines::{Line, LineReader};
use tokio::io::AsyncWriteExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cmd: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_in = child.stdin.take().unwrap();
    let server_out = child.stdout.take().unwrap();
    let up = tokio::spawn(async move {
        let mut lines = LineReader::new(tokio::io::stdin(), 16 << 20);
        while let Ok(Some(Line::Text(mut l))) = lines.next().await {
            l.push('\n');
            if server_in.write_all(l.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let down = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut lines = LineReader::new(server_out, 16 << 20);
        while let Ok(Some(Line::Text(mut l))) = lines.next().await {
            l.push('\n');
            if out.write_all(l.as_bytes()).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let _ = up.await;
    let _ = down.await;
    let _ = child.wait().await;
}
