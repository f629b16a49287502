//! Standalone mode: one policy file, enforced on the processes of given cgroup v2 directories,
//! without Kubernetes (hosts, tests, the QEMU kernel tests).
//!
//! The policy's `runtime` paths are resolved on this host (under `/`); every `--cgroup` directory is
//! guarded with slot 0, and with it every cgroup beneath it, now or created later (the programs look
//! a process's ancestor up at each `--cgroup` directory's level), the way a pod's cgroup covers its
//! containers in Kubernetes mode. `--public-port` ports keep their wildcard binds in them. The maps
//! are reconciled to exactly that state, so a restart with another policy or other cgroups leaves
//! nothing stale. Status lines go to standard error (the last one
//! before events is `mcp-guard-agent: ready`), events to `--events` as JSON lines.
//!
//! On SIGTERM or SIGINT the agent exits and leaves its pins in place: the programs keep enforcing
//! the last rules with no process running, and the next start re-adopts them without detaching.
//! `--unpin` removes everything (and so ends enforcement).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use mcp_guard_policy::compiled::CompiledPolicy;
use mcp_guard_policy::load::parse_documents;
use tokio::signal::unix::{SignalKind, signal};

use crate::bpf::{self, Capabilities, LoadOptions};
use crate::config::{EventsTo, StandaloneConfig};
use crate::model::{KernelEvent, Levels, MAX_LEVELS, Slot, SlotRules};
use crate::rules::{HostResolver, slot_rules};

/// The slot standalone mode uses.
pub const SLOT: Slot = 0;

/// Reads a policy: a compiled `policy.json` (it has a `format` field), or exactly one policy in
/// YAML or JSON (an `McpGuardPolicy` manifest or a bare spec), validated and compiled.
pub fn load_policy(path: &Path) -> Result<CompiledPolicy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(&text)
        && obj.contains_key("format")
    {
        return CompiledPolicy::from_json(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
    let parsed = parse_documents(&text, &stem).with_context(|| format!("{}", path.display()))?;
    let [policy] = parsed.policies.as_slice() else {
        bail!(
            "{}: holds {} policies; standalone mode enforces exactly one",
            path.display(),
            parsed.policies.len()
        );
    };
    policy.compile().map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}: {}", path.display(), list.join("; "))
    })
}

/// One line per probed feature, e.g. `capability bpf_lsm: unavailable (...)`.
pub fn capability_lines(caps: &Capabilities) -> Vec<String> {
    caps.features()
        .iter()
        .map(|(name, c)| {
            let state = if c.available {
                "available"
            } else {
                "unavailable"
            };
            format!("capability {name}: {state} ({})", c.detail)
        })
        .collect()
}

