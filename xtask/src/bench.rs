//! `cargo xtask bench raft`: the control plane's two headline numbers on 3 managers in a lab.
//!
//! - Leader failover: 10 times, kill -9 the leader's daemon and time until a survivor's `GET
//!   /nodes` names a new leader (polled every 5 ms, so the figure includes the first successful
//!   linearizable read, which is what a user waits for). The killed daemon is restarted and
//!   back to Reachable before the next round.
//! - Write latency: 200 sequential `POST /nodes/{id}/update` label writes sent to the leader,
//!   then 200 sent to a follower (which forwards them); only the POST is timed.
//!
//! Targets (from issue 2): failover ≤ 1.5 s, write p99 ≤ 20 ms. They are reported, not asserted:
//! this is a benchmark, not a test. The figures and the command go into docs/benchmarks.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use netns_tests::{poll_until, Lab, LabOptions, CLUSTER};
use serde_json::json;

use crate::deps;

const FAILOVER_ROUNDS: usize = 10;
const WRITES: usize = 200;
const BEGIN: &str = "<!-- xtask bench raft: begin -->";
const END: &str = "<!-- xtask bench raft: end -->";

struct Figures {
    failovers: Vec<Duration>,
    writes_leader: Vec<Duration>,
    writes_follower: Vec<Duration>,
}

pub fn raft(debug: bool) -> anyhow::Result<()> {
    crate::require_root("bench raft")?;
    deps::ensure(&[deps::BUILD, deps::LAB])?;
    let bin = crate::build_shoal(!debug)?;
    let lab = Lab::create(LabOptions { bin: Some(bin), ..LabOptions::nodes(3) })?;
    let figures = match catch_unwind(AssertUnwindSafe(|| measure(&lab))) {
        Ok(f) => f,
        Err(_) => {
            lab.print_logs(80);
            drop(lab);
            anyhow::bail!("the benchmark failed (see the message and daemon logs above)");
        }
    };
    drop(lab);
    let report = render(&figures, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = netns_tests::binary::workspace_root().join("docs/benchmarks.md");
    write_section(&doc, &report)?;
    println!("written to {}", doc.display());
    Ok(())
}

fn measure(lab: &Lab) -> Figures {
    lab.start_daemons();
    lab.form_swarm(3, &[]);
    let all = [1, 2, 3];

    let mut failovers = Vec::new();
    for round in 1..=FAILOVER_ROUNDS {
        let old = poll_until(CLUSTER, "a leader", || all.iter().find_map(|&i| lab.leader_via_api(i)));
        wait_all_reachable(lab, old);
        let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
        lab.node(old).kill9();
        let start = Instant::now();
        let new = loop {
            if let Some(l) = survivors.iter().find_map(|&s| lab.leader_via_api(s).filter(|&l| l != old)) {
                break l;
            }
            assert!(start.elapsed() < CLUSTER, "no new leader {CLUSTER:?} after killing node{old}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = start.elapsed();
        println!("failover {round:>2}: {:>7.1} ms (node{old} killed, node{new} leads)", ms(took));
        failovers.push(took);
        lab.node(old).restart_daemon();
    }

    let leader = poll_until(CLUSTER, "a leader", || all.iter().find_map(|&i| lab.leader_via_api(i)));
    wait_all_reachable(lab, leader);
    let follower = all.iter().copied().find(|&i| i != leader).unwrap();
    let target = lab.node(leader).node_id();
    let writes_leader = writes(lab, leader, &target);
    let writes_follower = writes(lab, follower, &target);
    Figures { failovers, writes_leader, writes_follower }
}

/// Waits until `via`'s `GET /nodes` shows all three managers reachable.
fn wait_all_reachable(lab: &Lab, via: usize) {
    poll_until(CLUSTER, "3 reachable managers", || {
        let nodes = lab.node(via).api("GET", "/nodes", None).ok().filter(|r| r.is_success())?.json();
        let reachable = nodes.as_array()?.iter().filter(|n| n["ManagerStatus"]["Reachability"] == "reachable").count();
        (reachable == 3).then_some(())
    });
}

/// Times `WRITES` sequential label updates of node `target` sent to node `via`.
fn writes(lab: &Lab, via: usize, target: &str) -> Vec<Duration> {
    let node = lab.node(via);
    (0..WRITES)
        .map(|i| {
            let current = node.api_get(&format!("/nodes/{target}"));
            let version = current["Version"]["Index"].as_u64().expect("Version.Index");
            let mut spec = current["Spec"].clone();
            spec["Labels"] = json!({ "bench": i.to_string() });
            let body = serde_json::to_vec(&spec).unwrap();
            let path = format!("/nodes/{target}/update?version={version}");
            let start = Instant::now();
            let r = node.api("POST", &path, Some(&body)).expect("POST update");
            let took = start.elapsed();
            assert!(r.is_success(), "write {i} via node{via}: {} {}", r.status, r.text());
            took
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-quantile (0..=1) by nearest rank.
fn quantile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn verdict(value: Duration, target: Duration) -> &'static str {
    if value <= target {
        "meets target"
    } else {
        "MISSES target"
    }
}

fn render(f: &Figures, profile: &str) -> String {
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().ok();
    let date = date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let fo_med = quantile(&f.failovers, 0.5);
    let fo_max = quantile(&f.failovers, 1.0);
    let wl = (quantile(&f.writes_leader, 0.5), quantile(&f.writes_leader, 0.99));
    let wf = (quantile(&f.writes_follower, 0.5), quantile(&f.writes_follower, 0.99));
    let all: Vec<String> = f.failovers.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    format!(
        "### Raft: failover and write latency (3 managers)\n\n\
         Command: `sudo cargo xtask bench raft` ({profile} build) · {date} · kernel {kernel} · {cores} cores, \
         all 3 daemons on this machine in one netns lab.\n\n\
         | figure | value | target | |\n|---|---|---|---|\n\
         | leader failover, median of {n} kill -9 | {:.0} ms | ≤ 1500 ms | {} |\n\
         | leader failover, max of {n} | {:.0} ms | ≤ 1500 ms | {} |\n\
         | write latency via leader, p50 / p99 ({w} writes) | {:.1} / {:.1} ms | p99 ≤ 20 ms | {} |\n\
         | write latency via follower, p50 / p99 ({w} writes) | {:.1} / {:.1} ms | p99 ≤ 20 ms | {} |\n\n\
         Failover samples (ms): {}. Failover is measured from the SIGKILL to the first `GET /nodes` on a \
         survivor that names a new leader; a write is one `POST /nodes/{{id}}/update` (label change), \
         committed by a majority before it returns.\n",
        ms(fo_med),
        verdict(fo_med, Duration::from_millis(1500)),
        ms(fo_max),
        verdict(fo_max, Duration::from_millis(1500)),
        ms(wl.0),
        ms(wl.1),
        verdict(wl.1, Duration::from_millis(20)),
        ms(wf.0),
        ms(wf.1),
        verdict(wf.1, Duration::from_millis(20)),
        all.join(", "),
        n = f.failovers.len(),
        w = WRITES,
    )
}

/// Replaces the text between the raft markers in `doc` (appending the markers if absent).
fn write_section(doc: &Path, report: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(doc).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{BEGIN}\n{report}{END}");
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + END.len()..]),
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(doc, new).with_context(|| format!("write {}", doc.display()))
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
        std::fs::write(&doc, format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n")).unwrap();
        write_section(&doc, "new\n").unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, format!("# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\nafter\n"));
    }
}
