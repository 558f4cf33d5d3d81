//! Rolling updates and rollbacks observed step by step in the simulated cluster.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::objects::service::{FailureAction, Service, Task, TaskState, UpdateConfig, UpdateOrder, UpdateState};
use crate::objects::SECOND_NS;
use crate::orchestrator::testkit::{global, node, replicated, Sim};
use crate::orchestrator::MONITOR_PASSED_LABEL;

fn cluster() -> Sim {
    Sim::new(vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")])
}

fn with_update(mut service: Service, config: UpdateConfig) -> Service {
    service.spec.update_config = Some(config);
    service
}

fn image(task: &Task) -> &str {
    &task.spec.container_spec.image
}

fn set_image(sim: &mut Sim, id: &str, image: &str) {
    let image = image.to_string();
    sim.update(id, move |s| s.task_template.container_spec.image = image);
}

fn update_state(sim: &Sim, id: &str) -> Option<(UpdateState, String)> {
    sim.state.services[id].update_status.as_ref().map(|s| (s.state, s.message.clone()))
}

#[test]
fn parallelism_two_of_six_goes_batch_by_batch() {
    let mut sim = cluster();
    let config = UpdateConfig { parallelism: 2, delay: SECOND_NS, ..Default::default() };
    let id = sim.create(with_update(replicated("web", 6), config));
    sim.converge();
    let start = sim.now;
    set_image(&mut sim, &id, "v2");

    // Watch each step: which slots got a v2 task, and that no more than 2 slots are ever down.
    let mut batches: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    while sim.now - start < Duration::seconds(30) {
        let plan = sim.step();
        // A stop-first task is upserted again when it is released to run: count each task once.
        for task in plan.upsert_tasks.iter().filter(|t| image(t) == "v2" && t.status.state == TaskState::Assigned) {
            if seen.insert(task.id.clone()) {
                batches.entry((task.created_at - start).num_milliseconds()).or_default().push(task.slot);
            }
        }
        let running = sim.running_slots(&id).len();
        assert!(running >= 4, "at most 2 slots updating at once, {running} running at {}", sim.now - start);
    }
    let batches: Vec<(i64, Vec<u64>)> = batches.into_iter().collect();
    assert_eq!(batches.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), [vec![1, 2], vec![3, 4], vec![5, 6]]);
    for pair in batches.windows(2) {
        // The next batch waits for the previous one to run, then for the 1 s delay.
        let gap = pair[1].0 - pair[0].0;
        assert!((1000..1500).contains(&gap), "gap between batches {gap} ms");
    }
    assert_eq!(update_state(&sim, &id), Some((UpdateState::Completed, "update completed".into())));
    let status = sim.state.services[&id].update_status.clone().unwrap();
    assert_eq!(status.started_at, Some(start));
    assert!(status.completed_at.unwrap() - start >= Duration::seconds(7), "completion waits for the monitor period");
    let running = sim.tasks_of(&id).into_iter().filter(|t| t.status.state == TaskState::Running);
    assert!(running.map(|t| t.spec.container_spec.image).all(|i| i == "v2"));
    sim.converge();
}

#[test]
fn stop_first_holds_the_new_task_until_the_old_one_stopped() {
    let mut sim = cluster();
    let config = UpdateConfig { parallelism: 1, ..Default::default() };
    let id = sim.create(with_update(replicated("web", 1), config));
    sim.converge();
    set_image(&mut sim, &id, "v2");
    // The pass that shuts the old task down creates the new one held at `ready`…
    let plan = sim.step();
    let new = plan.upsert_tasks.iter().find(|t| image(t) == "v2").expect("a new task").clone();
    assert_eq!(new.desired_state, TaskState::Ready);
    let old_running = |sim: &Sim| sim.tasks_of(&id).iter().any(|t| image(t) != "v2" && !t.status.state.is_terminal());
    // …and it is desired running only once no old task of the slot is left alive.
    while old_running(&sim) {
        assert_eq!(sim.state.tasks[&new.id].desired_state, TaskState::Ready, "released before the old task stopped");
        assert!(sim.state.tasks[&new.id].status.state < TaskState::Running);
        sim.step();
    }
    sim.converge();
    assert_eq!(sim.state.tasks[&new.id].desired_state, TaskState::Running);
    assert_eq!(sim.state.tasks[&new.id].status.state, TaskState::Running);
}

#[test]
fn start_first_keeps_every_slot_running() {
    // Data-driven: the order decides whether a slot is ever without a running task.
    for (order, always_running) in [(UpdateOrder::StartFirst, true), (UpdateOrder::StopFirst, false)] {
        let mut sim = cluster();
        let id =
            sim.create(with_update(replicated("web", 3), UpdateConfig { parallelism: 1, order, ..Default::default() }));
        sim.converge();
        set_image(&mut sim, &id, "v2");
        let mut min_running = usize::MAX;
        for _ in 0..100 {
            sim.step();
            min_running = min_running.min(sim.running_slots(&id).len());
        }
        assert_eq!(min_running == 3, always_running, "{order:?}: min running {min_running}");
        assert_eq!(update_state(&sim, &id).unwrap().0, UpdateState::Completed, "{order:?}");
        if order == UpdateOrder::StartFirst {
            // Each old task stopped only after its replacement reported running.
            let tasks = sim.tasks_of(&id);
            for old in tasks.iter().filter(|t| image(t) == "shoal/echo") {
                let new = tasks.iter().find(|t| t.slot == old.slot && image(t) == "v2").unwrap();
                assert!(new.created_at < old.status.timestamp);
                assert!(new.status.timestamp <= old.status.timestamp);
            }
        }
        sim.converge();
    }
}

