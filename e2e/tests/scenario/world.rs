//! What the steps share: the cluster, the chart values for this environment, and ways to reach pods.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mcp_guard_e2e::cluster::{Kubectl, name};
use serde_json::{Value, json};

pub const RELEASE: &str = "mcp-guard";
/// The release namespace: the chart's objects, the operator, the node-agent.
pub const SYSTEM_NS: &str = "mcp-guard-system";
/// The MCP servers and their policy.
pub const NS: &str = "mcp-guard-e2e";
/// What the chart names things after (`mcp-guard.fullname`: the release name contains "mcp-guard").
pub const FULLNAME: &str = "mcp-guard";
pub const POLICY: &str = "egress-locked";
pub const PROXY_CONTAINER: &str = "mcp-guard-proxy";
/// The port the proxy serves MCP on in the HTTP pod (the server's declared port), and the server's
/// moved port (port + 10000).
pub const HTTP_PORT: u16 = 3001;
pub const HTTP_SERVER_PORT: u16 = 13001;
/// The port the stdio pod's proxy serves MCP on.
pub const STDIO_PORT: u16 = 8080;
/// The proxy's metrics port in an injected pod, the node-agent's metrics port.
pub const PROXY_METRICS_PORT: u16 = 9464;
pub const AGENT_METRICS_PORT: u16 = 9465;

pub struct World {
    pub kubectl: Kubectl,
    /// Chart values for this environment (MCP_GUARD_E2E_VALUES) before detected ones are added.
    pub values: Value,
    /// The rendered chart, kept for uninstalling exactly what was installed.
    pub manifests: Option<String>,
    /// The policy as last applied by the scenario.
    pub policy: Option<Value>,
    /// Whether this process reaches pod IPs (a local node) or goes through port-forwards (kind).
    direct: Option<bool>,
    forwards: Vec<Child>,
}

impl World {
    pub fn from_env() -> Result<Self> {
        let values = match std::env::var_os("MCP_GUARD_E2E_VALUES") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("MCP_GUARD_E2E_VALUES={}", path.to_string_lossy()))?;
                serde_json::from_str(&text).with_context(|| {
                    format!("MCP_GUARD_E2E_VALUES={}: not JSON", path.to_string_lossy())
                })?
            }
            None => json!({}),
        };
        let kubectl = Kubectl::default();
        kubectl
            .run(&["version", "-o", "json"])
            .context("no cluster: set KUBECONFIG (make e2e-node starts one on this host)")?;
        Ok(Self {
            kubectl,
            values,
            manifests: None,
            policy: None,
            direct: None,
            forwards: Vec::new(),
        })
    }

    pub fn describe(&self) -> String {
        let server = self
            .kubectl
            .run(&[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ])
            .unwrap_or_default();
        format!("{server} (KUBECONFIG)")
    }

    /// The image of the MCP server the scenario guards: `<registry>/mcp-server-everything:<tag>`
    /// from the chart values (where the e2e images are loaded).
    pub fn server_image(&self) -> Result<String> {
        let registry = self.values["image"]["registry"]
            .as_str()
            .context("MCP_GUARD_E2E_VALUES must set image.registry (where the e2e images are)")?;
        let tag = self.values["image"]["tag"]
            .as_str()
            .context("MCP_GUARD_E2E_VALUES must set image.tag")?;
        Ok(format!("{registry}/mcp-server-everything:{tag}"))
    }

    pub fn pull_policy(&self) -> &str {
        self.values["image"]["pullPolicy"]
            .as_str()
            .unwrap_or("IfNotPresent")
    }

    /// The single pod of a Deployment-like label selector in `ns`.
    pub fn pod(&self, ns: &str, app: &str) -> Result<Value> {
        let pods = self.kubectl.pods(ns, &format!("app={app}"))?;
        let live: Vec<Value> = pods
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        match live.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!("no pod app={app} in {ns}"),
            many => bail!(
                "{} pods app={app} in {ns}: {:?}",
                many.len(),
                many.iter().map(name).collect::<Vec<_>>()
            ),
        }
    }

    /// `host:port` where this process reaches `port` of a pod: its IP when routable from here, else
    /// a `kubectl port-forward` kept until the end of the run.
    pub fn reach(&mut self, pod: &Value, port: u16) -> Result<String> {
        let ip = pod["status"]["podIP"]
            .as_str()
            .with_context(|| format!("pod {} has no IP", name(pod)))?;
        let direct = match self.direct {
            Some(d) => d,
            None => {
                let addr: SocketAddr = format!("{ip}:{port}").parse()?;
                let d = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
                self.direct = Some(d);
                d
            }
        };
        if direct {
            return Ok(format!("{ip}:{port}"));
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let mut child = Command::new("kubectl")
            .args(["port-forward", "-n", ns, &format!("pod/{}", name(pod))])
            .arg(format!(":{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("kubectl port-forward")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("port-forward stdout")?).read_line(&mut line)?;
        // "Forwarding from 127.0.0.1:41235 -> 3001"
        let local = line
            .split_whitespace()
            .nth(2)
            .filter(|a| a.starts_with("127.0.0.1:"))
            .map(str::to_owned);
        self.forwards.push(child);
        local.with_context(|| format!("kubectl port-forward said {line:?}"))
    }

    /// From inside `container` of `pod`, a TCP connect to `host:port` with the container's own Node.js:
    /// `connected`, or the error code (`EPERM` when the node-agent refuses it, `ECONNREFUSED` when
    /// nothing listens), or `timeout`.
    pub fn connect_from(
        &self,
        pod: &Value,
        container: &str,
        host: &str,
        port: u16,
    ) -> Result<String> {
        let script = format!(
            "const s=require('net').connect({{host:'{host}',port:{port}}});s.setTimeout(3000);\
             s.on('connect',()=>{{console.log('connected');process.exit(0)}});\
             s.on('timeout',()=>{{console.log('timeout');process.exit(0)}});\
             s.on('error',e=>{{console.log(e.code);process.exit(0)}});"
        );
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let (ok, out) = self.kubectl.exec(
            ns,
            name(pod),
            container,
            &["/usr/local/bin/node", "-e", &script],
        )?;
        if !ok {
            bail!("kubectl exec in {}/{container} failed: {out}", name(pod));
        }
        Ok(out.lines().last().unwrap_or_default().trim().to_owned())
    }

    /// What helps after a failure: pods, recent events, the logs of mcp-guard's components.
    pub fn dump_diagnostics(&self) {
        let k = &self.kubectl;
        for args in [
            vec!["get", "pods", "-A", "-o", "wide"],
            vec!["get", "events", "-A", "--sort-by=.lastTimestamp"],
        ] {
            if let Ok(out) = k.run(&args) {
                let lines: Vec<&str> = out.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("--- kubectl {}\n{}", args.join(" "), tail.join("\n"));
            }
        }
        for (ns, selector) in [
            (SYSTEM_NS, "app.kubernetes.io/component=operator"),
            (SYSTEM_NS, "app.kubernetes.io/component=node-agent"),
            (NS, "mcpguard.io/guarded=true"),
        ] {
            let out = k
                .run(&[
                    "logs",
                    "-n",
                    ns,
                    "-l",
                    selector,
                    "--all-containers",
                    "--prefix",
                    "--tail=30",
                ])
                .unwrap_or_else(|e| format!("{e:#}"));
            eprintln!("--- logs {ns} {selector}\n{out}");
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.forwards {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
