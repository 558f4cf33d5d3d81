//! The network map: everything a node's data plane and resolver need, derived from the
//! replicated state and served to every node by `Dispatcher.NetworkMap` (a long poll, like
//! assignments).
//!
//! One map feeds three consumers on each node: the overlay (VXLAN devices, FDB and neighbour
//! entries for every endpoint), the embedded DNS (names → VIPs and task IPs, per network) and the
//! eBPF mesh (published ports, VIPs → backends). Each consumer filters what it needs; the map
//! itself holds no node-specific choices, so every node sees the same facts at the same index.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::objects::service::{EndpointMode, PortConfig, TaskState};
use crate::objects::NodeState;
use crate::state::{address_part, ClusterState};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NetworkMap {
    /// The Raft index the map was computed at.
    pub index: u64,
    /// The VXLAN UDP port (`swarm init --data-path-port`, default 4789).
    pub data_path_port: u16,
    pub nodes: Vec<MapNode>,
    pub networks: Vec<MapNetwork>,
    pub services: Vec<MapService>,
    /// Every non-terminal task that has a node and addresses, one entry per (task, network).
    pub endpoints: Vec<MapEndpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MapNode {
    pub id: String,
    pub hostname: String,
    /// The node's data-path (underlay) address: its VTEP.
    pub addr: Ipv4Addr,
    /// `false` once the node is down: its endpoints stay in the map (their tasks are not known to
    /// be dead) but load balancers should skip them.
    pub ready: bool,
    /// The node's own address on each network where it has one (the ingress network: the
    /// routing mesh's per-node bridge address), as (network ID, address).
    pub network_addrs: Vec<(String, Ipv4Addr)>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MapNetwork {
    pub id: String,
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// `-o com.docker.network.driver.mtu=N`; `None`: underlay MTU − 50, detected per node.
    pub mtu: Option<u32>,
    pub internal: bool,
    pub ingress: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MapService {
    pub id: String,
    pub name: String,
    pub endpoint_mode: EndpointMode,
    /// One VIP per network the service is on (none in `dnsrr` mode), as (network ID, VIP).
    pub vips: Vec<(String, Ipv4Addr)>,
    /// Published ports as resolved in `Endpoint.Ports` (published port always set).
    pub ports: Vec<PortConfig>,
    /// `--network name=x,alias=a` aliases, as (network ID, alias).
    pub aliases: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MapEndpoint {
    pub task_id: String,
    /// `<service>.<slot>.<task id>` (global: `<service>.<node id>.<task id>`).
    pub task_name: String,
    pub service_id: String,
    /// 0 for global services.
    pub slot: u64,
    pub node_id: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Derived from the task ID and the network ID ([`endpoint_mac`]), never from the IP, so a
    /// reused IP never matches a stale MAC entry somewhere.
    pub mac: [u8; 6],
    /// The task's observed state: `running` means started and (if it has a health check)
    /// healthy. DNS and load balancing use only running endpoints; the overlay programs every
    /// endpoint so the first packet of a starting task already has a path.
    pub state: TaskState,
    /// `true` once the task is being shut down (desired state past running): no new flows.
    pub draining: bool,
}

impl NetworkMap {
    /// The map of `state` at Raft index `index`. Nodes without an IPv4 data-path address yet
    /// (one that never heartbeated) are left out until they have one.
    pub fn from_state(state: &ClusterState, index: u64) -> NetworkMap {
        let data_path_port = state
            .cluster
            .as_ref()
            .map(|c| c.swarm.data_path_port)
            .filter(|p| (1..=u32::from(u16::MAX)).contains(p))
            .unwrap_or(4789) as u16;
        let node_owners: std::collections::BTreeMap<&str, Vec<(String, Ipv4Addr)>> = {
            let mut owners: std::collections::BTreeMap<&str, Vec<(String, Ipv4Addr)>> = Default::default();
            for record in state.networks.values() {
                for (ip, owner) in record.pool.allocations() {
                    if let Some(node) = owner.strip_prefix("node:") {
                        owners.entry(node).or_default().push((record.network.id.clone(), ip));
                    }
                }
            }
            owners
        };
        let nodes = state
            .nodes
            .values()
            .filter_map(|record| {
                let addr: Ipv4Addr = record.node.status.addr.parse().ok()?;
                Some(MapNode {
                    id: record.node.id.clone(),
                    hostname: record.hostname().to_string(),
                    addr,
                    ready: record.node.status.state == NodeState::Ready,
                    network_addrs: node_owners.get(record.node.id.as_str()).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let networks = state
            .networks
            .values()
            .map(|record| MapNetwork {
                id: record.network.id.clone(),
                name: record.network.name.clone(),
                vni: record.vni,
                subnet: record.pool.subnet.addr,
                prefix_len: record.pool.subnet.prefix_len,
                gateway: record.pool.gateway,
                mtu: record.mtu(),
                internal: record.network.internal,
                ingress: record.network.ingress,
            })
            .collect();
        let services = state
            .services
            .values()
            .map(|service| MapService {
                id: service.id.clone(),
                name: service.spec.name.clone(),
                endpoint_mode: service.spec.endpoint_spec.as_ref().map(|e| e.mode).unwrap_or_default(),
                vips: service
                    .endpoint
                    .virtual_ips
                    .iter()
                    .filter_map(|v| Some((v.network_id.clone(), address_part(&v.addr)?)))
                    .collect(),
                ports: service.endpoint.ports.clone(),
                aliases: service
                    .spec
                    .task_template
                    .networks
                    .iter()
                    .flat_map(|n| n.aliases.iter().map(|a| (n.target.clone(), a.clone())))
                    .collect(),
            })
            .collect();
        let mut endpoints = Vec::new();
        for task in state.tasks.values() {
            if task.status.state.is_terminal() || task.node_id.is_empty() {
                continue;
            }
            let task_name = if task.name.is_empty() {
                let service = state.services.get(&task.service_id).map(|s| s.spec.name.as_str()).unwrap_or_default();
                let middle = if task.slot > 0 { task.slot.to_string() } else { task.node_id.clone() };
                format!("{service}.{middle}.{}", task.id)
            } else {
                task.name.clone()
            };
            for attachment in &task.networks_attachments {
                let Some((ip, prefix_len)) = attachment.addresses.first().and_then(|a| parse_address(a)) else {
                    continue;
                };
                endpoints.push(MapEndpoint {
                    task_id: task.id.clone(),
                    task_name: task_name.clone(),
                    service_id: task.service_id.clone(),
                    slot: task.slot,
                    node_id: task.node_id.clone(),
                    network_id: attachment.network.id.clone(),
                    ip,
                    prefix_len,
                    mac: endpoint_mac(&task.id, &attachment.network.id),
                    state: task.status.state,
                    draining: task.desired_state > TaskState::Running,
                });
            }
        }
        NetworkMap { index, data_path_port, nodes, networks, services, endpoints }
    }

    /// Whether two maps hold the same facts (whatever index they were computed at).
    pub fn same_content(&self, other: &NetworkMap) -> bool {
        self.data_path_port == other.data_path_port
            && self.nodes == other.nodes
            && self.networks == other.networks
            && self.services == other.services
            && self.endpoints == other.endpoints
    }
}

/// `10.0.1.3/24` → (10.0.1.3, 24).
fn parse_address(addr: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = addr.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

/// The MAC of a task's interface on a network: locally administered, unicast, a hash of
/// both IDs. Every node computes the same value, and two tasks that get the same IP one
/// after the other get different MACs.
pub fn endpoint_mac(task_id: &str, network_id: &str) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(task_id.as_bytes())
        .chain_update(b"/")
        .chain_update(network_id.as_bytes())
        .finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::objects::network::{IpamConfig, Network};
    use crate::objects::service::{Endpoint, EndpointSpec, NetworkAttachmentConfig, PortConfig, TaskStatus};
    use crate::orchestrator::testkit::{at, node, replicated, Sim};
    use crate::state::{Command, Proposal};

    fn apply(sim: &mut Sim, command: Command) {
        sim.index += 1;
        sim.state.apply(sim.index, &Proposal { at: sim.now, command }).unwrap();
    }

    /// Two nodes, the ingress network, `appnet` and a service `web` (2 replicas, port 8080,
    /// alias `www` on appnet), converged.
    fn cluster() -> (Sim, String) {
        let mut sim = Sim::new(vec![]);
        let cluster = sim.state.cluster.clone().unwrap();
        let mut n1 = node("n1", "h1");
        n1.node.status.addr = "198.18.0.1".into();
        let mut n2 = node("n2", "h2");
        n2.node.status.addr = "198.18.0.2".into();
        apply(&mut sim, Command::InitCluster { cluster, node: n1, ingress_id: "ing".into() });
        sim.add_node(n2);
        let network = Network {
            name: "appnet".into(),
            id: "net1".into(),
            created: at(0),
            scope: "swarm".into(),
            driver: "overlay".into(),
            enable_ipv4: true,
            enable_ipv6: false,
            ipam: crate::objects::network::Ipam {
                config: vec![IpamConfig { subnet: "10.0.9.0/24".into(), ..Default::default() }],
                ..Default::default()
            },
            internal: true,
            attachable: false,
            ingress: false,
            config_from: Default::default(),
            config_only: false,
            containers: Default::default(),
            options: [(crate::objects::network::MTU_OPTION.to_string(), "1400".to_string())].into(),
            labels: Default::default(),
            peers: vec![],
            version: Default::default(),
        };
        apply(&mut sim, Command::CreateNetwork { network: Box::new(network) });
        let mut web = replicated("web", 2);
        web.spec.task_template.networks =
            vec![NetworkAttachmentConfig { target: "net1".into(), aliases: vec!["www".into()], ..Default::default() }];
        let port = PortConfig { target_port: 80, published_port: 8080, ..Default::default() };
        web.spec.endpoint_spec = Some(EndpointSpec { ports: vec![port.clone()], ..Default::default() });
        web.endpoint =
            Endpoint { spec: web.spec.endpoint_spec.clone().unwrap(), ports: vec![port], virtual_ips: vec![] };
        let id = sim.create(web);
        sim.converge();
        (sim, id)
    }

    #[test]
    fn the_map_holds_nodes_networks_services_and_one_endpoint_per_attachment() {
        let (sim, web) = cluster();
        let map = NetworkMap::from_state(&sim.state, 77);
        assert_eq!((map.index, map.data_path_port), (77, 4789));
        let nodes: Vec<(&str, Ipv4Addr, bool, &Vec<(String, Ipv4Addr)>)> =
            map.nodes.iter().map(|n| (n.id.as_str(), n.addr, n.ready, &n.network_addrs)).collect();
        assert_eq!(
            nodes,
            [
                ("n1", "198.18.0.1".parse().unwrap(), true, &vec![("ing".to_string(), "10.0.0.2".parse().unwrap())]),
                ("n2", "198.18.0.2".parse().unwrap(), true, &vec![("ing".to_string(), "10.0.0.3".parse().unwrap())]),
            ]
        );
        let appnet = map.networks.iter().find(|n| n.id == "net1").unwrap();
        assert_eq!((appnet.vni, appnet.subnet, appnet.prefix_len), (4097, "10.0.9.0".parse().unwrap(), 24));
        assert_eq!((appnet.gateway, appnet.mtu, appnet.internal), ("10.0.9.1".parse().unwrap(), Some(1400), true));
        assert!(map.networks.iter().any(|n| n.id == "ing" && n.ingress && n.mtu.is_none()));
        let service = &map.services[0];
        assert_eq!((service.id.as_str(), service.name.as_str()), (web.as_str(), "web"));
        assert_eq!(
            service.vips,
            [("ing".to_string(), "10.0.0.4".parse().unwrap()), ("net1".to_string(), "10.0.9.2".parse().unwrap())]
        );
        assert_eq!(service.aliases, [("net1".to_string(), "www".to_string())]);
        assert_eq!(service.ports[0].published_port, 8080);
        // Two tasks, each on ingress and appnet.
        assert_eq!(map.endpoints.len(), 4);
        for endpoint in &map.endpoints {
            let task = &sim.state.tasks[&endpoint.task_id];
            assert_eq!(endpoint.task_name, task.name);
            assert_eq!(endpoint.node_id, task.node_id);
            assert_eq!(endpoint.mac, endpoint_mac(&task.id, &endpoint.network_id));
            assert_eq!((endpoint.state, endpoint.draining), (TaskState::Running, false));
            let attachment = task.networks_attachments.iter().find(|a| a.network.id == endpoint.network_id).unwrap();
            assert_eq!(attachment.addresses[0], format!("{}/{}", endpoint.ip, endpoint.prefix_len));
        }
        let mut ips: Vec<Ipv4Addr> = map.endpoints.iter().map(|e| e.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 4, "every endpoint has its own address");
    }

    #[test]
    fn ending_and_draining_tasks_and_down_nodes_show_in_the_map() {
        let (mut sim, web) = cluster();
        let tasks = sim.tasks_of(&web);
        // One task is being stopped: still in the map, draining.
        let mut stopping = tasks[0].clone();
        stopping.desired_state = TaskState::Shutdown;
        apply(
            &mut sim,
            Command::ApplyPlan {
                plan: Box::new(crate::state::Plan { upsert_tasks: vec![stopping.clone()], ..Default::default() }),
            },
        );
        // The other one ended: gone from the map.
        let ended = TaskStatus { timestamp: sim.now, state: TaskState::Failed, ..Default::default() };
        apply(&mut sim, Command::UpdateTaskStatus { updates: vec![(tasks[1].id.clone(), ended)] });
        // As the leader records it: same status, state down (the address stays).
        sim.state.nodes.get_mut("n2").unwrap().node.status.state = crate::objects::NodeState::Down;
        let map = NetworkMap::from_state(&sim.state, 1);
        assert!(map.endpoints.iter().all(|e| e.task_id != tasks[1].id));
        let draining: Vec<bool> =
            map.endpoints.iter().filter(|e| e.task_id == stopping.id).map(|e| e.draining).collect();
        assert_eq!(draining, [true, true]);
        assert!(!map.nodes.iter().find(|n| n.id == "n2").unwrap().ready);
        // Same facts, another index: same content.
        assert!(map.same_content(&NetworkMap::from_state(&sim.state, 2)));
        assert!(!map.same_content(&NetworkMap::from_state(&cluster().0.state, 1)));
    }

    #[test]
    fn endpoint_macs_are_local_unicast_and_differ_per_task() {
        let a = endpoint_mac("task-a", "net1");
        let b = endpoint_mac("task-b", "net1");
        assert_ne!(a, b);
        assert_eq!(a, endpoint_mac("task-a", "net1"));
        assert_eq!(a[0] & 0x01, 0, "unicast");
        assert_eq!(a[0] & 0x02, 0x02, "locally administered");
    }
}
