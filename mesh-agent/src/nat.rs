//! Egress NAT for tasks, through nf_tables over netlink (libnftnl/libmnl via the `nftnl` and
//! `mnl` crates — never by running `nft`). PLACEHOLDER: being written.

use std::net::Ipv4Addr;

/// The node's egress rules: tasks on the gateway bridge reach the outside through masquerade and
/// reach no overlay subnet (isolation between networks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRules {
    /// The gateway bridge's name (e.g. `shoal_gwbridge`).
    pub gateway_ifname: String,
    /// The gateway bridge's subnet.
    pub gateway_subnet: (Ipv4Addr, u8),
    /// Destinations no task may reach through the gateway: every overlay subnet.
    pub isolated_pools: Vec<(Ipv4Addr, u8)>,
}
