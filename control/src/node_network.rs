//! The node's network agent: keeps this node's overlay data plane and embedded DNS in step with
//! the cluster's network map, and wires each local task into its networks.
//!
//! The map comes from the managers by long poll (`Dispatcher.NetworkMap`); every node derives
//! what it needs from the same map: the overlay networks with a local task, every endpoint on
//! them (FDB and neighbour entries), and the names the resolver answers. Tasks are wired by the
//! executor through [`NodeNetwork::prepare`] before they start and [`NodeNetwork::release`] after
//! they exit; a restarted agent re-wires survivors with [`NodeNetwork::adopt`] (idempotent, so
//! working interfaces are never torn down).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mesh_agent::overlay::{
    node_bridge_mac, BridgeAddress, OverlayNetwork, RemoteEndpoint, TaskInterface, WantedOverlay,
};
use tokio::sync::watch;

use crate::daemon::Core;
use crate::netmap::{MapEndpoint, NetworkMap};
use crate::objects::service::{EndpointMode, Task, TaskState};

/// How long a task start waits for the map to know the task's networks.
const MAP_WAIT: Duration = Duration::from_secs(15);
/// How long a stopping task waits for its own node to see it draining (the map long poll
/// answers within milliseconds of the commit; this only bounds a partitioned node).
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// After this node saw the drain, the time allowed for every other node to apply the same map.
const DRAIN_SETTLE: Duration = Duration::from_millis(300);

pub struct NodeNetwork {
    node_id: String,
    cluster_id: String,
    underlay_addr: Ipv4Addr,
    netns_dir: PathBuf,
    data_root: PathBuf,
    bpffs: Option<PathBuf>,
    /// The tasks' cgroup2 group, where the service-VIP socket programs attach.
    task_cgroup: PathBuf,
    /// Where the host socket programs attach (`--host-cgroup`).
    host_cgroup: PathBuf,
    netns_cookie: u64,
    /// Loaded once the ingress network's bridge exists (the routing mesh forwards into it).
    mesh: tokio::sync::OnceCell<Arc<crate::node_mesh::NodeMesh>>,
    map: watch::Sender<Arc<NetworkMap>>,
    /// Made when the first map arrives (it carries the data-path port).
    overlay: tokio::sync::OnceCell<Arc<mesh_agent::overlay::Overlay>>,
    pub resolver: dns::Resolver,
    /// Local tasks wired into networks, with the network IDs their resolver answers for.
    wired: Mutex<BTreeMap<String, Vec<String>>>,
}

impl NodeNetwork {
    pub fn new(core: &Core) -> anyhow::Result<NodeNetwork> {
        let local = core.local().context("not part of a swarm")?;
        let underlay_addr: Ipv4Addr = local
            .advertise_addr
            .parse()
            .with_context(|| format!("the data-path address {} is not an IPv4 address", local.advertise_addr))?;
        let upstreams = if core.config.dns_upstreams.is_empty() {
            // systemd-resolved's stub (127.0.0.53) is useless from inside a task's namespace:
            // prefer the list of real upstreams it keeps, as Docker does.
            let resolved = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let from_host = dns::upstreams_from_resolv_conf(&host);
            match resolved {
                Some(text) if from_host.is_empty() => dns::upstreams_from_resolv_conf(&text),
                _ => from_host,
            }
        } else {
            core.config.dns_upstreams.iter().map(|ip| std::net::SocketAddr::new(*ip, 53)).collect()
        };
        let resolver = dns::Resolver::new(dns::ResolverConfig { upstreams, ..Default::default() });
        let (map, _) = watch::channel(Arc::new(NetworkMap::default()));
        Ok(NodeNetwork {
            node_id: local.node_id,
            cluster_id: local.cluster_id,
            underlay_addr,
            netns_dir: core.data_root.join("netns"),
            data_root: core.data_root.clone(),
            bpffs: core.config.bpffs.clone(),
            task_cgroup: core.runtime()?.task_cgroup_parent().to_path_buf(),
            host_cgroup: core.runtime()?.cgroup2_dir(core.config.host_cgroup.as_deref().unwrap_or(Path::new("/"))),
            // Read once here, on a thread of the daemon's own namespace (task wiring enters
            // other namespaces on threads of its own).
            netns_cookie: mesh_ebpf::netns_cookie().context("read the node's network namespace cookie")?,
            mesh: tokio::sync::OnceCell::new(),
            map,
            overlay: tokio::sync::OnceCell::new(),
            resolver,
            wired: Mutex::new(BTreeMap::new()),
        })
    }

