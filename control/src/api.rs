//! The interface the Engine API server calls: one method per swarm/node endpoint.
//!
//! The HTTP layer (in the `shoal` crate) depends only on this trait, so it can be tested against
//! a fake, and the real implementation ([`crate::daemon::Daemon`]) can change without touching
//! routes. Every method returns Docker-worded [`ApiError`]s.

use async_trait::async_trait;

use crate::error::ApiResult;
use crate::objects::service::{Service, ServiceSpec, Task};
use crate::objects::{InitRequest, JoinRequest, Node, NodeSpec, RotateTokens, Swarm, SwarmInfo, SwarmSpec};

#[async_trait]
pub trait SwarmApi: Send + Sync + 'static {
    /// `Info.Swarm`; never fails (a node outside any swarm is `inactive`).
    async fn info(&self) -> SwarmInfo;
    /// `POST /swarm/init` → the new node's ID.
    async fn init(&self, req: InitRequest) -> ApiResult<String>;
    /// `POST /swarm/join`.
    async fn join(&self, req: JoinRequest) -> ApiResult<()>;
    /// `POST /swarm/leave?force=`.
    async fn leave(&self, force: bool) -> ApiResult<()>;
    /// `GET /swarm` (managers only).
    async fn inspect_swarm(&self) -> ApiResult<Swarm>;
    /// `POST /swarm/update?version=&rotateWorkerToken=&rotateManagerToken=`.
    async fn update_swarm(&self, version: u64, spec: SwarmSpec, rotate: RotateTokens) -> ApiResult<()>;
    /// `GET /nodes` (unfiltered; the HTTP layer applies `filters`).
    async fn list_nodes(&self) -> ApiResult<Vec<Node>>;
    /// `GET /nodes/{id}`: `key` is an ID, a hostname or a unique ID prefix.
    async fn inspect_node(&self, key: &str) -> ApiResult<Node>;
    /// `POST /nodes/{id}/update?version=`.
    async fn update_node(&self, key: &str, version: u64, spec: NodeSpec) -> ApiResult<()>;
    /// `DELETE /nodes/{id}?force=`.
    async fn remove_node(&self, key: &str, force: bool) -> ApiResult<()>;
}

/// The service and task endpoints (`/services`, `/tasks`), separate from [`SwarmApi`] so each
/// can be faked on its own in the HTTP layer's tests.
#[async_trait]
pub trait ServiceApi: Send + Sync + 'static {
    /// `POST /services/create` → (service ID, warnings).
    async fn create_service(&self, spec: ServiceSpec) -> ApiResult<(String, Vec<String>)>;
    /// `GET /services` with `ServiceStatus` filled in (the HTTP layer drops it unless `status=true`).
    async fn list_services(&self) -> ApiResult<Vec<Service>>;
    /// `GET /services/{id}`: `key` is an ID, a name or a unique ID prefix.
    async fn inspect_service(&self, key: &str) -> ApiResult<Service>;
    /// `POST /services/{id}/update?version=` (or `rollback=previous`, which ignores `spec`) → warnings.
    async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: bool,
    ) -> ApiResult<Vec<String>>;
    /// `DELETE /services/{id}`.
    async fn remove_service(&self, key: &str) -> ApiResult<()>;
    /// `GET /tasks` (unfiltered; the HTTP layer applies `filters`).
    async fn list_tasks(&self) -> ApiResult<Vec<Task>>;
    /// `GET /tasks/{id}`.
    async fn inspect_task(&self, key: &str) -> ApiResult<Task>;
}

/// Options of `GET /services/{id}/logs` and `GET /tasks/{id}/logs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    /// Lines from the end of each task's log; `None` for all.
    pub tail: Option<u64>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub stdout: bool,
    pub stderr: bool,
}

/// One line of a task's output, with where it came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogMessage {
    pub node_id: String,
    pub service_id: String,
    pub task_id: String,
    /// 1 = stdout, 2 = stderr (the multiplexed stream's numbers).
    pub stream: u8,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub line: String,
}

/// Task output, gathered from the nodes running the tasks.
#[async_trait]
pub trait LogsApi: Send + Sync + 'static {
    /// Lines of every task of a service (`key`: ID, name or unique prefix); the stream ends when
    /// all nodes finished (never, with `follow`, until the receiver is dropped).
    async fn service_logs(&self, key: &str, options: LogOptions) -> ApiResult<tokio::sync::mpsc::Receiver<LogMessage>>;
    /// Lines of one task (`key`: ID or unique prefix).
    async fn task_logs(&self, key: &str, options: LogOptions) -> ApiResult<tokio::sync::mpsc::Receiver<LogMessage>>;
}

