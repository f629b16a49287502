//! Writes the McpGuardPolicy CRD to `crds/mcpguardpolicy.yaml` and the Helm chart's copy.
//! `crdgen --check` writes nothing and exits 1 when either file is stale; `crdgen --stdout` prints it.
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = mcp_guard_crds::crd_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::args().nth(1).as_deref() {
        Some("--stdout") => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some("--check") => {
            let stale: Vec<&str> = mcp_guard_crds::GENERATED_FILES
                .into_iter()
                .filter(|f| std::fs::read_to_string(root.join(f)).ok().as_deref() != Some(&yaml))
                .collect();
            if stale.is_empty() {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "stale generated files (run `make gen`): {}",
                stale.join(", ")
            );
            ExitCode::FAILURE
        }
        None => {
            for f in mcp_guard_crds::GENERATED_FILES {
                let path = root.join(f);
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, &yaml));
                if let Err(e) = written {
                    eprintln!("crdgen: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {f}");
            }
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("crdgen: unknown argument `{other}`; usage: crdgen [--check | --stdout]");
            ExitCode::from(2)
        }
    }
}
