//! The restart policy: does a slot whose tasks are all retired get a new one, and when.
//!
//! swarmkit keeps restart counts in the leader's memory (lost on failover). Here they are read
//! from the slot's history, which the reaper keeps long enough for that ([`super::history`]
//! retains `max_attempts + 1` tasks per slot, as swarmkit's reaper does): the restarts of a spec
//! are the tasks of that spec in the slot after the first one. A new spec starts a new count, as
//! in swarmkit. The delay runs from the moment the old task's process ended (its status
//! timestamp). Tasks lost with their node (still `running` on a down or drained node, or
//! orphaned) are replaced at once: the delay exists to stop crash loops, and swarmkit applies
//! none on drain.

use chrono::{DateTime, Duration, Utc};

use super::slot::Slot;
use crate::objects::service::{RestartCondition, RestartPolicy, Task, TaskState};

/// swarmkit's default `RestartPolicy.Delay`.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::seconds(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Create the replacement in this pass.
    Now,
    /// The restart delay has not passed yet; the slot stays taken.
    Wait,
    /// The policy says no: the slot stays taken by its last, stopped task.
    Never,
}

fn policy(task: &Task) -> RestartPolicy {
    task.spec.restart_policy.clone().unwrap_or_default()
}

/// The delay before a replacement may start.
pub(crate) fn delay(task: &Task) -> Duration {
    let ns = task.spec.restart_policy.as_ref().and_then(|p| p.delay);
    ns.map(Duration::nanoseconds).unwrap_or(DEFAULT_RESTART_DELAY)
}

/// States in which the task's own process ended (as opposed to being lost or stopped).
fn exited(state: TaskState) -> bool {
    matches!(state, TaskState::Complete | TaskState::Failed | TaskState::Rejected)
}

/// Decides for a slot with no live task. `slot.newest()` is the task that stopped last.
pub(crate) fn decide(slot: &Slot<'_>, now: DateTime<Utc>) -> Decision {
    let Some(last) = slot.newest() else { return Decision::Now };
    if !should_restart(last, slot) {
        return Decision::Never;
    }
    if exited(last.status.state) && last.status.timestamp + delay(last) > now {
        return Decision::Wait;
    }
    Decision::Now
}

/// swarmkit's `shouldRestart`: the condition, then `max_attempts` within `window`.
pub(crate) fn should_restart(task: &Task, slot: &Slot<'_>) -> bool {
    let policy = policy(task);
    match policy.condition {
        RestartCondition::None => return false,
        RestartCondition::OnFailure if task.status.state == TaskState::Complete => return false,
        _ => {}
    }
    policy.max_attempts == 0 || restarts(task, slot, policy.window) < policy.max_attempts
}

/// Restarts of `task`'s spec recorded in the slot, within `window` nanoseconds before the task
/// stopped (all of them when `window` is 0).
fn restarts(task: &Task, slot: &Slot<'_>, window: i64) -> u64 {
    let end = task.status.timestamp;
    let since = (window > 0).then(|| end - Duration::nanoseconds(window));
    slot.tasks
        .iter()
        .filter(|t| t.spec == task.spec)
        .skip(1)
        .filter(|t| since.is_none_or(|since| t.created_at > since && t.created_at <= end))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::SECOND_NS;
    use crate::orchestrator::slot::SlotKey;
    use crate::orchestrator::testkit::{at, task_on};

    fn failed(id: &str, created: i64, ended: i64, policy: &RestartPolicy) -> Task {
        let mut t = task_on(id, "n1", TaskState::Failed, at(ended));
        t.created_at = at(created);
        t.desired_state = TaskState::Shutdown;
        t.spec.restart_policy = Some(policy.clone());
        t
    }

    fn decide_at(tasks: &[Task], now: i64) -> Decision {
        decide(&Slot::new(SlotKey::Replica(1), tasks.iter().collect()), at(now))
    }

    #[test]
    fn delay_defaults_to_five_seconds_from_the_failure() {
        let policy = RestartPolicy::default();
        let tasks = [failed("a", 0, 10, &policy)];
        assert_eq!(decide_at(&tasks, 14), Decision::Wait);
        assert_eq!(decide_at(&tasks, 15), Decision::Now);
        let quick = RestartPolicy { delay: Some(SECOND_NS / 2), ..Default::default() };
        assert_eq!(decide_at(&[failed("a", 0, 10, &quick)], 11), Decision::Now);
    }

    #[test]
    fn conditions() {
        let none = RestartPolicy { condition: RestartCondition::None, delay: Some(0), ..Default::default() };
        assert_eq!(decide_at(&[failed("a", 0, 1, &none)], 100), Decision::Never);
        let on_failure = RestartPolicy { condition: RestartCondition::OnFailure, delay: Some(0), ..Default::default() };
        let mut complete = failed("a", 0, 1, &on_failure);
        complete.status.state = TaskState::Complete;
        assert_eq!(decide_at(&[complete.clone()], 100), Decision::Never);
        assert_eq!(decide_at(&[failed("a", 0, 1, &on_failure)], 100), Decision::Now);
        let any = RestartPolicy { delay: Some(0), ..Default::default() };
        complete.spec.restart_policy = Some(any);
        assert_eq!(decide_at(&[complete], 100), Decision::Now);
    }

    #[test]
    fn max_attempts_counts_restarts_of_the_same_spec() {
        let policy = RestartPolicy { delay: Some(0), max_attempts: 2, ..Default::default() };
        // The original task and two restarts: the budget is spent.
        let spent = [failed("a", 0, 1, &policy), failed("b", 2, 3, &policy), failed("c", 4, 5, &policy)];
        assert_eq!(decide_at(&spent[..2], 100), Decision::Now);
        assert_eq!(decide_at(&spent, 100), Decision::Never);
        // A new spec starts a new count.
        let mut updated = failed("d", 6, 7, &policy);
        updated.spec.force_update = 1;
        let mut with_update = spent.to_vec();
        with_update.push(updated);
        assert_eq!(decide_at(&with_update, 100), Decision::Now);
    }

    #[test]
    fn window_only_counts_recent_restarts() {
        let policy = RestartPolicy { delay: Some(0), max_attempts: 1, window: 10 * SECOND_NS, ..Default::default() };
        let tasks = [failed("a", 0, 1, &policy), failed("b", 2, 30, &policy)];
        // "b" was created 28 s before it failed: outside the 10 s window, so no restart counts.
        assert_eq!(decide_at(&tasks, 100), Decision::Now);
        let tasks = [failed("a", 0, 1, &policy), failed("b", 2, 5, &policy)];
        assert_eq!(decide_at(&tasks, 100), Decision::Never);
    }

    #[test]
    fn lost_tasks_are_replaced_without_delay() {
        let mut lost = failed("a", 0, 10, &RestartPolicy::default());
        lost.status.state = TaskState::Running;
        assert_eq!(decide_at(&[lost], 10), Decision::Now);
    }
}
