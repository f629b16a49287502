//! Responses the proxy builds or passes on, and what it reads from headers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::upstream::{Body, strip_hop_by_hop};
use crate::jsonrpc;

pub(super) const MCP_SESSION_ID: &str = "mcp-session-id";

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of `Content-Type`, lower-cased, without parameters.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    media_type(headers)
        .is_some_and(|m| m == "application/x-www-form-urlencoded" || m.starts_with("multipart/"))
}

pub(super) fn is_sse(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "text/event-stream")
}

/// Whether a body starts like a JSON object or array (after whitespace and a BOM).
pub(super) fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

pub(super) fn boxed(body: Incoming) -> Body {
    body.map_err(Into::into).boxed_unsync()
}

pub(super) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The upstream's answer as it came (hop-by-hop headers dropped).
pub(super) fn passthrough(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, boxed(body))
}

pub(super) fn json(
    status: StatusCode,
    body: String,
    session: Option<&HeaderValue>,
) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = session {
        resp.headers_mut().insert(MCP_SESSION_ID, id.clone());
    }
    resp
}

pub(super) fn json_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json(
        status,
        jsonrpc::error_response(None, code, message, None),
        None,
    )
}

pub(super) fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// What a legacy (2024-11-05) server answers a POST it accepted.
pub(super) fn legacy_accepted() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(b"Accepted")));
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_sniffing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h) && !is_sse(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        assert!(is_sse(&h) && !is_form(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(is_form(&h));
        assert!(looks_like_json(b" \r\n{\"a\":1}"));
        assert!(looks_like_json(b"\xEF\xBB\xBF[1]"));
        assert!(!looks_like_json(b"grant_type=client_credentials"));
        assert!(!looks_like_json(b""));
    }
}
