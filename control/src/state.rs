//! The replicated cluster state and the commands that change it.
//!
//! `ClusterState::apply` is the only code that mutates cluster objects. It runs on every manager
//! for every committed Raft entry, so it must be deterministic: anything random or time-dependent
//! (new tokens, timestamps, node IDs) is decided by the proposer and carried in the [`Proposal`].
//! Rules that depend on the current state (version checks, "is not down and can't be removed")
//! are checked here, so two racing writers can never both win.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::ipam::{self, Cidr, Pool};
use crate::objects::network::{
    AttachedNetwork, AttachedNetworkSpec, DriverState, IpamConfig, Network, NetworkAttachment, MTU_OPTION,
    VXLAN_ID_OPTION,
};
use crate::objects::service::{
    Endpoint, EndpointMode, NetworkAttachmentConfig, Service, ServiceSpec, Task, TaskState, TaskStatus, UpdateState,
    UpdateStatus, VirtualIp,
};
use crate::objects::{Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Swarm, SwarmSpec, Version};

/// The cluster object plus what only managers may see: the root CA's key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClusterRecord {
    pub swarm: Swarm,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

/// A node as stored: the API object (without `ManagerStatus`, which is computed when read) and
/// its Raft membership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub node: Node,
    /// The node's Raft ID while it is a member of the Raft group.
    pub raft_id: Option<u64>,
    /// `ip:port` of the node's 2377 listener (Agent RPCs on every node, manager RPCs on managers).
    pub manager_addr: String,
}

impl NodeRecord {
    pub fn hostname(&self) -> &str {
        &self.node.description.hostname
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ClusterState {
    pub cluster: Option<ClusterRecord>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// IDs of removed nodes: their certificates are refused from then on, as in swarmkit.
    #[serde(default)]
    pub removed_nodes: BTreeSet<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub tasks: BTreeMap<String, Task>,
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkRecord>,
}

/// An overlay network as stored: the API object plus what only Shoal needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NetworkRecord {
    /// As `GET /networks/{id}` shows it (without `Peers`, which are computed when read).
    pub network: Network,
    /// The VXLAN network identifier, unique in the cluster (also in `Options`, as Docker shows it).
    pub vni: u32,
    /// The subnet, the dynamic range, the gateway and who holds which address.
    pub pool: Pool,
}

impl NetworkRecord {
    /// `-o com.docker.network.driver.mtu=N`, validated when the network was created.
    pub fn mtu(&self) -> Option<u32> {
        self.network.options.get(MTU_OPTION).and_then(|v| v.parse().ok())
    }
}

/// VNIs below this are left alone, as by Docker's overlay driver (moby ovmanager).
pub const FIRST_VNI: u32 = 4096;
/// The largest 24-bit VNI.
pub const LAST_VNI: u32 = (1 << 24) - 1;
/// `swarm init` defaults: the pool overlay subnets are carved from, and their size.
pub const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";
pub const DEFAULT_SUBNET_SIZE: u8 = 24;

/// What the orchestrator decided in one pass, committed as one entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// New tasks, or tasks whose node, desired state or status the orchestrator changes.
    pub upsert_tasks: Vec<Task>,
    /// Tasks dropped from history (beyond the retention limit, or of removed services).
    pub delete_tasks: Vec<String>,
    /// Rolling-update progress per service ID (`None` clears it).
    pub update_status: Vec<(String, Option<UpdateStatus>)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.upsert_tasks.is_empty() && self.delete_tasks.is_empty() && self.update_status.is_empty()
    }
}

/// A Raft log entry's payload: a command and the proposer's clock.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Proposal {
    pub at: DateTime<Utc>,
    pub command: Command,
}

impl Proposal {
    pub fn now(command: Command) -> Self {
        Proposal { at: Utc::now(), command }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.command.name())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    /// The first entry of a new swarm; `ingress_id` names the `ingress` network it creates.
    InitCluster {
        cluster: ClusterRecord,
        node: NodeRecord,
        #[serde(default)]
        ingress_id: String,
    },
    /// A node presented a valid join token.
    AddNode { node: NodeRecord },
    /// `POST /nodes/{id}/update`.
    UpdateNodeSpec { id: String, version: u64, spec: NodeSpec },
    /// Liveness from the dispatcher; `description` refreshes what the agent reports.
    SetNodeStatus { id: String, status: NodeStatus, description: Option<NodeDescription> },
    /// The node joined (`Some`) or left (`None`) the Raft group.
    SetRaftMember { id: String, raft_id: Option<u64>, manager_addr: String },
    /// `DELETE /nodes/{id}`.
    RemoveNode { id: String, force: bool },
    /// `POST /swarm/update`; new tokens are generated by the proposer.
    UpdateCluster { version: u64, spec: SwarmSpec, worker_token: Option<String>, manager_token: Option<String> },
    /// `swarm init --force-new-cluster`: the survivor re-proposes everything it had.
    Restore { state: Box<ClusterState> },
    /// `POST /services/create`; the proposer chose the ID and checked the name is free.
    CreateService { service: Box<Service> },
    /// `POST /services/{id}/update`; the current spec becomes `PreviousSpec`.
    UpdateService { id: String, version: u64, spec: Box<ServiceSpec>, endpoint: Endpoint },
    /// `POST /services/{id}/update?rollback=previous`: back to `PreviousSpec`. `version` is
    /// `None` when the orchestrator rolls back a failed update on its own.
    RollbackService { id: String, version: Option<u64>, endpoint: Option<Endpoint> },
    /// `DELETE /services/{id}`; the orchestrator then shuts its tasks down.
    RemoveService { id: String },
    /// The orchestrator's decisions.
    ApplyPlan { plan: Box<Plan> },
    /// Task status reported by the agents; a state never moves backwards.
    UpdateTaskStatus { updates: Vec<(String, TaskStatus)> },
    /// `POST /networks/create`: the proposer chose the ID and validated the request; the VNI and
    /// (unless given) the subnet are chosen when the entry is applied.
    CreateNetwork { network: Box<Network> },
    /// `DELETE /networks/{id}`.
    RemoveNetwork { id: String },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "InitCluster",
            Command::AddNode { .. } => "AddNode",
            Command::UpdateNodeSpec { .. } => "UpdateNodeSpec",
            Command::SetNodeStatus { .. } => "SetNodeStatus",
            Command::SetRaftMember { .. } => "SetRaftMember",
            Command::RemoveNode { .. } => "RemoveNode",
            Command::UpdateCluster { .. } => "UpdateCluster",
            Command::Restore { .. } => "Restore",
            Command::CreateService { .. } => "CreateService",
            Command::UpdateService { .. } => "UpdateService",
            Command::RollbackService { .. } => "RollbackService",
            Command::RemoveService { .. } => "RemoveService",
            Command::ApplyPlan { .. } => "ApplyPlan",
            Command::UpdateTaskStatus { .. } => "UpdateTaskStatus",
            Command::CreateNetwork { .. } => "CreateNetwork",
            Command::RemoveNetwork { .. } => "RemoveNetwork",
        }
    }
}

/// The result of applying one entry, returned to the proposer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CommandResponse(pub ApiResult<()>);

