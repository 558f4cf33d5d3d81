//! The node's task executor: runs what the managers assigned to this node and reports back.
//!
//! It long-polls `Dispatcher.Assignments`, starts tasks whose desired state is running through
//! [`mesh_agent::runtime`], stops those the orchestrator shut down, watches health checks, and
//! reports every state change through `Dispatcher.UpdateTaskStatus`. States are only reported
//! forward (the store ignores anything else). Tasks survive an agent restart: a restarted agent
//! adopts the processes it finds instead of starting duplicates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mesh_agent::runtime::{ExitStatus, RunningTask, Runtime, TaskLaunch};
use tokio::sync::{mpsc, watch};

use crate::daemon::Core;
use crate::objects::service::{ContainerStatus, HealthConfig, Task, TaskState, TaskStatus};
use crate::rpc::pb;

/// Docker's health-check defaults.
const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTH_RETRIES: u32 = 3;
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// What a task's watchers tell the executor.
enum Event {
    Started(String, RunningTask),
    StartFailed(String, String),
    Healthy(String),
    Unhealthy(String),
    Exited(String, ExitStatus),
}

struct Local {
    task: Option<RunningTask>,
    /// The last state we reported (or saw in the store).
    state: TaskState,
    stopping: bool,
    unhealthy: bool,
}

pub async fn run(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let (assign_tx, mut assignments) = mpsc::channel::<Vec<Task>>(1);
    let poller = tokio::spawn(poll_assignments(core.clone(), assign_tx, stop.clone()));
    let mut locals: HashMap<String, Local> = HashMap::new();
    let mut swept = false;
    let mut outbox: Vec<(String, TaskStatus)> = Vec::new();
    let mut flush = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(tasks) = assignments.recv() => {
                reconcile(&core, &tasks, &mut locals, &events_tx, &mut outbox, &mut swept).await;
            }
            Some(event) = events.recv() => {
                handle(&core, event, &mut locals, &events_tx, &mut outbox);
            }
            _ = flush.tick() => {
                if !outbox.is_empty() && report(&core, &outbox).await {
                    outbox.clear();
                }
            }
        }
    }
    poller.abort();
}

