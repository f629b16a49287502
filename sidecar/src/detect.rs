//! Detectors: one file each. Each is pure (no I/O): it reads the compiled policy and the session's
//! detector state, and returns findings. The [`crate::engine`] runs them and combines the findings.

pub mod injection;
pub mod rate;
pub mod rugpull;
pub mod rules;
pub mod secrets;
pub mod sequence;
pub mod taint;
pub mod tools;

use serde_json::Value;

/// Calls `f` on every string in a JSON value: string values and object keys, at any depth.
pub fn for_each_string<'a>(value: &'a Value, f: &mut impl FnMut(&'a str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| for_each_string(v, f)),
        Value::Object(map) => {
            for (k, v) in map {
                f(k);
                for_each_string(v, f);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
