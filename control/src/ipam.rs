//! IPv4 address management for overlay networks: one [`Pool`] per network, stored in the
//! replicated state and changed only by `ClusterState::apply`, so every manager allocates the
//! same addresses in the same order.
//!
//! Allocation is **next-fit**: a cursor moves forward through the range and wraps, so an address
//! that was just released is the last one to come back. On top of that a released address sits in
//! **quarantine** for [`QUARANTINE`] (measured with the proposals' timestamps, so it is
//! deterministic) and is handed out again before that only when nothing else is free. Docker
//! reuses the lowest free address at once and derives MACs from IPs; with gossip lagging, a new
//! task then inherits the old task's stale ARP/FDB entries on other nodes and its traffic is
//! blackholed (moby#52661). Keeping released addresses out of circulation for a while gives every
//! node time to forget them.
//!
//! Every address records its owner (a task ID, `vip:<service id>`, `node:<node id>`), and a
//! release frees only what that owner holds, so a late or repeated release can never free an
//! address someone else got meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long a released address stays out of circulation while other addresses are free.
pub const QUARANTINE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// An IPv4 network in CIDR form, normalized to its network address.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Go's `net.ParseCIDR` wording, which dockerd relays.
    #[error("invalid CIDR address: {0}")]
    Invalid(String),
}

impl Cidr {
    /// Parses `a.b.c.d/n`; host bits are cleared (`10.0.1.5/24` → `10.0.1.0/24`).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let invalid = || CidrError::Invalid(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let prefix_len: u8 = len.parse().map_err(|_| invalid())?;
        if prefix_len > 32 {
            return Err(invalid());
        }
        Ok(Cidr::new(addr, prefix_len))
    }

    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Cidr {
        Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)), prefix_len }
    }

    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    pub fn last(&self) -> u32 {
        self.first() | !mask(self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.first() <= other.first() && other.last() <= self.last()
    }

    /// The first host address (the default gateway, as in Docker).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first().saturating_add(1).min(self.last()))
    }

    /// The `size`-long blocks of this network, in order (none if `size` is shorter than the prefix).
    pub fn blocks(&self, size: u8) -> impl Iterator<Item = Cidr> {
        let (start, count) = if size < self.prefix_len || size > 32 {
            (0, 0u64)
        } else {
            (self.first() as u64, 1u64 << (size - self.prefix_len))
        };
        let step = 1u64 << (32 - size.min(32));
        (0..count).map(move |i| Cidr::new(Ipv4Addr::from((start + i * step) as u32), size))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

/// The addresses of one network and who holds them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Pool {
    pub subnet: Cidr,
    /// `--ip-range`: where dynamic addresses come from (the subnet when not given).
    pub range: Cidr,
    pub gateway: Ipv4Addr,
    /// The next address next-fit looks at.
    cursor: u32,
    /// Allocated addresses and their owners.
    allocated: BTreeMap<Ipv4Addr, String>,
    /// Released addresses, oldest release first.
    quarantine: VecDeque<(Ipv4Addr, DateTime<Utc>)>,
}

impl Pool {
    /// A pool over `subnet` handing out addresses of `range` (which must lie in the subnet),
    /// never the network, broadcast or gateway address.
    pub fn new(subnet: Cidr, range: Cidr, gateway: Ipv4Addr) -> Pool {
        let mut pool =
            Pool { subnet, range, gateway, cursor: 0, allocated: BTreeMap::new(), quarantine: VecDeque::new() };
        pool.cursor = pool.lowest();
        pool
    }

    fn lowest(&self) -> u32 {
        self.range.first().max(self.subnet.first().saturating_add(1))
    }

    fn highest(&self) -> u32 {
        self.range.last().min(self.subnet.last().saturating_sub(1))
    }

    /// Whether `ip` may ever be handed out.
    fn usable(&self, ip: u32) -> bool {
        ip >= self.lowest() && ip <= self.highest() && ip != u32::from(self.gateway)
    }

    /// Allocates one address for `owner` at time `now`; `None` when the pool is exhausted.
    pub fn allocate(&mut self, owner: &str, now: DateTime<Utc>) -> Option<Ipv4Addr> {
        let (lowest, highest) = (self.lowest(), self.highest());
        if lowest > highest {
            return None;
        }
        // Quarantine is over for addresses released long enough ago.
        while self.quarantine.front().is_some_and(|(_, at)| now - *at >= QUARANTINE) {
            self.quarantine.pop_front();
        }
        let cursor = if (lowest..=highest).contains(&self.cursor) { self.cursor } else { lowest };
        let in_quarantine: std::collections::BTreeSet<Ipv4Addr> = self.quarantine.iter().map(|(ip, _)| *ip).collect();
        let candidates = (cursor..=highest).chain(lowest..cursor);
        let found = candidates
            .map(Ipv4Addr::from)
            .find(|ip| self.usable(u32::from(*ip)) && !self.allocated.contains_key(ip) && !in_quarantine.contains(ip));
        let ip = match found {
            Some(ip) => ip,
            // Nothing else is free: the address released the longest ago goes back first.
            None => {
                let position = self.quarantine.iter().position(|(ip, _)| !self.allocated.contains_key(ip))?;
                self.quarantine.remove(position)?.0
            }
        };
        self.allocated.insert(ip, owner.to_string());
        self.cursor = u32::from(ip).wrapping_add(1);
        Some(ip)
    }

