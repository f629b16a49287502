//! A minimal, fast MCP server for benchmarks: one tool, `echo`, answered at once. Over stdio, so the
//! proxy's own cost is not hidden behind a slow server. Not a test double for behaviour: the tests
//! use real servers.
//!
//!   cargo run --release --example echo_server
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufWriter, Write};

use serde_json::{Value, json};

#[path = "echo/answer.rs"]
mod answer;

fn main() {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let result = answer::result(msg["method"].as_str().unwrap_or_default(), &msg["params"]);
        serde_json::to_writer(
            &mut out,
            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        )
        .unwrap();
        out.write_all(b"\n").unwrap();
        out.flush().unwrap();
    }
}
