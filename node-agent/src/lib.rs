//! The mcp-guard node-agent: confines guarded pods' processes in the kernel.
//!
//! * `model`: what is enforced, independent of how: per-policy-slot rules and the cgroups guarded by
//!   each slot, behind the [`model::Enforcer`] trait.
#![deny(unsafe_code)]

pub mod bpf;
pub mod cgroup;
pub mod config;
pub mod k8s;
pub mod kubernetes;
pub mod metrics;
pub mod model;
pub mod otlp;
pub mod probe;
pub mod rules;
pub mod slots;
pub mod standalone;
