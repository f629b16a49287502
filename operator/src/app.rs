//! Wires the operator together: API client, caches, certificate, webhook server, metrics server,
//! and the leader-elected reconciler. Everything stops on SIGINT/SIGTERM.

use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::certs::CertSettings;
use crate::config::{Args, webhook_url_addr};
use crate::error::{Error, Result};
use crate::inject::InjectConfig;
use crate::leader::{self, Election};
use crate::metrics::{self, Metrics};
use crate::owner;
use crate::reconcile::{self, policy_resource};
use crate::tls::{self, CertResolver};
use crate::webhook::rotation::{self, Managed, Registration};
use crate::webhook::{self, State};

/// Runs the operator until SIGINT/SIGTERM. `explicit_listen` says whether --webhook-listen was given.
pub async fn run(args: Args, explicit_listen: bool, shutdown: CancellationToken) -> Result<()> {
    let settings = cert_settings(&args);
    settings.validate().map_err(|e| {
        Error::Cert(format!(
            "--cert-validity/--ca-validity/--ca-propagation: {e}"
        ))
    })?;
    let client = Client::try_default().await.map_err(|e| {
        Error::Invalid(format!(
            "cannot configure the Kubernetes client (KUBECONFIG or in-cluster): {e}"
        ))
    })?;
    let metrics = Arc::new(Metrics::new());
    let identity = args.identity();

    let metrics_listener = bind(args.metrics, "--metrics").await?;
    let webhook_addr = args.webhook_bind(explicit_listen);
    let webhook_listener = bind_shared(webhook_addr, "--webhook-listen/--webhook-url")?;
    tracing::info!(
        metrics = %metrics_listener.local_addr().map_err(io("--metrics"))?,
        webhooks = %webhook_listener.local_addr().map_err(io("--webhook-listen"))?,
        identity,
        "mcp-guard-operator starting"
    );
    let metrics_task = tokio::spawn(metrics::serve(metrics_listener, metrics.clone()));

    // Caches the webhooks judge with; they must be complete before the first admission.
    let namespaces = cache(Api::<Namespace>::all(client.clone()), (), &shutdown);
    let policies = cache(
        Api::<DynamicObject>::all_with(client.clone(), &policy_resource()),
        policy_resource(),
        &shutdown,
    );
    for (what, store) in [
        (
            "namespaces",
            namespaces.clone().wait_until_ready().await.is_ok(),
        ),
        (
            "policies",
            policies.clone().wait_until_ready().await.is_ok(),
        ),
    ] {
        if !store {
            return Err(Error::Invalid(format!(
                "the {what} cache never became ready"
            )));
        }
    }

    // In a cluster, the Deployment running this pod owns the Secret and the Lease (deleted with it).
    let owner = match args.webhook_url {
        None => owner::find(&client, &args.namespace, args.identity.as_deref()).await,
        Some(_) => None,
    };

    // The serving certificate: loaded before the server accepts anything.
    let resolver = CertResolver::new();
    let cert_task = match &args.cert_dir {
        Some(dir) => {
            let (crt, key) =
                rotation::load_dir(dir).map_err(|e| Error::Cert(format!("--cert-dir: {e}")))?;
            resolver
                .update(&crt, &key)
                .map_err(|e| Error::Cert(format!("--cert-dir: {e}")))?;
            tokio::spawn(rotation::watch_dir(
                dir.clone(),
                resolver.clone(),
                metrics.clone(),
                shutdown.clone(),
            ))
        }
        None => {
            let managed = Managed {
                client: client.clone(),
                metrics: metrics.clone(),
                namespace: args.namespace.clone(),
                secret: args.cert_secret.clone(),
                owner: owner.clone(),
                settings,
                resolver: resolver.clone(),
                registration: match &args.webhook_url {
                    Some(url) => Registration::Url {
                        config: args.webhook_config.clone(),
                        base_url: url.clone(),
                        timeout_seconds: args.webhook_timeout,
                    },
                    None => Registration::Service {
                        config: args.webhook_config.clone(),
                    },
                },
            };
            let mut attempt = 0u32;
            loop {
                match managed.round().await {
                    Ok(_) => break,
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "webhook certificate not ready yet");
                        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            tokio::spawn(managed.run(shutdown.clone()))
        }
    };

    let state = Arc::new(State {
        client: client.clone(),
        inject: inject_config(&args),
        metrics: metrics.clone(),
        namespaces,
        policies,
    });
    let server = tokio::spawn(tls::serve(
        webhook_listener,
        webhook::router(state),
        tls::server_config(resolver),
        shutdown.clone().cancelled_owned(),
    ));
    metrics.set_ready(true);

    let election = Election {
        namespace: args.namespace.clone(),
        lease: args.lease_name.clone(),
        identity: identity.clone(),
        duration: args.lease_duration,
        grace: args.lease_grace,
        owner,
    };
    let ctx = reconcile::Context::new(client.clone(), metrics.clone(), &identity);
    leader::run(
        client,
        election,
        metrics.clone(),
        shutdown.clone(),
        |stop| reconcile::run(ctx.clone(), stop.cancelled_owned()),
    )
    .await?;

    metrics.set_ready(false);
    shutdown.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "webhook server stopped with an error");
    }
    cert_task.abort();
    metrics_task.abort();
    Ok(())
}

fn io(flag: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Invalid(format!("{flag}: {e}"))
}

async fn bind(addr: std::net::SocketAddr, flag: &'static str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Invalid(format!("{flag}: cannot listen on {addr}: {e}")))
}

/// Binds with SO_REUSEPORT, so several replicas on one host can serve the same webhook URL (the
/// kernel spreads connections between them, as a Service would in a cluster).
fn bind_shared(addr: std::net::SocketAddr, flag: &'static str) -> Result<TcpListener> {
    let fail = |e: std::io::Error| Error::Invalid(format!("{flag}: cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.set_reuseport(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(1024).map_err(fail)
}

/// A reflector cache of `api`, kept until shutdown.
fn cache<K>(api: Api<K>, dyntype: K::DynamicType, shutdown: &CancellationToken) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype);
    let reader = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|_| futures::future::ready(()));
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = stream => {}
            () = shutdown.cancelled() => {}
        }
    });
    reader
}

/// The names the serving certificate must carry.
fn cert_settings(args: &Args) -> CertSettings {
    let (dns_names, ip_addresses): (Vec<String>, Vec<IpAddr>) = match &args.webhook_url {
        Some(url) => match webhook_url_addr(url) {
            Ok(addr) => (Vec::new(), vec![addr.ip()]),
            Err(_) => (Vec::new(), Vec::new()),
        },
        None => {
            let (svc, ns) = (&args.webhook_service, &args.namespace);
            (
                vec![
                    svc.clone(),
                    format!("{svc}.{ns}"),
                    format!("{svc}.{ns}.svc"),
                    format!("{svc}.{ns}.svc.cluster.local"),
                ],
                Vec::new(),
            )
        }
    };
    CertSettings {
        dns_names,
        ip_addresses,
        cert_validity: args.cert_validity,
        ca_validity: args.ca_validity,
        propagation: args.ca_propagation,
    }
}

fn inject_config(args: &Args) -> InjectConfig {
    let mut cfg = InjectConfig::new(args.proxy_image.clone(), env!("CARGO_PKG_VERSION"));
    cfg.image_pull_policy = args.proxy_image_pull_policy.clone();
    cfg
}
