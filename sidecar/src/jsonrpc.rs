//! JSON-RPC 2.0 framing: just enough parsing to route and judge a message.
//!
//! Messages are parsed into borrowed [`Envelope`]s (`RawValue` for ids, params and results), so a message
//! the proxy does not change is forwarded byte for byte, and only `tools/call` params and the results
//! the detectors need are parsed in full.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Standard JSON-RPC error codes used by the proxy.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object; also what a blocked call gets (the MCP convention for policy refusals).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The server failed (exited, or answered with something that is not JSON-RPC).
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// The routing-relevant parts of one JSON-RPC message.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(default, borrow)]
    pub id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

/// What kind of message an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    /// Neither: no method and no id (or an id without result or error).
    Invalid,
}

impl Envelope<'_> {
    pub fn kind(&self) -> Kind {
        match (&self.method, self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, Some(_)) if self.result.is_some() || self.error.is_some() => Kind::Response,
            _ => Kind::Invalid,
        }
    }

    /// The id as written (`1`, `"abc"`), the key for matching a response to its request.
    pub fn id_text(&self) -> Option<&str> {
        self.id.map(RawValue::get)
    }
}

/// One frame of a transport: a single message or a batch.
#[derive(Debug)]
pub enum Frame<'a> {
    Single(Envelope<'a>),
    Batch(Vec<(&'a RawValue, Envelope<'a>)>),
}

/// Why a frame could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("parse error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("empty batch")]
    EmptyBatch,
}

/// Parses a frame (one line of stdio, one HTTP body, one SSE event's data).
pub fn parse_frame(text: &str) -> Result<Frame<'_>, FrameError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)?;
        if items.is_empty() {
            return Err(FrameError::EmptyBatch);
        }
        let parsed = items
            .into_iter()
            .map(|raw| serde_json::from_str(raw.get()).map(|env| (raw, env)))
            .collect::<Result<_, _>>()?;
        Ok(Frame::Batch(parsed))
    } else {
        Ok(Frame::Single(serde_json::from_str(text)?))
    }
}

/// `tools/call` params.
#[derive(Debug, Deserialize)]
pub struct ToolCallParams {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

/// A JSON-RPC error response. `id` is the raw id text (`null` when unknown); `data` raw JSON or `None`.
pub fn error_response(id: Option<&str>, code: i64, message: &str, data: Option<&str>) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let id = id.unwrap_or("null");
    match data {
        Some(data) => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message},"data":{data}}}}}"#
        ),
        None => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#
        ),
    }
}

/// Joins several messages into one batch frame (or returns the single one).
pub fn join_batch(mut items: Vec<String>) -> Option<String> {
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(format!("[{}]", items.join(","))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let Frame::Single(req) =
            parse_frame(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((req.kind(), req.id_text()), (Kind::Request, Some("7")));
        assert_eq!(req.params.unwrap().get(), r#"{"name":"x"}"#);
        let Frame::Single(n) =
            parse_frame(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(n.kind(), Kind::Notification);
        let Frame::Single(r) = parse_frame(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((r.kind(), r.id_text()), (Kind::Response, Some(r#""a""#)));
        let Frame::Single(bad) = parse_frame(r#"{"jsonrpc":"2.0"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(bad.kind(), Kind::Invalid);
    }

    #[test]
    fn batches_keep_raw_items() {
        let Frame::Batch(items) = parse_frame(
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"} , {"jsonrpc":"2.0","method":"b"}]"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0.get(), r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#);
        assert!(matches!(parse_frame("[]"), Err(FrameError::EmptyBatch)));
        assert!(parse_frame("{not json").is_err());
    }

    #[test]
    fn error_responses_echo_the_id_and_escape_the_message() {
        let e = error_response(
            Some(r#""x-1""#),
            code::INVALID_REQUEST,
            "blocked: \"quote\"",
            Some(r#"{"rule":"r"}"#),
        );
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["id"], "x-1");
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["message"], "blocked: \"quote\"");
        assert_eq!(v["error"]["data"]["rule"], "r");
        let null_id: serde_json::Value =
            serde_json::from_str(&error_response(None, code::PARSE_ERROR, "bad", None)).unwrap();
        assert!(null_id["id"].is_null());
    }
}
