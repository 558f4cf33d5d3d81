//! Device names and owner aliases.
//!
//! Interface names are limited to 15 bytes, too short for a task ID and a network ID, so names
//! are short and deterministic (the same task and network always give the same name, which makes
//! creation idempotent) while the full owner goes into the link alias (IFLA_IFALIAS). A restarted
//! agent reads the aliases back and knows what every device is for, without any state file.

use std::net::Ipv4Addr;

/// The node's gateway bridge (like `docker_gwbridge`).
pub(crate) const GATEWAY_BRIDGE: &str = "shoal_gwbridge";
const GATEWAY_BRIDGE_ALIAS: &str = "shoal:gwbridge";

/// What a device of ours belongs to, as written in its alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The bridge of an overlay network.
    NetworkBridge { network: String },
    /// The VXLAN port of an overlay network.
    NetworkVxlan { network: String },
    /// The host side of a task's veth on a network.
    TaskPort { task: String, network: String },
    /// The host side of a task's veth on the gateway bridge, with the task-side address.
    GatewayPort { task: String, addr: Ipv4Addr },
    /// The gateway bridge.
    GatewayBridge,
}

impl Owner {
    pub(crate) fn alias(&self) -> String {
        match self {
            Owner::NetworkBridge { network } => format!("shoal:net:{network}"),
            Owner::NetworkVxlan { network } => format!("shoal:vxlan:{network}"),
            Owner::TaskPort { task, network } => format!("shoal:task:{task}:{network}"),
            Owner::GatewayPort { task, addr } => format!("shoal:gw:{task}:{addr}"),
            Owner::GatewayBridge => GATEWAY_BRIDGE_ALIAS.to_owned(),
        }
    }

    pub(crate) fn parse(alias: &str) -> Option<Owner> {
        if alias == GATEWAY_BRIDGE_ALIAS {
            return Some(Owner::GatewayBridge);
        }
        let (kind, rest) = alias.strip_prefix("shoal:")?.split_once(':')?;
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        match kind {
            "net" => Some(Owner::NetworkBridge { network: nonempty(rest)? }),
            "vxlan" => Some(Owner::NetworkVxlan { network: nonempty(rest)? }),
            "task" => {
                let (task, network) = rest.split_once(':')?;
                Some(Owner::TaskPort { task: nonempty(task)?, network: nonempty(network)? })
            }
            "gw" => {
                let (task, addr) = rest.split_once(':')?;
                Some(Owner::GatewayPort { task: nonempty(task)?, addr: addr.parse().ok()? })
            }
            _ => None,
        }
    }

    /// The task this device belongs to, if it is a task's.
    pub(crate) fn task(&self) -> Option<&str> {
        match self {
            Owner::TaskPort { task, .. } | Owner::GatewayPort { task, .. } => Some(task),
            _ => None,
        }
    }
}

/// The bridge of the network with VXLAN ID `vni` (VNIs are 24 bits: at most 12 bytes).
pub(crate) fn network_bridge(vni: u32) -> String {
    format!("shbr{vni}")
}

/// The VXLAN device of the network with VXLAN ID `vni`.
pub(crate) fn network_vxlan(vni: u32) -> String {
    format!("shvx{vni}")
}

/// 64-bit FNV-1a over each part followed by a NUL byte: stable across builds, platforms and
/// Rust versions, unlike `DefaultHasher`, which is what names and MACs derived from it need.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// FNV-1a, 40 bits, as 10 hex digits.
fn short_hash(parts: &[&str]) -> String {
    format!("{:010x}", fnv1a(parts) & 0xff_ffff_ffff)
}

/// The MAC of `node_id`'s bridge on `network_id` (the ingress bridge the routing mesh uses).
/// Every node computes the same value for every other node, so each can hold static FDB and
/// neighbour entries for its peers' bridges without learning.
///
/// The algorithm is part of the cluster's wire contract (nodes of different builds must agree):
/// 64-bit FNV-1a over `"shoal-bridge"`, `node_id` and `network_id`, each followed by a NUL byte;
/// the six low-order bytes of the hash, most significant first, with the first byte made
/// locally administered and unicast (`(b & 0xfe) | 0x02`).
pub fn node_bridge_mac(node_id: &str, network_id: &str) -> [u8; 6] {
    let hash = fnv1a(&["shoal-bridge", node_id, network_id]).to_be_bytes();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&hash[2..]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Host and temporary task-side names of a task's veth on a network (13 bytes each).
pub(crate) fn task_veth(task: &str, network: &str) -> (String, String) {
    let hash = short_hash(&[task, network]);
    (format!("sht{hash}"), format!("shu{hash}"))
}

/// Host and temporary task-side names of a task's veth on the gateway bridge.
pub(crate) fn gateway_veth(task: &str) -> (String, String) {
    let hash = short_hash(&[task, "\u{0}gateway"]);
    (format!("shg{hash}"), format!("shq{hash}"))
}

/// The name of a task's `position`-th interface inside its namespace.
pub(crate) fn task_ifname(position: usize) -> String {
    format!("eth{position}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn aliases_round_trip() {
        let owners = [
            Owner::NetworkBridge { network: "n1x".into() },
            Owner::NetworkVxlan { network: "n1x".into() },
            Owner::TaskPort { task: "t0123456789abcdefghijklmn".into(), network: "n1x".into() },
            Owner::GatewayPort { task: "t1".into(), addr: Ipv4Addr::new(172, 18, 0, 9) },
            Owner::GatewayBridge,
        ];
        for owner in owners {
            assert_eq!(Owner::parse(&owner.alias()), Some(owner.clone()), "{}", owner.alias());
        }
    }

    #[test]
    fn foreign_aliases_are_not_ours() {
        for alias in ["", "eth0", "shoal:", "shoal:net:", "shoal:task:t1", "shoal:gw:t1:notanip", "docker:net:x"] {
            assert_eq!(Owner::parse(alias), None, "{alias}");
        }
    }

    #[test]
    fn node_bridge_macs_are_stable_local_unicast_and_distinct() {
        // Pinned (computed independently): a change here breaks clusters whose nodes run
        // different builds.
        assert_eq!(node_bridge_mac("node-1", "ingress"), [0x62, 0x3a, 0x66, 0x60, 0x61, 0x07]);
        let macs: BTreeSet<[u8; 6]> = ["node-1", "node-2", "node-3"]
            .iter()
            .flat_map(|node| ["ingress", "other"].map(|network| node_bridge_mac(node, network)))
            .collect();
        assert_eq!(macs.len(), 6, "one MAC per (node, network)");
        for mac in macs {
            assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast: {mac:02x?}");
        }
    }

    #[test]
    fn names_fit_ifnamsiz_and_are_stable() {
        let (host, peer) = task_veth("t0123456789abcdefghijklmn", "n0123456789abcdefghijklmn");
        assert!(host.len() <= 15 && peer.len() <= 15 && host != peer);
        assert_eq!(task_veth("t0123456789abcdefghijklmn", "n0123456789abcdefghijklmn").0, host);
        assert_ne!(task_veth("t1", "n2").0, task_veth("t1", "n3").0);
        assert_ne!(gateway_veth("t1").0, task_veth("t1", "").0);
        assert!(network_bridge(0xff_ffff).len() <= 15 && network_vxlan(0xff_ffff).len() <= 15);
        assert!(GATEWAY_BRIDGE.len() <= 15);
    }
}
