//! Test fixtures and a simulated cluster for the orchestrator's tests.
//!
//! [`Sim`] plays the leader and every agent in one process with a fake clock: each step the
//! agents report on their tasks (assigned → running, desired shutdown → shutdown, or failed for
//! images the test marks as failing), then the leader reconciles and commits the plan with
//! `ClusterState::apply`, exactly the path the real leader takes. Nodes marked down report
//! nothing, as a dead daemon would.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{reconcile, rollback_needed};
use crate::objects::service::{
    GlobalService, ReplicatedService, Service, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState, TaskStatus,
};
use crate::objects::{
    JoinTokens, Node, NodeAvailability, NodeDescription, NodeSpec, NodeState, NodeStatus, Swarm, SwarmSpec, TlsInfo,
    Version,
};
use crate::state::{ClusterRecord, ClusterState, Command, NodeRecord, Plan, Proposal};

/// `secs` seconds after a fixed epoch.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

/// A ready, active worker.
pub fn node(id: &str, hostname: &str) -> NodeRecord {
    NodeRecord {
        node: Node {
            id: id.into(),
            version: Version::default(),
            created_at: at(0),
            updated_at: at(0),
            spec: NodeSpec::default(),
            description: NodeDescription { hostname: hostname.into(), ..Default::default() },
            status: NodeStatus { state: NodeState::Ready, ..Default::default() },
            manager_status: None,
        },
        raft_id: None,
        manager_addr: String::new(),
    }
}

pub fn with_nodes(nodes: Vec<NodeRecord>) -> ClusterState {
    ClusterState { nodes: nodes.into_iter().map(|n| (n.node.id.clone(), n)).collect(), ..Default::default() }
}

/// A task of service "s", slot 1, created and last reported at `timestamp`.
pub fn task_on(id: &str, node_id: &str, state: TaskState, timestamp: DateTime<Utc>) -> Task {
    Task {
        id: id.into(),
        version: Version::default(),
        created_at: timestamp,
        updated_at: timestamp,
        name: String::new(),
        labels: Default::default(),
        spec: TaskSpec::default(),
        service_id: "s".into(),
        slot: 1,
        node_id: node_id.into(),
        status: TaskStatus { timestamp, state, ..Default::default() },
        desired_state: TaskState::Running,
        networks_attachments: Vec::new(),
    }
}

fn service(name: &str, mode: ServiceMode) -> Service {
    let mut spec = ServiceSpec { name: name.into(), mode, ..Default::default() };
    spec.task_template.container_spec.image = "shoal/echo".into();
    Service {
        id: String::new(),
        version: Version::default(),
        created_at: at(0),
        updated_at: at(0),
        spec,
        previous_spec: None,
        endpoint: Default::default(),
        update_status: None,
        service_status: None,
    }
}

pub fn replicated(name: &str, replicas: u64) -> Service {
    service(name, ServiceMode { replicated: Some(ReplicatedService { replicas: Some(replicas) }), global: None })
}

pub fn global(name: &str) -> Service {
    service(name, ServiceMode { replicated: None, global: Some(GlobalService {}) })
}

/// The leader and the agents of a simulated cluster.
#[derive(Clone)]
pub struct Sim {
    pub state: ClusterState,
    pub now: DateTime<Utc>,
    pub tick: Duration,
    /// The Raft index of the last applied command.
    pub index: u64,
    next_id: u64,
    next_service: u64,
    failing: HashSet<String>,
    /// Images whose tasks fail after running this long.
    failing_after: HashMap<String, Duration>,
}

