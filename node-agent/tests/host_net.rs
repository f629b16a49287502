//! On the host kernel, as root: the cgroup sock_addr programs, loaded by the real agent binary in
//! standalone mode, refuse egress (connect4/connect6) for a process inside the guarded cgroup,
//! allow the same connections outside it, rewrite wildcard binds to loopback (where the proxy, and
//! only it, still reaches the server), and report each denial and rewrite as an event with the
//! right fields. A guarded cgroup covers the cgroups beneath it, including ones created after it
//! was guarded (a pod's cgroup and its containers), its public ports keep their wildcard binds, and
//! all of it holds from the pins alone, across agent restarts. See `host_support` for the setup.
#![allow(clippy::unwrap_used)]

mod host_support;

use host_support::{ECONNREFUSED, EPERM, TestEnv, root_or_skip, run_child};
use serde_json::Value;

#[test]
fn helper_child() {
    host_support::helper_main();
}

/// A more specific `allow` re-opens one address inside a denied block; a denied port is refused on
/// any address; loopback always passes.
const EGRESS_POLICY: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: host-net}
spec:
  runtime:
    network:
      egress:
        allow: ["192.0.2.77/32", "2001:db8::77/128"]
        deny: ["192.0.2.0/24", "2001:db8::/32"]
        denyPorts: [2525]
"#;

fn steps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const LISTENERS: [&str; 7] = [
    "listen 127.0.0.1:8080",
    "listen [::1]:8080",
    "listen 192.0.2.77:8080",
    "listen 192.0.2.77:2525",
    "listen 192.0.2.78:8080",
    "listen [2001:db8::77]:8080",
    "listen [2001:db8::78]:8080",
];

const CONNECTS: [&str; 8] = [
    "connect 127.0.0.1:8080",
    "connect [::1]:8080",
    "connect 192.0.2.77:8080",
    "connect 192.0.2.78:8080",
    "connect 192.0.2.77:2525",
    "connect [2001:db8::77]:8080",
    "connect [2001:db8::78]:8080",
    "connect [::ffff:192.0.2.78]:8080",
];

#[test]
fn egress_refused_inside_the_guarded_cgroup_and_allowed_outside() {
    if !root_or_skip("egress_refused_inside_the_guarded_cgroup_and_allowed_outside") {
        return;
    }
    let env = TestEnv::new("egress");
    let guarded = env.cgroup("guarded");
    let other = env.cgroup("other");
    let agent = env.start_agent(&env.policy(EGRESS_POLICY), &[&guarded]);
    let log = agent.log();
    for hook in ["connect4", "connect6", "bind4", "bind6"] {
        assert!(
            log.contains(&format!("(cgroup/{hook}): attached")),
            "cgroup/{hook} not attached:\n{log}"
        );
    }

    // Outside: an unguarded cgroup of the same hierarchy; everything connects.
    let mut plan = steps(&LISTENERS);
    plan.push(format!("enter {}", other.display()));
    plan.extend(steps(&CONNECTS));
    let outside = run_child(&plan);
    for c in CONNECTS {
        assert_eq!(outside.result(c), "ok", "{c} outside: {outside:#?}");
    }

    // Inside: the listeners are made before entering the cgroup (binding 192.0.2.x needs no
    // rule), then the connects run in the guarded cgroup.
    let mut plan = steps(&LISTENERS);
    plan.push(format!("enter {}", guarded.display()));
    plan.extend(steps(&CONNECTS));
    let inside = run_child(&plan);
    let want = [
        ("connect 127.0.0.1:8080", "ok"),
        ("connect [::1]:8080", "ok"),
        ("connect 192.0.2.77:8080", "ok"),
        ("connect 192.0.2.78:8080", EPERM),
        ("connect 192.0.2.77:2525", EPERM),
        ("connect [2001:db8::77]:8080", "ok"),
        ("connect [2001:db8::78]:8080", EPERM),
        ("connect [::ffff:192.0.2.78]:8080", EPERM),
    ];
    for (step, result) in want {
        assert_eq!(inside.result(step), result, "{step} inside: {inside:#?}");
    }

    // One event per denial, with the right fields; none for the unguarded child.
    let cgroup_id = mcp_guard_agent::bpf::fs::cgroup_id(&guarded).unwrap();
    for (addr, port) in [
        ("192.0.2.78", 8080),
        ("192.0.2.77", 2525),
        ("2001:db8::78", 8080),
        ("::ffff:192.0.2.78", 8080),
    ] {
        let ev = env.wait_event(|e| e["addr"] == addr && e["port"] == port);
        assert_eq!(ev["kind"], "connect", "{ev}");
        assert_eq!(ev["verdict"], "denied", "{ev}");
        assert_eq!(ev["cgroup_id"], cgroup_id, "{ev}");
        assert_eq!(ev["slot"], 0, "{ev}");
        assert_eq!(ev["pid"], inside.pid, "{ev}");
        assert_eq!(ev["comm"], Value::from(inside.comm.as_str()), "{ev}");
    }
    let events = env.events();
    assert_eq!(events.len(), 4, "exactly the four denials: {events:#?}");
    agent.stop();
}

