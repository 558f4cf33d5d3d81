//! The overlay data plane of one node, programmed over rtnetlink (no `ip` commands).
//!
//! For each overlay network with a local task: a bridge and a VXLAN port on it (the network's
//! VNI, the data-path port, local = the node's underlay address, learning off, ARP proxy on).
//! For each local task: a veth per network, the task side moved into the task's network
//! namespace and renamed `eth0`, `eth1`… with its address; tasks on a non-internal network also
//! get a veth on the node's gateway bridge with the default route (egress through NAT, see
//! [`crate::nat`]). Remote endpoints are programmed statically: FDB entries (MAC → remote VTEP)
//! on the VXLAN device and permanent neighbour entries (IP → MAC) that the VXLAN ARP proxy
//! answers from, so nothing floods and no ARP crosses the wire.
//!
//! For the routing mesh, a node has its own address on the ingress network's bridge, with a MAC
//! every node derives the same way ([`node_bridge_mac`]); peers reach it like any remote endpoint.
//! Task interfaces on that network answer through the local bridge address whatever their default
//! route says (a source rule and a table of their own, see `routing`), so the eBPF mesh can steer
//! replies back to the node the client contacted.
//!
//! Everything this module creates is named so that a restarted agent recognises it: it adopts
//! what matches the wanted state, removes only what no longer is wanted, and never tears down a
//! working network because it restarted.
//!
//! Netlink is spoken from dedicated threads that `setns()` into the namespace concerned; tokio
//! worker threads never change namespace.

mod gateway;
mod links;
mod names;
mod netns;
mod node;
mod routing;
mod tables;
mod task;
#[cfg(test)]
mod tests;

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netns::in_netns;

pub use names::node_bridge_mac;
pub use netns::{create_netns, remove_netns};

/// Why the overlay could not be programmed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot use network namespace {path}: {source}")]
    Netns { path: PathBuf, source: io::Error },
    #[error("netlink failed while {context}: {source}")]
    Netlink { context: String, source: rtnetlink::Error },
    #[error("no interface has the data-path address {0}")]
    NoUnderlay(Ipv4Addr),
    #[error("interface {0} is not the kind of device Shoal expects there")]
    Unexpected(String),
    #[error("interfaces did not come up in time ({0})")]
    NotReady(String),
    #[error("the gateway subnet {0}/{1} has no free address left")]
    GatewayExhausted(Ipv4Addr, u8),
    #[error("cannot set up egress NAT: {0}")]
    Nat(#[source] crate::nat::NatError),
    #[error("cannot write {path}: {source}")]
    Sysctl { path: String, source: io::Error },
    #[error("bridge address {ip} is for network {network}, which this node does not want")]
    BridgeWithoutNetwork { network: String, ip: Ipv4Addr },
    #[error("a network namespace worker thread failed")]
    Thread,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The node's underlay, where VXLAN packets leave from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    /// The node's data-path address (VXLAN local address, the VTEP remote nodes send to).
    pub addr: Ipv4Addr,
    /// The interface holding `addr`.
    pub ifindex: u32,
    pub ifname: String,
    /// That interface's MTU; overlays default to this − 50.
    pub mtu: u32,
    /// VXLAN UDP port (`--data-path-port`).
    pub vxlan_port: u16,
}

/// An overlay network as the node needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayNetwork {
    pub id: String,
    pub vni: u32,
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// `None`: underlay MTU − 50.
    pub mtu: Option<u32>,
    /// No egress through the gateway bridge.
    pub internal: bool,
}

/// A task endpoint on another node, programmed into this node's FDB and neighbour tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// The underlay address of the node that runs it.
    pub vtep: Ipv4Addr,
}

/// One of a local task's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInterface {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    /// Answer through this address (the local node's bridge address on the network) on this
    /// interface, whatever the default route: packets from `ip` then take a table of their own.
    /// Set on ingress interfaces, where the routing mesh delivers clients' packets unchanged.
    pub reply_gateway: Option<Ipv4Addr>,
}

/// The local node's own address on a network's bridge (the ingress network's, for the mesh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeAddress {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The bridge's MAC, [`node_bridge_mac`] of this node and network, so that peers can hold
    /// static entries for it.
    pub mac: [u8; 6],
}

