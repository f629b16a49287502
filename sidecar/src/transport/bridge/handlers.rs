//! The bridge's HTTP requests: POST (JSON-RPC into a session, its answers back), GET (the
//! session's stream of server-initiated messages), DELETE (end the session).

use std::sync::Arc;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::MCP_SESSION_ID;
use super::body::{
    Body, Events, Message, PostEntry, empty, error, json, messages, sse, with_session,
};
use super::registry::{Refused, Registry};
use super::routes::STREAM_QUEUE;
use super::session::End;
use crate::jsonrpc::{Kind, code};

/// JSON-RPC code of "session not found" (what the MCP TypeScript SDK answers).
const SESSION_NOT_FOUND: i64 = -32001;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the `Accept` header admits `media` (exactly, as `type/*`, or `*/*`).
fn accepts(headers: &HeaderMap, media: &str) -> bool {
    let kind = media.split('/').next().unwrap_or_default();
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .any(|m| m == media || m == "*/*" || m == format!("{kind}/*"))
}

pub(super) async fn handle(registry: &Arc<Registry>, req: Request<Incoming>) -> Response<Body> {
    let session = header_str(req.headers(), MCP_SESSION_ID).map(str::to_owned);
    if *req.method() == Method::POST {
        return post(registry, req, session).await;
    }
    let Some(id) = session else {
        return match *req.method() {
            Method::GET | Method::DELETE => error(
                StatusCode::BAD_REQUEST,
                None,
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            ),
            _ => not_allowed(),
        };
    };
    let Some(s) = registry.get(&id) else {
        return not_found();
    };
    s.touch();
    match *req.method() {
        Method::GET => {
            if !accepts(req.headers(), "text/event-stream") {
                return error(
                    StatusCode::NOT_ACCEPTABLE,
                    None,
                    code::INVALID_REQUEST,
                    "Not Acceptable: the client must accept text/event-stream",
                );
            }
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            if !s.open_get(tx) {
                return not_found();
            }
            sse(Events::get(rx), &s.id)
        }
        Method::DELETE => {
            s.stop(End::Deleted);
            empty(StatusCode::OK)
        }
        _ => not_allowed(),
    }
}

fn not_found() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        None,
        SESSION_NOT_FOUND,
        "Session not found",
    )
}

fn not_allowed() -> Response<Body> {
    let mut resp = empty(StatusCode::METHOD_NOT_ALLOWED);
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    resp
}

async fn post(
    registry: &Arc<Registry>,
    req: Request<Incoming>,
    session: Option<String>,
) -> Response<Body> {
    let stream = accepts(req.headers(), "text/event-stream");
    let bad = |code, message: &str| error(StatusCode::BAD_REQUEST, None, code, message);
    let bytes = match Limited::new(req.into_body(), registry.options.max_message)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                code::INVALID_REQUEST,
                "the message exceeds the size limit",
            );
        }
        Err(_) => return bad(code::PARSE_ERROR, "the request body could not be read"),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return bad(code::PARSE_ERROR, "Parse error: the body is not UTF-8");
    };
    let (msgs, batch) = match messages(text) {
        Ok(m) => m,
        Err(e) => return bad(code::PARSE_ERROR, &format!("Parse error: {e}")),
    };
    if msgs.iter().any(|m| m.kind == Kind::Invalid) {
        return bad(
            code::INVALID_REQUEST,
            "Invalid Request: not a JSON-RPC message",
        );
    }
    let init = msgs
        .iter()
        .find(|m| m.method.as_deref() == Some("initialize"));
    let s = match (&session, init) {
        (Some(id), _) => match registry.get(id) {
            Some(s) => s,
            None => return not_found(),
        },
        (None, Some(_)) if batch => {
            return bad(
                code::INVALID_REQUEST,
                "Invalid Request: initialize must not be part of a batch",
            );
        }
        (None, Some(m)) => match registry.create() {
            Ok(s) => s,
            Err(refused) => return refuse(m, refused),
        },
        (None, None) => {
            return bad(
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            );
        }
    };
    s.touch();
    s.cancelled(&msgs);
    let requests: Vec<&Message> = msgs.iter().filter(|m| m.kind == Kind::Request).collect();
    if requests.is_empty() {
        return if s.write(&msgs).await {
            with_session(empty(StatusCode::ACCEPTED), &s.id)
        } else {
            not_found()
        };
    }
    let ids: Vec<String> = requests.iter().filter_map(|m| m.id.clone()).collect();
    let tokens = requests.iter().filter_map(|m| m.progress.clone()).collect();
    let (tx, mut rx) = mpsc::channel(STREAM_QUEUE);
    let Some(key) = s.open_post(ids, tokens, tx, stream) else {
        return match (&session, init) {
            // The new process exited at once (its stderr says why).
            (None, Some(m)) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                m.id.as_deref(),
                code::INTERNAL_ERROR,
                "the MCP server exited before answering",
            ),
            _ => not_found(),
        };
    };
    let entry = PostEntry {
        session: s.clone(),
        key,
    };
    if !s.write(&msgs).await {
        // The server takes no input: it is gone. Ending the session answers the requests.
        s.stop(End::ServerGone);
    }
    if stream {
        return sse(Events::post(rx, entry), &s.id);
    }
    let mut answers = Vec::new();
    while let Some(m) = rx.recv().await {
        answers.push(m);
    }
    drop(entry);
    let body = if batch || answers.len() != 1 {
        format!("[{}]", answers.join(","))
    } else {
        answers.pop().unwrap_or_default()
    };
    with_session(json(StatusCode::OK, body), &s.id)
}

/// The answer to an `initialize` that could not start a session.
fn refuse(init: &Message, refused: Refused) -> Response<Body> {
    let id = init.id.as_deref();
    match refused {
        Refused::Full => error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            code::INTERNAL_ERROR,
            "too many sessions: the proxy's --max-sessions limit is reached; try again later",
        ),
        Refused::Closed => error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            code::INTERNAL_ERROR,
            "the proxy is shutting down",
        ),
        Refused::Spawn(e) => {
            eprintln!("mcp-guard-proxy: cannot start the MCP server: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                id,
                code::INTERNAL_ERROR,
                &format!("the MCP server could not be started: {e}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"),
        );
        assert!(accepts(&h, "text/event-stream") && accepts(&h, "application/json"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts(&h, "text/event-stream"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/*"));
        assert!(accepts(&h, "text/event-stream"));
    }
}