    /// The node's load balancer, once loaded.
    pub fn mesh_if_loaded(&self) -> Option<Arc<crate::node_mesh::NodeMesh>> {
        self.mesh.get().cloned()
    }

    pub fn map(&self) -> Arc<NetworkMap> {
        self.map.borrow().clone()
    }

    async fn overlay(&self, data_path_port: u16) -> anyhow::Result<Arc<mesh_agent::overlay::Overlay>> {
        let addr = self.underlay_addr;
        self.overlay
            .get_or_try_init(|| async move {
                let underlay = mesh_agent::overlay::detect_underlay(addr, data_path_port)?;
                tracing::info!(
                    addr = %underlay.addr, ifname = %underlay.ifname, mtu = underlay.mtu, port = underlay.vxlan_port,
                    "overlay underlay"
                );
                Ok::<_, anyhow::Error>(Arc::new(mesh_agent::overlay::Overlay::new(underlay, None)?))
            })
            .await
            .cloned()
    }

    /// Applies a new map: DNS first (cheap, what users notice), then the overlay, then the
    /// load balancer.
    async fn apply(&self, map: Arc<NetworkMap>) -> anyhow::Result<()> {
        self.resolver.set_records(dns_records(&map));
        self.map.send_replace(map.clone());
        let overlay = self.overlay(map.data_path_port).await?;
        overlay.sync(&wanted_overlay(&map, &self.node_id)).await?;
        if let Some(mesh) = self.mesh(&overlay, &map).await? {
            mesh.program(&map, &self.node_id)?;
            if let Some(ingress) = map.networks.iter().find(|n| n.ingress) {
                self.attach_wired(&overlay, &mesh, &ingress.id).await;
            }
        }
        Ok(())
    }

    /// Puts the reply-steering programs on the ingress veths of every wired task that does not
    /// have them yet. A task wired while the mesh was being loaded is attached either by `wire`
    /// (it saw the mesh) or here (the mesh saw it); running on every map also retries an
    /// attachment that failed. Without them a task's replies to routed clients leave through
    /// this node's own stack and the client never sees them.
    async fn attach_wired(
        &self,
        overlay: &mesh_agent::overlay::Overlay,
        mesh: &crate::node_mesh::NodeMesh,
        ingress_id: &str,
    ) {
        let unattached: Vec<String> =
            self.wired.lock().expect("wired lock").keys().filter(|t| !mesh.has_task(t)).cloned().collect();
        for task_id in unattached {
            let attached = match ingress_veths(overlay, &task_id, ingress_id).await {
                Ok(veths) => mesh.attach_task(&task_id, &veths),
                Err(e) => Err(e),
            };
            if let Err(e) = attached {
                tracing::warn!(task = %task_id, "routing mesh: cannot attach to the task's veth: {e:#}");
            }
            // Released meanwhile: its veth is gone or going; forget it again.
            if !self.wired.lock().expect("wired lock").contains_key(&task_id) {
                mesh.detach_task(&task_id);
            }
        }
    }

    /// The node's load balancer, loaded once the ingress bridge exists; tasks wired before that
    /// get their reply-steering programs from `attach_wired`.
    async fn mesh(
        &self,
        overlay: &mesh_agent::overlay::Overlay,
        map: &NetworkMap,
    ) -> anyhow::Result<Option<Arc<crate::node_mesh::NodeMesh>>> {
        if let Some(mesh) = self.mesh.get() {
            return Ok(Some(mesh.clone()));
        }
        let Some(ingress) = map.networks.iter().find(|n| n.ingress) else { return Ok(None) };
        let Some(bridge) = overlay.bridge_ifindex(&ingress.id).await? else { return Ok(None) };
        let config = mesh_ebpf::NodeConfig {
            node_addr: self.underlay_addr,
            hash_seed: crate::node_mesh::hash_seed(&self.cluster_id),
            underlay_ifindex: overlay.underlay().ifindex,
            ingress_bridge_ifindex: bridge,
            host_netns_cookie: self.netns_cookie,
            flow_table_entries: mesh_ebpf::flow_table_entries_here(),
        };
        let bpffs = mesh_ebpf::ensure_bpffs(&self.data_root, self.bpffs.as_deref())?;
        let mesh = Arc::new(crate::node_mesh::NodeMesh::load(
            &bpffs,
            &self.node_id,
            config,
            &self.task_cgroup,
            &self.host_cgroup,
        )?);
        tracing::info!(bpffs = %bpffs.display(), flow_entries = config.flow_table_entries, "routing mesh loaded");
        // Published before the wired tasks are read (in `attach_wired`, which `apply` runs next):
        // a task wired after that read sees the mesh in `wire` and attaches itself.
        Ok(Some(self.mesh.get_or_init(|| async { mesh }).await.clone()))
    }

