//! The gRPC services on 2377. Permissions are checked before these run (see [`super::acl`]);
//! here each method reads the caller's identity when it needs it and delegates to the manager.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb;
use super::transport::PeerInfo;
use crate::ca::{NodeIdentity, RootCa};
use crate::daemon::Core;
use crate::error::{ApiError, ErrorKind};
use crate::manager::Manager;
use crate::objects::{
    Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Version, SECOND_NS,
};
use crate::state::{Command, NodeRecord};
use crate::token;

#[derive(Clone)]
pub struct Services {
    pub core: Arc<Core>,
}

impl Services {
    fn manager(&self) -> Result<Arc<Manager>, Status> {
        self.core.manager().ok_or_else(|| Status::unavailable("this node is not a manager"))
    }
}

fn status_of(e: ApiError) -> Status {
    match e.kind {
        ErrorKind::InvalidArgument => Status::invalid_argument(e.message),
        ErrorKind::NotFound => Status::not_found(e.message),
        ErrorKind::Conflict => Status::already_exists(e.message),
        ErrorKind::Forbidden => Status::permission_denied(e.message),
        ErrorKind::Unavailable => Status::unavailable(e.message),
        ErrorKind::Internal => Status::internal(e.message),
    }
}

fn caller<T>(req: &Request<T>) -> Result<NodeIdentity, Status> {
    req.extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.identity.clone())
        .ok_or_else(|| Status::unauthenticated("a node certificate is required for this call"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<pb::Json, Status> {
    serde_json::to_vec(value).map(|json| pb::Json { json }).map_err(|e| Status::internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(msg: &pb::Json) -> Result<T, Status> {
    serde_json::from_slice(&msg.json).map_err(|e| Status::invalid_argument(format!("bad payload: {e}")))
}

/// A fresh node ID in Docker's style: 25 lowercase base-36 characters.
pub fn new_node_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..25).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[tonic::async_trait]
impl pb::ca_server::Ca for Services {
    async fn get_root_ca_certificate(&self, _req: Request<pb::Empty>) -> Result<Response<pb::RootCa>, Status> {
        let cert_pem = self.core.root_ca_pem().ok_or_else(|| Status::unavailable("this node is not in a swarm"))?;
        Ok(Response::new(pb::RootCa { cert_pem }))
    }
}

#[tonic::async_trait]
impl pb::node_ca_server::NodeCa for Services {
    async fn issue_node_certificate(
        &self,
        req: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let manager = self.manager()?;
        let req = req.into_inner();
        let invalid_token = || Status::invalid_argument("A valid join token is necessary to join this cluster");
        let presented = token::parse(&req.token).map_err(|_| invalid_token())?;
        manager.read_barrier().await.map_err(status_of)?;
        let state = manager.state();
        let cluster = state.cluster.as_ref().ok_or_else(|| Status::unavailable("the swarm is not initialized"))?;
        let is = |t: &str| token::parse(t).map(|t| t.same_as(&presented)).unwrap_or(false);
        let role = if is(&cluster.swarm.join_tokens.manager) {
            NodeRole::Manager
        } else if is(&cluster.swarm.join_tokens.worker) {
            NodeRole::Worker
        } else {
            return Err(invalid_token());
        };
        let description: NodeDescription = serde_json::from_slice(&req.description).unwrap_or_default();
        let availability = match req.availability.as_str() {
            "pause" => NodeAvailability::Pause,
            "drain" => NodeAvailability::Drain,
            _ => NodeAvailability::Active,
        };
        let node_id = new_node_id();
        let ca =
            RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem).map_err(|e| Status::internal(e.to_string()))?;
        let identity = NodeIdentity { node_id: node_id.clone(), role, cluster_id: cluster.swarm.id.clone() };
        let expiry = cert_validity(cluster.swarm.spec.ca_config.node_cert_expiry);
        let cert_pem =
            ca.issue(&req.csr_pem, &identity, expiry).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = chrono::Utc::now();
        let record = NodeRecord {
            node: Node {
                id: node_id.clone(),
                version: Version::default(),
                created_at: now,
                updated_at: now,
                spec: NodeSpec { name: None, labels: Default::default(), role, availability },
                description: NodeDescription { tls_info: ca.tls_info(), ..description },
                status: NodeStatus { state: NodeState::Unknown, message: String::new(), addr: req.advertise_addr },
                manager_status: None,
            },
            raft_id: None,
            // Every node serves Agent RPCs there; managers also serve Raft and the rest.
            manager_addr: req.manager_addr,
        };
        manager.propose(Command::AddNode { node: record }).await.map_err(status_of)?;
        Ok(Response::new(pb::IssueResponse {
            node_id,
            cert_pem,
            root_ca_pem: cluster.ca_cert_pem.clone(),
            role: role.as_str().into(),
            cluster_id: cluster.swarm.id.clone(),
            managers: manager.manager_peers(),
        }))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let manager = self.manager()?;
        let identity = caller(&req)?;
        manager.read_barrier().await.map_err(status_of)?;
        let state = manager.state();
        let cluster = state.cluster.as_ref().ok_or_else(|| Status::unavailable("the swarm is not initialized"))?;
        let record = state
            .nodes
            .get(&identity.node_id)
            .ok_or_else(|| Status::permission_denied(format!("node {} is not part of the swarm", identity.node_id)))?;
        let role = record.node.spec.role;
        let ca =
            RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem).map_err(|e| Status::internal(e.to_string()))?;
        let renewed = NodeIdentity { node_id: identity.node_id.clone(), role, cluster_id: cluster.swarm.id.clone() };
        let expiry = cert_validity(cluster.swarm.spec.ca_config.node_cert_expiry);
        let cert_pem = ca
            .issue(&req.into_inner().csr_pem, &renewed, expiry)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::IssueResponse {
            node_id: identity.node_id,
            cert_pem,
            root_ca_pem: cluster.ca_cert_pem.clone(),
            role: role.as_str().into(),
            cluster_id: cluster.swarm.id.clone(),
            managers: manager.manager_peers(),
        }))
    }
}

