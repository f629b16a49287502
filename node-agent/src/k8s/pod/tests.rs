#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::k8s::fixtures::{
    DEBUG, PROXY, SERVER, SIDECAR, UID, http_containers, pod, pod_with, running, stdio_containers,
};

/// Every running container counts, the proxy too: the pod's cgroup confines them all, and file
/// rules resolve in each one's root.
#[test]
fn a_pod_yields_every_running_container_and_its_public_ports() {
    let mut p = pod(
        "fs-0",
        Some("no-exec"),
        json!([
            running("server", &format!("containerd://{SERVER}")),
            running(PROXY_CONTAINER, &format!("containerd://{PROXY}")),
            running("weird", "rkt://abc"),
            {"name": "starting", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]),
    );
    let status = p.status.as_mut().unwrap();
    // A native sidecar (an init container that keeps running) and an ephemeral debug container.
    status.init_container_statuses = Some(vec![
        serde_json::from_value(running("log-shipper", &format!("containerd://{SIDECAR}"))).unwrap(),
    ]);
    status.ephemeral_container_statuses = Some(vec![
        serde_json::from_value(running("debugger", &format!("containerd://{DEBUG}"))).unwrap(),
    ]);
    let info = PodInfo::from_pod(&p).unwrap();
    assert_eq!(
        (
            info.namespace.as_str(),
            info.name.as_str(),
            info.uid.as_str()
        ),
        ("tools", "fs-0", UID)
    );
    assert_eq!(info.qos, Some(QosClass::Burstable));
    assert_eq!(info.policy.as_deref(), Some("no-exec"));
    assert!(!info.finished);
    let names: Vec<_> = info.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["server", PROXY_CONTAINER, "log-shipper", "debugger"]
    );
    assert_eq!(info.containers[0].id.id, SERVER);
    assert_eq!(info.unreadable, vec!["weird: rkt://abc".to_owned()]);
    assert_eq!(info.public_ports, BTreeSet::from([8080, 9464]));

    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let done = PodInfo::from_pod(&done).unwrap();
    assert!(done.finished && done.containers.is_empty());
    let mut anonymous = p;
    anonymous.metadata.uid = None;
    assert!(PodInfo::from_pod(&anonymous).is_none());
}

fn ports_of(containers: serde_json::Value) -> BTreeSet<u16> {
    let p = pod_with("p", Some("x"), containers, None);
    public_ports(p.spec.as_ref().unwrap())
}

/// The public ports come from the command line of the container that runs the proxy, as the
/// webhook writes it: the proxy container's args (`http`), the server container's command
/// (`stdio`), whose server arguments after `--` are not the proxy's.
#[test]
fn public_ports_come_from_the_injected_proxy_command_line() {
    assert_eq!(ports_of(http_containers()), BTreeSet::from([8080, 9464]));
    assert_eq!(ports_of(stdio_containers()), BTreeSet::from([8080, 9464]));

    // The proxy container renamed because the pod had one of that name (`mcp-guard-proxy-1`),
    // other metrics port, IPv6 wildcard and `--flag=value`.
    let renamed = json!([
        {"name": "mcp-guard-proxy", "image": "my-own-thing", "command": ["/bin/server"],
         "args": ["--listen", "0.0.0.0:7000"]},
        {"name": "mcp-guard-proxy-1", "image": "proxy", "args": [
            "--policy", "/etc/mcp-guard/policy/policy.json", "--listen=[::]:8443",
            "--upstream", "http://127.0.0.1:18443", "--metrics", "0.0.0.0:9465"]},
    ]);
    assert_eq!(
        ports_of(renamed),
        BTreeSet::from([8443, 9465]),
        "a server container merely named like the proxy opens nothing"
    );

    // Loopback and specific addresses, and port 0, are not public: a bind there is not a wildcard.
    let local = json!([{"name": "mcp-guard-proxy", "image": "proxy", "args": [
        "--listen", "127.0.0.1:8080", "--metrics", "10.0.0.5:9464", "--admin", "0.0.0.0:9999",
        "--listen", "0.0.0.0:0"]}]);
    assert!(ports_of(local).is_empty());

    // No proxy at all (not injected): none.
    let plain = json!([{"name": "server", "image": "s", "args": ["--listen", "0.0.0.0:80"]}]);
    assert!(ports_of(plain).is_empty());
}
