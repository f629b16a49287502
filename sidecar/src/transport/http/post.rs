//! POST requests: the client's JSON-RPC frames, judged before they reach the upstream, and the
//! upstream's answers to them (JSON whole, SSE event by event), with the guard's own answers merged
//! in. In legacy mode the answers travel on the session's SSE stream instead.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::Proxy;
use super::frames::{fail_requests, is_parse_error, merge_messages};
use super::respond::{
    MCP_SESSION_ID, boxed, empty, full, header_str, is_form, is_json, is_sse, json, json_error,
    legacy_accepted, looks_like_json, passthrough,
};
use super::sessions::{Legacy, State};
use super::upstream::{Body, describe, strip_hop_by_hop};
use crate::guard::{Forward, Guard, Outcome};
use crate::jsonrpc::code;

/// How long a POST may wait for room in a legacy session's stream.
const LEGACY_SEND_TIMEOUT: Duration = Duration::from_secs(5);

impl Proxy {
    pub(super) async fn post(&self, req: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        if parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_REQUEST,
                "mcp-guard: compressed request bodies cannot be inspected; send them uncompressed",
            );
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_message) {
            return self.too_large(declared);
        }
        let bytes = match Limited::new(body, self.max_message).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return self.too_large(None),
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    code::PARSE_ERROR,
                    &format!("the request body could not be read: {}", describe(&*e)),
                );
            }
        };
        // Content-Length and Expect described the client's body; hyper sets the length of ours.
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::EXPECT);
        if is_form(&parts.headers) && !looks_like_json(&bytes) {
            // A form (e.g. an OAuth token request to a colocated authorization server) that no
            // server would read as JSON-RPC: not the guard's. Everything else is judged, whatever
            // its Content-Type, since some servers parse any body as JSON.
            let req = Request::from_parts(parts, full(bytes));
            return match self.upstream.send(req).await {
                Ok(resp) => passthrough(resp),
                Err(e) => self.unreachable(None, None, &e),
            };
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                "parse error: the body is not UTF-8",
            );
        };
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(legacy) = self.sessions.legacy(path) {
            let outcome = judge_client(&self.guard, &legacy.state, text, &parts.headers);
            return self.legacy_post(parts, &bytes, outcome, legacy).await;
        }
        let session = header_str(&parts.headers, MCP_SESSION_ID).map(str::to_owned);
        let (state, created) = match &session {
            Some(id) => self.sessions.session(id),
            None => (self.sessions.shared(), false),
        };
        let mut outcome = judge_client(&self.guard, &state, text, &parts.headers);
        if let Some(id) = &session {
            match self.ask_step(id, &state, &parts, text, outcome) {
                Ok(resp) => return resp,
                Err(o) => outcome = o,
            }
        }
        let forward = match outcome.forward {
            Forward::Original => bytes,
            Forward::Replaced(r) => Bytes::from(r),
            Forward::Nothing => {
                let echo = parts.headers.get(MCP_SESSION_ID);
                return match outcome.reply {
                    Some(r) if is_parse_error(&r) => json(StatusCode::BAD_REQUEST, r, None),
                    Some(r) => json(StatusCode::OK, r, echo),
                    None => empty(StatusCode::ACCEPTED),
                };
            }
        };
        let req = Request::from_parts(parts, full(forward.clone()));
        let resp = match self.upstream.send(req).await {
            Ok(resp) => resp,
            Err(e) => return self.unreachable(Some((&state, &forward)), outcome.reply, &e),
        };
        match &session {
            Some(id)
                if resp.status() == StatusCode::NOT_FOUND
                    || (created && resp.status().is_client_error()) =>
            {
                self.sessions.end(id);
            }
            Some(_) => {}
            None => {
                if let Some(id) = header_str(resp.headers(), MCP_SESSION_ID) {
                    let (new, _) = self.sessions.session(id);
                    observe_initialize(&new, &forward);
                }
            }
        }
        self.answer(resp, state, forward, outcome.reply).await
    }

    /// A POST to a legacy session's endpoint: every answer travels on the session's stream.
    async fn legacy_post(
        &self,
        parts: hyper::http::request::Parts,
        bytes: &Bytes,
        outcome: Outcome,
        legacy: Legacy,
    ) -> Response<Body> {
        let forward = match outcome.forward {
            Forward::Original => bytes.clone(),
            Forward::Replaced(r) => Bytes::from(r),
            Forward::Nothing => {
                return match outcome.reply {
                    Some(r) if is_parse_error(&r) => json(StatusCode::BAD_REQUEST, r, None),
                    Some(r) => {
                        deliver(&legacy, r).await;
                        legacy_accepted()
                    }
                    None => legacy_accepted(),
                };
            }
        };
        if let Some(r) = outcome.reply {
            deliver(&legacy, r).await;
        }
        let req = Request::from_parts(parts, full(forward.clone()));
        match self.upstream.send(req).await {
            Ok(resp) => passthrough(resp),
            Err(e) => {
                let reason = self.unreachable_reason(&e);
                let frame = String::from_utf8_lossy(&forward);
                for err in fail_requests(&self.guard, &legacy.state, &frame, &reason, true) {
                    deliver(&legacy, err).await;
                }
                json_error(StatusCode::BAD_GATEWAY, code::INTERNAL_ERROR, &reason)
            }
        }
    }

    /// The upstream's answer to a judged POST (`forward` is what was sent), with the guard's
    /// `reply` (errors of blocked calls in a batch) merged in.
    pub(super) async fn answer(
        &self,
        resp: Response<Incoming>,
        state: State,
        forward: Bytes,
        reply: Option<String>,
    ) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let encoded = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            eprintln!(
                "mcp-guard-proxy: the server compressed an answer although asked not to; passed on unjudged"
            );
        } else if is_sse(&parts.headers) {
            parts.headers.remove(header::CONTENT_LENGTH);
            let mut stream = self.stream(body, state).for_request(forward);
            if let Some(r) = &reply {
                stream = stream.first(r);
            }
            return Response::from_parts(parts, stream.boxed_unsync());
        } else if is_json(&parts.headers) {
            let bytes = match Limited::new(body, self.max_message).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let reason = if e.is::<LengthLimitError>() {
                        format!(
                            "the MCP server's answer exceeds the proxy's limit of {} bytes",
                            self.max_message
                        )
                    } else {
                        format!(
                            "the MCP server {} broke off its answer: {}",
                            self.upstream_url,
                            describe(&*e)
                        )
                    };
                    return self.failed(Some((&state, &forward)), reply, &reason);
                }
            };
            let mut out = bytes.clone();
            if let Ok(text) = std::str::from_utf8(&bytes)
                && !text.trim().is_empty()
            {
                let outcome = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    self.guard.server_frame(&mut s, text)
                };
                match outcome.map(|o| o.forward) {
                    Ok(Forward::Replaced(r)) => out = Bytes::from(r),
                    Ok(Forward::Nothing) => out = Bytes::new(),
                    Ok(Forward::Original) | Err(_) => {}
                }
            }
            if let Some(r) = reply.filter(|_| parts.status.is_success()) {
                let upstream = String::from_utf8_lossy(&out);
                if let Some(merged) = merge_messages([upstream.as_ref(), r.as_str()]) {
                    out = Bytes::from(merged);
                }
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, full(out));
        } else if let Some(r) = reply
            && (parts.status == StatusCode::ACCEPTED || parts.status == StatusCode::NO_CONTENT)
        {
            // Only notifications were forwarded; the blocked calls' errors are the answer.
            parts.status = StatusCode::OK;
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Response::from_parts(parts, full(Bytes::from(r)));
        }
        Response::from_parts(parts, boxed(body))
    }

    fn unreachable_reason(&self, e: &hyper_util::client::legacy::Error) -> String {
        let what = if e.is_connect() {
            "is unreachable"
        } else {
            "failed before answering"
        };
        let reason = format!(
            "the MCP server {} {what}: {}",
            self.upstream_url,
            describe(e)
        );
        eprintln!("mcp-guard-proxy: {reason}");
        reason
    }

    /// The answer when the upstream could not be reached or did not answer.
    pub(super) fn unreachable(
        &self,
        request: Option<(&State, &Bytes)>,
        reply: Option<String>,
        e: &hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        let reason = self.unreachable_reason(e);
        self.failed(request, reply, &reason)
    }

    /// Errors for every request of the POST `request` (and the guard's own `reply`), or a 502 when
    /// there is no request to answer.
    fn failed(
        &self,
        request: Option<(&State, &Bytes)>,
        reply: Option<String>,
        reason: &str,
    ) -> Response<Body> {
        let mut errors = match request {
            Some((state, frame)) => fail_requests(
                &self.guard,
                state,
                &String::from_utf8_lossy(frame),
                reason,
                true,
            ),
            None => Vec::new(),
        };
        errors.extend(reply);
        match merge_messages(errors.iter().map(String::as_str)) {
            Some(body) => json(StatusCode::OK, body, None),
            None => json_error(StatusCode::BAD_GATEWAY, code::INTERNAL_ERROR, reason),
        }
    }

    fn too_large(&self, size: Option<usize>) -> Response<Body> {
        let max = self.max_message;
        let message = match size {
            Some(n) => format!("message of {n} bytes exceeds the proxy's limit of {max} bytes"),
            None => format!("message exceeds the proxy's limit of {max} bytes"),
        };
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            &message,
        )
    }
}