impl ClusterState {
    /// Applies a committed entry at log `index`. Errors leave the state unchanged.
    pub fn apply(&mut self, index: u64, proposal: &Proposal) -> ApiResult<()> {
        let at = proposal.at;
        match &proposal.command {
            Command::InitCluster { cluster, node, ingress_id } => {
                let mut cluster = cluster.clone();
                cluster.swarm.version = Version { index };
                self.cluster = Some(cluster);
                self.insert_node(index, at, node.clone());
                if !ingress_id.is_empty() {
                    self.create_network(index, at, ingress_network(ingress_id, at))?;
                }
                Ok(())
            }
            Command::AddNode { node } => {
                if self.removed_nodes.contains(&node.node.id) {
                    return Err(ApiError::invalid(format!("node {} was removed from the swarm", node.node.id)));
                }
                self.insert_node(index, at, node.clone());
                Ok(())
            }
            Command::UpdateNodeSpec { id, version, spec } => {
                let managers = self.manager_count();
                let record = self.nodes.get_mut(id).ok_or_else(|| ApiError::node_not_found(id))?;
                if record.node.version.index != *version {
                    return Err(ApiError::out_of_sequence());
                }
                if record.node.spec.role == NodeRole::Manager && spec.role == NodeRole::Worker && managers <= 1 {
                    return Err(ApiError::failed_precondition("attempting to demote the last manager of the swarm"));
                }
                record.node.spec = spec.clone();
                touch(&mut record.node, index, at);
                Ok(())
            }
            Command::SetNodeStatus { id, status, description } => {
                let record = self.nodes.get_mut(id).ok_or_else(|| ApiError::node_not_found(id))?;
                record.node.status = status.clone();
                if let Some(description) = description {
                    record.node.description = description.clone();
                }
                touch(&mut record.node, index, at);
                Ok(())
            }
            Command::SetRaftMember { id, raft_id, manager_addr } => {
                let record = self.nodes.get_mut(id).ok_or_else(|| ApiError::node_not_found(id))?;
                record.raft_id = *raft_id;
                if !manager_addr.is_empty() {
                    record.manager_addr = manager_addr.clone();
                }
                touch(&mut record.node, index, at);
                Ok(())
            }
            Command::RemoveNode { id, force } => {
                let record = self.nodes.get(id).ok_or_else(|| ApiError::node_not_found(id))?;
                if record.node.spec.role == NodeRole::Manager || record.raft_id.is_some() {
                    return Err(ApiError::failed_precondition(format!(
                        "node {id} is a cluster manager and is a member of the raft cluster. It must be demoted to \
                         worker before removal"
                    )));
                }
                if !force && record.node.status.state != NodeState::Down {
                    return Err(ApiError::failed_precondition(format!("node {id} is not down and can't be removed")));
                }
                self.nodes.remove(id);
                self.removed_nodes.insert(id.clone());
                let owner = ipam::node_owner(id);
                for record in self.networks.values_mut() {
                    record.pool.release_owner(&owner, at);
                }
                Ok(())
            }
            Command::UpdateCluster { version, spec, worker_token, manager_token } => {
                let cluster = self.cluster.as_mut().ok_or_else(ApiError::not_in_swarm)?;
                if cluster.swarm.version.index != *version {
                    return Err(ApiError::out_of_sequence());
                }
                cluster.swarm.spec = spec.clone();
                if let Some(token) = worker_token {
                    cluster.swarm.join_tokens.worker = token.clone();
                }
                if let Some(token) = manager_token {
                    cluster.swarm.join_tokens.manager = token.clone();
                }
                cluster.swarm.version = Version { index };
                cluster.swarm.updated_at = at;
                Ok(())
            }
            Command::Restore { state } => {
                *self = (**state).clone();
                Ok(())
            }
            Command::CreateService { service } => {
                let name = &service.spec.name;
                if self.services.values().any(|s| s.spec.name == *name) {
                    return Err(ApiError::new(
                        crate::error::ErrorKind::Conflict,
                        format!("rpc error: code = AlreadyExists desc = service {name} already exists"),
                    ));
                }
                let mut service = (**service).clone();
                let (vips, changed) =
                    plan_vips(&self.networks, &service.id, &service.spec, &service.endpoint, &[], at)?;
                service.endpoint.virtual_ips = vips;
                self.networks.extend(changed);
                service.version = Version { index };
                service.created_at = at;
                service.updated_at = at;
                self.services.insert(service.id.clone(), service);
                Ok(())
            }
            Command::UpdateService { id, version, spec, endpoint } => {
                let name_taken = self.services.values().any(|s| s.id != *id && s.spec.name == spec.name);
                let service = self.services.get_mut(id).ok_or_else(|| service_not_found(id))?;
                if service.version.index != *version {
                    return Err(ApiError::out_of_sequence());
                }
                if name_taken {
                    return Err(ApiError::invalid(format!(
                        "rpc error: code = AlreadyExists desc = service {} already exists",
                        spec.name
                    )));
                }
                let (vips, changed) = plan_vips(&self.networks, id, spec, endpoint, &service.endpoint.virtual_ips, at)?;
                self.networks.extend(changed);
                service.previous_spec = Some(std::mem::replace(&mut service.spec, (**spec).clone()));
                service.endpoint = Endpoint { virtual_ips: vips, ..endpoint.clone() };
                service.update_status = None;
                service.version = Version { index };
                service.updated_at = at;
                Ok(())
            }
            Command::RollbackService { id, version, endpoint } => {
                let service = self.services.get_mut(id).ok_or_else(|| service_not_found(id))?;
                if version.is_some_and(|v| v != service.version.index) {
                    return Err(ApiError::out_of_sequence());
                }
                // An automatic rollback applies once, to the update the orchestrator marked for it;
                // a retried or re-sent one must not swap the failed spec back in.
                let marked = service
                    .update_status
                    .as_ref()
                    .filter(|u| u.state == UpdateState::RollbackStarted && u.started_at.is_none());
                let automatic_message = marked.map(|u| u.message.clone());
                if version.is_none() && marked.is_none() {
                    return Ok(());
                }
                let previous = service.previous_spec.clone().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "rpc error: code = FailedPrecondition desc = service {id} does not have a previous spec"
                    ))
                })?;
                let new_endpoint = endpoint.clone().unwrap_or_else(|| service.endpoint.clone());
                let (vips, changed) =
                    plan_vips(&self.networks, id, &previous, &new_endpoint, &service.endpoint.virtual_ips, at)?;
                self.networks.extend(changed);
                service.previous_spec = Some(std::mem::replace(&mut service.spec, previous));
                service.endpoint = Endpoint { virtual_ips: vips, ..new_endpoint };
                // A rollback is an update to the previous spec, tracked as such (Docker's states).
                service.update_status = Some(UpdateStatus {
                    state: UpdateState::RollbackStarted,
                    started_at: Some(at),
                    completed_at: None,
                    message: match automatic_message {
                        Some(message) if version.is_none() && !message.is_empty() => message,
                        _ if version.is_some() => "manually requested rollback".into(),
                        _ => "update rolled back due to failure or early termination of task".into(),
                    },
                });
                service.version = Version { index };
                service.updated_at = at;
                Ok(())
            }
            Command::RemoveService { id } => {
                let service = self.services.remove(id).ok_or_else(|| service_not_found(id))?;
                let owner = ipam::vip_owner(id);
                for vip in &service.endpoint.virtual_ips {
                    if let (Some(record), Some(ip)) = (self.networks.get_mut(&vip.network_id), address_part(&vip.addr))
                    {
                        record.pool.release(ip, &owner, at);
                    }
                }
                Ok(())
            }
            Command::ApplyPlan { plan } => {
                for task in &plan.upsert_tasks {
                    let mut task = task.clone();
                    if let Some(existing) = self.tasks.get(&task.id) {
                        task.created_at = existing.created_at;
                        // Addresses are the store's business: a plan never changes them.
                        task.networks_attachments = existing.networks_attachments.clone();
                        let was_terminal = existing.status.state.is_terminal();
                        // An agent's report committed meanwhile is never undone by the plan: a later
                        // state wins, and in the same state the newer report (its PID, its message).
                        let existing_newer = existing.status.state > task.status.state
                            || (existing.status.state == task.status.state
                                && existing.status.timestamp > task.status.timestamp);
                        if existing_newer {
                            task.status = existing.status.clone();
                        }
                        if existing.desired_state > task.desired_state {
                            task.desired_state = existing.desired_state;
                        }
                        if task.status.state.is_terminal() && !was_terminal {
                            release_task_addresses(&mut self.networks, &task, at);
                        }
                    } else {
                        task.created_at = at;
                        task.networks_attachments = Vec::new();
                        if !task.status.state.is_terminal() {
                            self.attach_task(&mut task, at);
                        }
                    }
                    task.version = Version { index };
                    task.updated_at = at;
                    self.tasks.insert(task.id.clone(), task);
                }
                for id in &plan.delete_tasks {
                    if let Some(task) = self.tasks.remove(id) {
                        release_task_addresses(&mut self.networks, &task, at);
                    }
                }
                for (id, status) in &plan.update_status {
                    if let Some(service) = self.services.get_mut(id) {
                        service.update_status = status.clone();
                        service.version = Version { index };
                        service.updated_at = at;
                    }
                }
                Ok(())
            }
            Command::UpdateTaskStatus { updates } => {
                for (id, status) in updates {
                    let Some(task) = self.tasks.get_mut(id) else { continue };
                    // States only move forward (swarmkit); a late or duplicate report is ignored.
                    if status.state < task.status.state {
                        continue;
                    }
                    let now_terminal = status.state.is_terminal() && !task.status.state.is_terminal();
                    task.status = status.clone();
                    task.version = Version { index };
                    task.updated_at = at;
                    if now_terminal {
                        release_task_addresses(&mut self.networks, task, at);
                    }
                }
                Ok(())
            }
            Command::CreateNetwork { network } => self.create_network(index, at, (**network).clone()),
            Command::RemoveNetwork { id } => self.remove_network(id),
        }
    }

    fn insert_node(&mut self, index: u64, at: DateTime<Utc>, mut record: NodeRecord) {
        if let Some(existing) = self.nodes.get(&record.node.id) {
            record.node.created_at = existing.node.created_at;
        } else {
            record.node.created_at = at;
        }
        touch(&mut record.node, index, at);
        let id = record.node.id.clone();
        self.nodes.insert(id.clone(), record);
        self.allocate_node_address(&id, at);
    }

    /// Gives a node its address on the ingress network (the routing mesh's per-node address),
    /// unless it has one. Nodes need no address on other networks: Shoal balances in eBPF, not
    /// in a per-node load-balancer namespace.
    fn allocate_node_address(&mut self, node_id: &str, at: DateTime<Utc>) {
        let owner = ipam::node_owner(node_id);
        if let Some(record) = self.networks.values_mut().find(|r| r.network.ingress) {
            if record.pool.address_of(&owner).is_none() {
                // An exhausted ingress subnet leaves the node without one; its routing mesh
                // then forwards without a source address of its own on ingress.
                let _ = record.pool.allocate(&owner, at);
            }
        }
    }

    /// The ingress network, if there is one.
    pub fn ingress_network(&self) -> Option<&NetworkRecord> {
        self.networks.values().find(|r| r.network.ingress)
    }

    /// Finds a network the way `docker network inspect` does: full ID, then name, then a unique
    /// ID prefix.
    pub fn find_network(&self, key: &str) -> ApiResult<&NetworkRecord> {
        if let Some(record) = self.networks.get(key) {
            return Ok(record);
        }
        if let Some(record) = self.networks.values().find(|r| r.network.name == key) {
            return Ok(record);
        }
        let matches: Vec<&NetworkRecord> = self.networks.values().filter(|r| r.network.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(network_not_found(key)),
            many => Err(ApiError::invalid(format!("network {key} is ambiguous ({} matches found)", many.len()))),
        }
    }

    /// The cluster's address pools and subnet size (`swarm init --default-addr-pool`).
    fn address_pools(&self) -> (Vec<Cidr>, u8) {
        let swarm = self.cluster.as_ref().map(|c| &c.swarm);
        let pools: Vec<Cidr> =
            swarm.map(|s| s.default_addr_pool.iter().filter_map(|p| Cidr::parse(p).ok()).collect()).unwrap_or_default();
        let pools = if pools.is_empty() { vec![Cidr::parse(DEFAULT_ADDR_POOL).expect("valid default")] } else { pools };
        let size = swarm.map(|s| s.subnet_size).filter(|s| (1..=32).contains(s)).unwrap_or(DEFAULT_SUBNET_SIZE as u32);
        (pools, size as u8)
    }

    /// Creates a network: re-checks the rules that depend on the state (name, ingress, overlap),
    /// then picks the VNI and, unless given, the subnet.
    fn create_network(&mut self, index: u64, at: DateTime<Utc>, mut network: Network) -> ApiResult<()> {
        if self.networks.values().any(|r| r.network.name == network.name) {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("network with name {} already exists", network.name),
            ));
        }
        if self.networks.contains_key(&network.id) {
            return Err(ApiError::new(ErrorKind::Conflict, format!("network {} already exists", network.id)));
        }
        if network.ingress {
            if let Some(existing) = self.ingress_network() {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "rpc error: code = AlreadyExists desc = ingress network ({}) is already present",
                        existing.network.id
                    ),
                ));
            }
        }
        let taken: Vec<Cidr> = self.networks.values().map(|r| r.pool.subnet).collect();
        let requested = network.ipam.config.first().cloned().unwrap_or_default();
        let parse = |s: &str| Cidr::parse(s).map_err(|e| ApiError::invalid(e.to_string()));
        let subnet = if requested.subnet.is_empty() {
            let (pools, size) = self.address_pools();
            pools
                .iter()
                .flat_map(|pool| pool.blocks(size))
                .find(|block| !taken.iter().any(|t| t.overlaps(block)))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to                          assign to the network",
                    )
                })?
        } else {
            let subnet = parse(&requested.subnet)?;
            if taken.iter().any(|t| t.overlaps(&subnet)) {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "invalid pool request: Pool overlaps with other one on this address space",
                ));
            }
            subnet
        };
        let range = if requested.ip_range.is_empty() { subnet } else { parse(&requested.ip_range)? };
        let gateway = if requested.gateway.is_empty() {
            subnet.first_host()
        } else {
            requested.gateway.parse::<Ipv4Addr>().map_err(|_| ApiError::invalid("invalid gateway address"))?
        };
        let used: BTreeSet<u32> = self.networks.values().map(|r| r.vni).collect();
        let vni = (FIRST_VNI..=LAST_VNI)
            .find(|v| !used.contains(v))
            .ok_or_else(|| ApiError::internal("no VXLAN network identifier is free"))?;
        let mut pool = Pool::new(subnet, range, gateway);
        for aux in requested.auxiliary_addresses.values() {
            if let Ok(ip) = aux.parse::<Ipv4Addr>() {
                pool.reserve(ip, "aux");
            }
        }
        network.ipam.config = vec![IpamConfig {
            subnet: subnet.to_string(),
            ip_range: requested.ip_range.clone(),
            gateway: gateway.to_string(),
            auxiliary_addresses: requested.auxiliary_addresses.clone(),
        }];
        network.options.insert(VXLAN_ID_OPTION.into(), vni.to_string());
        network.scope = "swarm".into();
        network.driver = "overlay".into();
        network.created = at;
        network.peers.clear();
        network.version = Version { index };
        let ingress = network.ingress;
        let id = network.id.clone();
        self.networks.insert(id, NetworkRecord { network, vni, pool });
        if ingress {
            let nodes: Vec<String> = self.nodes.keys().cloned().collect();
            for node in nodes {
                self.allocate_node_address(&node, at);
            }
        }
        Ok(())
    }

    /// Removes a network nothing uses (swarmkit's rules and messages).
    fn remove_network(&mut self, id: &str) -> ApiResult<()> {
        let record = self.networks.get(id).ok_or_else(|| network_not_found(id))?;
        for service in self.services.values() {
            if service_networks(&self.networks, &service.spec.task_template.networks, &service.endpoint)
                .iter()
                .any(|n| n == id)
            {
                return Err(ApiError::failed_precondition(if record.network.ingress {
                    format!("ingress network cannot be removed because service {} depends on it", service.id)
                } else {
                    format!("network {id} is in use by service {}", service.id)
                }));
            }
        }
        let task = self
            .tasks
            .values()
            .find(|t| !t.status.state.is_terminal() && t.networks_attachments.iter().any(|a| a.network.id == id));
        if let Some(task) = task {
            return Err(ApiError::failed_precondition(format!("network {id} is in use by task {}", task.id)));
        }
        self.networks.remove(id);
        Ok(())
    }

    /// Gives a new task one address on each network it joins and fills its
    /// `NetworksAttachments`; an exhausted pool rejects the task (the orchestrator replaces it).
    fn attach_task(&mut self, task: &mut Task, at: DateTime<Utc>) {
        let endpoint = self.services.get(&task.service_id).map(|s| s.endpoint.clone()).unwrap_or_default();
        let aliases: BTreeMap<&str, &Vec<String>> =
            task.spec.networks.iter().map(|n| (n.target.as_str(), &n.aliases)).collect();
        let mut attachments = Vec::new();
        for network_id in service_networks(&self.networks, &task.spec.networks, &endpoint) {
            let Some(record) = self.networks.get_mut(&network_id) else { continue };
            let Some(ip) = record.pool.allocate(&task.id, at) else {
                let name = record.network.name.clone();
                release_attachments(&mut self.networks, &task.id, &attachments, at);
                task.status = TaskStatus {
                    timestamp: at,
                    state: TaskState::Rejected,
                    message: "allocating network addresses failed".into(),
                    err: format!("no available IPv4 addresses on network {name}"),
                    ..Default::default()
                };
                return;
            };
            attachments.push(NetworkAttachment {
                network: attached_network(record),
                addresses: vec![record.pool.with_prefix(ip)],
                aliases: aliases.get(network_id.as_str()).map(|a| (*a).clone()).unwrap_or_default(),
            });
        }
        task.networks_attachments = attachments;
    }

    /// Nodes whose desired role is manager.
    pub fn manager_count(&self) -> usize {
        self.nodes.values().filter(|n| n.node.spec.role == NodeRole::Manager).count()
    }

    /// Finds a node the way `docker node inspect` does: full ID, then name or hostname, then a
    /// unique ID prefix.
    pub fn find_node(&self, key: &str) -> ApiResult<&NodeRecord> {
        if let Some(record) = self.nodes.get(key) {
            return Ok(record);
        }
        let by_name: Vec<&NodeRecord> =
            self.nodes.values().filter(|n| n.node.spec.name.as_deref() == Some(key) || n.hostname() == key).collect();
        if by_name.len() == 1 {
            return Ok(by_name[0]);
        }
        if by_name.len() > 1 {
            return Err(ApiError::invalid(format!("node {key} is ambiguous ({} matches found)", by_name.len())));
        }
        let by_prefix: Vec<&NodeRecord> = self.nodes.values().filter(|n| n.node.id.starts_with(key)).collect();
        match by_prefix.len() {
            1 => Ok(by_prefix[0]),
            0 => Err(ApiError::node_not_found(key)),
            n => Err(ApiError::invalid(format!("node {key} is ambiguous ({n} matches found)"))),
        }
    }

    /// The node that holds Raft ID `raft_id`.
    pub fn node_by_raft_id(&self, raft_id: u64) -> Option<&NodeRecord> {
        self.nodes.values().find(|n| n.raft_id == Some(raft_id))
    }
}