/// Keeps one long poll outstanding and hands every answer to the executor.
async fn poll_assignments(core: Arc<Core>, tx: mpsc::Sender<Vec<Task>>, stop: watch::Receiver<bool>) {
    let mut since = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        match assignments_once(&core, since).await {
            Ok((index, tasks)) => {
                since = index;
                if tx.send(tasks).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("assignments: {e:#}");
                since = 0;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

pub(crate) fn manager_candidates(core: &Core) -> Vec<String> {
    let Some(local) = core.local() else { return Vec::new() };
    let mut out = Vec::new();
    if core.manager().is_some() {
        out.push(local.manager_addr());
    }
    for (_, addr) in &local.managers {
        if !out.contains(addr) {
            out.push(addr.clone());
        }
    }
    out
}

async fn assignments_once(core: &Core, since: u64) -> anyhow::Result<(u64, Vec<Task>)> {
    let peers = core.peers().ok_or_else(|| anyhow::anyhow!("no identity"))?;
    let mut last = anyhow::anyhow!("no manager known");
    for addr in manager_candidates(core) {
        let mut client = peers.dispatcher(&addr)?;
        let mut request = tonic::Request::new(pb::AssignmentsRequest { since_index: since });
        request.set_timeout(Duration::from_secs(15));
        match client.assignments(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                return Ok((reply.index, serde_json::from_slice(&reply.tasks)?));
            }
            Err(status) => {
                peers.forget(&addr);
                last = anyhow::anyhow!("assignments from {addr}: {}", status.message());
            }
        }
    }
    Err(last)
}

/// Sends the queued reports; `false` keeps them for the next try.
async fn report(core: &Core, outbox: &[(String, TaskStatus)]) -> bool {
    let Some(peers) = core.peers() else { return false };
    let Ok(json) = serde_json::to_vec(outbox) else { return false };
    for addr in manager_candidates(core) {
        let Ok(mut client) = peers.dispatcher(&addr) else { continue };
        let mut request = tonic::Request::new(pb::Json { json: json.clone() });
        request.set_timeout(Duration::from_secs(5));
        match client.update_task_status(request).await {
            Ok(_) => return true,
            Err(status) => {
                tracing::debug!("reporting task states to {addr}: {}", status.message());
                peers.forget(&addr);
            }
        }
    }
    false
}

fn status(state: TaskState, message: &str, err: &str, pid: i64, exit_code: i64) -> TaskStatus {
    TaskStatus {
        timestamp: Utc::now(),
        state,
        message: message.to_string(),
        err: err.to_string(),
        container_status: Some(ContainerStatus { container_id: String::new(), pid, exit_code }),
        port_status: serde_json::Value::Null,
    }
}

fn push(outbox: &mut Vec<(String, TaskStatus)>, locals: &mut HashMap<String, Local>, id: &str, status: TaskStatus) {
    if let Some(local) = locals.get_mut(id) {
        if status.state < local.state {
            return;
        }
        local.state = status.state;
    }
    outbox.retain(|(queued, s)| !(queued == id && s.state <= status.state));
    outbox.push((id.to_string(), status));
}

async fn reconcile(
    core: &Arc<Core>,
    tasks: &[Task],
    locals: &mut HashMap<String, Local>,
    events: &mpsc::UnboundedSender<Event>,
    outbox: &mut Vec<(String, TaskStatus)>,
    swept: &mut bool,
) {
    let Ok(runtime) = core.runtime() else {
        tracing::error!("the task runtime is unavailable");
        return;
    };
    for task in tasks {
        let wanted = task.desired_state <= TaskState::Running;
        match locals.get_mut(&task.id) {
            // Only tasks the scheduler placed (assigned or later) run; a global task carries its
            // node even while pending.
            None if task.status.state < TaskState::Assigned => {}
            // A task held at desired `ready` (stop-first) waits until it is desired running.
            None if task.desired_state < TaskState::Running => {}
            None if wanted && task.status.state <= TaskState::Running => {
                // A task we do not know: adopt it if it survived an agent restart, else start it.
                if let Some(running) = runtime.adopt(&task.id).await {
                    locals.insert(
                        task.id.clone(),
                        Local { task: None, state: task.status.state, stopping: false, unhealthy: false },
                    );
                    // Its interfaces survived with it; check them and serve its names again.
                    if let Ok(network) = core.node_network() {
                        let (task, pid) = (task.clone(), running.pid() as u32);
                        tokio::spawn(async move {
                            if let Err(e) = network.adopt(&task, pid).await {
                                tracing::warn!(task = %task.id, "re-wiring an adopted task: {e:#}");
                            }
                        });
                    }
                    let _ = events.send(Event::Started(task.id.clone(), running));
                    continue;
                }
                if task.status.state >= TaskState::Starting {
                    // It was started here before and is gone: say so, the orchestrator replaces it.
                    locals.insert(
                        task.id.clone(),
                        Local { task: None, state: task.status.state, stopping: false, unhealthy: false },
                    );
                    let exit = runtime.exit_status(&task.id);
                    let code = exit.as_ref().map(|e| e.code as i64).unwrap_or(0);
                    let failed = status(TaskState::Failed, "task lost while the agent was down", "", 0, code);
                    push(outbox, locals, &task.id, failed);
                    continue;
                }
                locals.insert(
                    task.id.clone(),
                    Local { task: None, state: task.status.state, stopping: false, unhealthy: false },
                );
                push(outbox, locals, &task.id, status(TaskState::Preparing, "preparing", "", 0, 0));
                spawn_start(core.clone(), runtime.clone(), task.clone(), events.clone());
            }
            None => {
                // Shut down while this agent was away: a process that survived must still stop.
                if let Some(survivor) = runtime.adopt(&task.id).await {
                    let (core, id) = (core.clone(), task.id.clone());
                    tokio::spawn(async move {
                        survivor.stop(DEFAULT_STOP_GRACE).await;
                        release_network(&core, &id).await;
                    });
                }
                if !task.status.state.is_terminal() {
                    locals.insert(
                        task.id.clone(),
                        Local { task: None, state: task.status.state, stopping: true, unhealthy: false },
                    );
                    push(outbox, locals, &task.id, status(TaskState::Shutdown, "shutdown", "", 0, 0));
                }
            }
            Some(local) => {
                if !wanted && !local.stopping {
                    local.stopping = true;
                    if let Some(running) = local.task.clone() {
                        let grace = stop_grace(task);
                        let events = events.clone();
                        let id = task.id.clone();
                        let network = core.node_network_if_started().filter(|_| !task.networks_attachments.is_empty());
                        tokio::spawn(async move {
                            // Out of every load balancer first, then SIGTERM.
                            if let Some(network) = network {
                                network.drain(&id).await;
                            }
                            let exit = running.stop(grace).await;
                            let _ = events.send(Event::Exited(id, exit));
                        });
                    } else if !local.state.is_terminal() {
                        push(outbox, locals, &task.id, status(TaskState::Shutdown, "shutdown", "", 0, 0));
                    }
                }
            }
        }
    }
    // Tasks the managers forgot (their service is gone, or they were shut down while this
    // agent was away and are no longer assigned): stop them.
    let assigned: std::collections::HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    if !*swept {
        // The first answer after a start: processes that outlived the previous agent and are
        // no longer wanted anywhere are stopped, so a returning node never runs duplicates.
        *swept = true;
        for id in runtime.list() {
            if assigned.contains(id.as_str()) || locals.contains_key(&id) {
                continue;
            }
            if let Some(survivor) = runtime.adopt(&id).await {
                tracing::info!(task = %id, "stopping a task that is no longer assigned to this node");
                let core = core.clone();
                tokio::spawn(async move {
                    survivor.stop(DEFAULT_STOP_GRACE).await;
                    release_network(&core, &id).await;
                });
            }
        }
    }
    let forgotten: Vec<String> = locals.keys().filter(|id| !assigned.contains(id.as_str())).cloned().collect();
    for id in forgotten {
        if let Some(local) = locals.remove(&id) {
            let core = core.clone();
            tokio::spawn(async move {
                if let Some(running) = local.task {
                    running.stop(DEFAULT_STOP_GRACE).await;
                }
                release_network(&core, &id).await;
            });
        }
    }
}

fn stop_grace(task: &Task) -> Duration {
    match task.spec.container_spec.stop_grace_period {
        Some(ns) if ns >= 0 => Duration::from_nanos(ns as u64),
        _ => DEFAULT_STOP_GRACE,
    }
}

fn launch_for(task: &Task, netns: Option<std::path::PathBuf>) -> TaskLaunch {
    let spec = &task.spec.container_spec;
    let node_name = mesh_agent::host::describe().hostname;
    let hostname = if spec.hostname.is_empty() { task.name.clone() } else { spec.hostname.clone() };
    let limits = task.spec.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    TaskLaunch {
        task_id: task.id.clone(),
        task_name: task.name.clone(),
        node_name,
        image: spec.image.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        dir: spec.dir.clone(),
        user: spec.user.clone(),
        hostname: hostname.clone(),
        memory_limit: limits.memory_bytes,
        nano_cpus: limits.nano_cpus,
        resolv_conf: dns::task_resolv_conf(&[]),
        hosts: hosts_file(task, &hostname),
        netns,
        stop_grace: stop_grace(task),
    }
}

/// `/etc/hosts`: localhost, and the task's own name on its first overlay address (Docker's
/// shape) or on 127.0.1.1 when it has no network.
fn hosts_file(task: &Task, hostname: &str) -> String {
    let own = match crate::node_network::NodeNetwork::first_address(task) {
        Some(ip) => format!("{ip}\t{hostname}\n"),
        None => format!("127.0.1.1\t{hostname}\n"),
    };
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}")
}

/// Unwires a task that will not run again here (no-op for a task without networks).
async fn release_network(core: &Core, task_id: &str) {
    if let Some(network) = core.node_network_if_started() {
        network.release(task_id).await;
    }
}

/// The network namespace a task joins, wired into its networks; `None` for a task without any.
async fn prepare_network(core: &Core, task: &Task) -> anyhow::Result<Option<std::path::PathBuf>> {
    if task.networks_attachments.is_empty() {
        return Ok(None);
    }
    core.node_network()?.prepare(task).await
}

fn spawn_start(core: Arc<Core>, runtime: Arc<Runtime>, task: Task, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let netns = match prepare_network(&core, &task).await {
            Ok(netns) => netns,
            Err(e) => {
                release_network(&core, &task.id).await;
                let _ = events.send(Event::StartFailed(task.id.clone(), format!("network: {e:#}")));
                return;
            }
        };
        let launch = launch_for(&task, netns);
        match runtime.start(&launch).await {
            Ok(running) => {
                let _ = events.send(Event::Started(task.id.clone(), running.clone()));
                if let Some(health) = health_config(&task) {
                    tokio::spawn(watch_health(task.id.clone(), running, health, events.clone()));
                } else {
                    let _ = events.send(Event::Healthy(task.id.clone()));
                }
            }
            Err(e) => {
                release_network(&core, &task.id).await;
                let _ = events.send(Event::StartFailed(task.id.clone(), e.to_string()));
            }
        }
    });
}

