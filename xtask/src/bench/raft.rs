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

use std::time::{Duration, Instant};

use netns_tests::{poll_until, Lab, CLUSTER};
use serde_json::json;

use super::{doc_path, machine, ms, quantile, verdict, write_section};

const FAILOVER_ROUNDS: usize = 10;
const WRITES: usize = 200;

struct Figures {
    failovers: Vec<Duration>,
    writes_leader: Vec<Duration>,
    writes_follower: Vec<Duration>,
}

pub fn raft(debug: bool) -> anyhow::Result<()> {
    let figures = super::in_lab("raft", 3, debug, measure)?;
    let report = render(&figures, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = doc_path();
    write_section(&doc, "raft", &report)?;
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

fn render(f: &Figures, profile: &str) -> String {
    let machine = machine();
    let fo_med = quantile(&f.failovers, 0.5);
    let fo_max = quantile(&f.failovers, 1.0);
    let wl = (quantile(&f.writes_leader, 0.5), quantile(&f.writes_leader, 0.99));
    let wf = (quantile(&f.writes_follower, 0.5), quantile(&f.writes_follower, 0.99));
    let all: Vec<String> = f.failovers.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    format!(
        "### Raft: failover and write latency (3 managers)\n\n\
         Command: `sudo cargo xtask bench raft` ({profile} build) · {machine}, \
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
