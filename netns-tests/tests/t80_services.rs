//! Band 80 (issue 3, test 1): services place their tasks as Docker's scheduler does. Replicas
//! spread evenly and follow `scale`; a global service runs one task per node, including a node
//! that joins later; constraints on the role and on node labels hold (a task that fits nowhere
//! stays pending with "no suitable node"); draining a node moves every task off it. Placement is
//! read from the API, and every claim about a node is checked against the processes running there.

use std::collections::BTreeMap;

use netns_tests::services::task_http_get;
use netns_tests::{poll_until, Lab, TaskView, CLUSTER};

/// `{"node1": 2, …}` from `[("node1", 2), …]`.
fn spread(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
}

#[test]
fn replicas_spread_scale_follow_constraints_and_leave_drained_nodes() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);

    n1.service(&["create", "-d", "--name", "web", "--replicas", "6", "shoal/echo", "--http"]).assert_ok();
    let tasks = lab.wait_converged(1, "web", 6);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 2), ("node2", 2), ("node3", 2)]));
    let mut slots: Vec<u64> = tasks.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3, 4, 5, 6]);
    assert_eq!(lab.wait_processes_match_api(1, "web"), spread(&[("node1", 2), ("node2", 2), ("node3", 2)]));
    // Each task answers from its own network namespace with its name, slot and node.
    let names = lab.hostnames(1);
    for t in &tasks {
        let (status, body) = task_http_get(t.pid, 80, "/").unwrap_or_else(|e| panic!("{}: {e}", t.brief()));
        assert_eq!(status, 200, "{body}");
        let want = format!("web.{}.{} on {} from 127.0.0.1:", t.slot, t.id, names[&t.node_id]);
        assert!(body.starts_with(&want), "{body:?} does not start with {want:?}");
    }

    n1.service(&["scale", "-d", "web=9"]).assert_ok().assert_stdout_contains("web scaled to 9");
    let tasks = lab.wait_converged(1, "web", 9);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 3), ("node2", 3), ("node3", 3)]));
    assert_eq!(lab.wait_processes_match_api(1, "web"), spread(&[("node1", 3), ("node2", 3), ("node3", 3)]));

    // Scaling down removes tasks from the nodes that run most of them: 2 tasks on 2 nodes.
    n1.service(&["scale", "-d", "web=2"]).assert_ok();
    let tasks = lab.wait_converged(1, "web", 2);
    let placement = lab.placement(1, &tasks);
    assert_eq!(placement.values().copied().collect::<Vec<_>>(), [1, 1], "{placement:?}");
    assert_eq!(lab.wait_processes_match_api(1, "web"), placement);

    // node.role==manager: everything on node1, the only manager.
    n1.service(&[
        "create",
        "-d",
        "--name",
        "mgr",
        "--replicas",
        "3",
        "--constraint",
        "node.role==manager",
        "shoal/echo",
    ])
    .assert_ok();
    let tasks = lab.wait_converged(1, "mgr", 3);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 3)]));
    assert_eq!(lab.wait_processes_match_api(1, "mgr"), spread(&[("node1", 3)]));

    // A node label.
    n1.shoal(&["node", "update", "--label-add", "zone=b", "node3"]).assert_ok();
    n1.service(&[
        "create",
        "-d",
        "--name",
        "zoned",
        "--replicas",
        "2",
        "--constraint",
        "node.labels.zone==b",
        "shoal/echo",
    ])
    .assert_ok();
    let tasks = lab.wait_converged(1, "zoned", 2);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node3", 2)]));
    n1.service(&[
        "create",
        "-d",
        "--name",
        "notzoned",
        "--replicas",
        "2",
        "--constraint",
        "node.labels.zone!=b",
        "shoal/echo",
    ])
    .assert_ok();
    let tasks = lab.wait_converged(1, "notzoned", 2);
    assert!(!lab.placement(1, &tasks).contains_key("node3"), "{:?}", lab.placement(1, &tasks));

    // Nowhere to go: the task stays pending with Docker's message, and `service ps` shows it.
    n1.service(&["create", "-d", "--name", "nowhere", "--constraint", "node.labels.zone==nowhere", "shoal/echo"])
        .assert_ok();
    let pending = lab.wait_tasks(1, "nowhere", "one pending task that says why", |tasks| match tasks {
        [t] if t.state == "pending" && t.err.contains("no suitable node") => Ok(()),
        _ => Err("not yet".into()),
    });
    assert!(pending[0].node_id.is_empty(), "a pending task got a node: {}", pending[0].brief());
    n1.service(&["ps", "--no-trunc", "nowhere"]).assert_ok().assert_stdout_contains("no suitable node");

    // Drain node2: every task it ran is replaced elsewhere and its processes end.
    n1.service(&["scale", "-d", "web=6"]).assert_ok();
    lab.wait_converged(1, "web", 6);
    n1.shoal(&["node", "update", "--availability", "drain", "node2"]).assert_ok();
    for (service, n) in [("web", 6), ("notzoned", 2)] {
        let tasks = lab.wait_tasks(1, service, "nothing current on node2, all running", |tasks| {
            let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
            let names = lab.hostnames(1);
            let on2 = current.iter().filter(|t| names.get(&t.node_id).map(String::as_str) == Some("node2")).count();
            let running = current.iter().filter(|t| t.is_running()).count();
            if current.len() == n && running == n && on2 == 0 {
                Ok(())
            } else {
                Err(format!("{} current, {running} running, {on2} on node2", current.len()))
            }
        });
        let placement = lab.wait_processes_match_api(1, service);
        assert!(!placement.contains_key("node2"), "{service}: {placement:?}");
        assert!(tasks.iter().any(|t| !t.is_current()), "{service}: nothing was moved");
    }
    poll_until(CLUSTER, "node2 to run no task process", || {
        let left = lab.node(2).running_task_processes();
        left.is_empty().then_some(()).ok_or(left)
    });
}

