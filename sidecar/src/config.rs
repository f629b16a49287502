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

/// The MCP guard proxy. Wraps a stdio MCP server:
///   mcp-guard-proxy --policy p.yaml -- npx @modelcontextprotocol/server-filesystem /srv/data
#[derive(Debug, Parser)]
#[command(name = "mcp-guard-proxy", version, about)]
pub struct Args {
    /// The policy: an McpGuardPolicy manifest, a bare spec (YAML or JSON), or a compiled policy.json.
    /// Reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Append JSONL audit records here (hash-chained; a summary record at shutdown).
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
    /// Serve MCP over HTTP on this address (Streamable HTTP, and legacy HTTP+SSE), forwarding to
    /// `--upstream`. Instead of a command after `--`.
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<SocketAddr>,
    /// The MCP server's HTTP endpoint, e.g. http://127.0.0.1:8080/mcp (with `--listen`).
    #[arg(long, value_name = "URL", requires = "listen")]
    pub upstream: Option<String>,
    /// The MCP server command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "audit" => Ok(Mode::Audit),
        other => Err(format!("`{other}` is not a mode; use enforce or audit")),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = mcp_guard_policy::duration::parse_duration(s)?;
    if d < Duration::from_millis(50) {
        return Err("must be at least 50ms".into());
    }
    Ok(d)
}

impl Args {
    /// Checks what clap cannot: settings that only make sense together.
    pub fn validate(&self) -> Result<(), String> {
        match (self.command.is_empty(), &self.upstream) {
            (true, None) => {
                return Err(
                    "no MCP server to guard: give its command after `--` (stdio), e.g. \
                            `mcp-guard-proxy --policy p.yaml -- node server.js`, or \
                            `--listen ADDR --upstream URL` (HTTP)"
                        .into(),
                );
            }
            (false, Some(_)) => {
                return Err("give either a command after `--` (stdio) or --listen/--upstream (HTTP), not both".into());
            }
            (true, Some(url)) => {
                if !url.starts_with("http://") {
                    return Err(format!(
                        "--upstream {url}: only http:// upstreams are supported (the server runs beside the proxy, on loopback)"
                    ));
                }
            }
            (false, None) => {}
        }
        if self.max_message_bytes < 1024 {
            return Err(format!(
                "--max-message-bytes {} is too small; at least 1024",
                self.max_message_bytes
            ));
        }
        Ok(())
    }
}