    /// Waits until the map knows every network of `task`.
    async fn map_with_networks(&self, task: &Task) -> anyhow::Result<Arc<NetworkMap>> {
        let wanted: Vec<&str> = task.networks_attachments.iter().map(|a| a.network.id.as_str()).collect();
        let mut rx = self.map.subscribe();
        let found = tokio::time::timeout(MAP_WAIT, async {
            loop {
                let map = rx.borrow_and_update().clone();
                if wanted.iter().all(|id| map.networks.iter().any(|n| n.id == *id)) && map.index > 0 {
                    return map;
                }
                if rx.changed().await.is_err() {
                    return map;
                }
            }
        })
        .await;
        found.map_err(|_| anyhow::anyhow!("the networks of task {} are not known on this node yet", task.id))
    }

    /// Wires a new task: a network namespace with one interface per attachment (and a gateway
    /// interface when one of its networks has egress), the resolver inside it. Returns the
    /// namespace for the task to join; `None` for a task without networks.
    pub async fn prepare(&self, task: &Task) -> anyhow::Result<Option<PathBuf>> {
        if task.networks_attachments.is_empty() {
            return Ok(None);
        }
        let map = self.map_with_networks(task).await?;
        std::fs::create_dir_all(&self.netns_dir).with_context(|| format!("create {}", self.netns_dir.display()))?;
        let path = self.netns_dir.join(&task.id);
        if !path.exists() {
            mesh_agent::overlay::create_netns(&path)?;
        }
        self.wire(task, &map, &path).await?;
        Ok(Some(path))
    }

    /// Re-wires a task that outlived a previous agent (its namespace is its PID's).
    pub async fn adopt(&self, task: &Task, pid: u32) -> anyhow::Result<()> {
        if task.networks_attachments.is_empty() {
            return Ok(());
        }
        let map = self.map_with_networks(task).await?;
        self.wire(task, &map, Path::new(&format!("/proc/{pid}/ns/net"))).await
    }

    async fn wire(&self, task: &Task, map: &NetworkMap, netns: &Path) -> anyhow::Result<()> {
        let mut nets = Vec::new();
        let mut egress = false;
        let mut scope = Vec::new();
        let own_addrs = map.nodes.iter().find(|n| n.id == self.node_id).map(|n| n.network_addrs.clone());
        for attachment in &task.networks_attachments {
            let network = map
                .networks
                .iter()
                .find(|n| n.id == attachment.network.id)
                .with_context(|| format!("network {} is unknown", attachment.network.spec.name))?;
            let address = attachment.addresses.first().with_context(|| {
                format!("task {} has no address on network {}", task.id, attachment.network.spec.name)
            })?;
            let (ip, prefix_len) = parse_cidr(address)?;
            egress |= !network.internal;
            if !network.ingress {
                scope.push(network.id.clone());
            }
            nets.push((
                OverlayNetwork {
                    id: network.id.clone(),
                    vni: network.vni,
                    subnet: network.subnet,
                    prefix_len: network.prefix_len,
                    mtu: network.mtu,
                    internal: network.internal,
                },
                TaskInterface {
                    network_id: network.id.clone(),
                    ip,
                    prefix_len,
                    mac: crate::netmap::endpoint_mac(&task.id, &network.id),
                    // Replies to routing-mesh clients (whose address is kept) leave through this
                    // node's ingress bridge, where the mesh steers them back to the entry node.
                    reply_gateway: if network.ingress {
                        own_addrs.iter().flatten().find(|(n, _)| *n == network.id).map(|(_, ip)| *ip)
                    } else {
                        None
                    },
                },
            ));
        }
        let overlay = self.overlay(map.data_path_port).await?;
        overlay.attach_task(&task.id, netns, &nets, egress).await?;
        self.resolver.serve_netns(&task.id, netns, scope.clone()).await?;
        self.wired.lock().expect("wired lock").insert(task.id.clone(), scope);
        if let (Some(mesh), Some(ingress)) = (self.mesh.get(), map.networks.iter().find(|n| n.ingress)) {
            let veths = ingress_veths(&overlay, &task.id, &ingress.id).await?;
            mesh.attach_task(&task.id, &veths)?;
        }
        Ok(())
    }

