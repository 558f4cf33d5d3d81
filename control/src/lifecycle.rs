//! The swarm and node endpoints of the Engine API, on a running [`Daemon`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::api::SwarmApi;
use crate::ca::{self, NodeIdentity, NodeKey, RootCa};
use crate::daemon::{
    describe_node, new_cluster, normalize_listen_addr, resolve_advertise_addr, restore_command, self_signed_identity,
    wait_until, Daemon, LocalState,
};
use crate::error::{ApiError, ApiResult};
use crate::manager::{self, Manager};
use crate::objects::{
    InitRequest, JoinRequest, LocalNodeState, Node, NodeRole, NodeSpec, Peer, RotateTokens, Swarm, SwarmInfo,
    SwarmSpec, TlsInfo,
};
use crate::rpc::services::new_node_id;
use crate::rpc::{pb, transport};
use crate::state::Command;
use crate::{tls, token};

/// An unexpected failure below the API, with its whole chain of causes.
fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal(format!("{e:#}"))
}

impl Daemon {
    /// The running manager, or Docker's error for a worker or a node outside any swarm.
    pub(crate) fn require_manager(&self) -> ApiResult<Arc<Manager>> {
        match (self.core.local(), self.core.manager()) {
            (None, _) => Err(ApiError::not_in_swarm()),
            (Some(_), None) => Err(ApiError::not_a_manager()),
            (Some(_), Some(manager)) => Ok(manager),
        }
    }

    async fn init_inner(&self, mut req: InitRequest) -> ApiResult<String> {
        validate_address_pools(&mut req)?;
        let listen_addr = normalize_listen_addr(&req.listen_addr)?;
        let advertise_addr = resolve_advertise_addr(&req.advertise_addr, &listen_addr)?;
        let ca = RootCa::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let node_id = new_node_id();
        let cluster_id = new_node_id();
        let mut local = LocalState {
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            role: NodeRole::Manager,
            advertise_addr,
            listen_addr,
            managers: vec![],
        };
        local.managers = vec![(node_id.clone(), local.manager_addr())];
        let identity = NodeIdentity { node_id: node_id.clone(), role: NodeRole::Manager, cluster_id };
        let (cert, key) = self_signed_identity(&ca, &identity).map_err(internal)?;
        let core = &self.core;
        core.save_certs(ca.cert_pem(), &cert, &key).map_err(internal)?;
        core.save_local(&local).map_err(internal)?;
        let started = match core.start_server().await {
            Ok(()) => core.start_manager().await,
            Err(e) => Err(e),
        };
        let manager = match started {
            Ok(manager) => manager,
            Err(e) => {
                core.forget_swarm().await;
                return Err(ApiError::invalid(format!("{e:#}")));
            }
        };
        manager.initialize(&local.manager_addr()).await.map_err(internal)?;
        let (cluster, node) = new_cluster(&req, &ca, &node_id, &local);
        manager.propose(Command::InitCluster { cluster, node, ingress_id: new_node_id() }).await?;
        core.start_agent();
        Ok(node_id)
    }

    /// `swarm init --force-new-cluster` on a manager: keep the state, restart Raft with this node
    /// as its only member. The old Raft files are kept aside, not deleted.
    async fn force_new_cluster(&self, manager: Arc<Manager>) -> ApiResult<String> {
        let local = self.core.local().ok_or_else(ApiError::not_in_swarm)?;
        let state = manager.state();
        drop(manager);
        self.core.stop_manager(false).await;
        let raft_dir = self.core.data_root.join("swarm").join("raft");
        let aside =
            raft_dir.with_file_name(format!("raft.before-force-new-cluster.{}", chrono::Utc::now().timestamp()));
        std::fs::rename(&raft_dir, &aside)
            .map_err(|e| ApiError::internal(format!("moving the old Raft files: {e}")))?;
        let manager = self.core.start_manager().await.map_err(internal)?;
        manager.initialize(&local.manager_addr()).await.map_err(internal)?;
        manager.propose(restore_command(state, &local.node_id, &local.manager_addr())).await?;
        let mut local = local;
        local.managers = vec![(local.node_id.clone(), local.manager_addr())];
        self.core.save_local(&local).map_err(internal)?;
        Ok(local.node_id)
    }

