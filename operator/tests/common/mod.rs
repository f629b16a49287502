//! The operator against a real kube-apiserver (v1.20.2 from Debian's sources, see `mcp-guard-e2e`):
//! the real `mcp-guard-operator` binary runs as a child process with the server's kubeconfig,
//! serving its webhooks on a loopback HTTPS URL that the API server calls.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use mcp_guard_e2e::apiserver::{ApiServer, free_port};

/// The operator's own namespace in these tests.
pub const OPERATOR_NS: &str = "mcp-guard";

/// An API server with the CRD installed and the operator's namespace created.
pub async fn cluster() -> Result<(ApiServer, Client)> {
    let api = ApiServer::start()?;
    api.install_crd().await?;
    let client = api.client().await?;
    create_namespace(&client, OPERATOR_NS, &[]).await?;
    Ok((api, client))
}

pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Result<()> {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// A running `mcp-guard-operator`.
#[derive(Debug)]
pub struct Operator {
    child: Option<Child>,
    pub identity: String,
    pub metrics: SocketAddr,
    pub webhook: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts a replica named `identity` serving webhooks on a fresh loopback port, and waits until it
    /// reports ready (caches synced, certificate loaded, webhooks registered).
    pub fn start(api: &ApiServer, identity: &str, extra: &[&str]) -> Result<Self> {
        let webhook: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        Self::start_at(api, identity, webhook, extra)
    }

    /// Like [`Operator::start`], serving webhooks at `webhook` (the URL a previous replica registered).
    pub fn start_at(
        api: &ApiServer,
        identity: &str,
        webhook: SocketAddr,
        extra: &[&str],
    ) -> Result<Self> {
        let url = format!("https://{webhook}");
        Self::spawn(
            api,
            identity,
            webhook,
            &[&["--webhook-url", &url], extra].concat(),
        )
    }

    /// As in a cluster: no `--webhook-url`; the webhook configurations (created beforehand, as the
    /// chart does) are only given the operator's CA bundle. Serves on a fresh loopback port.
    pub fn start_in_cluster_mode(api: &ApiServer, identity: &str, extra: &[&str]) -> Result<Self> {
        Self::start_in_cluster_mode_as(api, identity, None, extra)
    }

    /// Like [`Operator::start_in_cluster_mode`], acting as `user` when given (the admin credentials
    /// impersonate it), e.g. `system:serviceaccount:mcp-guard:mcp-guard-operator` with the chart's RBAC.
    pub fn start_in_cluster_mode_as(
        api: &ApiServer,
        identity: &str,
        user: Option<&str>,
        extra: &[&str],
    ) -> Result<Self> {
        let webhook: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let listen = webhook.to_string();
        let dir = tempfile::tempdir()?;
        let kubeconfig = match user {
            Some(user) => impersonating(api, user, dir.path())?,
            None => api.kubeconfig().to_path_buf(),
        };
        Self::spawn_in(
            dir,
            &kubeconfig,
            identity,
            webhook,
            &[&["--webhook-listen", &listen], extra].concat(),
        )
    }

    fn spawn(api: &ApiServer, identity: &str, webhook: SocketAddr, extra: &[&str]) -> Result<Self> {
        Self::spawn_in(
            tempfile::tempdir()?,
            api.kubeconfig(),
            identity,
            webhook,
            extra,
        )
    }

    fn spawn_in(
        dir: tempfile::TempDir,
        kubeconfig: &Path,
        identity: &str,
        webhook: SocketAddr,
        extra: &[&str],
    ) -> Result<Self> {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = dir.path().join("operator.log");
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-guard-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                "info,mcp_guard_operator=debug,kube_lease_manager=warn",
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .args(["--namespace", OPERATOR_NS, "--identity", identity])
            .args(["--metrics", &metrics.to_string()])
            .args(["--lease-duration", "4", "--lease-grace", "1"])
            .args(["--proxy-image", "example.test/mcp-guard-proxy:test"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting mcp-guard-operator")?;
        let mut op = Self {
            child: Some(child),
            identity: identity.to_owned(),
            metrics,
            webhook,
            log,
            _dir: dir,
        };
        op.wait_ready()?;
        Ok(op)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                bail!(
                    "the operator exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if http_get(self.metrics, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the operator was not ready after 60s:\n{}", self.log())
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its metrics, as text.
    pub fn metrics_text(&self) -> Result<String> {
        let (code, body) = http_get(self.metrics, "/metrics")?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(body)
    }

    /// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics_text()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the operator exited with {status}:\n{}", self.log());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "the operator did not stop within 20s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it without warning (a crashed replica).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A copy of the API server's kubeconfig (in `dir`) whose users act as `user` (kubeconfig `as`).
fn impersonating(api: &ApiServer, user: &str, dir: &Path) -> Result<PathBuf> {
    let mut config: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(api.kubeconfig())?)?;
    for u in config["users"].as_array_mut().context("kubeconfig users")? {
        u["user"]["as"] = user.into();
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_vec(&config)?)?; // JSON is YAML
    Ok(path)
}

/// A plain HTTP/1.0 GET of `path` on `addr`; the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    mcp_guard_e2e::http_get(&addr.to_string(), path, Duration::from_secs(5))
}

/// Runs kubectl with `stdin` as input; returns its output whatever the exit status.
pub fn kubectl(api: &ApiServer, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut cmd = api.kubectl();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running kubectl (is it on PATH?)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// kubectl that must succeed; returns stdout.
pub fn kubectl_ok(api: &ApiServer, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = kubectl(api, args, stdin)?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Polls `check` every 100 ms until it returns Some, or fails after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
