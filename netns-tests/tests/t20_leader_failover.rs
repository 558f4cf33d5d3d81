//! Band 20 (issue 2, test 2): kill -9 the leader's daemon; another manager becomes Leader, a
//! write then succeeds, and the killed daemon, restarted from its data root, is Reachable again
//! and has caught up.

use netns_tests::swarm::row;
use netns_tests::{poll_until, Lab, CLUSTER};

#[test]
fn a_killed_leader_is_replaced_and_comes_back_reachable() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(3, &[]);
    let old = poll_until(CLUSTER, "a leader in GET /nodes", || lab.leader_via_api(1));
    let old_host = lab.node(old).hostname().to_string();
    let survivors: Vec<usize> = (1..=3).filter(|&i| i != old).collect();
    let observer = survivors[0];

    let target = lab.node(survivors[1]).node_id();
    lab.node(old).kill9();

    let rows = lab.wait_node_ls(observer, "a surviving manager Leader", |rows| {
        match rows.iter().find(|r| r.manager_status == "Leader") {
            Some(r) if r.hostname != old_host => Ok(()),
            Some(_) => Err(format!("{old_host} (killed) is still Leader")),
            None => Err("no Leader".into()),
        }
    });
    let new_leader = rows.iter().find(|r| r.manager_status == "Leader").unwrap();
    assert!(survivors.contains(&lab.index_of(&new_leader.hostname).unwrap()));

    // A write succeeds at once (no retry) once a leader is shown.
    lab.node(observer).shoal(&["node", "update", "--label-add", "a=b", &target]).assert_ok();
    let node = lab.inspect_node(survivors[1], &target);
    assert_eq!(node["Spec"]["Labels"]["a"], "b", "label missing after the write: {node}");

    // The dead manager is reported Unreachable (after missed heartbeats).
    lab.wait_node_ls(observer, "the killed manager Unreachable", |rows| {
        match row(rows, &old_host)?.manager_status.as_str() {
            "Unreachable" => Ok(()),
            other => Err(format!("{old_host} is {other:?}")),
        }
    });

    // The killed manager restarts from its data root and rejoins Raft as a follower.
    lab.node(old).restart_daemon();
    lab.wait_node_ls(observer, "the restarted manager Reachable again", |rows| {
        match row(rows, &old_host)?.manager_status.as_str() {
            "Reachable" => Ok(()),
            other => Err(format!("{old_host} is {other:?}")),
        }
    });
    assert_eq!(
        lab.node(old).node_id(),
        lab.inspect_node(observer, &old_host)["ID"],
        "the restart kept the node's identity"
    );
    // It serves the write made while it was dead.
    let seen = poll_until(CLUSTER, "the restarted manager to see label a=b", || {
        let r = lab.node(old).api("GET", &format!("/nodes/{target}"), None).ok()?;
        r.is_success().then(|| r.json()).filter(|n| n["Spec"]["Labels"]["a"] == "b")
    });
    assert_eq!(seen["ID"], target.as_str());
}