/// The `ingress` network `swarm init` creates (subnet and VNI are chosen when applied).
fn ingress_network(id: &str, at: DateTime<Utc>) -> Network {
    Network {
        name: crate::objects::network::INGRESS_NETWORK.into(),
        id: id.into(),
        created: at,
        scope: "swarm".into(),
        driver: "overlay".into(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: Default::default(),
        internal: false,
        attachable: false,
        ingress: true,
        config_from: Default::default(),
        config_only: false,
        containers: Default::default(),
        options: Default::default(),
        labels: Default::default(),
        peers: Vec::new(),
        version: Version::default(),
    }
}

fn network_not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("network {key} not found"))
}

/// The networks a service's tasks join, in order: ingress when it publishes ports, then its own
/// networks (stored as IDs). Networks that no longer exist are left out. Host-mode ports join
/// ingress too: the node's mesh answers them with its local tasks only, reached on that network.
pub fn service_networks(
    networks: &BTreeMap<String, NetworkRecord>,
    targets: &[NetworkAttachmentConfig],
    endpoint: &Endpoint,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !endpoint.ports.is_empty() {
        if let Some(ingress) = networks.values().find(|r| r.network.ingress) {
            out.push(ingress.network.id.clone());
        }
    }
    for attachment in targets {
        if networks.contains_key(&attachment.target) && !out.contains(&attachment.target) {
            out.push(attachment.target.clone());
        }
    }
    out
}

