//! `mcp-guard-policy`: check and compile policies, for users and CI.
//!
//! Exit codes: 0 all valid, 1 some policy is invalid (every error printed with file, policy, field path
//! and reason), 2 some input could not be read (missing file, not YAML or JSON, bad usage).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::compiled::CompiledPolicy;
use crate::load::{ParsedFile, parse_documents};

pub const EXIT_OK: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_UNREADABLE: i32 = 2;

/// Check and compile mcp-guard policies (McpGuardPolicy manifests, or bare specs in YAML or JSON).
#[derive(Debug, Parser)]
#[command(name = "mcp-guard-policy", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every policy in the files; print a summary per valid policy and every error otherwise.
    Check {
        /// Files holding McpGuardPolicy documents (several per file allowed) or a bare spec.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the compiled policy.json of the single policy in FILE.
    Compile { file: PathBuf },
}

/// Runs the CLI with `args` (including the program name); returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            if e.use_stderr() {
                let _ = write!(err, "{}", e.render());
                return EXIT_UNREADABLE;
            }
            let _ = write!(out, "{}", e.render());
            return EXIT_OK;
        }
    };
    let result = match cli.command {
        Command::Check { files } => check(&files, out, err),
        Command::Compile { file } => compile_one(&file, out, err),
    };
    result.unwrap_or(EXIT_UNREADABLE)
}

fn check(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let mut code = EXIT_OK;
    let (mut valid, mut invalid) = (0, 0);
    for file in files {
        let Some(parsed) = read(file, err)? else {
            code = code.max(EXIT_UNREADABLE);
            continue;
        };
        if parsed.policies.is_empty() {
            writeln!(err, "{}: no McpGuardPolicy found", file.display())?;
            code = code.max(EXIT_INVALID);
            continue;
        }
        for policy in &parsed.policies {
            match policy.compile() {
                Ok(compiled) => {
                    valid += 1;
                    writeln!(
                        out,
                        "ok {}: {}",
                        file.display(),
                        summary(&policy.name, &compiled)
                    )?;
                }
                Err(errors) => {
                    invalid += 1;
                    code = code.max(EXIT_INVALID);
                    for e in errors {
                        writeln!(err, "{}: policy {}: {e}", file.display(), policy.name)?;
                    }
                }
            }
        }
    }
    let total = valid + invalid;
    writeln!(
        out,
        "{total} policies checked: {valid} valid, {invalid} invalid"
    )?;
    Ok(code)
}

fn compile_one(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let Some(parsed) = read(file, err)? else {
        return Ok(EXIT_UNREADABLE);
    };
    let [policy] = parsed.policies.as_slice() else {
        writeln!(
            err,
            "{}: holds {} policies; `compile` takes a file with exactly one",
            file.display(),
            parsed.policies.len()
        )?;
        return Ok(EXIT_INVALID);
    };
    match policy.compile() {
        Ok(compiled) => {
            out.write_all(compiled.to_json().as_bytes())?;
            Ok(EXIT_OK)
        }
        Err(errors) => {
            for e in errors {
                writeln!(err, "{}: policy {}: {e}", file.display(), policy.name)?;
            }
            Ok(EXIT_INVALID)
        }
    }
}

/// Reads and parses a file; `None` (after reporting why) when it cannot be read.
fn read(file: &Path, err: &mut dyn Write) -> std::io::Result<Option<ParsedFile>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "{}: cannot read: {e}", file.display())?;
            return Ok(None);
        }
    };
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    match parse_documents(&text, &stem) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(e) => {
            writeln!(err, "{}: {e}", file.display())?;
            Ok(None)
        }
    }
}

/// One line: `github (enforce): 2 allow / 3 deny globs, 4 rules, detectors: credentialLeak, ...`.
pub fn summary(name: &str, p: &CompiledPolicy) -> String {
    let d = &p.detectors;
    let detectors: Vec<&str> = [
        ("credentialLeak", d.credential_leak.is_some()),
        ("rateLimit", d.rate_limit.is_some()),
        ("sequences", !d.sequences.is_empty()),
        ("taint", d.taint.is_some()),
        ("promptInjection", d.prompt_injection.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    let r = &p.runtime;
    let runtime: Vec<&str> = [
        ("files", !r.files.deny.is_empty()),
        ("exec", !r.exec.deny.is_empty()),
        ("egress", r.network.egress != Default::default()),
        ("confineListeners", r.network.confine_listeners),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    let list = |v: Vec<&str>| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "{name} ({mode}): tools {allow} allow / {deny} deny, {rules} rules, detectors: {dets}, runtime: {rt}",
        mode = match p.mode {
            crate::Mode::Enforce => "enforce",
            crate::Mode::Audit => "audit",
        },
        allow = p.tools.allow.len(),
        deny = p.tools.deny.len(),
        rules = p.rules.len(),
        dets = list(detectors),
        rt = list(runtime),
    )
}

/// Exposed for tests and tools that read compiled policies: load `policy.json`.
pub fn load_compiled(path: &Path) -> Result<CompiledPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    CompiledPolicy::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}
