//! A node's swarm lifecycle: init, join, leave, restart, promotion and demotion.
//!
//! What a node must remember lives under `<data-root>/swarm/`: `node.json` (identity, role,
//! addresses, known managers), `certificates/` (root CA, node certificate and key) and, on
//! managers, `raft/` (the Raft log and state in redb). A restarted daemon reads these and
//! resumes: a manager rejoins the Raft group from its files, a worker reconnects.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::ca::{self, NodeIdentity, NodeKey, RootCa};
use crate::error::{ApiError, ApiResult};
use crate::manager::{self, Manager};
use crate::objects::{
    JoinTokens, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Platform, Resources, Swarm,
    SwarmSpec, Version,
};
use crate::rpc::peers::Peers;
use crate::rpc::{pb, server};
use crate::state::{ClusterRecord, Command, NodeRecord};
use crate::{tls, token};

/// How `shoal daemon` was started.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Everything the node keeps lives under here (`swarm/` for certificates and Raft).
    pub data_root: PathBuf,
    /// Resolvers the tasks' embedded DNS forwards to; empty: the host's resolv.conf.
    pub dns_upstreams: Vec<IpAddr>,
    /// A bpf filesystem for the mesh's pins; `None`: /sys/fs/bpf if it is one, else one of our own.
    pub bpffs: Option<PathBuf>,
    /// The cgroup2 group (a path in the hierarchy) whose processes in this node's network
    /// namespace reach published ports on the node's address and on loopback; `None`: `/`,
    /// every process of the node.
    pub host_cgroup: Option<PathBuf>,
}

/// The engine version nodes report (`ENGINE VERSION` in `node ls`).
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub const DEFAULT_MANAGER_PORT: u16 = 2377;

/// What a node remembers about its membership (`swarm/node.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LocalState {
    pub node_id: String,
    pub cluster_id: String,
    /// The role of the node's current certificate.
    pub role: NodeRole,
    /// The IP other nodes reach this node at.
    pub advertise_addr: String,
    /// Where the manager listener binds (`ip:port`).
    pub listen_addr: String,
    /// Managers this node knows, `(node ID, ip:port)`; refreshed by every heartbeat.
    pub managers: Vec<(String, String)>,
}

impl LocalState {
    /// The `ip:port` other managers reach this node's manager listener at.
    pub fn manager_addr(&self) -> String {
        let port = self.listen_addr.rsplit(':').next().unwrap_or("2377");
        join_host_port(&self.advertise_addr, port)
    }
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The running parts of a node in a swarm, swapped as a whole on init/join/leave.
pub struct Core {
    pub data_root: PathBuf,
    pub config: DaemonConfig,
    local: RwLock<Option<LocalState>>,
    root_ca_pem: RwLock<Option<String>>,
    manager: RwLock<Option<Arc<Manager>>>,
    peers: RwLock<Option<Arc<Peers>>>,
    server_stop: Mutex<Option<watch::Sender<bool>>>,
    agent_stop: Mutex<Option<watch::Sender<bool>>>,
    /// Serializes init/join/leave/promotion so two of them never interleave.
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    /// Made on first use: it mounts cgroup hierarchies, which a node that never runs a task
    /// should not need.
    runtime: Mutex<Option<Arc<mesh_agent::runtime::Runtime>>>,
    /// The node's overlay and resolver, made when the agent starts (it needs the node's identity
    /// and address) and dropped when the node leaves the swarm.
    node_network: Mutex<Option<Arc<crate::node_network::NodeNetwork>>>,
    /// SWIM membership on 7946, shared with the manager's liveness monitor.
    pub(crate) gossip: crate::manager::SharedGossip,
}

impl Core {
    pub fn manager(&self) -> Option<Arc<Manager>> {
        self.manager.read().expect("manager lock").clone()
    }

    pub fn root_ca_pem(&self) -> Option<String> {
        self.root_ca_pem.read().expect("ca lock").clone()
    }

    pub fn local(&self) -> Option<LocalState> {
        self.local.read().expect("local lock").clone()
    }

    /// Where task directories (state, logs) live.
    pub fn tasks_dir(&self) -> PathBuf {
        self.data_root.join("tasks")
    }

