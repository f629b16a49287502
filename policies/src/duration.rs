//! Durations as users write them: Go/Kubernetes style, `500ms`, `10s`, `5m`, `1h30m`.
//!
//! The accepted grammar is exactly [`DURATION_PATTERN`], which is also the CRD schema's `pattern`, so the
//! API server and this parser agree on what a duration is. Only whole numbers are accepted (`1m30s`,
//! not `1.5m`) so a value has one spelling.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// The grammar of a duration string, shared with the CRD schema.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// A duration as written in a policy. It keeps the user's spelling; [`DurationSpec::parse`] turns it into
/// a [`Duration`] during compilation, so a bad value is reported with its field path.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct DurationSpec(Cow<'static, str>);

impl DurationSpec {
    /// A duration from a literal, for defaults.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text, e.g. `1h30m` into 5400 s.
    pub fn parse(&self) -> Result<Duration, String> {
        parse_duration(&self.0)
    }
}

impl From<&str> for DurationSpec {
    fn from(s: &str) -> Self {
        Self(Cow::Owned(s.to_owned()))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"10s\", \"5m\" or \"1h30m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DurationSpec::from(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

/// Parses `[0-9]+(ms|s|m|h)` repeated, e.g. `1h30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration; write a number with a unit, such as 10s or 5m".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}` (e.g. 10s, 5m, 1h30m)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: number too large"))?;
        rest = &rest[digits..];
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.is_empty() && digits == text.len() {
            return Err(format!(
                "`{text}` has no unit; write it with one of ms, s, m, h (e.g. {text}s)"
            ));
        } else if rest.is_empty() {
            let last = &text[text.len() - digits..];
            return Err(format!(
                "`{text}`: the final `{last}` has no unit; add one of ms, s, m, h"
            ));
        } else {
            return Err(format!(
                "`{text}` has an unknown unit at `{rest}`; use ms, s, m or h"
            ));
        };
        rest = &rest[unit_len..];
        let part = number
            .checked_mul(unit_ms)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
    }

    #[test]
    fn rejects_missing_and_unknown_units() {
        assert!(parse_duration("10").unwrap_err().contains("has no unit"));
        assert!(
            parse_duration("10d")
                .unwrap_err()
                .contains("unknown unit at `d`")
        );
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(
            parse_duration("s")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(
            parse_duration("1.5m")
                .unwrap_err()
                .contains("unknown unit at `.5m`")
        );
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(
            parse_duration("9999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn grammar_matches_the_schema_pattern() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["10s", "5m", "1h30m", "250ms", "0s"] {
            assert!(re.is_match(ok) && parse_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["10", "10d", "", "1.5m", " 10s", "10s "] {
            assert!(!re.is_match(bad) && parse_duration(bad).is_err(), "{bad}");
        }
    }
}
