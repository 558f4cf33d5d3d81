//! The task reaper: how much history `docker service ps` keeps, and when tasks disappear.
//!
//! As swarmkit's reaper: a slot (a node for global services) keeps at most
//! `TaskHistoryRetentionLimit` tasks (default 5, the live one included); the oldest tasks that
//! can never run again go first. When the restart policy has `max_attempts`, a slot keeps at
//! least `max_attempts + 1` tasks, because restart counts are read from the history
//! ([`super::restart`]). A negative limit keeps everything. Tasks at desired `remove` (scale-down,
//! removed services) are deleted as soon as they stopped, or at once if they never reached a node.

use super::liveness::sweep;
use super::slot::{set_desired, Slot, TaskView};
use super::{Pass, ServiceWork};
use crate::objects::service::{Task, TaskState};

/// swarmkit's default `TaskHistoryRetentionLimit`.
pub const DEFAULT_HISTORY_LIMIT: i64 = 5;

/// A task that will never run again.
fn reapable(task: &Task) -> bool {
    task.status.state.is_terminal()
        || (task.desired_state > TaskState::Running && task.status.state < TaskState::Assigned)
}

fn cluster_limit(pass: &Pass<'_>) -> i64 {
    let configured = pass.state.cluster.as_ref().and_then(|c| c.swarm.spec.orchestration.task_history_retention_limit);
    configured.unwrap_or(DEFAULT_HISTORY_LIMIT)
}

/// Drops reaped tasks from the works and lists their IDs in `deleted`.
pub(crate) fn trim(pass: &Pass<'_>, works: &mut [ServiceWork<'_>], deleted: &mut Vec<String>) {
    let default = cluster_limit(pass);
    for work in works {
        let max_attempts = work.service.spec.task_template.restart_policy.as_ref().map_or(0, |p| p.max_attempts);
        let limit = if max_attempts > 0 { i64::try_from(max_attempts).unwrap_or(i64::MAX - 1) + 1 } else { default };
        for slot in &mut work.slots {
            trim_slot(slot, limit, deleted);
        }
    }
}

fn trim_slot(slot: &mut Slot<'_>, limit: i64, deleted: &mut Vec<String>) {
    let removed = |t: &Task| t.desired_state == TaskState::Remove && reapable(t);
    let mut excess = if limit < 0 { 0 } else { slot.tasks.len().saturating_sub(limit as usize) };
    slot.tasks.retain(|task| {
        let reap = removed(task) || (excess > 0 && reapable(task));
        if reap {
            excess = excess.saturating_sub(1);
            deleted.push(task.id.clone());
        }
        !reap
    });
}

/// Tasks whose service is gone: desired `remove`, deleted once they stopped. Returns the ones
/// that stay, changed or not.
pub(crate) fn removed_service<'a>(
    pass: &Pass<'_>,
    tasks: Vec<&'a Task>,
    deleted: &mut Vec<String>,
) -> Vec<TaskView<'a>> {
    let mut kept = Vec::new();
    for task in tasks {
        let mut task = TaskView::Same(task);
        set_desired(&mut task, TaskState::Remove);
        sweep(pass, &mut task);
        if reapable(&task) {
            deleted.push(task.id.clone());
        } else {
            kept.push(task);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use crate::objects::service::TaskState;
    use crate::orchestrator::testkit::{node, replicated, Sim};

    #[test]
    fn history_is_trimmed_to_the_limit() {
        let mut sim = Sim::new(vec![node("n1", "h1")]);
        let id = sim.create(replicated("web", 1));
        sim.converge();
        for force in 1..=8 {
            sim.force_update(&id, force);
            sim.converge();
        }
        // Nine tasks ran in slot 1; five remain (the live one and four stopped), as in Docker.
        let tasks = sim.tasks_of(&id);
        assert_eq!(tasks.len(), 5);
        assert_eq!(tasks.iter().filter(|t| t.desired_state == TaskState::Running).count(), 1);
        let newest_forces: Vec<u64> = {
            let mut f: Vec<u64> = tasks.iter().map(|t| t.spec.force_update).collect();
            f.sort();
            f
        };
        assert_eq!(newest_forces, [4, 5, 6, 7, 8]);

        sim.set_history_limit(2);
        sim.converge();
        assert_eq!(sim.tasks_of(&id).len(), 2);
    }

    #[test]
    fn removed_services_leave_nothing_behind() {
        let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2")]);
        let id = sim.create(replicated("web", 4));
        sim.converge();
        sim.remove_service(&id);
        let plan = sim.step();
        assert!(plan.upsert_tasks.iter().all(|t| t.desired_state == TaskState::Remove));
        sim.converge();
        assert!(sim.state.tasks.is_empty());
    }
}
