//! Steps 6 and 7: the node-agent in the pods' cgroups, and while it is away.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mcp_guard_e2e::cluster::{eventually, metric_sum, name, pod_ready};
use mcp_guard_e2e::http_get;
use serde_json::{Value, json};

use super::*;
use crate::world::*;

// ---- 6 ------------------------------------------------------------------------------------------

fn agent_metrics(w: &mut World) -> Result<String> {
    let pods = w
        .kubectl
        .pods(SYSTEM_NS, "app.kubernetes.io/component=node-agent")?;
    let pod = pods.first().context("no node-agent pod")?.clone();
    let addr = w.reach(&pod, AGENT_METRICS_PORT)?;
    let (code, text) = http_get(&addr, "/metrics", Duration::from_secs(5))?;
    ensure!(code == 200, "agent metrics: HTTP {code}");
    Ok(text)
}

fn ip(pod: &Value) -> Result<String> {
    pod["status"]["podIP"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} has no IP", name(pod)))
}

/// The egress and listener checks of steps 6 and 7 (the policy already allows the plain pod).
fn network_enforced(w: &World) -> Result<()> {
    let http = w.pod(NS, "everything-http")?;
    let stdio = w.pod(NS, "everything-stdio")?;
    let plain = w.pod(NS, "everything-plain")?;
    let (http_ip, stdio_ip, plain_ip) = (ip(&http)?, ip(&stdio)?, ip(&plain)?);
    let from_http = |host: &str, port| w.connect_from(&http, "server", host, port);
    let r = from_http(&plain_ip, HTTP_PORT)?;
    ensure!(r == "connected", "allowed peer {plain_ip}:{HTTP_PORT}: {r}");
    let r = from_http(&plain_ip, 6379)?;
    ensure!(r == "EPERM", "denied port {plain_ip}:6379: {r}");
    let r = from_http(&stdio_ip, STDIO_PORT)?;
    ensure!(r == "EPERM", "denied address {stdio_ip}:{STDIO_PORT}: {r}");
    // confineListeners: from another pod, the proxy answers on the pod IP, the server does not.
    let from_plain = |port| w.connect_from(&plain, "server", &http_ip, port);
    let r = from_plain(HTTP_PORT)?;
    ensure!(r == "connected", "the proxy on {http_ip}:{HTTP_PORT}: {r}");
    let r = from_plain(PROXY_METRICS_PORT)?;
    ensure!(
        r == "connected",
        "the proxy's metrics on {http_ip}:{PROXY_METRICS_PORT}: {r}"
    );
    // The stdio pod's proxy shares the server's container, its public port stays public.
    let r = w.connect_from(&plain, "server", &stdio_ip, STDIO_PORT)?;
    ensure!(
        r == "connected",
        "the stdio pod's proxy on {stdio_ip}:{STDIO_PORT}: {r}"
    );
    let r = from_plain(HTTP_SERVER_PORT)?;
    ensure!(
        r == "ECONNREFUSED",
        "the server's own port {http_ip}:{HTTP_SERVER_PORT} is reachable around the proxy: {r}"
    );
    Ok(())
}

