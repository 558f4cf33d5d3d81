//! The node's eBPF load balancer, fed from the network map: service VIPs at the socket (every
//! task's connect/sendmsg) and published ports of the routing mesh on the underlay.
//!
//! Every node programs every service from the same map, so any node picks the same backend for a
//! flow (Maglev with the cluster's seed). Only running (healthy) tasks on ready nodes are
//! backends; a task being shut down stays as a draining backend (no new flows, existing ones
//! kept) until it leaves the map.
//!
//! [`NodeMesh::table`] reads the maps back as an ipvsadm-like table for `GET /shoal/mesh`: the
//! maps say what is programmed and how often it was used, the network map says whose it is.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use mesh_ebpf::{Backend, Mesh, MeshStats, NodeConfig, Proto, ServiceCounters, ServiceKey};

use crate::api::{MeshBackend, MeshBackendState, MeshCounters, MeshKind, MeshNodeStats, MeshService, MeshTable};
use crate::netmap::NetworkMap;
use crate::objects::service::{EndpointMode, PortProtocol, PublishMode, TaskState};

pub struct NodeMesh {
    node_id: String,
    mesh: Mutex<Mesh>,
    /// What the last [`NodeMesh::program`] wrote: stale keys are removed, unchanged ones are
    /// not rewritten (with 10,000 services, one backend change rewrites one table).
    programmed: Mutex<BTreeMap<ServiceKey, Vec<Backend>>>,
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
    /// bridge, the tasks' cgroup and the node's processes' cgroup.
    pub fn load(
        bpffs: &Path,
        node_id: &str,
        config: NodeConfig,
        task_cgroup: &Path,
        host_cgroup: &Path,
    ) -> anyhow::Result<NodeMesh> {
        let pin_dir = mesh_ebpf::pin_dir(bpffs, node_id);
        let mut mesh =
            Mesh::load(&pin_dir, config).with_context(|| format!("load the mesh at {}", pin_dir.display()))?;
        mesh.attach_underlay(config.underlay_ifindex).context("attach to the underlay")?;
        mesh.attach_ingress_bridge(config.ingress_bridge_ifindex).context("attach to the ingress bridge")?;
        mesh.attach_cgroup(task_cgroup)
            .with_context(|| format!("attach to the task cgroup {}", task_cgroup.display()))?;
        mesh.attach_host_cgroup(host_cgroup)
            .with_context(|| format!("attach to the node's cgroup {} (--host-cgroup)", host_cgroup.display()))?;
        Ok(NodeMesh {
            node_id: node_id.to_string(),
            mesh: Mutex::new(mesh),
            programmed: Mutex::new(BTreeMap::new()),
            task_veths: Mutex::new(BTreeMap::new()),
        })
    }

    /// Makes the maps hold exactly the services of `map`.
    pub fn program(&self, map: &NetworkMap, node_id: &str) -> anyhow::Result<()> {
        let wanted = wanted_services(map, node_id);
        let mut mesh = self.mesh.lock().expect("mesh lock");
        let mut programmed = self.programmed.lock().expect("programmed lock");
        // Only what changed, in one batch: a fresh node with thousands of services pays one RCU
        // grace period for all of their Maglev maps, not one each.
        let changed: Vec<(ServiceKey, Vec<Backend>)> = wanted
            .iter()
            .filter(|(key, backends)| programmed.get(*key) != Some(*backends))
            .map(|(key, backends)| (*key, backends.clone()))
            .collect();
        // Forgotten first: after an error they are all written again on the next map.
        for (key, _) in &changed {
            programmed.remove(key);
        }
        mesh.set_services(&changed).context("program the services")?;
        programmed.extend(changed);
        let stale: Vec<ServiceKey> = programmed.keys().filter(|k| !wanted.contains_key(k)).copied().collect();
        for key in stale {
            mesh.remove_service(key).with_context(|| format!("remove {key:?}"))?;
            programmed.remove(&key);
        }
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

    /// Whether `attach_task` ran for this task (with or without ingress veths).
    pub fn has_task(&self, task_id: &str) -> bool {
        self.task_veths.lock().expect("veths lock").contains_key(task_id)
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

    pub fn counters(&self) -> anyhow::Result<HashMap<ServiceKey, ServiceCounters>> {
        Ok(self.mesh.lock().expect("mesh lock").counters()?)
    }

    /// What the maps hold now, named from `map` (the map last programmed, normally).
    pub fn table(&self, map: &NetworkMap) -> anyhow::Result<MeshTable> {
        let mesh = self.mesh.lock().expect("mesh lock");
        let counters = mesh.counters().context("read the service counters")?;
        let stats = mesh.mesh_stats().context("read the routing mesh counters")?;
        Ok(build_table(map, &self.node_id, mesh.config().node_addr, &counters, stats))
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
                    let local: Vec<Backend> = backends(ingress, target)
                        .into_iter()
                        .filter(|b| Some(&b.node_addr) == ready.get(node_id))
                        .collect();
                    if !local.is_empty() {
                        wanted.insert(ServiceKey::Published { port: published, proto }, local);
                    }
                }
            }
        }
    }
    wanted
}

