//! The chart's Grafana dashboards and alert rules, checked without a cluster:
//! - the dashboards are well-formed Grafana JSON (schema 39, stable uids, the `${datasource}` variable);
//! - every metric, label and literal label value they and the alert rules use exists in the code of
//!   the component that exports it (`sidecar/src/metrics.rs`, `operator/src/metrics.rs`,
//!   `node-agent/src/metrics.rs`);
//! - every panel query is valid PromQL for a real Prometheus (Debian's 2.42);
//! - the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`);
//! - the chart ships the dashboards and the rules unchanged, gated by its values.
//!
//! That the queries return data from the real components is tested where the binaries are:
//! `sidecar/tests/prometheus_dashboards.rs` (overview, detectors) and
//! `operator/tests/prometheus_dashboards.rs` (operator health). The kernel dashboard's queries are
//! checked here for syntax, names and labels only, until the node-agent runs in these tests.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use mcp_guard_e2e::prometheus::{self, DASHBOARDS, Prometheus};
use mcp_guard_e2e::{helm, workspace_root};
use serde_json::{Value, json};

const ALERTS: &str = "charts/mcp-guard/alerts/mcp-guard.rules.yaml";
const ALERT_TESTS: &str = "charts/mcp-guard/alerts/mcp-guard.rules.test.yaml";

/// Labels a scrape adds to every series (prometheus-operator's target labels, and the `node` label
/// the chart's monitors add).
const TARGET_LABELS: [&str; 8] = [
    "namespace",
    "pod",
    "node",
    "job",
    "instance",
    "container",
    "endpoint",
    "service",
];

// === well-formed dashboards ===

#[test]
fn dashboards_are_grafana_json_with_stable_uids_and_a_datasource_variable() -> Result<()> {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = prometheus::dashboard(name)?;
        assert_eq!(d["uid"], format!("mcp-guard-{name}"), "{name}: stable uid");
        assert!(uids.insert(d["uid"].to_string()));
        assert_eq!(d["schemaVersion"], 39, "{name}");
        assert!(
            d["title"].as_str().unwrap().starts_with("mcp-guard / "),
            "{name}"
        );
        assert!(
            d["tags"].as_array().unwrap().contains(&json!("mcp-guard")),
            "{name}"
        );
        assert!(
            d["id"].is_null(),
            "{name}: no database id in a shipped dashboard"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let prom_ds = json!({"type": "prometheus", "uid": "${datasource}"});
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"], prom_ds, "{name}: variable {}", v["name"]);
            let q = v["query"]["query"].as_str().unwrap();
            assert!(
                prometheus::label_values(q).is_some(),
                "{name}: variable {}: {q}",
                v["name"]
            );
        }

        let mut ids = BTreeSet::new();
        let mut titles = BTreeSet::new();
        let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_i64().unwrap()),
                "{name}: id of {title}"
            );
            assert!(titles.insert(title), "{name}: two panels titled {title}");
            let g = &p["gridPos"];
            let b = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap());
            assert!(
                b[0] >= 0 && b[2] > 0 && b[0] + b[2] <= 24,
                "{name}: {title}"
            );
            for (other, o) in &boxes {
                let overlap = b[0] < o[0] + o[2]
                    && o[0] < b[0] + b[2]
                    && b[1] < o[1] + o[3]
                    && o[1] < b[1] + b[3];
                assert!(!overlap, "{name}: {title} overlaps {other}");
            }
            boxes.push((title.to_owned(), b));
            match p["type"].as_str().unwrap() {
                "row" | "text" => assert!(p["targets"].is_null(), "{name}: {title}"),
                kind => {
                    assert!(
                        ["stat", "timeseries", "table", "bargauge"].contains(&kind),
                        "{name}: {title}: {kind}"
                    );
                    assert_eq!(p["datasource"], prom_ds, "{name}: {title}");
                    assert!(
                        !p["description"].as_str().unwrap_or_default().is_empty(),
                        "{name}: {title} says what it shows"
                    );
                    let targets = p["targets"].as_array().unwrap();
                    assert!(!targets.is_empty(), "{name}: {title}");
                    let mut refs = BTreeSet::new();
                    for t in targets {
                        assert_eq!(t["datasource"], prom_ds, "{name}: {title}");
                        assert!(refs.insert(t["refId"].as_str().unwrap()), "{name}: {title}");
                        assert!(!t["expr"].as_str().unwrap().is_empty(), "{name}: {title}");
                    }
                }
            }
        }
    }
    Ok(())
}

