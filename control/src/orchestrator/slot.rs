//! Slots: the unit the orchestrators reason about, and the copy-on-write view of their tasks.
//!
//! A replicated service has slots `1..=N`; a global service has one slot per node. A slot holds
//! every task that ever ran for it (its history), oldest first. The pass works on [`TaskView`]s:
//! a task stays borrowed from the state while the pass leaves it alone and is copied the moment
//! the pass changes it, so "changed" means "goes into the plan" and a converged cluster costs no
//! clones (a `Cow<Task>` would do the same but holds a whole task inline in every slot vector;
//! the box keeps views at 16 bytes, which shows at 100,000 tasks). All mutation goes through [`set_desired`] and [`set_status`], which
//! only write when something really changes: that is what makes `reconcile` idempotent.

use std::ops::Deref;

use chrono::{DateTime, Utc};

use super::Pass;
use crate::objects::service::{Service, Task, TaskState, TaskStatus};

/// A task as the pass sees it: the state's copy, or the pass's changed one.
#[derive(Debug)]
pub(crate) enum TaskView<'a> {
    Same(&'a Task),
    Changed(Box<Task>),
}

impl TaskView<'_> {
    /// The task, copied out of the state on first use.
    pub fn to_mut(&mut self) -> &mut Task {
        if let TaskView::Same(task) = *self {
            *self = TaskView::Changed(Box::new(task.clone()));
        }
        match self {
            TaskView::Changed(task) => task,
            TaskView::Same(_) => unreachable!("copied above"),
        }
    }
}

impl Deref for TaskView<'_> {
    type Target = Task;

    fn deref(&self) -> &Task {
        match self {
            TaskView::Same(task) => task,
            TaskView::Changed(task) => task,
        }
    }
}

/// What identifies a slot within its service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SlotKey {
    Replica(u64),
    Node(String),
}

pub(crate) struct Slot<'a> {
    pub key: SlotKey,
    /// Oldest first (creation time, then ID).
    pub tasks: Vec<TaskView<'a>>,
}

impl<'a> Slot<'a> {
    pub fn new(key: SlotKey, tasks: Vec<&'a Task>) -> Self {
        let mut slot = Slot { key, tasks: Vec::with_capacity(tasks.len()) };
        for task in tasks {
            slot.add(task);
        }
        slot
    }

    /// Adds a task of the state, keeping the order (the common case appends).
    pub fn add(&mut self, task: &'a Task) {
        let at = self.tasks.partition_point(|t| (t.created_at, t.id.as_str()) <= (task.created_at, task.id.as_str()));
        self.tasks.insert(at, TaskView::Same(task));
    }

    /// Tasks the cluster still wants running (desired state up to `running`).
    pub fn live(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().map(|t| &**t).filter(|t| is_live(t))
    }

    pub fn has_live(&self) -> bool {
        self.tasks.iter().any(|t| is_live(t))
    }

    pub fn newest(&self) -> Option<&Task> {
        self.tasks.last().map(|t| &**t)
    }

    pub fn push(&mut self, task: Task) {
        self.tasks.push(TaskView::Changed(Box::new(task)));
    }
}

pub(crate) fn is_live(task: &Task) -> bool {
    task.desired_state <= TaskState::Running
}

/// Raises the desired state; like `ApplyPlan`, never lowers it.
pub(crate) fn set_desired(task: &mut TaskView<'_>, desired: TaskState) {
    if task.desired_state < desired {
        task.to_mut().desired_state = desired;
    }
}

/// Moves the observed state forward on the manager's behalf (orphaned, rejected, shutdown).
pub(crate) fn set_status(task: &mut TaskView<'_>, state: TaskState, message: &str, err: &str, now: DateTime<Utc>) {
    if task.status.state < state {
        let status = &mut task.to_mut().status;
        status.state = state;
        status.timestamp = now;
        status.message = message.to_string();
        status.err = err.to_string();
    }
}

/// Moves the observed state forward and keeps the message, as swarmkit does for orphaned tasks.
pub(crate) fn set_state(task: &mut TaskView<'_>, state: TaskState, now: DateTime<Utc>) {
    if task.status.state < state {
        let status = &mut task.to_mut().status;
        status.state = state;
        status.timestamp = now;
        status.err.clear();
    }
}

/// A new task for `key`, pending scheduling (global tasks come with their node).
pub(crate) fn new_task(pass: &mut Pass<'_>, service: &Service, key: &SlotKey) -> Task {
    let id = pass.new_id();
    let (slot, node_id, name) = match key {
        SlotKey::Replica(n) => (*n, String::new(), format!("{}.{}.{}", service.spec.name, n, id)),
        SlotKey::Node(node) => (0, node.clone(), format!("{}.{}.{}", service.spec.name, node, id)),
    };
    Task {
        id,
        version: Default::default(),
        created_at: pass.now,
        updated_at: pass.now,
        name,
        labels: Default::default(),
        spec: service.spec.task_template.clone(),
        service_id: service.id.clone(),
        slot,
        node_id,
        status: TaskStatus {
            timestamp: pass.now,
            state: TaskState::Pending,
            message: "pending task scheduling".into(),
            ..Default::default()
        },
        desired_state: TaskState::Running,
        // Filled in by the store when the task is created (IPAM lives in `ClusterState::apply`).
        networks_attachments: Vec::new(),
    }
}
