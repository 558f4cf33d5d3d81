//! Band 81 (issue 3, test 2): a worker dies (kill -9 of its daemon, its link cut). The managers
//! mark it `down` and start its tasks on the other nodes; both times are measured and printed
//! (the figures with targets are in `cargo xtask bench services`). When the worker comes back,
//! its old tasks are shut down, in the API and as processes, and nothing is duplicated.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use netns_tests::swarm::row;
use netns_tests::{time_until, Lab, TaskView, CLUSTER};

/// How often the figures are sampled.
const SAMPLE: Duration = Duration::from_millis(20);

#[test]
fn a_dead_worker_is_replaced_and_its_tasks_shut_down_when_it_returns() {
    let lab = Lab::with_daemons(3);
    // Default settings: the promise is about Shoal's own detection, not a tuned heartbeat.
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.service(&["create", "-d", "--name", "web", "--replicas", "6", "shoal/echo", "--http"]).assert_ok();
    let before = lab.wait_converged(1, "web", 6);
    let node3 = lab.node(3).node_id();
    let old: Vec<TaskView> = before.iter().filter(|t| t.node_id == node3).cloned().collect();
    assert_eq!(old.len(), 2, "node3 runs 2 of 6 tasks: {before:#?}");
    let old_ids: BTreeSet<String> = old.iter().map(|t| t.id.clone()).collect();
    let on3: BTreeSet<String> = lab.node(3).running_task_processes().into_iter().map(|(id, _)| id).collect();
    assert_eq!(on3, old_ids, "node3's processes are not the tasks the API places there");

    lab.node(3).kill9();
    lab.node(3).cut_link();
    let killed = Instant::now();
    let (_, down_after) = time_until(CLUSTER, SAMPLE, "node3 to be down", || {
        let node = n1.api("GET", &format!("/nodes/{node3}"), None).ok().filter(|r| r.is_success())?.json();
        (node["Status"]["State"] == "down").then_some(())
    });
    let (replaced, _) = time_until(CLUSTER, SAMPLE, "6 tasks running again, none on node3", || {
        let tasks = lab.try_tasks(1, &[("service", "web")]).ok()?;
        let current: Vec<TaskView> = tasks.into_iter().filter(TaskView::is_current).collect();
        let ok = current.len() == 6 && current.iter().all(|t| t.is_running() && t.node_id != node3);
        ok.then_some(current)
    });
    let replaced_after = killed.elapsed();
    eprintln!(
        "t81: node3 killed (kill -9 + link cut): `down` after {:.2} s, its 2 tasks running elsewhere after {:.2} s",
        down_after.as_secs_f64(),
        replaced_after.as_secs_f64()
    );
    let mut slots: Vec<u64> = replaced.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3, 4, 5, 6], "one current task per slot");
    let replacements: BTreeSet<String> = replaced.iter().map(|t| t.id.clone()).collect();
    assert!(replacements.is_disjoint(&old_ids));
    // The old tasks keep running on the dead node (nothing can reach them): that is expected.
    assert_eq!(lab.node(3).running_task_processes().len(), 2, "node3's tasks died with their daemon");

    // node3 comes back with its old tasks still running.
    lab.node(3).restore_link();
    lab.node(3).restart_daemon();
    lab.wait_node_ls(1, "node3 Ready", |rows| match row(rows, "node3")?.status.as_str() {
        "Ready" => Ok(()),
        other => Err(format!("node3 is {other}")),
    });
    let tasks = lab.wait_tasks(1, "web", "node3's old tasks reported shut down", |tasks| {
        let states: Vec<(&str, &str)> = tasks
            .iter()
            .filter(|t| old_ids.contains(&t.id))
            .map(|t| (t.state.as_str(), t.desired_state.as_str()))
            .collect();
        if states.len() == 2 && states.iter().all(|(s, _)| *s == "shutdown") {
            Ok(())
        } else {
            Err(format!("old tasks (state, desired): {states:?}"))
        }
    });
    // Nothing duplicated, nothing churned: the same 6 current tasks, all running.
    let current: BTreeSet<String> =
        tasks.iter().filter(|t| t.is_current() && t.is_running()).map(|t| t.id.clone()).collect();
    assert_eq!(current, replacements, "the current tasks changed after node3 came back");
    assert_eq!(tasks.iter().filter(|t| t.is_current()).count(), 6);
    // And on the machines: node3 runs none of them, the others exactly the API's 6.
    let placement = lab.wait_processes_match_api(1, "web");
    assert!(!placement.contains_key("node3"), "{placement:?}");
    assert_eq!(placement.values().sum::<usize>(), 6, "{placement:?}");
}
