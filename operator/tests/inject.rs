#![allow(clippy::unwrap_used)]
//! The sidecar injection (`mcp_guard_operator::inject`): snapshots of injected fixture pods
//! (`tests/inject/*.yaml`), plus assertions for idempotence, opt-in, untouched parts and every error.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_guard_operator::inject::{
    AUDIT_LOG, InjectConfig, InjectError, Namespace, Outcome, POLICY_FILE, PROXY_CONTAINER, inject,
};

const POLICIES: [&str; 5] = [
    "filesystem-readonly",
    "github",
    "web-search",
    "minimal",
    "agents-default",
];

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("inject/", $name, ".yaml"))
    };
}

fn parse(yaml: &str) -> Pod {
    serde_saphyr::from_str(yaml).unwrap()
}

fn cfg() -> InjectConfig {
    InjectConfig::new("ghcr.io/mcp-guard/mcp-guard-proxy:0.1.0", "0.1.0")
}

/// A namespace's labels and annotations.
#[derive(Default)]
struct Ns {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Ns {
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    fn view<'a>(&'a self, name: &'a str) -> Namespace<'a> {
        Namespace {
            name,
            labels: &self.labels,
            annotations: &self.annotations,
        }
    }
}

fn run_in(pod: &Pod, ns: &Ns) -> Result<Outcome, InjectError> {
    let exists = |name: &str| POLICIES.contains(&name);
    inject(pod, &ns.view("tools"), &exists, &cfg())
}

fn run(pod: &Pod) -> Result<Outcome, InjectError> {
    run_in(pod, &Ns::default())
}

/// Injects `pod` (which must be injected) and checks what every injected pod must satisfy.
fn injected_in(pod: &Pod, ns: &Ns) -> Pod {
    let out = match run_in(pod, ns).unwrap() {
        Outcome::Inject(out) => *out,
        other => panic!("expected Inject, got {other:?}"),
    };
    check_valid(&out);
    // Deterministic, and idempotent: a second admission changes nothing.
    assert_eq!(
        run_in(pod, ns).unwrap(),
        Outcome::Inject(Box::new(out.clone()))
    );
    assert_eq!(run_in(&out, ns).unwrap(), Outcome::AlreadyInjected);
    out
}

fn injected(pod: &Pod) -> Pod {
    injected_in(pod, &Ns::default())
}

/// What the API server would reject, or what would break a guarded pod.
fn check_valid(pod: &Pod) {
    let spec = pod.spec.as_ref().unwrap();
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for c in &all {
        assert!(names.insert(&c.name), "duplicate container name {}", c.name);
        let mut port_names = BTreeSet::new();
        for p in c.ports.iter().flatten() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            assert!(
                numbers.insert((p.container_port, proto)),
                "port {} declared twice",
                p.container_port
            );
            if let Some(n) = &p.name {
                assert!(n.len() <= 15, "port name {n} too long");
                assert!(
                    port_names.insert(n),
                    "duplicate port name {n} in {}",
                    c.name
                );
            }
        }
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes.len(), spec.volumes.as_ref().map_or(0, Vec::len));
    for c in &all {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                volumes.contains(m.name.as_str()),
                "{} mounts missing {}",
                c.name,
                m.name
            );
        }
    }
    let meta = &pod.metadata;
    assert_eq!(meta.labels.as_ref().unwrap()["mcpguard.io/guarded"], "true");
    assert_eq!(
        meta.annotations.as_ref().unwrap()["mcpguard.io/injected"],
        "0.1.0"
    );
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

// ---- snapshots --------------------------------------------------------------------------------

#[test]
fn http_by_port_name() {
    let out = injected(&parse(fixture!("http-port-name")));
    let proxy = container(&out, PROXY_CONTAINER);
    assert_eq!(
        proxy.args.as_deref().unwrap(),
        [
            "--policy",
            POLICY_FILE,
            "--listen",
            "0.0.0.0:8080",
            "--upstream",
            "http://127.0.0.1:18080",
            "--metrics",
            "0.0.0.0:9464",
            "--log",
            "/dev/stdout"
        ]
    );
    assert_eq!(env(container(&out, "server"), "PORT"), Some("18080"));
    insta::assert_json_snapshot!("http_port_name", out);
}

