//! Egress NAT for tasks, through nf_tables over netlink (libnftnl/libmnl via the `nftnl` and
//! `mnl` crates — never by running `nft`).
//!
//! Tasks on a non-internal network reach the outside through the node's gateway bridge. This module
//! owns one table, `ip shoal`, with two base chains:
//!
//! ```text
//! table ip shoal {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr <gateway subnet> oifname != "<gateway bridge>" masquerade
//!     }
//!     chain forward {
//!         type filter hook forward priority filter; policy accept;
//!         iifname "<gateway bridge>" ip daddr <overlay subnet> counter drop   # one per isolated pool
//!         iifname "<gateway bridge>" ip daddr <gateway subnet> counter drop
//!     }
//! }
//! ```
//!
//! The drops are the isolation between networks: a task must not reach an overlay it is not
//! attached to by routing through the gateway, nor another task through the gateway. Their
//! counters are read back by [`egress_counters`].
//!
//! The table is replaced in one netlink batch ("add table, delete table, add table, chains, rules"),
//! which nf_tables applies atomically: there is never a moment without rules, and because adding
//! an existing table is a no-op, the same batch works whether or not the table existed (this
//! avoids `NFT_MSG_DESTROYTABLE`, which neither `nftnl` nor kernels before 6.3 have). Every call
//! acts on the network namespace of the calling thread, so callers program a node's namespace
//! from a thread that `setns()`ed into it.

mod netlink;
#[cfg(test)]
mod tests;

use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Counter, Ipv4HeaderField, Masquerade, Meta, NetworkHeaderField, Payload, Verdict,
};
use nftnl::{Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

/// The name of our table (family `ip`).
pub const TABLE: &str = "shoal";
const TABLE_C: &CStr = c"shoal";
/// The nat chain that masquerades tasks' egress.
pub const POSTROUTING_CHAIN: &str = "postrouting";
const POSTROUTING_C: &CStr = c"postrouting";
/// The filter chain that isolates networks from each other.
pub const FORWARD_CHAIN: &str = "forward";
const FORWARD_C: &CStr = c"forward";
/// nft's `srcnat` priority.
const PRIORITY_SRCNAT: i32 = 100;
/// nft's `filter` priority.
const PRIORITY_FILTER: i32 = 0;
/// The kernel's interface name buffer (`IFNAMSIZ`), NUL included.
const IFNAMSIZ: usize = 16;

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

/// What the isolation rules dropped since the table was last replaced (each [`apply_egress`]
/// starts them again from zero, because the rules are new).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressCounters {
    /// Packets from the gateway bridge to an isolated pool or to the gateway subnet, dropped.
    pub dropped_packets: u64,
    /// Their bytes (IP headers included).
    pub dropped_bytes: u64,
}

