//! The orchestrators and the scheduler, as one pure function over the replicated state.
//!
//! swarmkit runs a replicated orchestrator, a global orchestrator, a restart supervisor, an
//! updater, a constraint enforcer, a task reaper and a scheduler as goroutines that watch the
//! store and keep part of their progress in memory. Shoal folds them into [`reconcile`]: the
//! leader calls it every ~100 ms and on every change, and commits the returned [`Plan`] through
//! Raft. Everything it decides is derived from the state and the clock: restart delays from task
//! status timestamps, restart counts from the slot's history, rolling-update progress from
//! `UpdateStatus` and the update's own tasks. So a new leader picks up where the old one
//! stopped, and a pass on a converged cluster returns an empty plan.
//!
//! A pass, per service: [`liveness`] retires tasks that ended or lost their node; [`replicated`]
//! or [`global`] takes and releases slots; [`restart`] replaces stopped tasks; [`update`] steps
//! the rolling update; then [`scheduler`] places every new or pending task, and [`history`]
//! reaps old tasks. Tasks are indexed by service once per pass; the scheduler keeps per-node
//! counts, so a pass is linear in tasks plus O(nodes) per service that has something to place
//! (`cargo bench -p control --bench orchestrator`: 1,000 nodes and 100,000 tasks).
//!
//! **Architecture Invariant:** nothing here does I/O, reads the clock, or draws random numbers:
//! the caller passes `now` and the task ID generator.

mod constraint;
mod global;
mod history;
mod liveness;
mod replicated;
mod restart;
mod scheduler;
mod slot;
mod update;

#[cfg(test)]
pub(crate) mod testkit;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use slot::TaskView;

use chrono::{DateTime, Utc};

pub use constraint::{node_matches, parse_constraint, parse_constraints, Constraint, Operator};
pub use history::DEFAULT_HISTORY_LIMIT;
pub use liveness::ORPHAN_AFTER;
pub use restart::DEFAULT_RESTART_DELAY;
pub use update::DEFAULT_MONITOR;

use crate::objects::service::{Service, Task, UpdateState, UpdateStatus};
use crate::state::{ClusterState, NodeRecord, Plan};

/// The label the updater puts on a task of a rolling update once it has been running for the
/// update's `monitor` period: a later failure of that task no longer counts against the update.
pub const MONITOR_PASSED_LABEL: &str = "com.shoal.update.monitor-passed";

/// FNV-1a. The maps a pass builds are keyed by IDs the managers generate, so SipHash's
/// resistance to chosen keys buys nothing, and hashing shows in the 100,000-task profile.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// What a pass reads: the state, the clock, and where new task IDs come from.
pub(crate) struct Pass<'a> {
    pub state: &'a ClusterState,
    pub now: DateTime<Utc>,
    new_id: &'a mut dyn FnMut() -> String,
    /// Nodes by ID, hashed: every live task looks its node up at least once per pass.
    nodes: FastMap<&'a str, &'a NodeRecord>,
}

impl<'a> Pass<'a> {
    pub fn new(state: &'a ClusterState, now: DateTime<Utc>, new_id: &'a mut dyn FnMut() -> String) -> Self {
        let nodes = state.nodes.iter().map(|(id, n)| (id.as_str(), n)).collect();
        Pass { state, now, new_id, nodes }
    }

    pub fn node(&self, id: &str) -> Option<&'a NodeRecord> {
        if id.is_empty() {
            return None;
        }
        self.nodes.get(id).copied()
    }

    pub fn new_id(&mut self) -> String {
        (self.new_id)()
    }
}

/// One service's tasks after its orchestrator ran, and its new `UpdateStatus` if that changed.
pub(crate) struct ServiceWork<'a> {
    pub service: &'a Service,
    pub slots: Vec<slot::Slot<'a>>,
    pub update_status: Option<Option<UpdateStatus>>,
}

/// Computes what the orchestrators and the scheduler change. Idempotent: applying the plan and
/// calling it again yields an empty plan once the cluster has converged. The leader should
/// propose the plan with `Proposal.at` no earlier than `now` (tasks created by the plan get it as
/// `CreatedAt`, which the updater compares with `UpdateStatus.StartedAt`).
pub fn reconcile(state: &ClusterState, now: DateTime<Utc>, new_id: &mut dyn FnMut() -> String) -> Plan {
    let mut pass = Pass::new(state, now, new_id);
    let mut by_service: FastMap<&str, Vec<&Task>> = FastMap::default();
    for task in state.tasks.values() {
        by_service.entry(task.service_id.as_str()).or_default().push(task);
    }

    let mut works = Vec::with_capacity(state.services.len());
    for service in state.services.values() {
        let tasks = by_service.remove(service.id.as_str()).unwrap_or_default();
        let work = if service.spec.mode.global.is_some() {
            global::reconcile(&mut pass, service, tasks)
        } else {
            replicated::reconcile(&mut pass, service, tasks)
        };
        works.push(work);
    }

    let mut plan = Plan::default();
    let orphans: Vec<&Task> = by_service.into_values().flatten().collect();
    let orphans = history::removed_service(&pass, orphans, &mut plan.delete_tasks);

    scheduler::schedule(&pass, &mut works);
    history::trim(&pass, &mut works, &mut plan.delete_tasks);

    let changed = works.iter_mut().flat_map(|w| w.slots.iter_mut()).flat_map(|s| s.tasks.drain(..)).chain(orphans);
    plan.upsert_tasks = changed
        .filter_map(|t| match t {
            TaskView::Changed(task) => Some(*task),
            TaskView::Same(_) => None,
        })
        .collect();
    plan.upsert_tasks.sort_by(|a, b| a.id.cmp(&b.id));
    plan.delete_tasks.sort();
    plan.update_status = works.into_iter().filter_map(|w| w.update_status.map(|s| (w.service.id.clone(), s))).collect();
    plan
}

/// Services whose update failed with `failure_action: rollback`: the leader commits
/// `Command::RollbackService { version: None, .. }` for each. The updater marks them
/// `rollback_started` without `StartedAt`; the rollback command swaps the spec back and sets
/// `StartedAt`, and the updater then rolls the tasks back with `RollbackConfig`.
pub fn rollback_needed(state: &ClusterState) -> Vec<String> {
    state
        .services
        .values()
        .filter(|s| s.previous_spec.is_some())
        .filter(|s| {
            s.update_status.as_ref().is_some_and(|u| u.state == UpdateState::RollbackStarted && u.started_at.is_none())
        })
        .map(|s| s.id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