#[test]
fn failure_pauses_the_update() {
    let mut sim = cluster();
    let id = sim.create(replicated("web", 3));
    sim.converge();
    sim.fail_image("bad");
    set_image(&mut sim, &id, "bad");
    sim.run_for(20.0);
    let (state, message) = update_state(&sim, &id).unwrap();
    assert_eq!(state, UpdateState::Paused);
    let first_bad = sim.tasks_of(&id).into_iter().filter(|t| image(t) == "bad").min_by_key(|t| t.created_at).unwrap();
    assert_eq!(message, format!("update paused due to failure or early termination of task {}", first_bad.id));
    // Parallelism 1: only one slot was touched; the others still run the old spec.
    assert_eq!(sim.running_slots(&id).len(), 2);
    let old =
        sim.tasks_of(&id).into_iter().filter(|t| image(t) == "shoal/echo" && t.desired_state == TaskState::Running);
    assert_eq!(old.count(), 2);
}

#[test]
fn failure_rolls_back_to_the_previous_spec() {
    let mut sim = cluster();
    let config = UpdateConfig { parallelism: 1, failure_action: FailureAction::Rollback, ..Default::default() };
    let id = sim.create(with_update(replicated("web", 3), config));
    sim.converge();
    sim.fail_image("bad");
    set_image(&mut sim, &id, "bad");
    let mut seen = Vec::new();
    for _ in 0..300 {
        sim.step();
        let state = update_state(&sim, &id).map(|s| s.0);
        if seen.last() != Some(&state) {
            seen.push(state);
        }
    }
    assert_eq!(
        seen,
        [Some(UpdateState::Updating), Some(UpdateState::RollbackStarted), Some(UpdateState::RollbackCompleted)]
    );
    assert_eq!(update_state(&sim, &id).unwrap().1, "rollback completed");
    assert_eq!(sim.state.services[&id].spec.task_template.container_spec.image, "shoal/echo");
    let live: Vec<Task> = sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == TaskState::Running).collect();
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|t| image(t) == "shoal/echo" && t.status.state == TaskState::Running));
    sim.converge();
}

#[test]
fn only_failures_within_the_monitor_period_count() {
    // (seconds the new version runs before failing, update state half a second after that)
    for (fails_after, expected) in [(2.0, UpdateState::Paused), (7.0, UpdateState::Updating)] {
        let mut sim = cluster();
        // An 8 s delay keeps the update going while the first new task fails.
        let config = UpdateConfig { parallelism: 1, delay: 8 * SECOND_NS, ..Default::default() };
        let id = sim.create(with_update(replicated("web", 3), config));
        sim.converge();
        sim.fail_image_after("flaky", fails_after);
        set_image(&mut sim, &id, "flaky");
        sim.run_for(fails_after + 0.5);
        assert_eq!(update_state(&sim, &id).unwrap().0, expected, "failing after {fails_after} s");
        let failed: Vec<Task> = sim.tasks_of(&id).into_iter().filter(|t| t.status.state == TaskState::Failed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].labels.contains_key(MONITOR_PASSED_LABEL), fails_after > 5.0);
    }
}

#[test]
fn manual_rollback_after_a_completed_update() {
    let mut sim = cluster();
    let id = sim.create(replicated("web", 2));
    sim.converge();
    set_image(&mut sim, &id, "v2");
    sim.converge();
    assert_eq!(update_state(&sim, &id).unwrap().0, UpdateState::Completed);
    sim.rollback(&id);
    assert_eq!(update_state(&sim, &id), Some((UpdateState::RollbackStarted, "manually requested rollback".into())));
    sim.converge();
    assert_eq!(update_state(&sim, &id), Some((UpdateState::RollbackCompleted, "rollback completed".into())));
    let live = sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == TaskState::Running);
    assert!(live.map(|t| t.spec.container_spec.image).all(|i| i == "shoal/echo"));
}

#[test]
fn force_update_replaces_tasks_with_an_unchanged_spec() {
    let mut sim = cluster();
    let id = sim.create(global("agent"));
    sim.converge();
    let before: Vec<String> = sim.tasks_of(&id).into_iter().map(|t| t.id).collect();
    sim.force_update(&id, 1);
    sim.converge();
    let live: Vec<Task> = sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == TaskState::Running).collect();
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|t| !before.contains(&t.id) && t.spec.force_update == 1));
    assert_eq!(update_state(&sim, &id).unwrap().0, UpdateState::Completed);
}

#[test]
fn placement_only_changes_keep_tasks_whose_node_still_fits() {
    let mut sim = cluster();
    let id = sim.create(replicated("web", 3));
    sim.converge();
    let before: Vec<String> = sim.tasks_of(&id).into_iter().map(|t| t.id).collect();
    sim.update(&id, |s| {
        s.task_template.placement = Some(crate::objects::service::Placement {
            constraints: vec!["node.role==worker".into()],
            ..Default::default()
        })
    });
    sim.converge();
    let after: Vec<String> = sim.tasks_of(&id).into_iter().map(|t| t.id).collect();
    assert_eq!(before, after);
}