    /// The task runtime, created on first use.
    pub fn runtime(&self) -> anyhow::Result<Arc<mesh_agent::runtime::Runtime>> {
        let mut slot = self.runtime.lock().expect("runtime lock");
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = Arc::new(mesh_agent::runtime::Runtime::new(&self.tasks_dir())?);
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// The node's network agent, created on first use.
    pub fn node_network(&self) -> anyhow::Result<Arc<crate::node_network::NodeNetwork>> {
        let mut slot = self.node_network.lock().expect("node network lock");
        if let Some(network) = slot.as_ref() {
            return Ok(network.clone());
        }
        let network = Arc::new(crate::node_network::NodeNetwork::new(self)?);
        *slot = Some(network.clone());
        Ok(network)
    }

    /// The node's network agent if it exists (releasing a task must not create one).
    pub fn node_network_if_started(&self) -> Option<Arc<crate::node_network::NodeNetwork>> {
        self.node_network.lock().expect("node network lock").clone()
    }

    pub(crate) fn peers(&self) -> Option<Arc<Peers>> {
        self.peers.read().expect("peers lock").clone()
    }

    fn swarm_dir(&self) -> PathBuf {
        self.data_root.join("swarm")
    }

    fn cert_dir(&self) -> PathBuf {
        self.swarm_dir().join("certificates")
    }

    fn raft_dir(&self) -> PathBuf {
        self.swarm_dir().join("raft")
    }

    pub(crate) fn save_local(&self, local: &LocalState) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.swarm_dir())?;
        write_atomic(&self.swarm_dir().join("node.json"), &serde_json::to_vec_pretty(local)?)?;
        *self.local.write().expect("local lock") = Some(local.clone());
        Ok(())
    }

