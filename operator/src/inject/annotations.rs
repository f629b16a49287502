//! Reading what the user asked for: opt-in (pod annotation and namespace label), policy, transport,
//! port and server port. Values are matched exactly (case-sensitive); anything else is an error that
//! lists the allowed values, never a silent default.

use std::collections::BTreeMap;

use mcp_guard_crds::names::{
    ANNOTATION_INJECT, ANNOTATION_POLICY, ANNOTATION_PORT, ANNOTATION_SERVER_PORT,
    ANNOTATION_TRANSPORT, LABEL_INJECTION, config_map_name,
};

use super::{InjectError, Namespace, Transport};

/// Longest Kubernetes object name (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;

/// The port `mcpguard.io/port` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PortRef {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

/// Whether the pod is to be injected:
///
/// | pod `mcpguard.io/inject` | namespace `mcpguard.io/injection` | result |
/// |---|---|---|
/// | `"false"` | anything | no |
/// | `"true"` | absent or `enabled` | yes |
/// | `"true"` | `disabled` | error (the pod asks for a guard it cannot get) |
/// | absent | `enabled` | yes |
/// | absent | absent or `disabled` | no |
/// | other value | | error |
/// | absent or `"true"` | other value | error |
pub(super) fn opted_in(
    pod: &BTreeMap<String, String>,
    ns: &Namespace<'_>,
) -> Result<bool, InjectError> {
    let pod_says = match pod.get(ANNOTATION_INJECT).map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => return Ok(false),
        Some(other) => {
            return Err(InjectError::InvalidInject {
                value: other.to_owned(),
            });
        }
    };
    let ns_says = match ns.labels.get(LABEL_INJECTION).map(String::as_str) {
        None => None,
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some(other) => {
            return Err(InjectError::InvalidNamespaceLabel {
                namespace: ns.name.to_owned(),
                value: other.to_owned(),
            });
        }
    };
    match (pod_says, ns_says) {
        (Some(true), Some(false)) => Err(InjectError::NamespaceDisabled {
            namespace: ns.name.to_owned(),
        }),
        (Some(true), _) | (None, Some(true)) => Ok(true),
        _ => Ok(false),
    }
}

/// The policy's name: the pod's `mcpguard.io/policy`, else the namespace's.
pub(super) fn policy(
    pod: &BTreeMap<String, String>,
    ns: &Namespace<'_>,
) -> Result<String, InjectError> {
    let (name, source_of) = if let Some(name) = pod.get(ANNOTATION_POLICY) {
        (name, "annotation".to_owned())
    } else if let Some(name) = ns.annotations.get(ANNOTATION_POLICY) {
        (name, format!("namespace {:?} annotation", ns.name))
    } else {
        return Err(InjectError::MissingPolicy {
            namespace: ns.name.to_owned(),
        });
    };
    let reason = if !is_dns1123_subdomain(name) {
        Some(
            "a name must be at most 253 characters of lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit",
        )
    } else if config_map_name(name).len() > MAX_NAME {
        Some("it is too long for its ConfigMap mcp-guard-policy-<name> (at most 253 characters)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InjectError::InvalidPolicyName {
            source_of,
            policy: name.clone(),
            reason,
        }),
        None => Ok(name.clone()),
    }
}

/// Whether `s` is a DNS-1123 subdomain: what Kubernetes accepts as the name of most objects.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
                }
                _ => false,
            }
        })
}

/// `mcpguard.io/transport`, `http` by default.
pub(super) fn transport(pod: &BTreeMap<String, String>) -> Result<Transport, InjectError> {
    match pod.get(ANNOTATION_TRANSPORT).map(String::as_str) {
        None | Some("http") => Ok(Transport::Http),
        Some("stdio") => Ok(Transport::Stdio),
        Some(other) => Err(InjectError::InvalidTransport {
            value: other.to_owned(),
        }),
    }
}

/// `mcpguard.io/port`: a number (1..=65535) or a port name (anything else that is not empty).
pub(super) fn port(pod: &BTreeMap<String, String>) -> Result<Option<PortRef>, InjectError> {
    let Some(value) = pod.get(ANNOTATION_PORT) else {
        return Ok(None);
    };
    let invalid = || InjectError::InvalidPort {
        value: value.clone(),
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port(value)
            .map(PortRef::Number)
            .map(Some)
            .ok_or_else(invalid);
    }
    if is_port_name(value) {
        Ok(Some(PortRef::Name(value.clone())))
    } else {
        Err(invalid())
    }
}

/// `mcpguard.io/server-port`: a number (1..=65535).
pub(super) fn server_port(pod: &BTreeMap<String, String>) -> Result<Option<i32>, InjectError> {
    match pod.get(ANNOTATION_SERVER_PORT) {
        None => Ok(None),
        Some(value) => parse_port(value)
            .map(Some)
            .ok_or_else(|| InjectError::InvalidServerPort {
                value: value.clone(),
            }),
    }
}

fn parse_port(s: &str) -> Option<i32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok().filter(|n| (1..=65535).contains(n))
}

/// An IANA service name, what Kubernetes accepts as a container port's name: 1 to 15 lower-case
/// letters, digits and '-', with at least one letter, no leading, trailing or doubled '-'.
pub(super) fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn opt_in_table() {
        let none = map(&[]);
        let cases = [
            (Some("true"), None, Ok(true)),
            (Some("true"), Some("enabled"), Ok(true)),
            (Some("false"), Some("enabled"), Ok(false)),
            (Some("false"), Some("bogus"), Ok(false)),
            (None, Some("enabled"), Ok(true)),
            (None, Some("disabled"), Ok(false)),
            (None, None, Ok(false)),
            (Some("true"), Some("disabled"), Err("disabled")),
            (Some("yes"), None, Err("mcpguard.io/inject")),
            (None, Some("on"), Err("mcpguard.io/injection")),
        ];
        for (pod, label, want) in cases {
            let pod_map = pod.map_or_else(BTreeMap::new, |v| map(&[(ANNOTATION_INJECT, v)]));
            let labels = label.map_or_else(BTreeMap::new, |v| map(&[(LABEL_INJECTION, v)]));
            let ns = Namespace {
                name: "ns",
                labels: &labels,
                annotations: &none,
            };
            let got = opted_in(&pod_map, &ns).map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{pod:?} {label:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{pod:?} {label:?}: {g}"),
                (g, w) => panic!("{pod:?} {label:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "filesystem-readonly", "a.b-c.d", "0abc"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", ".a", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        for ok in ["http", "mcp-server", "guard-metrics-1", "a1"] {
            assert!(is_port_name(ok), "{ok}");
        }
        for bad in ["", "123", "-a", "a-", "a--b", "Http", "guard-metrics-10"] {
            assert!(!is_port_name(bad), "{bad}");
        }
    }

    #[test]
    fn ports() {
        let p = |v: &str| port(&map(&[(ANNOTATION_PORT, v)]));
        assert_eq!(p("8080"), Ok(Some(PortRef::Number(8080))));
        assert_eq!(p("http"), Ok(Some(PortRef::Name("http".into()))));
        for bad in ["0", "65536", "", "HTTP", "99999999999999999999", "-1"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let s = |v: &str| server_port(&map(&[(ANNOTATION_SERVER_PORT, v)]));
        assert_eq!(s("18080"), Ok(Some(18080)));
        for bad in ["0", "65536", "http", "", "+1"] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }
}
