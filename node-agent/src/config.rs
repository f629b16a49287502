//! The command line, and the [`Mode`] it selects.
//!
//! ```text
//! mcp-guard-agent --probe                                   capability probe as JSON, exit 0
//! mcp-guard-agent --policy FILE --cgroup DIR [--cgroup DIR ...] [--public-port PORT ...]
//!                 [--pin-dir DIR] [--events -|FILE]        standalone: enforce one policy on cgroups
//! mcp-guard-agent --unpin [--pin-dir DIR]                   remove every pin (stops enforcement)
//! mcp-guard-agent [--kubernetes] [--proxy-image IMAGE]      Kubernetes mode (the default)
//! ```

use std::path::PathBuf;

use clap::Parser;

use crate::bpf::fs::DEFAULT_PIN_DIR;

/// The node-agent of mcp-guard: confines guarded processes in the kernel with BPF.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "mcp-guard-agent", version)]
pub struct Cli {
    /// Print the kernel capability probe (cgroup v2, BPF LSM, sock_addr) as JSON and exit.
    #[arg(long, conflicts_with_all = ["policy", "unpin", "kubernetes"])]
    pub probe: bool,

    /// Remove every program, link and map pinned under --pin-dir (this stops enforcement) and exit.
    #[arg(long, conflicts_with_all = ["policy", "kubernetes"])]
    pub unpin: bool,

    /// Kubernetes mode: guard the pods of this node (the default when no other mode is chosen).
    #[arg(long, conflicts_with = "policy")]
    pub kubernetes: bool,

    /// Standalone mode: enforce the `runtime` section of this policy (McpGuardPolicy YAML or JSON,
    /// a bare spec, or a compiled policy.json) on the processes of the --cgroup directories.
    #[arg(long, value_name = "FILE", requires = "cgroups")]
    pub policy: Option<PathBuf>,

    /// A cgroup v2 directory to guard, with every cgroup beneath it (repeatable). Relative paths
    /// are taken under the cgroup v2 root.
    #[arg(long = "cgroup", value_name = "DIR", requires = "policy")]
    pub cgroups: Vec<PathBuf>,

    /// Standalone mode: a TCP port on which a wildcard bind in the --cgroup directories is left as
    /// it is under `confineListeners` (repeatable): a public listener, like the injected proxy's.
    #[arg(long = "public-port", value_name = "PORT", requires = "policy")]
    pub public_ports: Vec<u16>,

    /// Where programs, links and maps are pinned.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Standalone mode: where kernel events go, one JSON object per line (`-`: standard output).
    #[arg(long, value_name = "-|FILE", default_value = "-")]
    pub events: String,

    /// Standalone mode: also report every allowed non-loopback connect of a guarded process.
    #[arg(long)]
    pub allowed_egress_events: bool,

    /// Kubernetes mode: this node's name (the downward API's `spec.nodeName`).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Kubernetes mode: serve /metrics, /healthz and /readyz here.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9465")]
    pub metrics: std::net::SocketAddr,

    /// Kubernetes mode: the kubelet's `--cgroup-root` (e.g. `/kubelet`), if it sets one.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub kubelet_cgroup_root: PathBuf,

    /// Kubernetes mode: the proxy image the operator injects (its `--proxy-image`). Only the proxy
    /// running it (or installed from it, in `stdio` pods) opens public ports; without it no port is
    /// public and the proxy's wildcard listeners are confined to loopback like any other.
    #[arg(long, env = "MCP_GUARD_PROXY_IMAGE", value_name = "IMAGE")]
    pub proxy_image: Option<String>,
}

/// Where events are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventsTo {
    Stdout,
    File(PathBuf),
}

/// Standalone mode's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandaloneConfig {
    pub policy: PathBuf,
    pub cgroups: Vec<PathBuf>,
    pub public_ports: Vec<u16>,
    pub pin_dir: PathBuf,
    pub events: EventsTo,
    pub allowed_egress_events: bool,
}

