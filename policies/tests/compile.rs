//! The contract from issue 2 compiles as written; each invalid input is refused with its field path;
//! every error is reported; the compiled form round-trips through policy.json.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use mcp_guard_policy::compiled::{ArgTarget, CompiledPolicy};
use mcp_guard_policy::load::{parse_documents, parse_spec};
use mcp_guard_policy::{Action, Mode, PolicyError, compile};
use serde_json::{Value, json};

const CONTRACT: &str = include_str!("fixtures/contract.yaml");

fn contract_spec() -> Value {
    let docs: Vec<Value> = serde_saphyr::from_multiple(CONTRACT).unwrap();
    docs[0]["spec"].clone()
}

/// The errors for the contract with `value` written at `pointer` (inside `spec`).
fn errors_with(edits: &[(&str, Value)]) -> Vec<PolicyError> {
    let mut spec = contract_spec();
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = spec
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent}"));
        match target {
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value.clone(),
            Value::Object(map) => {
                map.insert(key.to_owned(), value.clone());
            }
            _ => panic!("{parent} is not a container"),
        }
    }
    match parse_spec(spec).and_then(|s| compile(&s).map(|_| ())) {
        Ok(()) => panic!("{edits:?} was accepted"),
        Err(errors) => errors,
    }
}

fn assert_error(edits: &[(&str, Value)], path: &str, message: &str) {
    let errors = errors_with(edits);
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(message)),
        "expected `{path}: ...{message}...`, got {:#?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