    pub(crate) fn save_certs(&self, root_ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let dir = self.cert_dir();
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("swarm-root-ca.crt"), root_ca_pem.as_bytes())?;
        write_atomic(&dir.join("swarm-node.crt"), cert_pem.as_bytes())?;
        write_atomic(&dir.join("swarm-node.key"), key_pem.as_bytes())?;
        *self.root_ca_pem.write().expect("ca lock") = Some(root_ca_pem.to_string());
        Ok(())
    }

    fn load_certs(&self) -> anyhow::Result<(String, String, String)> {
        let dir = self.cert_dir();
        Ok((
            std::fs::read_to_string(dir.join("swarm-root-ca.crt"))?,
            std::fs::read_to_string(dir.join("swarm-node.crt"))?,
            std::fs::read_to_string(dir.join("swarm-node.key"))?,
        ))
    }

    /// Points the RPC clients (and the server, when one runs) at the certificates on disk.
    pub(crate) fn install_identity(&self) -> anyhow::Result<Arc<Peers>> {
        let (root, cert, key) = self.load_certs()?;
        *self.root_ca_pem.write().expect("ca lock") = Some(root.clone());
        let config = tls::client_config(&root, Some((&cert, &key)))?;
        let mut peers = self.peers.write().expect("peers lock");
        match peers.as_ref() {
            Some(existing) => {
                existing.set_config(config);
                Ok(existing.clone())
            }
            None => {
                let fresh = Peers::new(config);
                *peers = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    /// (Re)starts the 2377 listener with the node's current certificate. Every node serves it:
    /// Agent RPCs everywhere, manager RPCs only where a manager runs.
    pub(crate) async fn start_server(self: &Arc<Self>) -> anyhow::Result<()> {
        self.stop_server();
        let local = self.local().ok_or_else(|| anyhow::anyhow!("not in a swarm"))?;
        let (root, cert, key) = self.load_certs()?;
        let server_config = tls::server_config(&root, &cert, &key)?;
        let listen: SocketAddr = local.listen_addr.parse()?;
        let stop = server::spawn(listen, server_config, self.clone()).await?;
        *self.server_stop.lock().expect("server lock") = Some(stop);
        Ok(())
    }

    pub(crate) fn stop_server(&self) {
        if let Some(stop) = self.server_stop.lock().expect("server lock").take() {
            let _ = stop.send(true);
        }
    }

    /// Starts the Raft node (from its files if any).
    pub(crate) async fn start_manager(self: &Arc<Self>) -> anyhow::Result<Arc<Manager>> {
        let local = self.local().ok_or_else(|| anyhow::anyhow!("not in a swarm"))?;
        let peers = self.install_identity()?;
        let manager = Manager::start(&self.raft_dir(), &local.node_id, peers, self.gossip.clone()).await?;
        *self.manager.write().expect("manager lock") = Some(manager.clone());
        Ok(manager)
    }

    /// Stops the Raft node; `wipe` also deletes the Raft files.
    pub(crate) async fn stop_manager(&self, wipe: bool) {
        let manager = self.manager.write().expect("manager lock").take();
        if let Some(manager) = manager {
            manager.shutdown().await;
        }
        if wipe {
            let _ = std::fs::remove_dir_all(self.raft_dir());
        }
    }

    pub(crate) fn start_agent(self: &Arc<Self>) {
        let (tx, rx) = watch::channel(false);
        if let Some(old) = self.agent_stop.lock().expect("agent lock").replace(tx) {
            let _ = old.send(true);
        }
        tokio::spawn(crate::agent::start_gossip(self.clone()));
        tokio::spawn(crate::agent::run(self.clone(), rx.clone()));
        match self.node_network() {
            Ok(network) => {
                tokio::spawn(crate::node_network::run(self.clone(), network, rx.clone()));
            }
            Err(e) => tracing::error!("the node's network agent cannot start: {e:#}"),
        }
        tokio::spawn(crate::executor::run(self.clone(), rx));
    }

    fn stop_agent(&self) {
        if let Some(stop) = self.agent_stop.lock().expect("agent lock").take() {
            let _ = stop.send(true);
        }
        self.node_network.lock().expect("node network lock").take();
        if let Some(gossip) = self.gossip.lock().expect("gossip lock").take() {
            tokio::spawn(gossip.shutdown());
        }
    }

    /// Stops everything and forgets the swarm (certificates, Raft, identity).
    pub(crate) async fn forget_swarm(&self) {
        self.stop_agent();
        self.stop_server();
        self.stop_manager(true).await;
        // Leaving the swarm takes its tasks along, as Docker removes a swarm node's containers.
        let runtime = self.runtime.lock().expect("runtime lock").clone();
        if let Some(runtime) = runtime {
            runtime.stop_all(std::time::Duration::from_secs(10)).await;
            for id in runtime.list() {
                let _ = runtime.remove(&id).await;
            }
        }
        *self.peers.write().expect("peers lock") = None;
        *self.root_ca_pem.write().expect("ca lock") = None;
        *self.local.write().expect("local lock") = None;
        let _ = std::fs::remove_dir_all(self.swarm_dir());
    }

    /// Requests a certificate for this node's current role from a manager and installs it.
    pub(crate) async fn renew_certificate(&self) -> anyhow::Result<NodeRole> {
        let local = self.local().ok_or_else(|| anyhow::anyhow!("not in a swarm"))?;
        let peers = self.peers().ok_or_else(|| anyhow::anyhow!("no identity"))?;
        let (root, _, _) = self.load_certs()?;
        let key = NodeKey::generate()?;
        let mut last_err = anyhow::anyhow!("no manager known");
        for (_, addr) in &local.managers {
            let mut client = peers.node_ca(addr)?;
            match client.renew_node_certificate(pb::RenewRequest { csr_pem: key.csr_pem.clone() }).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    self.save_certs(&root, &reply.cert_pem, &key.key_pem)?;
                    self.install_identity()?;
                    let role = if reply.role == "manager" { NodeRole::Manager } else { NodeRole::Worker };
                    let mut local = local.clone();
                    local.role = role;
                    self.save_local(&local)?;
                    return Ok(role);
                }
                Err(status) => last_err = anyhow::anyhow!("renewing the certificate at {addr}: {}", status.message()),
            }
        }
        Err(last_err)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The node: what `shoal daemon` runs and the Engine API calls into.
pub struct Daemon {
    pub(crate) core: Arc<Core>,
}

impl Daemon {
    /// Opens the data root and, if the node was in a swarm, resumes it.
    pub async fn start(config: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        std::fs::create_dir_all(&config.data_root)?;
        let core = Arc::new(Core {
            data_root: config.data_root.clone(),
            config: config.clone(),
            local: RwLock::new(None),
            root_ca_pem: RwLock::new(None),
            manager: RwLock::new(None),
            peers: RwLock::new(None),
            server_stop: Mutex::new(None),
            agent_stop: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            runtime: Mutex::new(None),
            node_network: Mutex::new(None),
            gossip: Arc::new(Mutex::new(None)),
        });
        let node_json = core.swarm_dir().join("node.json");
        if node_json.exists() {
            let local: LocalState = serde_json::from_slice(&std::fs::read(&node_json)?)?;
            tracing::info!(node_id = %local.node_id, role = local.role.as_str(), "resuming swarm membership");
            *core.local.write().expect("local lock") = Some(local.clone());
            core.install_identity()?;
            core.start_server().await?;
            if local.role == NodeRole::Manager {
                core.start_manager().await?;
            }
            core.start_agent();
        }
        Ok(Arc::new(Daemon { core }))
    }

    /// Stops the node's swarm parts (not its membership) for a clean daemon exit.
    pub async fn shutdown(&self) {
        self.core.stop_agent();
        self.core.stop_server();
        self.core.stop_manager(false).await;
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

/// The description a node reports about itself.
pub fn describe_node(tls_info: crate::objects::TlsInfo) -> NodeDescription {
    let host = mesh_agent::host::describe();
    NodeDescription {
        hostname: host.hostname,
        platform: Platform { architecture: host.architecture, os: host.os },
        resources: Resources { nano_cpus: host.ncpu as i64 * 1_000_000_000, memory_bytes: host.mem_total as i64 },
        engine: crate::objects::EngineDescription {
            engine_version: ENGINE_VERSION.to_string(),
            labels: Default::default(),
            plugins: ["overlay"]
                .iter()
                .map(|n| crate::objects::EnginePlugin { kind: "Network".into(), name: n.to_string() })
                .collect(),
        },
        tls_info,
    }
}

/// Resolves `--advertise-addr` (IP, `IP:port`, interface name or empty) to an IP, as Docker does.
pub fn resolve_advertise_addr(advertise: &str, listen_addr: &str) -> ApiResult<String> {
    let host = advertise.rsplit_once(':').map(|(h, _)| h).filter(|h| !h.is_empty()).unwrap_or(advertise);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !host.is_empty() {
        if host.parse::<IpAddr>().is_ok() {
            return Ok(host.to_string());
        }
        let found: Vec<_> = mesh_agent::host::ipv4_addrs().into_iter().filter(|(name, _)| name == host).collect();
        return match found.as_slice() {
            [(_, ip)] => Ok(ip.to_string()),
            [] => Err(ApiError::invalid(format!(
                "advertise address must be a non-zero IP address or network interface (with optional port number)"
            ))),
            _ => Err(ApiError::invalid(format!("interface {host} has more than one IPv4 address"))),
        };
    }
    let listen_host = listen_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen_addr);
    if let Ok(ip) = listen_host.parse::<IpAddr>() {
        if !ip.is_unspecified() {
            return Ok(ip.to_string());
        }
    }
    let addrs = mesh_agent::host::ipv4_addrs();
    match addrs.as_slice() {
        [(_, ip)] => Ok(ip.to_string()),
        [] => Err(ApiError::invalid("could not find the system's IP address - specify one with --advertise-addr")),
        many => Err(ApiError::invalid(format!(
            "could not choose an IP address to advertise since this system has multiple addresses on different \
             interfaces ({}) - specify one with --advertise-addr",
            many.iter().map(|(n, ip)| format!("{ip} on {n}")).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

/// Normalizes `--listen-addr` (default `0.0.0.0:2377`; a bare IP gets the default port).
pub fn normalize_listen_addr(listen: &str) -> ApiResult<String> {
    let listen = if listen.is_empty() { "0.0.0.0:2377" } else { listen };
    if listen.parse::<SocketAddr>().is_ok() {
        return Ok(listen.to_string());
    }
    if let Ok(ip) = listen.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_MANAGER_PORT).to_string());
    }
    Err(ApiError::invalid(format!("invalid listen address {listen}")))
}

/// Builds the first objects of a new swarm.
pub(crate) fn new_cluster(
    req: &crate::objects::InitRequest,
    ca: &RootCa,
    node_id: &str,
    local: &LocalState,
) -> (ClusterRecord, NodeRecord) {
    let now = chrono::Utc::now();
    let digest = ca::digest(ca.cert_der());
    let mut spec = req.spec.clone().unwrap_or_default();
    if spec.name.is_empty() {
        spec.name = "default".into();
    }
    let defaults = SwarmSpec::default();
    if spec.dispatcher.heartbeat_period <= 0 {
        spec.dispatcher.heartbeat_period = defaults.dispatcher.heartbeat_period;
    }
    if spec.ca_config.node_cert_expiry <= 0 {
        spec.ca_config.node_cert_expiry = defaults.ca_config.node_cert_expiry;
    }
    if spec.orchestration.task_history_retention_limit.is_none() {
        spec.orchestration.task_history_retention_limit = defaults.orchestration.task_history_retention_limit;
    }
    if spec.raft.snapshot_interval == 0 {
        spec.raft = defaults.raft.clone();
    }
    let swarm = Swarm {
        id: local.cluster_id.clone(),
        version: Version::default(),
        created_at: now,
        updated_at: now,
        spec,
        tls_info: ca.tls_info(),
        root_rotation_in_progress: false,
        data_path_port: if req.data_path_port == 0 { 4789 } else { req.data_path_port },
        default_addr_pool: if req.default_addr_pool.is_empty() {
            vec!["10.0.0.0/8".into()]
        } else {
            req.default_addr_pool.clone()
        },
        subnet_size: if req.subnet_size == 0 { 24 } else { req.subnet_size },
        join_tokens: JoinTokens { worker: token::generate(&digest), manager: token::generate(&digest) },
    };
    let node = NodeRecord {
        node: Node {
            id: node_id.to_string(),
            version: Version::default(),
            created_at: now,
            updated_at: now,
            spec: NodeSpec {
                name: None,
                labels: Default::default(),
                role: NodeRole::Manager,
                availability: req.availability.unwrap_or_default(),
            },
            description: describe_node(ca.tls_info()),
            status: NodeStatus { state: NodeState::Ready, message: String::new(), addr: local.advertise_addr.clone() },
            manager_status: None,
        },
        raft_id: Some(manager::raft_id_for(node_id)),
        manager_addr: local.manager_addr(),
    };
    (ClusterRecord { swarm, ca_cert_pem: ca.cert_pem().to_string(), ca_key_pem: ca.key_pem().to_string() }, node)
}

/// Issues this node's own certificate (for `init`, where the node is its own CA).
pub(crate) fn self_signed_identity(ca: &RootCa, identity: &NodeIdentity) -> anyhow::Result<(String, String)> {
    let key = NodeKey::generate()?;
    let cert = ca.issue(&key.csr_pem, identity, ca::DEFAULT_NODE_CERT_VALIDITY)?;
    Ok((cert, key.key_pem))
}

/// The commands a `--force-new-cluster` survivor proposes: everything it had, with itself as the
/// only Raft member.
pub(crate) fn restore_command(mut state: crate::state::ClusterState, node_id: &str, manager_addr: &str) -> Command {
    for record in state.nodes.values_mut() {
        if record.node.id == node_id {
            record.raft_id = Some(manager::raft_id_for(node_id));
            record.manager_addr = manager_addr.to_string();
            record.node.spec.role = NodeRole::Manager;
        } else if record.raft_id.is_some() || record.node.spec.role == NodeRole::Manager {
            // The other managers are no longer Raft members: they come back as workers.
            record.raft_id = None;
            record.node.spec.role = NodeRole::Worker;
            record.node.status.state = NodeState::Unknown;
        }
    }
    Command::Restore { state: Box::new(state) }
}

/// Waits `wait` at most for `f` to say yes, checking every 50 ms.
pub(crate) async fn wait_until(wait: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_defaults_like_docker() {
        assert_eq!(normalize_listen_addr("").unwrap(), "0.0.0.0:2377");
        assert_eq!(normalize_listen_addr("198.18.0.1").unwrap(), "198.18.0.1:2377");
        assert_eq!(normalize_listen_addr("198.18.0.1:4000").unwrap(), "198.18.0.1:4000");
        assert!(normalize_listen_addr("nope:x").is_err());
    }

    #[test]
    fn advertise_addr_takes_ip_or_ip_port() {
        assert_eq!(resolve_advertise_addr("198.18.0.1", "0.0.0.0:2377").unwrap(), "198.18.0.1");
        assert_eq!(resolve_advertise_addr("198.18.0.1:2377", "0.0.0.0:2377").unwrap(), "198.18.0.1");
        assert_eq!(resolve_advertise_addr("", "198.18.0.9:2377").unwrap(), "198.18.0.9");
        assert!(resolve_advertise_addr("no-such-interface0", "0.0.0.0:2377").is_err());
    }

    #[test]
    fn manager_addr_uses_the_advertise_ip_and_listen_port() {
        let local = LocalState {
            node_id: "n".into(),
            cluster_id: "c".into(),
            role: NodeRole::Manager,
            advertise_addr: "198.18.0.1".into(),
            listen_addr: "0.0.0.0:4000".into(),
            managers: vec![],
        };
        assert_eq!(local.manager_addr(), "198.18.0.1:4000");
    }
}
