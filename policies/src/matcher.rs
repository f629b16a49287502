//! Validated, precompiled matchers: regular expressions and glob lists.
//!
//! Each keeps the source text it was built from. That text is what serializes into `policy.json`; loading
//! the JSON rebuilds the matcher with the same limits, so a ConfigMap edited by hand cannot smuggle in a
//! pattern that `compile` would have refused.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest regular expression source accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;
/// Largest compiled regular expression accepted, in bytes (the `regex` crate's `size_limit`).
/// Big enough for any realistic argument rule; small enough that a policy cannot make the proxy
/// allocate without bound.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled regular expression with its source.
#[derive(Clone)]
pub struct Pattern {
    regex: Regex,
}

impl Pattern {
    /// Validates and compiles `source`, with an error message that names what is wrong and where, e.g.
    /// "unclosed group at offset 7".
    pub fn new(source: &str) -> Result<Self, String> {
        check_regex(source)?;
        Ok(Self {
            regex: build_regex(source)?,
        })
    }

    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// Validates a regular expression's syntax and length, and explains the first problem with its offset.
/// The `regex` crate's own messages span several lines with a caret diagram; this gives one line.
pub fn check_regex(source: &str) -> Result<(), String> {
    if source.is_empty() {
        return Err("empty regular expression (it would match everything)".into());
    }
    if source.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regular expression is {} bytes long; the limit is {MAX_REGEX_LEN}",
            source.len()
        ));
    }
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(source)
        .map_err(|e| format!("{} at offset {}", e.kind(), e.span().start.offset))?;
    regex_syntax::hir::translate::Translator::new()
        .translate(source, &ast)
        .map_err(|e| format!("{} at offset {}", e.kind(), e.span().start.offset))?;
    Ok(())
}

/// Compiles with the policy's size limit. Also used by the sidecar to build one `RegexSet` of all
/// rules with the same limit.
pub fn build_regex(source: &str) -> Result<Regex, String> {
    RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "compiled regular expression exceeds the size limit of {limit} bytes; \
                 use fewer or smaller repetitions"
            ),
            other => other
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        })
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source).map_err(serde::de::Error::custom)
    }
}

// === impl GlobList ===

/// Glob patterns compiled into one set. `PATHS` selects path semantics (`*` stops at `/`, `**` crosses
/// directories) over name semantics (`*` matches any run of characters).
#[derive(Clone)]
pub struct GlobList<const PATHS: bool> {
    patterns: Vec<String>,
    set: GlobSet,
}

/// Globs over tool names.
pub type ToolGlobs = GlobList<false>;
/// Globs over file paths.
pub type PathGlobs = GlobList<true>;

impl<const PATHS: bool> GlobList<PATHS> {
    /// Compiles every pattern; on failure returns `(index, reason)` for each bad one.
    pub fn new(patterns: &[String]) -> Result<Self, Vec<(usize, String)>> {
        let mut builder = GlobSetBuilder::new();
        let mut errors = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match compile_glob::<PATHS>(p) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => errors.push((i, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let set = builder
            .build()
            .map_err(|e| vec![(0, format!("glob set: {}", e.kind()))])?;
        Ok(Self {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// An empty list, matching nothing.
    pub fn empty() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// Indices of the patterns matching `name`, in order.
    pub fn matches(&self, name: &str) -> Vec<usize> {
        self.set.matches(name)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }
}

fn compile_glob<const PATHS: bool>(pattern: &str) -> Result<globset::Glob, String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    GlobBuilder::new(pattern)
        .literal_separator(PATHS)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.kind()))
}

impl<const PATHS: bool> PartialEq for GlobList<PATHS> {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl<const PATHS: bool> fmt::Debug for GlobList<PATHS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl<const PATHS: bool> Serialize for GlobList<PATHS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de, const PATHS: bool> Deserialize<'de> for GlobList<PATHS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(d)?;
        GlobList::new(&patterns).map_err(|errs| {
            let msgs: Vec<String> = errs
                .into_iter()
                .map(|(i, e)| format!("[{i}]: {e}"))
                .collect();
            serde::de::Error::custom(msgs.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_errors_name_the_problem_and_offset() {
        assert_eq!(
            Pattern::new("(/etc/passwd").unwrap_err(),
            "unclosed group at offset 0"
        );
        assert_eq!(
            Pattern::new("abc[").unwrap_err(),
            "unclosed character class at offset 3"
        );
        assert!(Pattern::new("a(?<=b)").unwrap_err().contains("look-around"));
        assert!(Pattern::new("").unwrap_err().contains("empty"));
    }

    #[test]
    fn regex_size_limits() {
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        assert!(
            Pattern::new(&long)
                .unwrap_err()
                .contains("the limit is 4096")
        );
        let huge = r"\w{1000}{1000}";
        assert!(
            Pattern::new(huge)
                .unwrap_err()
                .contains("exceeds the size limit"),
            "{:?}",
            Pattern::new(huge)
        );
        assert!(Pattern::new(r"(?i)(DROP\s+TABLE|UNION\s+SELECT|;\s*--)").is_ok());
    }

    #[test]
    fn tool_globs_match_names_and_path_globs_respect_separators() {
        let tools = ToolGlobs::new(&["run_*".into(), "exec".into()]).unwrap();
        assert!(tools.is_match("run_shell"));
        assert!(tools.is_match("exec"));
        assert!(!tools.is_match("execute"));
        assert_eq!(tools.matches("run_x"), vec![0]);

        let paths = PathGlobs::new(&["**/.env".into(), "/home/*/.ssh/*".into()]).unwrap();
        assert!(paths.is_match("/srv/app/.env"));
        assert!(paths.is_match("/home/ann/.ssh/id_rsa"));
        assert!(!paths.is_match("/home/ann/x/.ssh/id_rsa"));
    }

    #[test]
    fn glob_errors_report_every_bad_index() {
        let errs = ToolGlobs::new(&["ok".into(), "[abc".into(), "".into()]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].0, 1);
        assert!(
            errs[0].1.contains("unclosed character class"),
            "{}",
            errs[0].1
        );
        assert_eq!(errs[1], (2, "empty pattern".into()));
    }

    #[test]
    fn matchers_round_trip_through_json() {
        let p = Pattern::new("^/etc/").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#""^/etc/""#);
        assert_eq!(serde_json::from_str::<Pattern>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Pattern>(r#""(""#).is_err());
        let g = ToolGlobs::new(&["a*".into()]).unwrap();
        let back: ToolGlobs = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(back, g);
        assert!(back.is_match("abc"));
    }
}
