//! Compiles the BPF programs in `../ebpf/*.bpf.c` with clang-19 into OUT_DIR; `src/bpf.rs` and
//! `src/bpf/probe.rs` embed the objects with `include_bytes!`. `BPF_CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let src_dir = manifest.join("../ebpf");
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang-19".into());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    for header in ["common.h", "maps.h", "vmlinux.h"] {
        println!("cargo:rerun-if-changed={}", src_dir.join(header).display());
    }
    if Command::new(&clang).arg("--version").output().is_err() {
        panic!(
            "\n\n`{clang}` was not found: the node-agent's BPF programs are C compiled by clang-19.\n\
             Install the BPF toolchain with `make bpf-tools` (clang-19, libbpf-dev, bpftool),\n\
             or point BPF_CLANG at another clang with the BPF target.\n\n"
        );
    }
    for name in ["mcp_guard", "probe"] {
        let src = src_dir.join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let output = Command::new(&clang)
            .args([
                "-target",
                "bpf",
                "-g",
                "-O2",
                "-D__TARGET_ARCH_x86",
                "-Wall",
                "-Werror",
            ])
            .arg("-I")
            .arg(&src_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(out.join(format!("{name}.bpf.o")))
            .output()
            .unwrap_or_else(|e| panic!("running {clang}: {e}"));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if stderr.contains("bpf/bpf_helpers.h") {
                "\n(libbpf headers missing: run `make bpf-tools`)"
            } else {
                ""
            };
            panic!("{clang} failed on {}:\n{stderr}{hint}", src.display());
        }
    }
}