/// Kubernetes mode's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub pin_dir: PathBuf,
    pub node_name: Option<String>,
    pub metrics: std::net::SocketAddr,
    pub kubelet_cgroup_root: PathBuf,
    /// The proxy image the operator injects; `None`: no public ports.
    pub proxy_image: Option<String>,
}

/// What the agent does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Print the capability probe and exit.
    Probe,
    /// Remove the pins under `pin_dir` and exit.
    Unpin { pin_dir: PathBuf },
    /// Enforce one policy file on given cgroups.
    Standalone(StandaloneConfig),
    /// Discover guarded pods on this node and keep the kernel in step with them.
    Kubernetes(KubernetesConfig),
}

impl Cli {
    /// The selected mode.
    pub fn mode(&self) -> Mode {
        if self.probe {
            return Mode::Probe;
        }
        if self.unpin {
            return Mode::Unpin {
                pin_dir: self.pin_dir.clone(),
            };
        }
        match &self.policy {
            Some(policy) => Mode::Standalone(StandaloneConfig {
                policy: policy.clone(),
                cgroups: self.cgroups.clone(),
                public_ports: self.public_ports.clone(),
                pin_dir: self.pin_dir.clone(),
                events: match self.events.as_str() {
                    "-" => EventsTo::Stdout,
                    f => EventsTo::File(PathBuf::from(f)),
                },
                allowed_egress_events: self.allowed_egress_events,
            }),
            None => Mode::Kubernetes(KubernetesConfig {
                pin_dir: self.pin_dir.clone(),
                node_name: self.node_name.clone(),
                metrics: self.metrics,
                kubelet_cgroup_root: self.kubelet_cgroup_root.clone(),
                proxy_image: self.proxy_image.clone().filter(|i| !i.trim().is_empty()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str]) -> Result<Mode, clap::Error> {
        let argv = std::iter::once("mcp-guard-agent").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.mode())
    }

    #[test]
    fn standalone() {
        let m = mode(&[
            "--policy",
            "p.yaml",
            "--cgroup",
            "a",
            "--cgroup",
            "/b",
            "--events",
            "ev.jsonl",
            "--public-port",
            "8080",
        ])
        .expect("parses");
        let Mode::Standalone(c) = m else {
            panic!("standalone expected, got {m:?}")
        };
        assert_eq!(c.cgroups, vec![PathBuf::from("a"), PathBuf::from("/b")]);
        assert_eq!(c.public_ports, vec![8080]);
        assert_eq!(c.events, EventsTo::File("ev.jsonl".into()));
        assert_eq!(c.pin_dir, PathBuf::from(DEFAULT_PIN_DIR));
    }

    #[test]
    fn other_modes() {
        assert_eq!(mode(&["--probe"]).expect("parses"), Mode::Probe);
        assert_eq!(
            mode(&["--unpin", "--pin-dir", "/sys/fs/bpf/x"]).expect("parses"),
            Mode::Unpin {
                pin_dir: "/sys/fs/bpf/x".into()
            }
        );
        assert!(matches!(mode(&[]), Ok(Mode::Kubernetes(_))));
        let Ok(Mode::Kubernetes(k)) = mode(&["--kubernetes", "--proxy-image", "reg/proxy:1"])
        else {
            panic!("kubernetes mode expected")
        };
        assert_eq!(k.proxy_image.as_deref(), Some("reg/proxy:1"));
        let Ok(Mode::Kubernetes(k)) = mode(&["--proxy-image="]) else {
            panic!("kubernetes mode expected")
        };
        assert_eq!(k.proxy_image, None, "an empty image is none");
        assert!(
            mode(&["--policy", "p.yaml"]).is_err(),
            "--cgroup is required"
        );
        assert!(mode(&["--cgroup", "x"]).is_err(), "--policy is required");
        assert!(mode(&["--probe", "--unpin"]).is_err());
    }
}
