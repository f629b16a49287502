//! A real kube-apiserver + etcd for a test, torn down when dropped.
//!
//! Each instance gets free ports and its own run directory, so tests can run in parallel. The binaries
//! come from `e2e/harness/apiserver-build.sh`, which builds them once into the cache (about 6 minutes
//! cold) and returns at once afterwards; `make test` runs it before the tests so that no test pays for
//! the build.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A running API server. Dropping it stops etcd and the API server and deletes their data.
#[derive(Debug)]
pub struct ApiServer {
    run_dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl ApiServer {
    /// Builds (cached), starts, and waits until `/readyz` answers `ok`.
    pub fn start() -> Result<Self> {
        let harness = crate::workspace_root().join("e2e/harness");
        let bin_dir = run_script(&harness.join("apiserver-build.sh"), &[], &[])
            .context("building kube-apiserver from Debian sources")?;
        // Short path: etcd and the API server put sockets and certs under it.
        let run_dir = tempfile::Builder::new()
            .prefix("mg-apiserver-")
            .tempdir_in("/tmp")
            .context("creating the run directory")?;
        let (apiserver_port, etcd_port) = (free_port()?, free_port_pair()?);
        let started = Instant::now();
        let kubeconfig = run_script(
            &harness.join("apiserver-start.sh"),
            &[Path::new(&bin_dir), run_dir.path()],
            &[
                ("APISERVER_PORT", apiserver_port.to_string()),
                ("ETCD_PORT", etcd_port.to_string()),
            ],
        );
        let server = Self {
            kubeconfig: PathBuf::from(kubeconfig.as_deref().unwrap_or_default()),
            run_dir,
        };
        if let Err(e) = kubeconfig {
            let log = std::fs::read_to_string(server.run_dir.path().join("kube-apiserver.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "{e:#}\nkube-apiserver.log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        eprintln!(
            "kube-apiserver ready on 127.0.0.1:{apiserver_port} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    /// The admin kubeconfig (static token in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl` (from PATH) pointed at this server with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Installs the generated McpGuardPolicy CRD and waits until it is Established.
    pub async fn install_crd(&self) -> Result<()> {
        install_crd(&self.client().await?).await
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Result<Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let stop = crate::workspace_root().join("e2e/harness/apiserver-stop.sh");
        let _ = Command::new(stop).arg(self.run_dir.path()).status();
    }
}

/// Runs a harness script; returns the last line of its stdout.
fn run_script(script: &Path, args: &[&Path], env: &[(&str, String)]) -> Result<String> {
    let out = Command::new(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().last().unwrap_or_default().trim().to_owned())
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A port `p` with `p + 1` free too (etcd's client and peer ports).
fn free_port_pair() -> Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let p = first.local_addr()?.port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no two adjacent free ports on 127.0.0.1")
}

/// Creates the generated McpGuardPolicy CRD (`crds/mcpguardpolicy.yaml`) and waits until it is
/// Established (the schema is structural and the API serves it).
pub async fn install_crd(client: &Client) -> Result<()> {
    let text = std::fs::read_to_string(crate::workspace_root().join("crds/mcpguardpolicy.yaml"))?;
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd)
        .await
        .context("the API server refused the generated CRD")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = api.get("mcpguardpolicies.mcpguard.io").await?;
        let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            return Ok(());
        }
        if let Some(c) = conditions.iter().find(|c| c.type_ == "NonStructuralSchema") {
            bail!("the CRD schema is not structural: {:?}", c.message);
        }
        if Instant::now() > deadline {
            bail!("CRD not Established after 30s: {conditions:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
