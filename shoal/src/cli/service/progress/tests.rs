//! The display driven with fixture polls.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Duration as Ago;
use control::objects::service::{Service, Task, TaskState, UpdateConfig, UpdateState, UpdateStatus};

use super::*;
use crate::cli::service::fixtures::{service, task};

fn web() -> Service {
    service("websvc", "web", Some(3), 0, &[])
}

fn tasks(states: &[TaskState]) -> Vec<Task> {
    states
        .iter()
        .enumerate()
        .map(|(i, s)| task(&format!("t{i}"), "websvc", i as u64 + 1, "n1", *s, Ago::seconds(1)))
        .collect()
}

fn active() -> HashSet<String> {
    ["n1".to_string()].into()
}

fn texts(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.tty_text(true)).collect()
}

/// One poll: `check`, then `update` unless the wait ended.
fn poll(p: &mut ServiceProgress, s: &Service, t: &[Task], now: Instant) -> (Option<Result<(), String>>, Vec<String>) {
    if let Some(end) = p.check(s, now) {
        return (Some(end), texts(&p.take_lines()));
    }
    p.update(s, t, &active(), now).unwrap();
    (None, texts(&p.take_lines()))
}

#[test]
fn replicated_service_converges_then_verifies() {
    let (s, t0) = (web(), Instant::now());
    let mut p = ServiceProgress::new("web");
    let (end, lines) = poll(&mut p, &s, &tasks(&[TaskState::New, TaskState::Starting, TaskState::Running]), t0);
    assert!(end.is_none());
    assert_eq!(
        lines,
        [
            "overall progress: 0 out of 3 tasks",
            "1/3:  ",
            "2/3:  ",
            "3/3:  ",
            "1/3: new       [=====>                                             ] ",
            "2/3: starting  [============================================>      ] ",
            "3/3: running   [==================================================>] ",
            "overall progress: 1 out of 3 tasks",
        ]
    );

    let all = tasks(&[TaskState::Running; 3]);
    let (_, lines) = poll(&mut p, &s, &all, t0 + Duration::from_millis(200));
    assert_eq!(lines[3], "overall progress: 3 out of 3 tasks");
    assert_eq!(lines[4], "verify: Waiting 5 seconds to verify that tasks are stable...");
    let (_, lines) = poll(&mut p, &s, &all, t0 + Duration::from_millis(2400));
    // Converged: slot lines and the overall line stay as they were.
    assert_eq!(lines, ["verify: Waiting 3 seconds to verify that tasks are stable..."]);
    let (end, lines) = poll(&mut p, &s, &all, t0 + Duration::from_millis(5300));
    assert_eq!(end, Some(Ok(())));
    assert_eq!(lines, ["verify: Service web converged"]);
}

#[test]
fn a_failure_during_verification_restarts_it() {
    let (s, t0) = (web(), Instant::now());
    let mut p = ServiceProgress::new("web");
    poll(&mut p, &s, &tasks(&[TaskState::Running; 3]), t0);
    let mut failed = tasks(&[TaskState::Running, TaskState::Running, TaskState::Failed]);
    failed[2].desired_state = TaskState::Running;
    failed[2].status.err = "task: non-zero exit (1)".into();
    let (_, lines) = poll(&mut p, &s, &failed, t0 + Duration::from_secs(1));
    assert_eq!(
        lines,
        [
            "1/3: running   [==================================================>] ",
            "2/3: running   [==================================================>] ",
            "3/3: task: non-zero exit (1)",
            "overall progress: 2 out of 3 tasks",
            "verify: Detected task failure",
        ]
    );
    assert!(!p.converged());
}

#[test]
fn update_status_ends_or_labels_the_wait() {
    let t0 = Instant::now();
    let mut s = web();
    s.spec.update_config = Some(UpdateConfig { monitor: 1_000_000_000, ..crate::api::default_update_config() });
    s.update_status = Some(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: None,
        completed_at: None,
        message: "manually requested rollback".into(),
    });
    let mut p = ServiceProgress::new("web");
    let (_, lines) = poll(&mut p, &s, &tasks(&[TaskState::Starting; 3]), t0);
    assert_eq!(lines[0], "rollback: manually requested rollback");
    assert_eq!(lines[1], "overall progress: rolling back update: 0 out of 3 tasks");

    s.update_status.as_mut().unwrap().state = UpdateState::RollbackCompleted;
    s.update_status.as_mut().unwrap().message = "rollback completed".into();
    let (_, lines) = poll(&mut p, &s, &tasks(&[TaskState::Running; 3]), t0 + Duration::from_millis(200));
    assert_eq!(lines.last().unwrap(), "verify: Waiting 1 seconds to verify that tasks are stable...");
    let (end, lines) = poll(&mut p, &s, &[], t0 + Duration::from_millis(1300));
    assert_eq!(end, Some(Ok(())));
    assert_eq!(lines, ["verify: Service web converged", "rollback: rollback completed"]);

    s.update_status.as_mut().unwrap().state = UpdateState::Paused;
    s.update_status.as_mut().unwrap().message = "update paused due to failure or early termination of task t2".into();
    let mut p = ServiceProgress::new("web");
    let (end, _) = poll(&mut p, &s, &[], t0);
    assert_eq!(
        end,
        Some(Err("service update paused: update paused due to failure or early termination of task t2".into()))
    );
}

#[test]
fn global_services_wait_for_tasks_then_show_nodes() {
    let s = service("monsvc", "mon", None, 0, &[]);
    let t0 = Instant::now();
    let mut p = ServiceProgress::new("mon");
    let (_, lines) = poll(&mut p, &s, &[], t0);
    assert_eq!(lines, ["overall progress: waiting for new tasks"]);
    let mut t = task("g1", "monsvc", 0, "n1abcdefghijklmnop", TaskState::Preparing, Ago::seconds(1));
    t.slot = 0;
    let active: HashSet<String> = ["n1abcdefghijklmnop".to_string()].into();
    p.check(&s, t0);
    p.update(&s, &[t], &active, t0).unwrap();
    assert_eq!(
        texts(&p.take_lines()),
        [
            "overall progress: 0 out of 1 tasks",
            "n1abcdefghij: preparing [=================================>                 ] ",
            "overall progress: 0 out of 1 tasks",
        ]
    );
}

#[test]
fn many_replicas_get_only_the_overall_line() {
    let s = service("big", "big", Some(21), 0, &[]);
    let mut p = ServiceProgress::new("big");
    let (_, lines) = poll(&mut p, &s, &tasks(&[TaskState::Running; 21]), Instant::now());
    assert_eq!(
        lines,
        [
            "overall progress: 0 out of 21 tasks",
            "overall progress: 21 out of 21 tasks",
            "verify: Waiting 5 seconds to verify that tasks are stable..."
        ]
    );
}

#[test]
fn plain_lines_drop_padding_and_bars() {
    let line = Line { id: "1/3".into(), action: "running  ".into(), progress: Some((9, 9)) };
    assert_eq!(line.plain_text(), "1/3: running");
    assert_eq!(line.tty_text(false), "1/3: running   ");
    assert_eq!(bar(0, 9), format!("[>{}] ", " ".repeat(50)));
    let long = "x".repeat(100);
    assert_eq!(trunc_error(&long).chars().count(), 75);
}
