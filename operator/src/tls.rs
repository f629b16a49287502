//! Serving the webhook router over HTTPS with whatever certificate is current.
//!
//! * [`CertResolver`] holds the serving certificate; [`CertResolver::update`] swaps it atomically.
//!   New handshakes use the new certificate; established connections keep theirs.
//! * [`server_config`] is rustls with the ring provider (never a process-wide default provider),
//!   TLS 1.2 and 1.3, ALPN `http/1.1`.
//! * [`serve`] accepts connections until shutdown; each connection runs in its own task, so a
//!   failed or stalled handshake ([`HANDSHAKE_TIMEOUT`]) or a broken connection only affects
//!   itself (logged at debug). On shutdown it stops accepting, lets in-flight requests finish for up
//!   to [`SHUTDOWN_GRACE`] (idle keep-alive connections are closed at once), then aborts the rest.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::certs::{self, CertError};

/// How long a client has to complete the TLS handshake, and then to send a request's headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`serve`] waits for in-flight requests after shutdown before aborting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The serving certificate, swappable while serving. Before the first [`update`](Self::update)
/// every handshake fails (and [`is_ready`](Self::is_ready) is false).
pub struct CertResolver {
    current: ArcSwapOption<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    serial: String,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("serial", &self.current_serial())
            .finish()
    }
}

impl CertResolver {
    /// An empty resolver.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
        })
    }

    /// Serves `cert_pem` (the leaf first, then any intermediates) with `key_pem` (PKCS#8, SEC1 or
    /// PKCS#1) from now on. On error the previous certificate stays.
    pub fn update(&self, cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::Invalid(format!("serving certificate PEM: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| CertError::Invalid("no serving certificate in the PEM".into()))?;
        let serial = certs::serial_of_der(leaf.as_ref())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CertError::Invalid(format!("serving key PEM: {e}")))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| CertError::Invalid(format!("serving certificate and key: {e}")))?;
        self.current.store(Some(Arc::new(Loaded {
            key: Arc::new(certified),
            serial,
        })));
        Ok(())
    }

    /// The serial of the certificate being served (lowercase hex of its DER bytes), if any.
    pub fn current_serial(&self) -> Option<String> {
        self.current.load().as_ref().map(|l| l.serial.clone())
    }

    /// True once a certificate has been loaded.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|l| l.key.clone())
    }
}

/// The server's TLS configuration: ring, TLS 1.3 and 1.2, no client certificates, ALPN
/// `http/1.1`, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = builder.with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then drains (see the module
/// docs). Accept errors (e.g. too many open files) are logged and retried after a short pause, so
/// this returns `Ok(())` after shutdown.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        acceptor.clone(),
                        stream,
                        peer,
                        router.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = done
                    && error.is_panic()
                {
                    tracing::warn!(%error, "a webhook connection task panicked");
                }
            }
        }
    }
    drop(listener);
    // `send` fails only without receivers, i.e. when no connection is open.
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::debug!(
            open = connections.len(),
            "aborting webhook connections after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One connection: handshake (bounded), then HTTP/1.1 until the client closes or shutdown.
async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    // Best effort: only latency is at stake.
    let _ = stream.set_nodelay(true);
    let tls = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => {
            match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            }
        }
        () = stopped(&mut stop) => return,
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "webhook connection failed");
    }
}

/// Completes once shutdown has begun (or [`serve`] is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: as good as stopped.
    let _ = stop.wait_for(|s| *s).await;
}
