//! Harnesses for testing mcp-guard as a whole against real components.
//!
//! [`apiserver::ApiServer`] runs a real kube-apiserver and etcd (v1.20.2, built from Debian bookworm's
//! `kubernetes` source package by `e2e/harness/apiserver-build.sh`, cached under
//! `~/.cache/mcp-guard`). [`prometheus::Prometheus`] runs Debian's Prometheus and runs the chart's
//! dashboard queries against it. Nothing here is a mock.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod helm;
pub mod prometheus;

use std::path::PathBuf;

/// The workspace root, for reading committed manifests (CRDs, the policy library).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace")
        .to_path_buf()
}