impl Sim {
    pub fn new(nodes: Vec<NodeRecord>) -> Sim {
        let mut state = with_nodes(nodes);
        state.cluster = Some(ClusterRecord {
            swarm: Swarm {
                id: "swarm".into(),
                version: Version::default(),
                created_at: at(0),
                updated_at: at(0),
                spec: SwarmSpec::default(),
                tls_info: TlsInfo::default(),
                root_rotation_in_progress: false,
                data_path_port: 4789,
                default_addr_pool: vec![],
                subnet_size: 24,
                join_tokens: JoinTokens::default(),
            },
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
        });
        Sim {
            state,
            now: at(1000),
            tick: Duration::milliseconds(100),
            index: 100,
            next_id: 0,
            next_service: 0,
            failing: HashSet::new(),
            failing_after: HashMap::new(),
        }
    }

    pub fn apply(&mut self, command: Command) {
        self.index += 1;
        let name = command.name();
        if let Err(e) = self.state.apply(self.index, &Proposal { at: self.now, command }) {
            panic!("{name}: {}", e.message);
        }
    }

    /// Tasks of `image` fail as soon as they start.
    pub fn fail_image(&mut self, image: &str) {
        self.failing.insert(image.into());
    }

    /// Tasks of `image` fail after running for `secs`.
    pub fn fail_image_after(&mut self, image: &str, secs: f64) {
        self.failing_after.insert(image.into(), Duration::milliseconds((secs * 1000.0) as i64));
    }

