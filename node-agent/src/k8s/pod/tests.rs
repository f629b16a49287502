#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::k8s::fixtures::{
    DEBUG, PROXY, PROXY_IMAGE, SERVER, SIDECAR, UID, http_containers, pod, pod_with, pod_with_spec,
    proxy_args, running, stdio_spec,
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
    let info = PodInfo::from_pod(&p, Some(PROXY_IMAGE)).unwrap();
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
    assert_eq!(info.proxy_container.as_deref(), Some(PROXY_CONTAINER));
    assert!(info.refused_ports.is_empty(), "{:?}", info.refused_ports);

    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let done = PodInfo::from_pod(&done, Some(PROXY_IMAGE)).unwrap();
    assert!(done.finished && done.containers.is_empty());
    let mut anonymous = p;
    anonymous.metadata.uid = None;
    assert!(PodInfo::from_pod(&anonymous, Some(PROXY_IMAGE)).is_none());
}

fn ports_in(spec: serde_json::Value, image: Option<&str>) -> ProxyPorts {
    let p = pod_with_spec("p", Some("x"), spec, None);
    public_ports(p.spec.as_ref().unwrap(), image)
}

fn ports_of(containers: serde_json::Value) -> ProxyPorts {
    ports_in(json!({"containers": containers}), Some(PROXY_IMAGE))
}

/// Whether one of the refusals mentions `needle`.
fn refused(p: &ProxyPorts, needle: &str) -> bool {
    p.refused.iter().any(|r| r.contains(needle))
}

/// A proxy container as the webhook writes it, with these args and declared ports.
fn proxy_container(name: &str, image: &str, args: &[&str], ports: &[u16]) -> serde_json::Value {
    let ports: Vec<_> = ports.iter().map(|p| json!({"containerPort": p})).collect();
    json!({"name": name, "image": image, "args": args, "ports": ports})
}

/// The public ports come from the command line of the container that runs the injected proxy, as
/// the webhook writes it: the proxy container's args (`http`), the server container's command
/// (`stdio`), whose server arguments after `--` are not the proxy's.
#[test]
fn public_ports_come_from_the_injected_proxy_command_line() {
    let http = ports_of(http_containers());
    assert_eq!(http.ports, BTreeSet::from([8080, 9464]));
    assert_eq!(http.proxy_container.as_deref(), Some(PROXY_CONTAINER));
    assert!(http.refused.is_empty(), "{:?}", http.refused);
    let stdio = ports_in(stdio_spec(), Some(PROXY_IMAGE));
    assert_eq!(stdio.ports, BTreeSet::from([8080, 9464]));
    assert_eq!(
        stdio.proxy_container, None,
        "the proxy shares the server's container"
    );
    assert!(stdio.refused.is_empty(), "{:?}", stdio.refused);

    // The proxy container renamed because the pod had one of that name (`mcp-guard-proxy-1`),
    // other metrics port, IPv6 wildcard and `--flag=value`.
    let renamed = json!([
        {"name": "mcp-guard-proxy", "image": "my-own-thing", "command": ["/bin/server"],
         "args": ["--listen", "0.0.0.0:7000"], "ports": [{"containerPort": 7000}]},
        proxy_container("mcp-guard-proxy-1", PROXY_IMAGE, &[
            "--policy", "/etc/mcp-guard/policy/policy.json", "--listen=[::]:8443",
            "--upstream", "http://127.0.0.1:18443", "--metrics", "0.0.0.0:9465"], &[8443, 9465]),
    ]);
    let renamed = ports_of(renamed);
    assert_eq!(
        renamed.ports,
        BTreeSet::from([8443, 9465]),
        "a server container merely named like the proxy opens nothing"
    );
    assert_eq!(
        renamed.proxy_container.as_deref(),
        Some("mcp-guard-proxy-1")
    );
    assert!(refused(&renamed, "runs its own command"), "{renamed:?}");

    // Loopback and specific addresses, and port 0, are not public: a bind there is not a wildcard.
    let local = json!([proxy_container(
        PROXY_CONTAINER,
        PROXY_IMAGE,
        &[
            "--listen",
            "127.0.0.1:8080",
            "--metrics",
            "10.0.0.5:9464",
            "--admin",
            "0.0.0.0:9999"
        ],
        &[8080, 9464, 9999]
    )]);
    assert!(ports_of(local).ports.is_empty());
    let zero = json!([proxy_container(
        PROXY_CONTAINER,
        PROXY_IMAGE,
        &["--listen", "0.0.0.0:0"],
        &[]
    )]);
    assert!(ports_of(zero).ports.is_empty());

    // No proxy at all (not injected): none.
    let plain = json!([{"name": "server", "image": "s", "args": ["--listen", "0.0.0.0:80"],
                        "ports": [{"containerPort": 80}]}]);
    let plain = ports_of(plain);
    assert!(
        plain.ports.is_empty() && plain.refused.is_empty(),
        "{plain:?}"
    );
}

