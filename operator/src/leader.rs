//! Leader election on a `coordination.k8s.io/v1` Lease (via `kube-lease-manager`): only the holder
//! reconciles policies; every replica serves the webhooks.
//!
//! The controller starts when this replica acquires the lease and stops (gracefully, finishing the
//! reconcile in flight) when it loses it. On shutdown the lease is released, so another replica
//! takes over at once instead of waiting for it to expire.
//!
//! `kube-lease-manager` creates the Lease; when the operator runs in a Deployment ([`crate::owner`]),
//! a JSON merge patch then adds an owner reference to it (once: a Lease that has it is left alone).

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::owner;
use crate::reconcile::FIELD_MANAGER;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
    /// Seconds a lease lasts without renewal.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
    /// The operator's Deployment, set as the Lease's owner; `None` outside a Deployment.
    pub owner: Option<OwnerReference>,
}

/// Runs `lead(stop)` whenever this replica holds the lease; `stop` resolves when leadership is lost
/// or on shutdown. Returns after `shutdown`, having released the lease.
pub async fn run<F, Fut>(
    client: Client,
    election: Election,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    mut lead: F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration)
        .with_grace(election.grace)
        .build()
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "leader election on Lease {}/{}: {e}",
                election.namespace, election.lease
            ))
        })?;
    if let Some(owner) = &election.owner
        && let Err(e) = own(&client, &election, owner, &metrics).await
    {
        tracing::warn!(error = %e, "the leader Lease has no owner; it will outlive the Deployment");
    }
    let (mut leading, task) = manager.watch().await;
    loop {
        if !wait_for(&mut leading, true, &shutdown).await {
            break;
        }
        tracing::info!(identity = %election.identity, lease = %election.lease, "became the leader; reconciling");
        metrics.set_leader(true);
        let stop = shutdown.child_token();
        let lost = {
            let stop = stop.clone();
            let mut leading = leading.clone();
            let shutdown = shutdown.clone();
            async move {
                wait_for(&mut leading, false, &shutdown).await;
                stop.cancel();
            }
        };
        let work = lead(stop);
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => {}
            () = lost => work.await,
        }
        metrics.set_leader(false);
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(identity = %election.identity, "lost the leader lease; stopped reconciling");
    }
    drop(leading);
    match task.await {
        Ok(Ok(_)) => tracing::info!(identity = %election.identity, "released the leader lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader lease"),
        Err(e) => tracing::warn!(error = %e, "leader election task failed"),
    }
    Ok(())
}

/// Adds `owner` to the Lease's owner references unless it is there (or the Lease is gone).
async fn own(
    client: &Client,
    election: &Election,
    owner: &OwnerReference,
    metrics: &Metrics,
) -> Result<()> {
    let api = Api::<Lease>::namespaced(client.clone(), &election.namespace);
    let what = |action: &str| format!("{action} Lease {}/{}", election.namespace, election.lease);
    let Some(lease) = api
        .get_opt(&election.lease)
        .await
        .map_err(Error::kube(what("reading")))?
    else {
        return Ok(());
    };
    if owner::is_owned_by(&lease.metadata, owner) {
        return Ok(());
    }
    // A merge patch cannot create the Lease, and replaces only this list.
    let patch = serde_json::json!({
        "metadata": {"ownerReferences": owner::with_owner(&lease.metadata, Some(owner))}
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&election.lease, &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(what("setting the owner of")))?;
    metrics.wrote("lease");
    tracing::info!(lease = %election.lease, deployment = %owner.name, "leader Lease now owned by the Deployment");
    Ok(())
}

/// Waits until the lease state equals `want`; false when shutdown came first (or the election ended).
async fn wait_for(
    leading: &mut watch::Receiver<bool>,
    want: bool,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        if *leading.borrow_and_update() == want {
            return true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            changed = leading.changed() => if changed.is_err() { return false },
        }
    }
}
