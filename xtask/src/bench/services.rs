//! `cargo xtask bench services`: the orchestrator's headline numbers.
//!
//! - (a) Time to run: on a 5-node lab (3 managers, 2 workers), `shoal service create -d
//!   --replicas 100 shoal/echo`, timed from the command until `GET /services?status=true` shows
//!   100 running tasks (polled every 20 ms). 3 rounds; each service is removed, and its processes
//!   gone, before the next.
//! - (b) Node failure: a 10-replica service (2 tasks per node), then kill -9 of a worker's daemon
//!   and its link cut; timed from the kill until the leader's `GET /nodes/{id}` says `down`, and
//!   until 10 tasks run again, none on the dead node. Default settings (no tuned heartbeat). The
//!   worker comes back (link up, daemon restarted) before the next round; 3 rounds.
//! - (c) The in-process scheduler/orchestrator at 1,000 nodes and 100,000 tasks:
//!   `cargo bench -p control --bench orchestrator` (control/benches/orchestrator.rs), whose
//!   timed passes are quoted as printed.
//!
//! Targets (issue 3): (a) ≤ 5 s; (b) `down` ≤ 3 s and replaced ≤ 5 s (Docker: about 15 s at its
//! 5 s heartbeat); (c) ≤ 2 s (swarmkit's scheduler took 22.6 s, swarmkit#193). Reported, never
//! asserted.

use std::time::{Duration, Instant};

use netns_tests::swarm::row;
use netns_tests::{poll_until, Lab, TaskView, CLUSTER};

use super::{doc_path, machine, quantile, verdict, write_section};

const REPLICAS: usize = 100;
const CREATE_ROUNDS: usize = 3;
/// The worker killed in each round (nodes 4 and 5 are the workers).
const VICTIMS: [usize; 3] = [4, 5, 4];
const SAMPLE: Duration = Duration::from_millis(20);

struct Figures {
    creates: Vec<Duration>,
    downs: Vec<Duration>,
    replaced: Vec<Duration>,
}

/// One timed pass of the in-process benchmark: its label and milliseconds.
struct Pass {
    label: String,
    ms: f64,
    detail: String,
}