// === names, labels and values exist in the code ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
struct Metric {
    kind: Kind,
    labels: BTreeSet<String>,
    /// Every string literal of the component's sources: where label values come from.
    literals: &'static BTreeSet<String>,
}

/// The string literal starting at `s[0] == '"'`: (content, rest after the closing quote).
fn string_literal(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 2..])),
            c => out.push(c),
        }
    }
    None
}

fn literals_of(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut rest = text.as_str();
                while let Some(i) = rest.find('"') {
                    match string_literal(&rest[i..]) {
                        Some((lit, after)) => {
                            out.insert(lit);
                            rest = after;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    out
}

/// The metrics a component registers, read from its `metrics.rs`: `Registry::with_prefix(P)`,
/// `registry.register("name", "help", field.clone())`, the type of that field of `struct Metrics`
/// (`Family<Labels, Counter>`, `Gauge`, `Histogram`, ...) and the fields of its label struct.
fn catalogue(crate_dir: &str) -> BTreeMap<String, Metric> {
    let src = workspace_root().join(crate_dir).join("src");
    let text = std::fs::read_to_string(src.join("metrics.rs")).unwrap();
    let literals: &'static BTreeSet<String> = Box::leak(Box::new(literals_of(&src)));
    let prefix = string_literal(text.split("Registry::with_prefix(").nth(1).unwrap())
        .unwrap()
        .0;
    let metrics_struct = text
        .split("pub struct Metrics {")
        .nth(1)
        .unwrap_or_else(|| panic!("{crate_dir}: no struct Metrics"));
    let metrics_struct = &metrics_struct[..metrics_struct.find("\n}").unwrap()];
    let field_type = |field: &str| -> String {
        metrics_struct
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("pub ")
                    .unwrap_or(l)
                    .strip_prefix(&format!("{field}: "))
            })
            .unwrap_or_else(|| panic!("{crate_dir}: no field `{field}`"))
            .trim_end_matches(',')
            .to_owned()
    };
    let struct_fields = |name: &str| -> BTreeSet<String> {
        let body = text
            .split(&format!("struct {name} {{"))
            .nth(1)
            .unwrap_or_else(|| panic!("{crate_dir}: no struct {name}"));
        let body = &body[..body.find('}').unwrap()];
        body.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && l.contains(':'))
            .map(|l| {
                let l = l.strip_prefix("pub ").unwrap_or(l);
                l[..l.find(':').unwrap()].trim().to_owned()
            })
            .collect()
    };
    let mut out = BTreeMap::new();
    for chunk in text.split("register(").skip(1) {
        let chunk = chunk.trim_start();
        let Some((name, rest)) = string_literal(chunk) else {
            continue; // e.g. a function named *register(
        };
        let rest = rest.trim_start().strip_prefix(',').unwrap().trim_start();
        let (_help, rest) = string_literal(rest).unwrap();
        let rest = rest.trim_start().strip_prefix(',').unwrap().trim_start();
        let field: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let ty = field_type(&field);
        let kind = if ty.contains("Histogram") {
            Kind::Histogram
        } else if ty.contains("Counter") {
            Kind::Counter
        } else if ty.contains("Gauge") {
            Kind::Gauge
        } else {
            panic!("{crate_dir}: unknown metric type {ty} of {name}")
        };
        let labels = match ty.strip_prefix("Family<") {
            Some(inner) => struct_fields(inner.split(',').next().unwrap().trim()),
            None => BTreeSet::new(),
        };
        let base = format!("{prefix}_{name}");
        let mut add = |suffix: &str, extra: Option<&str>| {
            let mut labels = labels.clone();
            labels.extend(extra.map(str::to_owned));
            out.insert(
                format!("{base}{suffix}"),
                Metric {
                    kind,
                    labels,
                    literals,
                },
            );
        };
        match kind {
            Kind::Counter => add("_total", None),
            Kind::Gauge => add("", None),
            Kind::Histogram => {
                add("_bucket", Some("le"));
                add("_sum", None);
                add("_count", None);
            }
        }
    }
    assert!(!out.is_empty(), "{crate_dir}: no metrics found");
    out
}

