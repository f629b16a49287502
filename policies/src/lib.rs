//! The mcp-guard policy: what users write ([`PolicySpec`]), how it is checked and precompiled
//! ([`compile()`]) into the [`CompiledPolicy`] that the sidecar and the node-agent enforce, and how
//! policies are read from files ([`load`]).
//!
//! This crate has no Kubernetes dependency: the CRD wraps [`PolicySpec`] in `mcp-guard-crds`, and the
//! proxy reads [`CompiledPolicy`] from a file.
#![forbid(unsafe_code)]

pub mod cli;
pub mod compile;
pub mod compiled;
pub mod duration;
pub mod error;
pub mod load;
pub mod matcher;
pub mod spec;

pub use compile::compile;
pub use compiled::CompiledPolicy;
pub use error::PolicyError;
pub use spec::{Action, Mode, PolicySpec};
