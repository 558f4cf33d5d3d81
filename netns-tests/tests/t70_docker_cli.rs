//! Band 70 (issue 2, test 7): the real docker CLI (28.x, unmodified) drives a Shoal cluster:
//! `swarm init|join|join-token [-q] [--rotate]|leave --force` and `node ls|inspect
//! --pretty|update|promote|demote|rm --force` all exit 0 and show what Docker would.

use netns_tests::swarm::row;
use netns_tests::{poll_until, Lab, NodeRow, CLUSTER};

fn manager_status(lab: &Lab, host: &str, want: &str) {
    lab.wait_node_ls(1, &format!("{host} MANAGER STATUS {want:?}"), |rows: &[NodeRow]| {
        match row(rows, host)?.manager_status.as_str() {
            s if s == want => Ok(()),
            other => Err(format!("{host} is {other:?}")),
        }
    });
}

#[test]
fn docker_cli_drives_the_swarm() {
    let lab = Lab::with_daemons(3);
    let (n1, n2, n3) = (lab.node(1), lab.node(2), lab.node(3));
    let remote = format!("{}:2377", n1.addr());

    let out = n1.docker(&["swarm", "init", "--advertise-addr", &n1.addr().to_string(), "--dispatcher-heartbeat", "1s"]);
    out.assert_ok()
        .assert_stdout_contains("Swarm initialized: current node (")
        .assert_stdout_contains("--token SWMTKN-1-");

    let worker_token = n1.docker(&["swarm", "join-token", "-q", "worker"]).assert_ok().stdout.trim().to_string();
    let manager_token = n1.docker(&["swarm", "join-token", "-q", "manager"]).assert_ok().stdout.trim().to_string();
    assert!(worker_token.starts_with("SWMTKN-1-") && manager_token.starts_with("SWMTKN-1-"));
    assert_ne!(worker_token, manager_token);
    n1.docker(&["swarm", "join-token", "worker"])
        .assert_ok()
        .assert_stdout_contains(&format!("--token {worker_token} {remote}"));

    n2.docker(&["swarm", "join", "--token", &worker_token, "--advertise-addr", &n2.addr().to_string(), &remote])
        .assert_ok()
        .assert_stdout_contains("This node joined a swarm as a worker.");
    n3.docker(&["swarm", "join", "--token", &manager_token, "--advertise-addr", &n3.addr().to_string(), &remote])
        .assert_ok()
        .assert_stdout_contains("This node joined a swarm as a manager.");

    let rows = poll_until(CLUSTER, "docker node ls: 3 Ready nodes, Leader + Reachable", || {
        let rows = lab.docker_node_ls(1);
        netns_tests::swarm::check_shape(&rows, 3, 2).map(|_| rows.clone()).map_err(|e| format!("{e}: {rows:#?}"))
    });
    assert!(row(&rows, "node1").unwrap().is_self);
    assert_eq!(row(&rows, "node1").unwrap().manager_status, "Leader");

    let out = n1.docker(&["node", "inspect", "--pretty", "self"]);
    out.assert_ok();
    for needle in ["Hostname:", "node1", "Manager Status:", "Leader:", "Yes", "Reachable", "Availability:", "Active"] {
        out.assert_stdout_contains(needle);
    }

    // update: availability and a label.
    n1.docker(&["node", "update", "--availability", "drain", "--label-add", "x=y", "node2"]).assert_ok();
    let inspect = n1.docker(&["node", "inspect", "node2"]);
    let node: serde_json::Value = serde_json::from_str(&inspect.assert_ok().stdout).expect("inspect prints JSON");
    assert_eq!(node[0]["Spec"]["Availability"], "drain", "{node}");
    assert_eq!(node[0]["Spec"]["Labels"]["x"], "y", "{node}");
    assert_eq!(row(&lab.docker_node_ls(1), "node2").unwrap().availability, "Drain");
    n1.docker(&["node", "update", "--label-rm", "x", "--availability", "active", "node2"]).assert_ok();
    let node = lab.inspect_node(1, "node2");
    assert!(node["Spec"]["Labels"].get("x").is_none(), "{node}");

    // promote / demote.
    n1.docker(&["node", "promote", "node2"])
        .assert_ok()
        .assert_stdout_contains("Node node2 promoted to a manager in the swarm.");
    manager_status(&lab, "node2", "Reachable");
    n1.docker(&["node", "demote", "node2"]).assert_ok().assert_stdout_contains("Manager node2 demoted in the swarm.");
    manager_status(&lab, "node2", "");

    // A worker leaves; its node is then removed from the cluster.
    n2.docker(&["swarm", "leave", "--force"]).assert_ok().assert_stdout_contains("Node left the swarm.");
    assert_eq!(n2.local_node_state(), "inactive");
    n1.docker(&["node", "rm", "--force", "node2"]).assert_ok();
    poll_until(CLUSTER, "node2 gone from docker node ls", || {
        row(&lab.docker_node_ls(1), "node2").is_err().then_some(())
    });

    // Token rotation: a new worker token, printed with the join command.
    let out = n1.docker(&["swarm", "join-token", "--rotate", "worker"]);
    out.assert_ok().assert_stdout_contains("Successfully rotated worker join token.");
    let rotated = n1.docker(&["swarm", "join-token", "-q", "worker"]).assert_ok().stdout.trim().to_string();
    assert_ne!(rotated, worker_token);
    out.assert_stdout_contains(&rotated);

    // The node that left rejoins with the new token.
    n2.docker(&["swarm", "join", "--token", &rotated, "--advertise-addr", &n2.addr().to_string(), &remote])
        .assert_ok()
        .assert_stdout_contains("This node joined a swarm as a worker.");
    poll_until(CLUSTER, "node2 back in docker node ls", || {
        row(&lab.docker_node_ls(1), "node2").ok().filter(|r| r.status == "Ready").map(drop)
    });
}
