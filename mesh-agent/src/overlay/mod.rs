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
//! Everything this module creates is named so that a restarted agent recognises it: it adopts
//! what matches the wanted state, removes only what no longer is wanted, and never tears down a
//! working network because it restarted.
//!
//! Netlink is spoken from dedicated threads that `setns()` into the namespace concerned; tokio
//! worker threads never change namespace.

use std::net::Ipv4Addr;

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
}
