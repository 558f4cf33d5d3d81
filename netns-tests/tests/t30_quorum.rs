//! Band 30 (issue 2, test 3): quorum loss and recovery. With 2 of 3 managers dead, a write
//! fails fast with Docker's no-leader message instead of hanging; restarting one brings writes
//! back. `swarm init --force-new-cluster` on a lone survivor keeps every node and label.

use std::time::Duration;

use netns_tests::swarm::row;
use netns_tests::{poll_until, Lab, CLUSTER};

const NO_LEADER: &str = "The swarm does not have a leader";

/// The guard: "fail fast" means well under this; the exact figure is not the promise.
const FAST: Duration = Duration::from_secs(10);

#[test]
fn writes_fail_fast_without_quorum_and_resume_after_restart() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(3, &[]);
    let survivor = 3;
    let survivor_id = lab.node(survivor).node_id();
    lab.node(1).kill9();
    lab.node(2).kill9();

    // Once the survivor has noticed (its reads say so), a write must fail fast with the message.
    poll_until(CLUSTER, "node3 to report that the swarm has no leader", || {
        let out = lab.node(survivor).shoal(&["node", "ls"]);
        (!out.success() && out.combined().contains(NO_LEADER)).then_some(()).ok_or(out.describe())
    });
    let out = lab
        .node(survivor)
        .shoal_timeout(&["node", "update", "--label-add", "q=1", &survivor_id], Duration::from_secs(60));
    out.assert_fails_with(NO_LEADER);
    assert!(out.elapsed < FAST, "a write without quorum took {:?} to fail", out.elapsed);
    // The HTTP status Docker uses for it.
    let r = lab.node(survivor).api("GET", "/nodes", None).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.message().unwrap_or_default().contains(NO_LEADER), "{}", r.text());

    // One manager back: a majority again, writes work (after an election, hence the poll).
    lab.node(2).restart_daemon();
    poll_until(CLUSTER, "a write on node3 to succeed after node2 restarts", || {
        let out = lab.node(survivor).shoal(&["node", "update", "--label-add", "q=1", &survivor_id]);
        out.success().then_some(()).ok_or(out.describe())
    });
    let node = lab.inspect_node(2, &survivor_id);
    assert_eq!(node["Spec"]["Labels"]["q"], "1", "{node}");
}

#[test]
fn force_new_cluster_on_a_lone_survivor_keeps_nodes_and_labels() {
    let lab = Lab::with_daemons(4);
    lab.form_swarm(3, &[]);
    let ids: Vec<String> = (1..=4).map(|i| lab.node(i).node_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        lab.node(1).shoal(&["node", "update", "--label-add", &format!("zone=z{}", i + 1), id]).assert_ok();
    }

    // The survivor is the leader: it holds every committed entry, so the labels just written are
    // in its log whatever the followers had applied.
    let survivor = poll_until(CLUSTER, "a leader", || lab.leader_via_api(1));
    for i in (1..=3).filter(|&i| i != survivor) {
        lab.node(i).kill9();
    }
    let addr = lab.node(survivor).addr().to_string();
    let out = lab.node(survivor).shoal(&["swarm", "init", "--force-new-cluster", "--advertise-addr", &addr]);
    out.assert_ok();

    let survivor_host = lab.node(survivor).hostname().to_string();
    let rows = lab.wait_node_ls(survivor, "the survivor Leader of a new cluster", |rows| {
        match row(rows, &survivor_host)?.manager_status.as_str() {
            "Leader" => Ok(()),
            other => Err(format!("{survivor_host} is {other:?}")),
        }
    });
    let mut hosts: Vec<&str> = rows.iter().map(|r| r.hostname.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["node1", "node2", "node3", "node4"], "force-new-cluster lost nodes");
    for (i, id) in ids.iter().enumerate() {
        let node = lab.inspect_node(survivor, id);
        assert_eq!(node["Spec"]["Labels"]["zone"], format!("z{}", i + 1), "labels lost: {node}");
    }

    // A write works at once: the survivor alone is a majority now.
    lab.node(survivor).shoal(&["node", "update", "--label-add", "after=recovery", &ids[3]]).assert_ok();
    assert_eq!(lab.inspect_node(survivor, &ids[3])["Spec"]["Labels"]["after"], "recovery");
}