/// The network endpoints (`/networks`): swarm-scoped overlay networks.
#[async_trait]
pub trait NetworkApi: Send + Sync + 'static {
    /// `POST /networks/create`.
    async fn create_network(
        &self,
        req: crate::objects::network::NetworkCreateRequest,
    ) -> ApiResult<crate::objects::network::NetworkCreateResponse>;
    /// `GET /networks` (unfiltered; the HTTP layer applies `filters`).
    async fn list_networks(&self) -> ApiResult<Vec<crate::objects::network::Network>>;
    /// `GET /networks/{id}`: `key` is a full ID, a name or a unique ID prefix (Docker's order).
    async fn inspect_network(&self, key: &str) -> ApiResult<crate::objects::network::Network>;
    /// `DELETE /networks/{id}`: refused with Docker's message while a service or task uses it.
    async fn remove_network(&self, key: &str) -> ApiResult<()>;
}

/// The node's eBPF load balancer (`GET /shoal/mesh`, Shoal's own path): like `ipvsadm`, each
/// node answers for itself, since counters live in that node's maps.
#[async_trait]
pub trait MeshApi: Send + Sync + 'static {
    /// This node's programmed services, their backends and counters. A node whose mesh is not
    /// loaded answers an empty table with a [`MeshTable::note`], not an error.
    async fn mesh_table(&self) -> ApiResult<MeshTable>;
}

/// The scheduler every mesh service uses (shown as ipvsadm shows its scheduler).
pub const MESH_SCHEDULER: &str = "maglev";

/// One node's load-balancer table, as `GET /shoal/mesh` serves it (Engine API style names).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshTable {
    /// The node the table was read on.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Why the table is empty when this node has no mesh to read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    pub services: Vec<MeshService>,
    /// Node-wide counters of the routing mesh; `None` when no mesh is loaded.
    #[serde(default)]
    pub stats: Option<MeshNodeStats>,
}

/// How clients reach a mesh service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshKind {
    /// A published port of the routing mesh (`mode=ingress`), on every node's address.
    Published,
    /// A `mode=host` published port: this node's address, only this node's tasks.
    Host,
    /// A service VIP on an overlay, every port, reached east-west from tasks.
    Vip,
}

/// Whether a backend gets new flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshBackendState {
    Active,
    /// Shutting down: keeps its flows, gets no new ones.
    Draining,
    /// Still in the maps but gone from the network map; the next programming removes it.
    Stale,
}

/// One programmed service key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshService {
    /// Empty when the network map no longer knows the key (left by a previous agent).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub kind: MeshKind,
    /// Name of the network the backends are on (the ingress network for published ports).
    pub network: String,
    /// The VIP, or this node's address for published ports.
    pub address: std::net::Ipv4Addr,
    /// 0: every port (a VIP), the client's port kept.
    pub port: u16,
    pub protocol: crate::objects::service::PortProtocol,
    pub scheduler: String,
    pub counters: MeshCounters,
    pub backends: Vec<MeshBackend>,
}

/// One task behind a mesh service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshBackend {
    /// Empty when the network map no longer knows the address.
    #[serde(rename = "TaskID")]
    pub task_id: String,
    pub task_name: String,
    pub address: std::net::Ipv4Addr,
    /// 0: the client's port.
    pub port: u16,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// The node's hostname.
    pub node: String,
    pub state: MeshBackendState,
    pub counters: MeshCounters,
}

/// Counters of a service or backend since it was programmed, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshCounters {
    pub new_flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// New flows dropped because the service had no active backend.
    pub dropped_no_backend: u64,
}

/// What the routing mesh did beyond translating packets (`mesh_ebpf::MeshStats`, which has no
/// serde: the data plane knows nothing about the API). Drops carry their reason in the name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshNodeStats {
    pub new_flows: u64,
    pub replies_translated: u64,
    pub fragments_passed: u64,
    pub truncated_passed: u64,
    #[serde(rename = "IPOptions")]
    pub ip_options: u64,
    pub dropped_no_backend: u64,
    pub dropped_rewrite_failed: u64,
    pub dropped_return_conflict: u64,
    #[serde(rename = "ICMPErrorsTranslated")]
    pub icmp_errors_translated: u64,
    #[serde(rename = "ICMPErrorsUntracked")]
    pub icmp_errors_untracked: u64,
    pub return_path_takeovers: u64,
    pub client_ports_remapped: u64,
}
