//! `mcp-guard-agent`: see [`mcp_guard_agent::config`] for the modes.

use clap::Parser;
use mcp_guard_agent::config::{Cli, Mode};
use mcp_guard_agent::standalone;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode() {
        Mode::Probe => {
            println!("{}", standalone::probe_json());
            Ok(())
        }
        Mode::Unpin { pin_dir } => standalone::unpin(&pin_dir),
        Mode::Standalone(cfg) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(standalone::run(cfg))),
        Mode::Kubernetes(cfg) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(mcp_guard_agent::kubernetes::run(cfg)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-guard-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