/// Only the image the operator injects runs the proxy: a container named like it (or like a
/// renamed one) with another image opens nothing, and without `--proxy-image` nothing is public.
#[test]
fn only_the_injected_proxy_image_opens_ports() {
    let args = proxy_args(22, Some(18080), 9464);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for name in [
        "mcp-guard-proxy",
        "mcp-guard-proxy-2",
        "mcp-guard-proxy-x",
        "proxy",
    ] {
        let forged = ports_of(json!([
            {"name": "server", "image": "server:1"},
            proxy_container(name, "evil:1", &args, &[22, 9464]),
        ]));
        assert!(forged.ports.is_empty(), "{name}: {forged:?}");
        assert_eq!(forged.proxy_container, None, "{name}");
    }
    let forged = ports_of(json!([proxy_container(
        "mcp-guard-proxy-2",
        "evil:1",
        &args,
        &[22, 9464]
    )]));
    assert!(refused(&forged, "is not the proxy image"), "{forged:?}");
    // The proxy image under another name than the webhook gives it: not the injected proxy.
    let renamed = ports_of(json!([proxy_container(
        "mcp-guard-proxy-x",
        PROXY_IMAGE,
        &args,
        &[22, 9464]
    )]));
    assert!(renamed.ports.is_empty(), "{renamed:?}");

    // Without --proxy-image: nothing, for either transport (the agent logs why, once).
    let http = ports_in(json!({"containers": http_containers()}), None);
    assert_eq!(http, ProxyPorts::default());
    assert_eq!(ports_in(stdio_spec(), None), ProxyPorts::default());
    let p = pod_with("p", Some("x"), http_containers(), None);
    let info = PodInfo::from_pod(&p, None).unwrap();
    assert!(info.public_ports.is_empty() && info.proxy_container.is_none());
}