#[test]
fn http_by_port_number() {
    let out = injected(&parse(fixture!("http-port-number")));
    let server = container(&out, "server");
    let ports = server.ports.as_ref().unwrap();
    assert_eq!(ports[0].container_port, 13000);
    assert_eq!(ports[0].name.as_deref(), Some("mcp-server"));
    assert_eq!(ports[1].name.as_deref(), Some("debug"), "other ports stay");
    insta::assert_json_snapshot!("http_port_number", out);
}

#[test]
fn http_default_single_port() {
    let out = injected(&parse(fixture!("http-default-port")));
    assert_eq!(env(container(&out, "search"), "PORT"), Some("7000"));
    insta::assert_json_snapshot!("http_default_port", out);
}

#[test]
fn stdio_with_command() {
    let out = injected(&parse(fixture!("stdio-command")));
    let server = container(&out, "server");
    let command = server.command.as_deref().unwrap();
    assert_eq!(command[0], "/mcp-guard/bin/mcp-guard-proxy");
    let dashdash = command.iter().position(|a| a == "--").unwrap();
    assert_eq!(
        command[dashdash + 1..],
        [
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/srv/data"
        ]
    );
    assert!(command.contains(&"0.0.0.0:3000".to_owned()));
    let log = command.iter().position(|a| a == "--log").unwrap();
    assert_eq!(
        (command[log + 1].as_str(), log < dashdash),
        (AUDIT_LOG, true),
        "the proxy's audit records go to the container's stdout"
    );
    assert_eq!(server.args, None);
    assert_eq!(
        env(server, "POD_NAME"),
        Some("kept-as-the-user-set-it"),
        "the user's env wins"
    );
    assert_eq!(
        server.security_context.as_ref().unwrap().run_as_user,
        Some(1000),
        "the server's securityContext is unchanged"
    );
    assert!(
        server.liveness_probe.as_ref().unwrap().exec.is_some(),
        "own probe kept"
    );
    assert!(
        server.readiness_probe.as_ref().unwrap().http_get.is_some(),
        "probe added"
    );
    container(&out, "mcp-guard-install");
    insta::assert_json_snapshot!("stdio_command", out);
}

#[test]
fn stdio_without_ports() {
    let out = injected(&parse(fixture!("stdio-no-ports")));
    let ports = container(&out, "time").ports.clone().unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("mcp"));
    assert_eq!(ports[0].container_port, 8080);
    insta::assert_json_snapshot!("stdio_no_ports", out);
}

#[test]
fn namespace_label_opts_in() {
    let pod = parse(fixture!("namespace-opt-in"));
    let ns = Ns::default()
        .label("mcpguard.io/injection", "enabled")
        .annotation("mcpguard.io/policy", "agents-default");
    let out = injected_in(&pod, &ns);
    assert_eq!(
        out.metadata.annotations.as_ref().unwrap()["mcpguard.io/policy"],
        "agents-default",
        "the resolved policy is written back to the pod"
    );
    insta::assert_json_snapshot!("namespace_opt_in", out);

    // The pod's own policy annotation wins over the namespace's.
    let mut own = pod.clone();
    own.metadata.annotations = Some(BTreeMap::from([(
        "mcpguard.io/policy".to_owned(),
        "minimal".to_owned(),
    )]));
    let out = injected_in(&own, &ns);
    assert_eq!(
        out.metadata.annotations.unwrap()["mcpguard.io/policy"],
        "minimal"
    );

    // The pod opts out of its namespace's injection.
    let mut opt_out = pod.clone();
    opt_out.metadata.annotations = Some(BTreeMap::from([(
        "mcpguard.io/inject".to_owned(),
        "false".to_owned(),
    )]));
    assert_eq!(run_in(&opt_out, &ns).unwrap(), Outcome::Skip);
    // And a namespace without the label injects nothing.
    assert_eq!(run(&pod).unwrap(), Outcome::Skip);
    let disabled = Ns::default().label("mcpguard.io/injection", "disabled");
    assert_eq!(run_in(&pod, &disabled).unwrap(), Outcome::Skip);
}

