//! What happens to a task whose process ended or whose node went away.
//!
//! The orchestrator never kills anything itself: it raises a task's desired state and the agent
//! acts on it. A live task (desired `running`) is retired, i.e. set to desired `shutdown`, when
//! its process has ended, when its node is gone, down or drained, or when its node no longer
//! meets the service's constraints. Whether the slot then gets a replacement is the restart
//! policy's call ([`super::restart`]). Tasks on a node that is down keep their last reported state
//! until swarmkit's 24 hours have passed and then become `orphaned`; a node that was removed
//! will never report again, so its tasks are orphaned at once. When a down node comes back its
//! agent finds its old tasks at desired `shutdown` and stops them: no duplicates.

use chrono::Duration;

use super::constraint::{node_matches, Constraint};
use super::slot::{is_live, set_desired, set_state, set_status, TaskView};
use super::Pass;
use crate::objects::service::TaskState;
use crate::objects::{NodeAvailability, NodeState};
use crate::state::NodeRecord;

/// swarmkit's dispatcher marks tasks of a node down this long as orphaned.
pub const ORPHAN_AFTER: Duration = Duration::hours(24);

/// A node that can keep no task: removed, down, or drained (swarmkit's `InvalidNode`).
pub(crate) fn unusable(node: Option<&NodeRecord>) -> bool {
    match node {
        None => true,
        Some(n) => n.node.status.state == NodeState::Down || n.node.spec.availability == NodeAvailability::Drain,
    }
}

/// Status changes the manager makes whatever the service: orphaned tasks, and tasks that were
/// never assigned but are no longer wanted (swarmkit's scheduler moves those to `shutdown`).
pub(crate) fn sweep(pass: &Pass<'_>, task: &mut TaskView<'_>) {
    let state = task.status.state;
    if task.desired_state > TaskState::Running && state < TaskState::Assigned {
        set_state(task, TaskState::Shutdown, pass.now);
        return;
    }
    if task.node_id.is_empty() || !(TaskState::Assigned..=TaskState::Running).contains(&state) {
        return;
    }
    let orphaned = match pass.node(&task.node_id) {
        None => true,
        Some(n) => n.node.status.state == NodeState::Down && task.status.timestamp + ORPHAN_AFTER <= pass.now,
    };
    if orphaned {
        set_desired(task, TaskState::Shutdown);
        set_state(task, TaskState::Orphaned, pass.now);
    }
}

/// How a service reacts to a node that stopped meeting its constraints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforce {
    /// Replicated: swarmkit's constraint enforcer rejects the task, so the restart policy moves
    /// it elsewhere.
    Reject,
    /// Global: the global orchestrator simply shuts the node's task down.
    Shutdown,
}

/// Retires a live task whose process ended or whose node can no longer keep it.
pub(crate) fn retire(pass: &Pass<'_>, task: &mut TaskView<'_>, constraints: &[Constraint], enforce: Enforce) {
    if !is_live(task) {
        return;
    }
    if task.status.state.is_terminal() {
        set_desired(task, TaskState::Shutdown);
        return;
    }
    if task.node_id.is_empty() {
        return;
    }
    let node = pass.node(&task.node_id);
    if unusable(node) {
        set_desired(task, TaskState::Shutdown);
        return;
    }
    let node = node.expect("usable nodes exist");
    // Paused nodes keep what they run; only active ones are checked (swarmkit's enforcer).
    if node.node.spec.availability == NodeAvailability::Active && !node_matches(constraints, &node.node) {
        if enforce == Enforce::Reject && task.status.state >= TaskState::Assigned {
            set_status(
                task,
                TaskState::Rejected,
                "task rejected by constraint enforcer",
                "assigned node no longer meets constraints",
                pass.now,
            );
        }
        set_desired(task, TaskState::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testkit::{at, node, task_on, with_nodes};

    #[test]
    fn tasks_on_a_down_node_are_orphaned_after_24_hours_only() {
        let mut down = node("n1", "h1");
        down.node.status.state = NodeState::Down;
        let state = with_nodes(vec![down]);
        let mut ids = || unreachable!();
        let t = task_on("t1", "n1", TaskState::Running, at(0));
        for (now, want) in [(at(3600), TaskState::Running), (at(24 * 3600), TaskState::Orphaned)] {
            let pass = Pass::new(&state, now, &mut ids);
            let mut view = TaskView::Same(&t);
            sweep(&pass, &mut view);
            assert_eq!(view.status.state, want);
        }
    }

    #[test]
    fn tasks_of_a_removed_node_are_orphaned_at_once() {
        let state = with_nodes(vec![]);
        let mut ids = || unreachable!();
        let pass = Pass::new(&state, at(1), &mut ids);
        let t = task_on("t1", "gone", TaskState::Running, at(0));
        let mut view = TaskView::Same(&t);
        sweep(&pass, &mut view);
        assert_eq!((view.status.state, view.desired_state), (TaskState::Orphaned, TaskState::Shutdown));
    }

    #[test]
    fn retire_is_a_no_op_for_healthy_tasks() {
        let state = with_nodes(vec![node("n1", "h1")]);
        let mut ids = || unreachable!();
        let pass = Pass::new(&state, at(1), &mut ids);
        let t = task_on("t1", "n1", TaskState::Running, at(0));
        let mut view = TaskView::Same(&t);
        retire(&pass, &mut view, &[], Enforce::Reject);
        sweep(&pass, &mut view);
        assert!(matches!(view, TaskView::Same(_)), "an unchanged task must not be cloned into the plan");
    }
}