/// A `stdio` server's command names the proxy binary, but only the install init container the
/// webhook adds puts the proxy there: without it (or with anything else able to change what lies
/// at `/mcp-guard/bin`) the command is the pod author's own program, and opens nothing.
#[test]
fn a_stdio_proxy_counts_only_when_the_install_container_put_it_there() {
    let forged = |edit: &dyn Fn(&mut serde_json::Value)| -> ProxyPorts {
        let mut spec = stdio_spec();
        edit(&mut spec);
        ports_in(spec, Some(PROXY_IMAGE))
    };
    type Edit = dyn Fn(&mut serde_json::Value);
    let cases: [(&str, &Edit); 8] = [
        ("no install init container", &|s| {
            s["initContainers"] = json!([])
        }),
        ("installer of another image", &|s| {
            s["initContainers"][0]["image"] = json!("evil:1");
        }),
        ("installer running something else", &|s| {
            s["initContainers"][0]["command"] = json!(["/bin/sh", "-c", "cp /evil /mcp-guard/bin"]);
        }),
        ("installer under another name", &|s| {
            s["initContainers"][0]["name"] = json!("installer");
        }),
        ("server mounting another volume there", &|s| {
            s["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "mine", "emptyDir": {}}));
            s["containers"][0]["volumeMounts"][0]["name"] = json!("mine");
        }),
        ("install volume not an emptyDir", &|s| {
            s["volumes"][1] = json!({"name": "mcp-guard-bin", "hostPath": {"path": "/tmp/x"}});
        }),
        ("another container writing the volume", &|s| {
            let init = s["initContainers"].as_array_mut().unwrap();
            init.push(json!({"name": "late", "image": "busybox",
                "command": ["cp", "/evil", "/mcp-guard/bin/mcp-guard-proxy"],
                "volumeMounts": [{"name": "mcp-guard-bin", "mountPath": "/x"}]}));
        }),
        ("a mount beneath the bin directory", &|s| {
            let mounts = s["containers"][0]["volumeMounts"].as_array_mut().unwrap();
            mounts.push(
                json!({"name": "mcp-guard-policy", "mountPath": "/mcp-guard/bin/mcp-guard-proxy",
                               "subPath": "policy.json"}),
            );
        }),
    ];
    for (what, edit) in cases {
        let p = forged(edit);
        assert!(p.ports.is_empty(), "{what}: {p:?}");
        assert!(
            refused(&p, "/mcp-guard/bin/mcp-guard-proxy"),
            "{what}: {p:?}"
        );
    }
    // The webhook's suffixed installer name is fine.
    let suffixed = forged(&|s| s["initContainers"][0]["name"] = json!("mcp-guard-install-1"));
    assert_eq!(suffixed.ports, BTreeSet::from([8080, 9464]));
}

/// A pod has at most two public ports, the proxy's `--listen` and `--metrics`, each declared (TCP)
/// by the proxy's container: a repeated flag, an undeclared or UDP port, a second proxy, open
/// nothing more.
#[test]
fn at_most_the_listen_and_metrics_ports_and_only_declared_ones() {
    let repeated = ports_of(json!([proxy_container(
        PROXY_CONTAINER,
        PROXY_IMAGE,
        &[
            "--listen",
            "0.0.0.0:8080",
            "--metrics",
            "0.0.0.0:9464",
            "--listen=0.0.0.0:22",
            "--metrics",
            "0.0.0.0:23",
            "--admin",
            "0.0.0.0:24"
        ],
        &[8080, 9464, 22, 23, 24]
    )]));
    assert!(repeated.ports.is_empty(), "{repeated:?}");
    assert!(
        refused(&repeated, "--listen is given 2 times"),
        "{repeated:?}"
    );
    assert!(
        refused(&repeated, "--metrics is given 2 times"),
        "{repeated:?}"
    );

    let undeclared = ports_of(json!([proxy_container(
        PROXY_CONTAINER,
        PROXY_IMAGE,
        &["--listen", "0.0.0.0:8080", "--metrics", "0.0.0.0:9999"],
        &[8080]
    )]));
    assert_eq!(undeclared.ports, BTreeSet::from([8080]));
    assert!(
        refused(&undeclared, "port 9999 of --metrics is not declared"),
        "{undeclared:?}"
    );

    let udp = ports_of(json!([{"name": PROXY_CONTAINER, "image": PROXY_IMAGE,
        "args": ["--listen", "0.0.0.0:8080"],
        "ports": [{"containerPort": 8080, "protocol": "UDP"}]}]));
    assert!(udp.ports.is_empty(), "{udp:?}");

    // A server container declaring a port does not make it the proxy's.
    let elsewhere = ports_of(json!([
        {"name": "server", "image": "s", "ports": [{"containerPort": 9999}]},
        proxy_container(PROXY_CONTAINER, PROXY_IMAGE, &["--listen", "0.0.0.0:9999"], &[]),
    ]));
    assert!(elsewhere.ports.is_empty(), "{elsewhere:?}");

    // Two containers running the proxy image: the webhook injects one, so neither counts.
    let two = ports_of(json!([
        proxy_container(
            PROXY_CONTAINER,
            PROXY_IMAGE,
            &["--listen", "0.0.0.0:8080"],
            &[8080]
        ),
        proxy_container(
            "mcp-guard-proxy-1",
            PROXY_IMAGE,
            &["--listen", "0.0.0.0:22"],
            &[22]
        ),
    ]));
    assert!(two.ports.is_empty(), "{two:?}");
    assert!(
        refused(&two, "2 containers run the injected proxy"),
        "{two:?}"
    );
    // Nor an http proxy beside a stdio one.
    let mut spec = stdio_spec();
    spec["containers"]
        .as_array_mut()
        .unwrap()
        .push(proxy_container(
            PROXY_CONTAINER,
            PROXY_IMAGE,
            &["--listen", "0.0.0.0:22"],
            &[22],
        ));
    assert!(ports_in(spec, Some(PROXY_IMAGE)).ports.is_empty());
}