#[test]
fn sidecar_name_clash() {
    let pod = parse(fixture!("name-clash"));
    let out = injected(&pod);
    let proxy = container(&out, "mcp-guard-proxy-1");
    let names: Vec<_> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        names,
        [Some("mcp-server".into()), Some("guard-metrics-1".into())]
    );
    assert!(
        proxy
            .args
            .as_ref()
            .unwrap()
            .contains(&"0.0.0.0:9465".to_owned())
    );
    let server = container(&out, "server");
    assert_eq!(
        server.ports.as_ref().unwrap()[0].name.as_deref(),
        Some("mcp-server-1")
    );
    assert_eq!(
        container(&out, "mcp-guard-proxy"),
        container(&pod, "mcp-guard-proxy")
    );
    insta::assert_json_snapshot!("name_clash", out);

    // stdio: the init container takes a suffixed name too.
    let mut stdio = pod;
    let spec = stdio.spec.as_mut().unwrap();
    spec.containers.truncate(1);
    spec.containers[0].command = Some(vec!["server".into()]);
    let a = stdio.metadata.annotations.as_mut().unwrap();
    a.insert("mcpguard.io/transport".into(), "stdio".into());
    let out = injected(&stdio);
    container(&out, "mcp-guard-install-1");
    let volumes: Vec<_> = out
        .spec
        .unwrap()
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        volumes,
        [
            "mcp-guard-policy",
            "mcp-guard-audit",
            "mcp-guard-policy-1",
            "mcp-guard-bin"
        ]
    );
}

#[test]
fn probes_check_the_server() {
    let out = injected(&parse(fixture!("probes")));
    let server = container(&out, "server");
    // Probes go to the proxy's port (by number: the name moved to the proxy container), which
    // forwards GETs to the server, so they keep working when the server's listener is confined to
    // loopback; hooks go to the server's own port (postStart runs before the proxy starts).
    let live = server
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.port, IntOrString::Int(8080));
    let ready = server
        .readiness_probe
        .as_ref()
        .unwrap()
        .tcp_socket
        .as_ref()
        .unwrap();
    assert_eq!(ready.port, IntOrString::Int(8080));
    let startup = server
        .startup_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        startup.port,
        IntOrString::String("admin".into()),
        "other ports stay"
    );
    let pre_stop = server
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    assert_eq!(
        pre_stop.http_get.as_ref().unwrap().port,
        IntOrString::Int(18080)
    );
    let env: Vec<_> = server
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["PORT", "HOST"], "PORT replaced in place");
    assert_eq!(self::env(server, "PORT"), Some("18080"));
    insta::assert_json_snapshot!("probes", out);
}

#[test]
fn host_port_moves_to_the_proxy() {
    let pod = parse(fixture!("host-port"));
    let out = injected(&pod);
    let original = pod.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0]
        .clone();
    let proxy = container(&out, PROXY_CONTAINER);
    assert_eq!(proxy.ports.as_ref().unwrap()[0], original);
    let server = container(&out, "server");
    assert_eq!(server.ports.as_ref().unwrap()[0].host_port, None);
    insta::assert_json_snapshot!("host_port", out);
}

#[test]
fn everything_else_is_untouched() {
    let pod = parse(fixture!("others-untouched"));
    let out = injected(&pod);
    let (before, after) = (pod.spec.as_ref().unwrap(), out.spec.as_ref().unwrap());
    assert_eq!(after.init_containers, before.init_containers);
    assert_eq!(after.containers[1], before.containers[1], "cache");
    assert_eq!(after.containers.len(), 3);
    assert_eq!(
        after.containers[2].name, PROXY_CONTAINER,
        "the proxy goes last"
    );
    let volumes = after.volumes.as_ref().unwrap();
    assert_eq!(volumes[..2], before.volumes.as_ref().unwrap()[..]);
    assert_eq!(after.security_context, before.security_context);
    assert_eq!(after.service_account_name, before.service_account_name);
    let mut labels = out.metadata.labels.clone().unwrap();
    labels.remove("mcpguard.io/guarded");
    assert_eq!(Some(labels), pod.metadata.labels);
    let mut annotations = out.metadata.annotations.clone().unwrap();
    annotations.remove("mcpguard.io/injected");
    assert_eq!(Some(annotations), pod.metadata.annotations);
    assert_eq!(
        container(&out, "server").volume_mounts,
        container(&pod, "server").volume_mounts
    );
    insta::assert_json_snapshot!("others_untouched", out);
}

// ---- outcomes without injection ---------------------------------------------------------------