/// The table of the services in `counters` (what the maps hold), named from `map` (pure: the
/// maps' contents in, the API's shape out). `node_addr` is where published ports answer.
/// Services sort by name, kind, address, port and protocol; backends by address, as Maglev
/// takes them.
pub fn build_table(
    map: &NetworkMap,
    node_id: &str,
    node_addr: Ipv4Addr,
    counters: &HashMap<ServiceKey, ServiceCounters>,
    stats: MeshStats,
) -> MeshTable {
    // A backend's state is what this node programs for it now; one the map no longer wants is
    // a leftover the next programming removes.
    let wanted = wanted_services(map, node_id);
    let ingress = map.networks.iter().find(|n| n.ingress);
    let mut services = Vec::with_capacity(counters.len());
    for (key, service_counters) in counters {
        let (kind, network_id, address, port, key_proto, service) = match *key {
            ServiceKey::Vip { addr, port, proto: p } => {
                let found =
                    map.services.iter().find_map(|s| s.vips.iter().find(|(_, v)| *v == addr).map(|(n, _)| (s, n)));
                (MeshKind::Vip, found.map(|(_, n)| n.as_str()), addr, port, p, found.map(|(s, _)| s))
            }
            ServiceKey::Published { port, proto: p } => {
                let found = map.services.iter().find_map(|s| {
                    let config =
                        s.ports.iter().find(|c| c.published_port == u32::from(port) && proto(c.protocol) == Some(p));
                    config.map(|c| (s, c.publish_mode))
                });
                let kind = match found {
                    Some((_, PublishMode::Host)) => MeshKind::Host,
                    _ => MeshKind::Published,
                };
                (kind, ingress.map(|n| n.id.as_str()), node_addr, port, p, found.map(|(s, _)| s))
            }
        };
        let programmed = wanted.get(key);
        let mut backends: Vec<MeshBackend> = service_counters
            .backends
            .iter()
            .map(|((addr, port), c)| {
                let endpoint =
                    map.endpoints.iter().find(|e| Some(e.network_id.as_str()) == network_id && e.ip == *addr);
                let node_id = endpoint.map(|e| e.node_id.clone()).unwrap_or_default();
                let state = match programmed.and_then(|bs| bs.iter().find(|b| b.addr == *addr && b.port == *port)) {
                    Some(b) if b.draining => MeshBackendState::Draining,
                    Some(_) => MeshBackendState::Active,
                    None => MeshBackendState::Stale,
                };
                MeshBackend {
                    task_id: endpoint.map(|e| e.task_id.clone()).unwrap_or_default(),
                    task_name: endpoint.map(|e| e.task_name.clone()).unwrap_or_default(),
                    address: *addr,
                    port: *port,
                    node: map.nodes.iter().find(|n| n.id == node_id).map(|n| n.hostname.clone()).unwrap_or_default(),
                    node_id,
                    state,
                    counters: mesh_counters(c),
                }
            })
            .collect();
        backends.sort_by_key(|b| (b.address, b.port));
        services.push(MeshService {
            service_id: service.map(|s| s.id.clone()).unwrap_or_default(),
            service_name: service.map(|s| s.name.clone()).unwrap_or_default(),
            kind,
            network: network_id
                .and_then(|id| map.networks.iter().find(|n| n.id == id))
                .map(|n| n.name.clone())
                .unwrap_or_default(),
            address,
            port,
            protocol: match key_proto {
                Proto::Tcp => PortProtocol::Tcp,
                Proto::Udp => PortProtocol::Udp,
            },
            scheduler: crate::api::MESH_SCHEDULER.to_string(),
            counters: mesh_counters(&service_counters.service),
            backends,
        });
    }
    services.sort_by(|a, b| {
        let key =
            |s: &MeshService| (s.service_name.clone(), s.kind, s.address, s.port, s.protocol == PortProtocol::Udp);
        key(a).cmp(&key(b))
    });
    MeshTable { node_id: node_id.to_string(), note: String::new(), services, stats: Some(mesh_node_stats(stats)) }
}