#[test]
fn the_contract_compiles_as_written() {
    let parsed = parse_documents(CONTRACT, "contract").unwrap();
    assert_eq!(parsed.policies.len(), 1);
    let policy = &parsed.policies[0];
    assert_eq!(
        (policy.name.as_str(), policy.namespace.as_deref()),
        ("example", Some("default"))
    );
    let c = policy.compile().unwrap();
    assert_eq!(c.mode, Mode::Enforce);
    assert!(c.tools.allow.is_match("anything"));
    assert!(c.tools.deny.is_match("run_shell") && c.tools.deny.is_match("exec"));
    assert!(c.tools.block_undeclared && c.tools.pin_definitions);
    assert_eq!(c.rules.len(), 2);
    assert_eq!(
        c.rules[0].args[0].target,
        ArgTarget::Pointer("/path".into())
    );
    assert!(
        c.rules[0].args[0]
            .regex
            .regex()
            .is_match("/root/.ssh/id_rsa")
    );
    assert_eq!(c.rules[1].args[0].target, ArgTarget::AnyString);
    assert!(
        c.rules[1].args[0]
            .regex
            .regex()
            .is_match("1; drop   table users")
    );
    let rate = c.detectors.rate_limit.as_ref().unwrap();
    assert_eq!(
        rate.per_tool.map(|w| (w.max_calls, w.window_ms)),
        Some((20, 10_000))
    );
    assert_eq!(
        rate.per_session.map(|w| (w.max_calls, w.window_ms)),
        Some((200, 60_000))
    );
    let seq = &c.detectors.sequences[0];
    assert_eq!(
        (seq.id.as_str(), seq.action, seq.within_ms),
        ("write-then-exec", Action::Block, 60_000)
    );
    assert_eq!(seq.steps.matches("exec_cmd"), vec![1]);
    let taint = c.detectors.taint.as_ref().unwrap();
    assert!(
        taint.source_paths.is_match("/app/.env")
            && taint.source_paths.is_match("/root/.ssh/id_rsa")
    );
    assert!(taint.sink_tools.is_match("http_post") && taint.source_secrets);
    assert_eq!(c.ask.timeout_ms, 60_000);
    let files = &c.runtime.files.deny;
    assert_eq!(
        files[1].path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert!(files[1].subtree && !files[0].subtree);
    assert_eq!(c.runtime.network.egress.deny_ports, vec![22, 23]);
    assert_eq!(c.runtime.network.egress.allow[1].to_string(), "fd00::/8");
    assert!(c.runtime.network.confine_listeners);
}

#[test]
fn unclosed_regex() {
    assert_error(
        &[("/rules/0/args/0/regex", json!("(/etc/passwd"))],
        "spec.rules[0].args[0].regex",
        "unclosed group at offset 0",
    );
}

#[test]
fn regex_over_the_size_limit() {
    assert_error(
        &[("/rules/1/args/0/regex", json!(r"\w{1000}{1000}"))],
        "spec.rules[1].args[0].regex",
        "exceeds the size limit",
    );
    assert_error(
        &[("/rules/1/args/0/regex", json!("a".repeat(5000)))],
        "spec.rules[1].args[0].regex",
        "the limit is 4096",
    );
}

#[test]
fn window_without_unit() {
    // `window: 10` in YAML is a number, refused while parsing...
    assert_error(
        &[("/detectors/rateLimit/perTool/window", json!(10))],
        "spec.detectors.rateLimit.perTool.window",
        "invalid type: integer `10`, expected a duration with a unit",
    );
    // ...and `window: "10"` is a string without a unit, refused while compiling.
    assert_error(
        &[("/detectors/rateLimit/perSession/window", json!("10"))],
        "spec.detectors.rateLimit.perSession.window",
        "`10` has no unit",
    );
}

#[test]
fn cidr_prefix_too_long() {
    assert_error(
        &[("/runtime/network/egress/allow/0", json!("10.0.0.0/33"))],
        "spec.runtime.network.egress.allow[0]",
        "prefix length `33` is not between 0 and 32",
    );
}

#[test]
fn port_out_of_range() {
    assert_error(
        &[("/runtime/network/egress/denyPorts/1", json!(70000))],
        "spec.runtime.network.egress.denyPorts[1]",
        "70000 is not a port number (1-65535)",
    );
}

#[test]
fn empty_sequence_steps() {
    assert_error(
        &[("/detectors/sequences/0/steps", json!([]))],
        "spec.detectors.sequences[0].steps",
        "empty: a sequence needs at least 2 steps",
    );
}

#[test]
fn unknown_action() {
    assert_error(
        &[("/rules/0/action", json!("deny"))],
        "spec.rules[0].action",
        "unknown variant `deny`, expected one of `log`, `ask`, `block`",
    );
    assert_error(
        &[("/detectors/sequences/0/action", json!("deny"))],
        "spec.detectors.sequences[0].action",
        "unknown variant `deny`",
    );
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    for (pointer, path) in [
        ("/bogus", "spec.bogus"),
        ("/tools/bogus", "spec.tools.bogus"),
        ("/rules/1/bogus", "spec.rules[1].bogus"),
        ("/rules/0/args/0/bogus", "spec.rules[0].args[0].bogus"),
        ("/detectors/bogus", "spec.detectors.bogus"),
        (
            "/detectors/taint/sources/bogus",
            "spec.detectors.taint.sources.bogus",
        ),
        (
            "/detectors/sequences/0/bogus",
            "spec.detectors.sequences[0].bogus",
        ),
        ("/ask/bogus", "spec.ask.bogus"),
        (
            "/runtime/network/egress/bogus",
            "spec.runtime.network.egress.bogus",
        ),
    ] {
        assert_error(&[(pointer, json!(true))], path, "unknown field `bogus`");
    }
}

#[test]
fn pointer_that_is_not_a_json_pointer() {
    assert_error(
        &[("/rules/0/args/0/pointer", json!("path"))],
        "spec.rules[0].args[0].pointer",
        "`path` is not a JSON pointer: it must start with `/`",
    );
    assert_error(
        &[("/rules/0/args/0/pointer", json!("/a~2b"))],
        "spec.rules[0].args[0].pointer",
        "`~` must be followed by 0",
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let errors = errors_with(&[
        ("/rules/0/args/0/regex", json!("(/etc/passwd")),
        ("/detectors/sequences/0/steps", json!([])),
        ("/runtime/network/egress/allow/0", json!("10.0.0.0/33")),
        ("/runtime/network/egress/denyPorts/0", json!(70000)),
        ("/ask/timeout", json!("2h")),
        ("/rules/1/id", json!("block-sensitive-paths")),
    ]);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].args[0].regex",
            "spec.rules[1].id",
            "spec.detectors.sequences[0].steps",
            "spec.ask.timeout",
            "spec.runtime.network.egress.allow[0]",
            "spec.runtime.network.egress.denyPorts[0]",
        ]
    );
    assert!(
        errors[1]
            .message
            .contains("duplicate id `block-sensitive-paths` (first used at spec.rules[0].id)")
    );
    assert!(errors[3].message.contains("between 1s and 10m"));
}

#[test]
fn structural_errors_in_several_sections_are_all_reported() {
    let errors = errors_with(&[
        ("/mode", json!("sometimes")),
        ("/rules/0/action", json!("deny")),
        ("/rules/1/bogus", json!(1)),
        ("/detectors/rateLimit/perTool/window", json!(10)),
        ("/detectors/sequences/0/within", json!(5)),
        ("/runtime/files", json!("not-a-map")),
    ]);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "spec.mode",
        "spec.rules[0].action",
        "spec.rules[1].bogus",
        "spec.detectors.rateLimit.perTool.window",
        "spec.detectors.sequences[0].within",
        "spec.runtime.files",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
}

