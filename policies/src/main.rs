//! `mcp-guard-policy check FILE...` / `mcp-guard-policy compile FILE`; see [`mcp_guard_policy::cli`].
fn main() {
    let code = mcp_guard_policy::cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
