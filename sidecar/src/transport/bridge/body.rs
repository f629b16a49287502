//! The bridge's HTTP answers and what it reads from JSON-RPC messages.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::session::Session;
use crate::jsonrpc::{self, Kind};

/// The bridge's response body.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How often an SSE stream without messages gets a comment, so a vanished client is noticed.
const PING: Duration = Duration::from_secs(30);

/// One JSON-RPC message of a frame, with what routing needs.
#[derive(Debug)]
pub struct Message {
    /// The message exactly as received.
    pub raw: String,
    pub kind: Kind,
    pub method: Option<String>,
    /// The id as canonical JSON (`"a"`, `1`): how a response is matched with its request.
    pub id: Option<String>,
    /// A request's `_meta.progressToken`, or a progress notification's `progressToken` (canonical).
    pub progress: Option<String>,
    /// A `notifications/cancelled`'s `requestId` (canonical).
    pub cancels: Option<String>,
}

/// The messages of a frame (a single message or a batch), and whether it was a batch.
pub fn messages(text: &str) -> Result<(Vec<Message>, bool), jsonrpc::FrameError> {
    Ok(match jsonrpc::parse_frame(text)? {
        jsonrpc::Frame::Single(env) => (vec![message(text.trim(), &env)], false),
        jsonrpc::Frame::Batch(items) => (
            items
                .iter()
                .map(|(raw, env)| message(raw.get(), env))
                .collect(),
            true,
        ),
    })
}

fn message(raw: &str, env: &jsonrpc::Envelope<'_>) -> Message {
    let kind = env.kind();
    let method = env.method.as_deref();
    let progress = match (kind, method) {
        (Kind::Request, _) => param(env.params, "/_meta/progressToken"),
        (Kind::Notification, Some("notifications/progress")) => param(env.params, "/progressToken"),
        _ => None,
    };
    let cancels = match method {
        Some("notifications/cancelled") => param(env.params, "/requestId"),
        _ => None,
    };
    Message {
        raw: raw.to_owned(),
        kind,
        method: method.map(str::to_owned),
        id: env.id.map(|id| canonical(id.get())),
        progress,
        cancels,
    }
}

/// `raw` JSON re-serialized, so `"\u0061"` and `"a"` (or `1` and `1 `) are the same id.
pub fn canonical(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .map_or_else(|_| raw.trim().to_owned(), |v| v.to_string())
}

/// The value at `pointer` in `params`, as canonical JSON. Params are parsed only when they can
/// hold the field at all.
fn param(params: Option<&RawValue>, pointer: &str) -> Option<String> {
    let raw = params?.get();
    let field = pointer.rsplit('/').next().unwrap_or_default();
    if !raw.contains(field) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    v.pointer(pointer)
        .filter(|t| !t.is_null())
        .map(ToString::to_string)
}

/// An SSE `message` event carrying `message` (one line of JSON; a stray CR, which SSE would read
/// as a line end, can only be whitespace between JSON tokens and becomes a space).
pub fn event(message: &str) -> Bytes {
    let data = message.replace('\r', " ");
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

/// What an SSE answer's body holds on to: for a POST, its routing entry, forgotten when the body
/// is dropped (the stream ended or the client went away).
#[derive(Debug)]
pub struct PostEntry {
    pub session: Arc<Session>,
    pub key: u64,
}

impl Drop for PostEntry {
    fn drop(&mut self) {
        self.session.close_post(self.key);
    }
}

/// An SSE answer: the messages routed into `rx`, ending when every sender is gone.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<String>,
    ping: Option<tokio::time::Interval>,
    _entry: Option<PostEntry>,
}

impl Events {
    /// A POST's answer stream.
    pub fn post(rx: mpsc::Receiver<String>, entry: PostEntry) -> Self {
        Self {
            rx,
            ping: Some(ping()),
            _entry: Some(entry),
        }
    }

    /// The GET stream of server-initiated messages.
    pub fn get(rx: mpsc::Receiver<String>) -> Self {
        Self {
            rx,
            ping: Some(ping()),
            _entry: None,
        }
    }
}

fn ping() -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

impl HttpBody for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                if let Some(p) = &mut this.ping {
                    p.reset();
                }
                return Poll::Ready(Some(Ok(Frame::data(event(&message)))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if let Some(p) = &mut this.ping
            && p.poll_tick(cx).is_ready()
        {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// An SSE answer with `body`.
pub fn sse(body: Events, session: &str) -> Response<Body> {
    let mut resp = Response::new(body.boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_session(resp, session)
}

/// A JSON answer.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON-RPC error answer (`id` raw JSON, `null` when none).
pub fn error(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Response<Body> {
    json(status, jsonrpc::error_response(id, code, message, None))
}

/// An answer without a body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// `resp` with the `Mcp-Session-Id` header.
pub fn with_session(mut resp: Response<Body>, session: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(session) {
        resp.headers_mut().insert(super::MCP_SESSION_ID, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_carry_canonical_ids_tokens_and_cancellations() {
        let (m, batch) = messages(
            r#"[{"jsonrpc":"2.0","id":"\u0061","method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}},
                {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"b"}},
                {"jsonrpc":"2.0","id":3,"result":{}}]"#,
        )
        .unwrap();
        assert!(batch);
        assert_eq!(
            (m[0].kind, m[0].id.as_deref()),
            (Kind::Request, Some(r#""a""#))
        );
        assert_eq!(m[0].progress.as_deref(), Some("7"));
        assert_eq!(m[1].cancels.as_deref(), Some(r#""b""#));
        assert_eq!((m[2].kind, m[2].id.as_deref()), (Kind::Response, Some("3")));
        let (one, batch) = messages(r#" {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#).unwrap();
        assert!(!batch);
        assert_eq!(one[0].progress.as_deref(), Some(r#""t""#));
        assert!(one[0].raw.starts_with('{'));
        assert!(messages("{nope").is_err());
    }

    #[test]
    fn events_are_single_sse_messages() {
        assert_eq!(
            &event("{\"a\":1,\r\"b\":2}")[..],
            b"event: message\ndata: {\"a\":1, \"b\":2}\n\n"
        );
    }
}
