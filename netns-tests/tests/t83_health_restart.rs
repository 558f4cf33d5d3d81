//! Band 83 (issue 3, test 4): health checks and restart policies. A task made unhealthy from the
//! inside (`/tmp/unhealthy` in its private /tmp makes the echo server's /health answer 500) fails
//! with "unhealthy container" and is replaced; failing checks during `--health-start-period` do
//! not count, a passing one ends it early; `--restart-condition none|on-failure|any` and
//! `--restart-max-attempts` decide which ended tasks come back. Absence ("not restarted") is
//! judged against a service with the same delays that does restart, never against a sleep.

use std::time::{Duration, Instant};

use netns_tests::services::{nsenter, task_http_get};
use netns_tests::{poll_until, Lab, TaskView, CLUSTER};

/// The health check every test here uses: the echo server's own /health endpoint (curl runs
/// inside the task's namespaces, from the host filesystem, as host commands do).
const HEALTH_CMD: &str = "curl -fsS -m 2 http://127.0.0.1:80/health";

fn first_seen(tasks: &[TaskView], state: &str) -> Option<TaskView> {
    tasks.iter().find(|t| t.state == state).cloned()
}

#[test]
fn an_unhealthy_task_is_replaced() {
    let lab = Lab::with_daemons(2);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.service(&[
        "create",
        "-d",
        "--name",
        "h",
        "--replicas",
        "2",
        "--health-cmd",
        HEALTH_CMD,
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--restart-delay",
        "1s",
        "shoal/echo",
        "--http",
    ])
    .assert_ok();
    let tasks = lab.wait_converged(1, "h", 2);
    let victim = tasks[0].clone();
    assert_eq!(task_http_get(victim.pid, 80, "/health").unwrap().0, 200);

    nsenter(victim.pid, &["-m"], &["touch", "/tmp/unhealthy"]).assert_ok();
    assert_eq!(task_http_get(victim.pid, 80, "/health").unwrap().0, 500, "the echo server ignores /tmp/unhealthy");
    let tasks = lab.wait_tasks(1, "h", "the unhealthy task failed and replaced", |tasks| {
        let old = tasks.iter().find(|t| t.id == victim.id).ok_or("victim gone from the history")?;
        let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current() && t.is_running()).collect();
        let replaced = current.iter().any(|t| t.slot == victim.slot && t.id != victim.id);
        if old.state == "failed" && current.len() == 2 && replaced {
            Ok(())
        } else {
            Err(format!("victim {}, {} running, slot replaced: {replaced}", old.state, current.len()))
        }
    });
    let old = tasks.iter().find(|t| t.id == victim.id).unwrap();
    assert!(old.err.contains("unhealthy container"), "{}", old.brief());
    // The other task was left alone, and the victim's process is gone from its node.
    assert!(tasks.iter().any(|t| t.is_current() && t.is_running() && t.slot != victim.slot));
    lab.wait_processes_match_api(1, "h");
}

#[test]
fn health_start_period_is_respected() {
    let lab = Lab::with_daemons(1);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    // Always unhealthy, checked every 500 ms, one failure enough: only the 8 s start period keeps
    // it alive.
    n1.service(&[
        "create",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        HEALTH_CMD,
        "--health-interval",
        "500ms",
        "--health-retries",
        "1",
        "--health-start-period",
        "8s",
        "--restart-condition",
        "none",
        "shoal/echo",
        "--http",
        "--fail-health",
    ])
    .assert_ok();
    let (task, seen) = poll_until(CLUSTER, "the task to be starting", || {
        let tasks = lab.try_tasks(1, &[("service", "slow")]).ok()?;
        first_seen(&tasks, "starting").map(|t| (t, Instant::now()))
    });
    assert_eq!(task_http_get(task.pid, 80, "/health").unwrap().0, 500, "--fail-health did not fail /health");
    // Through the first 5 s of the period (3 s of margin for this observer's lateness) the task
    // stays `starting`: failed probes do not count yet, and it is not `running` (not healthy).
    // This loop observes a state throughout a window; it waits for nothing.
    while seen.elapsed() < Duration::from_secs(5) {
        let tasks = lab.tasks(1, "slow");
        let t = tasks.iter().find(|t| t.id == task.id).unwrap();
        assert_eq!(t.state, "starting", "{:.1} s into the start period: {}", seen.elapsed().as_secs_f64(), t.brief());
        std::thread::sleep(Duration::from_millis(100));
    }
    // After it, the first failure counts.
    let failed = lab.wait_tasks(1, "slow", "the task failed as unhealthy", |tasks| match tasks {
        [t] if t.state == "failed" => Ok(()),
        _ => Err("not yet".into()),
    });
    assert!(failed[0].err.contains("unhealthy container"), "{}", failed[0].brief());
    eprintln!("t83: an always-unhealthy task failed {:.1} s after it was seen starting", seen.elapsed().as_secs_f64());

    // A check that passes during the start period makes the task healthy (running) at once: with
    // a 10-minute start period, waiting for the period to end would time out here.
    n1.service(&[
        "create",
        "-d",
        "--name",
        "quick",
        "--health-cmd",
        HEALTH_CMD,
        "--health-interval",
        "500ms",
        "--health-start-period",
        "10m",
        "shoal/echo",
        "--http",
    ])
    .assert_ok();
    lab.wait_converged(1, "quick", 1);
}

