//! Command-line configuration, parsed and checked once at startup. A bad setting stops the proxy with a
//! message that names it (exit code 2).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mcp_guard_policy::Mode;

/// Default largest JSON-RPC message accepted in either direction.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Default most concurrent sessions of a stdio server served over HTTP (one process each).
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default time after which a session of a stdio server served over HTTP, unused, ends.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// How to run the proxy, after the options in `--help`.
const MODES: &str = "\
Modes:
  stdio:            mcp-guard-proxy --policy p.yaml -- npx @modelcontextprotocol/server-filesystem /srv
  stdio over HTTP:  mcp-guard-proxy --policy p.yaml --listen 0.0.0.0:8080 -- node server.js
  HTTP:             mcp-guard-proxy --policy p.yaml --listen 0.0.0.0:8080 --upstream http://127.0.0.1:3000/mcp
  install:          mcp-guard-proxy --install-to /mcp-guard/bin";

/// The MCP guard proxy's command line.
#[derive(Debug, Parser)]
#[command(name = "mcp-guard-proxy", version, about, after_help = MODES)]
pub struct Args {
    /// The policy: an McpGuardPolicy manifest, a bare spec (YAML or JSON), or a compiled policy.json.
    /// Reloaded when it changes. Required except with --install-to.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Append JSONL audit records here (hash-chained; a summary record at shutdown). `-` or
    /// /dev/stdout: standard output (in Kubernetes, the container log), except with the stdio
    /// transport, whose stdout carries the protocol.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Override the policy's mode: `audit` forwards everything and records what would have happened.
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), path /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Kill switch file: while it exists (from when it appears until it disappears), every tools/call
    /// is denied. SIGUSR1/SIGUSR2 and `--admin` switch too.
    #[arg(long, value_name = "FILE")]
    pub kill_switch_file: Option<PathBuf>,
    /// Serve the admin endpoint here (GET /kill-switch, POST /kill-switch/on|off). Bind it to loopback:
    /// whoever reaches it can switch the kill switch off.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Largest JSON-RPC message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE)]
    pub max_message_bytes: usize,
    /// How often the policy file is checked for changes, e.g. 1s or 500ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub reload_interval: Duration,
    /// Serve MCP over HTTP on this address: with `--upstream`, in front of an HTTP MCP server
    /// (Streamable HTTP and legacy HTTP+SSE); with a command after `--`, the stdio server as
    /// Streamable HTTP, one process of it per session.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The MCP server's HTTP endpoint, e.g. http://127.0.0.1:8080/mcp (with `--listen`).
    #[arg(long, value_name = "URL", requires = "listen")]
    pub upstream: Option<String>,
    /// Most concurrent sessions (server processes) with `--listen ADDR -- COMMAND`; an
    /// `initialize` beyond them gets 503. [default: 64]
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// With `--listen ADDR -- COMMAND`: a session without requests, pending answers or an open GET
    /// stream for this long ends and its process is stopped, e.g. 30m or 90s. [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = parse_idle)]
    pub session_idle: Option<Duration>,
    /// Copy this binary to DIR/mcp-guard-proxy (mode 0755, atomically) and exit: for an init
    /// container that puts the proxy on a shared volume. Takes no other option.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "policy", "log", "mode", "metrics", "kill_switch_file", "admin", "max_message_bytes",
        "reload_interval", "listen", "upstream", "max_sessions", "session_idle", "command",
    ])]
    pub install_to: Option<PathBuf>,
    /// The MCP server command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// How the proxy reaches the MCP server, as the flags choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The command after `--`, on this process's stdin/stdout.
    Stdio,
    /// `--listen` in front of `--upstream`.
    Http,
    /// `--listen`, serving the command after `--` (one process per session).
    StdioOverHttp,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "audit" => Ok(Mode::Audit),
        other => Err(format!("`{other}` is not a mode; use enforce or audit")),
    }
}

fn parse_idle(s: &str) -> Result<Duration, String> {
    let d = mcp_guard_policy::duration::parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = mcp_guard_policy::duration::parse_duration(s)?;
    if d < Duration::from_millis(50) {
        return Err("must be at least 50ms".into());
    }
    Ok(d)
}

impl Args {
    /// Checks what clap cannot: settings that only make sense together. `--install-to` needs
    /// nothing else (clap refuses it with anything else).
    pub fn validate(&self) -> Result<(), String> {
        if self.install_to.is_some() {
            return Ok(());
        }
        if self.policy.is_none() {
            return Err("--policy FILE is required".into());
        }
        let transport = self.transport()?;
        if let Some(log) = &self.log
            && transport == Transport::Stdio
            && crate::audit::is_stdout(log)
        {
            return Err(format!(
                "--log {}: with a command after `--` and no --listen, stdout carries the MCP protocol \
                 to the client and audit records would corrupt it; log to a file, or serve the \
                 command over HTTP with --listen ADDR",
                log.display()
            ));
        }
        if let Some(url) = &self.upstream
            && !url.starts_with("http://")
        {
            return Err(format!(
                "--upstream {url}: only http:// upstreams are supported (the server runs beside the proxy, on loopback)"
            ));
        }
        if transport != Transport::StdioOverHttp {
            for (set, flag) in [
                (self.max_sessions.is_some(), "--max-sessions"),
                (self.session_idle.is_some(), "--session-idle"),
            ] {
                if set {
                    return Err(format!(
                        "{flag} applies only to a stdio server served over HTTP (`--listen ADDR -- COMMAND`)"
                    ));
                }
            }
        }
        if self.max_sessions == Some(0) {
            return Err("--max-sessions 0 would refuse every session; at least 1".into());
        }
        if self.max_message_bytes < 1024 {
            return Err(format!(
                "--max-message-bytes {} is too small; at least 1024",
                self.max_message_bytes
            ));
        }
        Ok(())
    }