const CONFINE_POLICY: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: host-bind}
spec:
  runtime:
    network:
      confineListeners: true
"#;

#[test]
fn wildcard_binds_are_rewritten_to_loopback() {
    if !root_or_skip("wildcard_binds_are_rewritten_to_loopback") {
        return;
    }
    let env = TestEnv::new("bind");
    let guarded = env.cgroup("guarded");
    let agent = env.start_agent(&env.policy(CONFINE_POLICY), &[&guarded]);

    let binds = [
        "bind 0.0.0.0:9090",
        "bind [::]:9093",
        "bind [::ffff:0.0.0.0]:9094",
        "udp-bind [::]:9095",
        "bind 127.0.0.1:9091",
        "bind 192.0.2.77:9092",
    ];
    let outside = run_child(&steps(&binds));
    assert_eq!(outside.result("bind 0.0.0.0:9090"), "ok 0.0.0.0");
    assert_eq!(outside.result("bind [::]:9093"), "ok ::");
    assert_eq!(
        outside.result("bind [::ffff:0.0.0.0]:9094"),
        "ok ::ffff:0.0.0.0"
    );
    assert_eq!(outside.result("udp-bind [::]:9095"), "ok ::");
    assert_eq!(outside.result("bind 192.0.2.77:9092"), "ok 192.0.2.77");

    let mut plan = vec![format!("enter {}", guarded.display())];
    plan.extend(steps(&binds));
    let inside = run_child(&plan);
    for (step, result) in [
        ("bind 0.0.0.0:9090", "ok 127.0.0.1"),
        // a dual-stack socket (std does not set IPV6_V6ONLY): IPv4 loopback, v4-mapped
        ("bind [::]:9093", "ok ::ffff:127.0.0.1"),
        ("bind [::ffff:0.0.0.0]:9094", "ok ::ffff:127.0.0.1"),
        ("udp-bind [::]:9095", "ok ::ffff:127.0.0.1"),
        ("bind 127.0.0.1:9091", "ok 127.0.0.1"),
        ("bind 192.0.2.77:9092", EPERM),
    ] {
        assert_eq!(inside.result(step), result, "{step}: {inside:#?}");
    }

    // The events carry the address asked for, not the rewritten one.
    let cgroup_id = mcp_guard_agent::bpf::fs::cgroup_id(&guarded).unwrap();
    for (addr, verdict, port) in [
        ("0.0.0.0", "rewritten", 9090),
        ("::", "rewritten", 9093),
        ("::ffff:0.0.0.0", "rewritten", 9094),
        ("::", "rewritten", 9095),
        ("192.0.2.77", "denied", 9092),
    ] {
        let ev = env.wait_event(|e| e["addr"] == addr && e["port"] == port);
        assert_eq!(ev["kind"], "bind", "{ev}");
        assert_eq!(ev["verdict"], verdict, "{ev}");
        assert_eq!(ev["cgroup_id"], cgroup_id, "{ev}");
        assert_eq!(ev["pid"], inside.pid, "{ev}");
        assert_eq!(ev["comm"], Value::from(inside.comm.as_str()), "{ev}");
    }
    assert_eq!(env.events().len(), 5, "{:#?}", env.events());
    agent.stop();
}