/// What the node should look like: the networks it needs and every remote endpoint on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WantedOverlay {
    pub networks: Vec<OverlayNetwork>,
    pub remote: Vec<RemoteEndpoint>,
    /// Local endpoints, so that the neighbour table of a network also resolves local peers
    /// (they are reached over the bridge, not the VXLAN device).
    pub local: Vec<RemoteEndpoint>,
    /// Address pools no task may reach through the gateway (every overlay subnet): isolation.
    pub isolated_pools: Vec<(Ipv4Addr, u8)>,
    /// This node's own addresses, at most one per network, each on a network of `networks`.
    /// Other nodes' bridge addresses belong in `remote`, like task endpoints.
    pub bridge_addrs: Vec<BridgeAddress>,
}

impl OverlayNetwork {
    /// The network's MTU on this node: the `mtu` option, else the underlay's minus the 50 bytes
    /// of VXLAN encapsulation.
    pub fn effective_mtu(&self, underlay: &Underlay) -> u32 {
        self.mtu.unwrap_or(underlay.mtu.saturating_sub(VXLAN_OVERHEAD))
    }
}

/// Outer Ethernet-less overhead of VXLAN over IPv4: IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Finds the interface holding `addr` in the process's network namespace.
pub fn detect_underlay(addr: Ipv4Addr, vxlan_port: u16) -> Result<Underlay, OverlayError> {
    detect_underlay_in(addr, vxlan_port, None)
}

/// [`detect_underlay`] in the namespace at `netns` (`None`: the process's).
pub fn detect_underlay_in(addr: Ipv4Addr, vxlan_port: u16, netns: Option<&Path>) -> Result<Underlay, OverlayError> {
    netns::in_netns_blocking(netns.map(Path::to_owned), move |handle| async move {
        let addresses: Vec<AddressMessage> =
            handle.address().get().execute().try_collect().await.map_err(links::nl("listing addresses"))?;
        let holder = addresses.iter().find(|message| {
            message.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(std::net::IpAddr::V4(ip)) | AddressAttribute::Address(std::net::IpAddr::V4(ip)) if *ip == addr))
        });
        let index = holder.ok_or(OverlayError::NoUnderlay(addr))?.header.index;
        let link = links::dump(&handle)
            .await?
            .into_iter()
            .find(|link| link.index == index)
            .ok_or(OverlayError::NoUnderlay(addr))?;
        Ok(Underlay { addr, ifindex: link.index, ifname: link.name, mtu: link.mtu, vxlan_port })
    })
}

/// The overlay data plane of one node. Operations are serialised: a `sync` computed before a
/// task attached must not race with that attachment.
pub struct Overlay {
    underlay: Underlay,
    node_netns: Option<PathBuf>,
    state: tokio::sync::Mutex<State>,
}

// The daemon shares one `Overlay` between tokio tasks behind an `Arc`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Overlay>();
};

/// What an `Overlay` remembers between calls; everything else is read back from the kernel.
#[derive(Default)]
struct State {
    /// The isolated pools last handed to the egress NAT rules (`None`: not yet since start).
    egress_pools: Option<Vec<(Ipv4Addr, u8)>>,
}

impl Overlay {
    /// `node_netns: None` = the process's namespace (production); `Some(path)` = do all node-side
    /// netlink in that namespace (tests build several "nodes" in one process). Nothing is changed
    /// until the first `sync` or `attach_task`: a restarted agent adopts what it finds then.
    pub fn new(underlay: Underlay, node_netns: Option<PathBuf>) -> Result<Overlay, OverlayError> {
        if let Some(path) = &node_netns {
            std::fs::File::open(path).map_err(|source| OverlayError::Netns { path: path.clone(), source })?;
        }
        Ok(Overlay { underlay, node_netns, state: tokio::sync::Mutex::new(State::default()) })
    }