    /// How the proxy reaches the server, or why the flags name no (or more than one) way.
    pub fn transport(&self) -> Result<Transport, String> {
        match (self.command.is_empty(), self.listen.is_some(), &self.upstream) {
            (false, false, _) => Ok(Transport::Stdio),
            (false, true, None) => Ok(Transport::StdioOverHttp),
            (true, true, Some(_)) => Ok(Transport::Http),
            (false, true, Some(_)) => Err(
                "give either a command after `--` or --upstream URL, not both".into(),
            ),
            (true, true, None) => Err(
                "--listen needs a server: --upstream URL (an HTTP server) or a command after `--` (a stdio server)"
                    .into(),
            ),
            (true, false, _) => Err(
                "no MCP server to guard: give its command after `--` (stdio), e.g. \
                 `mcp-guard-proxy --policy p.yaml -- node server.js`, optionally with `--listen ADDR` \
                 to serve it over HTTP, or `--listen ADDR --upstream URL` (HTTP)"
                    .into(),
            ),
        }
    }

    /// `--max-sessions`, or its default.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS)
    }

    /// `--session-idle`, or its default.
    pub fn session_idle(&self) -> Duration {
        self.session_idle.unwrap_or(DEFAULT_SESSION_IDLE)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(argv: &[&str]) -> Result<Args, String> {
        let a =
            Args::try_parse_from(std::iter::once("mcp-guard-proxy").chain(argv.iter().copied()))
                .map_err(|e| e.to_string())?;
        a.validate()?;
        Ok(a)
    }

    #[test]
    fn the_flags_choose_the_transport() {
        let t = |argv: &[&str]| args(argv).map(|a| a.transport().unwrap());
        assert_eq!(t(&["--policy", "p", "--", "srv"]), Ok(Transport::Stdio));
        assert_eq!(
            t(&[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--",
                "srv",
                "-x"
            ]),
            Ok(Transport::StdioOverHttp)
        );
        assert_eq!(
            t(&[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://h:1/mcp"
            ]),
            Ok(Transport::Http)
        );
        for bad in [
            &["--policy", "p"][..],
            &["--policy", "p", "--listen", "127.0.0.1:0"],
            &[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://h/",
                "--",
                "srv",
            ],
            &[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "https://h/",
            ],
            &["--policy", "p", "--upstream", "http://h/", "--", "srv"],
            &["--", "srv"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_flags_belong_to_the_stdio_over_http_mode() {
        let a = args(&["--policy", "p", "--listen", "127.0.0.1:0", "--", "srv"]).unwrap();
        assert_eq!(
            (a.max_sessions(), a.session_idle()),
            (DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE)
        );
        let a = args(&[
            "--policy",
            "p",
            "--listen",
            "127.0.0.1:0",
            "--max-sessions",
            "2",
            "--session-idle",
            "90s",
            "--",
            "srv",
        ])
        .unwrap();
        assert_eq!(
            (a.max_sessions(), a.session_idle()),
            (2, Duration::from_secs(90))
        );
        let e = args(&["--policy", "p", "--max-sessions", "2", "--", "srv"]).unwrap_err();
        assert!(e.contains("--max-sessions"), "{e}");
        assert!(
            args(&[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--max-sessions",
                "0",
                "--",
                "s"
            ])
            .is_err()
        );
        assert!(
            args(&[
                "--policy",
                "p",
                "--listen",
                "127.0.0.1:0",
                "--session-idle",
                "10ms",
                "--",
                "s"
            ])
            .is_err()
        );
    }

    #[test]
    fn audit_on_stdout_only_where_stdout_is_free() {
        for log in ["-", "/dev/stdout", "/proc/self/fd/1"] {
            let e = args(&["--policy", "p", "--log", log, "--", "srv"]).unwrap_err();
            assert!(
                e.contains(&format!("--log {log}")) && e.contains("corrupt"),
                "{e}"
            );
            let over_http = ["--policy", "p", "--log", log, "--listen", "127.0.0.1:0"];
            assert!(args(&[&over_http[..], &["--", "srv"]].concat()).is_ok());
            assert!(args(&[&over_http[..], &["--upstream", "http://h:1/mcp"]].concat()).is_ok());
        }
        assert!(args(&["--policy", "p", "--log", "audit.jsonl", "--", "srv"]).is_ok());
    }

    #[test]
    fn install_to_stands_alone() {
        let a = args(&["--install-to", "/mcp-guard/bin"]).unwrap();
        assert_eq!(
            a.install_to.as_deref(),
            Some(std::path::Path::new("/mcp-guard/bin"))
        );
        for other in [
            &["--policy", "p"][..],
            &["--listen", "127.0.0.1:0"],
            &["--max-message-bytes", "2048"],
            &["--reload-interval", "1s"],
            &["--", "srv"],
        ] {
            let argv: Vec<&str> = ["--install-to", "/d"]
                .iter()
                .chain(other)
                .copied()
                .collect();
            let e = args(&argv).unwrap_err();
            assert!(e.contains("cannot be used with"), "{argv:?}: {e}");
        }
    }
}
