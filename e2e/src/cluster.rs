//! Whatever cluster `KUBECONFIG` points at, through `kubectl`: the node e2e (`make e2e-node`, a real
//! kubelet on this host) and kind in GitHub Actions run the same scenario with it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// `kubectl` with the environment's kubeconfig, or a given one.
#[derive(Clone, Debug, Default)]
pub struct Kubectl {
    kubeconfig: Option<std::path::PathBuf>,
}

impl Kubectl {
    /// kubectl with this kubeconfig instead of the environment's (a test's own API server).
    pub fn with_kubeconfig(path: &std::path::Path) -> Self {
        Self {
            kubeconfig: Some(path.to_owned()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        if let Some(kc) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kc);
        }
        cmd.args(args);
        cmd
    }

    /// Runs kubectl; its stdout, or an error carrying its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_with_input(args, "")
    }

    /// Runs kubectl with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl (is it on PATH?)")?;
        let mut stdin = child.stdin.take().context("kubectl stdin")?;
        stdin.write_all(input.as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get ... -o json`.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.run(&all)?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {}: not JSON", args.join(" ")))
    }

    /// Server-side apply of a YAML stream under `manager`, taking over conflicting fields.
    pub fn apply(&self, manifests: &str, manager: &str) -> Result<String> {
        let manager = format!("--field-manager={manager}");
        self.run_with_input(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &manager,
                "-f",
                "-",
            ],
            manifests,
        )
    }

    /// Runs `command` in a container; `Ok((exit_ok, stdout + stderr))` when kubectl got as far as
    /// running it.
    pub fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: &[&str],
    ) -> Result<(bool, String)> {
        let mut args = vec!["exec", "-n", namespace, pod, "-c", container, "--"];
        args.extend(command);
        let out = self.command(&args).output().context("running kubectl")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// The pods matching a label selector, as JSON objects.
    pub fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Value>> {
        let list = self.json(&["get", "pods", "-n", namespace, "-l", selector])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }
}

/// Polls `f` every 500 ms until it returns `Ok` or `within` has passed; the error then says what was
/// awaited and carries the last failure.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= within => {
                bail!("{what}: not within {within:?}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Whether a pod is Running with every container ready.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The names of a pod's containers, in order.
pub fn container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's restart count (0 when not reported).
pub fn restarts(pod: &Value, container: &str) -> u64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["restartCount"].as_u64())
        .unwrap_or(0)
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// A Prometheus text exposition sample: the sum of every series of `metric` whose labels contain all
/// of `labels` (`name="value"` pairs).
pub fn metric_sum(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r.trim_end_matches('}')),
                None => (series, ""),
            };
            (name == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_series_only() {
        let text = "# HELP x y\nmcp_guard_tool_calls_total{tool=\"echo\",decision=\"allow\",mode=\"enforce\"} 2\n\
                    mcp_guard_tool_calls_total{tool=\"echo\",decision=\"block\",mode=\"enforce\"} 1\n\
                    mcp_guard_tool_calls_total{tool=\"add\",decision=\"allow\",mode=\"enforce\"} 5\n\
                    other 7\n";
        assert_eq!(
            metric_sum(text, "mcp_guard_tool_calls_total", &[("tool", "echo")]),
            3.0
        );
        assert_eq!(
            metric_sum(text, "mcp_guard_tool_calls_total", &[("decision", "allow")]),
            7.0
        );
        assert_eq!(metric_sum(text, "other", &[]), 7.0);
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }

    #[test]
    fn eventually_reports_the_last_error() {
        let mut n = 0;
        let err = eventually(
            "three tries",
            Duration::from_millis(600),
            || -> Result<()> {
                n += 1;
                bail!("attempt {n}")
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("three tries: not within"), "{err}");
        assert!(
            err.contains("attempt 2") || err.contains("attempt 3"),
            "{err}"
        );
    }
}