    /// Marks `ip` as held by `owner` (an address chosen elsewhere); `false` if it is not usable
    /// or someone else holds it.
    pub fn reserve(&mut self, ip: Ipv4Addr, owner: &str) -> bool {
        if !self.usable(u32::from(ip)) {
            return false;
        }
        match self.allocated.get(&ip) {
            Some(holder) => holder == owner,
            None => {
                self.quarantine.retain(|(q, _)| *q != ip);
                self.allocated.insert(ip, owner.to_string());
                true
            }
        }
    }

    /// Frees `ip` if `owner` holds it; the address then enters quarantine.
    pub fn release(&mut self, ip: Ipv4Addr, owner: &str, now: DateTime<Utc>) -> bool {
        if self.allocated.get(&ip).map(String::as_str) != Some(owner) {
            return false;
        }
        self.allocated.remove(&ip);
        self.quarantine.push_back((ip, now));
        true
    }

    /// Frees every address `owner` holds.
    pub fn release_owner(&mut self, owner: &str, now: DateTime<Utc>) {
        let held: Vec<Ipv4Addr> = self.allocated.iter().filter(|(_, o)| *o == owner).map(|(ip, _)| *ip).collect();
        for ip in held {
            self.release(ip, owner, now);
        }
    }

    /// The first address `owner` holds.
    pub fn address_of(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocated.iter().find(|(_, o)| *o == owner).map(|(ip, _)| *ip)
    }

    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.allocated.get(&ip).map(String::as_str)
    }

    /// Allocated addresses and their owners, lowest address first.
    pub fn allocations(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.allocated.iter().map(|(ip, owner)| (*ip, owner.as_str()))
    }

    /// `ip/prefix` as Docker writes addresses (`10.0.1.3/24`).
    pub fn with_prefix(&self, ip: Ipv4Addr) -> String {
        format!("{ip}/{}", self.subnet.prefix_len)
    }
}

/// Owner key of a service's VIP.
pub fn vip_owner(service_id: &str) -> String {
    format!("vip:{service_id}")
}

