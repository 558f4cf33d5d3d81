//! System tools the build and the lab need, and installing the missing ones.
//!
//! When root on Debian, missing packages are installed with `apt-get install -y` (after one
//! `apt-get update`); otherwise the command stops and prints the exact line to run. The docker
//! CLI is only needed by the docker-CLI acceptance test, so it is checked but not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

/// A command some part of the project runs, and the Debian package that provides it.
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

/// What building Shoal needs.
pub const BUILD: &[Tool] = &[
    Tool { command: "protoc", package: "protobuf-compiler", why: "gRPC code generation (control/build.rs)" },
    Tool { command: "clang", package: "clang", why: "compiling the eBPF programs" },
    Tool { command: "pkg-config", package: "pkg-config", why: "finding libnftnl and libmnl" },
    Tool {
        command: "/usr/include/libnftnl/table.h",
        package: "libnftnl-dev",
        why: "egress NAT over nf_tables (nftnl)",
    },
    Tool { command: "/usr/include/libmnl/libmnl.h", package: "libmnl-dev", why: "netlink sockets for nftnl (mnl)" },
    Tool { command: "/usr/include/bpf/bpf_helpers.h", package: "libbpf-dev", why: "headers of the eBPF C programs" },
];

/// What the netns lab needs.
pub const LAB: &[Tool] = &[
    Tool { command: "ip", package: "iproute2", why: "network namespaces, veths, bridge" },
    Tool { command: "nft", package: "nftables", why: "one-way drops inside node namespaces" },
    Tool { command: "unshare", package: "util-linux", why: "a hostname per node daemon" },
    Tool { command: "nsenter", package: "util-linux", why: "entering task namespaces (the demo, the tests)" },
    Tool { command: "curl", package: "curl", why: "health checks in the service tests, the demo's request to a task" },
    Tool { command: "bridge", package: "iproute2", why: "FDB dumps in the overlay tests" },
    Tool { command: "tcpdump", package: "tcpdump", why: "captures on the lab underlay (VXLAN, isolation)" },
    Tool { command: "dig", package: "dnsutils", why: "DNS queries from inside tasks" },
    Tool { command: "iperf3", package: "iperf3", why: "overlay throughput tests and benchmarks" },
    Tool { command: "nc", package: "netcat-openbsd", why: "TCP/UDP probes between tasks" },
    Tool { command: "dnsmasq", package: "dnsmasq-base", why: "the test upstream resolver of the DNS tests" },
];

/// Finds `command` on PATH or in the sbin directories a non-root PATH often lacks; an absolute
/// path (a library's header) only has to exist.
pub fn find(command: &str) -> Option<PathBuf> {
    if command.starts_with('/') {
        return Path::new(command).exists().then(|| PathBuf::from(command));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(command))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes sure every tool in `sets` exists, installing missing packages when possible.
pub fn ensure(sets: &[&[Tool]]) -> anyhow::Result<()> {
    let missing: Vec<&Tool> = sets.iter().flat_map(|s| s.iter()).filter(|t| find(t.command).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.sort();
    packages.dedup();
    for t in &missing {
        eprintln!("xtask: missing `{}` (package {}): {}", t.command, t.package, t.why);
    }
    let debian = Path::new("/etc/debian_version").exists() && find("apt-get").is_some();
    if !(crate::is_root() && debian) {
        let sudo = if crate::is_root() { "" } else { "sudo " };
        bail!("install the missing tools first:\n    {sudo}apt-get install -y {}", packages.join(" "));
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&packages);
    apt(&args)?;
    let still: Vec<&str> = missing.iter().filter(|t| find(t.command).is_none()).map(|t| t.command).collect();
    if !still.is_empty() {
        bail!("apt-get installed {} but {} is still missing", packages.join(" "), still.join(", "));
    }
    Ok(())
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Warns (does not fail) when the docker CLI is missing: only the docker-CLI tests need it.
pub fn check_docker_cli() {
    match find("docker") {
        Some(_) => {}
        None => eprintln!(
            "xtask: warning: no `docker` CLI on PATH; netns-tests/tests/t70_docker_cli.rs (and parts of t10) \
             will fail. Install docker-ce-cli 28.x (https://docs.docker.com/engine/install/debian/)."
        ),
    }
}
