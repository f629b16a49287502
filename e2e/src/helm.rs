//! The Helm chart rendered and linted by Helm's own engine (PyPI `helm-python-sdk`, which wraps Helm
//! v4's Go SDK; installed once into the cache by `harness/helm-sdk.sh`), for tests and for installing
//! the chart on a test cluster.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The chart in this workspace.
pub fn chart_dir() -> PathBuf {
    crate::workspace_root().join("charts/mcp-guard")
}

fn python() -> Result<PathBuf> {
    let script = crate::workspace_root().join("e2e/harness/helm-sdk.sh");
    let out = Command::new(&script)
        .output()
        .context("running helm-sdk.sh")?;
    if !out.status.success() {
        bail!(
            "helm-sdk.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let venv = String::from_utf8(out.stdout)?.trim().to_owned();
    Ok(PathBuf::from(venv).join("bin/python"))
}

fn helm(args: &[&str]) -> Result<std::process::Output> {
    let script = crate::workspace_root().join("e2e/harness/helm.py");
    Command::new(python()?)
        .arg(script)
        .args(args)
        .output()
        .context("running helm.py")
}

/// `helm template RELEASE chart -n NAMESPACE --values VALUES`: every manifest, one YAML stream.
/// A values or template error is `Err` with Helm's message.
pub fn render(release: &str, namespace: &str, values: &serde_json::Value) -> Result<String> {
    let chart = chart_dir();
    let values = values.to_string();
    let out = helm(&[
        "render",
        chart.to_str().context("chart path")?,
        release,
        namespace,
        &values,
    ])?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm lint` with these values: Helm's messages as JSON (`messages[].severity`: 1 info, 2 warning,
/// 3 error; `errors`).
pub fn lint(values: &serde_json::Value) -> Result<serde_json::Value> {
    let chart = chart_dir();
    let values = values.to_string();
    let out = helm(&["lint", chart.to_str().context("chart path")?, &values])?;
    if !out.status.success() {
        bail!("helm lint failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
