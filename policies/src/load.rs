//! Reading policies from text: `McpGuardPolicy` manifests (several documents per file) or a bare spec,
//! in YAML or JSON.
//!
//! Structural errors (unknown fields, wrong types, unknown enum values) are reported with their field
//! path. Each top-level section, each rule and each sequence is checked on its own, so one mistake does
//! not hide the others.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::compile::compile;
use crate::compiled::{CompiledPolicy, PolicySource};
use crate::error::PolicyError;
use crate::spec::{PolicySpec, RuleSpec, SequenceSpec};

pub const API_VERSION: &str = "mcpguard.io/v1alpha1";
pub const KIND: &str = "McpGuardPolicy";
/// A policy's ConfigMap is `mcp-guard-policy-<name>`; object names are at most 253 characters.
pub const MAX_NAME_LEN: usize = 253 - "mcp-guard-policy-".len();

/// The text could not be read as YAML or JSON at all.
#[derive(Debug, thiserror::Error)]
#[error("not valid YAML or JSON: {0}")]
pub struct SyntaxError(String);

/// One policy found in a file: its identity and either its spec or every error found in it.
#[derive(Debug)]
pub struct ParsedPolicy {
    /// `metadata.name`, or for a bare spec the name the caller chose (usually the file's stem).
    pub name: String,
    pub namespace: Option<String>,
    pub generation: Option<i64>,
    pub spec: Result<PolicySpec, Vec<PolicyError>>,
}

impl ParsedPolicy {
    /// Validates and compiles, recording where the policy came from.
    pub fn compile(&self) -> Result<CompiledPolicy, Vec<PolicyError>> {
        let spec = self.spec.as_ref().map_err(Clone::clone)?;
        Ok(compile(spec)?.with_source(PolicySource {
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            generation: self.generation,
        }))
    }
}

/// What a file held.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub policies: Vec<ParsedPolicy>,
    /// Documents of other kinds (a Namespace next to the policy, say), left alone.
    pub skipped: usize,
}

/// Parses every document in `text`. `bare_name` names a bare spec (one without `apiVersion`/`kind`).
pub fn parse_documents(text: &str, bare_name: &str) -> Result<ParsedFile, SyntaxError> {
    let mut out = ParsedFile::default();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| SyntaxError(e.to_string()))?;
    for value in docs {
        let obj = match value {
            Value::Null => continue,
            Value::Object(obj) => obj,
            other => {
                out.policies.push(ParsedPolicy {
                    name: bare_name.to_owned(),
                    namespace: None,
                    generation: None,
                    spec: Err(vec![PolicyError::new(
                        "(document)",
                        format!("expected a mapping, found {}", kind_of(&other)),
                    )]),
                });
                continue;
            }
        };
        if obj.contains_key("kind") || obj.contains_key("apiVersion") {
            match resource(obj) {
                Some(p) => out.policies.push(p),
                None => out.skipped += 1,
            }
        } else {
            out.policies.push(ParsedPolicy {
                name: bare_name.to_owned(),
                namespace: None,
                generation: None,
                spec: parse_spec(Value::Object(obj)),
            });
        }
    }
    Ok(out)
}

/// An `McpGuardPolicy` manifest, or `None` for another kind.
fn resource(mut obj: Map<String, Value>) -> Option<ParsedPolicy> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        return None;
    }
    let mut errors = Vec::new();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != API_VERSION {
        errors.push(PolicyError::new(
            "apiVersion",
            format!("`{api_version}` is not supported; use {API_VERSION}"),
        ));
    }
    let meta = obj.get("metadata").and_then(Value::as_object);
    let field = |k: &str| meta.and_then(|m| m.get(k));
    let name = field("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Err(e) = check_name(&name) {
        errors.push(PolicyError::new("metadata.name", e));
    }
    let namespace = field("namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let generation = field("generation").and_then(Value::as_i64);
    let spec = match obj.remove("spec") {
        None => Err(vec![PolicyError::new("spec", "required")]),
        Some(v) => parse_spec(v),
    };
    let spec = match (spec, errors.is_empty()) {
        (Ok(s), true) => Ok(s),
        (Ok(_), false) => Err(errors),
        (Err(mut e), _) => {
            errors.append(&mut e);
            Err(errors)
        }
    };
    Some(ParsedPolicy {
        name: if name.is_empty() {
            "(unnamed)".into()
        } else {
            name
        },
        namespace,
        generation,
        spec,
    })
}

/// A Kubernetes object name (RFC 1123 subdomain) short enough for its ConfigMap's name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("required".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} characters; at most {MAX_NAME_LEN} so that mcp-guard-policy-<name> is a valid name",
            name.len()
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a valid name: lowercase letters, digits, `-` and `.`, starting and \
             ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Deserializes a spec, reporting structural errors with paths under `spec`.
pub fn parse_spec(value: Value) -> Result<PolicySpec, Vec<PolicyError>> {
    let first = match at_path::<PolicySpec>("spec", value.clone()) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    // Find every structural error, section by section, each deserialized alone.
    let mut errors = Vec::new();
    if let Value::Object(map) = value {
        for (key, v) in map {
            match (key.as_str(), v) {
                ("rules", Value::Array(items)) => {
                    for (i, item) in items.into_iter().enumerate() {
                        errors.extend(at_path::<RuleSpec>(&format!("spec.rules[{i}]"), item).err());
                    }
                }
                ("detectors", Value::Object(detectors)) => {
                    for (dk, dv) in detectors {
                        match (dk.as_str(), dv) {
                            ("sequences", Value::Array(items)) => {
                                for (i, item) in items.into_iter().enumerate() {
                                    let path = format!("spec.detectors.sequences[{i}]");
                                    errors.extend(at_path::<SequenceSpec>(&path, item).err());
                                }
                            }
                            (_, dv) => errors.extend(section("spec", "detectors", &dk, dv)),
                        }
                    }
                }
                (_, v) => errors.extend(at_path::<PolicySpec>("spec", single(&key, v)).err()),
            }
        }
    }
    if errors.is_empty() {
        errors.push(first);
    }
    Err(errors)
}

/// `{outer: {key: value}}` deserialized as a spec: one detector at a time.
fn section(root: &str, outer: &str, key: &str, value: Value) -> Option<PolicyError> {
    at_path::<PolicySpec>(root, single(outer, single(key, value))).err()
}

fn single(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

fn at_path<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => prefix.to_owned(),
            p if p.starts_with('[') => format!("{prefix}{p}"),
            p => format!("{prefix}.{p}"),
        };
        PolicyError::new(path, e.into_inner().to_string())
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
