//! Rolling updates and rollbacks, one step per pass, rebuilt each time from the state.
//!
//! swarmkit's updater is a goroutine holding the update's progress in memory. Here every fact it
//! needs is read back from the replicated state, so a new leader continues where the old one
//! stopped:
//!
//! - The update's own tasks are those with the current spec created at or after
//!   `UpdateStatus.StartedAt`; a slot whose live task has another spec is *dirty*.
//! - A batch is in flight while one of the update's live tasks has not reached `running`. The next
//!   batch of `parallelism` dirty slots (0: all) starts when none is in flight and `delay` has
//!   passed since the last one started running.
//! - A task of the update that fails, is rejected or completes counts as a failure unless it had
//!   been running for `monitor` already. Task states do not remember when a task started running,
//!   so the updater stamps the [`MONITOR_PASSED_LABEL`] label on a task once it has been running
//!   for `monitor`; a failed task without the stamp failed within the window.
//! - When failures exceed `max_failure_ratio` of the slots the update touches, `failure_action`
//!   applies: `pause` → `paused`; `rollback` → `rollback_started` with no `StartedAt`, which
//!   [`super::rollback_needed`] reports so that the leader commits `RollbackService` (it swaps the
//!   spec back and sets `StartedAt`); a rollback is never rolled back: it pauses.
//! - With nothing dirty or in flight, the update completes once the last batch has been
//!   monitored (swarmkit waits one more `monitor`, or `delay` + 1 s when the delay is longer).
//!
//! Order: `stop-first` sets the old task to desired `shutdown` and creates the new one in the same
//! plan with desired state `ready`, as swarmkit does: it is scheduled and assigned at once, but its
//! agent starts it only when a later pass raises it to `running`, once the slot's old task has
//! stopped (a host-mode port also keeps the new task pending until the old one released it).
//! `start-first` creates the new task and shuts the old one down only once the new one is
//! `running`.

use chrono::{DateTime, Duration, Utc};

