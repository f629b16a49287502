//! The committed CRD files must be exactly what `crdgen` generates from the Rust types.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use std::path::Path;

#[test]
fn committed_crds_are_up_to_date() {
    let expected = mcp_guard_crds::crd_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in mcp_guard_crds::GENERATED_FILES {
        let actual = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}; run `make gen`"));
        assert!(
            actual == expected,
            "{file} is stale: run `make gen` and commit the result"
        );
    }
}
