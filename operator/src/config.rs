//! Command-line settings, parsed once at startup. A bad setting stops the operator with a message
//! naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mcp_guard_policy::duration::parse_duration;

/// The mcp-guard operator: compiles McpGuardPolicies into ConfigMaps, validates policies and injects
/// the proxy into opted-in pods (admission webhooks), and manages the webhooks' certificates.
///
/// Reads the cluster from KUBECONFIG (or the in-cluster service account).
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-guard-operator", version)]
pub struct Args {
    /// The operator's own namespace: the webhook certificate Secret and the leader Lease live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "mcp-guard")]
    pub namespace: String,
    /// This replica's name in the leader Lease and in Events (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Where the HTTPS webhook server listens.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Register both webhook configurations with this URL (e.g. https://127.0.0.1:9443) instead of
    /// the Service, with the operator's CA as caBundle: for running outside the cluster. The server
    /// listens on the URL's port unless --webhook-listen is given.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The Service in front of the webhook server (its DNS names go into the serving certificate).
    #[arg(long, value_name = "NAME", default_value = "mcp-guard-operator")]
    pub webhook_service: String,
    /// The name of both webhook configurations (Mutating and Validating) whose caBundle is kept current.
    #[arg(long, value_name = "NAME", default_value = "mcp-guard")]
    pub webhook_config: String,
    /// The admission webhooks' timeout when the operator registers them (--webhook-url).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout: i32,

    /// Secret holding the webhook CA and serving certificate (created and rotated by the operator).
    #[arg(long, value_name = "NAME", default_value = "mcp-guard-webhook-tls")]
    pub cert_secret: String,
    /// Use the certificate in this directory (tls.crt, tls.key; e.g. mounted from cert-manager) instead
    /// of managing one: it is re-read when it changes, and caBundles are left to cert-manager.
    #[arg(long, value_name = "DIR", conflicts_with = "webhook_url")]
    pub cert_dir: Option<PathBuf>,
    /// Lifetime of the serving certificate; it is renewed when a third of it remains.
    #[arg(long, value_name = "DURATION", default_value = "2160h", value_parser = parse_duration)]
    pub cert_validity: Duration,
    /// Lifetime of the webhook CA; it is renewed when a third of it remains.
    #[arg(long, value_name = "DURATION", default_value = "87600h", value_parser = parse_duration)]
    pub ca_validity: Duration,
    /// How long a new CA is published in the caBundles before certificates signed by it are served.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub ca_propagation: Duration,

    /// Serve /metrics, /healthz and /readyz (plain HTTP) here.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics: SocketAddr,

    /// The Lease the replicas elect their reconciling leader with.
    #[arg(long, value_name = "NAME", default_value = "mcp-guard-operator")]
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_duration: u64,
    /// Seconds before expiry at which the leader renews.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_grace: u64,

    /// The proxy image the webhook injects.
    #[arg(long, value_name = "IMAGE", default_value = concat!("ghcr.io/mcp-guard/mcp-guard-proxy:", env!("CARGO_PKG_VERSION")))]
    pub proxy_image: String,
    /// imagePullPolicy of the injected containers (Always, IfNotPresent, Never).
    #[arg(long, value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub proxy_image_pull_policy: Option<String>,
}

impl Args {
    /// Checks what clap cannot. The message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_grace >= self.lease_duration {
            return Err(format!(
                "--lease-grace ({}) must be shorter than --lease-duration ({})",
                self.lease_grace, self.lease_duration
            ));
        }
        if let Some(url) = &self.webhook_url {
            webhook_url_addr(url).map_err(|e| format!("--webhook-url {url}: {e}"))?;
        }
        for (flag, d) in [
            ("--cert-validity", self.cert_validity),
            ("--ca-validity", self.ca_validity),
        ] {
            if d < Duration::from_secs(10) {
                return Err(format!("{flag} must be at least 10s"));
            }
        }
        if self.ca_validity < self.cert_validity {
            return Err("--ca-validity must not be shorter than --cert-validity".into());
        }
        Ok(())
    }

    /// The address the webhook server binds: --webhook-listen, or the --webhook-url's own port when
    /// only the URL was given.
    pub fn webhook_bind(&self, explicit_listen: bool) -> SocketAddr {
        match (&self.webhook_url, explicit_listen) {
            (Some(url), false) => webhook_url_addr(url).unwrap_or(self.webhook_listen),
            _ => self.webhook_listen,
        }
    }

    /// This replica's identity: --identity, else host name and pid.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "operator".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// The socket address in an `https://IP:PORT[/...]` URL. Host names are refused: the server must know
/// what to bind, and the certificate carries the IP.
pub fn webhook_url_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("must start with https:// (the API server only calls webhooks over TLS)")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if !rest[authority.len()..].trim_matches('/').is_empty() {
        return Err("must not have a path (the operator appends /mutate/pods and /validate/mcpguardpolicies)".into());
    }
    authority
        .parse::<SocketAddr>()
        .map_err(|_| format!("`{authority}` is not IP:PORT (e.g. 127.0.0.1:9443)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, String> {
        let argv = std::iter::once("mcp-guard-operator").chain(extra.iter().copied());
        let a = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        a.validate()?;
        Ok(a)
    }

    #[test]
    fn defaults_are_valid() {
        let a = args(&[]).unwrap();
        assert_eq!(a.webhook_listen.port(), 9443);
        assert_eq!(a.cert_validity, Duration::from_secs(90 * 24 * 3600));
        assert!(a.proxy_image.ends_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn webhook_url_sets_the_bind_address() {
        let a = args(&["--webhook-url", "https://127.0.0.1:18443"]).unwrap();
        assert_eq!(a.webhook_bind(false), "127.0.0.1:18443".parse().unwrap());
        assert_eq!(a.webhook_bind(true), a.webhook_listen);
    }

    #[test]
    fn bad_settings_name_the_flag() {
        for (argv, needle) in [
            (&["--webhook-url", "http://127.0.0.1:1"][..], "https://"),
            (
                &["--webhook-url", "https://localhost:9443"][..],
                "not IP:PORT",
            ),
            (&["--webhook-url", "https://127.0.0.1:9443/x"][..], "path"),
            (
                &["--lease-duration", "5", "--lease-grace", "5"][..],
                "--lease-grace",
            ),
            (&["--cert-validity", "90d"][..], "--cert-validity"),
            (&["--cert-validity", "2s"][..], "--cert-validity"),
            (&["--ca-validity", "1h"][..], "--ca-validity"),
            (&["--webhook-timeout", "31"][..], "--webhook-timeout"),
            (
                &["--proxy-image-pull-policy", "Sometimes"][..],
                "--proxy-image-pull-policy",
            ),
        ] {
            let err = args(argv).unwrap_err();
            assert!(err.contains(needle), "{argv:?}: {err}");
        }
    }
}