use super::constraint::{node_matches, Constraint};
use super::slot::{is_live, new_task, set_desired, Slot};
use super::{Pass, MONITOR_PASSED_LABEL};
use crate::objects::service::{
    FailureAction, Service, Task, TaskSpec, TaskState, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

/// swarmkit's default `Monitor` for updates and rollbacks.
pub const DEFAULT_MONITOR: Duration = Duration::seconds(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Update,
    Rollback,
}

struct Config {
    parallelism: u64,
    delay: Duration,
    failure_action: FailureAction,
    monitor: Duration,
    max_failure_ratio: f64,
    order: UpdateOrder,
}

impl Config {
    /// `UpdateConfig`/`RollbackConfig` with swarmkit's defaults: parallelism 1, delay 0, pause,
    /// monitor 5 s (also when sent as 0, as Docker does), ratio 0, stop-first.
    fn of(service: &Service, mode: Mode) -> Config {
        let config = match mode {
            Mode::Update => service.spec.update_config.as_ref(),
            Mode::Rollback => service.spec.rollback_config.as_ref(),
        };
        let defaults = UpdateConfig { parallelism: 1, ..Default::default() };
        let c = config.unwrap_or(&defaults);
        Config {
            parallelism: c.parallelism,
            delay: Duration::nanoseconds(c.delay.max(0)),
            failure_action: c.failure_action,
            monitor: if c.monitor > 0 { Duration::nanoseconds(c.monitor) } else { DEFAULT_MONITOR },
            max_failure_ratio: c.max_failure_ratio,
            order: c.order,
        }
    }

    /// How long the last batch is watched before the update completes.
    fn final_monitor(&self) -> Duration {
        if self.delay >= self.monitor {
            self.delay + Duration::seconds(1)
        } else {
            self.monitor
        }
    }
}

/// Everything but the placement is equal.
fn same_except_placement(a: &TaskSpec, b: &TaskSpec) -> bool {
    // Destructured so that a new field is a compile error here rather than a silent "equal".
    let TaskSpec { container_spec, resources, restart_policy, placement: _, force_update, runtime, networks } = a;
    *container_spec == b.container_spec
        && *resources == b.resources
        && *restart_policy == b.restart_policy
        && *force_update == b.force_update
        && *runtime == b.runtime
        && *networks == b.networks
}

/// Whether `task` runs an outdated spec. As in swarmkit, a change of placement alone does not
/// redeploy a task whose node still satisfies the new constraints.
pub(crate) fn is_dirty(pass: &Pass<'_>, service: &Service, constraints: &[Constraint], task: &Task) -> bool {
    let template = &service.spec.task_template;
    if task.spec == *template {
        // Same spec, but publishing ports (or no longer publishing any) changes the networks a
        // task must be on: ingress joins or leaves, which only a new task can do.
        return !on_wanted_networks(pass, service, task);
    }
    if same_except_placement(&task.spec, template) {
        if let Some(node) = pass.node(&task.node_id) {
            return !node_matches(constraints, &node.node);
        }
    }
    true
}

/// Whether the task is attached to exactly the networks the service's tasks join now.
fn on_wanted_networks(pass: &Pass<'_>, service: &Service, task: &Task) -> bool {
    if task.version.index == 0 {
        // Made in this very pass: the store gives it its addresses when the plan commits.
        return true;
    }
    let wanted =
        crate::state::service_networks(&pass.state.networks, &service.spec.task_template.networks, &service.endpoint);
    task.networks_attachments.len() == wanted.len()
        && task.networks_attachments.iter().zip(&wanted).all(|(a, w)| a.network.id == *w)
}

/// Starts a task held at `ready` (stop-first) once every other task of its slot has stopped
/// (or never got to run).
fn release_held(slot: &mut Slot<'_>) {
    let held: Vec<usize> = (0..slot.tasks.len()).filter(|i| slot.tasks[*i].desired_state == TaskState::Ready).collect();
    for i in held {
        let others_stopped = slot
            .tasks
            .iter()
            .enumerate()
            .all(|(j, t)| j == i || t.status.state.is_terminal() || t.status.state < TaskState::Assigned);
        if others_stopped {
            set_desired(&mut slot.tasks[i], TaskState::Running);
        }
    }
}

/// A slot running more than one live task keeps one: the newest up-to-date task once it runs
/// (the end of a start-first step), else the newest task when none is up to date.
fn settle(pass: &Pass<'_>, service: &Service, constraints: &[Constraint], slot: &mut Slot<'_>) {
    if slot.live().nth(1).is_none() {
        return;
    }
    let live: Vec<usize> = (0..slot.tasks.len()).filter(|i| is_live(&slot.tasks[*i])).collect();
    let clean: Vec<usize> =
        live.iter().copied().filter(|i| !is_dirty(pass, service, constraints, &slot.tasks[*i])).collect();
    let keep = match clean.iter().rev().find(|i| slot.tasks[**i].status.state == TaskState::Running) {
        Some(i) => *i,
        None if clean.is_empty() => *live.last().expect("two live tasks"),
        None => {
            // The new task is still starting: keep the old one running, drop older new ones.
            for i in &clean[..clean.len() - 1] {
                set_desired(&mut slot.tasks[*i], TaskState::Shutdown);
            }
            return;
        }
    };
    for i in live {
        if i != keep {
            set_desired(&mut slot.tasks[i], TaskState::Shutdown);
        }
    }
}

fn status(state: UpdateState, started_at: Option<DateTime<Utc>>, message: String) -> UpdateStatus {
    UpdateStatus { state, started_at, completed_at: None, message }
}

/// One step of the service's update over its taken slots (sorted by key). Returns the new
/// `UpdateStatus` when it changes.
pub(crate) fn step<'a>(
    pass: &mut Pass<'_>,
    service: &'a Service,
    constraints: &[Constraint],
    slots: &mut [&mut Slot<'a>],
) -> Option<Option<UpdateStatus>> {
    let now = pass.now;
    for slot in slots.iter_mut() {
        settle(pass, service, constraints, slot);
        release_held(slot);
    }

    let current = service.update_status.as_ref();
    let running = match current.map(|s| (s.state, s.started_at)) {
        Some((UpdateState::Paused | UpdateState::RollbackPaused, _)) => return None,
        // Waiting for the leader to swap the spec back.
        Some((UpdateState::RollbackStarted, None)) => return None,
        Some((UpdateState::RollbackStarted, Some(at))) => Some((Mode::Rollback, at)),
        Some((UpdateState::Updating, at)) => Some((Mode::Update, at.unwrap_or(service.updated_at))),
        _ => None,
    };

    let dirty: Vec<usize> = (0..slots.len())
        .filter(|i| {
            let slot = &slots[*i];
            let mut live = slot.live();
            match (live.next(), live.next()) {
                (Some(task), None) => is_dirty(pass, service, constraints, task),
                // Two live tasks: a start-first step in flight.
                (Some(_), Some(_)) => false,
                // A stopped task of the old spec, waiting for a restart or refused one: the
                // update replaces it (swarmkit updates such slots too, and a rollback must
                // converge rather than wait for the restart delay).
                (None, _) => slot.newest().is_some_and(|t| is_dirty(pass, service, constraints, t)),
            }
        })
        .collect();

    let mut changed = None;
    let (mode, started_at) = match running {
        Some(r) => r,
        None if dirty.is_empty() => return None,
        None => {
            let s = status(UpdateState::Updating, Some(now), "update in progress".into());
            changed = Some(s);
            (Mode::Update, now)
        }
    };
    let config = Config::of(service, mode);
    let mut is_dirty_slot = vec![false; slots.len()];
    for &i in &dirty {
        is_dirty_slot[i] = true;
    }

    // What the update's own tasks tell.
    let mut in_flight = false;
    let mut last_running: Option<DateTime<Utc>> = None;
    let mut failures: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut touched = 0usize;
    for (i, slot) in slots.iter_mut().enumerate() {
        let mut ours = false;
        for task in slot.tasks.iter_mut() {
            if task.created_at < started_at || is_dirty(pass, service, constraints, task) {
                continue;
            }
            ours = true;
            let state = task.status.state;
            let passed = task.labels.contains_key(MONITOR_PASSED_LABEL);
            if is_live(task) && state < TaskState::Running {
                in_flight = true;
            }
            if is_live(task) && state == TaskState::Running {
                let since = task.status.timestamp;
                last_running = last_running.max(Some(since));
                if !passed && since + config.monitor <= now {
                    task.to_mut().labels.insert(MONITOR_PASSED_LABEL.into(), "true".into());
                }
            }
            if matches!(state, TaskState::Failed | TaskState::Rejected | TaskState::Complete) && !passed {
                failures.push((task.status.timestamp, task.id.clone()));
            }
        }
        if ours || is_dirty_slot[i] {
            touched += 1;
        }
    }

    failures.sort();
    if config.failure_action != FailureAction::Continue
        && !failures.is_empty()
        && failures.len() as f64 / touched.max(1) as f64 > config.max_failure_ratio
    {
        let task = &failures[0].1;
        let next = match (mode, config.failure_action) {
            (Mode::Rollback, _) => status(
                UpdateState::RollbackPaused,
                Some(started_at),
                format!("rollback paused due to failure or early termination of task {task}"),
            ),
            (Mode::Update, FailureAction::Rollback) if service.previous_spec.is_some() => status(
                UpdateState::RollbackStarted,
                None,
                format!("update rolled back due to failure or early termination of task {task}"),
            ),
            _ => status(
                UpdateState::Paused,
                Some(started_at),
                format!("update paused due to failure or early termination of task {task}"),
            ),
        };
        return Some(Some(next));
    }

    if dirty.is_empty() {
        if !in_flight && last_running.is_none_or(|t| t + config.final_monitor() <= now) {
            let (state, message) = match mode {
                Mode::Update => (UpdateState::Completed, "update completed"),
                Mode::Rollback => (UpdateState::RollbackCompleted, "rollback completed"),
            };
            let mut done = status(state, Some(started_at), message.into());
            done.completed_at = Some(now);
            return Some(Some(done));
        }
        return changed.map(Some);
    }

    if !in_flight && last_running.is_none_or(|t| t + config.delay <= now) {
        let batch = if config.parallelism == 0 { dirty.len() } else { dirty.len().min(config.parallelism as usize) };
        for &i in &dirty[..batch] {
            let slot = &mut *slots[i];
            if config.order == UpdateOrder::StopFirst {
                for task in slot.tasks.iter_mut() {
                    if is_live(task) {
                        set_desired(task, TaskState::Shutdown);
                    }
                }
            }
            let mut task = new_task(pass, service, &slot.key);
            if config.order == UpdateOrder::StopFirst {
                task.desired_state = TaskState::Ready;
            }
            slot.push(task);
        }
    }
    changed.map(Some)
}

#[cfg(test)]
mod tests;
