//! `GET /shoal/mesh` on every node: this node's eBPF load-balancer table and counters, read from
//! its own maps (like `ipvsadm -L -n --stats`; another node's counters are in another kernel).
//!
//! A node that has no mesh to read (outside a swarm, or before the ingress network's bridge
//! exists here) answers an empty table with a note: that is a state to show, not a failure.

use std::sync::Arc;

use async_trait::async_trait;

use crate::api::{MeshApi, MeshTable};
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::node_mesh::NodeMesh;
use crate::node_network::NodeNetwork;

const NOT_IN_SWARM: &str = "this node is not part of a swarm: it has no routing mesh";
const NOT_LOADED: &str =
    "the routing mesh is not loaded on this node yet (it loads once the ingress network is set up here)";

#[async_trait]
impl MeshApi for Daemon {
    async fn mesh_table(&self) -> ApiResult<MeshTable> {
        let node_id = self.core.local().map(|l| l.node_id).unwrap_or_default();
        let Some(network) = self.core.node_network_if_started() else {
            return Ok(empty(node_id, NOT_IN_SWARM));
        };
        let Some(mesh) = loaded_mesh(&network) else {
            return Ok(empty(node_id, NOT_LOADED));
        };
        mesh.table(&network.map()).map_err(|e| ApiError::internal(format!("reading the routing mesh: {e:#}")))
    }
}

fn empty(node_id: String, note: &str) -> MeshTable {
    MeshTable { node_id, note: note.to_string(), services: Vec::new(), stats: None }
}

/// The node's mesh, once loaded.
fn loaded_mesh(network: &NodeNetwork) -> Option<Arc<NodeMesh>> {
    network.mesh_if_loaded()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::DaemonConfig;

    #[tokio::test]
    async fn a_node_outside_a_swarm_answers_an_empty_table_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let config = DaemonConfig {
            data_root: dir.path().to_path_buf(),
            dns_upstreams: Vec::new(),
            bpffs: None,
            host_cgroup: None,
        };
        let daemon = Daemon::start(config).await.unwrap();
        let table = daemon.mesh_table().await.unwrap();
        assert_eq!(table, empty(String::new(), NOT_IN_SWARM));
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(json["Note"], NOT_IN_SWARM);
        assert_eq!(json["Services"], serde_json::json!([]));
        assert_eq!(json["Stats"], serde_json::Value::Null);
    }
}
