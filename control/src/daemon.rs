//! A node's swarm lifecycle: init, join, leave, and the manager and agent parts it runs.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::api::SwarmApi;
use crate::error::{ApiError, ApiResult};
use crate::objects::{InitRequest, JoinRequest, Node, NodeSpec, RotateTokens, Swarm, SwarmInfo, SwarmSpec};

/// How `shoal daemon` was started.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Everything the node keeps lives under here (`swarm/` for certificates and Raft).
    pub data_root: PathBuf,
}

pub struct Daemon {
    #[allow(dead_code)]
    config: DaemonConfig,
}

impl Daemon {
    /// Opens the data root and, if the node was in a swarm, rejoins it.
    pub async fn start(config: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        std::fs::create_dir_all(&config.data_root)?;
        Ok(Arc::new(Daemon { config }))
    }
}

#[async_trait]
impl SwarmApi for Daemon {
    async fn info(&self) -> SwarmInfo {
        SwarmInfo::default()
    }
    async fn init(&self, _req: InitRequest) -> ApiResult<String> {
        Err(ApiError::internal("not implemented yet"))
    }
    async fn join(&self, _req: JoinRequest) -> ApiResult<()> {
        Err(ApiError::internal("not implemented yet"))
    }
    async fn leave(&self, _force: bool) -> ApiResult<()> {
        Err(ApiError::invalid("This node is not part of a swarm"))
    }
    async fn inspect_swarm(&self) -> ApiResult<Swarm> {
        Err(ApiError::not_in_swarm())
    }
    async fn update_swarm(&self, _version: u64, _spec: SwarmSpec, _rotate: RotateTokens) -> ApiResult<()> {
        Err(ApiError::not_in_swarm())
    }
    async fn list_nodes(&self) -> ApiResult<Vec<Node>> {
        Err(ApiError::not_in_swarm())
    }
    async fn inspect_node(&self, _key: &str) -> ApiResult<Node> {
        Err(ApiError::not_in_swarm())
    }
    async fn update_node(&self, _key: &str, _version: u64, _spec: NodeSpec) -> ApiResult<()> {
        Err(ApiError::not_in_swarm())
    }
    async fn remove_node(&self, _key: &str, _force: bool) -> ApiResult<()> {
        Err(ApiError::not_in_swarm())
    }
}
