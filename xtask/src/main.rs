//! `cargo xtask`: everything that is not `cargo build`.
//!
//! - `demo [--down]`: a 3-node lab running a swarm and a `shoal/echo` service, left up for you
//!   to poke at.
//! - `test [CARGO TEST ARGS…]`: every test tier, the privileged netns tests included (root).
//! - `lab up [N] | lab down`: a bare lab of N nodes with daemons but no swarm.
//! - `bench raft [--debug]`: leader failover and write latency, written to docs/benchmarks.md.
//! - `bench services [--debug]`: time to run 100 replicas, node-failure detection and task
//!   replacement, the in-process orchestrator at 100,000 tasks; written to docs/benchmarks.md.
//! - `bench overlay [--debug]`: iperf3 (1 and 4 streams) and request/response rate between tasks
//!   over VXLAN against the bare underlay; written to docs/benchmarks.md.
//! - `bench mesh [--debug]`: the routing mesh against direct, nftables DNAT and HAProxy (requests
//!   per second, new connections, p50/p99, iperf3, CPU); written to docs/benchmarks.md.
//!
//! Each command first checks the system tools it needs and, when root on Debian, installs the
//! missing ones with apt; otherwise it stops with the exact command to run.

mod bench;
mod deps;
mod labs;
mod tests;

use anyhow::bail;

const USAGE: &str = "\
usage: cargo xtask <command>

  demo [--down]         build shoal, start a 3-node lab with a swarm (1 manager, 2 workers)
                        running a 3-replica shoal/echo service, and leave it running; --down
                        removes it
  test [ARGS...]        run every test tier (`cargo test --workspace`, or `cargo test ARGS`);
                        the netns tests need root
  lab up [N] | lab down a bare N-node lab (default 3) with daemons but no swarm
  bench raft [--debug]  leader failover and write latency on 3 managers (release build unless
                        --debug); prints the figures and writes them to docs/benchmarks.md
  bench services [--debug]
                        100 replicas to running, worker kill to down and to replaced (5 nodes),
                        and the in-process orchestrator at 1,000 nodes / 100,000 tasks
  bench overlay [--debug]
                        iperf3 (1 and 4 streams) and request/response rate between tasks on two
                        nodes over VXLAN against the bare underlay, with ratios
  bench dns [--debug]   the embedded DNS against dnsmasq (dnsperf); writes docs/benchmarks.md
  bench mesh [--debug]  the routing mesh against direct, nftables DNAT (kube-proxy style) and
                        HAProxy: keep-alive and new-connection rates, p50/p99, iperf3, CPU
";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["demo"] => labs::demo_up(),
        ["demo", "--down"] => labs::demo_down(),
        ["test", rest @ ..] => tests::run(rest),
        ["lab", "up"] => labs::lab_up(3),
        ["lab", "up", n] => labs::lab_up(n.parse().map_err(|_| anyhow::anyhow!("lab up: {n:?} is not a node count"))?),
        ["lab", "down"] => labs::lab_down(),
        ["bench", "raft"] => bench::raft(false),
        ["bench", "raft", "--debug"] => bench::raft(true),
        ["bench", "services"] => bench::services(false),
        ["bench", "services", "--debug"] => bench::services(true),
        ["bench", "overlay"] => bench::overlay(false),
        ["bench", "overlay", "--debug"] => bench::overlay(true),
        ["bench", "dns"] => bench::dns(false),
        ["bench", "dns", "--debug"] => bench::dns(true),
        ["bench", "mesh"] => bench::mesh(false),
        ["bench", "mesh", "--debug"] => bench::mesh(true),
        [] | ["help"] | ["-h"] | ["--help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command `{}`\n\n{USAGE}", args.join(" ")),
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with the way to get root, for commands that build network namespaces.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "{what} needs root: it creates network namespaces, veth pairs and nftables rules inside them \
             (never in the host's namespace). Run it as root, e.g.\n    sudo -E env PATH=\"$PATH\" cargo xtask {what}"
        );
    }
    Ok(())
}

/// `cargo` as cargo invoked us.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(netns_tests::binary::workspace_root());
    cmd
}

/// Builds the `shoal` binary (debug, or release) and returns its path.
pub fn build_shoal(release: bool) -> anyhow::Result<std::path::PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "shoal"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!("xtask: cargo build -p shoal{}", if release { " --release" } else { "" });
    let status = cmd.status()?;
    if !status.success() {
        bail!("`cargo build -p shoal` failed ({status})");
    }
    let bin = netns_tests::binary::target_dir().join(if release { "release" } else { "debug" }).join("shoal");
    anyhow::ensure!(bin.is_file(), "built shoal but {} is missing", bin.display());
    Ok(bin)
}
