//! Band 114 (routing mesh, test 5): a node dies under load. Node3 runs one of `nf`'s 3 tasks; its
//! daemon and tasks are killed with SIGKILL and its link is cut while an outside client sends
//! requests (a new connection each, 1 s timeout) through node1 and node2. Requests hashed to the
//! dead task fail until the cluster notices; the figure printed is how long failures go on after
//! node3 is marked `down` (the target: about 1 s). The assertions are a regression guard
//! at [`GUARD`] after `down`, and no failure at all once that window is over.

use std::net::SocketAddrV4;
use std::time::Duration;

use netns_tests::mesh::{LoadMode, LoadOptions};
use netns_tests::{poll_until, tasks, time_until, Lab, TaskView, CLUSTER, SHORT};

/// How long after `down` failures may go on (target: ~1 s).
const GUARD: Duration = Duration::from_secs(5);

/// How long the load runs after the guard window, with no failure allowed.
const CLEAN: Duration = Duration::from_secs(5);

#[test]
fn a_dead_node_costs_requests_through_the_others_for_about_a_second_after_it_is_down() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    lab.node(1)
        .service(&["create", "-d", "--name", "nf", "--replicas", "3", "-p", "8092:80", "shoal/echo", "--http"])
        .assert_ok();
    let tasks_before = lab.wait_converged(1, "nf", 3);
    let placement = lab.placement(1, &tasks_before);
    assert_eq!(placement.get("node3"), Some(&1), "one nf task on node3: {placement:?}");
    let client = lab.mesh_client();
    let targets: Vec<SocketAddrV4> = (1..=2).map(|i| SocketAddrV4::new(lab.node(i).addr(), 8092)).collect();
    for t in &targets {
        poll_until(SHORT, &format!("{t} to answer"), || client.http(*t).map_err(|f| f.to_string()));
    }
    let mut opts = LoadOptions::new(LoadMode::NewConnection, targets);
    opts.timeout = Duration::from_secs(1);
    let load = client.load(opts);
    poll_until(SHORT, "500 requests before the failure", || (load.sent() >= 500).then_some(()));

    let node3 = lab.node(3);
    let node3_id = node3.node_id();
    node3.kill9();
    for problem in tasks::reap(node3.data_root()) {
        eprintln!("t114: reaping node3's tasks: {problem}");
    }
    node3.cut_link();
    let killed_at = load.since_start();
    let (_, down_after) = time_until(CLUSTER, Duration::from_millis(20), "node3 to be down", || {
        let n = lab.node(1).api("GET", &format!("/nodes/{node3_id}"), None).ok().filter(|r| r.is_success())?.json();
        (n["Status"]["State"] == "down").then_some(())
    });
    let down_at = load.since_start();
    lab.wait_tasks(1, "nf", "3 running tasks, none on node3", |tasks| {
        let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
        let ok = current.len() == 3 && current.iter().all(|t| t.is_running() && t.node_id != node3_id);
        ok.then_some(()).ok_or_else(|| format!("{} current", current.len()))
    });
    let replaced_at = load.since_start();
    let until = down_at.max(replaced_at) + GUARD + CLEAN;
    poll_until(CLUSTER, "the load to run past the guard window", || (load.since_start() >= until).then_some(()));
    let report = load.stop();

    let before_down = report.failures.iter().filter(|f| f.at < down_at).count();
    let after_down: Vec<_> = report.failures.iter().filter(|f| f.at >= down_at).collect();
    let window = after_down.last().map(|f| f.at + Duration::from_secs(1) - down_at).unwrap_or_default();
    eprintln!(
        "t114: node3 killed at {:.2} s of the load, down {:.2} s later (at {:.2} s), replaced at {:.2} s; \
         {} failures before down, {} after; failures went on for {:.2} s after down (last failed request's \
         timeout included)\n  {}",
        killed_at.as_secs_f64(),
        down_after.as_secs_f64(),
        down_at.as_secs_f64(),
        replaced_at.as_secs_f64(),
        before_down,
        after_down.len(),
        window.as_secs_f64(),
        report.summary()
    );
    assert!(report.failed() > 0, "control: requests hashed to the dead task fail until it is noticed");
    assert!(window <= GUARD, "failures went on {window:?} after node3 was down (guard {GUARD:?})");
    let late: Vec<_> = report.failures.iter().filter(|f| f.at > down_at + GUARD).collect();
    assert!(late.is_empty(), "failures after the window: {late:?}");
    assert_eq!(report.wrong_source, 0, "{}", report.summary());
}