/// What the rewrite is for: the server stays reachable for its proxy (which connects to
/// 127.0.0.1) and for nobody else. A dual-stack `[::]` listener (Node's `listen(port)`, Go's
/// `Listen(":port")`) bound in the guarded cgroup answers 127.0.0.1 from that cgroup, and refuses a
/// client outside the cgroup on the namespace's other addresses, which reach the same listener
/// when it is bound outside the guarded cgroup. An IPv6-only socket (which cannot take a v4-mapped
/// address) is confined to `[::1]` instead.
#[test]
fn confined_wildcard_listener_is_reachable_on_loopback_only() {
    if !root_or_skip("confined_wildcard_listener_is_reachable_on_loopback_only") {
        return;
    }
    let env = TestEnv::new("reach");
    let guarded = env.cgroup("guarded");
    let other = env.cgroup("other");
    let agent = env.start_agent(&env.policy(CONFINE_POLICY), &[&guarded]);
    let enter_guarded = format!("enter {}", guarded.display());
    let enter_other = format!("enter {}", other.display());
    let from_outside = [
        "connect 127.0.0.1:9093",
        "connect 192.0.2.77:9093",
        "connect [2001:db8::77]:9093",
    ];

    // Bound outside the guarded cgroup: every address of the namespace reaches it.
    let mut plan = vec![enter_other.clone(), "bind [::]:9093".to_owned()];
    plan.extend(steps(&from_outside));
    let free = run_child(&plan);
    assert_eq!(free.result("bind [::]:9093"), "ok ::", "{free:#?}");
    for step in from_outside {
        assert_eq!(free.result(step), "ok", "{step} (not confined): {free:#?}");
    }

    // Bound inside: IPv4 loopback only (and not ::1, which the v4-mapped address does not cover).
    let mut plan = vec![enter_guarded.clone()];
    plan.extend(steps(&[
        "bind [::]:9093",
        "connect 127.0.0.1:9093",
        "connect [::1]:9093",
    ]));
    plan.push(enter_other.clone());
    plan.extend(steps(&from_outside[1..]));
    let confined = run_child(&plan);
    for (step, result) in [
        ("bind [::]:9093", "ok ::ffff:127.0.0.1"),
        ("connect 127.0.0.1:9093", "ok"),
        ("connect [::1]:9093", ECONNREFUSED),
        ("connect 192.0.2.77:9093", ECONNREFUSED),
        ("connect [2001:db8::77]:9093", ECONNREFUSED),
    ] {
        assert_eq!(confined.result(step), result, "{step}: {confined:#?}");
    }

    // IPv6-only (net.ipv6.bindv6only=1 in the child's namespace, as IPV6_V6ONLY would): ::1.
    let mut plan = steps(&["sysctl net.ipv6.bindv6only=1"]);
    plan.push(enter_guarded);
    plan.extend(steps(&[
        "bind [::]:9094",
        "udp-bind [::]:9095",
        "connect [::1]:9094",
    ]));
    plan.push(enter_other);
    plan.extend(steps(&["connect [2001:db8::77]:9094"]));
    let v6only = run_child(&plan);
    for (step, result) in [
        ("sysctl net.ipv6.bindv6only=1", "ok"),
        ("bind [::]:9094", "ok ::1"),
        ("udp-bind [::]:9095", "ok ::1"),
        ("connect [::1]:9094", "ok"),
        ("connect [2001:db8::77]:9094", ECONNREFUSED),
    ] {
        assert_eq!(v6only.result(step), result, "{step}: {v6only:#?}");
    }

    // One rewrite event per confined bind, none for the unguarded cgroup.
    for (port, pid) in [(9093, confined.pid), (9094, v6only.pid), (9095, v6only.pid)] {
        let ev = env.wait_event(|e| e["addr"] == "::" && e["port"] == port);
        assert_eq!(ev["verdict"], "rewritten", "{ev}");
        assert_eq!(ev["pid"], pid, "{ev}");
    }
    assert_eq!(env.events().len(), 3, "{:#?}", env.events());
    agent.stop();
}

const POD_POLICY: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: host-pod}
spec:
  runtime:
    network:
      egress:
        deny: ["192.0.2.78/32"]
      confineListeners: true
"#;