/// The VIPs a service should have after a create or update: one per network in `vip` mode (kept
/// ones keep their address), none in `dnsrr`. Returns the VIPs and the changed network records,
/// so a failure changes nothing.
fn plan_vips(
    networks: &BTreeMap<String, NetworkRecord>,
    service_id: &str,
    spec: &ServiceSpec,
    endpoint: &Endpoint,
    current: &[VirtualIp],
    at: DateTime<Utc>,
) -> ApiResult<(Vec<VirtualIp>, BTreeMap<String, NetworkRecord>)> {
    for attachment in &spec.task_template.networks {
        if !networks.contains_key(&attachment.target) {
            return Err(network_not_found(&attachment.target));
        }
    }
    let owner = ipam::vip_owner(service_id);
    // The mode comes from the spec: an automatic rollback keeps the resolved endpoint as it was.
    let mode = spec.endpoint_spec.as_ref().map(|e| e.mode).unwrap_or_default();
    let wanted = if mode == EndpointMode::Vip {
        service_networks(networks, &spec.task_template.networks, endpoint)
    } else {
        Vec::new()
    };
    let mut changed: BTreeMap<String, NetworkRecord> = BTreeMap::new();
    for vip in current.iter().filter(|v| !wanted.contains(&v.network_id)) {
        let Some(record) = networks.get(&vip.network_id) else { continue };
        let record = changed.entry(vip.network_id.clone()).or_insert_with(|| record.clone());
        if let Some(ip) = address_part(&vip.addr) {
            record.pool.release(ip, &owner, at);
        }
    }
    let mut vips = Vec::new();
    for network_id in wanted {
        let kept = current.iter().find(|v| v.network_id == network_id).and_then(|v| address_part(&v.addr));
        let record = changed.entry(network_id.clone()).or_insert_with(|| networks[&network_id].clone());
        let ip = match kept {
            Some(ip) if record.pool.owner(ip) == Some(owner.as_str()) => ip,
            _ => record.pool.allocate(&owner, at).ok_or_else(|| {
                ApiError::invalid(format!(
                    "rpc error: code = ResourceExhausted desc = could not find an available IP while allocating VIP                      on network {}",
                    record.network.name
                ))
            })?,
        };
        vips.push(VirtualIp { network_id, addr: record.pool.with_prefix(ip) });
    }
    Ok((vips, changed))
}