    async fn join_inner(&self, req: JoinRequest) -> ApiResult<()> {
        let presented = token::parse(&req.join_token).map_err(|e| ApiError::invalid(e.to_string()))?;
        let listen_addr = normalize_listen_addr(&req.listen_addr)?;
        if req.remote_addrs.is_empty() {
            return Err(ApiError::invalid("at least 1 RemoteAddr is required to join"));
        }
        let mut last = ApiError::unavailable("could not reach any manager");
        for remote in &req.remote_addrs {
            let remote = if remote.contains(':') { remote.clone() } else { format!("{remote}:2377") };
            // The joiner may advertise an address only the remote side can tell us; Docker uses
            // the local address of the connection to the manager when none is given.
            let advertise_addr = match resolve_advertise_addr(&req.advertise_addr, &listen_addr) {
                Ok(addr) => addr,
                Err(e) if req.advertise_addr.is_empty() => {
                    local_addr_towards(&remote).await.map(|ip| ip.to_string()).ok_or(e)?
                }
                Err(e) => return Err(e),
            };
            match self.join_through(&remote, &presented, &req, &listen_addr, &advertise_addr).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if e.message.contains("remote CA does not match") || e.message.contains("valid join token") {
                        return Err(e);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn join_through(
        &self,
        remote: &str,
        presented: &token::JoinToken,
        req: &JoinRequest,
        listen_addr: &str,
        advertise_addr: &str,
    ) -> ApiResult<()> {
        // 1. Download the root CA over TLS without trusting it, and pin it by the token's digest.
        let fetch =
            transport::channel(remote, tls::fetch_ca_client_config(), tls::MANAGER_SERVER_NAME).map_err(internal)?;
        let root = pb::ca_client::CaClient::new(fetch)
            .get_root_ca_certificate(pb::Empty {})
            .await
            .map_err(|s| ApiError::unavailable(format!("could not reach the manager at {remote}: {}", s.message())))?
            .into_inner()
            .cert_pem;
        let root_der = ca::pem_to_der(&root).map_err(|e| ApiError::invalid(e.to_string()))?;
        if !presented.matches_ca(&root_der) {
            return Err(ApiError::invalid(token::ca_mismatch_error(presented, &root_der).to_string()));
        }
        // 2. Only now send the secret, to a server verified against that CA.
        let key = NodeKey::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let config = tls::client_config(&root, None).map_err(|e| ApiError::internal(e.to_string()))?;
        let channel = transport::channel(remote, config, tls::MANAGER_SERVER_NAME).map_err(internal)?;
        let port = listen_addr.rsplit(':').next().unwrap_or("2377");
        let manager_addr = format!("{advertise_addr}:{port}");
        let issue = pb::IssueRequest {
            csr_pem: key.csr_pem.clone(),
            token: req.join_token.clone(),
            description: serde_json::to_vec(&describe_node(TlsInfo::default())).unwrap_or_default(),
            advertise_addr: advertise_addr.to_string(),
            manager_addr,
            availability: req.availability.map(|a| format!("{a:?}").to_lowercase()).unwrap_or_default(),
        };
        let reply = pb::node_ca_client::NodeCaClient::new(channel)
            .issue_node_certificate(issue)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument => {
                    ApiError::invalid(format!("rpc error: code = InvalidArgument desc = {}", s.message()))
                }
                _ => ApiError::unavailable(s.message().to_string()),
            })?
            .into_inner();
        // 3. Become a member with the issued identity.
        let role = if reply.role == "manager" { NodeRole::Manager } else { NodeRole::Worker };
        let mut managers: Vec<(String, String)> =
            reply.managers.iter().map(|p| (p.node_id.clone(), p.addr.clone())).collect();
        if managers.is_empty() {
            managers.push((String::new(), remote.to_string()));
        }
        let local = LocalState {
            node_id: reply.node_id.clone(),
            cluster_id: reply.cluster_id.clone(),
            role,
            advertise_addr: advertise_addr.to_string(),
            listen_addr: listen_addr.to_string(),
            managers,
        };
        let core = &self.core;
        core.save_certs(&reply.root_ca_pem, &reply.cert_pem, &key.key_pem).map_err(internal)?;
        core.save_local(&local).map_err(internal)?;
        core.install_identity().map_err(internal)?;
        core.start_server().await.map_err(internal)?;
        if role == NodeRole::Manager {
            let manager = core.start_manager().await.map_err(internal)?;
            if let Err(e) = crate::agent::join_raft(core).await {
                core.forget_swarm().await;
                return Err(ApiError::unavailable(format!("{e:#}")));
            }
            let applied =
                wait_until(Duration::from_secs(10), || manager.state().nodes.contains_key(&local.node_id)).await;
            if !applied {
                tracing::warn!("joined the Raft group but the cluster state has not arrived yet");
            }
        }
        core.start_agent();
        Ok(())
    }
}

/// dockerd's checks of `swarm init --default-addr-pool/--default-addr-pool-mask-length/
/// --data-path-port` (moby `daemon/cluster/swarm.go`), with its messages; trims the pools.
fn validate_address_pools(req: &mut InitRequest) -> ApiResult<()> {
    if req.data_path_port != 0 && !(1024..=49151).contains(&req.data_path_port) {
        // Ports below 1024 are reserved, above 49151 dynamic.
        return Err(ApiError::invalid(format!(
            "Datapath port number is not in valid range (1024-49151) : {}",
            req.data_path_port
        )));
    }
    if req.default_addr_pool.is_empty() {
        return Ok(());
    }
    let size = if req.subnet_size == 0 { u32::from(crate::state::DEFAULT_SUBNET_SIZE) } else { req.subnet_size };
    // Docker's ceiling: a /29 is the smallest subnet an overlay network can work with.
    if size > 29 {
        return Err(ApiError::invalid(format!("subnet size is out of range: {size}")));
    }
    for pool in &mut req.default_addr_pool {
        *pool = pool.trim().to_string();
        if pool.contains(':') {
            return Err(ApiError::invalid(format!("invalid base pool {pool}: IPv6 pools are not supported")));
        }
        let cidr =
            crate::ipam::Cidr::parse(pool).map_err(|e| ApiError::invalid(format!("invalid base pool {pool}: {e}")))?;
        if size < u32::from(cidr.prefix_len) {
            return Err(ApiError::invalid(format!(
                "invalid CIDR: {pool:?}. Subnet size is too small for pool: {size}"
            )));
        }
    }
    Ok(())
}

/// The local IP the kernel would use to reach `remote` (`ip:port`), without sending anything.
async fn local_addr_towards(remote: &str) -> Option<std::net::IpAddr> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok()?;
    socket.connect(remote).await.ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[async_trait]
impl SwarmApi for Daemon {
    async fn info(&self) -> SwarmInfo {
        let Some(local) = self.core.local() else { return SwarmInfo::default() };
        let manager = self.core.manager();
        let mut info = SwarmInfo {
            node_id: local.node_id.clone(),
            node_addr: local.advertise_addr.clone(),
            local_node_state: LocalNodeState::Active,
            control_available: manager.is_some(),
            error: String::new(),
            remote_managers: Some(
                local.managers.iter().map(|(id, addr)| Peer { node_id: id.clone(), addr: addr.clone() }).collect(),
            ),
            nodes: None,
            managers: None,
            cluster: None,
        };
        if let Some(manager) = manager {
            let state = manager.state();
            info.nodes = Some(state.nodes.len() as u64);
            info.managers = Some(state.nodes.values().filter(|n| n.raft_id.is_some()).count() as u64);
            info.remote_managers = Some(
                state
                    .nodes
                    .values()
                    .filter(|n| n.raft_id.is_some())
                    .map(|n| Peer { node_id: n.node.id.clone(), addr: n.manager_addr.clone() })
                    .collect(),
            );
            if let Some(cluster) = state.cluster {
                let mut value = serde_json::to_value(&cluster.swarm).unwrap_or_default();
                if let Some(obj) = value.as_object_mut() {
                    obj.remove("JoinTokens");
                }
                info.cluster = Some(value);
            }
        }
        info
    }

