//! ASK by elicitation over Streamable HTTP (sessions with `Mcp-Session-Id` only).
//!
//! When the guard holds a POST's call and answers with its `elicitation/create` request, the POST is
//! answered `200 text/event-stream`: the request is the first event and the stream stays open,
//! registered in [`Sessions`] under the session and the call's request id. The client answers the
//! elicitation with another POST, which gets `202 Accepted`; the held call is then forwarded
//! upstream with the original POST's URI and headers and the upstream's answer (judged as any
//! answer) is piped into the open stream; a refusal is written there as an error event. A tick per
//! held call applies `spec.ask.timeout`. If the client drops the open stream, the held call is
//! refused (audited as failed).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::Proxy;
use super::frames::{fail_requests, request_ids, split_messages};
use super::respond::{MCP_SESSION_ID, empty, full, is_sse};
use super::sessions::{Sessions, State, Waiting};
use super::sse;
use super::upstream::{Body, BoxError};
use crate::guard::{Forward, Guard, Outcome};
use crate::jsonrpc::{self, Frame as JsonFrame, Kind, code};

/// How often held calls' deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// How a held call ends.
enum Settled {
    /// An error for the client (declined, timed out).
    Reply(String),
    /// The call itself, to forward upstream (approved, or the fallback allows it).
    Forward(String),
}

impl Proxy {
    /// Handles a session POST whose judgement belongs to the ASK flow: a call held for the user's
    /// answer, or the client's answer to an elicitation. Anything else is given back.
    pub(super) fn ask_step(
        &self,
        session: &str,
        state: &State,
        parts: &Parts,
        text: &str,
        outcome: Outcome,
    ) -> Result<Response<Body>, Outcome> {
        let Some(me) = self.me.upgrade() else {
            return Err(outcome);
        };
        if is_ask_answer(text) {
            let call = match outcome.forward {
                Forward::Replaced(raw) => request_ids(&raw)
                    .pop()
                    .map(|id| (id, Settled::Forward(raw))),
                _ => outcome
                    .reply
                    .and_then(|r| response_id(&r).map(|id| (id, Settled::Reply(r)))),
            };
            if let Some((id, settled)) = call {
                me.settle(session, state, &id, settled);
            }
            return Ok(empty(StatusCode::ACCEPTED));
        }
        let held = matches!(outcome.forward, Forward::Nothing)
            && outcome.reply.as_deref().is_some_and(is_elicitation);
        let ids = request_ids(text);
        let (true, [call_id], Some(question)) = (held, ids.as_slice(), outcome.reply.as_deref())
        else {
            return Err(outcome);
        };
        let (tx, rx) = oneshot::channel();
        self.sessions.wait(
            session,
            call_id,
            Waiting {
                to_stream: tx,
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
            },
        );
        tokio::spawn(
            me.clone()
                .tick(session.to_owned(), state.clone(), call_id.clone()),
        );
        let body = HeldStream {
            first: Some(Bytes::from(sse::message_event(question))),
            next: Some(rx),
            body: None,
            _hold: Hold {
                sessions: self.sessions.clone(),
                guard: self.guard.clone(),
                state: state.clone(),
                session: session.to_owned(),
                call_id: call_id.clone(),
            },
        };
        let mut resp = Response::new(body.boxed_unsync());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(id) = parts.headers.get(MCP_SESSION_ID) {
            resp.headers_mut().insert(MCP_SESSION_ID, id.clone());
        }
        Ok(resp)
    }

