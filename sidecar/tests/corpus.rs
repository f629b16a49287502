//! The detection corpus (`sidecar/tests/corpus/`, see its README): labeled attack and benign MCP sessions
//! replayed through the real guard with the corpus policy. Prints detection and false-positive rates
//! per detector and overall (`make corpus`), and fails below issue 4's targets.
//!
//! An attack is detected when its expected step is the first step the proxy blocks or alters; a benign
//! case is a false positive when any step is blocked or altered.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use mcp_guard_proxy::audit::Audit;
use mcp_guard_proxy::engine::Engine;
use mcp_guard_proxy::guard::{Forward, Guard};
use mcp_guard_proxy::metrics::Metrics;
use mcp_guard_proxy::session::SessionState;
use regex::Regex;
use serde_json::{Map, Value};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[derive(Debug)]
struct Case {
    id: String,
    attack: bool,
    detector: String,
    steps: Vec<(bool, String)>,
    flagged_step: Option<usize>,
}

/// `transform` of `validate.py`, the reference.
fn transform(value: &str, t: &str) -> String {
    let raw = value.as_bytes();
    match t {
        "b64" => base64::engine::general_purpose::STANDARD.encode(raw),
        "b64url" => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
        "hex" => hex::encode(raw),
        "pct" => raw.iter().map(|b| format!("%{b:02X}")).collect(),
        "json" => {
            let quoted = serde_json::to_string(value).unwrap();
            quoted[1..quoted.len() - 1].to_owned()
        }
        "jsonu" => value
            .encode_utf16()
            .map(|u| format!("\\u{u:04x}"))
            .collect(),
        t if t.starts_with("slice:") => {
            let mut parts = t.split(':').skip(1);
            let a: usize = parts.next().unwrap().parse().unwrap();
            let chars: Vec<char> = value.chars().collect();
            let b = parts
                .next()
                .filter(|b| !b.is_empty())
                .map_or(chars.len(), |b| b.parse().unwrap());
            chars[a.min(chars.len())..b.min(chars.len())]
                .iter()
                .collect()
        }
        other => panic!("unknown transform {other}"),
    }
}

struct Secrets {
    values: Map<String, Value>,
    marker: Regex,
}

impl Secrets {
    fn load() -> Self {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(corpus_dir().join("secrets.json")).unwrap(),
        )
        .unwrap();
        Self {
            values: doc["secrets"].as_object().unwrap().clone(),
            marker: Regex::new(r"\{\{([A-Z][A-Z0-9_]*)((?:\|[a-z0-9:]+)*)\}\}").unwrap(),
        }
    }

    fn text(&self, text: &str, depth: usize) -> String {
        assert!(depth <= 8, "marker nesting too deep");
        self.marker
            .replace_all(text, |c: &regex::Captures<'_>| {
                let parts = self
                    .values
                    .get(&c[1])
                    .unwrap_or_else(|| panic!("undefined marker {}", &c[1]));
                let joined: String = parts
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect();
                let mut value = self.text(&joined, depth + 1);
                for t in c[2].split('|').filter(|t| !t.is_empty()) {
                    value = transform(&value, t);
                }
                value
            })
            .into_owned()
    }

    /// Expands markers in string values (not keys).
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s, 0)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.resolve(i)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn load_cases() -> Vec<Case> {
    let secrets = Secrets::load();
    let mut cases = Vec::new();
    for sub in ["attacks", "benign"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            for line in std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                let c: Value = serde_json::from_str(line).unwrap();
                cases.push(Case {
                    id: c["id"].as_str().unwrap().to_owned(),
                    attack: c["label"] == "attack",
                    detector: c["detector"].as_str().unwrap().to_owned(),
                    steps: c["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| (s["dir"] == "client", secrets.resolve(&s["msg"]).to_string()))
                        .collect(),
                    flagged_step: c["expect"]["flagged_step"].as_u64().map(|n| n as usize),
                });
            }
        }
    }
    cases
}

fn guard() -> Guard {
    let policy = mcp_guard_proxy::policy::load(&corpus_dir().join("policy.yaml")).unwrap();
    Guard::new(
        Engine::new(policy).unwrap(),
        None,
        Audit::disabled(),
        Arc::new(Metrics::new()),
    )
}

/// The first step the proxy blocks or alters.
fn first_flagged(guard: &Guard, case: &Case) -> Option<usize> {
    let mut session = SessionState::new(case.id.as_str());
    case.steps.iter().position(|(from_client, text)| {
        if *from_client {
            let out = guard.client_frame(&mut session, text);
            out.forward != Forward::Original || out.reply.is_some()
        } else {
            guard
                .server_frame(&mut session, text)
                .map_or(true, |o| o.forward != Forward::Original)
        }
    })
}

#[derive(Default)]
struct Tally {
    attacks: usize,
    detected: usize,
    benign: usize,
    false_positives: usize,
    misses: Vec<String>,
    false_alarms: Vec<String>,
}

fn run() -> BTreeMap<String, Tally> {
    let cases = load_cases();
    let mut by_detector: BTreeMap<String, Tally> = BTreeMap::new();
    for case in &cases {
        // A fresh guard per case: rate windows and sessions never leak between cases.
        let guard = guard();
        let flagged = first_flagged(&guard, case);
        let t = by_detector.entry(case.detector.clone()).or_default();
        if case.attack {
            t.attacks += 1;
            if flagged.is_some() && flagged == case.flagged_step {
                t.detected += 1;
            } else {
                t.misses.push(format!(
                    "{} (flagged {flagged:?}, expected {:?})",
                    case.id, case.flagged_step
                ));
            }
        } else {
            t.benign += 1;
            if let Some(step) = flagged {
                t.false_positives += 1;
                t.false_alarms.push(format!("{} (step {step})", case.id));
            }
        }
    }
    by_detector
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

#[test]
fn corpus_report() {
    let tallies = run();
    let (mut a, mut d, mut b, mut f) = (0, 0, 0, 0);
    println!(
        "\n| detector | attacks | detected | detection | benign | false positives | FP rate |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (name, t) in &tallies {
        println!(
            "| {name} | {} | {} | {:.1}% | {} | {} | {:.1}% |",
            t.attacks,
            t.detected,
            pct(t.detected, t.attacks),
            t.benign,
            t.false_positives,
            pct(t.false_positives, t.benign)
        );
        a += t.attacks;
        d += t.detected;
        b += t.benign;
        f += t.false_positives;
    }
    println!(
        "| **overall** | {a} | {d} | {:.1}% | {b} | {f} | {:.1}% |\n",
        pct(d, a),
        pct(f, b)
    );
    for (name, t) in &tallies {
        for m in &t.misses {
            println!("missed [{name}] {m}");
        }
        for fa in &t.false_alarms {
            println!("false positive [{name}] {fa}");
        }
    }
    assert!(
        a >= 200 && b >= 200,
        "the corpus holds at least 200 attacks and 200 benign cases ({a}, {b})"
    );
    // The targets of issue 4: detection >= 95% overall and >= 90% for every detector; false
    // positives <= 1% overall.
    assert!(
        pct(d, a) >= 95.0,
        "overall detection {:.1}% is below 95%",
        pct(d, a)
    );
    assert!(
        pct(f, b) <= 1.0,
        "overall false positives {:.1}% are above 1%",
        pct(f, b)
    );
    for (name, t) in &tallies {
        let rate = pct(t.detected, t.attacks);
        assert!(rate >= 90.0, "{name}: detection {rate:.1}% is below 90%");
    }
}