/// `--probe`: the capability probe as pretty JSON.
pub fn probe_json() -> String {
    serde_json::to_string_pretty(&bpf::capabilities())
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn status(line: impl AsRef<str>) {
    eprintln!("mcp-guard-agent: {}", line.as_ref());
}

/// A `--cgroup` argument as a directory: relative paths lie under the cgroup v2 root.
fn cgroup_dir(arg: &Path, root: Option<&Path>) -> Result<PathBuf> {
    if arg.is_absolute() {
        return Ok(arg.to_path_buf());
    }
    let root = root.context("a relative --cgroup needs a cgroup v2 hierarchy")?;
    Ok(root.join(arg))
}

/// How many directories below the cgroup v2 root `dir` lies (its cgroup level), when it lies beneath.
fn level_below(root: &Path, dir: &Path) -> Option<u32> {
    let root = std::fs::canonicalize(root).ok()?;
    let dir = std::fs::canonicalize(dir).ok()?;
    let relative = dir.strip_prefix(root).ok()?;
    u32::try_from(relative.components().count()).ok()
}

/// Runs standalone mode until SIGTERM or SIGINT.
pub async fn run(cfg: StandaloneConfig) -> Result<()> {
    let policy = load_policy(&cfg.policy)?;
    let resolved = slot_rules(&policy.runtime, &[PathBuf::from("/")], &HostResolver);
    for s in &resolved.skipped {
        status(format!(
            "skipping {} (not resolvable on this host: {})",
            s.path, s.error
        ));
    }
    let rules: SlotRules = resolved.rules;
    if policy.runtime.is_empty() {
        status("the policy has no runtime section: nothing to enforce in the kernel");
    }

    let caps = bpf::capabilities();
    for line in capability_lines(&caps) {
        status(line);
    }
    let mut loaded = bpf::load(&LoadOptions {
        pin_dir: cfg.pin_dir.clone(),
        capabilities: Some(caps),
    })?;
    let maps = if loaded.maps_adopted {
        "re-adopted"
    } else {
        "created"
    };
    status(format!("maps {maps} under {}", loaded.pin_dir.display()));
    for p in &loaded.programs {
        let detail = match &p.state {
            bpf::AttachState::KeptOlder { reason } | bpf::AttachState::NotAttached { reason } => {
                format!(": {reason}")
            }
            _ => String::new(),
        };
        let state = serde_json::to_value(&p.state)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str().map(str::to_owned)))
            .unwrap_or_default();
        status(format!(
            "program {} ({}): {state}{detail}",
            p.program, p.hook
        ));
    }
    for p in loaded.older_programs() {
        status(format!(
            "warning: {} still runs an older agent's program (pinned layout version {}): degraded, \
             it may confine only processes whose own cgroup is a --cgroup directory, not the \
             cgroups beneath; restart to retry the replacement",
            p.hook,
            loaded
                .pinned_layout
                .map_or_else(|| "unknown".to_owned(), |v| v.to_string())
        ));
    }

    let root = loaded.capabilities.cgroup_root.clone();
    let mut cgroups = BTreeMap::new();
    let mut ports = BTreeSet::new();
    let mut levels = Levels::new();
    for arg in &cfg.cgroups {
        let dir = cgroup_dir(arg, root.as_deref())?;
        let id = bpf::fs::cgroup_id(&dir)?;
        let level = root.as_deref().and_then(|r| level_below(r, &dir));
        let beneath = match level {
            Some(l) if l > 0 => {
                levels.insert(l);
                format!(", and every cgroup beneath it (level {l})")
            }
            _ => String::new(),
        };
        status(format!(
            "guarding {} (cgroup id {id}){beneath} with slot {SLOT}",
            dir.display()
        ));
        cgroups.insert(id, SLOT);
        ports.extend(cfg.public_ports.iter().map(|p| (id, *p)));
    }
    if levels.len() > MAX_LEVELS {
        bail!(
            "the --cgroup directories lie at {} different levels {levels:?}; the kernel looks up \
             at most {MAX_LEVELS}",
            levels.len()
        );
    }
    let slots = BTreeMap::from([(SLOT, rules)]);
    loaded
        .enforcer
        .reconcile(&slots, &cgroups, &ports, &levels)?;
    loaded
        .enforcer
        .set_allowed_egress_events(cfg.allowed_egress_events)?;

    let mut out: Box<dyn Write + Send> = match &cfg.events {
        EventsTo::Stdout => Box::new(std::io::stdout()),
        EventsTo::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
    };
    let (mut rx, reader) = loaded.events.spawn(1024);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    status("ready");
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => write_event(&mut out, &ev)?,
                None => {
                    let res = reader.await.context("event reader")?;
                    res.context("reading the event ring buffer")?;
                    bail!("the event reader stopped");
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    while let Ok(ev) = rx.try_recv() {
        write_event(&mut out, &ev)?;
    }
    reader.abort();
    status(format!(
        "exiting; the programs keep enforcing through the pins under {} (remove them with --unpin)",
        cfg.pin_dir.display()
    ));
    Ok(())
}

fn write_event(out: &mut dyn Write, ev: &KernelEvent) -> Result<()> {
    let line = serde_json::to_string(ev)?;
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `--unpin`: removes the pins and prints what went.
pub fn unpin(pin_dir: &Path) -> Result<()> {
    let gone = bpf::unpin(pin_dir).with_context(|| format!("unpinning {}", pin_dir.display()))?;
    status(format!(
        "removed {} links, {} programs, {} maps from {}",
        gone.links.len(),
        gone.programs.len(),
        gone.maps.len(),
        pin_dir.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_yaml_and_compiled_json_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = dir.path().join("p.yaml");
        std::fs::write(
            &yaml,
            "apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: p}\n\
             spec:\n  runtime:\n    files: {deny: [/etc/shadow]}\n    network:\n      \
             egress: {deny: [10.0.0.0/8], denyPorts: [25]}\n",
        )
        .expect("write");
        let from_yaml = load_policy(&yaml).expect("yaml loads");
        assert_eq!(from_yaml.runtime.network.egress.deny_ports, vec![25]);
        let json = dir.path().join("policy.json");
        std::fs::write(&json, from_yaml.to_json()).expect("write");
        assert_eq!(load_policy(&json).expect("json loads"), from_yaml);

        std::fs::write(&yaml, "runtime: {files: {deny: [relative]}}\n").expect("write");
        let e = load_policy(&yaml).expect_err("a relative path is refused");
        assert!(format!("{e:#}").contains("runtime.files.deny[0]"), "{e:#}");
    }

    #[test]
    fn levels_count_directories_below_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = root.path().join("kubepods/burstable/pod1");
        std::fs::create_dir_all(&pod).expect("mkdir");
        assert_eq!(level_below(root.path(), &pod), Some(3));
        assert_eq!(level_below(root.path(), root.path()), Some(0));
        assert_eq!(level_below(&pod, root.path()), None, "not beneath");
        assert_eq!(level_below(root.path(), &pod.join("missing")), None);
    }
}