#[test]
fn a_global_service_runs_on_every_node_including_one_that_joins_later() {
    let lab = Lab::with_daemons(3);
    lab.init_swarm(1);
    lab.join(2, false);
    let n1 = lab.node(1);

    n1.service(&["create", "-d", "--name", "agent", "--mode", "global", "shoal/echo", "--http"]).assert_ok();
    let tasks = lab.wait_converged(1, "agent", 2);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 1), ("node2", 1)]));
    assert!(tasks.iter().all(|t| t.slot == 0), "global tasks have no slot: {tasks:#?}");
    // Global task names are <service>.<node id>.<task id>.
    for t in &tasks {
        let (_, body) = task_http_get(t.pid, 80, "/").unwrap();
        assert!(body.starts_with(&format!("agent.{}.{} on ", t.node_id, t.id)), "{body:?}");
    }

    lab.join(3, false);
    let tasks = lab.wait_converged(1, "agent", 3);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 1), ("node2", 1), ("node3", 1)]));
    assert_eq!(lab.wait_processes_match_api(1, "agent"), spread(&[("node1", 1), ("node2", 1), ("node3", 1)]));

    // A drained node loses its global task; made active again, it gets one back.
    n1.shoal(&["node", "update", "--availability", "drain", "node3"]).assert_ok();
    let tasks = lab.wait_converged(1, "agent", 2);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 1), ("node2", 1)]));
    n1.shoal(&["node", "update", "--availability", "active", "node3"]).assert_ok();
    let tasks = lab.wait_converged(1, "agent", 3);
    assert_eq!(lab.placement(1, &tasks), spread(&[("node1", 1), ("node2", 1), ("node3", 1)]));
    assert_eq!(lab.wait_processes_match_api(1, "agent"), spread(&[("node1", 1), ("node2", 1), ("node3", 1)]));
}
