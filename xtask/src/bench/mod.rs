//! `cargo xtask bench <name>`: scenarios run against their targets, reported (never asserted)
//! and written into docs/benchmarks.md between per-benchmark markers.
//!
//! - [`raft`]: leader failover and write latency on 3 managers.
//! - [`services`]: time to run 100 replicas, node-failure detection and task replacement, and
//!   the in-process orchestrator at 1,000 nodes and 100,000 tasks.
//! - [`overlay`]: iperf3 and request/response rate between tasks over VXLAN against the bare
//!   underlay.
//! - [`mesh`]: the routing mesh against direct, nftables DNAT and HAProxy.
//! - [`dns`]: the embedded resolver against dnsmasq (dnsperf throughput, p99 latency loaded and
//!   unloaded).

mod dns;
mod mesh;
mod overlay;
mod raft;
mod services;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

pub use dns::run as dns;
pub use mesh::mesh;
pub use overlay::overlay;
pub use raft::raft;
pub use services::services;

/// Builds `shoal` (release unless `debug`), measures `measure` on a fresh lab of `nodes` nodes,
/// and tears the lab down; a panicking measurement prints the daemons' logs and becomes an error.
pub(crate) fn in_lab<T>(
    name: &str,
    nodes: usize,
    debug: bool,
    measure: impl FnOnce(&netns_tests::Lab) -> T,
) -> anyhow::Result<T> {
    crate::require_root(&format!("bench {name}"))?;
    crate::deps::ensure(&[crate::deps::BUILD, crate::deps::LAB])?;
    let bin = crate::build_shoal(!debug)?;
    let lab =
        netns_tests::Lab::create(netns_tests::LabOptions { bin: Some(bin), ..netns_tests::LabOptions::nodes(nodes) })?;
    let figures = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| measure(&lab)));
    if figures.is_err() {
        lab.print_logs(80);
    }
    drop(lab);
    figures.map_err(|_| anyhow::anyhow!("the benchmark failed (see the message and daemon logs above)"))
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-quantile (0..=1) by nearest rank.
pub(crate) fn quantile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

pub(crate) fn verdict(value: Duration, target: Duration) -> &'static str {
    if value <= target {
        "meets target"
    } else {
        "MISSES target"
    }
}

/// `<date> · kernel <release> · <n> cores`, for a figure's provenance line.
pub(crate) fn machine() -> String {
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().ok();
    let date = date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{date} · kernel {kernel} · {cores} cores")
}

/// Replaces the text between `<!-- xtask bench <name>: begin -->` and its `end` marker in `doc`
/// (appending the markers if absent).
pub(crate) fn write_section(doc: &Path, name: &str, report: &str) -> anyhow::Result<()> {
    let (begin, end) = markers(name);
    let text = std::fs::read_to_string(doc).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{begin}\n{report}{end}");
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(doc, new).with_context(|| format!("write {}", doc.display()))
}

fn markers(name: &str) -> (String, String) {
    (format!("<!-- xtask bench {name}: begin -->"), format!("<!-- xtask bench {name}: end -->"))
}

/// docs/benchmarks.md in the workspace.
pub(crate) fn doc_path() -> std::path::PathBuf {
    netns_tests::binary::workspace_root().join("docs/benchmarks.md")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&s[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn section_is_replaced_between_markers() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("b.md");
        let (begin, end) = markers("raft");
        let (other_begin, other_end) = markers("services");
        std::fs::write(&doc, format!("# B\n\nintro\n\n{begin}\nold\n{end}\n\nafter\n")).unwrap();
        write_section(&doc, "raft", "new\n").unwrap();
        write_section(&doc, "services", "svc\n").unwrap();
        write_section(&doc, "services", "svc2\n").unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, format!("# B\n\nintro\n\n{begin}\nnew\n{end}\n\nafter\n{other_begin}\nsvc2\n{other_end}\n"));
    }
}
