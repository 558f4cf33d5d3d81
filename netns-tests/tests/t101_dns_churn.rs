//! Band 101 (embedded DNS, test 2): answers follow the cluster on every node. `web` is scaled
//! 3 → 5 → 1 → 3, then a worker running one of its tasks dies (kill -9 of its daemon and of its
//! tasks, its link cut); a probe task pinned to each node asks `tasks.web` every 20 ms. Each
//! change is timed from the CLI's return (or from the node being marked down) to every probe's
//! answer being exactly the running tasks' IPs, and from the API showing the change to that; the
//! figures are printed. The target is 1 s from the replicated state to every node; the
//! assertion is only a regression guard at [`GUARD`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netns_tests::dns::{self, figures, must_dig, wait_answers};
use netns_tests::{tasks, time_until, Lab, TaskView, CLUSTER};

/// How long after the API shows a change every node's answer may take to follow (target: 1 s).
const GUARD: Duration = Duration::from_secs(5);

/// How often the node-down and convergence figures are sampled.
const SAMPLE: Duration = Duration::from_millis(20);

fn running_ips(tasks: &[TaskView]) -> BTreeSet<Ipv4Addr> {
    tasks.iter().filter(|t| t.is_current() && t.is_running()).map(|t| t.overlay_ip("front")).collect()
}

/// Scales `web` to `n` with the CLI (detached), then measures: CLI return → the API shows `n`
/// running tasks → every probe answers exactly their IPs. Asserts the answers followed within
/// [`GUARD`] of the API.
fn scale_and_follow(lab: &Lab, probes: &[(String, i32)], from: usize, n: usize) -> BTreeSet<Ipv4Addr> {
    lab.node(1).service(&["scale", "-d", &format!("web={n}")]).assert_ok();
    let returned = Instant::now();
    let tasks = lab.wait_converged(1, "web", n);
    let api_after = returned.elapsed();
    let want = running_ips(&tasks);
    assert_eq!(want.len(), n, "{n} distinct task IPs: {tasks:#?}");
    let answers = wait_answers(probes, "tasks.web", &want, returned, CLUSTER);
    eprintln!(
        "t101: scale {from} → {n}: API converged {:.2} s after the CLI returned; every node's tasks.web \
         followed after: {}",
        api_after.as_secs_f64(),
        figures(&answers)
    );
    for (probe, after) in &answers {
        let behind_api = after.saturating_sub(api_after);
        assert!(behind_api <= GUARD, "scale {from} → {n}: {probe} followed {behind_api:?} after the API");
    }
    want
}

#[test]
fn answers_follow_scaling_and_a_dead_node_on_every_node() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    lab.create_overlay(1, "front", &["--subnet", "10.101.1.0/24"]);
    // A probe on every node, created first so spreading puts one `web` task on each node too.
    let probes: Vec<TaskView> = (1..=3).map(|i| lab.pinned_echo(1, &format!("probe{i}"), "front", i)).collect();
    let probe_pids: Vec<(String, i32)> = (1..=3).map(|i| (format!("node{i}"), probes[i - 1].pid)).collect();

    lab.node(1)
        .service(&["create", "-d", "--name", "web", "--network", "front", "--replicas", "3", "shoal/echo"])
        .assert_ok();
    let created = Instant::now();
    let web = lab.wait_converged(1, "web", 3);
    let want = running_ips(&web);
    let answers = wait_answers(&probe_pids, "tasks.web", &want, created, CLUSTER);
    eprintln!("t101: create web (3): every node's tasks.web answered after: {}", figures(&answers));
    let vip = must_dig(probe_pids[0].1, &["web"]).ips();
    assert_eq!(vip.len(), 1, "web has one VIP");

    scale_and_follow(&lab, &probe_pids, 3, 5);
    scale_and_follow(&lab, &probe_pids, 5, 1);
    let before = scale_and_follow(&lab, &probe_pids, 1, 3);
    for (node, pid) in &probe_pids {
        assert_eq!(must_dig(*pid, &["web"]).ips(), vip, "{node}: the VIP changed while scaling");
    }

    // A worker running a `web` task dies with its tasks.
    let tasks_now = lab.tasks(1, "web");
    let hosts = lab.hostnames(1);
    let victim = [3, 2]
        .into_iter()
        .find(|i| tasks_now.iter().any(|t| t.is_current() && hosts.get(&t.node_id) == Some(&format!("node{i}"))))
        .expect("a worker runs a web task");
    let victim_node = lab.node(victim);
    let victim_id = victim_node.node_id();
    let dead: BTreeSet<Ipv4Addr> =
        tasks_now.iter().filter(|t| t.is_current() && t.node_id == victim_id).map(|t| t.overlay_ip("front")).collect();
    assert!(!dead.is_empty() && dead.is_subset(&before));
    let survivors: Vec<(String, i32)> =
        probe_pids.iter().filter(|(node, _)| *node != format!("node{victim}")).cloned().collect();

    victim_node.kill9();
    for problem in tasks::reap(victim_node.data_root()) {
        eprintln!("t101: reaping node{victim}'s tasks: {problem}");
    }
    victim_node.cut_link();
    let (_, down_after) = time_until(CLUSTER, SAMPLE, &format!("node{victim} to be down"), || {
        let node = lab.node(1).api("GET", &format!("/nodes/{victim_id}"), None).ok().filter(|r| r.is_success())?.json();
        (node["Status"]["State"] == "down").then_some(())
    });
    let down = Instant::now();

    // The dead tasks' addresses leave every surviving node's answers ...
    let gone = dns::wait_answers_by(&survivors, "tasks.web", down, CLUSTER, &format!("none of {dead:?}"), |a| {
        a.status == "NOERROR" && a.ip_set().is_disjoint(&dead)
    });
    // ... and their replacements join them.
    let replaced = lab.wait_tasks(1, "web", "3 running tasks, none on the dead node", |tasks| {
        let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
        let ok = current.len() == 3 && current.iter().all(|t| t.is_running() && t.node_id != victim_id);
        ok.then_some(()).ok_or_else(|| format!("{} current", current.len()))
    });
    let api_after = down.elapsed();
    let want = running_ips(&replaced);
    assert_eq!(want.len(), 3);
    let joined = wait_answers(&survivors, "tasks.web", &want, down, CLUSTER);
    eprintln!(
        "t101: node{victim} killed: down after {:.2} s; after `down`, its tasks' IPs left tasks.web on: {}; \
         replacements running in the API after {:.2} s and in tasks.web on: {}",
        down_after.as_secs_f64(),
        figures(&gone),
        api_after.as_secs_f64(),
        figures(&joined)
    );
    for (probe, after) in &gone {
        assert!(*after <= GUARD, "{probe} still answered the dead node's tasks {after:?} after it was down");
    }
    for (probe, after) in &joined {
        let behind_api = after.saturating_sub(api_after);
        assert!(behind_api <= GUARD, "{probe} answered the replacements {behind_api:?} after the API");
    }
}