/// Owner key of a node's own address (the routing mesh's per-node address on ingress).
pub fn node_owner(node_id: &str) -> String {
    format!("node:{node_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn pool(subnet: &str) -> Pool {
        let subnet = Cidr::parse(subnet).unwrap();
        Pool::new(subnet, subnet, subnet.first_host())
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_like_go_and_normalize() {
        assert_eq!(Cidr::parse("10.0.1.5/24").unwrap().to_string(), "10.0.1.0/24");
        for bad in ["10.0.1.0", "10.0.1.0/33", "10.0.1/24", "x/24", "10.0.1.0/", "10.0.1.0/+8"] {
            assert_eq!(Cidr::parse(bad).unwrap_err().to_string(), format!("invalid CIDR address: {bad}"));
        }
        let a = Cidr::parse("10.0.0.0/16").unwrap();
        assert!(a.overlaps(&Cidr::parse("10.0.200.0/24").unwrap()));
        assert!(!a.overlaps(&Cidr::parse("10.1.0.0/24").unwrap()));
        assert!(a.covers(&Cidr::parse("10.0.3.0/24").unwrap()));
        let blocks: Vec<String> = Cidr::parse("10.0.0.0/22").unwrap().blocks(24).map(|c| c.to_string()).collect();
        assert_eq!(blocks, ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]);
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().blocks(24).count(), 65536);
    }

    #[test]
    fn next_fit_never_hands_out_network_gateway_or_broadcast() {
        let mut p = pool("10.0.1.0/29");
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate("t", t(0))).collect();
        // .0 network, .1 gateway, .7 broadcast.
        assert_eq!(got, ["10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6"].map(ip));
        assert_eq!(p.allocate("t", t(0)), None);
    }

    #[test]
    fn released_addresses_are_reused_last_and_only_after_quarantine() {
        let mut p = pool("10.0.1.0/29");
        let a = p.allocate("a", t(0)).unwrap();
        let b = p.allocate("b", t(0)).unwrap();
        assert!(p.release(a, "a", t(1)));
        // Next-fit moves on rather than going back to the freed .2.
        assert_eq!(p.allocate("c", t(2)), Some(ip("10.0.1.4")));
        assert_eq!(p.allocate("d", t(2)), Some(ip("10.0.1.5")));
        assert_eq!(p.allocate("e", t(2)), Some(ip("10.0.1.6")));
        // Only the quarantined .2 is left: it is reused because nothing else is free.
        assert_eq!(p.allocate("f", t(3)), Some(a));
        assert_eq!(p.allocate("g", t(3)), None);
        // After the quarantine a released address is simply free again.
        assert!(p.release(b, "b", t(10)));
        assert!(p.release(ip("10.0.1.5"), "d", t(20)));
        assert_eq!(p.allocate("h", t(80)), Some(b), "b's quarantine is over, the cursor wraps to it first");
    }

    #[test]
    fn quarantine_prefers_a_free_address_over_a_recently_released_one() {
        let mut p = pool("10.0.1.0/29");
        let a = p.allocate("a", t(0)).unwrap();
        for owner in ["b", "c", "d"] {
            p.allocate(owner, t(0)).unwrap();
        }
        // Next-fit reaches the free .6 first; .2, released just now, waits.
        p.release(a, "a", t(5));
        assert_eq!(p.allocate("e", t(6)), Some(ip("10.0.1.6")));
        assert_eq!(p.allocate("f", t(6)), Some(a));
        // With two quarantined addresses the oldest release comes back first.
        p.release(ip("10.0.1.4"), "c", t(7));
        p.release(ip("10.0.1.3"), "b", t(8));
        assert_eq!(p.allocate("g", t(9)), Some(ip("10.0.1.4")));
    }

    #[test]
    fn a_release_frees_only_what_the_owner_holds() {
        let mut p = pool("10.0.1.0/24");
        let a = p.allocate("task-a", t(0)).unwrap();
        assert!(!p.release(a, "task-b", t(1)));
        assert_eq!(p.owner(a), Some("task-a"));
        assert!(p.release(a, "task-a", t(1)));
        assert!(!p.release(a, "task-a", t(2)), "a second release is a no-op");
        let v = p.allocate(&vip_owner("s1"), t(3)).unwrap();
        p.allocate(&vip_owner("s1"), t(3)).unwrap();
        p.release_owner(&vip_owner("s1"), t(4));
        assert_eq!(p.address_of(&vip_owner("s1")), None);
        assert_eq!(p.owner(v), None);
    }

    #[test]
    fn ip_range_limits_dynamic_addresses() {
        let subnet = Cidr::parse("10.0.0.0/24").unwrap();
        let mut p = Pool::new(subnet, Cidr::parse("10.0.0.128/30").unwrap(), subnet.first_host());
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate("t", t(0))).collect();
        assert_eq!(got, ["10.0.0.128", "10.0.0.129", "10.0.0.130", "10.0.0.131"].map(ip));
        // A range at the subnet's edge still never yields the broadcast address.
        let mut p = Pool::new(subnet, Cidr::parse("10.0.0.252/30").unwrap(), subnet.first_host());
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate("t", t(0))).collect();
        assert_eq!(got, ["10.0.0.252", "10.0.0.253", "10.0.0.254"].map(ip));
    }

    #[test]
    fn a_24_holds_100_services_with_one_task_each() {
        // moby#43052: VIPs, task addresses and per-node addresses share the subnet. Here a service
        // costs one VIP and one address per task, nothing per node.
        let mut p = pool("10.0.1.0/24");
        for s in 0..100 {
            assert!(p.allocate(&vip_owner(&format!("s{s}")), t(0)).is_some(), "VIP of service {s}");
            assert!(p.allocate(&format!("task{s}"), t(0)).is_some(), "task of service {s}");
        }
        assert_eq!(p.allocations().count(), 200);
    }

    #[test]
    fn a_pool_survives_a_serde_round_trip() {
        let mut p = pool("10.0.1.0/28");
        let a = p.allocate("a", t(0)).unwrap();
        p.allocate("b", t(0)).unwrap();
        p.release(a, "a", t(1));
        let mut copy: Pool = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(copy, p);
        for i in 0..20 {
            assert_eq!(copy.allocate(&format!("x{i}"), t(2 + i)), p.allocate(&format!("x{i}"), t(2 + i)));
        }
    }

    #[test]
    fn reserve_takes_a_chosen_address() {
        let mut p = pool("10.0.1.0/24");
        assert!(p.reserve(ip("10.0.1.9"), "x"));
        assert!(p.reserve(ip("10.0.1.9"), "x"));
        assert!(!p.reserve(ip("10.0.1.9"), "y"));
        assert!(!p.reserve(ip("10.0.1.1"), "y"), "the gateway is never handed out");
        assert!(!p.reserve(ip("10.0.1.255"), "y"));
    }
}