/// `sh -c <script>` as a host command (any image but shoal/echo runs its command from the host).
fn create_sh(lab: &Lab, name: &str, flags: &[&str], script: &str) {
    let mut args = vec!["create", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    lab.node(1).service(&args).assert_ok();
}

#[test]
fn restart_conditions_and_max_attempts() {
    let lab = Lab::with_daemons(1);
    lab.form_swarm(1, &[]);
    // Every service restarts (if at all) after the same 500 ms delay.
    let cases: [(&str, &[&str], &str); 5] = [
        ("always", &["--restart-condition", "any"], "exit 0"),
        ("never", &["--restart-condition", "none"], "exit 3"),
        ("clean", &["--restart-condition", "on-failure"], "exit 0"),
        ("capped", &["--restart-condition", "on-failure", "--restart-max-attempts", "2"], "exit 1"),
        ("crashy", &["--restart-condition", "on-failure"], "exit 1"),
    ];
    for (name, flags, script) in cases {
        let mut flags = flags.to_vec();
        flags.extend_from_slice(&["--restart-delay", "500ms"]);
        create_sh(&lab, name, &flags, script);
    }
    // What must happen, waited for: `any` restarts clean exits, `on-failure` failures, the
    // capped service gets its 2 restarts, and the others end.
    lab.wait_tasks(1, "always", "a clean exit restarted", |t| {
        (t.len() >= 3).then_some(()).ok_or(format!("{} tasks", t.len()))
    });
    lab.wait_tasks(1, "crashy", "a failure restarted", |t| {
        (t.len() >= 3).then_some(()).ok_or(format!("{} tasks", t.len()))
    });
    let ended = |n: usize, state: &'static str| {
        move |tasks: &[TaskView]| match tasks.len() >= n && tasks.iter().all(|t| t.state == state) {
            true => Ok(()),
            false => Err(format!("{} tasks", tasks.len())),
        }
    };
    let never = lab.wait_tasks(1, "never", "its task failed", ended(1, "failed"));
    let clean = lab.wait_tasks(1, "clean", "its task complete", ended(1, "complete"));
    let capped = lab.wait_tasks(1, "capped", "3 failed tasks", ended(3, "failed"));
    // What must not happen, judged against `always`: once it has started a task 2 s (4 restart
    // delays) after the last of these ended, they had every chance to restart too.
    let last_end = [&never, &clean, &capped].iter().flat_map(|ts| ts.iter().map(|t| t.status_ns)).max().unwrap();
    lab.wait_tasks(1, "always", "a task started 2 s after the others ended", |tasks| {
        let newest = tasks.iter().map(|t| t.created_ns).max().unwrap_or(0);
        (newest > last_end + 2_000_000_000).then_some(()).ok_or("not yet".to_string())
    });
    let never = lab.tasks(1, "never");
    assert_eq!(never.len(), 1, "restart-condition none restarted: {never:#?}");
    assert_eq!((never[0].state.as_str(), never[0].exit_code), ("failed", 3), "{}", never[0].brief());
    assert!(never[0].err.contains("non-zero exit (3)"), "{}", never[0].brief());
    let clean = lab.tasks(1, "clean");
    assert_eq!(clean.len(), 1, "on-failure restarted a clean exit: {clean:#?}");
    assert_eq!(clean[0].state, "complete", "{}", clean[0].brief());
    let capped = lab.tasks(1, "capped");
    assert_eq!(capped.len(), 3, "on-failure with 2 attempts: the first run and 2 restarts: {capped:#?}");
    let crashy = lab.tasks(1, "crashy");
    assert!(crashy.iter().filter(|t| !t.is_current()).all(|t| t.state == "failed"), "{crashy:#?}");
    // No task of a service that gave up still runs.
    for name in ["never", "clean", "capped"] {
        let tasks = lab.tasks(1, name);
        assert!(tasks.iter().all(|t| t.state != "running"), "{name}: {tasks:#?}");
    }
    assert!(
        lab.node(1).running_task_processes().len() <= 2,
        "only `always` and `crashy` may have a task process: {:?}",
        lab.node(1).running_task_processes()
    );
}