/// Kubernetes mode's layout on the host: the agent guards a pod's cgroup (here `pod`, with the
/// proxy's public ports 8080 and 9464) before any container exists. Then no agent runs, and the
/// container cgroups are created: a process started in one is confined from its first syscall
/// by the kernel alone (found through its ancestor at the pod's level), the public ports keep
/// their wildcard binds (TCP only), and a sibling tree outside the pod is not affected. A restarted
/// agent re-adopts it all (levels and ports included) and reports what happened while it was away.
#[test]
fn a_pod_cgroup_confines_containers_created_after_it_was_guarded() {
    if !root_or_skip("a_pod_cgroup_confines_containers_created_after_it_was_guarded") {
        return;
    }
    let env = TestEnv::new("pod");
    let pod = env.cgroup("pod");
    let policy = env.policy(POD_POLICY);
    let args = ["--public-port", "8080", "--public-port", "9464"];
    let agent = env.start_agent_with(&policy, &[&pod], &args);
    let log = agent.stop();
    assert!(
        log.contains("and every cgroup beneath it (level 2)"),
        "the pod's level is set:\n{log}"
    );

    // Created now, with no agent running: the containers of the pod, and another pod's.
    let container = env.cgroup("pod/server");
    let other = env.cgroup("other-pod/server");
    let (pod_id, container_id, other_id) = (
        mcp_guard_agent::bpf::fs::cgroup_id(&pod).unwrap(),
        mcp_guard_agent::bpf::fs::cgroup_id(&container).unwrap(),
        mcp_guard_agent::bpf::fs::cgroup_id(&other).unwrap(),
    );
    let plan = |cgroup: &std::path::Path| {
        let mut plan = steps(&["listen 192.0.2.77:7070", "listen 192.0.2.78:7070"]);
        plan.push(format!("enter {}", cgroup.display()));
        plan.extend(steps(&[
            "bind 0.0.0.0:9090",
            "bind [::]:9091",
            "bind 0.0.0.0:8080",
            "bind [::]:9464",
            "udp-bind 0.0.0.0:8080",
            "connect 192.0.2.77:7070",
            "connect 192.0.2.78:7070",
        ]));
        plan
    };

    // Inside the pod. Then, from outside it (same network namespace), who reaches what.
    let mut inside = plan(&container);
    inside.push(format!("enter {}", other.display()));
    inside.extend(steps(&[
        "connect 192.0.2.77:8080",
        "connect 192.0.2.77:9464",
        "connect 192.0.2.77:9090",
        "connect 127.0.0.1:9090",
    ]));
    let confined = run_child(&inside);
    for (step, result) in [
        ("bind 0.0.0.0:9090", "ok 127.0.0.1"),
        ("bind [::]:9091", "ok ::ffff:127.0.0.1"),
        ("bind 0.0.0.0:8080", "ok 0.0.0.0"),
        ("bind [::]:9464", "ok ::"),
        ("udp-bind 0.0.0.0:8080", "ok 127.0.0.1"),
        ("connect 192.0.2.77:7070", "ok"),
        ("connect 192.0.2.78:7070", EPERM),
        ("connect 192.0.2.77:8080", "ok"),
        ("connect 192.0.2.77:9464", "ok"),
        ("connect 192.0.2.77:9090", ECONNREFUSED),
        ("connect 127.0.0.1:9090", "ok"),
    ] {
        assert_eq!(confined.result(step), result, "{step}: {confined:#?}");
    }

    // The sibling tree: untouched.
    let free = run_child(&plan(&other));
    for (step, result) in [
        ("bind 0.0.0.0:9090", "ok 0.0.0.0"),
        ("bind [::]:9091", "ok ::"),
        ("udp-bind 0.0.0.0:8080", "ok 0.0.0.0"),
        ("connect 192.0.2.78:7070", "ok"),
    ] {
        assert_eq!(free.result(step), result, "{step}: {free:#?}");
    }

    // A restarted agent re-adopts the pins and delivers what the kernel recorded meanwhile: the
    // rewrites and the denial, naming the container's cgroup and the pod's that guarded it; none
    // for the public ports or the other pod.
    let agent = env.start_agent_with(&policy, &[&pod], &args);
    assert!(agent.log().contains("maps re-adopted"), "{}", agent.log());
    for (kind, addr, port, verdict) in [
        ("bind", "0.0.0.0", 9090, "rewritten"),
        ("bind", "::", 9091, "rewritten"),
        ("bind", "0.0.0.0", 8080, "rewritten"),
        ("connect", "192.0.2.78", 7070, "denied"),
    ] {
        let ev = env.wait_event(|e| e["kind"] == kind && e["addr"] == addr && e["port"] == port);
        assert_eq!(ev["verdict"], verdict, "{ev}");
        assert_eq!(ev["cgroup_id"], container_id, "{ev}");
        assert_eq!(ev["guard_cgroup_id"], pod_id, "{ev}");
        assert_eq!(ev["pid"], confined.pid, "{ev}");
    }
    let events = env.events();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(
        events.iter().all(|e| e["cgroup_id"] != other_id),
        "{events:#?}"
    );

    // Still in force after the restart, for a container created now.
    let late = env.cgroup("pod/sidecar");
    let mut plan = vec![format!("enter {}", late.display())];
    plan.extend(steps(&["bind 0.0.0.0:9092", "bind 0.0.0.0:8080"]));
    let after = run_child(&plan);
    assert_eq!(
        after.result("bind 0.0.0.0:9092"),
        "ok 127.0.0.1",
        "{after:#?}"
    );
    assert_eq!(
        after.result("bind 0.0.0.0:8080"),
        "ok 0.0.0.0",
        "{after:#?}"
    );
    agent.stop();
}