/// The network part of a task's attachment.
fn attached_network(record: &NetworkRecord) -> AttachedNetwork {
    AttachedNetwork {
        id: record.network.id.clone(),
        spec: AttachedNetworkSpec {
            name: record.network.name.clone(),
            internal: record.network.internal,
            ingress: record.network.ingress,
        },
        driver_state: DriverState {
            name: "overlay".into(),
            options: BTreeMap::from([(VXLAN_ID_OPTION.to_string(), record.vni.to_string())]),
        },
    }
}

/// The IP of `10.0.1.3/24`.
pub fn address_part(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}

fn release_attachments(
    networks: &mut BTreeMap<String, NetworkRecord>,
    task_id: &str,
    attachments: &[NetworkAttachment],
    at: DateTime<Utc>,
) {
    for attachment in attachments {
        let Some(record) = networks.get_mut(&attachment.network.id) else { continue };
        for ip in attachment.addresses.iter().filter_map(|a| address_part(a)) {
            record.pool.release(ip, task_id, at);
        }
    }
}

/// Frees a task's addresses (it ended or was deleted); the owner check makes this idempotent.
fn release_task_addresses(networks: &mut BTreeMap<String, NetworkRecord>, task: &Task, at: DateTime<Utc>) {
    release_attachments(networks, &task.id, &task.networks_attachments, at);
}

fn service_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("service {id} not found"))
}

