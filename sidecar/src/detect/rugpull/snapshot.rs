//! What a pin keeps of a tool definition: hashes of the whole definition, a bounded copy of the
//! description and a summary of the input schema's parameters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{MAX_DEFAULT, MAX_NAME, MAX_PARAM_DESCRIPTION, MAX_PARAMS, ToolDef};

/// What a pin keeps of a definition.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) name: String,
    /// SHA-256 of the whole definition (description and canonical schema).
    pub(super) hash: [u8; 32],
    /// The description, or its first bytes (see `complete`).
    pub(super) description: String,
    /// Whether `description` is the whole description.
    pub(super) complete: bool,
    /// SHA-256 of the whole description.
    pub(super) description_hash: [u8; 32],
    /// SHA-256 of the canonical schema.
    pub(super) schema_hash: [u8; 32],
    /// Parameter summaries by path (`a`, `a.b`, `a[]`), or `None` when not retained.
    pub(super) params: Option<BTreeMap<String, Param>>,
}

/// What a pin keeps of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Param {
    /// JSON Schema type(s), `|`-joined, or "any".
    pub(super) ty: String,
    /// Whether the value is restricted (`enum`, `const`, `pattern`, `format`).
    pub(super) restricted: bool,
    /// The `enum`/`const` values, as JSON (bounded).
    pub(super) choices: Option<String>,
    /// The default value, as JSON (bounded).
    pub(super) default: Option<String>,
    /// The description (bounded).
    pub(super) description: String,
    pub(super) required: bool,
}

impl Snapshot {
    /// A snapshot keeping at most `max_description` bytes of description, and the parameter
    /// summaries when `keep_params`.
    pub(super) fn new(tool: &ToolDef, max_description: usize, keep_params: bool) -> Self {
        let description = prefix(&tool.description, max_description).to_owned();
        let complete = description.len() == tool.description.len();
        let params = keep_params.then(|| {
            let mut params = BTreeMap::new();
            collect_params(&tool.input_schema, "", &mut params, 0);
            params
        });
        Self {
            name: tool.name.clone(),
            hash: definition_hash(tool),
            description,
            complete,
            description_hash: Sha256::digest(tool.description.as_bytes()).into(),
            schema_hash: schema_hash(&tool.input_schema),
            params,
        }
    }

    /// Bytes of text kept.
    pub(super) fn retained(&self) -> usize {
        self.name.len()
            + self.description.len()
            + self.params.as_ref().map_or(0, |p| {
                p.iter()
                    .map(|(k, v)| {
                        k.len()
                            + v.ty.len()
                            + v.description.len()
                            + v.choices.as_ref().map_or(0, String::len)
                            + v.default.as_ref().map_or(0, String::len)
                    })
                    .sum()
            })
    }
}

/// The key of a tool name (long names are keyed by their hash).
pub(super) fn key(name: &str) -> String {
    if name.len() <= MAX_NAME {
        name.to_owned()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(name.as_bytes())))
    }
}

/// The longest prefix of `s` of at most `max` bytes, on a character boundary.
pub(super) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) fn definition_hash(tool: &ToolDef) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((tool.description.len() as u64).to_le_bytes());
    h.update(tool.description.as_bytes());
    hash_value(&tool.input_schema, &mut h);
    h.finalize().into()
}

fn schema_hash(schema: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_value(schema, &mut h);
    h.finalize().into()
}

/// Feeds a canonical, unambiguous encoding of `v` to `h` (object keys sorted, lengths prefixed), so
/// that key order does not change the hash.
fn hash_value(v: &Value, h: &mut Sha256) {
    let bytes = |h: &mut Sha256, tag: u8, b: &[u8]| {
        h.update([tag]);
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    match v {
        Value::Null => h.update([0]),
        Value::Bool(b) => h.update([1, u8::from(*b)]),
        Value::Number(n) => bytes(h, 2, n.to_string().as_bytes()),
        Value::String(s) => bytes(h, 3, s.as_bytes()),
        Value::Array(items) => {
            h.update([4]);
            h.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(map) => {
            h.update([5]);
            h.update((map.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                bytes(h, 6, k.as_bytes());
                if let Some(x) = map.get(k) {
                    hash_value(x, h);
                }
            }
        }
    }
}

/// Deepest schema nesting summarised.
const MAX_DEPTH: usize = 8;

/// Summarises the parameters of `schema` (its `properties`, recursively through nested objects,
/// array `items` and `anyOf`/`oneOf`/`allOf`) into `out`, at most [`MAX_PARAMS`].
fn collect_params(schema: &Value, path: &str, out: &mut BTreeMap<String, Param>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(obj) = schema.as_object() else {
        return;
    };
    let required: BTreeSet<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            if out.len() >= MAX_PARAMS {
                return;
            }
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.insert(p.clone(), param(sub, required.contains(name.as_str())));
            collect_params(sub, &p, out, depth + 1);
        }
    }
    if let Some(items) = obj.get("items") {
        collect_params(items, &format!("{path}[]"), out, depth + 1);
    }
    for comb in ["anyOf", "oneOf", "allOf"] {
        for sub in obj
            .get(comb)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_params(sub, path, out, depth + 1);
        }
    }
}

/// The summary of one parameter schema.
fn param(schema: &Value, required: bool) -> Param {
    let get = |k: &str| schema.get(k);
    let mut types: Vec<String> = match get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    for comb in ["anyOf", "oneOf"] {
        for sub in get(comb).and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = sub.get("type").and_then(Value::as_str) {
                types.push(t.to_owned());
            }
        }
    }
    types.sort();
    types.dedup();
    let ty = if types.is_empty() {
        "any".to_owned()
    } else {
        types.join("|")
    };
    let choices = get("enum")
        .or_else(|| get("const"))
        .map(|v| prefix(&v.to_string(), MAX_DEFAULT).to_owned());
    Param {
        ty,
        restricted: choices.is_some() || get("pattern").is_some() || get("format").is_some(),
        choices,
        default: get("default").map(|v| prefix(&v.to_string(), MAX_DEFAULT).to_owned()),
        description: prefix(
            get("description")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            MAX_PARAM_DESCRIPTION,
        )
        .to_owned(),
        required,
    }
}
