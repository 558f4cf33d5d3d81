//! The manager role: a Raft member holding the replicated cluster state.
//!
//! Writes go through [`Manager::propose`]: committed locally when this manager leads, forwarded
//! to the leader otherwise, and failing fast with Docker's "does not have a leader" error when no
//! quorum answers. Reads that must be current pass [`Manager::read_barrier`] first (the leader
//! confirms it still leads; a follower waits until it has applied what the leader had).
//! The leader also runs the liveness monitor (heartbeats → node `ready`/`down`) and the
//! membership reconciler (a node demoted in the spec leaves the Raft group).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};
use crate::objects::service::{Task, TaskState, TaskStatus};
use crate::objects::{ManagerStatus, Node, NodeDescription, NodeRole, NodeState, NodeStatus, Reachability};
use crate::raft_network::Network;
use crate::rpc::pb;
use crate::rpc::peers::Peers;
use crate::state::{ClusterState, Command, NodeRecord, Proposal};
use crate::store::{self, NodeId, Raft, SharedState};

/// How long a write or read barrier may wait for a quorum before failing with the no-leader error.
const QUORUM_WAIT: Duration = Duration::from_secs(3);

/// Heartbeats missed before a node is declared down (swarmkit's grace multiplier).
const HEARTBEAT_GRACE: u32 = 3;

/// The Raft ID of a node: derived from its node ID so every manager computes the same one.
pub fn raft_id_for(node_id: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(node_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes).max(1)
}

/// The node's gossip membership, if it runs (shared with the daemon that starts and stops it).
pub type SharedGossip = Arc<Mutex<Option<mesh_agent::gossip::Gossip>>>;

pub struct Manager {
    pub raft: Raft,
    gossip: SharedGossip,
    pub raft_id: NodeId,
    pub node_id: String,
    state: SharedState,
    applied: watch::Receiver<u64>,
    peers: Arc<Peers>,
    liveness: Mutex<Liveness>,
    network_map: Mutex<MapCache>,
    stop: watch::Sender<bool>,
}

/// The last network map computed, shared by every poller, and the index where its content last
/// changed: a poller whose `since` is at or past that index already has this content.
#[derive(Default)]
struct MapCache {
    changed_at: u64,
    map: Option<Arc<crate::netmap::NetworkMap>>,
}

#[derive(Default)]
struct Liveness {
    /// The term in which `last_seen` was filled: a new leader starts every node's clock afresh.
    term: u64,
    last_seen: HashMap<String, Instant>,
}

impl Manager {
    /// Opens (or creates) the Raft store under `dir` and starts the Raft node.
    pub async fn start(
        dir: &Path,
        node_id: &str,
        peers: Arc<Peers>,
        gossip: SharedGossip,
    ) -> anyhow::Result<Arc<Manager>> {
        std::fs::create_dir_all(dir)?;
        let (log_store, state_machine) = store::open(&dir.join("raft.redb"))?;
        let state = state_machine.shared_state();
        let applied = state_machine.applied_index();
        let config = openraft::Config {
            cluster_name: "shoal".into(),
            // Failover target 1.5 s (docs/SPECIFICATION.md): a new leader within one election
            // timeout of the old one going quiet, with room for one split vote.
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 500,
            ..Default::default()
        }
        .validate()?;
        let raft_id = raft_id_for(node_id);
        let network = Network { peers: peers.clone() };
        let raft = Raft::new(raft_id, Arc::new(config), network, log_store, state_machine).await?;
        let (stop, _) = watch::channel(false);
        let manager = Arc::new(Manager {
            raft,
            gossip,
            raft_id,
            node_id: node_id.to_string(),
            state,
            applied,
            peers,
            liveness: Mutex::new(Liveness::default()),
            network_map: Mutex::new(MapCache::default()),
            stop,
        });
        tokio::spawn(leader_loop(Arc::downgrade(&manager), manager.stop.subscribe()));
        tokio::spawn(orchestrator_loop(Arc::downgrade(&manager), manager.stop.subscribe()));
        Ok(manager)
    }

