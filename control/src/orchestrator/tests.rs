//! Whole-pass properties: idempotency under churn, determinism, rollback requests.

use crate::objects::service::{Placement, TaskState, UpdateState, UpdateStatus};
use crate::objects::{NodeAvailability, NodeRole, NodeState};
use crate::orchestrator::testkit::{at, global, node, replicated, Sim};
use crate::orchestrator::{reconcile, rollback_needed};

#[test]
fn converged_clusters_plan_nothing_through_churn() {
    let mut nodes: Vec<_> = (1..=5).map(|i| node(&format!("n{i}"), &format!("h{i}"))).collect();
    nodes[0].node.spec.role = NodeRole::Manager;
    let mut sim = Sim::new(nodes);
    let web = sim.create(replicated("web", 7));
    let agent = sim.create(global("agent"));
    let mut managers = replicated("mgr", 2);
    managers.spec.task_template.placement =
        Some(Placement { constraints: vec!["node.role==manager".into()], ..Default::default() });
    let mgr = sim.create(managers);
    // Each converge() ends by checking that one more pass plans nothing.
    sim.converge();
    assert_eq!(sim.running_per_node(&mgr), [2, 0, 0, 0, 0]);
    sim.set_node_state("n2", NodeState::Down);
    sim.converge();
    sim.set_availability("n3", NodeAvailability::Drain);
    sim.scale(&web, 12);
    sim.converge();
    sim.set_node_state("n2", NodeState::Ready);
    sim.set_availability("n3", NodeAvailability::Active);
    sim.converge();
    sim.force_update(&web, 1);
    sim.converge();
    sim.remove_service(&agent);
    sim.converge();
    assert_eq!(sim.running_slots(&web).len(), 12);
    assert!(sim.tasks_of(&agent).is_empty());
    // Nothing runs where it should not, and each slot has one live task.
    let live: Vec<_> = sim.tasks_of(&web).into_iter().filter(|t| t.desired_state == TaskState::Running).collect();
    let mut slots: Vec<u64> = live.iter().map(|t| t.slot).collect();
    slots.dedup();
    assert_eq!(slots.len(), 12);
}

#[test]
fn same_state_same_plan() {
    let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2")]);
    sim.create(replicated("web", 5));
    let ids = |n: &mut u32| {
        *n += 1;
        format!("x{n}")
    };
    let (mut a, mut b) = (0, 0);
    let first = reconcile(&sim.state, at(5), &mut || ids(&mut a));
    let second = reconcile(&sim.state, at(5), &mut || ids(&mut b));
    assert_eq!(first, second);
    assert_eq!(first.upsert_tasks.len(), 5);
    assert!(first.upsert_tasks.iter().all(|t| t.name == format!("web.{}.{}", t.slot, t.id)));
}

#[test]
fn unschedulable_task_keeps_dockers_message_and_is_retried() {
    let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")]);
    let mut service = replicated("gpu", 1);
    service.spec.task_template.placement =
        Some(Placement { constraints: vec!["node.labels.gpu==yes".into()], ..Default::default() });
    let id = sim.create(service);
    sim.converge();
    let task = sim.tasks_of(&id).pop().unwrap();
    assert_eq!(task.status.state, TaskState::Pending);
    assert_eq!(task.status.message, "pending task scheduling");
    assert_eq!(task.status.err, "no suitable node (scheduling constraints not satisfied on 3 nodes)");

    sim.set_label("n2", "gpu", "yes");
    sim.converge();
    let task = sim.tasks_of(&id).pop().unwrap();
    assert_eq!((task.node_id.as_str(), task.status.state), ("n2", TaskState::Running));
}

#[test]
fn rollback_is_requested_once_per_failed_update() {
    let mut sim = Sim::new(vec![node("n1", "h1")]);
    let id = sim.create(replicated("web", 1));
    sim.update(&id, |s| s.task_template.container_spec.image = "v2".into());
    let mut state = sim.state.clone();
    let status = |started| UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: started,
        completed_at: None,
        message: "update rolled back due to failure or early termination of task t1".into(),
    };
    state.services.get_mut(&id).unwrap().update_status = Some(status(None));
    assert_eq!(rollback_needed(&state), vec![id.clone()]);
    // Once the leader committed the rollback, StartedAt is set and nothing more is asked.
    state.services.get_mut(&id).unwrap().update_status = Some(status(Some(at(1))));
    assert!(rollback_needed(&state).is_empty());
    // Without a previous spec there is nothing to roll back to.
    let service = state.services.get_mut(&id).unwrap();
    service.previous_spec = None;
    service.update_status = Some(status(None));
    assert!(rollback_needed(&state).is_empty());
}
