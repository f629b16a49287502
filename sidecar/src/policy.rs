//! Loading the policy file and reloading it when it changes.
//!
//! `--policy` takes either the compiled `policy.json` (what the operator publishes in the ConfigMap) or a
//! policy as users write it (an `McpGuardPolicy` manifest or a bare spec, YAML or JSON), compiled here.
//! Reloading polls the file's content rather than watching inodes: Kubernetes updates a mounted
//! ConfigMap by swapping a `..data` symlink, which inode watches miss, and a poll of a small file every
//! second costs nothing measurable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcp_guard_policy::CompiledPolicy;
use mcp_guard_policy::load::parse_documents;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::guard::Guard;
use crate::metrics::ResultLabels;

/// Reads and compiles a policy file. The error says what is wrong, with field paths.
pub fn load(path: &Path) -> Result<CompiledPolicy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<CompiledPolicy, String> {
    let looks_compiled = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .is_some_and(|v| v.get("format").is_some());
    if looks_compiled {
        return CompiledPolicy::from_json(text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parsed = parse_documents(text, &stem).map_err(|e| format!("{}: {e}", path.display()))?;
    let [policy] = parsed.policies.as_slice() else {
        return Err(format!(
            "{}: holds {} policies; the proxy takes exactly one",
            path.display(),
            parsed.policies.len()
        ));
    };
    policy.compile().map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "{}: policy {} is invalid:\n  {}",
            path.display(),
            policy.name,
            lines.join("\n  ")
        )
    })
}

/// Watches a policy file and swaps the guard's engine when its content changes. An invalid new policy
/// keeps the last good one; every reload is counted by result and logged.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    last: [u8; 32],
}

impl Reloader {
    /// `initial` is the content the guard was started with.
    pub fn new(path: PathBuf) -> Self {
        let last = std::fs::read(&path).map(|b| digest(&b)).unwrap_or_default();
        Self { path, last }
    }

    /// Checks once; returns whether a new policy was applied.
    pub fn check(&mut self, guard: &Guard) -> bool {
        let Ok(bytes) = std::fs::read(&self.path) else {
            // Mid-swap or briefly missing: try again at the next tick.
            return false;
        };
        let hash = digest(&bytes);
        if hash == self.last {
            return false;
        }
        self.last = hash;
        let text = String::from_utf8_lossy(&bytes);
        let result = parse(&text, &self.path).and_then(Engine::new);
        match result {
            Ok(engine) => {
                let name = engine
                    .policy()
                    .source
                    .name
                    .clone()
                    .unwrap_or_else(|| "(local)".into());
                guard.set_engine(engine);
                guard
                    .metrics
                    .reloads
                    .get_or_create(&ResultLabels {
                        result: "ok".into(),
                    })
                    .inc();
                eprintln!(
                    "mcp-guard-proxy: policy {name} reloaded from {}",
                    self.path.display()
                );
                true
            }
            Err(e) => {
                guard
                    .metrics
                    .reloads
                    .get_or_create(&ResultLabels {
                        result: "invalid".into(),
                    })
                    .inc();
                eprintln!(
                    "mcp-guard-proxy: policy reload refused, keeping the previous policy: {e}"
                );
                false
            }
        }
    }

    /// Polls forever at `interval`.
    pub async fn run(mut self, guard: Arc<Guard>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check(&guard);
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
