//! A real Prometheus for tests, and the chart's Grafana dashboards run against it.
//!
//! [`Prometheus`] runs Debian's `prometheus` (fetched once into the cache by
//! `e2e/harness/prometheus.sh`, with `promtool`) on a free loopback port with a temporary
//! configuration: the given scrape targets every second, the given rule files evaluated every second.
//! Queries go through its HTTP API, as Grafana's do.
//!
//! [`panel_queries`] reads every panel query of a dashboard in `charts/mcp-guard/dashboards/`, and
//! [`concrete`] turns one into plain PromQL the way Grafana would before sending it: `$__rate_interval`,
//! `$__range` and `$__interval` become fixed durations and every template variable becomes its
//! "All" value (`.*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::apiserver::free_port;

/// What `$__rate_interval` becomes: at least four scrape intervals, as Grafana computes it.
pub const RATE_INTERVAL: &str = "1m";
/// What `$__range` (the dashboard's time range) becomes.
pub const RANGE: &str = "15m";
/// What `$__interval` becomes.
pub const INTERVAL: &str = "15s";

/// The directory holding `prometheus` and `promtool` (fetched once per machine, cached).
pub fn bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = crate::workspace_root().join("e2e/harness/prometheus.sh");
        let out = Command::new(&script)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "prometheus.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(PathBuf::from(
            stdout.lines().last().unwrap_or_default().trim(),
        ))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// `promtool`, from the same package as the server.
pub fn promtool() -> Result<PathBuf> {
    Ok(bin_dir()?.join("promtool"))
}

/// One scrape target: `address` (host:port) serving `/metrics`, with a job name and extra target
/// labels (e.g. the `namespace` and `pod` labels prometheus-operator would add in a cluster).
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
}

impl Target {
    pub fn new(job: &str, address: impl ToString) -> Self {
        Self {
            job: job.to_owned(),
            address: address.to_string(),
            labels: BTreeMap::new(),
        }
    }

    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// One series of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A running Prometheus. Dropping it kills the process and deletes its data.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    addr: String,
    targets: usize,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and evaluating `rule_files` every second,
    /// and waits until its API answers.
    pub fn start(targets: &[Target], rule_files: &[&Path]) -> Result<Self> {
        let bin = bin_dir()?.join("prometheus");
        let mut dir = tempfile::Builder::new()
            .prefix("mg-prometheus-")
            .tempdir()?;
        let scrape_configs: Vec<Value> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({
                    // One job per target, named as the target asks (several may share a name).
                    "job_name": format!("{}-{i}", t.job),
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [t.address], "labels": t.labels}],
                    "relabel_configs": [{"target_label": "job", "replacement": t.job}],
                })
            })
            .collect();
        let rules: Vec<String> = rule_files.iter().map(|p| p.display().to_string()).collect();
        // JSON is YAML: Prometheus reads this as its configuration file.
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": scrape_configs,
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;

        let mut last_err = None;
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut prom = Self {
                child: Some(child),
                addr,
                targets: targets.len(),
                dir,
            };
            match prom.wait_ready() {
                Ok(()) => return Ok(prom),
                Err(e) => {
                    // A port taken between free_port() and the bind: try another one.
                    last_err = Some(e);
                    prom.kill();
                    dir = std::mem::replace(&mut prom.dir, tempfile::tempdir()?);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Prometheus did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                bail!("Prometheus exited ({status}):\n{}", self.log());
            }
            if self.get("/-/ready", &[]).is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("Prometheus was not ready within 30s:\n{}", self.log())
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query at the current time. `Err` when Prometheus refuses it (a syntax error, for
    /// example), with its message; a valid query with no data is `Ok` and empty.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .context("no result")?
                .iter()
                .map(|s| {
                    Ok(Sample {
                        labels: serde_json::from_value(s["metric"].clone())?,
                        value: parse_value(&s["value"][1])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(&data["result"][1])?,
            }]),
            other => bail!("unexpected result type {other:?} for {expr}"),
        }
    }

    /// The label sets of the series matching `selector` (as Grafana's `label_values()` asks).
    pub fn series(&self, selector: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let data = self.api("/api/v1/series", &[("match[]", selector)])?;
        Ok(serde_json::from_value(data)?)
    }

    /// The alerts (pending and firing) of the loaded rules.
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/alerts", &[])?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until every target is up.
    pub fn wait_for_targets(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let up = self.query("up == 1")?.len();
            if up == self.targets {
                return Ok(());
            }
            if Instant::now() > deadline {
                let targets = self.api("/api/v1/targets", &[]).unwrap_or_default();
                bail!(
                    "{up} of {} targets up after {within:?}: {targets}",
                    self.targets
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every target has been scraped (successfully) after this call began.
    pub fn wait_for_scrape(&self) -> Result<()> {
        let since = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fresh = self
                // timestamp() of a selector is the scrape's time (of an expression, it would be
                // the evaluation's).
                .query("timestamp(up) and on (job, instance) up == 1")?
                .iter()
                .filter(|s| s.value > since)
                .count();
            if fresh == self.targets {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {fresh} of {} targets scraped in 20s", self.targets);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path` with a query string; the `data` of a `success` answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let (code, body) = self.get(path, params)?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{path} answered {code}: {body}"))?;
        if v["status"] != "success" {
            bail!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or(&body)
            );
        }
        Ok(v["data"].clone())
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<(u16, String)> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        crate::http_get(&self.addr, &target, Duration::from_secs(20))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_value(v: &Value) -> Result<f64> {
    let s = v.as_str().context("a sample value is a string")?;
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => Ok(s.parse()?),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// === the chart's dashboards ===

/// The dashboards shipped in the chart, by file stem.
pub const DASHBOARDS: [&str; 4] = ["overview", "detectors", "kernel", "operator"];

/// `charts/mcp-guard/dashboards/NAME.json`, parsed.
pub fn dashboard(name: &str) -> Result<Value> {
    let path = crate::workspace_root()
        .join("charts/mcp-guard/dashboards")
        .join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    pub legend: String,
}

impl std::fmt::Display for PanelQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.panel, self.ref_id)
    }
}

/// Every panel query of a dashboard, rows (also collapsed ones) included.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &Value, out: &mut Vec<PanelQuery>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    panel: p["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                    legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's query variables: (name, query), e.g. `("pod", "label_values(m{...}, pod)")`.
pub fn query_variables(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                q.to_owned(),
            )
        })
        .collect()
}