/// A new session's client capabilities, from the `initialize` (judged on the shared state) that
/// created it.
fn observe_initialize(state: &State, frame: &[u8]) {
    let Ok(text) = std::str::from_utf8(frame) else {
        return;
    };
    if let Ok(crate::jsonrpc::Frame::Single(env)) = crate::jsonrpc::parse_frame(text)
        && env.method.as_deref() == Some("initialize")
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.asks
            .observe_initialize(env.params.map(serde_json::value::RawValue::get));
    }
}

fn judge_client(guard: &Guard, state: &State, text: &str, headers: &hyper::HeaderMap) -> Outcome {
    // OpenTelemetry: the caller's `traceparent`/`tracestate` headers, read only when exporting.
    let remote = guard
        .otel
        .is_enabled()
        .then(|| crate::otel::Remote::from_headers(headers))
        .flatten();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    guard.client_frame_traced(&mut s, text, remote.as_ref())
}

/// Puts `message` into a legacy session's stream (waiting briefly if the client reads slowly).
async fn deliver(legacy: &Legacy, message: String) {
    let sent = tokio::time::timeout(LEGACY_SEND_TIMEOUT, legacy.to_stream.send(message)).await;
    if !matches!(sent, Ok(Ok(()))) {
        eprintln!(
            "mcp-guard-proxy: a legacy SSE stream is gone or not read; an answer was dropped"
        );
    }
}