pub fn services(debug: bool) -> anyhow::Result<()> {
    let figures = super::in_lab("services", 5, debug, measure)?;
    let orchestrator = orchestrator_bench();
    if let Err(e) = &orchestrator {
        eprintln!("xtask: the in-process orchestrator benchmark did not run: {e:#}");
    }
    let report = render(&figures, &orchestrator, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = doc_path();
    write_section(&doc, "services", &report)?;
    println!("written to {}", doc.display());
    Ok(())
}

fn measure(lab: &Lab) -> Figures {
    lab.start_daemons();
    lab.form_swarm(3, &[]);
    let n1 = lab.node(1);
    let mut creates = Vec::new();
    for round in 1..=CREATE_ROUNDS {
        let name = format!("hundred{round}");
        let replicas = REPLICAS.to_string();
        let start = Instant::now();
        n1.service(&["create", "-d", "--name", &name, "--replicas", &replicas, "shoal/echo"]).assert_ok();
        poll_every(SAMPLE, &format!("{REPLICAS} tasks of {name} running"), || running_tasks(lab, &name) == REPLICAS);
        let took = start.elapsed();
        println!("create --replicas {REPLICAS}, round {round}: all running after {:.2} s", took.as_secs_f64());
        creates.push(took);
        remove_and_wait(lab, &name, None);
    }

    let (mut downs, mut replaced) = (Vec::new(), Vec::new());
    for (round, &victim) in VICTIMS.iter().enumerate() {
        let name = format!("kill{round}");
        n1.service(&["create", "-d", "--name", &name, "--replicas", "10", "shoal/echo"]).assert_ok();
        let tasks = lab.wait_converged(1, &name, 10);
        let victim_id = lab.node(victim).node_id();
        let on_victim = tasks.iter().filter(|t| t.node_id == victim_id).count();
        assert!(on_victim > 0, "node{victim} runs none of {name}'s tasks");

        lab.node(victim).kill9();
        lab.node(victim).cut_link();
        let start = Instant::now();
        let (mut down_at, mut replaced_at) = (None, None);
        while down_at.is_none() || replaced_at.is_none() {
            assert!(
                start.elapsed() < CLUSTER,
                "node{victim}: down {down_at:?}, replaced {replaced_at:?} after {CLUSTER:?}"
            );
            if down_at.is_none() && node_state(lab, &victim_id) == "down" {
                down_at = Some(start.elapsed());
            }
            if replaced_at.is_none() && replaced_elsewhere(lab, &name, &victim_id) {
                replaced_at = Some(start.elapsed());
            }
            std::thread::sleep(SAMPLE);
        }
        let (down, moved) = (down_at.unwrap(), replaced_at.unwrap());
        println!(
            "kill -9 node{victim} ({on_victim} tasks): down after {:.2} s, replaced after {:.2} s",
            down.as_secs_f64(),
            moved.as_secs_f64()
        );
        downs.push(down);
        replaced.push(moved);

        lab.node(victim).restore_link();
        lab.node(victim).restart_daemon();
        let host = format!("node{victim}");
        lab.wait_node_ls(1, &format!("{host} Ready again"), |rows| match row(rows, &host)?.status.as_str() {
            "Ready" => Ok(()),
            other => Err(format!("{host} is {other}")),
        });
        remove_and_wait(lab, &name, Some(victim));
    }
    Figures { creates, downs, replaced }
}

/// Calls `check` every `interval` until it holds (a figure's resolution), for at most
/// [`CLUSTER`].
fn poll_every(interval: Duration, what: &str, mut check: impl FnMut() -> bool) {
    netns_tests::time_until(CLUSTER, interval, what, || check().then_some(()));
}

/// `ServiceStatus.RunningTasks` of `name` from `GET /services?status=true` on node1.
fn running_tasks(lab: &Lab, name: &str) -> usize {
    let Ok(r) = lab.node(1).api("GET", "/services?status=true", None) else { return 0 };
    if !r.is_success() {
        return 0;
    }
    let services = r.json();
    let service = services.as_array().into_iter().flatten().find(|s| s["Spec"]["Name"] == name);
    service.and_then(|s| s["ServiceStatus"]["RunningTasks"].as_u64()).unwrap_or(0) as usize
}

fn node_state(lab: &Lab, id: &str) -> String {
    let r = lab.node(1).api("GET", &format!("/nodes/{id}"), None).ok().filter(|r| r.is_success());
    r.map(|r| r.json()["Status"]["State"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

/// Whether `service` has 10 current tasks, all running, none on node `dead`.
fn replaced_elsewhere(lab: &Lab, service: &str, dead: &str) -> bool {
    let Ok(tasks) = lab.try_tasks(1, &[("service", service)]) else { return false };
    let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
    current.len() == 10 && current.iter().all(|t| t.is_running() && t.node_id != dead)
}

/// `service rm`, then waits until the API has no task of it left and no node but `except` runs
/// one of its task processes. (A node that was down while its tasks were replaced keeps them
/// running after it returns, a known gap `t81_node_failure` reports; the lab removes them.)
fn remove_and_wait(lab: &Lab, name: &str, except: Option<usize>) {
    let id = lab.inspect_service(1, name)["ID"].as_str().unwrap_or_default().to_string();
    let tasks: Vec<String> = lab.tasks(1, name).into_iter().map(|t| t.id).collect();
    lab.node(1).service(&["rm", name]).assert_ok();
    // A `service` filter naming a removed service is a 404, as in Docker: list them all.
    poll_until(CLUSTER, &format!("{name}'s tasks to leave the API"), || {
        let all = lab.try_tasks(1, &[]).ok()?;
        all.iter().all(|t| t.service_id != id).then_some(())
    });
    poll_until(CLUSTER, &format!("{name}'s task processes to end"), || {
        let left: Vec<(String, i32)> = lab
            .nodes()
            .iter()
            .filter(|n| Some(n.index) != except)
            .flat_map(|n| n.running_task_processes())
            .filter(|(task, _)| tasks.contains(task))
            .collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
}

/// Runs `cargo bench -p control --bench orchestrator` and reads its timed passes: lines like
/// `from empty: create and place 100,000 tasks   812.3 ms  (100000 upserts, …)`.
fn orchestrator_bench() -> anyhow::Result<(String, Vec<Pass>)> {
    let command = "cargo bench -p control --bench orchestrator";
    eprintln!("xtask: {command}");
    let out = crate::cargo().args(["bench", "-p", "control", "--bench", "orchestrator"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "`{command}` failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    let passes = parse_passes(&stdout);
    anyhow::ensure!(!passes.is_empty(), "`{command}` printed no timed pass:\n{stdout}");
    Ok((command.to_string(), passes))
}

fn parse_passes(text: &str) -> Vec<Pass> {
    text.lines()
        .filter_map(|line| {
            let (head, detail) = match line.split_once("  (") {
                Some((h, d)) => (h, d.trim_end_matches(')').to_string()),
                None => (line, String::new()),
            };
            let head = head.trim_end().strip_suffix(" ms")?;
            let (label, number) = head.rsplit_once(' ')?;
            Some(Pass { label: label.trim().to_string(), ms: number.parse().ok()?, detail })
        })
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn render(f: &Figures, orchestrator: &anyhow::Result<(String, Vec<Pass>)>, profile: &str) -> String {
    let row = |figure: &str, samples: &[Duration], target: Duration, target_text: &str| {
        let (med, max) = (quantile(samples, 0.5), quantile(samples, 1.0));
        format!(
            "| {figure}, median of {n} | {} | {target_text} | {} |\n| {figure}, max of {n} | {} | {target_text} | {} |\n",
            secs(med),
            verdict(med, target),
            secs(max),
            verdict(max, target),
            n = samples.len(),
        )
    };
    let mut table = String::from("| figure | value | target | |\n|---|---|---|---|\n");
    table += &row(
        &format!("`service create --replicas {REPLICAS}` → all running"),
        &f.creates,
        Duration::from_secs(5),
        "≤ 5 s",
    );
    table += &row("worker kill -9 → `down`", &f.downs, Duration::from_secs(3), "≤ 3 s (Docker ≈ 15 s)");
    table += &row("worker kill -9 → its tasks running elsewhere", &f.replaced, Duration::from_secs(5), "≤ 5 s");
    let mut details = String::new();
    match orchestrator {
        Ok((command, passes)) => {
            if let Some(p) = passes.iter().find(|p| p.label.starts_with("from empty")) {
                let d = Duration::from_secs_f64(p.ms / 1000.0);
                table += &format!(
                    "| in-process orchestrator: 1,000 nodes, 100,000 tasks placed from empty | {:.0} ms | ≤ 2 s (swarmkit 22.6 s) | {} |\n",
                    p.ms,
                    verdict(d, Duration::from_secs(2))
                );
            }
            details += &format!("\nIn-process passes (`{command}`, release build, one pass each):\n\n| pass | time | plan |\n|---|---|---|\n");
            for p in passes {
                details += &format!("| {} | {:.1} ms | {} |\n", p.label, p.ms, p.detail);
            }
        }
        Err(e) => {
            let first = format!("{e:#}").lines().next().unwrap_or_default().to_string();
            table +=
                &format!("| in-process orchestrator: 1,000 nodes, 100,000 tasks | not measured: {first} | ≤ 2 s | |\n");
        }
    }
    let list = |s: &[Duration]| s.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(", ");
    format!(
        "### Services: time to run, node failure, orchestrator scale\n\n\
         Command: `sudo cargo xtask bench services` ({profile} build) · {}, a 5-node netns lab \
         (3 managers, 2 workers) at default settings.\n\n{table}\n\
         Samples (s): create {}; down {}; replaced {}. A create is timed from the `shoal service create -d` \
         command to the first `GET /services?status=true` showing {REPLICAS} running tasks; a node failure \
         from the SIGKILL of a worker's daemon (its link cut at once) to the leader's `GET /nodes/{{id}}` \
         saying `down`, and to 10 of 10 tasks running with none on the dead worker.\n{details}",
        machine(),
        list(&f.creates),
        list(&f.downs),
        list(&f.replaced),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orchestrator_passes_are_read_from_the_bench_output() {
        let text = "1000 nodes, 100 services x 1000 replicas\n\
            from empty: create and place 100,000 tasks     812.3 ms  (100000 upserts, 0 deletes, 0 update statuses)\n\
            converged pass                                    41.0 ms  (0 upserts, 0 deletes, 0 update statuses)\n";
        let passes = parse_passes(text);
        let got: Vec<(&str, f64, &str)> = passes.iter().map(|p| (p.label.as_str(), p.ms, p.detail.as_str())).collect();
        assert_eq!(
            got,
            [
                ("from empty: create and place 100,000 tasks", 812.3, "100000 upserts, 0 deletes, 0 update statuses"),
                ("converged pass", 41.0, "0 upserts, 0 deletes, 0 update statuses"),
            ]
        );
    }
}
