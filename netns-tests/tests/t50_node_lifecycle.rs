//! Band 50 (issue 2, test 5): `node rm` rules, `promote`/`demote` (a demoted manager leaves
//! Raft), and drain/active availability, all through `shoal node …` as a user types them.

use netns_tests::swarm::row;
use netns_tests::{poll_until, Lab, CLUSTER};

/// Node-down detection in tests: heartbeats every second instead of Docker's 5 s.
const FAST_HEARTBEAT: &[&str] = &["--dispatcher-heartbeat", "1s"];

#[test]
fn node_rm_refuses_managers_and_live_workers_and_removes_down_ones() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, FAST_HEARTBEAT);
    let (manager, live, doomed) = (lab.node(1).node_id(), lab.node(2).node_id(), lab.node(3).node_id());

    lab.node(1).shoal(&["node", "rm", &manager]).assert_fails_with("must be demoted");
    lab.node(1).shoal(&["node", "rm", &live]).assert_fails_with("is not down and can't be removed");
    assert_eq!(lab.node_ls(1).len(), 3, "a refused rm removed a node");

    // A worker whose daemon died is marked Down, then goes without --force.
    lab.node(3).kill9();
    lab.wait_node_ls(1, "node3 Down", |rows| match row(rows, "node3")?.status.as_str() {
        "Down" => Ok(()),
        other => Err(format!("node3 is {other}")),
    });
    lab.node(1).shoal(&["node", "rm", &doomed]).assert_ok();
    let rows = lab.node_ls(1);
    assert!(row(&rows, "node3").is_err(), "node3 still listed: {rows:#?}");
    let r = lab.node(1).api("GET", &format!("/nodes/{doomed}"), None).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());

    // --force removes a live worker.
    lab.node(1).shoal(&["node", "rm", "--force", &live]).assert_ok();
    let rows = lab.node_ls(1);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].hostname, "node1");
}

#[test]
fn promote_demote_and_availability() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let id2 = lab.node(2).node_id();

    lab.node(1)
        .shoal(&["node", "promote", &id2])
        .assert_ok()
        .assert_stdout_contains("promoted to a manager in the swarm");
    lab.wait_node_ls(1, "node2 Reachable", |rows| match row(rows, "node2")?.manager_status.as_str() {
        "Reachable" => Ok(()),
        other => Err(format!("node2 is {other:?}")),
    });
    let ping = poll_until(CLUSTER, "node2 to serve as a manager", || {
        let r = lab.node(2).api("HEAD", "/_ping", None).ok()?;
        (r.header("Swarm") == Some("active/manager")).then_some(r)
    });
    assert_eq!(ping.status, 200);
    // A Raft member now: it answers cluster reads itself, and refuses rm as a manager.
    assert_eq!(lab.node_ls(2).len(), 3);
    lab.node(1).shoal(&["node", "rm", "--force", &id2]).assert_fails_with("must be demoted");

    lab.node(1).shoal(&["node", "demote", &id2]).assert_ok().assert_stdout_contains("demoted in the swarm");
    lab.wait_node_ls(1, "node2 a worker again (empty MANAGER STATUS)", |rows| {
        match row(rows, "node2")?.manager_status.as_str() {
            "" => Ok(()),
            other => Err(format!("node2 is {other:?}")),
        }
    });
    let node = lab.inspect_node(1, &id2);
    assert_eq!(node["Spec"]["Role"], "worker", "{node}");
    assert!(node["ManagerStatus"].is_null(), "a demoted node keeps ManagerStatus: {node}");
    // It left Raft: it no longer serves cluster state.
    poll_until(CLUSTER, "node2 to stop serving as a manager", || {
        let out = lab.node(2).shoal(&["node", "ls"]);
        (!out.success() && out.combined().contains("This node is not a swarm manager"))
            .then_some(())
            .ok_or(out.describe())
    });

    // Availability.
    lab.node(1).shoal(&["node", "update", "--availability", "drain", &id2]).assert_ok();
    assert_eq!(row(&lab.node_ls(1), "node2").unwrap().availability, "Drain");
    assert_eq!(lab.inspect_node(1, &id2)["Spec"]["Availability"], "drain");
    lab.node(1).shoal(&["node", "update", "--availability", "active", &id2]).assert_ok();
    assert_eq!(row(&lab.node_ls(1), "node2").unwrap().availability, "Active");
    // Hostnames work as node references, as in Docker.
    lab.node(1).shoal(&["node", "update", "--availability", "pause", "node3"]).assert_ok();
    assert_eq!(row(&lab.node_ls(1), "node3").unwrap().availability, "Pause");
}