#[test]
fn pods_without_opt_in_are_skipped() {
    let mut pod = parse(fixture!("http-port-name"));
    pod.metadata.annotations = None;
    assert_eq!(run(&pod).unwrap(), Outcome::Skip);
    let mut pod = parse(fixture!("http-port-name"));
    let a = pod.metadata.annotations.as_mut().unwrap();
    a.insert("mcpguard.io/inject".into(), "false".into());
    assert_eq!(run(&pod).unwrap(), Outcome::Skip);
}

#[test]
fn marked_pods_are_already_injected() {
    let mut pod = injected(&parse(fixture!("http-port-name")));
    let a = pod.metadata.annotations.as_mut().unwrap();
    // Even annotations that would be errors are not looked at again.
    a.insert("mcpguard.io/transport".into(), "carrier-pigeon".into());
    assert_eq!(run(&pod).unwrap(), Outcome::AlreadyInjected);
}

#[test]
fn the_injected_annotation_alone_does_not_skip_the_guard() {
    // A pod author setting mcpguard.io/injected by hand still gets the proxy.
    let mut pod = parse(fixture!("http-port-name"));
    let a = pod.metadata.annotations.as_mut().unwrap();
    a.insert("mcpguard.io/injected".into(), "0.0.9".into());
    let out = injected(&pod);
    assert!(
        out.spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .any(|c| c.name == "mcp-guard-proxy")
    );
    assert_eq!(
        out.metadata.annotations.as_ref().unwrap()["mcpguard.io/injected"],
        cfg().version,
        "the annotation now says who injected"
    );
    // Nor does a look-alike container running some other image.
    let mut forged = parse(fixture!("http-port-name"));
    forged
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("mcpguard.io/injected".into(), "0.0.9".into());
    let spec = forged.spec.as_mut().unwrap();
    let mut fake = spec.containers[0].clone();
    fake.name = "mcp-guard-proxy".into();
    fake.image = Some("busybox".into());
    fake.ports = None;
    spec.containers.push(fake);
    assert!(matches!(run(&forged).unwrap(), Outcome::Inject(_)));
}

#[test]
fn config_defaults() {
    let cfg = cfg();
    assert_eq!(cfg.metrics_port, 9464);
    assert_eq!(cfg.image_pull_policy, None);
    let r = &cfg.resources;
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "10m");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "32Mi");
    assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "128Mi");
    assert!(!r.limits.as_ref().unwrap().contains_key("cpu"));
}

// ---- errors -----------------------------------------------------------------------------------

/// A one-container pod with the given annotations (YAML flow-mapping entries) and container body.
fn pod(annotations: &str, container: &str) -> Pod {
    parse(&format!(
        "metadata:\n  name: p\n  annotations: {{ {annotations} }}\nspec:\n  containers:\n{container}"
    ))
}

const HTTP_8080: &str =
    "    - name: server\n      image: s\n      ports: [{name: http, containerPort: 8080}]\n";
const OPT_IN: &str = "mcpguard.io/inject: 'true', mcpguard.io/policy: minimal";

fn error(pod: &Pod) -> String {
    error_in(pod, &Ns::default())
}

fn error_in(pod: &Pod, ns: &Ns) -> String {
    match run_in(pod, ns) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

#[track_caller]
fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?} does not mention {needle:?}"
        );
    }
}

#[test]
fn invalid_inject_value() {
    let e = error(&pod(
        "mcpguard.io/inject: 'yes', mcpguard.io/policy: minimal",
        HTTP_8080,
    ));
    assert_mentions(
        &e,
        &["mcpguard.io/inject", "\"yes\"", "\"true\"", "\"false\""],
    );
}

#[test]
fn invalid_namespace_label() {
    let p = pod("mcpguard.io/policy: minimal", HTTP_8080);
    let e = error_in(&p, &Ns::default().label("mcpguard.io/injection", "on"));
    assert_mentions(
        &e,
        &[
            "mcpguard.io/injection",
            "\"on\"",
            "\"enabled\"",
            "\"disabled\"",
        ],
    );
}

#[test]
fn namespace_disabled_refuses_pods_asking_for_the_guard() {
    let e = error_in(
        &pod(OPT_IN, HTTP_8080),
        &Ns::default().label("mcpguard.io/injection", "disabled"),
    );
    assert_mentions(
        &e,
        &[
            "mcpguard.io/inject",
            "mcpguard.io/injection=disabled",
            "\"tools\"",
        ],
    );
}

