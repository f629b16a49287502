use kube::CustomResourceExt;
fn main() {
    println!(
        "{}",
        serde_yaml::to_string(&mcp_guard_crds::McpGuardPolicy::crd()).unwrap()
    );
}
