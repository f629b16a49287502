//! Totals for the `proxy_summary` audit record written at shutdown.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::decision::Decision;

/// Latency samples kept for percentiles; after that every other sample is dropped, then every fourth...
/// (the percentiles stay representative, memory stays bounded).
const MAX_SAMPLES: usize = 65_536;

/// Totals since the proxy started.
#[derive(Debug)]
pub struct Summary {
    started: Instant,
    inner: Mutex<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    calls_by_tool: BTreeMap<String, u64>,
    outcomes: BTreeMap<&'static str, u64>,
    blocked_by_rule: BTreeMap<String, u64>,
    messages_in: u64,
    messages_out: u64,
    latency_count: u64,
    latency_sum_us: u64,
    latency_min_us: Option<u64>,
    latency_max_us: u64,
    samples: Vec<u64>,
    keep_every: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Totals {
                keep_every: 1,
                ..Totals::default()
            }),
        }
    }
}

impl Summary {
    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn message_in(&self) {
        self.totals().messages_in += 1;
    }

    pub fn message_out(&self) {
        self.totals().messages_out += 1;
    }

    /// A finished `tools/call`: its tool, decision, outcome and the time the proxy spent deciding.
    pub fn call(&self, tool: &str, decision: &Decision, outcome: &'static str, decide_us: u64) {
        let mut t = self.totals();
        *t.calls_by_tool.entry(tool.to_owned()).or_default() += 1;
        *t.outcomes.entry(outcome).or_default() += 1;
        if matches!(
            outcome,
            "blocked" | "ask-fallback-blocked" | "result-blocked"
        ) && let Some(f) = decision.deciding()
        {
            *t.blocked_by_rule.entry(f.rule.to_string()).or_default() += 1;
        }
        t.latency_count += 1;
        t.latency_sum_us += decide_us;
        t.latency_min_us = Some(t.latency_min_us.map_or(decide_us, |m| m.min(decide_us)));
        t.latency_max_us = t.latency_max_us.max(decide_us);
        if t.latency_count.is_multiple_of(t.keep_every) {
            t.samples.push(decide_us);
            if t.samples.len() >= MAX_SAMPLES {
                let thinned: Vec<u64> = t.samples.iter().copied().step_by(2).collect();
                t.samples = thinned;
                t.keep_every *= 2;
            }
        }
    }

    /// The record: uptime, totals, calls by tool, blocked by rule, decision latency, message counts.
    pub fn record(&self) -> SummaryRecord {
        let t = self.totals();
        let mut sorted = t.samples.clone();
        sorted.sort_unstable();
        let pct = |p: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            let i = ((sorted.len() - 1) as f64 * p).round() as usize;
            sorted[i.min(sorted.len() - 1)]
        };
        SummaryRecord {
            ts: now_rfc3339(),
            kind: "proxy_summary",
            uptime_s: self.started.elapsed().as_secs_f64(),
            calls: t.calls_by_tool.values().sum(),
            outcomes: t
                .outcomes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            calls_by_tool: t.calls_by_tool.clone(),
            blocked_by_rule: t.blocked_by_rule.clone(),
            decide_us: LatencySummary {
                min: t.latency_min_us.unwrap_or(0),
                avg: if t.latency_count == 0 {
                    0.0
                } else {
                    t.latency_sum_us as f64 / t.latency_count as f64
                },
                p50: pct(0.50),
                p95: pct(0.95),
                max: t.latency_max_us,
            },
            messages: MessageCounts {
                client_to_server: t.messages_in,
                server_to_client: t.messages_out,
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SummaryRecord {
    pub ts: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub uptime_s: f64,
    pub calls: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub calls_by_tool: BTreeMap<String, u64>,
    pub blocked_by_rule: BTreeMap<String, u64>,
    /// Time the proxy spent deciding a call, in microseconds.
    pub decide_us: LatencySummary,
    pub messages: MessageCounts,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub min: u64,
    pub avg: f64,
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

#[derive(Debug, Serialize)]
pub struct MessageCounts {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// Now, as RFC 3339 in UTC with microseconds.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