fn cert_validity(expiry_ns: i64) -> std::time::Duration {
    if expiry_ns < 3600 * SECOND_NS {
        crate::ca::DEFAULT_NODE_CERT_VALIDITY
    } else {
        std::time::Duration::from_nanos(expiry_ns as u64)
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for Services {
    async fn append_entries(&self, req: Request<pb::Json>) -> Result<Response<pb::Json>, Status> {
        let manager = self.manager()?;
        let rpc = from_json(req.get_ref())?;
        Ok(Response::new(json(&manager.raft.append_entries(rpc).await)?))
    }

    async fn vote(&self, req: Request<pb::Json>) -> Result<Response<pb::Json>, Status> {
        let manager = self.manager()?;
        let rpc = from_json(req.get_ref())?;
        Ok(Response::new(json(&manager.raft.vote(rpc).await)?))
    }

    async fn install_snapshot(&self, req: Request<pb::Json>) -> Result<Response<pb::Json>, Status> {
        let manager = self.manager()?;
        let rpc = from_json(req.get_ref())?;
        Ok(Response::new(json(&manager.raft.install_snapshot(rpc).await)?))
    }
}

#[tonic::async_trait]
impl pb::raft_membership_server::RaftMembership for Services {
    async fn join(&self, req: Request<pb::JoinRaft>) -> Result<Response<pb::Empty>, Status> {
        let manager = self.manager()?;
        // Callers are managers (see the ACL): the joining node itself, or a follower forwarding its
        // request to the leader. Managers hold the CA key, so they are trusted with membership.
        let req = req.into_inner();
        let raft_id = crate::manager::raft_id_for(&req.node_id);
        manager.add_voter(&req.node_id, raft_id, &req.addr).await.map_err(status_of)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn leave(&self, req: Request<pb::LeaveRaft>) -> Result<Response<pb::Empty>, Status> {
        let manager = self.manager()?;
        let identity = caller(&req)?;
        if identity.node_id != req.get_ref().node_id {
            return Err(Status::permission_denied("a node can only remove itself from the Raft group"));
        }
        manager.leave_swarm(&identity.node_id).await.map_err(status_of)?;
        Ok(Response::new(pb::Empty {}))
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for Services {
    async fn propose(&self, req: Request<pb::Json>) -> Result<Response<pb::Json>, Status> {
        let manager = self.manager()?;
        let proposal = from_json(req.get_ref())?;
        let result = manager.commit_local(proposal).await;
        Ok(Response::new(json(&result)?))
    }

    async fn read_index(&self, _req: Request<pb::Empty>) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let manager = self.manager()?;
        let index = manager.leader_read_index().await.map_err(status_of)?;
        Ok(Response::new(pb::ReadIndexResponse { index }))
    }

    async fn forward_heartbeat(
        &self,
        req: Request<pb::ForwardedHeartbeat>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let manager = self.manager()?;
        if !manager.is_leader() {
            return Err(Status::unavailable("not the leader"));
        }
        let req = req.into_inner();
        let heartbeat = req.heartbeat.unwrap_or_default();
        let reply = manager.heartbeat(&req.node_id, heartbeat).await.map_err(status_of)?;
        Ok(Response::new(reply))
    }
}

/// How long an assignments long poll waits for a change before answering anyway.
const ASSIGNMENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for Services {
    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let manager = self.manager()?;
        let identity = caller(&req)?;
        let reply = manager.heartbeat(&identity.node_id, req.into_inner()).await.map_err(status_of)?;
        Ok(Response::new(reply))
    }

    async fn assignments(
        &self,
        req: Request<pb::AssignmentsRequest>,
    ) -> Result<Response<pb::AssignmentsResponse>, Status> {
        let manager = self.manager()?;
        let identity = caller(&req)?;
        let since = req.into_inner().since_index;
        let (index, tasks) = manager.assignments(&identity.node_id, since, ASSIGNMENTS_WAIT).await;
        let tasks = serde_json::to_vec(&tasks).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::AssignmentsResponse { index, tasks }))
    }

    async fn update_task_status(&self, req: Request<pb::Json>) -> Result<Response<pb::Empty>, Status> {
        let manager = self.manager()?;
        let identity = caller(&req)?;
        let updates = from_json(req.get_ref())?;
        manager.report_task_status(&identity.node_id, updates).await.map_err(status_of)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn network_map(&self, req: Request<pb::NetworkMapRequest>) -> Result<Response<pb::Json>, Status> {
        let manager = self.manager()?;
        let since = req.into_inner().since_index;
        let map = manager.network_map(since, ASSIGNMENTS_WAIT).await;
        Ok(Response::new(json(&*map)?))
    }
}

/// Asks the manager at `addr` for the network map, waiting (long poll) until it differs from the
/// one the caller got at index `since` (0: answer at once). The next call passes the answer's
/// `index`. Used by every node's data plane and resolver.
pub async fn fetch_network_map(
    peers: &crate::rpc::peers::Peers,
    addr: &str,
    since: u64,
) -> anyhow::Result<crate::netmap::NetworkMap> {
    use anyhow::Context as _;
    let mut client = peers.dispatcher(addr)?;
    let mut request = Request::new(pb::NetworkMapRequest { since_index: since });
    // Longer than the server's wait, so a quiet long poll is not mistaken for a dead manager.
    request.set_timeout(ASSIGNMENTS_WAIT + std::time::Duration::from_secs(5));
    let reply = match client.network_map(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            peers.forget(addr);
            anyhow::bail!("network map from {addr}: {}", status.message());
        }
    };
    serde_json::from_slice(&reply.json).with_context(|| format!("network map from {addr}"))
}
