//! A guarded SSE stream: the upstream's `text/event-stream` body, parsed event by event, each event's
//! data judged by [`Guard::server_frame`], and re-emitted as it came (or with replaced data).
//!
//! It is a [`hyper::body::Body`] polled by the client connection, not a task with a queue: the
//! upstream is read only when the client connection asks for more, so a slow client slows the
//! upstream read (TCP backpressure end to end), and what is buffered is at most one upstream chunk
//! plus one partial event (bounded by `max_message`). Every upstream chunk's complete events are
//! handed to hyper at once, which writes them before it polls again, so each event is flushed
//! promptly. A client that goes away drops the body, which drops the upstream response and closes
//! that connection.
//!
//! Three extras ride on the same body:
//! * messages the proxy itself adds (the errors of a batch's blocked calls; in legacy mode, every
//!   blocked call's error) are written as `message` events, between upstream events;
//! * a GET stream without a session whose first events include `event: endpoint` is a legacy
//!   HTTP+SSE session: the endpoint is registered (rewritten to a relative URL if it points at the
//!   upstream) and the session lives as long as the stream;
//! * when the upstream breaks off a stream, the requests that stream owed an answer get JSON-RPC
//!   errors (-32603) before the stream is ended with an error, as the upstream's was.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::http::uri::Authority;
use tokio::sync::mpsc;

use super::sessions::{LegacyRegistration, Sessions, State};
use super::sse::{self, Item, Parser};
use super::upstream::{BoxError, describe};
use crate::guard::{Forward, Guard};

/// A GET stream that may turn out to be a legacy HTTP+SSE session.
#[derive(Debug)]
pub struct LegacyWatch {
    pub sessions: Arc<Sessions>,
    pub upstream: Authority,
    /// The GET's path, against which a relative endpoint is resolved.
    pub path: String,
    registration: Option<LegacyRegistration>,
}

impl LegacyWatch {
    pub fn new(sessions: Arc<Sessions>, upstream: Authority, path: String) -> Self {
        Self {
            sessions,
            upstream,
            path,
            registration: None,
        }
    }
}

/// The body of a guarded SSE response.
#[derive(Debug)]
pub struct GuardedSse {
    upstream: Option<Incoming>,
    parser: Parser,
    items: Vec<Item>,
    out: VecDeque<Bytes>,
    inject: Option<mpsc::Receiver<String>>,
    guard: Arc<Guard>,
    state: State,
    /// For the answer to a POST: the frame forwarded, whose requests fail if the stream breaks.
    request: Option<Bytes>,
    legacy: Option<LegacyWatch>,
    /// The upstream's error, returned once everything before it is out.
    failure: Option<BoxError>,
    /// Whether hyper had a chance to flush before `failure` is returned: hyper drops what it has
    /// buffered when a body fails, so the stream yields once before failing.
    flushed: bool,
    upstream_url: Arc<str>,
    max_message: usize,
}

impl GuardedSse {
    pub fn new(
        upstream: Incoming,
        guard: Arc<Guard>,
        state: State,
        max_message: usize,
        upstream_url: Arc<str>,
    ) -> Self {
        Self {
            upstream: Some(upstream),
            parser: Parser::new(max_message),
            items: Vec::new(),
            out: VecDeque::new(),
            inject: None,
            guard,
            state,
            request: None,
            legacy: None,
            failure: None,
            flushed: false,
            upstream_url,
            max_message,
        }
    }

    /// The answer stream of a POST carrying `frame`.
    pub fn for_request(mut self, frame: Bytes) -> Self {
        self.request = Some(frame);
        self
    }

    /// Writes `frame` (JSON-RPC) first.
    pub fn first(mut self, frame: &str) -> Self {
        self.push_messages(frame);
        self
    }