    /// Makes this node the single member of a new Raft group.
    pub async fn initialize(&self, addr: &str) -> anyhow::Result<()> {
        let mut members = BTreeMap::new();
        members.insert(self.raft_id, BasicNode::new(addr));
        self.raft.initialize(members).await?;
        Ok(())
    }

    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let _ = self.raft.shutdown().await;
    }

    /// A copy of the locally applied state (not necessarily current: see [`Self::read_barrier`]).
    pub fn state(&self) -> ClusterState {
        self.state.read().expect("state lock").clone()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether `raft_id` is a voter in the current membership.
    pub fn is_voter(&self, raft_id: NodeId) -> bool {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == raft_id)
    }

    /// The leader's manager address, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    /// Waits until some leader is known, for at most `wait`.
    async fn wait_for_leader(&self, wait: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(leader) = self.current_leader() {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A leader that has not heard from a quorum for several election timeouts has lost it.
    fn leader_lost_quorum(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.state == ServerState::Leader && metrics.millis_since_quorum_ack.is_none_or(|ms| ms > 2_000)
    }

    /// Commits `command` and returns its log index once it is applied on this node.
    pub async fn propose(&self, command: Command) -> ApiResult<u64> {
        let proposal = Proposal::now(command);
        let index = tokio::time::timeout(QUORUM_WAIT, retry_while_leaderless(|| self.propose_inner(proposal.clone())))
            .await
            .map_err(|_| ApiError::no_leader())??;
        self.wait_applied(index).await;
        Ok(index)
    }

    async fn propose_inner(&self, proposal: Proposal) -> ApiResult<u64> {
        if self.leader_lost_quorum() {
            return Err(ApiError::no_leader());
        }
        if self.wait_for_leader(QUORUM_WAIT).await.is_none() {
            return Err(ApiError::no_leader());
        }
        if self.is_leader() {
            return self.commit_local(proposal).await;
        }
        let addr = self.leader_addr().ok_or_else(ApiError::no_leader)?;
        let json = serde_json::to_vec(&proposal).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut client = self.peers.control(&addr).map_err(|_| ApiError::no_leader())?;
        let reply = client.propose(pb::Json { json }).await.map_err(|status| {
            self.peers.forget(&addr);
            tracing::debug!("forwarding a write to the leader at {addr} failed: {status}");
            ApiError::no_leader()
        })?;
        serde_json::from_slice::<ApiResult<u64>>(&reply.into_inner().json)
            .map_err(|e| ApiError::internal(format!("bad reply from the leader: {e}")))?
    }

    /// Commits on this node, which must be the leader (forwarded writes land here).
    pub async fn commit_local(&self, proposal: Proposal) -> ApiResult<u64> {
        match self.raft.client_write(proposal).await {
            Ok(response) => response.data.0.map(|()| response.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ApiError::no_leader()),
            Err(e) => Err(ApiError::internal(format!("raft: {e}"))),
        }
    }

    async fn wait_applied(&self, index: u64) {
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), applied.wait_for(|i| *i >= index)).await;
    }

    /// Makes the next local read at least as new as every write committed before this call.
    pub async fn read_barrier(&self) -> ApiResult<()> {
        let index = tokio::time::timeout(QUORUM_WAIT, retry_while_leaderless(|| self.read_index()))
            .await
            .map_err(|_| ApiError::no_leader())??;
        self.wait_applied(index).await;
        Ok(())
    }

    async fn read_index(&self) -> ApiResult<u64> {
        if self.leader_lost_quorum() {
            return Err(ApiError::no_leader());
        }
        if self.wait_for_leader(QUORUM_WAIT).await.is_none() {
            return Err(ApiError::no_leader());
        }
        if self.is_leader() {
            return self.leader_read_index().await;
        }
        let addr = self.leader_addr().ok_or_else(ApiError::no_leader)?;
        let mut client = self.peers.control(&addr).map_err(|_| ApiError::no_leader())?;
        let reply = client.read_index(pb::Empty {}).await.map_err(|_| {
            self.peers.forget(&addr);
            ApiError::no_leader()
        })?;
        Ok(reply.into_inner().index)
    }

    /// On the leader: confirms leadership with a quorum and returns the index to read at.
    pub async fn leader_read_index(&self) -> ApiResult<u64> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(_) => Err(ApiError::no_leader()),
        }
    }

    /// Adds a manager to the Raft group (on the leader).
    pub async fn add_voter(&self, node_id: &str, raft_id: NodeId, addr: &str) -> ApiResult<()> {
        if !self.is_leader() {
            let leader = self.leader_addr().ok_or_else(ApiError::no_leader)?;
            let mut client = self.peers.membership(&leader).map_err(|_| ApiError::no_leader())?;
            client
                .join(pb::JoinRaft { node_id: node_id.into(), raft_id, addr: addr.into() })
                .await
                .map_err(|s| ApiError::unavailable(s.message().to_string()))?;
            return Ok(());
        }
        let raft_err =
            |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| ApiError::internal(format!("raft: {e}"));
        self.raft.add_learner(raft_id, BasicNode::new(addr), true).await.map_err(raft_err)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])), false)
            .await
            .map_err(raft_err)?;
        self.propose(Command::SetRaftMember { id: node_id.into(), raft_id: Some(raft_id), manager_addr: addr.into() })
            .await?;
        Ok(())
    }

    /// Removes a manager from the Raft group (on the leader) and records it.
    pub async fn remove_voter(&self, node_id: &str, raft_id: NodeId) -> ApiResult<()> {
        if self.is_voter(raft_id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([raft_id])), false)
                .await
                .map_err(|e| ApiError::internal(format!("raft: {e}")))?;
        }
        self.propose(Command::SetRaftMember { id: node_id.into(), raft_id: None, manager_addr: String::new() }).await?;
        Ok(())
    }

    /// On the leader: a manager leaving the swarm on its own (`swarm leave --force`) is taken out
    /// of the Raft group and recorded as a down worker, so the rest keep their quorum.
    pub async fn leave_swarm(&self, node_id: &str) -> ApiResult<()> {
        if !self.is_leader() {
            return Err(ApiError::unavailable("not the leader"));
        }
        let state = self.state();
        let record = state.nodes.get(node_id).ok_or_else(|| ApiError::node_not_found(node_id))?;
        if let Some(raft_id) = record.raft_id {
            self.remove_voter(node_id, raft_id).await?;
        }
        let state = self.state();
        if let Some(record) = state.nodes.get(node_id) {
            let mut spec = record.node.spec.clone();
            spec.role = NodeRole::Worker;
            self.propose(Command::UpdateNodeSpec { id: node_id.into(), version: record.node.version.index, spec })
                .await?;
            let status = NodeStatus {
                state: NodeState::Down,
                message: "node left the swarm".into(),
                addr: record.node.status.addr.clone(),
            };
            self.propose(Command::SetNodeStatus { id: node_id.into(), status, description: None }).await?;
        }
        Ok(())
    }

    /// The manager addresses agents should know, from the replicated state.
    pub fn manager_peers(&self) -> Vec<pb::Peer> {
        let state = self.state.read().expect("state lock");
        state
            .nodes
            .values()
            .filter(|n| n.raft_id.is_some() && !n.manager_addr.is_empty())
            .map(|n| pb::Peer { node_id: n.node.id.clone(), addr: n.manager_addr.clone() })
            .collect()
    }

    /// Records a heartbeat from `node_id` (leader only) and answers it; followers forward.
    pub async fn heartbeat(&self, node_id: &str, req: pb::HeartbeatRequest) -> ApiResult<pb::HeartbeatResponse> {
        if !self.is_leader() {
            let addr = self.leader_addr().ok_or_else(ApiError::no_leader)?;
            let mut client = self.peers.control(&addr).map_err(|_| ApiError::no_leader())?;
            let reply = client
                .forward_heartbeat(pb::ForwardedHeartbeat { node_id: node_id.into(), heartbeat: Some(req) })
                .await
                .map_err(|s| {
                    self.peers.forget(&addr);
                    ApiError::unavailable(s.message().to_string())
                })?;
            return Ok(reply.into_inner());
        }
        self.liveness.lock().expect("liveness lock").last_seen.insert(node_id.to_string(), Instant::now());
        // Only this node's record is needed: no copy of the whole state per heartbeat.
        let (period, record, removed) = {
            let state = self.state.read().expect("state lock");
            (heartbeat_period(&state), state.nodes.get(node_id).cloned(), state.removed_nodes.contains(node_id))
        };
        let period_ms = period.as_millis() as u64;
        let Some(record) = record else {
            return Ok(pb::HeartbeatResponse {
                period_ms,
                managers: self.manager_peers(),
                removed,
                ..Default::default()
            });
        };
        // The agent does not know the CA's TLS info by heart; keep what the manager recorded.
        let description: Option<NodeDescription> = serde_json::from_slice::<NodeDescription>(&req.description)
            .ok()
            .map(|d| NodeDescription { tls_info: record.node.description.tls_info.clone(), ..d });
        let description_changed = description.as_ref().is_some_and(|d| *d != record.node.description);
        if record.node.status.state != NodeState::Ready || record.node.status.addr != req.addr || description_changed {
            let status = NodeStatus { state: NodeState::Ready, message: String::new(), addr: req.addr.clone() };
            let command = Command::SetNodeStatus { id: node_id.into(), status, description };
            if let Err(e) = self.propose(command).await {
                tracing::warn!("recording node {node_id} as ready failed: {e}");
            }
        }
        Ok(pb::HeartbeatResponse {
            period_ms,
            managers: self.manager_peers(),
            desired_role: record.node.spec.role.as_str().into(),
            raft_member: record.raft_id.is_some() && self.is_voter(record.raft_id.unwrap_or_default()),
            removed: false,
        })
    }

    /// The tasks a node must run or stop, answered once the state moved past `since` (or after
    /// `wait`, so agents re-poll and notice a lost manager).
    pub async fn assignments(&self, node_id: &str, since: u64, wait: Duration) -> (u64, Vec<Task>) {
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(wait, applied.wait_for(|i| *i > since)).await;
        let index = *applied.borrow();
        let state = self.state.read().expect("state lock");
        let tasks = state
            .tasks
            .values()
            .filter(|t| t.node_id == node_id && t.status.state >= TaskState::Assigned)
            .filter(|t| !(t.status.state.is_terminal() && t.desired_state >= TaskState::Shutdown))
            .cloned()
            .collect();
        (index, tasks)
    }

    /// The network map, answered once its content changed after `since` (or after `wait` with
    /// the current map, so nodes re-poll and notice a lost manager).
    pub async fn network_map(&self, since: u64, wait: Duration) -> Arc<crate::netmap::NetworkMap> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.applied.clone();
        let mut seen = since;
        loop {
            // Drop the watch's read guard at once: the map is computed under other locks.
            let moved = matches!(
                tokio::time::timeout_at(deadline, applied.wait_for(|i| *i > seen)).await.map(|r| r.is_ok()),
                Ok(true)
            );
            let (changed_at, map) = self.current_network_map();
            if changed_at > since || !moved {
                return map;
            }
            // The state moved on but nothing in the map did: keep waiting.
            seen = map.index;
        }
    }

    /// The map at the applied index, computed once per index whoever asks.
    fn current_network_map(&self) -> (u64, Arc<crate::netmap::NetworkMap>) {
        let index = *self.applied.borrow();
        let mut cache = self.network_map.lock().expect("network map lock");
        if let Some(map) = cache.map.as_ref().filter(|m| m.index == index) {
            return (cache.changed_at, map.clone());
        }
        let map = {
            let state = self.state.read().expect("state lock");
            Arc::new(crate::netmap::NetworkMap::from_state(&state, index))
        };
        if !cache.map.as_ref().is_some_and(|m| m.same_content(&map)) {
            cache.changed_at = index;
        }
        cache.map = Some(map.clone());
        (cache.changed_at, map)
    }

    /// Records task states reported by `node_id`, which may only report its own tasks.
    pub async fn report_task_status(&self, node_id: &str, updates: Vec<(String, TaskStatus)>) -> ApiResult<()> {
        {
            let state = self.state.read().expect("state lock");
            for (id, _) in &updates {
                if let Some(task) = state.tasks.get(id) {
                    if task.node_id != node_id {
                        return Err(ApiError::new(
                            crate::error::ErrorKind::Forbidden,
                            format!("task {id} is not assigned to node {node_id}"),
                        ));
                    }
                }
            }
        }
        if updates.is_empty() {
            return Ok(());
        }
        self.propose(Command::UpdateTaskStatus { updates }).await.map(|_| ())
    }

    /// One pass of the leader's duties: down detection and demotions.
    async fn leader_tick(&self) {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return;
        }
        // Liveness needs the nodes only, not the tasks.
        let (nodes, period) = {
            let state = self.state.read().expect("state lock");
            (state.nodes.clone(), heartbeat_period(&state))
        };
        let grace = period * HEARTBEAT_GRACE;
        // Gossip sees a death in about 2 s; heartbeats take 3 periods. A node is down when either
        // says so, unless it heartbeated after gossip declared it down.
        let gossip_down: HashMap<String, Instant> = match self.gossip.lock().expect("gossip lock").as_ref() {
            Some(gossip) => gossip
                .members()
                .into_iter()
                .filter(|m| m.state == mesh_agent::gossip::MemberState::Down)
                .map(|m| (m.node_id, m.since))
                .collect(),
            None => HashMap::new(),
        };
        let mut down = Vec::new();
        {
            let mut liveness = self.liveness.lock().expect("liveness lock");
            if liveness.term != metrics.current_term {
                liveness.term = metrics.current_term;
                liveness.last_seen.clear();
            }
            let now = Instant::now();
            for id in nodes.keys() {
                let seen = *liveness.last_seen.entry(id.clone()).or_insert(now);
                let record = &nodes[id];
                if record.node.status.state == NodeState::Down || id == &self.node_id {
                    continue;
                }
                if now.duration_since(seen) > grace {
                    down.push((id.clone(), "heartbeat failure"));
                } else if gossip_down.get(id).is_some_and(|since| seen < *since) {
                    down.push((id.clone(), "node is unreachable (gossip)"));
                }
            }
        }
        for (id, why) in down {
            let mut status = nodes[&id].node.status.clone();
            status.state = NodeState::Down;
            status.message = why.into();
            let _ = self.propose(Command::SetNodeStatus { id: id.clone(), status, description: None }).await;
        }
        for record in nodes.values() {
            if record.node.spec.role == NodeRole::Worker {
                if let Some(raft_id) = record.raft_id {
                    if let Err(e) = self.remove_voter(&record.node.id, raft_id).await {
                        tracing::warn!("demoting {} out of the Raft group failed: {e}", record.node.id);
                    }
                }
            }
        }
    }

    /// One orchestrator pass: automatic rollbacks first, then the reconciliation plan.
    async fn orchestrate_once(&self) {
        let state = self.state();
        for id in crate::orchestrator::rollback_needed(&state) {
            let command = Command::RollbackService { id: id.clone(), version: None, endpoint: None };
            if let Err(e) = self.propose(command).await {
                tracing::warn!("rolling back service {id} failed: {e}");
            }
        }
        let state = self.state();
        let plan = crate::orchestrator::reconcile(&state, chrono::Utc::now(), &mut crate::rpc::services::new_node_id);
        if plan.is_empty() {
            return;
        }
        if let Err(e) = self.propose(Command::ApplyPlan { plan: Box::new(plan) }).await {
            tracing::warn!("committing the orchestrator's plan failed: {e}");
        }
    }

    /// Nodes as the API shows them, with `ManagerStatus` computed from Raft and liveness.
    pub fn node_views(&self, state: &ClusterState) -> Vec<Node> {
        let leader = self.current_leader();
        state.nodes.values().map(|record| node_view(record, leader)).collect()
    }
}

