//! mcp-guard-proxy: the MCP guard sidecar and standalone wrapper.
//!
//! The request path is a named pipeline: a transport ([`transport`]) reads a frame; the [`guard`]
//! decodes it ([`jsonrpc`]), finds its session ([`session`]), judges it with the current policy
//! ([`engine`], one file per detector under [`detect`]), and returns what to forward and what to answer;
//! answers from the server come back through the guard too. Decisions are written to the [`audit`] log
//! and counted in [`metrics`]; [`policy`] loads and hot-reloads the policy.
#![forbid(unsafe_code)]

pub mod ask;
pub mod audit;
pub mod config;
pub mod decision;
pub mod detect;
pub mod engine;
pub mod guard;
pub mod install;
pub mod jsonrpc;
pub mod killswitch;
pub mod metrics;
pub mod otel;
pub mod policy;
pub mod session;
pub mod summary;
pub mod transport;
