//! Keeps the webhook's serving certificate current on every replica.
//!
//! Managed mode: each round reads the Secret, asks the pure [`certs::plan`] whether anything is due,
//! writes the Secret if so (create, or replace at the read resourceVersion: when replicas race, one
//! wins and the others re-read), loads the certificate into the TLS resolver (new handshakes use it,
//! open connections are not dropped), and makes both webhook configurations trust the CA bundle.
//! Rounds run when [`certs::next_check`] says something is due, and at least every [`POLL`], which
//! is how replicas that did not write pick up a new certificate.
//!
//! When the operator runs in a Deployment ([`crate::owner`]), the Secret is written with an owner
//! reference to it, and an existing Secret without one (written outside a Deployment, or by an
//! earlier version) gets it added, its content untouched. A Secret that has it is not written again.
//!
//! Directory mode (`--cert-dir`, e.g. cert-manager): the files are re-read every [`POLL`]; caBundles
//! are cert-manager's business.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use super::register;
use crate::certs::{self, CertSettings, Material, Plan};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::owner;
use crate::tls::CertResolver;

/// The longest time between two rounds.
pub const POLL: Duration = Duration::from_secs(10);

/// Where the CA bundle has to go.
#[derive(Debug, Clone)]
pub enum Registration {
    /// `--webhook-url`: write both configurations whole, by URL.
    Url {
        config: String,
        base_url: String,
        timeout_seconds: i32,
    },
    /// In a cluster: patch `caBundle` into the chart's configurations.
    Service { config: String },
}

/// The managed certificate: Secret, settings, and where it is used.
pub struct Managed {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub namespace: String,
    pub secret: String,
    /// The operator's Deployment, set as the Secret's owner; `None` outside a Deployment.
    pub owner: Option<OwnerReference>,
    pub settings: CertSettings,
    pub resolver: Arc<CertResolver>,
    pub registration: Registration,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("namespace", &self.namespace)
            .field("secret", &self.secret)
            .field("owner", &self.owner.as_ref().map(|o| &o.name))
            .field("registration", &self.registration)
            .finish_non_exhaustive()
    }
}

impl Managed {
    /// Rounds until `shutdown`; a failed round is logged and retried after a short pause.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let pause = match self.round().await {
                Ok(next) => next.min(POLL),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate round failed; retrying");
                    Duration::from_secs(2)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One round; returns how long until the next is due.
    pub async fn round(&self) -> Result<Duration> {
        let api = Api::<Secret>::namespaced(self.client.clone(), &self.namespace);
        let existing = api
            .get_opt(&self.secret)
            .await
            .map_err(Error::kube(format!(
                "reading Secret {}/{}",
                self.namespace, self.secret
            )))?;
        let current = existing.as_ref().and_then(|s| {
            let data = s.data.clone().unwrap_or_default();
            let annotations = s.metadata.annotations.clone().unwrap_or_default();
            Material::from_secret_data(&data, &annotations).ok()
        });
        let now = Timestamp::now();
        let material = match certs::plan(now, current.as_ref(), &self.settings)
            .map_err(|e| Error::Cert(e.to_string()))?
        {
            Plan::Keep => {
                let material =
                    current.ok_or_else(|| Error::Cert("plan kept a missing certificate".into()))?;
                if let (Some(secret), Some(owner)) = (&existing, &self.owner) {
                    match self.adopt(&api, secret, owner).await {
                        Ok(()) => {}
                        // Another replica wrote first: read again, next round.
                        Err(e) if e.is_conflict() => return Ok(Duration::ZERO),
                        Err(e) => return Err(e),
                    }
                }
                material
            }
            Plan::Write { material, reason } => {
                match self.write(&api, existing.as_ref(), &material).await {
                    Ok(()) => {
                        tracing::info!(reason, secret = %self.secret, "webhook certificate written");
                        self.metrics.certificate_written(reason);
                        material
                    }
                    // Another replica wrote first: use what it wrote, next round.
                    Err(e) if e.is_conflict() => return Ok(Duration::ZERO),
                    Err(e) => return Err(e),
                }
            }
        };
        self.resolver
            .update(&material.cert_pem, &material.key_pem)
            .map_err(|e| Error::Cert(e.to_string()))?;
        if let Some(expiry) = material.not_after() {
            self.metrics.certificate(expiry.as_second());
        }
        let bundle = material.ca_bundle_pem.as_bytes();
        match &self.registration {
            Registration::Url {
                config,
                base_url,
                timeout_seconds,
            } => {
                register::apply_configurations(
                    &self.client,
                    &self.metrics,
                    config,
                    base_url,
                    bundle,
                    *timeout_seconds,
                )
                .await?;
            }
            Registration::Service { config } => {
                register::patch_ca_bundles(&self.client, &self.metrics, config, bundle).await?;
            }
        }
        Ok(certs::next_check(now, &material, &self.settings))
    }

    async fn write(
        &self,
        api: &Api<Secret>,
        existing: Option<&Secret>,
        material: &Material,
    ) -> Result<()> {
        let (data, annotations) = material.to_secret_data();
        let mut labels = BTreeMap::new();
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            crate::reconcile::FIELD_MANAGER.to_owned(),
        );
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.secret.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: existing.and_then(|s| s.metadata.resource_version.clone()),
                annotations: Some(annotations),
                labels: Some(labels),
                owner_references: owner::with_owner(
                    existing.map_or(&ObjectMeta::default(), |s| &s.metadata),
                    self.owner.as_ref(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        };
        let what = format!("writing Secret {}/{}", self.namespace, self.secret);
        match existing {
            None => api.create(&PostParams::default(), &secret).await.map(drop),
            Some(_) => api
                .replace(&self.secret, &PostParams::default(), &secret)
                .await
                .map(drop),
        }
        .map_err(Error::kube(what))?;
        self.metrics.wrote("secret");
        Ok(())
    }

    /// Adds `owner` to the owner references of `existing` when it is missing (replace at the read
    /// resourceVersion; nothing else changes).
    async fn adopt(
        &self,
        api: &Api<Secret>,
        existing: &Secret,
        owner: &OwnerReference,
    ) -> Result<()> {
        if owner::is_owned_by(&existing.metadata, owner) {
            return Ok(());
        }
        let mut secret = existing.clone();
        secret.metadata.owner_references = owner::with_owner(&existing.metadata, Some(owner));
        secret.metadata.managed_fields = None;
        api.replace(&self.secret, &PostParams::default(), &secret)
            .await
            .map_err(Error::kube(format!(
                "setting the owner of Secret {}/{}",
                self.namespace, self.secret
            )))?;
        self.metrics.wrote("secret");
        tracing::info!(secret = %self.secret, deployment = %owner.name, "webhook certificate Secret now owned by the Deployment");
        Ok(())
    }
}

/// Serves the certificate in `dir` (tls.crt, tls.key), re-reading it every [`POLL`].
pub async fn watch_dir(
    dir: PathBuf,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut last: Option<(String, String)> = None;
    loop {
        match load_dir(&dir) {
            Ok(pair) if last.as_ref() != Some(&pair) => match resolver.update(&pair.0, &pair.1) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "webhook certificate loaded");
                    metrics.certificate_written("file changed");
                    last = Some(pair);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "unusable webhook certificate")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the webhook certificate"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Reads `tls.crt` and `tls.key` from `dir`.
pub fn load_dir(dir: &std::path::Path) -> std::io::Result<(String, String)> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.join(f).display())))
    };
    Ok((read("tls.crt")?, read("tls.key")?))
}
