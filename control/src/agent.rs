//! The node's side of the dispatcher: heartbeats to a manager, and acting on what the cluster
//! wants of this node (promotion, demotion, removal).
//!
//! Every node runs this loop, managers included (they heartbeat to their own listener first), so
//! liveness is decided the same way for all nodes: by the leader, from missed heartbeats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::daemon::{describe_node, Core};
use crate::objects::{NodeRole, TlsInfo};
use crate::rpc::pb;

/// Retry quickly while no manager answers, but never busy-loop.
const RETRY: Duration = Duration::from_millis(500);

pub async fn run(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut preferred = 0usize;
    loop {
        let wait = match beat(&core, &mut preferred).await {
            Ok(reply) => {
                let period = Duration::from_millis(reply.period_ms.max(100));
                if let Err(e) = act_on(&core, &reply).await {
                    tracing::warn!("acting on the dispatcher's answer failed: {e:#}");
                }
                period
            }
            Err(e) => {
                tracing::debug!("heartbeat failed: {e:#}");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Sends one heartbeat, trying this node's own manager first, then every known manager.
async fn beat(core: &Arc<Core>, preferred: &mut usize) -> anyhow::Result<pb::HeartbeatResponse> {
    let local = core.local().ok_or_else(|| anyhow::anyhow!("not in a swarm"))?;
    let peers = core.peers().ok_or_else(|| anyhow::anyhow!("no identity"))?;
    let mut candidates: Vec<String> = Vec::new();
    if core.manager().is_some() {
        candidates.push(local.manager_addr());
    }
    let known: Vec<String> = local.managers.iter().map(|(_, addr)| addr.clone()).collect();
    for i in 0..known.len() {
        let addr = &known[(*preferred + i) % known.len()];
        if !candidates.contains(addr) {
            candidates.push(addr.clone());
        }
    }
    let description = serde_json::to_vec(&describe_node(TlsInfo::default()))?;
    let mut last = anyhow::anyhow!("no manager known");
    for addr in candidates {
        let mut client = peers.dispatcher(&addr)?;
        let mut request = tonic::Request::new(pb::HeartbeatRequest {
            description: description.clone(),
            addr: local.advertise_addr.clone(),
        });
        request.set_timeout(Duration::from_secs(3));
        match client.heartbeat(request).await {
            Ok(reply) => {
                if let Some(pos) = known.iter().position(|a| *a == addr) {
                    *preferred = pos;
                }
                return Ok(reply.into_inner());
            }
            Err(status) => {
                peers.forget(&addr);
                last = anyhow::anyhow!("heartbeat to {addr}: {}", status.message());
            }
        }
    }
    Err(last)
}

/// The port every node gossips on, as Docker's 7946.
pub const GOSSIP_PORT: u16 = 7946;

/// Joins the SWIM gossip on 7946 with the managers as seeds. Without gossip the node still
/// works (heartbeats decide liveness), only slower to notice deaths: a failure is logged, not fatal.
pub(crate) async fn start_gossip(core: Arc<Core>) {
    let Some(local) = core.local() else { return };
    let Ok(ip) = local.advertise_addr.parse::<std::net::IpAddr>() else { return };
    let bind = std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), GOSSIP_PORT);
    let config =
        mesh_agent::gossip::GossipConfig::new(&local.node_id, bind, std::net::SocketAddr::new(ip, GOSSIP_PORT));
    match mesh_agent::gossip::Gossip::start(config).await {
        Ok(gossip) => {
            gossip.join(&gossip_seeds(&local.managers));
            if let Some(old) = core.gossip.lock().expect("gossip lock").replace(gossip) {
                tokio::spawn(old.shutdown());
            }
        }
        Err(e) => tracing::warn!("gossip on {bind} is unavailable, liveness falls back to heartbeats: {e:#}"),
    }
}

fn gossip_seeds(managers: &[(String, String)]) -> Vec<std::net::SocketAddr> {
    managers
        .iter()
        .filter_map(|(_, addr)| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| std::net::SocketAddr::new(addr.ip(), GOSSIP_PORT))
        .collect()
}

async fn act_on(core: &Arc<Core>, reply: &pb::HeartbeatResponse) -> anyhow::Result<()> {
    let Some(mut local) = core.local() else { return Ok(()) };
    if reply.removed {
        tracing::warn!("this node was removed from the swarm; leaving it");
        let _guard = core.lifecycle.lock().await;
        core.forget_swarm().await;
        return Ok(());
    }
    let managers: Vec<(String, String)> = reply.managers.iter().map(|p| (p.node_id.clone(), p.addr.clone())).collect();
    if !managers.is_empty() && managers != local.managers {
        if let Some(gossip) = core.gossip.lock().expect("gossip lock").as_ref() {
            gossip.join(&gossip_seeds(&managers));
        }
        local.managers = managers;
        core.save_local(&local)?;
    }
    match (reply.desired_role.as_str(), local.role) {
        ("manager", NodeRole::Worker) => promote(core).await,
        ("worker", NodeRole::Manager) if !reply.raft_member => demote(core).await,
        _ => Ok(()),
    }
}

/// The cluster wants this worker to be a manager: get a manager certificate, start Raft empty
/// and ask the leader to add this node as a voter.
async fn promote(core: &Arc<Core>) -> anyhow::Result<()> {
    let _guard = core.lifecycle.lock().await;
    tracing::info!("promoted: becoming a manager");
    if core.renew_certificate().await? != NodeRole::Manager {
        return Ok(());
    }
    core.start_server().await?;
    core.stop_manager(true).await;
    core.start_manager().await?;
    join_raft(core).await
}

/// Asks a known manager to add this node to the Raft group (it forwards to the leader).
pub(crate) async fn join_raft(core: &Arc<Core>) -> anyhow::Result<()> {
    let local = core.local().ok_or_else(|| anyhow::anyhow!("not in a swarm"))?;
    let peers = core.peers().ok_or_else(|| anyhow::anyhow!("no identity"))?;
    let raft_id = crate::manager::raft_id_for(&local.node_id);
    let mut last = anyhow::anyhow!("no manager known");
    for (_, addr) in local.managers.iter().filter(|(id, _)| *id != local.node_id) {
        let mut client = peers.membership(addr)?;
        let request = pb::JoinRaft { node_id: local.node_id.clone(), raft_id, addr: local.manager_addr() };
        match client.join(request).await {
            Ok(_) => return Ok(()),
            Err(status) => last = anyhow::anyhow!("joining the Raft group through {addr}: {}", status.message()),
        }
    }
    Err(last)
}

/// The cluster demoted this manager and has taken it out of the Raft group: stop the manager,
/// delete its Raft files and take a worker certificate.
async fn demote(core: &Arc<Core>) -> anyhow::Result<()> {
    let _guard = core.lifecycle.lock().await;
    tracing::info!("demoted: stopping the manager");
    core.stop_manager(true).await;
    core.renew_certificate().await?;
    core.start_server().await?;
    Ok(())
}