    async fn init(&self, req: InitRequest) -> ApiResult<String> {
        let _guard = self.core.lifecycle.lock().await;
        if self.core.local().is_some() {
            if req.force_new_cluster {
                if let Some(manager) = self.core.manager() {
                    return self.force_new_cluster(manager).await;
                }
            }
            return Err(ApiError::already_in_swarm());
        }
        self.init_inner(req).await
    }

    async fn join(&self, req: JoinRequest) -> ApiResult<()> {
        let _guard = self.core.lifecycle.lock().await;
        if self.core.local().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let result = self.join_inner(req).await;
        if result.is_err() && self.core.manager().is_none() {
            // Leave nothing half-joined behind.
            self.core.forget_swarm().await;
        }
        result
    }

    async fn leave(&self, force: bool) -> ApiResult<()> {
        let _guard = self.core.lifecycle.lock().await;
        let Some(local) = self.core.local() else {
            return Err(ApiError::unavailable("This node is not part of a swarm"));
        };
        if let Some(manager) = self.core.manager() {
            if !force {
                return Err(leave_refusal(&manager));
            }
            // Best effort: take this node out of the Raft group so the others keep a quorum.
            if let Some(leader) = manager.leader_addr() {
                if let Some(peers) = self.core.peers() {
                    if let Ok(mut client) = peers.membership(&leader) {
                        let mut request = tonic::Request::new(pb::LeaveRaft { node_id: local.node_id.clone() });
                        request.set_timeout(Duration::from_secs(5));
                        if let Err(e) = client.leave(request).await {
                            tracing::warn!("leaving the Raft group cleanly failed: {}", e.message());
                        }
                    }
                }
            }
        }
        self.core.forget_swarm().await;
        Ok(())
    }