/// The task's health check, if it has one (`["NONE"]` and an empty test mean none).
fn health_config(task: &Task) -> Option<HealthConfig> {
    let health = task.spec.container_spec.healthcheck.clone()?;
    match health.test.first().map(String::as_str) {
        None | Some("NONE") => None,
        _ => Some(health),
    }
}

fn ns(value: i64, default: Duration) -> Duration {
    if value > 0 {
        Duration::from_nanos(value as u64)
    } else {
        default
    }
}

/// Docker's health-check state machine: healthy on the first success; unhealthy after
/// `retries` consecutive failures outside the start period.
async fn watch_health(id: String, task: RunningTask, health: HealthConfig, events: mpsc::UnboundedSender<Event>) {
    let interval = ns(health.interval, HEALTH_INTERVAL);
    let timeout = ns(health.timeout, HEALTH_TIMEOUT);
    let retries = if health.retries > 0 { health.retries as u32 } else { HEALTH_RETRIES };
    let start_period = ns(health.start_period, Duration::ZERO);
    let started = tokio::time::Instant::now();
    let mut failures = 0u32;
    let mut healthy = false;
    loop {
        tokio::time::sleep(interval).await;
        if task.status().is_some() {
            return;
        }
        let ok = matches!(task.exec_health(&health.test, timeout).await, Ok(0));
        if ok {
            failures = 0;
            if !healthy {
                healthy = true;
                let _ = events.send(Event::Healthy(id.clone()));
            }
            continue;
        }
        if started.elapsed() < start_period && !healthy {
            continue;
        }
        failures += 1;
        if failures >= retries {
            let _ = events.send(Event::Unhealthy(id.clone()));
            return;
        }
    }
}

