//! Compiles every `bpf/*.bpf.c` entry file into `$OUT_DIR/<name>.bpf.o` with clang, so the loader
//! can embed the objects with `include_bytes!`. One object per hook keeps programs small and lets
//! them be verified and replaced separately; they share state through maps pinned by name.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Finds a clang that can target BPF: `$CLANG` first, then `clang-19`, then `clang`.
fn find_clang() -> String {
    let candidates: Vec<String> =
        env::var("CLANG").ok().into_iter().chain(["clang-19".to_string(), "clang".to_string()]).collect();
    for candidate in &candidates {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate.clone();
        }
    }
    panic!(
        "mesh-ebpf needs clang to compile its eBPF programs; none of {candidates:?} runs. \
         Install it (`apt-get install -y clang libbpf-dev`) or point $CLANG at one"
    );
}

fn main() {
    let bpf_dir = Path::new("bpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = find_clang();
    // clang -target bpf does not search the multiarch directory that holds <asm/types.h>.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");

    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(bpf_dir)
        .expect("mesh-ebpf/bpf is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for src in entries.iter().filter(|p| p.to_string_lossy().ends_with(".bpf.c")) {
        let stem = src.file_name().unwrap().to_string_lossy().trim_end_matches(".c").to_string();
        let obj = out_dir.join(format!("{stem}.o"));
        // -g is not optional: BTF-defined maps (`.maps`) cannot be loaded without BTF.
        let output = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", &multiarch, "-c"])
            .arg(src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {clang}: {e}"));
        if !output.status.success() {
            panic!("{clang} failed to compile {}:\n{}", src.display(), String::from_utf8_lossy(&output.stderr));
        }
    }
}
