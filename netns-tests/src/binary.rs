//! Finding the `shoal` binary the lab runs.
//!
//! `SHOAL_BIN` wins (`cargo xtask` builds once and sets it; a relative path is taken from the
//! workspace root). Otherwise the harness runs `cargo build -p shoal` once per process, a no-op
//! when the binary is fresh, so `cargo test -p netns-tests` never tests a stale daemon:
//! netns-tests cannot depend on a binary crate, so cargo would not rebuild it on its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::run_timeout;

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("netns-tests sits in the workspace").to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

/// The `shoal` binary to run, built if needed (see the module docs). Panics if it cannot be
/// found or built: a lab without a daemon cannot test anything.
pub fn shoal_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SHOAL_BIN") {
            // Relative to the workspace root: cargo runs tests from the crate's directory.
            let bin = workspace_root().join(bin);
            assert!(bin.is_file(), "SHOAL_BIN={} does not exist", bin.display());
            return bin;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = run_timeout(
            Command::new(cargo).current_dir(workspace_root()).args(["build", "--quiet", "-p", "shoal"]),
            Duration::from_secs(1800),
        );
        out.assert_ok();
        let bin = target_dir().join("debug/shoal");
        assert!(bin.is_file(), "`cargo build -p shoal` succeeded but {} is missing", bin.display());
        bin
    })
}
