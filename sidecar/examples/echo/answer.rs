//! The echo servers' answers, shared by `echo_server` (stdio) and `echo_http` so both serve exactly
//! the same MCP session.

use serde_json::{Value, json};

/// The `result` for a request with `method` (`params` as sent).
pub fn result(method: &str, params: &Value) -> Value {
    match method {
        "initialize" => json!({
            "protocolVersion": params["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcp-guard-bench-echo", "version": "1"}
        }),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Echoes the message.",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}
        }]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": params["arguments"]["message"]}]})
        }
        _ => json!({}),
    }
}
