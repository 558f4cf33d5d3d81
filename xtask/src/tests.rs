//! `cargo xtask test`: every test tier in one command, the one README and CI use.
//!
//! Unit tests need nothing; the netns tests need root, the lab tools and the `shoal` binary,
//! which is built once here and handed to the tests through `SHOAL_BIN`.

use anyhow::bail;

use crate::deps;

pub fn run(args: &[&str]) -> anyhow::Result<()> {
    deps::ensure(&[deps::BUILD, deps::LAB])?;
    deps::check_docker_cli();
    crate::require_root("test")?;
    let bin = crate::build_shoal(false)?;

    let mut cmd = crate::cargo();
    cmd.arg("test");
    if args.is_empty() {
        // One failing band must not hide the others' results.
        cmd.args(["--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(args);
    }
    cmd.env("SHOAL_BIN", &bin);
    eprintln!(
        "xtask: cargo test {} (SHOAL_BIN={})",
        if args.is_empty() { "--workspace --no-fail-fast".into() } else { args.join(" ") },
        bin.display()
    );
    let status = cmd.status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
