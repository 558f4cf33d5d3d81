//! The identity a node gossips under: its node ID, the address peers reach it at, and a "bump".
//!
//! foca keys members by [`foca::Identity::addr`]; ours is the node ID, so a node that restarts
//! (or moves to another IP) replaces its previous identity instead of appearing as a second
//! member. The bump decides which of two identities with the same node ID is the current one:
//! it starts at the wall clock in milliseconds when the process starts, so a restarted process
//! wins over the identity of its previous life, and [`foca::Identity::renew`] increments it so a
//! node wrongly declared down rejoins at once under a fresh identity.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest node ID gossip accepts, in bytes (Docker's node IDs are 25 characters).
pub const MAX_NODE_ID_LEN: usize = 64;

/// One life of one node, as foca sees it. Encoded with postcard in every message header.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeIdentity {
    #[serde(serialize_with = "ser_node_id", deserialize_with = "de_node_id")]
    pub(crate) node_id: Arc<str>,
    pub(crate) addr: SocketAddr,
    pub(crate) bump: u64,
}

impl NodeIdentity {
    /// A fresh identity for a process starting now.
    pub(crate) fn new(node_id: Arc<str>, addr: SocketAddr) -> Self {
        NodeIdentity { node_id, addr, bump: unix_millis() }
    }
}

impl foca::Identity for NodeIdentity {
    // Arc so that foca's frequent `addr()` calls clone a pointer, not a string.
    type Addr = Arc<str>;

    fn renew(&self) -> Option<Self> {
        // Must win the conflict against `self`: strictly greater bump.
        let bump = self.bump.checked_add(1)?.max(unix_millis());
        Some(NodeIdentity { node_id: self.node_id.clone(), addr: self.addr, bump })
    }

    fn addr(&self) -> Arc<str> {
        self.node_id.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // The newest life wins; the address breaks ties so that two processes started with
        // the same ID in the same millisecond still agree on one winner everywhere.
        (self.bump, self.addr) > (adversary.bump, adversary.addr)
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node_id, self.addr, self.bump)
    }
}

/// Checks a node ID before it goes on the wire or comes off it.
pub(crate) fn validate_node_id(node_id: &str) -> Result<(), &'static str> {
    if node_id.is_empty() {
        Err("node id is empty")
    } else if node_id.len() > MAX_NODE_ID_LEN {
        Err("node id is longer than 64 bytes")
    } else {
        Ok(())
    }
}

fn ser_node_id<S: Serializer>(node_id: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(node_id)
}

fn de_node_id<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    let node_id = String::deserialize(d)?;
    validate_node_id(&node_id).map_err(D::Error::custom)?;
    Ok(Arc::from(node_id))
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Codec, Identity, Member, PostcardCodec};

    fn id(node: &str, port: u16, bump: u64) -> NodeIdentity {
        NodeIdentity { node_id: Arc::from(node), addr: SocketAddr::from(([127, 0, 0, 1], port)), bump }
    }

    #[test]
    fn renewed_identity_wins_and_keeps_node_id() {
        let old = id("n1", 7946, 10);
        let new = old.renew().unwrap();
        assert_eq!(new.addr(), old.addr());
        assert!(new.bump > old.bump);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn equal_bumps_still_have_one_winner() {
        let a = id("n1", 1, 5);
        let b = id("n1", 2, 5);
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }

    #[test]
    fn postcard_round_trip_and_overlong_id_rejected() {
        let mut codec = PostcardCodec;
        let mut buf = Vec::new();
        codec.encode_member(&Member::alive(id("node-a", 7946, 42)), &mut buf).unwrap();
        let back: Member<NodeIdentity> = codec.decode_member(&buf[..]).unwrap();
        assert_eq!(back.id(), &id("node-a", 7946, 42));

        let long = "x".repeat(MAX_NODE_ID_LEN + 1);
        let mut buf = Vec::new();
        codec.encode_member(&Member::alive(id(&long, 7946, 1)), &mut buf).unwrap();
        assert!(Codec::<NodeIdentity>::decode_member(&mut codec, &buf[..]).is_err());
    }
}
