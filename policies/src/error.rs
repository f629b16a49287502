//! Policy errors: each names the field path (`spec.rules[1].args[0].regex`) and the reason.

use std::fmt;

/// One problem with a policy, at one field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Where the problem is, e.g. `spec.detectors.rateLimit.perTool.window`.
    pub path: String,
    /// Why it is a problem, e.g. "`10` has no unit; ...".
    pub message: String,
}

impl PolicyError {
    pub fn new(path: impl fmt::Display, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// A field path under construction. Cheap to extend: each step allocates one short string, and paths are
/// only built while compiling a policy, never on the request path.
#[derive(Clone, Debug)]
pub struct FieldPath(String);

impl FieldPath {
    /// The root, usually `spec`.
    pub fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// `self.name`
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// `self[i]`
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects every error of a compilation instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Errors(Vec<PolicyError>);

impl Errors {
    pub fn push(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.0.push(PolicyError::new(path, message));
    }

    /// Keeps the value of `r`, or records its error and returns `None`.
    pub fn take<T>(&mut self, path: &FieldPath, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<PolicyError> {
        self.0
    }
}
