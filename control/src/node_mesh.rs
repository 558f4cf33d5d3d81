//! The node's eBPF load balancer, fed from the network map: service VIPs at the socket (every
//! task's connect/sendmsg) and published ports of the routing mesh on the underlay.
//!
//! Every node programs every service from the same map, so any node picks the same backend for a
//! flow (Maglev with the cluster's seed). Only running (healthy) tasks on ready nodes are
//! backends; a task being shut down stays as a draining backend (no new flows, existing ones
//! kept) until it leaves the map.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use mesh_ebpf::{Backend, Mesh, NodeConfig, Proto, ServiceKey};

use crate::netmap::NetworkMap;
use crate::objects::service::{EndpointMode, PortProtocol, PublishMode, TaskState};

pub struct NodeMesh {
    mesh: Mutex<Mesh>,
    /// The keys programmed by the last [`NodeMesh::program`], so stale ones are removed.
    programmed: Mutex<BTreeSet<ServiceKey>>,
    /// Task veths the mesh's tc programs are attached to, per task.
    task_veths: Mutex<BTreeMap<String, Vec<u32>>>,
}

/// The flow-hash seed every node derives from the cluster ID.
pub fn hash_seed(cluster_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in cluster_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

impl NodeMesh {
    /// Loads the programs (adopting pinned ones) and attaches them to the underlay, the ingress
    /// bridge and the tasks' cgroup.
    pub fn load(bpffs: &Path, node_id: &str, config: NodeConfig, task_cgroup: &Path) -> anyhow::Result<NodeMesh> {
        let pin_dir = mesh_ebpf::pin_dir(bpffs, node_id);
        let mut mesh = Mesh::load(&pin_dir, config).with_context(|| format!("load the mesh at {}", pin_dir.display()))?;
        mesh.attach_underlay(config.underlay_ifindex).context("attach to the underlay")?;
        mesh.attach_ingress_bridge(config.ingress_bridge_ifindex).context("attach to the ingress bridge")?;
        mesh.attach_cgroup(task_cgroup)
            .with_context(|| format!("attach to the task cgroup {}", task_cgroup.display()))?;
        Ok(NodeMesh { mesh: Mutex::new(mesh), programmed: Mutex::new(BTreeSet::new()), task_veths: Mutex::new(BTreeMap::new()) })
    }

    /// Makes the maps hold exactly the services of `map`.
    pub fn program(&self, map: &NetworkMap, node_id: &str) -> anyhow::Result<()> {
        let wanted = wanted_services(map, node_id);
        let mut mesh = self.mesh.lock().expect("mesh lock");
        let mut programmed = self.programmed.lock().expect("programmed lock");
        for (key, backends) in &wanted {
            mesh.set_service(*key, backends).with_context(|| format!("program {key:?}"))?;
        }
        for stale in programmed.iter().filter(|k| !wanted.contains_key(k)) {
            mesh.remove_service(*stale).with_context(|| format!("remove {stale:?}"))?;
        }
        *programmed = wanted.into_keys().collect();
        Ok(())
    }

    /// Attaches the reply-steering programs to a task's ingress-network veths.
    pub fn attach_task(&self, task_id: &str, ifindexes: &[u32]) -> anyhow::Result<()> {
        let mut mesh = self.mesh.lock().expect("mesh lock");
        for ifindex in ifindexes {
            mesh.attach_task_veth(*ifindex).with_context(|| format!("attach to task veth {ifindex}"))?;
        }
        self.task_veths.lock().expect("veths lock").insert(task_id.to_string(), ifindexes.to_vec());
        Ok(())
    }

    pub fn detach_task(&self, task_id: &str) {
        let Some(ifindexes) = self.task_veths.lock().expect("veths lock").remove(task_id) else { return };
        let mut mesh = self.mesh.lock().expect("mesh lock");
        for ifindex in ifindexes {
            if let Err(e) = mesh.detach_task_veth(ifindex) {
                tracing::debug!(task = %task_id, "detaching from veth {ifindex}: {e}");
            }
        }
    }

    pub fn counters(&self) -> anyhow::Result<std::collections::HashMap<ServiceKey, mesh_ebpf::ServiceCounters>> {
        Ok(self.mesh.lock().expect("mesh lock").counters()?)
    }
}

fn proto(p: PortProtocol) -> Option<Proto> {
    match p {
        PortProtocol::Tcp => Some(Proto::Tcp),
        PortProtocol::Udp => Some(Proto::Udp),
        PortProtocol::Sctp => None,
    }
}

/// Every service key this node programs and its backends (pure: the map and the node in, maps
/// out).
pub fn wanted_services(map: &NetworkMap, node_id: &str) -> BTreeMap<ServiceKey, Vec<Backend>> {
    let ready: BTreeMap<&str, Ipv4Addr> =
        map.nodes.iter().filter(|n| n.ready).map(|n| (n.id.as_str(), n.addr)).collect();
    let ingress = map.networks.iter().find(|n| n.ingress).map(|n| n.id.as_str());
    let mut wanted: BTreeMap<ServiceKey, Vec<Backend>> = BTreeMap::new();
    for service in &map.services {
        // Backends on a network: running (so healthy) tasks on ready nodes; shutting-down ones
        // drain. Sorted so the Maglev input, and so every node's table, is the same.
        let backends = |network: &str, port: u16| -> Vec<Backend> {
            let mut out: Vec<Backend> = map
                .endpoints
                .iter()
                .filter(|e| e.service_id == service.id && e.network_id == network && e.state == TaskState::Running)
                .filter_map(|e| {
                    let node_addr = *ready.get(e.node_id.as_str())?;
                    Some(Backend {
                        addr: e.ip,
                        port,
                        node_addr,
                        node_mac: mesh_agent::overlay::node_bridge_mac(&e.node_id, network),
                        draining: e.draining,
                    })
                })
                .collect();
            out.sort_by_key(|b| (b.addr, b.port));
            out
        };
        if service.endpoint_mode == EndpointMode::Vip {
            for (network, vip) in service.vips.iter().filter(|(n, _)| Some(n.as_str()) != ingress) {
                // The whole VIP (every port, the client's port kept), TCP and UDP, as Swarm's.
                let members = backends(network, 0);
                for proto in [Proto::Tcp, Proto::Udp] {
                    wanted.insert(ServiceKey::Vip { addr: *vip, port: 0, proto }, members.clone());
                }
            }
        }
        let Some(ingress) = ingress else { continue };
        for port in &service.ports {
            let (Some(proto), Ok(published), Ok(target)) =
                (proto(port.protocol), u16::try_from(port.published_port), u16::try_from(port.target_port))
            else {
                continue;
            };
            if published == 0 {
                continue;
            }
            match port.publish_mode {
                PublishMode::Ingress => {
                    wanted.insert(ServiceKey::Published { port: published, proto }, backends(ingress, target));
                }
                // Host mode: only a node running a task answers, and only with its own tasks.
                PublishMode::Host => {
                    let local: Vec<Backend> =
                        backends(ingress, target).into_iter().filter(|b| Some(&b.node_addr) == ready.get(node_id)).collect();
                    if !local.is_empty() {
                        wanted.insert(ServiceKey::Published { port: published, proto }, local);
                    }
                }
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netmap::{MapEndpoint, MapNetwork, MapNode, MapService};
    use crate::objects::service::PortConfig;

    fn map() -> NetworkMap {
        let net = |id: &str, ingress| MapNetwork {
            id: id.into(),
            name: id.into(),
            vni: 4096,
            subnet: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            mtu: None,
            internal: false,
            ingress,
        };
        let node = |id: &str, last, ready| MapNode {
            id: id.into(),
            hostname: id.into(),
            addr: Ipv4Addr::new(198, 18, 0, last),
            ready,
            network_addrs: Vec::new(),
        };
        let ep = |task: &str, node: &str, net: &str, last, state, draining| MapEndpoint {
            task_id: task.into(),
            task_name: format!("web.1.{task}"),
            service_id: "s1".into(),
            slot: 1,
            node_id: node.into(),
            network_id: net.into(),
            ip: Ipv4Addr::new(10, 0, 0, last),
            prefix_len: 24,
            mac: [2, 0, 0, 0, 0, last],
            state,
            draining,
        };
        NetworkMap {
            index: 7,
            data_path_port: 4789,
            nodes: vec![node("n1", 1, true), node("n2", 2, true), node("n3", 3, false)],
            networks: vec![net("ing", true), net("app", false)],
            services: vec![MapService {
                id: "s1".into(),
                name: "web".into(),
                endpoint_mode: EndpointMode::Vip,
                vips: vec![("ing".into(), Ipv4Addr::new(10, 0, 0, 2)), ("app".into(), Ipv4Addr::new(10, 0, 1, 2))],
                ports: vec![PortConfig { target_port: 80, published_port: 8080, ..Default::default() }],
                aliases: Vec::new(),
            }],
            endpoints: vec![
                ep("t1", "n1", "ing", 11, TaskState::Running, false),
                ep("t2", "n2", "ing", 12, TaskState::Running, true),
                ep("t3", "n3", "ing", 13, TaskState::Running, false),
                ep("t4", "n2", "ing", 14, TaskState::Starting, false),
                ep("t1", "n1", "app", 21, TaskState::Running, false),
            ],
        }
    }

    #[test]
    fn published_ports_balance_over_running_tasks_on_ready_nodes() {
        let wanted = wanted_services(&map(), "n1");
        let published = &wanted[&ServiceKey::Published { port: 8080, proto: Proto::Tcp }];
        let addrs: Vec<(Ipv4Addr, u16, bool)> = published.iter().map(|b| (b.addr, b.port, b.draining)).collect();
        // t3's node is down, t4 is not running yet; t2 is shutting down: draining.
        assert_eq!(addrs, vec![(Ipv4Addr::new(10, 0, 0, 11), 80, false), (Ipv4Addr::new(10, 0, 0, 12), 80, true)]);
        assert_eq!(published[1].node_addr, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(published[1].node_mac, mesh_agent::overlay::node_bridge_mac("n2", "ing"));
    }

    #[test]
    fn vips_cover_every_port_on_non_ingress_networks_only() {
        let wanted = wanted_services(&map(), "n1");
        let vip = ServiceKey::Vip { addr: Ipv4Addr::new(10, 0, 1, 2), port: 0, proto: Proto::Tcp };
        assert_eq!(wanted[&vip].iter().map(|b| (b.addr, b.port)).collect::<Vec<_>>(), vec![(Ipv4Addr::new(10, 0, 0, 21), 0)]);
        assert!(wanted.contains_key(&ServiceKey::Vip { addr: Ipv4Addr::new(10, 0, 1, 2), port: 0, proto: Proto::Udp }));
        assert!(!wanted.keys().any(|k| matches!(k, ServiceKey::Vip { addr, .. } if *addr == Ipv4Addr::new(10, 0, 0, 2))));
    }

    #[test]
    fn host_mode_ports_answer_only_where_a_task_runs() {
        let mut m = map();
        m.services[0].ports[0].publish_mode = PublishMode::Host;
        let key = ServiceKey::Published { port: 8080, proto: Proto::Tcp };
        assert_eq!(wanted_services(&m, "n1")[&key].len(), 1);
        assert!(!wanted_services(&m, "n3").contains_key(&key), "no running task on a ready n3");
    }

    #[test]
    fn dnsrr_services_get_no_vip() {
        let mut m = map();
        m.services[0].endpoint_mode = EndpointMode::Dnsrr;
        assert!(!wanted_services(&m, "n1").keys().any(|k| matches!(k, ServiceKey::Vip { .. })));
    }
}