/// Only a TCP socket keeps a public port's wildcard bind; other sockets are confined like any.
/// SCTP stream sockets (where the kernel has SCTP) are rewritten to loopback even on a public port;
/// an MPTCP socket binds through its first subflow, a TCP socket, so the hook sees TCP and the port
/// stays public (it is a TCP listener to clients). An IPv6 socket that is neither TCP nor UDP (here
/// UDP-Lite) cannot be checked for IPV6_V6ONLY, so `::` becomes `::1`, which binds whether it is
/// IPv6-only or not (a v4-mapped address would fail on an IPv6-only one).
#[test]
fn only_tcp_keeps_a_public_port_and_other_ipv6_sockets_bind_loopback() {
    if !root_or_skip("only_tcp_keeps_a_public_port_and_other_ipv6_sockets_bind_loopback") {
        return;
    }
    let env = TestEnv::new("proto");
    let pod = env.cgroup("pod");
    let args = [
        "--public-port",
        "8080",
        "--public-port",
        "8081",
        "--public-port",
        "8082",
    ];
    let agent = env.start_agent_with(&env.policy(CONFINE_POLICY), &[&pod], &args);
    let mut plan = vec![format!("enter {}", pod.display())];
    plan.extend(steps(&[
        "raw-bind stream/6 0.0.0.0:8080",
        "raw-bind stream/262 0.0.0.0:8081",
        "raw-bind stream/132 0.0.0.0:8082",
        "raw-bind stream/132 [::]:8082",
        "raw-bind dgram/136/v6only [::]:9095",
        "raw-bind dgram/136 [::]:9096",
        "raw-bind dgram/17/v6only [::]:9097",
        "raw-bind dgram/17 [::]:9098",
    ]));
    let inside = run_child(&plan);
    let result = |step: &str| inside.result(step).to_owned();
    assert_eq!(result("raw-bind stream/6 0.0.0.0:8080"), "ok 0.0.0.0");
    // EPROTONOSUPPORT: no MPTCP (or SCTP) in this kernel.
    let unsupported = "errno 93";
    let mptcp = result("raw-bind stream/262 0.0.0.0:8081");
    assert!(
        mptcp == "ok 0.0.0.0" || mptcp == unsupported,
        "MPTCP: {inside:#?}"
    );
    let sctp4 = result("raw-bind stream/132 0.0.0.0:8082");
    assert!(
        sctp4 == "ok 127.0.0.1" || sctp4 == unsupported,
        "an SCTP socket keeps no public port: {inside:#?}"
    );
    let sctp6 = result("raw-bind stream/132 [::]:8082");
    assert!(
        sctp6 == "ok ::1" || sctp6 == unsupported,
        "SCTP over IPv6: {inside:#?}"
    );
    for (step, bound) in [
        ("raw-bind dgram/136/v6only [::]:9095", "ok ::1"),
        ("raw-bind dgram/136 [::]:9096", "ok ::1"),
        ("raw-bind dgram/17/v6only [::]:9097", "ok ::1"),
        ("raw-bind dgram/17 [::]:9098", "ok ::ffff:127.0.0.1"),
    ] {
        assert_eq!(result(step), bound, "{step}: {inside:#?}");
    }
    for port in [9095, 9096, 9097, 9098] {
        let ev = env.wait_event(|e| e["port"] == port);
        assert_eq!(
            (ev["kind"].as_str(), ev["verdict"].as_str()),
            (Some("bind"), Some("rewritten")),
            "{ev}"
        );
    }
    agent.stop();
}