    /// Applies `spec.ask.timeout` while held call `call_id`'s POST waits.
    async fn tick(self: Arc<Self>, session: String, state: State, call_id: String) {
        let mut tick = tokio::time::interval(TICK);
        while self.sessions.is_waiting(&session, &call_id) {
            tick.tick().await;
            let (to_client, to_server) = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                self.guard.expire_asks(&mut s)
            };
            for reply in to_client {
                if let Some(id) = response_id(&reply) {
                    self.settle(&session, &state, &id, Settled::Reply(reply));
                }
            }
            for raw in to_server {
                if let Some(id) = request_ids(&raw).pop() {
                    self.settle(&session, &state, &id, Settled::Forward(raw));
                }
            }
        }
    }

    /// Ends held call `call_id`'s wait: its error, or the upstream's answer, goes into its stream.
    fn settle(self: &Arc<Self>, session: &str, state: &State, call_id: &str, settled: Settled) {
        let Some(waiting) = self.sessions.release(session, call_id) else {
            if let Settled::Forward(raw) = settled {
                let why = "the client went away before the call was released";
                fail_requests(&self.guard, state, &raw, why, false);
            }
            return;
        };
        match settled {
            Settled::Reply(r) => {
                let _ = waiting.to_stream.send(events(&r));
            }
            Settled::Forward(raw) => {
                let me = self.clone();
                let state = state.clone();
                let call_id = call_id.to_owned();
                tokio::spawn(async move {
                    let body = me.forward_held(&waiting, state, raw, &call_id).await;
                    let _ = waiting.to_stream.send(body);
                });
            }
        }
    }

    /// Forwards a released call with its POST's URI and headers; the judged answer as SSE events.
    async fn forward_held(
        &self,
        waiting: &Waiting,
        state: State,
        raw: String,
        call_id: &str,
    ) -> Body {
        let forward = Bytes::from(raw);
        let mut req = Request::new(full(forward.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = waiting.uri.clone();
        *req.headers_mut() = waiting.headers.clone();
        let resp = match self.upstream.send(req).await {
            Ok(resp) => self.answer(resp, state, forward, None).await,
            Err(e) => self.unreachable(Some((&state, &forward)), None, &e),
        };
        if is_sse(resp.headers()) {
            return resp.into_body();
        }
        let status = resp.status();
        let text = match resp.into_body().collect().await {
            Ok(c) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        if status.is_success() && !text.trim().is_empty() {
            events(&text)
        } else {
            let why = format!("the MCP server answered HTTP {status}");
            events(&jsonrpc::error_response(
                Some(call_id),
                code::INTERNAL_ERROR,
                &why,
                None,
            ))
        }
    }
}

/// `frame`'s messages as SSE `message` events.
fn events(frame: &str) -> Body {
    let mut out = Vec::new();
    for message in split_messages(frame) {
        out.extend_from_slice(&sse::message_event(&message));
    }
    full(Bytes::from(out))
}

/// Whether `text` is a single response to one of the proxy's own requests.
fn is_ask_answer(text: &str) -> bool {
    matches!(jsonrpc::parse_frame(text), Ok(JsonFrame::Single(env))
        if env.kind() == Kind::Response
            && env.id_text().is_some_and(|id| id.starts_with(&format!("\"{}", crate::ask::ID_PREFIX))))
}

/// Whether `reply` is the proxy's `elicitation/create` request.
fn is_elicitation(reply: &str) -> bool {
    matches!(jsonrpc::parse_frame(reply), Ok(JsonFrame::Single(env))
        if env.kind() == Kind::Request
            && env.method.as_deref() == Some("elicitation/create")
            && env.id_text().is_some_and(|id| id.starts_with(&format!("\"{}", crate::ask::ID_PREFIX))))
}

/// The id (raw JSON text) of a single response.
fn response_id(reply: &str) -> Option<String> {
    match jsonrpc::parse_frame(reply) {
        Ok(JsonFrame::Single(env)) if env.kind() == Kind::Response => {
            env.id_text().map(str::to_owned)
        }
        _ => None,
    }
}

/// Keeps a held call's POST registered; dropped with the stream, it refuses a call still held.
struct Hold {
    sessions: Arc<Sessions>,
    guard: Arc<Guard>,
    state: State,
    session: String,
    call_id: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self
            .sessions
            .release(&self.session, &self.call_id)
            .is_some()
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.guard.abandon_ask(&mut s, &self.call_id);
        }
    }
}

/// The body of a held call's POST: the elicitation request, then whatever settles the call.
struct HeldStream {
    first: Option<Bytes>,
    next: Option<oneshot::Receiver<Body>>,
    body: Option<Body>,
    _hold: Hold,
}

impl HttpBody for HeldStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            if let Some(body) = &mut this.body {
                return Pin::new(body).poll_frame(cx);
            }
            let Some(rx) = &mut this.next else {
                return Poll::Ready(None);
            };
            match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(body)) => {
                    this.next = None;
                    this.body = Some(body);
                }
                Poll::Ready(Err(_)) => {
                    this.next = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
