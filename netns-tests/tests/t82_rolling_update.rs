//! Band 82 (issue 3, test 3): rolling updates and rollbacks. An update of 6 tasks with
//! `--update-parallelism 2 --update-delay 1s` is reconstructed from the task history: never more
//! than 2 slots in flight, never more than 2 new tasks started within 1 s, each old task stopped
//! before its replacement runs (stop-first). `service rollback` restores the previous spec; an
//! update whose new tasks fail, with `--update-failure-action rollback`, ends
//! `rollback_completed` on the old spec.

use std::collections::HashMap;

use netns_tests::services::secs_between;
use netns_tests::{Lab, TaskView};
use serde_json::Value;

const SECOND: i128 = 1_000_000_000;

fn env(task: &TaskView) -> Vec<String> {
    let env = task.json["Spec"]["ContainerSpec"]["Env"].as_array().cloned().unwrap_or_default();
    env.iter().filter_map(|e| e.as_str().map(str::to_string)).collect()
}

fn update_state(service: &Value) -> String {
    service["UpdateStatus"]["State"].as_str().unwrap_or_default().to_string()
}

fn started_at(service: &Value) -> String {
    service["UpdateStatus"]["StartedAt"].as_str().unwrap_or_default().to_string()
}

/// Waits for `UpdateStatus.State == want` in an update other than the one that started at
/// `previous` (`StartedAt`), so a state left by an earlier update does not count.
fn wait_update_state(lab: &Lab, name: &str, want: &str, previous: &Value) -> Value {
    let previous = started_at(previous);
    lab.wait_service(1, name, &format!("UpdateStatus.State {want}"), |s| {
        if update_state(s) == want && started_at(s) != previous {
            Ok(())
        } else {
            Err(format!("state {:?} started at {:?}", update_state(s), started_at(s)))
        }
    })
}

fn spec_args(service: &Value, which: &str) -> Value {
    service[which]["TaskTemplate"]["ContainerSpec"]["Args"].clone()
}

fn spec_env(service: &Value, which: &str) -> Value {
    service[which]["TaskTemplate"]["ContainerSpec"]["Env"].clone()
}

/// Waits until the 6 current tasks all run and `check` accepts each of them.
fn wait_current(lab: &Lab, what: &str, check: impl Fn(&TaskView) -> bool) -> Vec<TaskView> {
    let tasks = lab.wait_tasks(1, "web", what, |tasks| {
        let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
        let good = current.iter().filter(|t| t.is_running() && check(t)).count();
        if current.len() == 6 && good == 6 {
            Ok(())
        } else {
            Err(format!("{} current, {good} running as wanted", current.len()))
        }
    });
    tasks.into_iter().filter(TaskView::is_current).collect()
}

#[test]
fn rolling_update_rollback_and_automatic_rollback_of_a_failing_update() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.service(&[
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "6",
        "--update-parallelism",
        "2",
        "--update-delay",
        "1s",
        "shoal/echo",
        "--http",
    ])
    .assert_ok();
    let old = lab.wait_converged(1, "web", 6);
    let old_by_slot: HashMap<u64, String> = old.iter().map(|t| (t.slot, t.id.clone())).collect();

    // The update, reconstructed from the task history.
    let created = lab.inspect_service(1, "web");
    assert!(created["UpdateStatus"].is_null(), "a new service has no UpdateStatus: {created}");
    n1.service(&["update", "-d", "--env-add", "VERSION=2", "web"]).assert_ok();
    let service = wait_update_state(&lab, "web", "completed", &created);
    let new = wait_current(&lab, "6 tasks running VERSION=2", |t| env(t).contains(&"VERSION=2".to_string()));
    let all = lab.tasks(1, "web");
    let mut new = new;
    new.sort_by_key(|t| t.created_ns);
    let t0 = new[0].created_ns;
    eprintln!("t82: update timeline (s after the first new task was created):");
    for t in &new {
        let old_task = all.iter().find(|o| Some(&o.id) == old_by_slot.get(&t.slot)).expect("old task in history");
        eprintln!(
            "  slot {}: old stopped {:+.2}, new created {:+.2}, new running {:+.2}",
            t.slot,
            secs_between(t0, old_task.status_ns),
            secs_between(t0, t.created_ns),
            secs_between(t0, t.status_ns),
        );
        // stop-first: the old task is shut down before its replacement runs.
        assert_eq!(old_task.state, "shutdown", "{}", old_task.brief());
        assert!(old_task.status_ns <= t.status_ns, "slot {}: the new task ran before the old one stopped", t.slot);
    }
    // Parallelism 2: never more than 2 slots between "new task created" and "new task running".
    for t in &new {
        let in_flight = new.iter().filter(|o| o.created_ns <= t.created_ns && o.status_ns >= t.created_ns).count();
        assert!(in_flight <= 2, "{in_flight} slots updating at once when slot {} started", t.slot);
    }
    // Delay 1 s: each of the 2 update workers waits 1 s after a task runs before starting the
    // next, so no 1-second window holds more than 2 task creations (and 6 take over 2 s).
    for (i, t) in new.iter().enumerate() {
        let window = new[i..].iter().filter(|o| o.created_ns < t.created_ns + SECOND).count();
        assert!(window <= 2, "{window} new tasks created within 1 s of slot {}'s", t.slot);
    }
    let span = secs_between(new[0].created_ns, new[5].created_ns);
    assert!(span >= 2.0, "6 tasks, 2 at a time with 1 s between: {span:.2} s");
    assert_eq!(spec_env(&service, "Spec"), serde_json::json!(["VERSION=2"]));
    assert!(spec_env(&service, "PreviousSpec").as_array().is_none_or(|e| e.is_empty()), "{service}");
    lab.wait_processes_match_api(1, "web");

    // A manual rollback returns to the spec before the update.
    n1.service(&["rollback", "-d", "web"]).assert_ok();
    let service = wait_update_state(&lab, "web", "rollback_completed", &service);
    assert!(spec_env(&service, "Spec").as_array().is_none_or(|e| e.is_empty()), "{service}");
    assert_eq!(spec_env(&service, "PreviousSpec"), serde_json::json!(["VERSION=2"]));
    wait_current(&lab, "6 tasks running without VERSION", |t| env(t).is_empty());

    // A failing version with --update-failure-action rollback: the new tasks exit at once (an
    // unknown flag), the update rolls back by itself and ends on the old spec.
    n1.service(&["update", "-d", "--update-failure-action", "rollback", "--args", "--no-such-flag", "web"]).assert_ok();
    let service = wait_update_state(&lab, "web", "rollback_completed", &service);
    assert_eq!(spec_args(&service, "Spec"), serde_json::json!(["--http"]), "{service}");
    assert_eq!(spec_args(&service, "PreviousSpec"), serde_json::json!(["--no-such-flag"]), "{service}");
    let current = wait_current(&lab, "6 tasks running --http again", |t| t.args() == ["--http"]);
    let failed: Vec<TaskView> =
        lab.tasks(1, "web").into_iter().filter(|t| t.args() == ["--no-such-flag"] && t.state == "failed").collect();
    assert!(!failed.is_empty(), "no failed task of the bad version in the history");
    assert!(failed[0].err.contains("non-zero exit"), "{}", failed[0].brief());
    assert_eq!(current.len(), 6);
    lab.wait_processes_match_api(1, "web");
}
