//! `mcp-guard-policy check` and `compile`, run as the real binary: exit 0 with a summary per valid
//! policy, 1 with every error (file, policy, field path, reason), 2 on unreadable input.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mcp_guard_policy::CompiledPolicy;

const CONTRACT: &str = include_str!("fixtures/contract.yaml");

fn run(args: &[&Path]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_mcp-guard-policy"))
        .args(args)
        .output()
        .expect("the checker runs");
    (
        status.code().expect("exited"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn library() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("library");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn accepts_the_contract_and_the_whole_library() {
    let dir = tempfile::tempdir().unwrap();
    let contract = write(dir.path(), "contract.yaml", CONTRACT);
    let mut files = library();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "filesystem-readonly",
        "github",
        "sql-database",
        "no-exec",
        "egress-locked",
        "audit-baseline",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "library lacks {required}: {names:?}"
        );
    }
    files.push(contract);
    let args: Vec<&Path> = std::iter::once(Path::new("check"))
        .chain(files.iter().map(PathBuf::as_path))
        .collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "{err}");
    for name in &names {
        // Each library policy is named after its file.
        assert!(
            out.contains(&format!("/{name}.yaml: {name} (")),
            "{name} not summarized:\n{out}"
        );
    }
    assert!(out.contains("contract.yaml: example (enforce): tools 1 allow / 3 deny, 2 rules"));
    assert!(out.contains(&format!(
        "{} policies checked: {} valid, 0 invalid",
        files.len(),
        files.len()
    )));
}

#[test]
fn several_documents_and_other_kinds_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: agents}}\n---\n{CONTRACT}\n---\n\
         apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {{name: second}}\nspec: {{mode: audit}}\n"
    );
    let file = write(dir.path(), "multi.yaml", &text);
    let (code, out, err) = run(&[Path::new("check"), &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("multi.yaml: example (enforce)"), "{out}");
    assert!(out.contains("multi.yaml: second (audit)"), "{out}");
    assert!(out.contains("2 policies checked: 2 valid"), "{out}");
}

#[test]
fn bare_specs_in_yaml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "bare.yaml",
        "mode: audit\ntools: {deny: [shell]}\n",
    );
    let json = write(
        dir.path(),
        "bare.json",
        r#"{"mode": "enforce", "runtime": {"network": {"egress": {"denyPorts": [22]}}}}"#,
    );
    let (code, out, err) = run(&[Path::new("check"), &yaml, &json]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("bare.yaml: bare (audit): tools 1 allow / 1 deny"),
        "{out}"
    );
    assert!(
        out.contains("bare.json: bare (enforce)") && out.contains("runtime: egress"),
        "{out}"
    );
}

#[test]
fn invalid_policies_exit_1_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CONTRACT
        .replace("name: example", "name: broken")
        .replace(
            r#""(/etc/(passwd|shadow|sudoers)|/root/\\.ssh)""#,
            r#""(/etc/passwd""#,
        )
        .replace("window: 10s", "window: 10")
        .replace(r#"steps: ["write_file", "exec*"]"#, "steps: []")
        .replace("denyPorts: [22, 23]", "denyPorts: [22, 70000]");
    let file = write(dir.path(), "bad.yaml", &bad);
    let (code, out, err) = run(&[Path::new("check"), &file]);
    assert_eq!(code, 1, "{out}{err}");
    let f = file.display();
    // Structural errors come first; the same file's semantic errors appear once those are fixed.
    assert!(
        err.contains(&format!("{f}: policy broken: spec.detectors.rateLimit.perTool.window: invalid type: integer `10`")),
        "{err}"
    );
    let fixed = write(
        dir.path(),
        "bad2.yaml",
        &bad.replace("window: 10", "window: 10s"),
    );
    let (code, _, err) = run(&[Path::new("check"), &fixed]);
    assert_eq!(code, 1);
    let f = fixed.display();
    for line in [
        format!("{f}: policy broken: spec.rules[0].args[0].regex: unclosed group at offset 0"),
        format!(
            "{f}: policy broken: spec.detectors.sequences[0].steps: empty: a sequence needs at least 2 steps"
        ),
        format!(
            "{f}: policy broken: spec.runtime.network.egress.denyPorts[1]: 70000 is not a port number (1-65535)"
        ),
    ] {
        assert!(
            err.lines().any(|l| l == line),
            "missing `{line}` in:\n{err}"
        );
    }
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn manifest_identity_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ids.yaml",
        "apiVersion: mcpguard.io/v1beta9\nkind: McpGuardPolicy\nmetadata: {name: Bad_Name}\nspec: {}\n---\n\
         apiVersion: mcpguard.io/v1alpha1\nkind: McpGuardPolicy\nmetadata: {name: nospec}\n",
    );
    let (code, _, err) = run(&[Path::new("check"), &file]);
    assert_eq!(code, 1);
    assert!(
        err.contains("policy Bad_Name: apiVersion: `mcpguard.io/v1beta9` is not supported"),
        "{err}"
    );
    assert!(
        err.contains("policy Bad_Name: metadata.name: `Bad_Name` is not a valid name"),
        "{err}"
    );
    assert!(err.contains("policy nospec: spec: required"), "{err}");
}

#[test]
fn unreadable_input_exits_2_and_still_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", CONTRACT);
    let garbage = write(dir.path(), "garbage.yaml", "spec: [unclosed\n  - : :\n");
    let missing = dir.path().join("missing.yaml");
    let (code, out, err) = run(&[Path::new("check"), &good, &garbage, &missing]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("good.yaml: example (enforce)"), "{out}");
    assert!(
        err.contains("garbage.yaml: not valid YAML or JSON"),
        "{err}"
    );
    assert!(err.contains("missing.yaml: cannot read"), "{err}");
    let (code, _, err) = run(&[Path::new("check")]);
    assert_eq!(code, 2, "no files is a usage error: {err}");
}

#[test]
fn a_file_without_policies_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    );
    let (code, _, err) = run(&[Path::new("check"), &file]);
    assert_eq!(code, 1);
    assert!(err.contains("ns.yaml: no McpGuardPolicy found"), "{err}");
}

#[test]
fn compile_prints_policy_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "contract.yaml", CONTRACT);
    let (code, out, err) = run(&[Path::new("compile"), &file]);
    assert_eq!(code, 0, "{err}");
    let compiled = CompiledPolicy::from_json(&out).unwrap();
    assert_eq!(compiled.source.name.as_deref(), Some("example"));
    assert_eq!(compiled.rules.len(), 2);

    let two = write(
        dir.path(),
        "two.yaml",
        &format!("{CONTRACT}\n---\n{CONTRACT}"),
    );
    let (code, _, err) = run(&[Path::new("compile"), &two]);
    assert_eq!(code, 1);
    assert!(
        err.contains("holds 2 policies; `compile` takes a file with exactly one"),
        "{err}"
    );
}