    /// Waits until the cluster sends no new flow to a task that is being shut down: this node's
    /// map shows it draining (or gone), then a short settle for the other nodes, which got the
    /// same map at about the same time. Only then may it get SIGTERM: a rolling update loses
    /// no request that the load balancers would still have sent it.
    pub async fn drain(&self, task_id: &str) {
        let mut rx = self.map.subscribe();
        let drained = |m: &Arc<NetworkMap>| m.endpoints.iter().filter(|e| e.task_id == task_id).all(|e| e.draining);
        if tokio::time::timeout(DRAIN_WAIT, rx.wait_for(drained)).await.is_ok() {
            tokio::time::sleep(DRAIN_SETTLE).await;
        }
    }

    /// Unwires a task that exited: its interfaces, its resolver, its namespace.
    pub async fn release(&self, task_id: &str) {
        self.resolver.stop(task_id);
        if let Some(mesh) = self.mesh.get() {
            mesh.detach_task(task_id);
        }
        self.wired.lock().expect("wired lock").remove(task_id);
        if let Some(overlay) = self.overlay.get() {
            if let Err(e) = overlay.detach_task(task_id).await {
                tracing::warn!(task = %task_id, "detaching from networks: {e:#}");
            }
        }
        let path = self.netns_dir.join(task_id);
        if path.exists() {
            if let Err(e) = mesh_agent::overlay::remove_netns(&path) {
                tracing::warn!(task = %task_id, "removing network namespace: {e:#}");
            }
        }
    }

    /// The task's first overlay address, for `/etc/hosts`.
    pub fn first_address(task: &Task) -> Option<Ipv4Addr> {
        let attachment = task.networks_attachments.iter().find(|a| !a.network.spec.ingress)?;
        parse_cidr(attachment.addresses.first()?).ok().map(|(ip, _)| ip)
    }
}

