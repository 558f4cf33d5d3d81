//! Rust mirrors of the types in `bpf/shoal_types.h`, the one place they are defined. Layouts are
//! `#[repr(C)]` with explicit padding and their sizes are asserted at compile time, as they are in
//! C, so the two sides cannot drift apart silently. Addresses and ports are in network byte order,
//! exactly as the programs see them; the conversion helpers keep that detail out of callers.

use std::net::Ipv4Addr;

/// Capacity of the `services` map and of the per-service counters.
pub const MAX_SERVICES: u32 = 65536;
/// Capacity of the `backends` map and of the per-backend counters.
pub const MAX_BACKENDS: u32 = 131072;

pub const SCOPE_VIP: u8 = 0;
pub const SCOPE_NODE: u8 = 1;
pub const SVC_F_CLIENT_AFFINITY: u32 = 1;
pub const BACKEND_ACTIVE: u8 = 0;
pub const BACKEND_DRAINING: u8 = 1;
pub const CT_ORIGINAL: u8 = 0;
pub const CT_REPLY: u8 = 1;
pub const CT_SEEN_SYN: u8 = 1;
pub const CT_SEEN_FIN: u8 = 2;
pub const CT_SEEN_RST: u8 = 4;

/// Key of slot `index` of Maglev half `half` in a service's Maglev map; keys 0 and 1 hold the
/// sizes of the two halves (`SHOAL_MAGLEV_SLOT`).
pub const fn maglev_slot(index: u32, half: u32) -> u32 {
    2 + 2 * index + half
}

/// Indexes of the per-CPU `mesh_stats` counters (`SHOAL_STAT_*`).
pub const STAT_FRAGMENT: u32 = 0;
pub const STAT_TRUNCATED: u32 = 1;
pub const STAT_IP_OPTIONS: u32 = 2;
pub const STAT_DROP_NO_BACKEND: u32 = 3;
pub const STAT_DROP_REWRITE: u32 = 4;
pub const STAT_ICMP_TRANSLATED: u32 = 5;
pub const STAT_ICMP_UNTRACKED: u32 = 6;
pub const STAT_RETURN_TAKEOVER: u32 = 7;
pub const STAT_DROP_RETURN_CONFLICT: u32 = 8;
pub const STAT_NEW_FLOW: u32 = 9;
pub const STAT_REPLY: u32 = 10;
pub const STAT_PORT_REMAP: u32 = 11;
pub const STAT_MAX: u32 = 16;

/// IP protocol numbers a service can use.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SvcKey {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcValue {
    pub id: u32,
    pub backend_count: u32,
    pub flags: u32,
    /// Bumped on every backend change; `generation & 1` is the active half of the Maglev map.
    pub generation: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendValue {
    pub addr: u32,
    pub port: u16,
    pub state: u8,
    pub pad: u8,
    pub node_addr: u32,
    pub node_mac: [u8; 6],
    pub pad2: u16,
    pub svc_id: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    pub last_seen_ns: u64,
    pub backend_id: u32,
    pub nat_addr: u32,
    pub nat_port: u16,
    pub dir: u8,
    /// `CT_SEEN_*` flags seen in this entry's direction.
    pub tcp_seen: u8,
    pub svc_id: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnMac {
    pub last_seen_ns: u64,
    pub mac: [u8; 6],
    /// Network order; non-zero: the task sees this flow on a remapped client port, and this is
    /// the client's own.
    pub client_port: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevnatKey {
    pub cookie: u64,
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevnatValue {
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// Per-CPU counters of one service or backend, summed over CPUs by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub no_backend: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, other: &Counters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.new_flows += other.new_flows;
        self.no_backend += other.no_backend;
    }
}

const _: () = assert!(size_of::<SvcKey>() == 8);
const _: () = assert!(size_of::<SvcValue>() == 16);
const _: () = assert!(size_of::<BackendValue>() == 24);
const _: () = assert!(size_of::<CtKey>() == 16);
const _: () = assert!(size_of::<CtValue>() == 24);
const _: () = assert!(size_of::<ReturnMac>() == 16);
const _: () = assert!(size_of::<SockRevnatKey>() == 16);
const _: () = assert!(size_of::<SockRevnatValue>() == 8);
const _: () = assert!(size_of::<Counters>() == 32);

// SAFETY: every type above is `#[repr(C)]`, made only of integers and integer arrays, with all
// padding spelled out as fields, so any bit pattern is valid and no byte is uninitialised.
unsafe impl aya::Pod for SvcKey {}
unsafe impl aya::Pod for SvcValue {}
unsafe impl aya::Pod for BackendValue {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtValue {}
unsafe impl aya::Pod for ReturnMac {}
unsafe impl aya::Pod for SockRevnatKey {}
unsafe impl aya::Pod for SockRevnatValue {}
unsafe impl aya::Pod for Counters {}

/// An IPv4 address as the programs store it (network byte order in a native `u32`).
pub fn ip_to_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn ip_from_be(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

/// A port as the programs store it (network byte order in a native `u16`).
pub fn port_to_be(port: u16) -> u16 {
    port.to_be()
}

pub fn port_from_be(raw: u16) -> u16 {
    u16::from_be(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn field_offsets_match_the_c_header() {
        // Offsets the C compiler gives the same structs; a reordered field fails here.
        assert_eq!(offset_of!(BackendValue, node_addr), 8);
        assert_eq!(offset_of!(BackendValue, node_mac), 12);
        assert_eq!(offset_of!(BackendValue, svc_id), 20);
        assert_eq!(offset_of!(CtValue, backend_id), 8);
        assert_eq!(offset_of!(CtValue, nat_port), 16);
        assert_eq!(offset_of!(CtValue, svc_id), 20);
        assert_eq!(offset_of!(SockRevnatKey, addr), 8);
        assert_eq!(offset_of!(CtKey, proto), 12);
        assert_eq!(offset_of!(CtValue, tcp_seen), 19);
        assert_eq!(offset_of!(SvcValue, generation), 12);
    }

    #[test]
    fn addresses_round_trip_through_network_order() {
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(ip_to_be(ip).to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(ip_from_be(ip_to_be(ip)), ip);
        assert_eq!(port_to_be(80).to_ne_bytes(), [0, 80]);
        assert_eq!(port_from_be(port_to_be(8080)), 8080);
    }
}
