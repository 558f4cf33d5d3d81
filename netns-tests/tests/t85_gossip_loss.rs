//! Band 85 (issue 3, test 6): liveness under packet loss. Five nodes, every node dropping 5 % of
//! the IPv4 packets it receives (so each direction of every link loses 5 %, independently), for
//! two minutes at default settings: `node ls` polled throughout never shows a node that is not
//! `Ready`. Then a node really dies, under the same loss, and is marked `Down`: the detector is
//! not simply blind.
//!
//! `SHOAL_GOSSIP_LOSS_SECS` sets the observation window (default 120 s). One manager and four
//! workers: the promise is about node liveness (gossip plus heartbeats), and a single manager
//! keeps Raft elections, which the loss also disturbs, out of the `node ls` this test polls.

use std::time::{Duration, Instant};

use netns_tests::swarm::row;
use netns_tests::{Lab, NodeRow};

const LOSS_PERCENT: u32 = 5;
const DEFAULT_SECS: u64 = 120;

fn window() -> Duration {
    let secs = std::env::var("SHOAL_GOSSIP_LOSS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SECS);
    Duration::from_secs(secs)
}

#[test]
fn five_percent_loss_on_every_link_causes_no_false_down() {
    let lab = Lab::with_daemons(5);
    lab.form_swarm(1, &[]);
    for node in lab.nodes() {
        node.drop_inbound_random(LOSS_PERCENT);
    }

    let window = window();
    let start = Instant::now();
    let mut polls = 0;
    let mut failures = Vec::new();
    let mut false_downs: Vec<(f64, NodeRow)> = Vec::new();
    // Observes `node ls` throughout the window; it waits for nothing.
    while start.elapsed() < window {
        match lab.try_node_ls(1) {
            Ok(rows) => {
                assert_eq!(rows.len(), 5, "{rows:#?}");
                let at = start.elapsed().as_secs_f64();
                false_downs.extend(rows.into_iter().filter(|r| r.status != "Ready").map(|r| (at, r)));
            }
            Err(e) => failures.push(format!("{:.1} s: {e}", start.elapsed().as_secs_f64())),
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let dropped: Vec<u64> = lab.nodes().iter().map(|n| n.dropped_packets()).collect();
    eprintln!(
        "t85: {} s at {LOSS_PERCENT} % inbound loss on 5 nodes: {polls} `node ls` polls, {} false downs, packets dropped per node {dropped:?}",
        window.as_secs(),
        false_downs.len()
    );
    assert!(dropped.iter().all(|&d| d > 0), "the loss was not applied: {dropped:?}");
    assert!(failures.is_empty(), "`node ls` failed under loss: {failures:#?}");
    assert!(false_downs.is_empty(), "nodes reported not Ready under 5 % loss (s, row): {false_downs:#?}");

    // Under the same loss, a node that really dies is marked Down.
    lab.node(5).kill9();
    lab.wait_node_ls(1, "node5 Down under loss", |rows| match row(rows, "node5")?.status.as_str() {
        "Down" => Ok(()),
        other => Err(format!("node5 is {other}")),
    });
    let rows = lab.node_ls(1);
    let others: Vec<&NodeRow> = rows.iter().filter(|r| r.hostname != "node5" && r.status != "Ready").collect();
    assert!(others.is_empty(), "{others:#?}");
}
