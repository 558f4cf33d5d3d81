//! docker's service convergence display (`cli/command/service/progress`), as a state machine
//! fed with what each poll read, producing the lines to show. No I/O here: [`super::wait`]
//! polls the daemon and draws the lines.
//!
//! ```text
//! overall progress: 2 out of 3 tasks
//! 1/3: running   [==================================================>]
//! 2/3: running   [==================================================>]
//! 3/3: starting  [============================================>      ]
//! verify: Waiting 5 seconds to verify that tasks are stable...
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use control::objects::service::{Service, Task, TaskState, UpdateState};

use super::ls::truncate_id;

/// Replicated services with more slots than this get only the overall line.
const MAX_PROGRESS_BARS: u64 = 20;
/// The bar's scale: states are numbered up to running (9).
const MAX_PROGRESS: i64 = 9;
/// The widest state name shown ("preparing", "allocated"), which the state column pads to.
const LONGEST_STATE: usize = 9;
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// One line of the display, `ID: action` plus a bar when `progress` is `(current, total)`.
/// A later line with the same ID replaces the earlier one on a terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub id: String,
    pub action: String,
    pub progress: Option<(i64, i64)>,
}

impl Line {
    fn new(id: impl Into<String>, action: impl Into<String>) -> Line {
        Line { id: id.into(), action: action.into(), progress: None }
    }

    /// How a terminal shows it: docker's `ID: status [bar] `, the bar when `bars` is set (docker
    /// draws it on terminals wider than 110 columns).
    pub fn tty_text(&self, bars: bool) -> String {
        match self.progress {
            Some((current, total)) if bars => format!("{}: {} {}", self.id, self.action, bar(current, total)),
            Some(_) => format!("{}: {} ", self.id, self.action),
            None => format!("{}: {}", self.id, self.action),
        }
    }

    /// How a log shows it: trailing padding trimmed.
    pub fn plain_text(&self) -> String {
        format!("{}: {}", self.id, self.action.trim_end())
    }
}

