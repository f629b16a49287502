//! The HTTP floor for the benchmark: a bare reverse proxy with the same stack as mcp-guard-proxy's
//! HTTP mode (hyper http1 server, hyper-util pooled keep-alive client, a 2-worker tokio runtime)
//! but no parsing, policy or audit. Each request goes upstream with its method, path, query,
//! end-to-end headers and body (streamed); the answer comes back the same way. The proxy's added
//! latency over HTTP is compared with this hop's.
//!
//!   relay_http LISTEN_PORT UPSTREAM_URL      (e.g. relay_http 0 http://127.0.0.1:8080/mcp)
//!
//! Prints `relay_http: listening on http://127.0.0.1:PORT for UPSTREAM_URL` on stderr once bound.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_guard_proxy::transport::http::strip_hop_by_hop;
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

#[derive(Debug)]
struct Relay {
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(upstream)) =
        (args.next().and_then(|p| p.parse::<u16>().ok()), args.next())
    else {
        eprintln!("usage: relay_http LISTEN_PORT UPSTREAM_URL");
        std::process::exit(2);
    };
    let uri: Uri = upstream.parse().unwrap();
    assert_eq!(uri.scheme(), Some(&Scheme::HTTP), "only http:// upstreams");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(serve(port, uri.authority().unwrap().clone(), &upstream));
}

async fn serve(port: u16, authority: Authority, upstream: &str) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let relay = Arc::new(Relay {
        client: Client::builder(TokioExecutor::new()).build(connector),
        authority,
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    eprintln!(
        "relay_http: listening on http://{} for {upstream}",
        listener.local_addr().unwrap()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let relay = relay.clone();
                async move { Ok::<_, Infallible>(relay.forward(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Relay {
    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        *req.uri_mut() = Uri::from_parts(parts).unwrap();
        *req.version_mut() = hyper::Version::HTTP_11;
        strip_hop_by_hop(req.headers_mut());
        match self.client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed_unsync())
            }
            Err(e) => {
                let mut resp = Response::new(
                    Full::new(Bytes::from(format!("relay_http: {e}")))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                resp
            }
        }
    }
}