/// `label_values(SELECTOR, LABEL)` -> (SELECTOR, LABEL).
pub fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

/// A panel query as Grafana sends it with every variable at "All" and fixed intervals.
/// `Err` when a `$` remains that is neither a built-in interval nor a variable of the dashboard.
pub fn concrete(dashboard: &Value, expr: &str) -> Result<String> {
    let mut out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$__interval", INTERVAL);
    let mut names: Vec<String> = query_variables(dashboard)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    if out.contains('$') {
        bail!("an unknown variable remains in {out}");
    }
    Ok(out)
}

/// The label names a legend format refers to (`{{label}}`).
pub fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim().to_owned()))
        .collect()
}

/// What one panel query returned.
#[derive(Debug)]
pub struct PanelResult {
    pub query: PanelQuery,
    pub promql: String,
    pub result: Result<Vec<Sample>>,
}

impl PanelResult {
    /// A problem with this result: an error, no data, or a legend naming a label the series lack.
    pub fn problem(&self) -> Option<String> {
        match &self.result {
            Err(e) => Some(format!("{}: {e:#}\n    {}", self.query, self.promql)),
            Ok(samples) if samples.is_empty() => {
                Some(format!("{}: no data\n    {}", self.query, self.promql))
            }
            Ok(samples) => {
                let missing: Vec<String> = legend_labels(&self.query.legend)
                    .into_iter()
                    .filter(|l| samples.iter().any(|s| !s.labels.contains_key(l)))
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "{}: legend {:?} names labels the series lack: {missing:?}\n    {}",
                        self.query, self.query.legend, self.promql
                    )
                })
            }
        }
    }

    /// The value of the series whose `label` is `value` (summed over matches), if any.
    pub fn value_where(&self, label: &str, value: &str) -> Option<f64> {
        let samples = self.result.as_ref().ok()?;
        let hits: Vec<f64> = samples
            .iter()
            .filter(|s| s.labels.get(label).map(String::as_str) == Some(value))
            .map(|s| s.value)
            .collect();
        (!hits.is_empty()).then(|| hits.iter().sum())
    }
}

/// Runs every panel query of `dashboard` against `prom`.
pub fn run_panels(prom: &Prometheus, dashboard: &Value) -> Vec<PanelResult> {
    panel_queries(dashboard)
        .into_iter()
        .map(|query| match concrete(dashboard, &query.expr) {
            Ok(promql) => PanelResult {
                result: prom.query(&promql),
                promql,
                query,
            },
            Err(e) => PanelResult {
                promql: query.expr.clone(),
                result: Err(e),
                query,
            },
        })
        .collect()
}

/// Checks each query variable against `prom`: its selector matches series, and they carry its label.
/// Returns the problems found.
pub fn check_variables(prom: &Prometheus, dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, query) in query_variables(dashboard) {
        let Some((selector, label)) = label_values(&query) else {
            problems.push(format!(
                "${name}: not label_values(selector, label): {query}"
            ));
            continue;
        };
        let selector = match concrete(dashboard, &selector) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("${name}: {e:#}"));
                continue;
            }
        };
        match prom.series(&selector) {
            Err(e) => problems.push(format!("${name}: {selector}: {e:#}")),
            Ok(series) if series.is_empty() => {
                problems.push(format!("${name}: no series match {selector}"))
            }
            Ok(series) if !series.iter().any(|s| s.contains_key(&label)) => problems.push(format!(
                "${name}: no series of {selector} has label {label}"
            )),
            Ok(_) => {}
        }
    }
    problems
}

/// Prints a one-line-per-query report of `results` (for the test log) and returns the problems.
pub fn report(name: &str, results: &[PanelResult]) -> Vec<String> {
    let with_data = results
        .iter()
        .filter(|r| r.result.as_ref().is_ok_and(|s| !s.is_empty()))
        .count();
    eprintln!(
        "dashboard {name}: {with_data} of {} panel queries returned data",
        results.len()
    );
    for r in results {
        let what = match &r.result {
            Ok(s) => format!("{} series", s.len()),
            Err(e) => format!("error: {e:#}"),
        };
        eprintln!("  {}: {what}", r.query);
    }
    results.iter().filter_map(PanelResult::problem).collect()
}