    /// Queues `frame` as `message` events, one per message: SSE clients (e.g. the MCP TypeScript
    /// SDK's) expect a single message per event, not a batch.
    fn push_messages(&mut self, frame: &str) {
        let mut out = Vec::new();
        for message in super::frames::split_messages(frame) {
            out.extend_from_slice(&sse::message_event(&message));
        }
        if !out.is_empty() {
            self.out.push_back(Bytes::from(out));
        }
    }

    /// Watches for a legacy `endpoint` event.
    pub fn legacy(mut self, watch: LegacyWatch) -> Self {
        self.legacy = Some(watch);
        self
    }

    fn chunk(&mut self, chunk: &[u8]) {
        let mut items = std::mem::take(&mut self.items);
        self.parser.feed(chunk, &mut items);
        self.emit(&mut items);
        self.items = items;
    }

    fn emit(&mut self, items: &mut Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let mut out = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Oversize => eprintln!(
                    "mcp-guard-proxy: the server sent an SSE event over the limit of {} bytes; dropped",
                    self.max_message
                ),
                Item::Event(ev) => self.event(ev, &mut out),
            }
        }
        if !out.is_empty() {
            self.out.push_back(Bytes::from(out));
        }
    }

    fn event(&mut self, ev: sse::Event, out: &mut Vec<u8>) {
        let watching = self
            .legacy
            .as_ref()
            .is_some_and(|w| w.registration.is_none());
        if watching && ev.kind.as_deref() == Some(b"endpoint") {
            match self.endpoint(&ev) {
                Some(rewritten) => out.extend_from_slice(&rewritten),
                None => out.extend_from_slice(&ev.raw),
            }
            return;
        }
        let Some(text) = ev
            .data
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|t| !t.trim().is_empty())
        else {
            out.extend_from_slice(&ev.raw);
            return;
        };
        let outcome = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.guard.server_frame(&mut s, text)
        };
        match outcome.map(|o| o.forward) {
            Ok(Forward::Original) | Err(_) => out.extend_from_slice(&ev.raw),
            Ok(Forward::Replaced(r)) => {
                out.extend_from_slice(&sse::replace_data(&ev, &r));
            }
            Ok(Forward::Nothing) => {}
        }
    }

    /// Registers the legacy session an `endpoint` event announces; the event rewritten if needed.
    fn endpoint(&mut self, ev: &sse::Event) -> Option<Vec<u8>> {
        let watch = self.legacy.as_mut()?;
        let data = std::str::from_utf8(ev.data.as_deref()?).ok()?.trim();
        let (endpoint, rewritten) = resolve_endpoint(data, &watch.upstream, &watch.path);
        let id = session_id(&endpoint).unwrap_or(&endpoint).to_owned();
        let (state, rx, registration) = watch.sessions.register_legacy(&endpoint, &id);
        watch.registration = Some(registration);
        self.state = state;
        self.inject = Some(rx);
        rewritten.then(|| sse::replace_data(ev, &endpoint))
    }

    /// The upstream ended, cleanly (`None`) or not.
    fn ended(&mut self, error: Option<hyper::Error>) {
        self.upstream = None;
        let mut items = std::mem::take(&mut self.items);
        self.parser.finish(&mut items);
        self.emit(&mut items);
        let reason = match &error {
            Some(e) => format!(
                "the MCP server {} broke off the response stream before answering: {}",
                self.upstream_url,
                describe(e)
            ),
            None => format!(
                "the MCP server {} closed the session's stream before answering",
                self.upstream_url
            ),
        };
        let errors =
            if let Some(registration) = self.legacy.as_mut().and_then(|w| w.registration.take()) {
                // A legacy session ends with its stream: everything it still owes fails.
                drop(registration);
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                self.guard.fail_pending(&mut s, &reason)
            } else if let (Some(frame), Some(_)) = (&self.request, &error) {
                // A POST's stream may close early on purpose (the client resumes it with GET and
                // Last-Event-ID), so only a broken stream fails its requests.
                let frame = String::from_utf8_lossy(frame);
                super::frames::fail_requests(&self.guard, &self.state, &frame, &reason, false)
            } else {
                Vec::new()
            };
        let mut out = Vec::new();
        for e in errors {
            out.extend_from_slice(&sse::message_event(&e));
        }
        if !out.is_empty() {
            self.out.push_back(Bytes::from(out));
        }
        self.failure = error.map(Into::into);
    }
}