fn handle(
    core: &Arc<Core>,
    event: Event,
    locals: &mut HashMap<String, Local>,
    events: &mpsc::UnboundedSender<Event>,
    outbox: &mut Vec<(String, TaskStatus)>,
) {
    match event {
        Event::Started(id, running) => {
            let pid = running.pid() as i64;
            let Some(local) = locals.get_mut(&id) else {
                // Forgotten while starting: stop it again.
                tokio::spawn(async move {
                    running.stop(DEFAULT_STOP_GRACE).await;
                });
                return;
            };
            local.task = Some(running.clone());
            let stopping = local.stopping;
            let waiter = events.clone();
            let wait_id = id.clone();
            tokio::spawn(async move {
                let exit = running.wait().await;
                let _ = waiter.send(Event::Exited(wait_id, exit));
            });
            if stopping {
                return;
            }
            push(outbox, locals, &id, status(TaskState::Starting, "starting", "", pid, 0));
        }
        Event::StartFailed(id, err) => {
            push(outbox, locals, &id, status(TaskState::Rejected, "starting", &err, 0, 0));
        }
        Event::Healthy(id) => {
            let Some(local) = locals.get(&id) else { return };
            if local.stopping || local.state >= TaskState::Running {
                return;
            }
            let pid = local.task.as_ref().map(|t| t.pid() as i64).unwrap_or(0);
            push(outbox, locals, &id, status(TaskState::Running, "started", "", pid, 0));
        }
        Event::Unhealthy(id) => {
            let Some(local) = locals.get_mut(&id) else { return };
            local.unhealthy = true;
            local.stopping = true;
            if let Some(running) = local.task.clone() {
                let events = events.clone();
                tokio::spawn(async move {
                    let exit = running.stop(DEFAULT_STOP_GRACE).await;
                    let _ = events.send(Event::Exited(id, exit));
                });
            }
        }
        Event::Exited(id, exit) => {
            {
                let (core, id) = (core.clone(), id.clone());
                tokio::spawn(async move { release_network(&core, &id).await });
            }
            let Some(local) = locals.get(&id) else { return };
            let pid = local.task.as_ref().map(|t| t.pid() as i64).unwrap_or(0);
            let code = exit.code as i64;
            let report = if local.unhealthy {
                status(TaskState::Failed, "unhealthy container", "task: unhealthy container", pid, code)
            } else if local.stopping {
                status(TaskState::Shutdown, "shutdown", "", pid, code)
            } else if code == 0 {
                status(TaskState::Complete, "finished", "", pid, code)
            } else {
                let err = match &exit.error {
                    Some(e) => e.clone(),
                    None if exit.oom_killed => format!("task: non-zero exit ({code}): OOM killed"),
                    None => format!("task: non-zero exit ({code})"),
                };
                status(TaskState::Failed, "failed", &err, pid, code)
            };
            push(outbox, locals, &id, report);
        }
    }
}

/// Where the runtime keeps a task's log (`Agent.TaskLogs` reads it).
pub fn task_log_path(core: &Core, task_id: &str) -> std::path::PathBuf {
    core.tasks_dir().join(task_id).join("task.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::objects::SECOND_NS;

    #[test]
    fn health_none_and_empty_mean_no_check() {
        let mut task: Task = serde_json::from_value(serde_json::json!({
            "ID": "t", "Version": {"Index": 1}, "CreatedAt": "2026-01-01T00:00:00Z",
            "UpdatedAt": "2026-01-01T00:00:00Z", "Spec": {"ContainerSpec": {"Image": "shoal/echo"}},
            "ServiceID": "s", "Status": {"Timestamp": "2026-01-01T00:00:00Z", "State": "assigned"},
            "DesiredState": "running"
        }))
        .unwrap();
        assert!(health_config(&task).is_none());
        task.spec.container_spec.healthcheck = Some(HealthConfig { test: vec!["NONE".into()], ..Default::default() });
        assert!(health_config(&task).is_none());
        task.spec.container_spec.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: SECOND_NS,
            ..Default::default()
        });
        assert!(health_config(&task).is_some());
        assert_eq!(stop_grace(&task), DEFAULT_STOP_GRACE);
    }
}