pub(super) fn s6_agent(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    eventually("the agent guards the servers' cgroups", 2 * MINUTE, || {
        let text = agent_metrics(w)?;
        // One guarded cgroup per guarded pod (the pod's own cgroup; its containers inherit it).
        ensure!(
            metric_sum(&text, "mcp_guard_agent_guarded_cgroups", &[]) >= 2.0,
            "guarded cgroups"
        );
        Ok(())
    })?;
    let text = agent_metrics(w)?;
    let capability = |f| metric_sum(&text, "mcp_guard_agent_capability", &[("feature", f)]);
    ensure!(
        capability("cgroup_sock_addr") == 1.0,
        "no cgroup sock_addr programs:\n{text}"
    );
    let http = w.pod(NS, "everything-http")?;
    if capability("bpf_lsm") == 1.0 {
        eprintln!("  BPF LSM available: checking the file rule");
        let (_, out) = k.exec(
            NS,
            name(&http),
            "server",
            &[
                "/usr/local/bin/node",
                "-e",
                "try{require('fs').readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/token');console.log('read')}catch(e){console.log(e.code)}",
            ],
        )?;
        ensure!(
            out.trim() == "EPERM" || out.trim() == "EACCES",
            "token read: {out}"
        );
    } else {
        eprintln!("  BPF LSM unavailable on this kernel: checking that the agent says so");
        let node = http["spec"]["nodeName"]
            .as_str()
            .context("pod without node")?;
        eventually(
            "a Node Event reports the degraded capability",
            MINUTE,
            || {
                let events = k.json(&["get", "events.events.k8s.io", "-A"])?;
                let found = events["items"].as_array().is_some_and(|items| {
                    items.iter().any(|e| {
                        e["reason"] == "EnforcementDegraded"
                            && e["regarding"]["kind"] == "Node"
                            && e["regarding"]["name"] == node
                    })
                });
                ensure!(found, "no EnforcementDegraded event for node {node}");
                Ok(())
            },
        )?;
    }

    // Before the plain pod is allowed, the library policy refuses every private address.
    let plain = w.pod(NS, "everything-plain")?;
    let plain_ip = ip(&plain)?;
    let r = w.connect_from(&http, "server", &plain_ip, HTTP_PORT)?;
    ensure!(r == "EPERM", "private address before the allow rule: {r}");
    // The library's documented edit: re-open one address inside a denied block.
    let mut policy = library_policy()?;
    let allow = policy["spec"]["runtime"]["network"]["egress"]["allow"]
        .as_array_mut()
        .context("library policy without egress.allow")?;
    allow.push(json!(format!("{plain_ip}/32")));
    apply_policy(w, &policy)?;
    eventually("the agent applies the new allow rule", MINUTE, || {
        let r = w.connect_from(&http, "server", &plain_ip, HTTP_PORT)?;
        ensure!(r == "connected", "{r}");
        Ok(())
    })?;
    network_enforced(w)
}

// ---- 7 ------------------------------------------------------------------------------------------

pub(super) fn s7_agent_restart(w: &mut World) -> Result<()> {
    let k = w.kubectl.clone();
    let selector = "app.kubernetes.io/component=node-agent";
    let daemonset = format!("{FULLNAME}-agent");
    let old = k.pods(SYSTEM_NS, selector)?;
    let old_name = name(old.first().context("no node-agent pod")?).to_owned();
    // Keep it away while the checks run: the DaemonSet would replace a deleted pod within seconds
    // and the checks would prove nothing. A node selector no node matches makes the DaemonSet
    // delete it and create none.
    let node_selector = |selector: Value| {
        let patch = json!({"spec": {"template": {"spec": {"nodeSelector": selector}}}});
        k.run(&[
            "patch",
            "daemonset",
            "-n",
            SYSTEM_NS,
            &daemonset,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
    };
    node_selector(json!({"mcpguard.io/e2e-agent-away": "true"}))?;
    k.run(&[
        "delete",
        "pod",
        "-n",
        SYSTEM_NS,
        &old_name,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ])?;
    let gone = || -> Result<()> {
        let pods = k.pods(SYSTEM_NS, selector)?;
        ensure!(
            pods.is_empty(),
            "node-agent pods: {:?}",
            pods.iter().map(name).collect::<Vec<_>>()
        );
        Ok(())
    };
    eventually("no node-agent pod runs", MINUTE, gone)?;
    network_enforced(w).context("while the node-agent is away")?;
    gone().context("the node-agent came back during the checks")?;
    node_selector(Value::Null)?;
    eventually("the node-agent is back", 2 * MINUTE, || {
        let pods = k.pods(SYSTEM_NS, selector)?;
        ensure!(pods.iter().any(pod_ready), "no ready agent");
        Ok(())
    })?;
    network_enforced(w).context("after the node-agent came back")
}