    pub fn create(&mut self, mut service: Service) -> String {
        self.next_service += 1;
        service.id = format!("s{:02}", self.next_service);
        let id = service.id.clone();
        self.apply(Command::CreateService { service: Box::new(service) });
        id
    }

    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut ServiceSpec)) {
        let service = &self.state.services[id];
        let mut spec = service.spec.clone();
        change(&mut spec);
        let command = Command::UpdateService {
            id: id.into(),
            version: service.version.index,
            spec: Box::new(spec),
            endpoint: service.endpoint.clone(),
        };
        self.apply(command);
    }

    pub fn scale(&mut self, id: &str, replicas: u64) {
        self.update(id, |s| s.mode.replicated = Some(ReplicatedService { replicas: Some(replicas) }));
    }

    pub fn force_update(&mut self, id: &str, force: u64) {
        self.update(id, |s| s.task_template.force_update = force);
    }

    pub fn rollback(&mut self, id: &str) {
        let version = self.state.services[id].version.index;
        self.apply(Command::RollbackService { id: id.into(), version: Some(version), endpoint: None });
    }

    pub fn remove_service(&mut self, id: &str) {
        self.apply(Command::RemoveService { id: id.into() });
    }

    pub fn add_node(&mut self, node: NodeRecord) {
        self.apply(Command::AddNode { node });
    }

    fn update_node(&mut self, id: &str, change: impl FnOnce(&mut NodeSpec)) {
        let node = &self.state.nodes[id].node;
        let mut spec = node.spec.clone();
        change(&mut spec);
        let command = Command::UpdateNodeSpec { id: id.into(), version: node.version.index, spec };
        self.apply(command);
    }

    pub fn set_availability(&mut self, id: &str, availability: NodeAvailability) {
        self.update_node(id, |s| s.availability = availability);
    }

    pub fn set_label(&mut self, id: &str, key: &str, value: &str) {
        self.update_node(id, |s| {
            s.labels.insert(key.into(), value.into());
        });
    }

    pub fn set_node_state(&mut self, id: &str, state: NodeState) {
        let status = NodeStatus { state, ..Default::default() };
        self.apply(Command::SetNodeStatus { id: id.into(), status, description: None });
    }

    pub fn set_history_limit(&mut self, limit: i64) {
        let cluster = self.state.cluster.as_mut().expect("cluster");
        cluster.swarm.spec.orchestration.task_history_retention_limit = Some(limit);
    }

    /// What the agents report this step.
    fn agent_reports(&self) -> Vec<(String, TaskStatus)> {
        let mut reports = Vec::new();
        for task in self.state.tasks.values() {
            let Some(node) = self.state.nodes.get(&task.node_id) else { continue };
            if node.node.status.state == NodeState::Down {
                continue;
            }
            let state = task.status.state;
            if state < TaskState::Assigned || state.is_terminal() {
                continue;
            }
            let image = &task.spec.container_spec.image;
            let next = if task.desired_state > TaskState::Running {
                Some(TaskState::Shutdown)
            } else if task.desired_state < TaskState::Running {
                // Held (stop-first): an agent starts a task only once it is desired running.
                None
            } else if state < TaskState::Running {
                Some(if self.failing.contains(image) { TaskState::Failed } else { TaskState::Running })
            } else {
                let after = self.failing_after.get(image);
                after.filter(|d| task.status.timestamp + **d <= self.now).map(|_| TaskState::Failed)
            };
            if let Some(next) = next {
                let message = match next {
                    TaskState::Failed => "started",
                    TaskState::Running => "started",
                    _ => "shutdown",
                };
                let err = if next == TaskState::Failed { "task: non-zero exit (1)" } else { "" };
                let status = TaskStatus {
                    timestamp: self.now,
                    state: next,
                    message: message.into(),
                    err: err.into(),
                    ..Default::default()
                };
                reports.push((task.id.clone(), status));
            }
        }
        reports
    }

    /// Only the leader's part: reconcile, commit, and commit the rollbacks it asks for.
    pub fn reconcile_once(&mut self) -> Plan {
        let mut next_id = self.next_id;
        let plan = reconcile(&self.state, self.now, &mut || {
            next_id += 1;
            format!("t{next_id:05}")
        });
        self.next_id = next_id;
        if !plan.is_empty() {
            self.apply(Command::ApplyPlan { plan: Box::new(plan.clone()) });
        }
        for id in rollback_needed(&self.state) {
            self.apply(Command::RollbackService { id, version: None, endpoint: None });
        }
        plan
    }

    /// One tick: the agents report, the leader reconciles, the clock moves on. Returns the plan.
    pub fn step(&mut self) -> Plan {
        let reports = self.agent_reports();
        if !reports.is_empty() {
            self.apply(Command::UpdateTaskStatus { updates: reports });
        }
        let plan = self.reconcile_once();
        self.now += self.tick;
        plan
    }

    pub fn run_for(&mut self, secs: f64) {
        let end = self.now + Duration::milliseconds((secs * 1000.0) as i64);
        while self.now < end {
            self.step();
        }
    }

    /// Steps until nothing changed for 15 simulated seconds (longer than any restart delay or
    /// monitor period the tests use), then checks that one more pass plans nothing.
    pub fn converge(&mut self) {
        let limit = self.now + Duration::minutes(10);
        let mut quiet_since = self.now;
        while self.now - quiet_since < Duration::seconds(15) {
            assert!(self.now < limit, "no convergence after 10 simulated minutes");
            let before = self.index;
            self.step();
            if self.index != before {
                quiet_since = self.now;
            }
        }
        let plan = self.reconcile_once();
        assert!(plan.is_empty(), "converged state must plan nothing: {plan:#?}");
    }

    pub fn tasks_of(&self, service: &str) -> Vec<Task> {
        self.state.tasks.values().filter(|t| t.service_id == service).cloned().collect()
    }

    fn running<'s>(&'s self, service: &'s str) -> impl Iterator<Item = &'s Task> + 's {
        self.state.tasks.values().filter(move |t| {
            t.service_id == service && t.desired_state == TaskState::Running && t.status.state == TaskState::Running
        })
    }

    /// Running tasks per node, nodes in ID order.
    pub fn running_per_node(&self, service: &str) -> Vec<usize> {
        let nodes: Vec<&String> = self.state.nodes.keys().collect();
        nodes.iter().map(|n| self.running(service).filter(|t| t.node_id == **n).count()).collect()
    }

    pub fn running_slots(&self, service: &str) -> Vec<u64> {
        let mut slots: Vec<u64> = self.running(service).map(|t| t.slot).collect();
        slots.sort();
        slots
    }
}
