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

/// The MAC of a task's interface on a network: locally administered, unicast, a hash of
/// both IDs. Every node computes the same value, and two tasks that get the same IP one
/// after the other get different MACs.
pub fn endpoint_mac(task_id: &str, network_id: &str) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(task_id.as_bytes()).chain_update(b"/").chain_update(network_id.as_bytes()).finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

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
