//! A minimal MCP client over Streamable HTTP (JSON or SSE answers), for talking to an injected proxy
//! from outside the pod. One request per connection (HTTP/1.0), which the transport allows.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http_request;

/// An initialized MCP session.
#[derive(Debug)]
pub struct Session {
    addr: String,
    path: String,
    id: Option<String>,
    next_id: u64,
}

impl Session {
    /// `initialize` + `notifications/initialized` + `tools/list` (as clients do before calling, and
    /// as policies with `blockUndeclared` require) at `http://addr/path`.
    pub fn connect(addr: &str, path: &str) -> Result<Self> {
        let mut s = Self {
            addr: addr.to_owned(),
            path: path.to_owned(),
            id: None,
            next_id: 1,
        };
        let (answer, session) = s.post(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "mcp-guard-e2e", "version": "0"}}
        }))?;
        let answer = answer.context("no answer to initialize")?;
        if answer.get("result").is_none() {
            bail!("initialize failed: {answer}");
        }
        s.id = session;
        s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        let tools = s.request("tools/list", json!({}))?;
        if tools["result"]["tools"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            bail!("tools/list: {tools}");
        }
        Ok(s)
    }

    /// A request; the JSON-RPC response to it (with `result` or `error`).
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let (answer, _) =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        answer.with_context(|| format!("no answer to {method} (id {id})"))
    }

    /// `tools/call`.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }

    fn post(&self, message: &Value) -> Result<(Option<Value>, Option<String>)> {
        let body = message.to_string();
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2025-06-18"),
        ];
        if let Some(id) = &self.id {
            headers.push(("Mcp-Session-Id", id));
        }
        let r = http_request(
            &self.addr,
            "POST",
            &self.path,
            &headers,
            body.as_bytes(),
            Duration::from_secs(30),
        )?;
        if !(200..300).contains(&r.status) {
            bail!(
                "HTTP {} from {}{}: {}",
                r.status,
                self.addr,
                self.path,
                r.body
            );
        }
        let session = r.header("mcp-session-id").map(str::to_owned);
        let Some(want) = message.get("id") else {
            return Ok((None, session));
        };
        let sse = r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let candidates: Vec<Value> = if sse {
            r.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        } else {
            vec![serde_json::from_str(&r.body).with_context(|| format!("not JSON: {}", r.body))?]
        };
        Ok((
            candidates.into_iter().find(|m| m.get("id") == Some(want)),
            session,
        ))
    }
}

/// The text of a `tools/call` result's content, joined.
pub fn result_text(response: &Value) -> String {
    response["result"]["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