#[test]
fn semantic_checks_name_the_field() {
    assert_error(
        &[("/rules/0/args", json!([]))],
        "spec.rules[0].args",
        "at least one argument matcher",
    );
    assert_error(
        &[("/rules/0/args/0/anyString", json!(true))],
        "spec.rules[0].args[0]",
        "not both",
    );
    assert_error(
        &[("/rules/0/id", json!("Bad_Id"))],
        "spec.rules[0].id",
        "not a valid id",
    );
    assert_error(
        &[("/rules/0/risk", json!(1.5))],
        "spec.rules[0].risk",
        "not between 0 and 1",
    );
    assert_error(
        &[("/tools/deny/1", json!("run_[x"))],
        "spec.tools.deny[1]",
        "unclosed character class",
    );
    assert_error(
        &[("/detectors/sequences/0/steps", json!(["only"]))],
        "spec.detectors.sequences[0].steps",
        "at least 2 steps",
    );
    assert_error(
        &[("/detectors/rateLimit/perTool/maxCalls", json!(0))],
        "spec.detectors.rateLimit.perTool.maxCalls",
        "at least 1",
    );
    assert_error(
        &[("/detectors/taint/sinks/tools", json!([]))],
        "spec.detectors.taint.sinks.tools",
        "at least one sink",
    );
    assert_error(
        &[
            ("/detectors/promptInjection/scanDescriptions", json!(false)),
            ("/detectors/promptInjection/scanResults", json!(false)),
        ],
        "spec.detectors.promptInjection",
        "nothing to scan",
    );
    assert_error(
        &[("/runtime/files/deny/0", json!("etc/shadow"))],
        "spec.runtime.files.deny[0]",
        "not an absolute path",
    );
    assert_error(
        &[("/runtime/exec/deny/0", json!("/bin/*"))],
        "spec.runtime.exec.deny[0]",
        "globs are not supported",
    );
    assert_error(
        &[("/runtime/network/egress/allow/0", json!("10.1.0.0/8"))],
        "spec.runtime.network.egress.allow[0]",
        "host bits set",
    );
    assert_error(
        &[("/risk", json!({"askAbove": 0.9, "blockAbove": 0.5}))],
        "spec.risk.askAbove",
        "must be below blockAbove",
    );
    assert_error(
        &[("/budgets", json!({"maxCalls": 0}))],
        "spec.budgets.maxCalls",
        "at least 1",
    );
}

#[test]
fn compiled_policy_round_trips_through_policy_json() {
    let compiled = parse_documents(CONTRACT, "contract").unwrap().policies[0]
        .compile()
        .unwrap();
    let json = compiled.to_json();
    let loaded = CompiledPolicy::from_json(&json).unwrap();
    assert_eq!(loaded, compiled);
    assert_eq!(loaded.to_json(), json, "serialization is stable");
    // Matchers are live after loading, not just equal as text.
    assert!(
        loaded.rules[0].args[0]
            .regex
            .regex()
            .is_match("/etc/shadow")
    );
    assert!(loaded.detectors.sequences[0].steps.is_match("write_file"));
    assert_eq!(loaded.source.generation, None);
}

#[test]
fn policy_json_is_checked_when_loaded() {
    let json = compile(&parse_spec(contract_spec()).unwrap())
        .unwrap()
        .to_json();
    let tampered = json.replace(r#""(?i)(DROP"#, r#""((?i)(DROP"#);
    let err = CompiledPolicy::from_json(&tampered).unwrap_err();
    assert!(err.contains("unclosed group"), "{err}");
    let future = json.replacen(r#""format": 1"#, r#""format": 99"#, 1);
    assert!(
        CompiledPolicy::from_json(&future)
            .unwrap_err()
            .contains("format 99 is not supported")
    );
    assert!(
        CompiledPolicy::from_json("[]")
            .unwrap_err()
            .contains("not a compiled policy")
    );
}

#[test]
fn an_empty_spec_means_enforce_with_defaults() {
    let c = compile(&parse_spec(json!({})).unwrap()).unwrap();
    assert_eq!(c.mode, Mode::Enforce);
    assert!(c.tools.allow.is_match("any_tool") && c.tools.deny.is_empty());
    assert!(c.rules.is_empty() && c.detectors.credential_leak.is_none());
    assert_eq!(c.ask.timeout_ms, 60_000);
    assert!(c.runtime.is_empty());
}
