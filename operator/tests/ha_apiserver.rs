//! Running more than one replica, and living through certificate rotation, on a real kube-apiserver:
//! two replicas elect one leader on the Lease and the other takes over when the leader stops (cleanly
//! or by crashing); every replica serves the webhooks; short-lived certificates (and CAs) rotate while
//! pods are admitted continuously, and no admission fails.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{OPERATOR_NS, Operator, cluster, create_namespace, eventually, kubectl_ok};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PostParams};
use mcp_guard_e2e::apiserver::free_port;
use mcp_guard_e2e::workspace_root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "mcp";

async fn holder(client: &kube::Client) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), OPERATOR_NS)
        .get_opt("mcp-guard-operator")
        .await?;
    Ok(lease
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Waits until exactly one of `ops` leads, per its metric and per the Lease; returns its index.
async fn one_leader(client: &kube::Client, ops: &[&Operator]) -> Result<usize> {
    eventually(Duration::from_secs(20), "exactly one leader", || async {
        let leading: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].metric("mcp_guard_operator_leader") == 1.0)
            .collect();
        let Some(h) = holder(client).await? else {
            return Ok(None);
        };
        Ok(match leading.as_slice() {
            [i] if ops[*i].identity == h => Some(*i),
            _ => None,
        })
    })
    .await
}

/// The CA bundle the operator published in its Secret.
async fn ca_bundle(client: &kube::Client) -> Result<Vec<u8>> {
    let s = Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .get("mcp-guard-webhook-tls")
        .await?;
    Ok(s.data.unwrap()["ca.crt"].0.clone())
}

/// POSTs an AdmissionReview for a pod straight to a replica's webhook port over TLS (trusting
/// `ca`), as the API server would; returns the response body.
async fn admit_directly(addr: SocketAddr, ca: &[u8]) -> Result<serde_json::Value> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "direct", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": NS,
            "operation": "CREATE", "userInfo": {}, "dryRun": true,
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    })
    .to_string();
    let req = format!(
        "POST /mutate/pods HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out)
        .await
        .or_else(|e| if out.is_empty() { Err(e) } else { Ok(0) })?;
    let text = String::from_utf8(out)?;
    let (_, json) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    Ok(serde_json::from_str(json)?)
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    // Both replicas serve the same URL (SO_REUSEPORT: the kernel spreads connections between them,
    // as a Service spreads them between pods).
    let url: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut a = Operator::start_at(&api, "op-a", url, &[])?;
    let mut b = Operator::start_at(&api, "op-b", url, &[])?;

    let first = one_leader(&client, &[&a, &b]).await?;
    // Both replicas answer admissions, leader or not, with the same certificate.
    let ca = ca_bundle(&client).await?;
    for _ in 0..40 {
        let review = admit_directly(url, &ca).await?;
        assert_eq!(review["response"]["uid"], "direct", "{review}");
        assert_eq!(review["response"]["allowed"], true, "{review}");
    }
    let served = |op: &Operator| {
        op.metric("mcp_guard_operator_admissions_total{webhook=\"mutate-pods\",result=\"allowed\"}")
    };
    assert!(
        served(&a) > 0.0 && served(&b) > 0.0,
        "each replica served some of 40: {} and {}",
        served(&a),
        served(&b)
    );

    // The leader stops cleanly: it releases the lease and the other takes over at once.
    let stopped_at = Instant::now();
    if first == 0 {
        a.stop()?
    } else {
        b.stop()?
    }
    let survivor = if first == 0 { &b } else { &a };
    eventually(
        Duration::from_secs(10),
        "the other replica leads",
        || async {
            Ok((survivor.metric("mcp_guard_operator_leader") == 1.0
                && holder(&client).await?.as_deref() == Some(survivor.identity.as_str()))
            .then_some(()))
        },
    )
    .await?;
    eprintln!("takeover after a clean stop: {:?}", stopped_at.elapsed());
    // ...and reconciles.
    let file = workspace_root().join("policies/library/memory.yaml");
    kubectl_ok(
        &api,
        &["apply", "-n", NS, "-f", file.to_str().unwrap()],
        None,
    )?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    eventually(
        Duration::from_secs(20),
        "the new leader reconciles",
        || async { Ok(cms.get_opt("mcp-guard-policy-memory").await?.map(drop)) },
    )
    .await?;

    // A third replica joins; the leader crashes (no release): the lease expires and it takes over.
    let c = Operator::start(&api, "op-c", &[])?;
    assert_eq!(
        c.metric("mcp_guard_operator_leader"),
        0.0,
        "a newcomer does not steal the lease"
    );
    let crashed_at = Instant::now();
    if first == 0 {
        b.kill()
    } else {
        a.kill()
    }
    eventually(
        Duration::from_secs(20),
        "op-c leads after the crash",
        || async {
            Ok((c.metric("mcp_guard_operator_leader") == 1.0
                && holder(&client).await?.as_deref() == Some("op-c"))
            .then_some(()))
        },
    )
    .await?;
    let took = crashed_at.elapsed();
    eprintln!("takeover after a crash: {took:?} (lease 4 s)");
    assert!(
        took >= Duration::from_secs(2),
        "the lease must expire first, took {took:?}"
    );
    Ok(())
}

fn annotated_pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("p{i}"), "annotations": {
            "mcpguard.io/inject": "true", "mcpguard.io/policy": "memory"}},
        "spec": {"containers": [{"name": "server", "image": "example.test/s:1",
                                  "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn certificate_rotation_keeps_admissions_working() -> Result<()> {
    let (api, client) = cluster().await?;
    create_namespace(&client, NS, &[]).await?;
    // Serving certificates live 15 s (renewed at 10 s), the CA 30 s (renewed at 20 s).
    let op = Operator::start(
        &api,
        "op-1",
        &[
            "--cert-validity",
            "15s",
            "--ca-validity",
            "30s",
            "--ca-propagation",
            "3s",
        ],
    )?;
    let file = workspace_root().join("policies/library/memory.yaml");
    kubectl_ok(
        &api,
        &["apply", "-n", NS, "-f", file.to_str().unwrap()],
        None,
    )?;

    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NS);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let (mut certs, mut cas) = (BTreeSet::new(), BTreeSet::new());
    let (mut admitted, mut failures) = (0usize, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        match pods.create(&dry_run, &annotated_pod(i)).await {
            Ok(p)
                if p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().any(|c| c.name == "mcp-guard-proxy")) =>
            {
                admitted += 1;
            }
            Ok(p) => failures.push(format!("#{i} admitted without the sidecar: {p:?}")),
            Err(e) => failures.push(format!("#{i}: {e}")),
        }
        let data = secrets.get("mcp-guard-webhook-tls").await?.data.unwrap();
        certs.insert(data["tls.crt"].0.clone());
        cas.insert(data["ca.crt"].0.clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eprintln!(
        "{admitted} admissions, {} serving certificates, {} CA bundles seen",
        certs.len(),
        cas.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {i} admissions failed during rotation:\n{}\n{}",
            failures.len(),
            failures.join("\n"),
            op.log()
        );
    }
    assert!(
        certs.len() >= 4,
        "serving certificate rotated at least 3 times: {}",
        certs.len()
    );
    assert!(cas.len() >= 2, "the CA rotated: {} bundles", cas.len());
    assert!(admitted >= 100, "admissions ran throughout: {admitted}");
    Ok(())
}
