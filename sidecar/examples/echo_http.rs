//! A minimal, fast MCP server over Streamable HTTP for benchmarks: the HTTP twin of `echo_server`
//! (one tool, `echo`, the same answers), so the proxy's HTTP cost is not hidden behind a slow
//! server. POST /mcp takes one JSON-RPC message and answers at once with `application/json`; a
//! notification or response gets `202` with no body; `initialize` answers with an `Mcp-Session-Id`.
//! Sessions are not checked. Not a test double for behaviour: the tests use real servers.
//!
//!   cargo run --release --example echo_http -- PORT      (0: any free port)
//!
//! Prints `echo_http: listening on http://127.0.0.1:PORT/mcp` on stderr once bound.
#![allow(clippy::unwrap_used)]

#[path = "echo/answer.rs"]
mod answer;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

static SESSIONS: AtomicU64 = AtomicU64::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: echo_http PORT");
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    eprintln!(
        "echo_http: listening on http://{}/mcp",
        listener.local_addr().unwrap()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/mcp" {
        return Ok(reply(StatusCode::NOT_FOUND, None, Bytes::new()));
    }
    if req.method() != Method::POST {
        // No server-initiated stream (GET) and no session teardown (DELETE) to offer.
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, None, Bytes::new()));
    }
    let Ok(body) = req.into_body().collect().await else {
        return Ok(reply(StatusCode::BAD_REQUEST, None, Bytes::new()));
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}});
        return Ok(reply(StatusCode::BAD_REQUEST, None, json_bytes(&error)));
    };
    let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
        // A notification, or a response to a server request.
        return Ok(reply(StatusCode::ACCEPTED, None, Bytes::new()));
    };
    let mut session = None;
    if method == "initialize" {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed) + 1;
        session = Some(HeaderValue::from_str(&format!("echo-http-session-{n}")).unwrap());
    }
    let result = answer::result(method, &msg["params"]);
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
    Ok(reply(StatusCode::OK, session, json_bytes(&answer)))
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap())
}

fn reply(status: StatusCode, session: Option<HeaderValue>, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().status(status);
    if !body.is_empty() {
        resp = resp.header(CONTENT_TYPE, "application/json");
    }
    if let Some(id) = session {
        resp = resp.header("mcp-session-id", id);
    }
    resp.body(Full::new(body)).unwrap()
}
