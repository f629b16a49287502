//! Real TLS over loopback: the server from [`serve`], clients from tokio-rustls and hyper.

use std::io;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use hyper::client::conn::http1::SendRequest;
use jiff::Timestamp;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;
use crate::certs::{CertSettings, Material, Plan};

fn settings(dns: &[&str]) -> CertSettings {
    CertSettings {
        dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
        ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
        cert_validity: Duration::from_secs(3600),
        ca_validity: Duration::from_secs(10 * 3600),
        propagation: Duration::from_secs(60),
    }
}

fn material(current: Option<&Material>, s: &CertSettings) -> Material {
    match certs::plan(Timestamp::now(), current, s).expect("plan") {
        Plan::Write { material, .. } => material,
        Plan::Keep => panic!("expected new material"),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(resolver: Arc<CertResolver>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            router,
            server_config(resolver),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("serve task")
    }
}

fn client_config(bundle_pem: &str) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(der.expect("pem")).expect("root");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

async fn connect_with(
    addr: SocketAddr,
    config: ClientConfig,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn connect(addr: SocketAddr, bundle_pem: &str) -> io::Result<TlsStream<TcpStream>> {
    connect_with(addr, client_config(bundle_pem), "localhost").await
}

fn peer_serial(tls: &TlsStream<TcpStream>) -> String {
    let (_, conn) = tls.get_ref();
    let chain = conn.peer_certificates().expect("peer certificates");
    certs::serial_of_der(chain[0].as_ref()).expect("serial")
}

async fn http(tls: TlsStream<TcpStream>) -> SendRequest<Body> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    send
}

async fn get_text(send: &mut SendRequest<Body>, path: &str) -> (StatusCode, String) {
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Body::empty())
        .expect("request");
    let response = send.send_request(request).await.expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// One request on a fresh connection: (status, body, served serial).
async fn fetch(addr: SocketAddr, bundle_pem: &str) -> (StatusCode, String, String) {
    let tls = connect(addr, bundle_pem).await.expect("handshake");
    let serial = peer_serial(&tls);
    let mut send = http(tls).await;
    let (status, body) = get_text(&mut send, "/").await;
    (status, body, serial)
}

#[tokio::test]
async fn serves_http1_over_tls() {
    let s = settings(&["localhost"]);
    let m = material(None, &s);
    let resolver = CertResolver::new();
    assert!(!resolver.is_ready());
    resolver.update(&m.cert_pem, &m.key_pem).expect("load");
    assert!(resolver.is_ready());
    let expected = certs::serial_of_pem(&m.cert_pem).expect("serial");
    assert_eq!(
        resolver.current_serial().as_deref(),
        Some(expected.as_str())
    );
    let server = Server::start(resolver.clone()).await;

    let tls = connect(server.addr, &m.ca_bundle_pem)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(peer_serial(&tls), expected);
    let mut send = http(tls).await;
    assert_eq!(
        get_text(&mut send, "/").await,
        (StatusCode::OK, "hello".to_owned())
    );
    assert_eq!(get_text(&mut send, "/nope").await.0, StatusCode::NOT_FOUND);

    // By IP address too, and over TLS 1.2.
    let mut tls12 =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates({
                let mut roots = RootCertStore::empty();
                for der in CertificateDer::pem_slice_iter(m.ca_bundle_pem.as_bytes()) {
                    roots.add(der.expect("pem")).expect("root");
                }
                roots
            })
            .with_no_client_auth();
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = connect_with(server.addr, tls12, "127.0.0.1")
        .await
        .expect("TLS 1.2 by IP");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut send = http(tls).await;
    assert_eq!(get_text(&mut send, "/").await.0, StatusCode::OK);

    server.shutdown().await.expect("serve");
}

#[tokio::test]
async fn a_new_certificate_applies_to_new_connections_only() {
    let s = settings(&["localhost"]);
    let m1 = material(None, &s);
    let resolver = CertResolver::new();
    resolver.update(&m1.cert_pem, &m1.key_pem).expect("load");
    let server = Server::start(resolver.clone()).await;

    // A keep-alive connection made before the update.
    let old = connect(server.addr, &m1.ca_bundle_pem)
        .await
        .expect("handshake");
    let old_serial = peer_serial(&old);
    let mut old = http(old).await;
    assert_eq!(get_text(&mut old, "/").await.0, StatusCode::OK);

    // Same CA, new serving certificate.
    let m2 = material(Some(&m1), &settings(&["localhost", "webhook.example"]));
    assert_eq!(m2.ca_bundle_pem, m1.ca_bundle_pem);
    resolver.update(&m2.cert_pem, &m2.key_pem).expect("update");
    let new_serial = certs::serial_of_pem(&m2.cert_pem).expect("serial");
    assert_ne!(new_serial, old_serial);
    assert_eq!(resolver.current_serial(), Some(new_serial.clone()));

    let (status, body, serial) = fetch(server.addr, &m1.ca_bundle_pem).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(serial, new_serial);

    // The old connection is still up and still works.
    assert_eq!(
        get_text(&mut old, "/").await,
        (StatusCode::OK, "hello".to_owned())
    );

    // A failed update keeps what is served.
    assert!(resolver.update("garbage", &m2.key_pem).is_err());
    assert!(resolver.update(&m2.cert_pem, "garbage").is_err());
    assert!(
        resolver.update(&m2.cert_pem, &m1.key_pem).is_err(),
        "key mismatch"
    );
    assert!(resolver.update("", "").is_err());
    assert_eq!(resolver.current_serial(), Some(new_serial.clone()));
    assert_eq!(fetch(server.addr, &m1.ca_bundle_pem).await.2, new_serial);

    server.shutdown().await.expect("serve");
}

#[tokio::test]
async fn an_untrusting_client_fails_alone() {
    let s = settings(&["localhost"]);
    let m = material(None, &s);
    let stranger = material(None, &s);
    let resolver = CertResolver::new();
    resolver.update(&m.cert_pem, &m.key_pem).expect("load");
    let server = Server::start(resolver).await;

    let err = connect(server.addr, &stranger.ca_bundle_pem)
        .await
        .expect_err("unknown issuer");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // A name the certificate does not carry.
    let err = connect_with(
        server.addr,
        client_config(&m.ca_bundle_pem),
        "elsewhere.example",
    )
    .await
    .expect_err("wrong name");
    assert!(err.to_string().to_lowercase().contains("name"), "{err}");

    let (status, body, _) = fetch(server.addr, &m.ca_bundle_pem).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    server.shutdown().await.expect("serve");
}

#[tokio::test]
async fn garbage_and_silence_disturb_nobody() {
    let s = settings(&["localhost"]);
    let m = material(None, &s);
    let resolver = CertResolver::new();
    resolver.update(&m.cert_pem, &m.key_pem).expect("load");
    let server = Server::start(resolver).await;

    // A connection that never says anything (its handshake is pending for 10 s).
    let silent = TcpStream::connect(server.addr).await.expect("connect");
    // A good connection opened before the garbage, kept alive through it.
    let mut before = http(
        connect(server.addr, &m.ca_bundle_pem)
            .await
            .expect("handshake"),
    )
    .await;

    for garbage in [
        &b"\x16\x03\x01\x00\x05hello, not a ClientHello"[..],
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &[0xff; 4096][..],
    ] {
        let mut raw = TcpStream::connect(server.addr).await.expect("connect");
        raw.write_all(garbage).await.expect("write");
        // The server answers (an alert, at most) and closes.
        let mut buf = Vec::new();
        // (A reset instead of a clean close is fine too.)
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
            .await
            .expect("the server closes a garbage connection");
        assert!(buf.len() < 100, "no more than an alert: {buf:?}");

        let (status, body, _) = fetch(server.addr, &m.ca_bundle_pem).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    }
    assert_eq!(get_text(&mut before, "/").await.0, StatusCode::OK);
    drop(silent);
    server.shutdown().await.expect("serve");
}

#[tokio::test]
async fn handshakes_fail_until_a_certificate_is_loaded() {
    let s = settings(&["localhost"]);
    let m = material(None, &s);
    let resolver = CertResolver::new();
    let server = Server::start(resolver.clone()).await;
    assert!(connect(server.addr, &m.ca_bundle_pem).await.is_err());
    resolver.update(&m.cert_pem, &m.key_pem).expect("load");
    assert_eq!(fetch(server.addr, &m.ca_bundle_pem).await.0, StatusCode::OK);
    server.shutdown().await.expect("serve");
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let s = settings(&["localhost"]);
    let m = material(None, &s);
    let resolver = CertResolver::new();
    resolver.update(&m.cert_pem, &m.key_pem).expect("load");
    let server = Server::start(resolver).await;
    let addr = server.addr;

    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = http(connect(addr, &m.ca_bundle_pem).await.expect("handshake")).await;
    assert_eq!(get_text(&mut idle, "/").await.0, StatusCode::OK);

    let mut busy = http(connect(addr, &m.ca_bundle_pem).await.expect("handshake")).await;
    let in_flight = tokio::spawn(async move { get_text(&mut busy, "/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = std::time::Instant::now();
    server.shutdown().await.expect("serve");
    let took = started.elapsed();
    assert!(took < SHUTDOWN_GRACE, "drained in {took:?}");
    assert_eq!(
        in_flight.await.expect("task"),
        (StatusCode::OK, "slow".to_owned())
    );
    // Nobody is listening any more.
    assert!(TcpStream::connect(addr).await.is_err());
}