/// Retries `attempt` while it fails only because no leader answers (an election in progress, a
/// leader that just stepped down); the caller bounds the whole by [`QUORUM_WAIT`].
async fn retry_while_leaderless<F, Fut>(mut attempt: F) -> ApiResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<u64>>,
{
    let no_leader = ApiError::no_leader();
    loop {
        match attempt().await {
            Err(e) if e == no_leader => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return other,
        }
    }
}

/// The API view of one node given the current leader's Raft ID.
pub fn node_view(record: &NodeRecord, leader: Option<NodeId>) -> Node {
    let mut node = record.node.clone();
    node.manager_status = record.raft_id.map(|raft_id| ManagerStatus {
        leader: leader == Some(raft_id),
        reachability: match record.node.status.state {
            NodeState::Ready => Reachability::Reachable,
            NodeState::Down | NodeState::Disconnected => Reachability::Unreachable,
            NodeState::Unknown => Reachability::Unknown,
        },
        addr: record.manager_addr.clone(),
    });
    node
}

pub fn heartbeat_period(state: &ClusterState) -> Duration {
    let ns = state.cluster.as_ref().map(|c| c.swarm.spec.dispatcher.heartbeat_period).unwrap_or(0);
    if ns <= 0 {
        Duration::from_secs(5)
    } else {
        Duration::from_nanos(ns as u64)
    }
}

/// On the leader: turns the desired state into tasks, after every change and at least every
/// 100 ms (restart delays and update delays are measured against the clock).
async fn orchestrator_loop(manager: std::sync::Weak<Manager>, mut stop: watch::Receiver<bool>) {
    let mut applied = match manager.upgrade() {
        Some(m) => m.applied.clone(),
        None => return,
    };
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = applied.changed() => {}
            _ = stop.changed() => return,
        }
        let Some(manager) = manager.upgrade() else { return };
        if manager.is_leader() {
            manager.orchestrate_once().await;
        }
        drop(manager);
        // At most one pass per 50 ms: a pass over 100k tasks costs ~100 ms of CPU, and a busy
        // stream of agent reports must not turn into back-to-back passes.
        tokio::time::sleep_until(started + Duration::from_millis(50)).await;
    }
}

async fn leader_loop(manager: std::sync::Weak<Manager>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
        let Some(manager) = manager.upgrade() else { return };
        manager.leader_tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_nonzero() {
        assert_eq!(raft_id_for("abc"), raft_id_for("abc"));
        assert_ne!(raft_id_for("abc"), raft_id_for("abd"));
        assert_ne!(raft_id_for(""), 0);
    }
}