/// Keeps the node's map fresh and applies each new one.
pub async fn run(core: Arc<Core>, network: Arc<NodeNetwork>, mut stop: watch::Receiver<bool>) {
    let mut since = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let fetched = tokio::select! {
            _ = stop.changed() => return,
            fetched = fetch(&core, since) => fetched,
        };
        match fetched {
            Ok(map) => {
                since = map.index;
                if let Err(e) = network.apply(Arc::new(map)).await {
                    tracing::warn!("applying the network map: {e:#}");
                    // Try again with the same map soon rather than waiting for the next change.
                    since = 0;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) => {
                tracing::debug!("network map: {e:#}");
                since = 0;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn fetch(core: &Core, since: u64) -> anyhow::Result<NetworkMap> {
    let peers = core.peers().context("no identity")?;
    let mut last = anyhow::anyhow!("no manager known");
    for addr in crate::executor::manager_candidates(core) {
        match crate::rpc::services::fetch_network_map(&peers, &addr, since).await {
            Ok(map) => return Ok(map),
            Err(e) => {
                peers.forget(&addr);
                last = e.context(format!("network map from {addr}"));
            }
        }
    }
    Err(last)
}

fn parse_cidr(text: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, prefix) = text.split_once('/').with_context(|| format!("bad address {text}"))?;
    Ok((
        ip.parse().with_context(|| format!("bad address {text}"))?,
        prefix.parse().with_context(|| format!("bad prefix in {text}"))?,
    ))
}

/// What this node's overlay should hold: the networks with a local endpoint, and every endpoint
/// on them (remote ones by their node's VTEP).
pub fn wanted_overlay(map: &NetworkMap, node_id: &str) -> WantedOverlay {
    let mut local_networks: BTreeSet<&str> =
        map.endpoints.iter().filter(|e| e.node_id == node_id).map(|e| e.network_id.as_str()).collect();
    // Every node has its bridge on the networks where it has an address (the ingress network:
    // published ports answer on every node, with or without a local task).
    let own = map.nodes.iter().find(|n| n.id == node_id);
    local_networks.extend(own.iter().flat_map(|n| n.network_addrs.iter().map(|(net, _)| net.as_str())));
    let vteps: BTreeMap<&str, Ipv4Addr> = map.nodes.iter().map(|n| (n.id.as_str(), n.addr)).collect();
    let mut wanted = WantedOverlay::default();
    for network in map.networks.iter().filter(|n| local_networks.contains(n.id.as_str())) {
        wanted.networks.push(OverlayNetwork {
            id: network.id.clone(),
            vni: network.vni,
            subnet: network.subnet,
            prefix_len: network.prefix_len,
            mtu: network.mtu,
            internal: network.internal,
        });
    }
    for endpoint in map.endpoints.iter().filter(|e| local_networks.contains(e.network_id.as_str())) {
        let Some(&vtep) = vteps.get(endpoint.node_id.as_str()) else { continue };
        let entry =
            RemoteEndpoint { network_id: endpoint.network_id.clone(), ip: endpoint.ip, mac: endpoint.mac, vtep };
        if endpoint.node_id == node_id {
            wanted.local.push(entry);
        } else {
            wanted.remote.push(entry);
        }
    }
    for node in &map.nodes {
        for (network_id, ip) in node.network_addrs.iter().filter(|(n, _)| local_networks.contains(n.as_str())) {
            let Some(network) = map.networks.iter().find(|n| n.id == *network_id) else { continue };
            let mac = node_bridge_mac(&node.id, network_id);
            if node.id == node_id {
                wanted.bridge_addrs.push(BridgeAddress {
                    network_id: network_id.clone(),
                    ip: *ip,
                    prefix_len: network.prefix_len,
                    mac,
                });
            } else {
                wanted.remote.push(RemoteEndpoint { network_id: network_id.clone(), ip: *ip, mac, vtep: node.addr });
            }
        }
    }
    wanted.isolated_pools = map.networks.iter().map(|n| (n.subnet, n.prefix_len)).collect();
    wanted
}

async fn ingress_veths(
    overlay: &mesh_agent::overlay::Overlay,
    task_id: &str,
    ingress_id: &str,
) -> anyhow::Result<Vec<u32>> {
    Ok(overlay.task_veths(task_id).await?.into_iter().filter(|(n, _)| n == ingress_id).map(|(_, i)| i).collect())
}

fn serves_names(endpoint: &MapEndpoint) -> bool {
    endpoint.state == TaskState::Running && !endpoint.draining
}

/// The resolver's table: names on every network except ingress (Docker resolves no names there).
pub fn dns_records(map: &NetworkMap) -> dns::Records {
    let ingress: BTreeSet<&str> = map.networks.iter().filter(|n| n.ingress).map(|n| n.id.as_str()).collect();
    let mut records = dns::Records::default();
    for service in &map.services {
        // The networks a service is on: its VIPs' (vip mode), else its tasks' (dnsrr).
        let mut networks: BTreeSet<&str> = service.vips.iter().map(|(n, _)| n.as_str()).collect();
        networks.extend(service.aliases.iter().map(|(n, _)| n.as_str()));
        networks.extend(map.endpoints.iter().filter(|e| e.service_id == service.id).map(|e| e.network_id.as_str()));
        for network in networks.into_iter().filter(|n| !ingress.contains(n)) {
            let aliases: Vec<String> =
                service.aliases.iter().filter(|(n, _)| n == network).map(|(_, a)| a.clone()).collect();
            records.services.push(dns::ServiceRecord {
                name: service.name.clone(),
                network_id: network.to_string(),
                vip: service.vips.iter().find(|(n, _)| n == network).map(|(_, ip)| *ip),
                dnsrr: service.endpoint_mode == EndpointMode::Dnsrr,
                aliases: aliases.clone(),
            });
            for endpoint in map.endpoints.iter().filter(|e| e.service_id == service.id && e.network_id == network) {
                records.tasks.push(dns::TaskRecord {
                    service_name: service.name.clone(),
                    network_id: network.to_string(),
                    ip: endpoint.ip,
                    task_name: endpoint.task_name.clone(),
                    slot_name: (endpoint.slot > 0).then(|| format!("{}.{}", service.name, endpoint.slot)),
                    running: serves_names(endpoint),
                    aliases: aliases.clone(),
                });
            }
        }
    }
    records
}