#[test]
fn invalid_transport() {
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/transport: sse"),
        HTTP_8080,
    ));
    assert_mentions(
        &e,
        &["mcpguard.io/transport", "\"sse\"", "\"http\"", "\"stdio\""],
    );
}

#[test]
fn missing_policy() {
    let e = error(&pod("mcpguard.io/inject: 'true'", HTTP_8080));
    assert_mentions(&e, &["mcpguard.io/policy", "\"tools\""]);
    let e = error_in(
        &pod("", HTTP_8080),
        &Ns::default().label("mcpguard.io/injection", "enabled"),
    );
    assert_mentions(&e, &["set the annotation mcpguard.io/policy"]);
}

#[test]
fn invalid_policy_name() {
    let e = error(&pod(
        "mcpguard.io/inject: 'true', mcpguard.io/policy: Bad_Name",
        HTTP_8080,
    ));
    assert_mentions(
        &e,
        &[
            "mcpguard.io/policy",
            "\"Bad_Name\"",
            "not a valid McpGuardPolicy name",
        ],
    );
    let ns = Ns::default()
        .label("mcpguard.io/injection", "enabled")
        .annotation("mcpguard.io/policy", "");
    let e = error_in(&pod("", HTTP_8080), &ns);
    assert_mentions(&e, &["namespace \"tools\" annotation mcpguard.io/policy"]);
}

#[test]
fn policy_not_found() {
    let e = error(&pod(
        "mcpguard.io/inject: 'true', mcpguard.io/policy: nope",
        HTTP_8080,
    ));
    assert_eq!(
        e,
        "McpGuardPolicy \"nope\" not found in namespace \"tools\"; create it or fix the annotation \
         mcpguard.io/policy"
    );
}

#[test]
fn invalid_port_annotation() {
    for bad in ["0", "65536", "HTTP", "a_b"] {
        let e = error(&pod(
            &format!("{OPT_IN}, mcpguard.io/port: '{bad}'"),
            HTTP_8080,
        ));
        assert_mentions(&e, &["mcpguard.io/port", bad, "1 to 65535"]);
    }
}

#[test]
fn port_name_not_found() {
    let e = error(&pod(&format!("{OPT_IN}, mcpguard.io/port: web"), HTTP_8080));
    assert_mentions(&e, &["mcpguard.io/port", "\"web\"", "server/http:8080"]);
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/port: '9000'"),
        HTTP_8080,
    ));
    assert_mentions(&e, &["mcpguard.io/port", "\"9000\""]);
}

#[test]
fn ambiguous_port() {
    let two = "    - name: a\n      image: a\n      ports: [{name: http, containerPort: 8080}]\n    \
               - name: b\n      image: b\n      ports: [{name: http, containerPort: 9090}]\n";
    let e = error(&pod(&format!("{OPT_IN}, mcpguard.io/port: http"), two));
    assert_mentions(&e, &["mcpguard.io/port", "a/http:8080", "b/http:9090"]);
    // Without the annotation, several TCP ports are ambiguous too.
    let e = error(&pod(OPT_IN, two));
    assert_mentions(&e, &["mcpguard.io/port", "several TCP ports"]);
    // And no port at all cannot be guarded over HTTP.
    let e = error(&pod(OPT_IN, "    - name: server\n      image: s\n"));
    assert_mentions(&e, &["mcpguard.io/port", "mcpguard.io/transport: stdio"]);
}

#[test]
fn udp_port() {
    let udp = "    - name: server\n      image: s\n      ports: [{name: dns, containerPort: 53, protocol: UDP}]\n";
    let e = error(&pod(&format!("{OPT_IN}, mcpguard.io/port: dns"), udp));
    assert_mentions(&e, &["mcpguard.io/port", "UDP", "TCP"]);
}