/// docker's `JSONProgress` bar: 50 columns at 100 %.
pub fn bar(current: i64, total: i64) -> String {
    let percent = ((current as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    format!("[{}>{}] ", "=".repeat(percent), " ".repeat(50 - percent))
}

/// docker's `numberedStates`; 0 for states the display ignores (remove, orphaned).
fn numbered(state: TaskState) -> i64 {
    match state {
        TaskState::New => 1,
        TaskState::Allocated => 2,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        TaskState::Running => 9,
        TaskState::Complete => 10,
        TaskState::Shutdown => 11,
        TaskState::Failed => 12,
        TaskState::Rejected => 13,
        TaskState::Remove | TaskState::Orphaned => 0,
    }
}

fn terminal(state: TaskState) -> bool {
    numbered(state) > numbered(TaskState::Running)
}

/// docker's `truncError`: one line, at most 75 characters.
fn trunc_error(err: &str) -> String {
    let err = err.replace('\n', " ");
    if err.chars().count() > 75 {
        format!("{}…", err.chars().take(74).collect::<String>())
    } else {
        err
    }
}

fn overall(out: &mut Vec<Line>, running: u64, total: u64, rollback: bool) {
    let action = if rollback {
        format!("rolling back update: {running} out of {total} tasks")
    } else {
        format!("{running} out of {total} tasks")
    };
    out.push(Line::new("overall progress", action));
}

/// One task's line: its error, or its state with a bar while it is on its way to running.
fn task_line(id: String, task: &Task) -> Option<Line> {
    if !task.status.err.is_empty() {
        return Some(Line::new(id, trunc_error(&task.status.err)));
    }
    if terminal(task.desired_state) || terminal(task.status.state) {
        return None;
    }
    Some(Line {
        id,
        action: format!("{:<LONGEST_STATE$}", task.status.state.as_str()),
        progress: Some((numbered(task.status.state), MAX_PROGRESS)),
    })
}

/// Of several tasks for one slot or node, the one with the lowest desired state, then the
/// lowest observed state (restarts and start-first updates overlap).
fn prefer(existing: Option<&Task>, task: &Task) -> bool {
    match existing {
        None => true,
        Some(e) => {
            let (ed, td) = (numbered(e.desired_state), numbered(task.desired_state));
            ed > td || (ed == td && numbered(e.status.state) > numbered(task.status.state))
        }
    }
}

#[derive(Debug)]
enum Updater {
    Replicated { slot_map: BTreeMap<u64, u64>, initialized: bool, done: bool },
    Global { initialized: bool, done: bool },
}

impl Updater {
    fn new(service: &Service) -> Result<Updater, String> {
        if service.spec.mode.replicated.as_ref().is_some_and(|r| r.replicas.is_some()) {
            Ok(Updater::Replicated { slot_map: BTreeMap::new(), initialized: false, done: false })
        } else if service.spec.mode.global.is_some() {
            Ok(Updater::Global { initialized: false, done: false })
        } else {
            Err("unrecognized service mode".into())
        }
    }

    fn update(
        &mut self,
        service: &Service,
        tasks: &[Task],
        active: &HashSet<String>,
        rollback: bool,
        out: &mut Vec<Line>,
    ) -> Result<bool, String> {
        let usable = |t: &&Task| numbered(t.desired_state) != 0 && numbered(t.status.state) != 0;
        match self {
            Updater::Replicated { slot_map, initialized, done } => {
                let replicas =
                    service.spec.mode.replicated.as_ref().and_then(|r| r.replicas).ok_or("no replica count")?;
                if !*initialized {
                    overall(out, 0, replicas, rollback);
                    if replicas <= MAX_PROGRESS_BARS {
                        out.extend((1..=replicas).map(|i| Line::new(format!("{i}/{replicas}"), " ")));
                    }
                    *initialized = true;
                }
                let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
                for task in tasks.iter().filter(usable) {
                    if !task.node_id.is_empty() && !active.contains(&task.node_id) {
                        continue;
                    }
                    if prefer(by_slot.get(&task.slot).copied(), task) {
                        by_slot.insert(task.slot, task);
                    }
                }
                if *done && by_slot.values().any(|t| t.status.state != TaskState::Running) {
                    *done = false;
                }
                let mut running = 0;
                for (slot, task) in &by_slot {
                    let next = slot_map.len() as u64 + 1;
                    let mapped = *slot_map.entry(*slot).or_insert(next);
                    if !terminal(task.desired_state) && task.status.state == TaskState::Running {
                        running += 1;
                    }
                    if !*done && replicas <= MAX_PROGRESS_BARS && mapped <= replicas {
                        out.extend(task_line(format!("{mapped}/{replicas}"), task));
                    }
                }
                if !*done {
                    overall(out, running, replicas, rollback);
                    *done = running == replicas;
                }
                Ok(running == replicas)
            }
            Updater::Global { initialized, done } => {
                let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
                for task in tasks.iter().filter(usable) {
                    if prefer(by_node.get(task.node_id.as_str()).copied(), task) {
                        by_node.insert(task.node_id.as_str(), task);
                    }
                }
                let nodes = by_node.len() as u64;
                if !*initialized {
                    if nodes == 0 {
                        out.push(Line::new("overall progress", "waiting for new tasks"));
                        return Ok(false);
                    }
                    overall(out, 0, nodes, rollback);
                    *initialized = true;
                }
                if *done && by_node.values().any(|t| t.status.state != TaskState::Running) {
                    *done = false;
                }
                let mut running = 0;
                for (node, task) in by_node.iter().filter(|(node, _)| active.contains(**node)) {
                    if !terminal(task.desired_state) && task.status.state == TaskState::Running {
                        running += 1;
                    }
                    if !*done && nodes <= MAX_PROGRESS_BARS {
                        out.extend(task_line(truncate_id(node), task));
                    }
                }
                if !*done {
                    overall(out, running, nodes, rollback);
                    *done = running == nodes;
                }
                Ok(running == nodes)
            }
        }
    }
}

/// The whole display for one service (docker's `ServiceProgress` loop body). Each poll calls
/// [`ServiceProgress::check`] with the service just read and, unless it says the wait is
/// over, [`ServiceProgress::update`] with its up-to-date tasks and the nodes not down.
#[derive(Debug)]
pub struct ServiceProgress {
    /// The name the user gave, as docker prints it in `verify: Service … converged`.
    service: String,
    updater: Option<Updater>,
    converged: bool,
    converged_at: Option<Instant>,
    monitor: Duration,
    rollback: bool,
    message: Option<Line>,
    lines: Vec<Line>,
}

impl ServiceProgress {
    pub fn new(service: &str) -> ServiceProgress {
        ServiceProgress {
            service: service.to_string(),
            updater: None,
            converged: false,
            converged_at: None,
            monitor: DEFAULT_MONITOR,
            rollback: false,
            message: None,
            lines: Vec::new(),
        }
    }

    pub fn converged(&self) -> bool {
        self.converged
    }

    /// The lines produced since the last call.
    pub fn take_lines(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.lines)
    }

    /// Reads the update status; `Some` ends the wait (`Ok` converged, `Err` paused).
    pub fn check(&mut self, service: &Service, now: Instant) -> Option<Result<(), String>> {
        if let Some(monitor) = service.spec.update_config.as_ref().map(|u| u.monitor).filter(|m| *m != 0) {
            self.monitor = Duration::from_nanos(monitor.max(0) as u64);
        }
        if self.updater.is_none() {
            match Updater::new(service) {
                Ok(u) => self.updater = Some(u),
                Err(e) => return Some(Err(e)),
            }
        }
        if let Some(status) = &service.update_status {
            match status.state {
                UpdateState::Updating => self.rollback = false,
                UpdateState::Completed if !self.converged => return Some(Ok(())),
                UpdateState::Completed => {}
                UpdateState::Paused => return Some(Err(format!("service update paused: {}", status.message))),
                UpdateState::RollbackStarted => {
                    if !self.rollback && !status.message.is_empty() {
                        self.lines.push(Line::new("rollback", status.message.clone()));
                    }
                    self.rollback = true;
                }
                UpdateState::RollbackPaused => {
                    return Some(Err(format!("service rollback paused: {}", status.message)))
                }
                UpdateState::RollbackCompleted => {
                    if !self.converged {
                        self.message = Some(Line::new("rollback", status.message.clone()));
                    }
                    self.rollback = true;
                }
            }
        }
        if self.converged && self.converged_at.is_some_and(|at| now.duration_since(at) >= self.monitor) {
            self.lines.push(Line::new("verify", format!("Service {} converged", self.service)));
            self.lines.extend(self.message.take());
            return Some(Ok(()));
        }
        None
    }

    /// Feeds one poll's tasks (`_up-to-date` ones) and the IDs of nodes that are not down.
    pub fn update(
        &mut self,
        service: &Service,
        tasks: &[Task],
        active: &HashSet<String>,
        now: Instant,
    ) -> Result<(), String> {
        let updater = self.updater.as_mut().expect("check runs first");
        self.converged = updater.update(service, tasks, active, self.rollback, &mut self.lines)?;
        if self.converged {
            let at = *self.converged_at.get_or_insert(now);
            let waited = now.duration_since(at);
            if waited <= self.monitor {
                // docker's `wait/time.Second + 1`, taken a moment after convergence was seen.
                let left = (self.monitor - waited).saturating_sub(Duration::from_nanos(1));
                self.lines.push(Line::new(
                    "verify",
                    format!("Waiting {} seconds to verify that tasks are stable...", left.as_secs() + 1),
                ));
            }
        } else {
            if self.converged_at.is_some() {
                self.lines.push(Line::new("verify", "Detected task failure"));
            }
            self.converged_at = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