fn mesh_counters(c: &mesh_ebpf::types::Counters) -> MeshCounters {
    MeshCounters { new_flows: c.new_flows, packets: c.packets, bytes: c.bytes, dropped_no_backend: c.no_backend }
}

fn mesh_node_stats(s: MeshStats) -> MeshNodeStats {
    MeshNodeStats {
        new_flows: s.new_flows,
        replies_translated: s.replies_translated,
        fragments_passed: s.fragments_passed,
        truncated_passed: s.truncated_passed,
        ip_options: s.ip_options,
        dropped_no_backend: s.dropped_no_backend,
        dropped_rewrite_failed: s.dropped_rewrite_failed,
        dropped_return_conflict: s.dropped_return_conflict,
        icmp_errors_translated: s.icmp_errors_translated,
        icmp_errors_untracked: s.icmp_errors_untracked,
        return_path_takeovers: s.return_path_takeovers,
        client_ports_remapped: s.client_ports_remapped,
    }
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
        assert_eq!(
            wanted[&vip].iter().map(|b| (b.addr, b.port)).collect::<Vec<_>>(),
            vec![(Ipv4Addr::new(10, 0, 0, 21), 0)]
        );
        assert!(wanted.contains_key(&ServiceKey::Vip { addr: Ipv4Addr::new(10, 0, 1, 2), port: 0, proto: Proto::Udp }));
        assert!(!wanted
            .keys()
            .any(|k| matches!(k, ServiceKey::Vip { addr, .. } if *addr == Ipv4Addr::new(10, 0, 0, 2))));
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

    fn counters(new_flows: u64) -> mesh_ebpf::types::Counters {
        mesh_ebpf::types::Counters { packets: new_flows * 10, bytes: new_flows * 1000, new_flows, no_backend: 0 }
    }

    /// The table as one line per service and backend, so a case reads as what `shoal mesh` shows.
    fn lines(table: &MeshTable) -> Vec<String> {
        let mut out = Vec::new();
        for s in &table.services {
            out.push(format!(
                "{}({}) {:?} {} {}:{}/{:?} {} flows={} drops={}",
                s.service_name,
                s.service_id,
                s.kind,
                s.network,
                s.address,
                s.port,
                s.protocol,
                s.scheduler,
                s.counters.new_flows,
                s.counters.dropped_no_backend
            ));
            for b in &s.backends {
                out.push(format!(
                    "  {}({}) {}:{} {}({}) {:?} flows={} bytes={}",
                    b.task_name,
                    b.task_id,
                    b.address,
                    b.port,
                    b.node,
                    b.node_id,
                    b.state,
                    b.counters.new_flows,
                    b.counters.bytes
                ));
            }
        }
        out
    }

    /// A programmed key, its new flows and its backends as (address, port, new flows).
    type Programmed<'a> = (ServiceKey, u64, &'a [(Ipv4Addr, u16, u64)]);

    fn check(map: &NetworkMap, programmed: &[Programmed], want: &[&str]) {
        let counters: HashMap<ServiceKey, ServiceCounters> = programmed
            .iter()
            .map(|(key, flows, backends)| {
                let service = mesh_ebpf::types::Counters { no_backend: 1, ..counters(*flows) };
                let backends = backends.iter().map(|(addr, port, n)| ((*addr, *port), counters(*n))).collect();
                (*key, ServiceCounters { service, backends })
            })
            .collect();
        let stats = MeshStats { new_flows: 9, dropped_return_conflict: 2, ..Default::default() };
        let table = build_table(map, "n1", Ipv4Addr::new(198, 18, 0, 1), &counters, stats);
        assert_eq!(lines(&table), want);
        assert_eq!(table.node_id, "n1");
        let stats = table.stats.expect("node-wide stats");
        assert_eq!((stats.new_flows, stats.dropped_return_conflict), (9, 2));
    }

    const PUBLISHED: ServiceKey = ServiceKey::Published { port: 8080, proto: Proto::Tcp };

    #[test]
    fn table_names_published_ports_and_their_tasks() {
        let ip = |last| Ipv4Addr::new(10, 0, 0, last);
        // t3's node is down: the maps still hold it until the next programming, so it is stale.
        check(
            &map(),
            &[(PUBLISHED, 5, &[(ip(12), 80, 2), (ip(11), 80, 3), (ip(13), 80, 0)])],
            &[
                "web(s1) Published ing 198.18.0.1:8080/Tcp maglev flows=5 drops=1",
                "  web.1.t1(t1) 10.0.0.11:80 n1(n1) Active flows=3 bytes=3000",
                "  web.1.t2(t2) 10.0.0.12:80 n2(n2) Draining flows=2 bytes=2000",
                "  web.1.t3(t3) 10.0.0.13:80 n3(n3) Stale flows=0 bytes=0",
            ],
        );
    }

    #[test]
    fn table_shows_host_mode_ports_as_host() {
        let mut m = map();
        m.services[0].ports[0].publish_mode = PublishMode::Host;
        check(
            &m,
            &[(PUBLISHED, 1, &[(Ipv4Addr::new(10, 0, 0, 11), 80, 1)])],
            &[
                "web(s1) Host ing 198.18.0.1:8080/Tcp maglev flows=1 drops=1",
                "  web.1.t1(t1) 10.0.0.11:80 n1(n1) Active flows=1 bytes=1000",
            ],
        );
    }

    #[test]
    fn table_lists_vips_by_network_and_sorts_services() {
        let vip = Ipv4Addr::new(10, 0, 1, 2);
        let backend: &[(Ipv4Addr, u16, u64)] = &[(Ipv4Addr::new(10, 0, 0, 21), 0, 4)];
        check(
            &map(),
            &[
                (ServiceKey::Vip { addr: vip, port: 0, proto: Proto::Udp }, 0, backend),
                (ServiceKey::Vip { addr: vip, port: 0, proto: Proto::Tcp }, 4, backend),
                (PUBLISHED, 0, &[]),
                // Left by a previous agent for a port no service publishes any more.
                (ServiceKey::Published { port: 9999, proto: Proto::Udp }, 0, &[(Ipv4Addr::new(10, 0, 0, 99), 53, 0)]),
            ],
            &[
                "() Published ing 198.18.0.1:9999/Udp maglev flows=0 drops=1",
                "  () 10.0.0.99:53 () Stale flows=0 bytes=0",
                "web(s1) Published ing 198.18.0.1:8080/Tcp maglev flows=0 drops=1",
                "web(s1) Vip app 10.0.1.2:0/Tcp maglev flows=4 drops=1",
                "  web.1.t1(t1) 10.0.0.21:0 n1(n1) Active flows=4 bytes=4000",
                "web(s1) Vip app 10.0.1.2:0/Udp maglev flows=0 drops=1",
                "  web.1.t1(t1) 10.0.0.21:0 n1(n1) Active flows=4 bytes=4000",
            ],
        );
    }

    #[test]
    fn table_serializes_in_engine_api_style() {
        let counters = HashMap::from([(PUBLISHED, ServiceCounters::default())]);
        let table = build_table(&map(), "n1", Ipv4Addr::new(198, 18, 0, 1), &counters, MeshStats::default());
        let json = serde_json::to_value(&table).unwrap();
        let service = &json["Services"][0];
        assert_eq!(service["ServiceID"], "s1");
        assert_eq!(service["Kind"], "published");
        assert_eq!(service["Protocol"], "tcp");
        assert_eq!(service["Address"], "198.18.0.1");
        assert_eq!(service["Counters"]["DroppedNoBackend"], 0);
        assert_eq!(json["Stats"]["ReturnPathTakeovers"], 0);
        assert!(json.get("Note").is_none(), "no note on a loaded mesh: {json}");
        assert_eq!(serde_json::from_value::<MeshTable>(json).unwrap(), table);
    }
}