/// Every metric of the components whose sources exist (the node-agent's may not yet).
fn all_metrics() -> BTreeMap<String, Metric> {
    let mut all = BTreeMap::new();
    for dir in ["sidecar", "operator", "node-agent"] {
        if workspace_root().join(dir).join("src/metrics.rs").exists() {
            all.extend(catalogue(dir));
        }
    }
    all
}

/// (label, operator, value) of a `{...}` selector body.
fn matchers(body: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap();
        let name = rest[..name_end].to_owned();
        let after = rest[name_end..].trim_start();
        let op_len =
            if after.starts_with("=~") || after.starts_with("!~") || after.starts_with("!=") {
                2
            } else {
                1
            };
        let op = after[..op_len].to_owned();
        let (value, after) = string_literal(after[op_len..].trim_start()).unwrap();
        out.push((name, op, value));
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Checks one PromQL expression against the catalogue; returns the problems. Names of the
/// node-agent are checked only when its code is there (`agent_present`).
fn check_expr(
    all: &BTreeMap<String, Metric>,
    agent_present: bool,
    what: &str,
    expr: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used: Vec<&Metric> = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("mcp_guard_") {
        let before = rest[..i].trim_end();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        rest = &tail[end..];
        let Some(m) = all.get(name) else {
            if agent_present || !name.starts_with("mcp_guard_agent_") {
                problems.push(format!("{what}: no metric {name} in the code"));
            }
            continue;
        };
        used.push(m);
        // Counters and histograms only through rate()/increase(), or as the difference with an
        // offset of themselves (`x - (x offset w or x * 0)`, which counts a series appearing);
        // gauges never through rate()/increase().
        let in_rate = before.ends_with("rate(") || before.ends_with("increase(");
        let difference = expr.contains(" offset ");
        match m.kind {
            Kind::Gauge if in_rate => {
                problems.push(format!("{what}: rate/increase of the gauge {name}"))
            }
            Kind::Counter | Kind::Histogram
                if !in_rate && !difference && !before.ends_with("label_values(") =>
            {
                problems.push(format!("{what}: {name} used without rate/increase"))
            }
            _ => {}
        }
        if let Some(body) = rest.strip_prefix('{') {
            let body = &body[..body.find('}').unwrap()];
            for (label, op, value) in matchers(body) {
                if !m.labels.contains(&label) && !TARGET_LABELS.contains(&label.as_str()) {
                    problems.push(format!("{what}: {name} has no label {label}"));
                }
                // Literal values of the metric's own labels must be values the code can produce.
                if m.labels.contains(&label) && label != "le" && !value.contains('$') {
                    let values: Vec<&str> = if op.ends_with('~') {
                        value.split('|').collect()
                    } else {
                        vec![value.as_str()]
                    };
                    for v in values {
                        let plain = v.chars().all(|c| c.is_alphanumeric() || "_-".contains(c));
                        if plain && !m.literals.contains(v) {
                            problems.push(format!(
                                "{what}: {name}{{{label}=\"{v}\"}}: no such value in the code"
                            ));
                        }
                    }
                }
            }
        }
    }
    // Grouping labels must belong to a metric of the expression, or be target labels.
    for kw in ["by (", "without ("] {
        for part in expr.split(kw).skip(1) {
            let list = &part[..part.find(')').unwrap()];
            for label in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                if !TARGET_LABELS.contains(&label) && !used.iter().any(|m| m.labels.contains(label))
                {
                    problems.push(format!(
                        "{what}: groups by {label}, which no metric of it has"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_metric_label_and_value_used_exists_in_the_code() -> Result<()> {
    let all = all_metrics();
    let agent_present = all.keys().any(|k| k.starts_with("mcp_guard_agent_"));
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in DASHBOARDS {
        let d = prometheus::dashboard(name)?;
        let mut exprs: Vec<(String, String)> = prometheus::panel_queries(&d)
            .into_iter()
            .map(|q| (format!("{name}: {q}"), q.expr))
            .collect();
        exprs.extend(
            prometheus::query_variables(&d)
                .into_iter()
                .map(|(v, q)| (format!("{name}: ${v}"), q)),
        );
        for (what, expr) in exprs {
            problems.extend(check_expr(&all, agent_present, &what, &expr));
            checked += 1;
        }
    }
    let rules: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(workspace_root().join(ALERTS))?)?;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let what = format!("alert {}", rule["alert"].as_str().unwrap());
            problems.extend(check_expr(
                &all,
                agent_present,
                &what,
                rule["expr"].as_str().unwrap(),
            ));
            checked += 1;
        }
    }
    eprintln!(
        "{checked} expressions checked against {} metrics from the code{}",
        all.len(),
        if agent_present {
            ""
        } else {
            " (node-agent metrics absent: its names unchecked)"
        }
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// The checker itself: a wrong name, label or value is reported.
#[test]
fn the_name_check_catches_mistakes() {
    let all = all_metrics();
    for (expr, needle) in [
        (
            "sum(rate(mcp_guard_operator_reconcile_total[1m]))",
            "no metric",
        ),
        (
            r#"sum by (webhook) (rate(mcp_guard_operator_admissions_total{hook="x"}[1m]))"#,
            "no label hook",
        ),
        (
            r#"increase(mcp_guard_operator_admissions_total{result="rejected"}[1m])"#,
            "no such value",
        ),
        (
            "sum by (tool) (rate(mcp_guard_operator_reconciles_total[1m]))",
            "groups by tool",
        ),
        ("sum(mcp_guard_operator_reconciles_total)", "without rate"),
        ("rate(mcp_guard_operator_leader[5m])", "of the gauge"),
    ] {
        let problems = check_expr(&all, false, "t", expr);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{expr}: {problems:?}"
        );
    }
    assert!(
        check_expr(
            &all,
            false,
            "t",
            r#"sum by (webhook, le) (rate(mcp_guard_operator_admission_duration_seconds_bucket{job=~"$job"}[5m]))"#
        )
        .is_empty()
    );
}

// === a real Prometheus and promtool ===

#[test]
fn every_panel_query_is_valid_promql_for_a_real_prometheus() -> Result<()> {
    let prom = Prometheus::start(&[], &[])?;
    let mut problems = Vec::new();
    for name in DASHBOARDS {
        let d = prometheus::dashboard(name)?;
        let results = prometheus::run_panels(&prom, &d);
        for r in &results {
            if let Err(e) = &r.result {
                problems.push(format!("{name}: {}: {e:#}\n    {}", r.query, r.promql));
            }
        }
        eprintln!(
            "dashboard {name}: {} panel queries parsed and evaluated",
            results.len()
        );
        for (v, q) in prometheus::query_variables(&d) {
            let (selector, _) = prometheus::label_values(&q).unwrap();
            let selector = prometheus::concrete(&d, &selector)?;
            if let Err(e) = prom.series(&selector) {
                problems.push(format!("{name}: ${v}: {e:#}"));
            }
        }
    }
    eprintln!(
        "kernel dashboard: checked for syntax, names and labels only until the node-agent runs in these tests"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A broken query is reported as such, not as "no data".
    assert!(prom.query("sum(rate(x[1m])").is_err());
    Ok(())
}

fn promtool(args: &[&str]) -> Result<String> {
    let out = Command::new(prometheus::promtool()?)
        .args(args)
        .current_dir(workspace_root())
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    Ok(text)
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let checked = promtool(&["check", "rules", ALERTS])?;
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", ALERT_TESTS])?;
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a unit test that expects it to fire.
    let rules = std::fs::read_to_string(workspace_root().join(ALERTS))?;
    let tests = std::fs::read_to_string(workspace_root().join(ALERT_TESTS))?;
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let fires = tests
            .split("- eval_time:")
            .any(|t| t.contains(&format!("alertname: {line}\n")) && t.contains("exp_labels"));
        assert!(fires, "no unit test where {line} fires");
    }
    Ok(())
}

// === the chart ===

fn render(values: &Value) -> Vec<Value> {
    let stream = helm::render("mcp-guard", "mcp-guard", values).unwrap();
    serde_saphyr::from_multiple::<Value>(&stream)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_chart_ships_the_dashboards_and_alert_rules_unchanged() -> Result<()> {
    let objs = render(&json!({
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}}, "prometheusRule": {"enabled": true}},
        "dashboards": {"label": "grafana_dashboard", "labelValue": "mcp", "annotations": {"grafana_folder": "mcp-guard"}},
    }));
    let maps = of_kind(&objs, "ConfigMap");
    assert_eq!(maps.len(), DASHBOARDS.len(), "{maps:?}");
    for name in DASHBOARDS {
        let cm = maps
            .iter()
            .find(|m| m["metadata"]["name"] == format!("mcp-guard-dashboard-{name}"))
            .unwrap();
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "mcp");
        assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "mcp-guard");
        let shipped: Value = serde_json::from_str(
            cm["data"][format!("mcp-guard-{name}.json")]
                .as_str()
                .unwrap(),
        )?;
        assert_eq!(shipped, prometheus::dashboard(name)?, "{name}");
    }

    let rules = of_kind(&objs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let file: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(workspace_root().join(ALERTS))?)?;
    assert_eq!(
        rules[0]["spec"], file,
        "the PrometheusRule is the rules file"
    );

    let sm = of_kind(&objs, "ServiceMonitor");
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0]["metadata"]["labels"]["release"], "kps");
    assert_eq!(sm[0]["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        sm[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "operator"
    );
    // The operator's Service really has that port.
    let svc = of_kind(&objs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "mcp-guard-operator")
        .unwrap();
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics")
    );
    let pm = of_kind(&objs, "PodMonitor");
    let agent = pm
        .iter()
        .find(|m| m["metadata"]["name"] == "mcp-guard-node-agent")
        .unwrap();
    assert_eq!(
        agent["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "node-agent"
    );
    // The node-agent's pods (when the chart has the DaemonSet) carry the selected labels and port.
    for ds in of_kind(&objs, "DaemonSet") {
        let template = &ds["spec"]["template"];
        let labels = &template["metadata"]["labels"];
        for (k, v) in agent["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(&labels[k], v, "DaemonSet pod label {k}");
        }
        let port = &agent["spec"]["podMetricsEndpoints"][0]["port"];
        let ports: Vec<Value> = template["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| p["name"].clone())
            .collect();
        assert!(ports.contains(port), "the agent's port {port} in {ports:?}");
    }
    let guarded = pm
        .iter()
        .find(|m| m["metadata"]["name"] == "mcp-guard-guarded-pods")
        .unwrap();
    assert_eq!(
        guarded["spec"]["selector"]["matchLabels"]["mcpguard.io/guarded"],
        "true"
    );
    assert_eq!(guarded["spec"]["namespaceSelector"]["any"], true);
    let keep = &guarded["spec"]["podMetricsEndpoints"][0]["relabelings"][0];
    assert_eq!(keep["action"], "keep");
    // The webhook's port names (see operator/src/inject/naming.rs), and no others.
    // Relabeling regexes are anchored RE2, as label_replace's: ask a real Prometheus.
    let regex = keep["regex"].as_str().unwrap();
    let prom = Prometheus::start(&[], &[])?;
    for (port, kept) in [
        ("guard-metrics", true),
        ("guard-metrics-1", true),
        ("guard-metric-10", true),
        ("metrics", false),
        ("http", false),
        ("guard-metricsx", false),
    ] {
        let q = format!(
            r#"label_replace(label_replace(vector(1), "port", "{port}", "", ""), "kept", "yes", "port", "{regex}")"#
        );
        let got = prom.query(&q)?;
        assert_eq!(
            got[0].labels.contains_key("kept"),
            kept,
            "{port} against {regex}"
        );
    }

    // Gated by values.
    let off = render(&json!({
        "dashboards": {"enabled": false},
        "nodeAgent": {"enabled": false},
        "metrics": {"serviceMonitor": {"enabled": true, "guardedPods": false}},
    }));
    assert!(of_kind(&off, "ConfigMap").is_empty());
    assert!(of_kind(&off, "PrometheusRule").is_empty());
    assert_eq!(of_kind(&off, "ServiceMonitor").len(), 1);
    assert!(of_kind(&off, "PodMonitor").is_empty());
    let defaults = render(&json!({}));
    assert_eq!(of_kind(&defaults, "ConfigMap").len(), DASHBOARDS.len());
    assert!(of_kind(&defaults, "ServiceMonitor").is_empty());
    assert!(of_kind(&defaults, "PodMonitor").is_empty());
    assert!(of_kind(&defaults, "PrometheusRule").is_empty());
    let elsewhere = render(&json!({"dashboards": {"namespace": "monitoring"}}));
    assert!(
        of_kind(&elsewhere, "ConfigMap")
            .iter()
            .all(|m| m["metadata"]["namespace"] == "monitoring")
    );
    // Unknown keys are still refused by the schema.
    let err = helm::render(
        "mcp-guard",
        "mcp-guard",
        &json!({"dashboards": {"folder": "x"}}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("folder"), "{err}");
    Ok(())
}