/// Why the egress rules could not be programmed or read.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("invalid egress rules: {0}")]
    InvalidRules(String),
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot talk to nf_tables to {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused one message of a batch; `step` names it (e.g. `add rule to forward`).
    #[error("nf_tables refused to {action} at step {step:?}: {source}")]
    Refused {
        action: &'static str,
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the reply of nf_tables to {action}: {detail}")]
    BadReply { action: &'static str, detail: String },
    #[error("the egress rules (table ip {TABLE}) are not installed")]
    NotApplied,
}

/// Installs `rules` in the calling thread's network namespace, replacing any previous version
/// atomically. Idempotent.
pub fn apply_egress(rules: &EgressRules) -> Result<(), NatError> {
    let gateway = ifname_bytes(&rules.gateway_ifname)?;
    let gateway_subnet = network(rules.gateway_subnet)?;
    let pools = rules.isolated_pools.iter().map(|&p| network(p)).collect::<Result<Vec<_>, _>>()?;

    let mut batch = Batch::new();
    let mut steps = Vec::new();
    let table = Table::new(TABLE_C, ProtoFamily::Ipv4);
    // Add (a no-op if it exists), delete (with everything in it), add again: the replace below
    // works whether or not the table existed, within one transaction.
    add(&mut batch, &mut steps, &table, MsgType::Add, "add table");
    add(&mut batch, &mut steps, &table, MsgType::Del, "delete table");
    add(&mut batch, &mut steps, &table, MsgType::Add, "create table");

    let mut postrouting = Chain::new(POSTROUTING_C, &table);
    postrouting.set_type(ChainType::Nat);
    postrouting.set_hook(Hook::PostRouting, PRIORITY_SRCNAT);
    postrouting.set_policy(Policy::Accept);
    add(&mut batch, &mut steps, &postrouting, MsgType::Add, "add chain postrouting");

    let mut forward = Chain::new(FORWARD_C, &table);
    forward.set_type(ChainType::Filter);
    forward.set_hook(Hook::Forward, PRIORITY_FILTER);
    forward.set_policy(Policy::Accept);
    add(&mut batch, &mut steps, &forward, MsgType::Add, "add chain forward");

    // ip saddr <gateway subnet> oifname != <gateway> masquerade
    let mut masquerade = Rule::new(&postrouting);
    match_network(&mut masquerade, Ipv4HeaderField::Saddr, gateway_subnet);
    masquerade.add_expr(&Meta::OifName);
    masquerade.add_expr(&Cmp::new(CmpOp::Neq, &gateway[..]));
    masquerade.add_expr(&Masquerade);
    add(&mut batch, &mut steps, &masquerade, MsgType::Add, "add masquerade rule");

    // iifname <gateway> ip daddr <destination> counter drop, for every pool and the gateway subnet.
    for destination in pools.iter().copied().chain([gateway_subnet]) {
        let mut drop = Rule::new(&forward);
        drop.add_expr(&Meta::IifName);
        drop.add_expr(&Cmp::new(CmpOp::Eq, &gateway[..]));
        match_network(&mut drop, Ipv4HeaderField::Daddr, destination);
        drop.add_expr(&Counter);
        drop.add_expr(&Verdict::Drop);
        let step = format!("add drop rule for {}/{}", destination.0, destination.1);
        add(&mut batch, &mut steps, &drop, MsgType::Add, step);
    }

    netlink::send_batch(batch.finalize(), &steps, "replace the egress rules")
}

/// Removes our table from the calling thread's network namespace. Idempotent: removing rules
/// that are not there succeeds.
pub fn remove_egress() -> Result<(), NatError> {
    let mut batch = Batch::new();
    let mut steps = Vec::new();
    let table = Table::new(TABLE_C, ProtoFamily::Ipv4);
    // The add makes the delete valid when the table is absent; both happen in one transaction.
    add(&mut batch, &mut steps, &table, MsgType::Add, "add table");
    add(&mut batch, &mut steps, &table, MsgType::Del, "delete table");
    netlink::send_batch(batch.finalize(), &steps, "remove the egress rules")
}

/// Reads the isolation drop counters back from the kernel (calling thread's namespace).
pub fn egress_counters() -> Result<EgressCounters, NatError> {
    let counters = netlink::rule_counters(TABLE_C, FORWARD_C)?;
    // There is always at least the gateway subnet's drop rule: none means the table is not there.
    if counters.is_empty() {
        return Err(NatError::NotApplied);
    }
    Ok(counters.iter().fold(EgressCounters::default(), |sum, &(packets, bytes)| EgressCounters {
        dropped_packets: sum.dropped_packets + packets,
        dropped_bytes: sum.dropped_bytes + bytes,
    }))
}

/// Adds one message to the batch and remembers what it does, so that a refusal names its step.
fn add<T: nftnl::NlMsg>(batch: &mut Batch, steps: &mut Vec<String>, msg: &T, kind: MsgType, step: impl Into<String>) {
    batch.add(msg, kind);
    steps.push(step.into());
}

/// `ip saddr|daddr <network>`: nothing for /0, an exact compare for /32, a masked compare otherwise.
fn match_network(rule: &mut Rule, field: Ipv4HeaderField, (addr, len): (Ipv4Addr, u8)) {
    if len == 0 {
        return;
    }
    rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv4(field)));
    if len < 32 {
        rule.add_expr(&Bitwise::new(mask(len), Ipv4Addr::UNSPECIFIED));
    }
    rule.add_expr(&Cmp::new(CmpOp::Eq, addr));
}

fn mask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0))
}

/// Validates a prefix and clears its host bits, so that `10.0.9.1/24` matches `10.0.9.0/24`.
fn network((addr, len): (Ipv4Addr, u8)) -> Result<(Ipv4Addr, u8), NatError> {
    if len > 32 {
        return Err(NatError::InvalidRules(format!("{addr}/{len} is not an IPv4 prefix")));
    }
    Ok((Ipv4Addr::from(u32::from(addr) & u32::from(mask(len))), len))
}

/// An interface name as the kernel compares it: `IFNAMSIZ` bytes, NUL padded (what `nft` sends
/// for an exact `iifname`/`oifname` match).
fn ifname_bytes(name: &str) -> Result<[u8; IFNAMSIZ], NatError> {
    let invalid = |why: &str| NatError::InvalidRules(format!("invalid gateway interface name {name:?}: {why}"));
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() >= IFNAMSIZ {
        return Err(invalid("longer than 15 bytes"));
    }
    if CString::new(name).is_err() || name.contains(['/', ' ']) {
        return Err(invalid("contains NUL, '/' or a space"));
    }
    let mut bytes = [0u8; IFNAMSIZ];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    Ok(bytes)
}
