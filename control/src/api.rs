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
