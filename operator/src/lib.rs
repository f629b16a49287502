//! The mcp-guard operator.
//!
//! * `reconcile`: each `McpGuardPolicy` is compiled into the ConfigMap `mcp-guard-policy-<name>`
//!   (server-side apply, only when the content changed) and its status reports the result;
//!   runs on the replica that holds the leader `Lease` (`leader`).
//! * `webhook`: one HTTPS server (axum + rustls) validates policies and injects the proxy into pods;
//!   served by every replica. The injection itself is the pure [`inject::inject`].
//! * `certs`: the webhook's CA and serving certificate, kept in a Secret and rotated before expiry;
//!   `tls` serves whatever certificate is current without restarting.
//! * `owner`: the operator's own Deployment, which owns that Secret and the Lease, so they are
//!   deleted with it.
#![forbid(unsafe_code)]
pub mod app;
pub mod certs;
pub mod config;
pub mod error;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod owner;
pub mod reconcile;
pub mod tls;
pub mod webhook;