    async fn inspect_swarm(&self) -> ApiResult<Swarm> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        manager.state().cluster.map(|c| c.swarm).ok_or_else(ApiError::not_in_swarm)
    }

    async fn update_swarm(&self, version: u64, spec: SwarmSpec, rotate: RotateTokens) -> ApiResult<()> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        let cluster = state.cluster.as_ref().ok_or_else(ApiError::not_in_swarm)?;
        let digest = ca::digest(&ca::pem_to_der(&cluster.ca_cert_pem).map_err(|e| ApiError::internal(e.to_string()))?);
        let worker_token = rotate.worker.then(|| token::generate(&digest));
        let manager_token = rotate.manager.then(|| token::generate(&digest));
        manager.propose(Command::UpdateCluster { version, spec, worker_token, manager_token }).await?;
        Ok(())
    }

    async fn list_nodes(&self) -> ApiResult<Vec<Node>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        Ok(manager.node_views(&state))
    }

    async fn inspect_node(&self, key: &str) -> ApiResult<Node> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        let record = state.find_node(key)?;
        Ok(manager::node_view(record, manager.current_leader()))
    }

    async fn update_node(&self, key: &str, version: u64, spec: NodeSpec) -> ApiResult<()> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let id = manager.state().find_node(key)?.node.id.clone();
        manager.propose(Command::UpdateNodeSpec { id, version, spec }).await?;
        Ok(())
    }

    async fn remove_node(&self, key: &str, force: bool) -> ApiResult<()> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let id = manager.state().find_node(key)?.node.id.clone();
        manager.propose(Command::RemoveNode { id, force }).await?;
        Ok(())
    }
}

/// Docker's refusal of `swarm leave` on a manager without `--force` (moby daemon/cluster/swarm.go).
fn leave_refusal(manager: &Manager) -> ApiError {
    let mut msg = String::from("You are attempting to leave the swarm on a node that is participating as a manager. ");
    let state = manager.state();
    let members: Vec<_> = state.nodes.values().filter(|n| n.raft_id.is_some()).collect();
    let reachable = members.iter().filter(|n| n.node.status.state == crate::objects::NodeState::Ready).count();
    let unreachable = members.len() - reachable;
    if manager.current_leader().is_some() {
        // moby's removingManagerCausesLossOfQuorum and isLastManager.
        let loses_quorum = reachable as i64 - 2 <= unreachable as i64;
        if loses_quorum {
            if reachable == 1 && unreachable == 0 {
                msg.push_str(
                    "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.",
                );
                return ApiError::unavailable(msg);
            }
            msg.push_str(&format!(
                "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
                reachable.saturating_sub(1),
                reachable + unreachable
            ));
        }
    } else {
        msg.push_str("Doing so may lose the consensus of your cluster. ");
    }
    msg.push_str(
        "The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. \
         Use `--force` to suppress this message.",
    );
    ApiError::unavailable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(pools: &[&str], size: u32, port: u32) -> ApiResult<InitRequest> {
        let mut req = InitRequest {
            default_addr_pool: pools.iter().map(|p| p.to_string()).collect(),
            subnet_size: size,
            data_path_port: port,
            ..Default::default()
        };
        validate_address_pools(&mut req).map(|()| req)
    }

    #[test]
    fn address_pools_and_data_path_port_follow_dockerd() {
        assert_eq!(init(&[" 10.20.0.0/16 "], 26, 4790).unwrap().default_addr_pool, ["10.20.0.0/16"]);
        assert!(init(&[], 0, 0).is_ok());
        let msg = |r: ApiResult<InitRequest>| r.unwrap_err().message;
        assert_eq!(msg(init(&[], 0, 80)), "Datapath port number is not in valid range (1024-49151) : 80");
        assert_eq!(msg(init(&["10.0.0.0/8"], 30, 0)), "subnet size is out of range: 30");
        assert_eq!(msg(init(&["10.0.0/8"], 0, 0)), "invalid base pool 10.0.0/8: invalid CIDR address: 10.0.0/8");
        assert_eq!(
            msg(init(&["10.0.0.0/16"], 12, 0)),
            "invalid CIDR: \"10.0.0.0/16\". Subnet size is too small for pool: 12"
        );
    }
}
