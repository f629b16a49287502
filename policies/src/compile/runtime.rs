//! Compiling `spec.runtime`: paths for the BPF LSM programs, CIDRs and ports for the socket programs.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::compiled::{DeniedPath, Egress, Network, PathRules, Runtime};
use crate::error::{Errors, FieldPath};
use crate::spec::RuntimeSpec;

/// Most paths per list: each becomes a BPF map entry per guarded pod.
pub const MAX_PATHS: usize = 256;
/// Most CIDRs per list (LPM trie entries).
pub const MAX_CIDRS: usize = 1024;

pub(super) fn compile_runtime(
    r: &RuntimeSpec,
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<Runtime> {
    let files = path_rules(&r.files.deny, &path.field("files").field("deny"), errs);
    let exec = path_rules(&r.exec.deny, &path.field("exec").field("deny"), errs);
    let net = path.field("network").field("egress");
    let allow = cidrs(&r.network.egress.allow, &net.field("allow"), errs);
    let deny = cidrs(&r.network.egress.deny, &net.field("deny"), errs);
    let ports = ports(&r.network.egress.deny_ports, &net.field("denyPorts"), errs);
    Some(Runtime {
        files: files?,
        exec: exec?,
        network: Network {
            egress: Egress {
                allow: allow?,
                deny: deny?,
                deny_ports: ports?,
            },
            confine_listeners: r.network.confine_listeners,
        },
    })
}

fn path_rules(paths: &[String], path: &FieldPath, errs: &mut Errors) -> Option<PathRules> {
    if paths.len() > MAX_PATHS {
        errs.push(path, format!("{} paths; at most {MAX_PATHS}", paths.len()));
        return None;
    }
    let compiled: Vec<Option<DeniedPath>> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| errs.take(&path.index(i), denied_path(p)))
        .collect();
    Some(PathRules {
        deny: compiled.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

/// `/a/b` denies that file; `/a/b/` denies the directory and everything beneath it.
fn denied_path(p: &str) -> Result<DeniedPath, String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` is not an absolute path"));
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if p.contains(['*', '?', '[']) {
        return Err(format!(
            "`{p}`: globs are not supported here; deny a directory and everything beneath it with a \
             trailing `/`"
        ));
    }
    let subtree = p.ends_with('/');
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("denying `/` would deny every file; name the directories to deny".into());
    }
    if trimmed
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "`{p}` is not a normalized path (no `//`, `.` or `..` components)"
        ));
    }
    Ok(DeniedPath {
        path: trimmed.to_owned(),
        subtree,
    })
}

fn cidrs(list: &[String], path: &FieldPath, errs: &mut Errors) -> Option<Vec<IpNet>> {
    if list.len() > MAX_CIDRS {
        errs.push(path, format!("{} entries; at most {MAX_CIDRS}", list.len()));
        return None;
    }
    let parsed: Vec<Option<IpNet>> = list
        .iter()
        .enumerate()
        .map(|(i, c)| errs.take(&path.index(i), cidr(c)))
        .collect();
    parsed.into_iter().collect()
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (one host). Host bits must be zero, so what is written
/// is what is enforced.
fn cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not an IP address or CIDR block"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}`: `{addr}` is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 =
        prefix.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
            format!("`{text}`: prefix length `{prefix}` is not between 0 and {max}")
        })?;
    let net = IpNet::new(ip, len).map_err(|e| format!("`{text}`: {e}"))?;
    if net.network() != ip {
        return Err(format!(
            "`{text}` has host bits set; the block is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

fn ports(list: &[u32], path: &FieldPath, errs: &mut Errors) -> Option<Vec<u16>> {
    let parsed: Vec<Option<u16>> = list
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let port = u16::try_from(p).ok().filter(|p| *p != 0);
            errs.take(
                &path.index(i),
                port.ok_or_else(|| format!("{p} is not a port number (1-65535)")),
            )
        })
        .collect();
    let mut ports = parsed.into_iter().collect::<Option<Vec<_>>>()?;
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_and_mark_subtrees() {
        let d = denied_path("/var/run/secrets/kubernetes.io/serviceaccount/").unwrap();
        assert_eq!(d.path, "/var/run/secrets/kubernetes.io/serviceaccount");
        assert!(d.subtree);
        let f = denied_path("/etc/shadow").unwrap();
        assert_eq!((f.path.as_str(), f.subtree), ("/etc/shadow", false));
        assert!(denied_path("etc/shadow").unwrap_err().contains("absolute"));
        assert!(
            denied_path("/etc/../shadow")
                .unwrap_err()
                .contains("normalized")
        );
        assert!(
            denied_path("/etc//shadow")
                .unwrap_err()
                .contains("normalized")
        );
        assert!(denied_path("/").unwrap_err().contains("every file"));
        assert!(denied_path("/etc/*.key").unwrap_err().contains("globs"));
    }

    #[test]
    fn cidrs_are_strict() {
        assert_eq!(cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            cidr("10.0.0.0/33").unwrap_err(),
            "`10.0.0.0/33`: prefix length `33` is not between 0 and 32"
        );
        assert!(
            cidr("fd00::/129")
                .unwrap_err()
                .contains("between 0 and 128")
        );
        assert!(
            cidr("10.1.0.0/8")
                .unwrap_err()
                .contains("the block is 10.0.0.0/8")
        );
        assert!(
            cidr("example.com/8")
                .unwrap_err()
                .contains("not an IPv4 or IPv6")
        );
        assert!(
            cidr("nonsense")
                .unwrap_err()
                .contains("not an IP address or CIDR")
        );
    }
}