fn touch(node: &mut Node, index: u64, at: DateTime<Utc>) {
    node.version = Version { index };
    node.updated_at = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::NodeAvailability;

    fn node(id: &str, hostname: &str, role: NodeRole, state: NodeState) -> NodeRecord {
        NodeRecord {
            node: Node {
                id: id.into(),
                version: Version::default(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
                spec: NodeSpec { role, ..Default::default() },
                description: NodeDescription { hostname: hostname.into(), ..Default::default() },
                status: NodeStatus { state, ..Default::default() },
                manager_status: None,
            },
            raft_id: (role == NodeRole::Manager).then_some(1),
            manager_addr: String::new(),
        }
    }

    fn state_with(nodes: &[NodeRecord]) -> ClusterState {
        let mut state = ClusterState::default();
        for (i, n) in nodes.iter().enumerate() {
            state.apply(i as u64 + 1, &Proposal::now(Command::AddNode { node: n.clone() })).unwrap();
        }
        state
    }

    #[test]
    fn update_with_stale_version_is_out_of_sequence_and_changes_nothing() {
        let mut state = state_with(&[node("n1", "h1", NodeRole::Manager, NodeState::Ready)]);
        let before = state.clone();
        let spec = NodeSpec { availability: NodeAvailability::Drain, role: NodeRole::Manager, ..Default::default() };
        let err =
            state.apply(5, &Proposal::now(Command::UpdateNodeSpec { id: "n1".into(), version: 99, spec })).unwrap_err();
        assert_eq!(err.message, "rpc error: code = Unknown desc = update out of sequence");
        assert_eq!(state, before);
    }

    #[test]
    fn update_with_current_version_bumps_version_to_the_entry_index() {
        let mut state = state_with(&[node("n1", "h1", NodeRole::Manager, NodeState::Ready)]);
        let spec = NodeSpec { availability: NodeAvailability::Drain, role: NodeRole::Manager, ..Default::default() };
        state.apply(5, &Proposal::now(Command::UpdateNodeSpec { id: "n1".into(), version: 1, spec })).unwrap();
        assert_eq!(state.nodes["n1"].node.version.index, 5);
        assert_eq!(state.nodes["n1"].node.spec.availability, NodeAvailability::Drain);
    }

    #[test]
    fn node_rm_rules_follow_docker() {
        let mut state = state_with(&[
            node("m1", "h1", NodeRole::Manager, NodeState::Ready),
            node("w1", "h2", NodeRole::Worker, NodeState::Ready),
            node("w2", "h3", NodeRole::Worker, NodeState::Down),
        ]);
        let rm = |id: &str, force| Proposal::now(Command::RemoveNode { id: id.into(), force });
        let err = state.apply(10, &rm("m1", true)).unwrap_err();
        assert!(err.message.contains("must be demoted to worker before removal"), "{}", err.message);
        let err = state.apply(11, &rm("w1", false)).unwrap_err();
        assert_eq!(err.message, "rpc error: code = FailedPrecondition desc = node w1 is not down and can't be removed");
        state.apply(12, &rm("w2", false)).unwrap();
        state.apply(13, &rm("w1", true)).unwrap();
        assert_eq!(state.nodes.keys().collect::<Vec<_>>(), vec!["m1"]);
        let err = state
            .apply(14, &Proposal::now(Command::AddNode { node: node("w1", "h2", NodeRole::Worker, NodeState::Ready) }));
        assert!(err.is_err(), "a removed node must not come back");
    }

    #[test]
    fn the_last_manager_cannot_be_demoted() {
        let mut state = state_with(&[node("m1", "h1", NodeRole::Manager, NodeState::Ready)]);
        let spec = NodeSpec { role: NodeRole::Worker, ..Default::default() };
        let err =
            state.apply(3, &Proposal::now(Command::UpdateNodeSpec { id: "m1".into(), version: 1, spec })).unwrap_err();
        assert!(err.message.contains("last manager"));
    }

    #[test]
    fn find_node_by_id_hostname_and_unique_prefix() {
        let state = state_with(&[
            node("abc111", "alpha", NodeRole::Manager, NodeState::Ready),
            node("abd222", "beta", NodeRole::Worker, NodeState::Ready),
        ]);
        assert_eq!(state.find_node("abc111").unwrap().node.id, "abc111");
        assert_eq!(state.find_node("beta").unwrap().node.id, "abd222");
        assert_eq!(state.find_node("abd").unwrap().node.id, "abd222");
        assert!(state.find_node("ab").unwrap_err().message.contains("ambiguous"));
        assert_eq!(state.find_node("zzz").unwrap_err().message, "node zzz not found");
    }
}

#[cfg(test)]
mod service_tests {
    use super::*;
    use crate::objects::service::{TaskSpec, TaskState};

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            version: Version::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            name: String::new(),
            labels: Default::default(),
            spec: TaskSpec::default(),
            service_id: "s".into(),
            slot: 1,
            node_id: "n".into(),
            status: TaskStatus { timestamp: Utc::now(), state, ..Default::default() },
            desired_state: TaskState::Running,
            networks_attachments: Vec::new(),
        }
    }

    #[test]
    fn task_states_only_move_forward() {
        let mut state = ClusterState::default();
        let plan = Plan { upsert_tasks: vec![task("t1", TaskState::Assigned)], ..Default::default() };
        state.apply(1, &Proposal::now(Command::ApplyPlan { plan: Box::new(plan) })).unwrap();
        let report = |s| (String::from("t1"), TaskStatus { timestamp: Utc::now(), state: s, ..Default::default() });
        state
            .apply(2, &Proposal::now(Command::UpdateTaskStatus { updates: vec![report(TaskState::Running)] }))
            .unwrap();
        state
            .apply(3, &Proposal::now(Command::UpdateTaskStatus { updates: vec![report(TaskState::Starting)] }))
            .unwrap();
        assert_eq!(state.tasks["t1"].status.state, TaskState::Running);
        // A plan computed before the agent's report cannot move the task back either.
        let stale = Plan { upsert_tasks: vec![task("t1", TaskState::Assigned)], ..Default::default() };
        state.apply(4, &Proposal::now(Command::ApplyPlan { plan: Box::new(stale) })).unwrap();
        assert_eq!(state.tasks["t1"].status.state, TaskState::Running);
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;
    use crate::objects::service::{EndpointSpec, NetworkAttachmentConfig, PortConfig, TaskSpec};
    use crate::orchestrator::testkit::{at, node, replicated, Sim};

    fn network(id: &str, name: &str, subnet: &str) -> Network {
        let mut network = ingress_network(id, at(0));
        network.name = name.into();
        network.ingress = false;
        if !subnet.is_empty() {
            network.ipam.config = vec![IpamConfig { subnet: subnet.into(), ..Default::default() }];
        }
        network
    }

    fn create(sim: &mut Sim, id: &str, name: &str, subnet: &str) -> ApiResult<()> {
        try_apply(sim, Command::CreateNetwork { network: Box::new(network(id, name, subnet)) })
    }

    fn try_apply(sim: &mut Sim, command: Command) -> ApiResult<()> {
        sim.index += 1;
        sim.state.apply(sim.index, &Proposal { at: sim.now, command })
    }

    /// A cluster as `swarm init` leaves it: one node and the ingress network.
    fn initialized() -> Sim {
        let mut sim = Sim::new(vec![]);
        let cluster = sim.state.cluster.clone().unwrap();
        sim.apply(Command::InitCluster { cluster, node: node("n1", "h1"), ingress_id: "ingressid".into() });
        sim
    }

    fn on_networks(name: &str, networks: &[&str], ports: &[u32]) -> Service {
        let mut service = replicated(name, 1);
        service.spec.task_template.networks =
            networks.iter().map(|n| NetworkAttachmentConfig { target: n.to_string(), ..Default::default() }).collect();
        let ports: Vec<PortConfig> =
            ports.iter().map(|p| PortConfig { target_port: 80, published_port: *p, ..Default::default() }).collect();
        service.spec.endpoint_spec = Some(EndpointSpec { ports: ports.clone(), ..Default::default() });
        service.endpoint = Endpoint { spec: service.spec.endpoint_spec.clone().unwrap(), ports, virtual_ips: vec![] };
        service
    }

    fn vips(sim: &Sim, service: &str) -> Vec<(String, String)> {
        sim.state.services[service]
            .endpoint
            .virtual_ips
            .iter()
            .map(|v| (v.network_id.clone(), v.addr.clone()))
            .collect()
    }

    #[test]
    fn init_creates_ingress_and_gives_every_node_an_ingress_address() {
        let mut sim = initialized();
        let ingress = &sim.state.networks["ingressid"];
        assert!(ingress.network.ingress);
        assert_eq!(ingress.network.name, "ingress");
        assert_eq!(ingress.pool.subnet.to_string(), "10.0.0.0/24");
        assert_eq!(ingress.network.ipam.config[0].gateway, "10.0.0.1");
        assert_eq!(ingress.vni, 4096);
        assert_eq!(ingress.network.options[VXLAN_ID_OPTION], "4096");
        assert_eq!(ingress.pool.address_of("node:n1"), Some("10.0.0.2".parse().unwrap()));
        sim.add_node(node("n2", "h2"));
        let ingress = &sim.state.networks["ingressid"];
        assert_eq!(ingress.pool.address_of("node:n2"), Some("10.0.0.3".parse().unwrap()));
        // Re-adding a node (a rejoin) does not cost a second address.
        sim.add_node(node("n2", "h2"));
        assert_eq!(sim.state.networks["ingressid"].pool.allocations().count(), 2);
        sim.set_node_state("n2", crate::objects::NodeState::Down);
        sim.apply(Command::RemoveNode { id: "n2".into(), force: false });
        assert_eq!(sim.state.networks["ingressid"].pool.address_of("node:n2"), None);
    }

    #[test]
    fn networks_get_the_next_free_block_and_unique_vnis() {
        let mut sim = initialized();
        create(&mut sim, "a", "appnet", "").unwrap();
        create(&mut sim, "b", "given", "10.0.2.0/24").unwrap();
        create(&mut sim, "c", "next", "").unwrap();
        let subnet = |id: &str| sim.state.networks[id].pool.subnet.to_string();
        assert_eq!(
            (subnet("a"), subnet("b"), subnet("c")),
            ("10.0.1.0/24".into(), "10.0.2.0/24".into(), "10.0.3.0/24".into())
        );
        let vnis: Vec<u32> = ["ingressid", "a", "b", "c"].iter().map(|id| sim.state.networks[*id].vni).collect();
        assert_eq!(vnis, [4096, 4097, 4098, 4099]);
        // The lowest free VNI is reused once its network is gone.
        try_apply(&mut sim, Command::RemoveNetwork { id: "a".into() }).unwrap();
        create(&mut sim, "d", "again", "").unwrap();
        assert_eq!((sim.state.networks["d"].vni, subnet_of(&sim, "d")), (4097, "10.0.1.0/24".into()));
    }

    fn subnet_of(sim: &Sim, id: &str) -> String {
        sim.state.networks[id].pool.subnet.to_string()
    }

    #[test]
    fn racing_creates_cannot_both_win() {
        let mut sim = initialized();
        create(&mut sim, "a", "appnet", "10.5.0.0/16").unwrap();
        let before = sim.state.clone();
        let err = create(&mut sim, "b", "appnet", "").unwrap_err();
        assert_eq!((err.kind, err.message.as_str()), (ErrorKind::Conflict, "network with name appnet already exists"));
        let err = create(&mut sim, "c", "other", "10.5.3.0/24").unwrap_err();
        assert_eq!(err.message, "invalid pool request: Pool overlaps with other one on this address space");
        let err = create(&mut sim, "d", "other", "10.0.0.0/8").unwrap_err();
        assert!(err.message.contains("Pool overlaps"), "{}", err.message);
        let mut second_ingress = network("e", "ingress2", "");
        second_ingress.ingress = true;
        let err = try_apply(&mut sim, Command::CreateNetwork { network: Box::new(second_ingress) }).unwrap_err();
        assert!(err.message.contains("ingress network (ingressid) is already present"), "{}", err.message);
        assert_eq!(sim.state.networks, before.networks, "failed creates change nothing");
    }

    #[test]
    fn tasks_get_addresses_when_created_and_release_them_when_they_end() {
        let mut sim = initialized();
        create(&mut sim, "net1", "appnet", "").unwrap();
        let web = sim.create(on_networks("web", &["net1"], &[8080]));
        // One VIP on ingress (published port) and one on the service's network.
        assert_eq!(
            vips(&sim, &web),
            [("ingressid".to_string(), "10.0.0.3/24".to_string()), ("net1".into(), "10.0.1.2/24".into())]
        );
        sim.converge();
        let task = sim.tasks_of(&web).into_iter().find(|t| t.status.state == TaskState::Running).unwrap();
        let addresses: Vec<(&str, &str)> =
            task.networks_attachments.iter().map(|a| (a.network.spec.name.as_str(), a.addresses[0].as_str())).collect();
        assert_eq!(addresses, [("ingress", "10.0.0.4/24"), ("appnet", "10.0.1.3/24")]);
        let attachment = &task.networks_attachments[1];
        assert_eq!(attachment.network.id, "net1");
        assert_eq!(attachment.network.driver_state.options[VXLAN_ID_OPTION], "4097");
        assert!(attachment.network.spec.ingress == false && task.networks_attachments[0].network.spec.ingress);
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["NetworksAttachments"][1]["Addresses"][0], "10.0.1.3/24");
        assert_eq!(json["NetworksAttachments"][1]["Network"]["Spec"]["Name"], "appnet");
        // The task ends: its addresses are free (in quarantine), the VIPs stay.
        let ended = TaskStatus { timestamp: sim.now, state: TaskState::Failed, ..Default::default() };
        sim.apply(Command::UpdateTaskStatus { updates: vec![(task.id.clone(), ended)] });
        let pool = &sim.state.networks["net1"].pool;
        assert_eq!(pool.owner("10.0.1.3".parse().unwrap()), None);
        assert_eq!(pool.owner("10.0.1.2".parse().unwrap()), Some(ipam::vip_owner(&web).as_str()));
        // Its replacement gets the next address, not the one just released.
        sim.converge();
        let replacement = sim.tasks_of(&web).into_iter().find(|t| t.status.state == TaskState::Running).unwrap();
        assert_eq!(replacement.networks_attachments[1].addresses, ["10.0.1.4/24"]);
    }

    #[test]
    fn vips_follow_the_networks_a_service_is_on() {
        let mut sim = initialized();
        create(&mut sim, "net1", "one", "").unwrap();
        create(&mut sim, "net2", "two", "").unwrap();
        let svc = sim.create(on_networks("api", &["net1"], &[]));
        assert_eq!(vips(&sim, &svc), [("net1".to_string(), "10.0.1.2/24".to_string())]);
        sim.update(&svc, |s| {
            s.task_template.networks.push(NetworkAttachmentConfig { target: "net2".into(), ..Default::default() })
        });
        assert_eq!(
            vips(&sim, &svc),
            [("net1".to_string(), "10.0.1.2/24".into()), ("net2".into(), "10.0.2.2/24".into())]
        );
        sim.update(&svc, |s| {
            s.task_template.networks.remove(0);
        });
        assert_eq!(vips(&sim, &svc), [("net2".to_string(), "10.0.2.2/24".to_string())]);
        assert_eq!(sim.state.networks["net1"].pool.allocations().count(), 0);
        // dnsrr: no VIP at all.
        let svc_endpoint = sim.state.services[&svc].endpoint.clone();
        let mut spec = sim.state.services[&svc].spec.clone();
        spec.endpoint_spec = Some(EndpointSpec { mode: EndpointMode::Dnsrr, ports: vec![] });
        let endpoint = Endpoint { spec: spec.endpoint_spec.clone().unwrap(), ..svc_endpoint };
        let version = sim.state.services[&svc].version.index;
        sim.apply(Command::UpdateService { id: svc.clone(), version, spec: Box::new(spec), endpoint });
        assert!(vips(&sim, &svc).is_empty());
        // A rollback returns to the previous networks and mode.
        sim.rollback(&svc);
        assert_eq!(vips(&sim, &svc), [("net2".to_string(), "10.0.2.3/24".to_string())]);
        sim.remove_service(&svc);
        assert_eq!(sim.state.networks["net2"].pool.allocations().count(), 0);
    }

    #[test]
    fn a_service_on_a_missing_network_is_refused_in_apply() {
        let mut sim = initialized();
        let before = sim.state.clone();
        let err = try_apply(&mut sim, Command::CreateService { service: Box::new(on_networks("x", &["gone"], &[])) })
            .unwrap_err();
        assert_eq!(err.message, "network gone not found");
        assert_eq!(sim.state.services, before.services);
    }

    #[test]
    fn changing_networks_redeploys_tasks() {
        let mut sim = initialized();
        create(&mut sim, "net1", "one", "").unwrap();
        create(&mut sim, "net2", "two", "").unwrap();
        let svc = sim.create(on_networks("api", &["net1"], &[]));
        sim.converge();
        sim.update(&svc, |s| s.task_template.networks[0].target = "net2".into());
        sim.converge();
        let running: Vec<Task> =
            sim.tasks_of(&svc).into_iter().filter(|t| t.status.state == TaskState::Running).collect();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].networks_attachments[0].network.id, "net2");
        // The old task's address went back to net1's pool.
        assert_eq!(sim.state.networks["net1"].pool.allocations().count(), 0);
    }

    #[test]
    fn networks_in_use_cannot_be_removed() {
        let mut sim = initialized();
        create(&mut sim, "net1", "appnet", "").unwrap();
        let svc = sim.create(on_networks("api", &["net1"], &[8080]));
        sim.converge();
        let err = try_apply(&mut sim, Command::RemoveNetwork { id: "net1".into() }).unwrap_err();
        assert_eq!(
            err.message,
            format!("rpc error: code = FailedPrecondition desc = network net1 is in use by service {svc}")
        );
        let err = try_apply(&mut sim, Command::RemoveNetwork { id: "ingressid".into() }).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service {svc} \
                 depends on it"
            )
        );
        // The service is gone but its task still runs (shutdown not yet reported).
        let task = sim.tasks_of(&svc)[0].id.clone();
        sim.state.services.remove(&svc);
        let err = try_apply(&mut sim, Command::RemoveNetwork { id: "net1".into() }).unwrap_err();
        assert_eq!(
            err.message,
            format!("rpc error: code = FailedPrecondition desc = network net1 is in use by task {task}")
        );
        let ended = TaskStatus { timestamp: sim.now, state: TaskState::Shutdown, ..Default::default() };
        sim.apply(Command::UpdateTaskStatus { updates: vec![(task, ended)] });
        try_apply(&mut sim, Command::RemoveNetwork { id: "net1".into() }).unwrap();
        try_apply(&mut sim, Command::RemoveNetwork { id: "ingressid".into() }).unwrap();
        assert!(sim.state.networks.is_empty());
        let err = try_apply(&mut sim, Command::RemoveNetwork { id: "net1".into() }).unwrap_err();
        assert_eq!(err.message, "network net1 not found");
    }

    #[test]
    fn an_exhausted_pool_rejects_the_task() {
        let mut sim = initialized();
        create(&mut sim, "tiny", "tiny", "10.9.0.0/30").unwrap(); // one usable address: .2
        let svc = sim.create(on_networks("api", &["tiny"], &[])); // the VIP takes it
        assert_eq!(vips(&sim, &svc), [("tiny".to_string(), "10.9.0.2/30".to_string())]);
        let plan = sim.reconcile_once();
        sim.apply(Command::ApplyPlan { plan: Box::new(plan) });
        let task = &sim.tasks_of(&svc)[0];
        assert_eq!(task.status.state, TaskState::Rejected);
        assert_eq!(task.status.err, "no available IPv4 addresses on network tiny");
        assert!(task.networks_attachments.is_empty());
        // A second service cannot even get a VIP, and nothing changes.
        let before = sim.state.clone();
        let err = try_apply(&mut sim, Command::CreateService { service: Box::new(on_networks("b", &["tiny"], &[])) })
            .unwrap_err();
        assert!(err.message.contains("could not find an available IP while allocating VIP"), "{}", err.message);
        assert_eq!(sim.state, before);
    }

    #[test]
    fn allocation_after_a_serde_round_trip_is_identical() {
        // A new leader (or a manager restored from a snapshot) continues exactly where the old one was.
        let mut sim = initialized();
        create(&mut sim, "net1", "appnet", "").unwrap();
        let a = sim.create(on_networks("a", &["net1"], &[8080]));
        sim.converge();
        sim.scale(&a, 3);
        sim.converge();
        let mut restored = sim.state.clone();
        restored = serde_json::from_str(&serde_json::to_string(&restored).unwrap()).unwrap();
        assert_eq!(restored, sim.state);
        let mut other = sim.clone();
        other.state = restored;
        for s in [&mut sim, &mut other] {
            let b = s.create(on_networks("b", &["net1"], &[]));
            s.scale(&a, 5);
            s.converge();
            assert!(!s.tasks_of(&b).is_empty());
        }
        assert_eq!(sim.state.networks, other.state.networks);
        assert_eq!(sim.state.tasks, other.state.tasks);
    }

    #[test]
    fn a_24_holds_100_services_with_a_task_each() {
        // moby#43052: with one VIP per service and one address per task, and no per-node address
        // on user networks, 100 single-task services fit in a /24 with room to spare.
        let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")]);
        create(&mut sim, "net1", "appnet", "10.7.0.0/24").unwrap();
        for i in 0..100 {
            sim.create(on_networks(&format!("s{i}"), &["net1"], &[]));
        }
        let plan = sim.reconcile_once();
        sim.apply(Command::ApplyPlan { plan: Box::new(plan) });
        let rejected = sim.state.tasks.values().filter(|t| t.status.state == TaskState::Rejected).count();
        assert_eq!(rejected, 0);
        assert_eq!(sim.state.networks["net1"].pool.allocations().count(), 200);
    }

    #[test]
    fn publishing_a_port_redeploys_tasks_onto_ingress_and_unpublishing_takes_them_off() {
        let mut sim = initialized();
        let id = sim.create(on_networks("web", &[], &[]));
        sim.converge();
        let live = |sim: &Sim| -> Vec<Vec<String>> {
            sim.tasks_of(&id)
                .iter()
                .filter(|t| t.desired_state == TaskState::Running)
                .map(|t| t.networks_attachments.iter().map(|a| a.network.id.clone()).collect())
                .collect()
        };
        assert_eq!(live(&sim), vec![Vec::<String>::new()]);
        // `service update --publish-add 8080:80`: the endpoint changes, the task template does not.
        let ports = vec![PortConfig { target_port: 80, published_port: 8080, ..Default::default() }];
        let endpoint =
            Endpoint { spec: EndpointSpec { ports: ports.clone(), ..Default::default() }, ports, virtual_ips: vec![] };
        let service = &sim.state.services[&id];
        let (version, mut spec) = (service.version.index, service.spec.clone());
        spec.endpoint_spec = Some(endpoint.spec.clone());
        sim.apply(Command::UpdateService { id: id.clone(), version, spec: Box::new(spec.clone()), endpoint });
        sim.converge();
        assert_eq!(live(&sim), vec![vec!["ingressid".to_string()]]);
        let version = sim.state.services[&id].version.index;
        spec.endpoint_spec = None;
        sim.apply(Command::UpdateService {
            id: id.clone(),
            version,
            spec: Box::new(spec),
            endpoint: Endpoint::default(),
        });
        sim.converge();
        assert_eq!(live(&sim), vec![Vec::<String>::new()]);
    }

    #[test]
    fn tasks_of_a_plan_never_change_addresses() {
        let mut sim = initialized();
        create(&mut sim, "net1", "appnet", "").unwrap();
        let svc = sim.create(on_networks("api", &["net1"], &[]));
        sim.converge();
        let mut task = sim.tasks_of(&svc)[0].clone();
        let kept = task.networks_attachments.clone();
        task.networks_attachments.clear();
        task.spec = TaskSpec { force_update: 9, ..task.spec };
        sim.apply(Command::ApplyPlan {
            plan: Box::new(Plan { upsert_tasks: vec![task.clone()], ..Default::default() }),
        });
        assert_eq!(sim.state.tasks[&task.id].networks_attachments, kept);
    }
}
