//! The end-to-end scenario, against whatever cluster `KUBECONFIG` points at: the local node of
//! `make e2e-node` (kubelet, containerd and runc on this host) or kind in GitHub Actions
//! (.github/workflows/e2e.yml). Nothing is mocked: the chart rendered by Helm's engine, the operator,
//! the webhooks, the injected proxy in front of the real server-everything, the node-agent's BPF
//! programs in the node's kernel.
//!
//! The steps share one cluster and build on each other, so they run in order from this `main`
//! (`harness = false`), each reported as a test. After a failure the remaining steps are skipped, but
//! uninstalling (the last step) always runs unless `MCP_GUARD_E2E_KEEP=1`.
//!
//!   env: KUBECONFIG                the cluster (required)
//!        MCP_GUARD_E2E_VALUES      a JSON file of chart values for this environment (images, API
//!                                  server address, cgroup root); see e2e/harness/e2e-node.sh
//!        MCP_GUARD_E2E_KEEP=1      leave everything installed
//!   run: make e2e (any cluster), make e2e-node (the local node, built and torn down)
//!
//! What depends on the environment is detected: BPF LSM (file and exec rules, or the degraded
//! capability reported as a metric and a Node Event), whether the test host reaches pod IPs (else
//! `kubectl port-forward`), the PodDisruptionBudget API version.

mod steps;
mod world;

use std::time::Instant;

fn main() {
    let filter: Option<String> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .filter(|a| !a.is_empty());
    let steps = steps::all();
    if std::env::args().any(|a| a == "--list") {
        for s in &steps {
            println!("{}: test", s.name);
        }
        return;
    }
    let keep = std::env::var("MCP_GUARD_E2E_KEEP").is_ok_and(|v| v == "1");
    let mut world = match world::World::from_env() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("scenario: {e:#}");
            std::process::exit(2);
        }
    };
    println!(
        "\nrunning {} e2e steps against {}",
        steps.len(),
        world.describe()
    );
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut broken = false;
    let total = Instant::now();
    for step in &steps {
        let selected = filter.as_deref().is_none_or(|f| step.name.contains(f));
        let cleanup = step.always;
        if !selected && !cleanup {
            continue;
        }
        if (broken && !cleanup) || (cleanup && keep) {
            println!("test {} ... skipped", step.name);
            skipped += 1;
            continue;
        }
        let started = Instant::now();
        let result = (step.run)(&mut world);
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                println!("test {} ... ok ({secs:.1}s)", step.name);
                passed += 1;
            }
            Err(e) => {
                println!("test {} ... FAILED ({secs:.1}s)\n  {e:#}", step.name);
                failed += 1;
                broken = true;
                world.dump_diagnostics();
            }
        }
    }
    println!(
        "\ne2e result: {}. {passed} passed; {failed} failed; {skipped} skipped; finished in {:.1}s",
        if failed == 0 { "ok" } else { "FAILED" },
        total.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