impl HttpBody for GuardedSse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if let Some(rx) = this.inject.as_mut() {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => {
                        this.push_messages(&frame);
                        continue;
                    }
                    Poll::Ready(None) => this.inject = None,
                    Poll::Pending if this.upstream.is_none() => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            let Some(upstream) = this.upstream.as_mut() else {
                if this.failure.is_some() && !std::mem::replace(&mut this.flushed, true) {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(this.failure.take().map(Err));
            };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk(&data);
                    }
                }
                Poll::Ready(Some(Err(e))) => this.ended(Some(e)),
                Poll::Ready(None) => this.ended(None),
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A legacy endpoint as the path and query the client will POST to the proxy, and whether the
/// event must be rewritten (an absolute URL of the upstream becomes relative, so the client POSTs
/// to the proxy). A relative endpoint is resolved against the GET's path, as the client will.
fn resolve_endpoint(data: &str, upstream: &Authority, get_path: &str) -> (String, bool) {
    if let Ok(uri) = data.parse::<hyper::Uri>()
        && uri.scheme().is_some()
    {
        let pq = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        return match uri.authority() {
            Some(a) if same_server(a, upstream) => (pq, true),
            _ => {
                eprintln!(
                    "mcp-guard-proxy: the server's SSE endpoint {data} is not the upstream; \
                     the client's messages will not pass the proxy"
                );
                (pq, false)
            }
        };
    }
    if data.starts_with('/') {
        return (data.to_owned(), false);
    }
    let path = get_path.split('?').next().unwrap_or("/");
    let resolved = if data.starts_with('?') {
        format!("{path}{data}")
    } else {
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{data}", if dir.is_empty() { "/" } else { dir })
    };
    (resolved, false)
}

/// Whether `a` names the upstream `b` (the same port, and the same host or both loopback).
fn same_server(a: &Authority, b: &Authority) -> bool {
    let loopback = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    a.port_u16().unwrap_or(80) == b.port_u16().unwrap_or(80)
        && (a.host().eq_ignore_ascii_case(b.host()) || (loopback(a.host()) && loopback(b.host())))
}

/// The session id in a legacy endpoint: the value of its query parameter named like `sessionId`
/// or `session_id`.
fn session_id(endpoint: &str) -> Option<&str> {
    let query = endpoint.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.to_ascii_lowercase().contains("session") && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(s: &str) -> Authority {
        s.parse().unwrap_or_else(|_| Authority::from_static("x"))
    }

    #[test]
    fn endpoints_resolve_like_a_client() {
        let up = authority("127.0.0.1:3001");
        assert_eq!(
            resolve_endpoint("/message?sessionId=a", &up, "/sse"),
            ("/message?sessionId=a".into(), false)
        );
        assert_eq!(
            resolve_endpoint("http://localhost:3001/m?sessionId=a", &up, "/sse"),
            ("/m?sessionId=a".into(), true)
        );
        assert!(!resolve_endpoint("http://other:3001/m?s=1", &up, "/sse").1);
        assert_eq!(
            resolve_endpoint("messages/?session_id=b", &up, "/api/sse"),
            ("/api/messages/?session_id=b".into(), false)
        );
        assert_eq!(
            resolve_endpoint("?session_id=b", &up, "/sse?x=1"),
            ("/sse?session_id=b".into(), false)
        );
        assert_eq!(session_id("/message?sessionId=abc"), Some("abc"));
        assert_eq!(session_id("/messages/?x=1&session_id=def"), Some("def"));
        assert_eq!(session_id("/message"), None);
    }
}
