//! The upstream side: one pooled HTTP/1.1 client (hyper-util's legacy `Client`) to the MCP server, and
//! the header rules of a reverse proxy.
//!
//! Requests keep their method, path, query and end-to-end headers, `Host` included (servers with DNS
//! rebinding protection check it). Hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1). One
//! header is changed: `Accept-Encoding` becomes `identity`, because the guard must read every
//! JSON-RPC message, and a compressed answer could not be judged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The error type of bodies in both directions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request or response body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this; below the 5 s keep-alive timeout of Node.js and
/// uvicorn, so the proxy does not reuse a connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// The MCP server's address and a connection pool to it.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    /// The URL as configured, for messages.
    pub url: String,
    /// A header set on every request (the stdio bridge's secret), replacing any the client sent.
    extra: Option<(HeaderName, HeaderValue)>,
}

impl Upstream {
    /// `url`: `http://host:port[/path]`; requests go to its host and port with their own path.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--upstream {url}: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            anyhow::bail!("--upstream {url}: not an absolute http:// URL");
        };
        if *scheme != Scheme::HTTP {
            anyhow::bail!("--upstream {url}: only http:// is supported");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Ok(Self {
            client,
            scheme: scheme.clone(),
            authority: authority.clone(),
            url: url.to_owned(),
            extra: None,
        })
    }

    /// Sets `name: value` on every request sent upstream (a client's own `name` is replaced).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra = Some((name, value));
        self
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Sends `req` (whose URI is only a path and query) to the upstream.
    pub async fn send(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = req.uri().path_and_query().cloned();
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = hyper::Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some((name, value)) = &self.extra {
            headers.insert(name.clone(), value.clone());
        }
        self.client.request(req).await
    }
}

/// Removes hop-by-hop headers: the fixed list and those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-") || k.as_str() == "keep-alive")
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: Connection
/// refused"), for JSON-RPC error messages.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_end_to_end_headers_stay() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("host", "127.0.0.1:1"),
            ("authorization", "Bearer t"),
            ("mcp-session-id", "s"),
            ("last-event-id", "e"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["authorization", "host", "last-event-id", "mcp-session-id"]
        );
    }

    #[test]
    fn upstream_urls_are_checked() {
        assert!(Upstream::new("http://127.0.0.1:8080/mcp").is_ok());
        assert!(Upstream::new("https://example.com/mcp").is_err());
        assert!(Upstream::new("/mcp").is_err());
    }
}