#[test]
fn server_port_out_of_range_or_clashing() {
    let high =
        "    - name: server\n      image: s\n      ports: [{name: http, containerPort: 60000}]\n";
    let e = error(&pod(OPT_IN, high));
    assert_mentions(&e, &["mcpguard.io/server-port", "70000", "65535"]);
    // With the annotation the same pod is fine.
    let ok = pod(&format!("{OPT_IN}, mcpguard.io/server-port: '60001'"), high);
    assert!(matches!(run(&ok).unwrap(), Outcome::Inject(_)));

    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/server-port: '70000'"),
        HTTP_8080,
    ));
    assert_mentions(&e, &["mcpguard.io/server-port", "\"70000\"", "1 to 65535"]);

    // The default P+10000 is declared by another container.
    let clash = "    - name: server\n      image: s\n      ports: [{name: http, containerPort: 8080}]\n    \
                 - name: other\n      image: o\n      ports: [{name: o, containerPort: 18080, protocol: UDP}]\n";
    let e = error(&pod(&format!("{OPT_IN}, mcpguard.io/port: http"), clash));
    assert_mentions(&e, &["mcpguard.io/server-port", "18080", "\"other\""]);
    // The annotation names the proxy's own port.
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/server-port: '8080'"),
        HTTP_8080,
    ));
    assert_mentions(&e, &["mcpguard.io/server-port", "8080", "\"server\""]);
    // server-port makes no sense for stdio.
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/transport: stdio, mcpguard.io/server-port: '9000'"),
        "    - name: server\n      image: s\n      command: [s]\n",
    ));
    assert_mentions(&e, &["mcpguard.io/server-port", "stdio"]);
}

#[test]
fn stdio_without_command() {
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/transport: stdio"),
        HTTP_8080,
    ));
    assert_mentions(
        &e,
        &[
            "mcpguard.io/transport",
            "\"server\"",
            "command",
            "ENTRYPOINT",
        ],
    );
}

#[test]
fn stdio_which_container() {
    let two = "    - name: a\n      image: a\n      command: [a]\n    - name: b\n      image: b\n      \
               command: [b]\n      ports: [{name: mcp, containerPort: 3000}]\n";
    let stdio = format!("{OPT_IN}, mcpguard.io/transport: stdio");
    let e = error(&pod(&stdio, two));
    assert_mentions(&e, &["mcpguard.io/port", "a, b"]);
    let e = error(&pod(&format!("{stdio}, mcpguard.io/port: '4000'"), two));
    assert_mentions(&e, &["mcpguard.io/port", "4000", "a, b"]);
    // Naming b's port picks b, and leaves a alone.
    let out = match run(&pod(&format!("{stdio}, mcpguard.io/port: mcp"), two)).unwrap() {
        Outcome::Inject(out) => out,
        other => panic!("{other:?}"),
    };
    check_valid(&out);
    assert_eq!(container(&out, "a").command.as_deref().unwrap(), ["a"]);
    assert_eq!(
        container(&out, "b").command.as_ref().unwrap()[0],
        "/mcp-guard/bin/mcp-guard-proxy"
    );
}

#[test]
fn stdio_default_port_taken() {
    let taken = "    - name: server\n      image: s\n      command: [s]\n  initContainers:\n    \
                 - name: side\n      image: i\n      restartPolicy: Always\n      ports: [{containerPort: 8080}]\n";
    let e = error(&pod(
        &format!("{OPT_IN}, mcpguard.io/transport: stdio"),
        taken,
    ));
    assert_mentions(&e, &["mcpguard.io/port", "8080", "\"side\""]);
}

#[test]
fn stdio_mount_path_clash() {
    let mounted = |path: &str| {
        format!(
            "    - name: server\n      image: s\n      command: [s]\n      \
             volumeMounts: [{{name: v, mountPath: {path}}}]\n  volumes: [{{name: v, emptyDir: {{}}}}]\n"
        )
    };
    let stdio = format!("{OPT_IN}, mcpguard.io/transport: stdio");
    let e = error(&pod(&stdio, &mounted("/etc/mcp-guard/policy/")));
    assert_mentions(
        &e,
        &[
            "mcpguard.io/transport",
            "/etc/mcp-guard/policy",
            "\"server\"",
        ],
    );
    // The audit log is the container's stdout: no directory of ours to clash with.
    injected(&pod(&stdio, &mounted("/var/log/mcp-guard")));
}

#[test]
fn no_containers() {
    let e = error(&parse(&format!(
        "metadata:\n  annotations: {{ {OPT_IN} }}\nspec:\n  containers: []\n"
    )));
    assert_mentions(&e, &["mcpguard.io/inject"]);
}