    /// The underlay this overlay sends from.
    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    /// Makes the node match `wanted` exactly: a bridge + VXLAN device per wanted network (adopting
    /// ones that exist with the right VNI/port/local/MTU, fixing or recreating ones that do not),
    /// FDB entries (`self permanent` MAC → remote VTEP on the VXLAN device, plus `master` static
    /// entries so the bridge never floods them to local ports) and permanent neighbour entries
    /// (IP → MAC, for remote and local endpoints, on the VXLAN device with ARP proxy on) exactly
    /// equal to `wanted`, stale ones removed; all-zero FDB entries (flood lists) are left alone.
    /// Each wanted network's bridge carries exactly its `bridge_addrs` entry (IPv4 address and
    /// MAC), or no IPv4 address at all. Networks no longer wanted are removed, but never one
    /// that still has a local task attached. Also ensures the gateway bridge and egress NAT when
    /// any non-internal network is wanted. Idempotent; one dump of each table, then only the
    /// differences are written.
    pub async fn sync(&self, wanted: &WantedOverlay) -> Result<(), OverlayError> {
        let mut state = self.state.lock().await;
        let underlay = self.underlay.clone();
        let owned = wanted.clone();
        in_netns(
            self.node_netns.clone(),
            move |handle| async move { node::sync_node(&handle, &underlay, &owned).await },
        )
        .await?;
        if wanted.networks.iter().any(|network| !network.internal) {
            let mut pools = wanted.isolated_pools.clone();
            pools.sort();
            pools.dedup();
            let nat = (state.egress_pools.as_ref() != Some(&pools)).then_some(pools.as_slice());
            gateway::ensure(self.node_netns.clone(), &self.underlay, nat).await?;
            state.egress_pools = Some(pools);
        }
        Ok(())
    }

    /// Wires a task: for each (network, interface) a veth pair, host side enslaved to the
    /// network's bridge (creating the network's devices if `sync` has not yet), task side moved
    /// into `netns`, renamed `eth0`, `eth1`… in order, with the given MAC, address/prefix, MTU =
    /// network MTU, up; `lo` up. If `egress`, one more veth on the gateway bridge with an address
    /// from the gateway subnet and the task's default route through it. An interface with a
    /// `reply_gateway` also gets a source rule and table of its own, so what it sends from its
    /// address leaves through it towards that gateway. Idempotent: attaching a task that is
    /// already attached (agent restart) verifies and fixes, never duplicates.
    pub async fn attach_task(
        &self,
        task_id: &str,
        netns: &Path,
        nets: &[(OverlayNetwork, TaskInterface)],
        egress: bool,
    ) -> Result<(), OverlayError> {
        let mut state = self.state.lock().await;
        if egress {
            // Before the first sync since start, isolate at least the task's own networks; the
            // next sync installs the full list.
            let pools: Vec<_> = nets.iter().map(|(network, _)| (network.subnet, network.prefix_len)).collect();
            let nat = state.egress_pools.is_none().then_some(pools.as_slice());
            gateway::ensure(self.node_netns.clone(), &self.underlay, nat).await?;
            if state.egress_pools.is_none() {
                state.egress_pools = Some(pools);
            }
        }
        task::attach(self.node_netns.clone(), &self.underlay, task_id, netns, nets, egress).await
    }

    /// Removes the task's host-side veths (and with them the task side); frees its gateway
    /// address (which lives only in the removed device's alias).
    pub async fn detach_task(&self, task_id: &str) -> Result<(), OverlayError> {
        let _state = self.state.lock().await;
        task::detach(self.node_netns.clone(), task_id.to_owned()).await
    }

    /// The ifindex of `network_id`'s bridge on this node (the ingress bridge the eBPF mesh
    /// redirects routed flows into), if the network's devices exist.
    pub async fn bridge_ifindex(&self, network_id: &str) -> Result<Option<u32>, OverlayError> {
        let owner = names::Owner::NetworkBridge { network: network_id.to_owned() };
        in_netns(self.node_netns.clone(), move |handle| async move {
            let links = links::dump(&handle).await?;
            Ok(links.iter().find(|link| node::is_bridge_of(link, &owner)).map(|link| link.index))
        })
        .await
    }

    /// The host sides of `task_id`'s overlay interfaces, as (network ID, ifindex) sorted by
    /// network: where the eBPF mesh attaches its per-task programs. The gateway port is not one.
    pub async fn task_veths(&self, task_id: &str) -> Result<Vec<(String, u32)>, OverlayError> {
        let _state = self.state.lock().await;
        task::veths(self.node_netns.clone(), task_id.to_owned()).await
    }

    /// Task IDs that have interfaces on this node, read from the devices' aliases (so it works
    /// after a restart).
    pub async fn attached_tasks(&self) -> Result<Vec<String>, OverlayError> {
        let _state = self.state.lock().await;
        task::attached(self.node_netns.clone()).await
    }
}
