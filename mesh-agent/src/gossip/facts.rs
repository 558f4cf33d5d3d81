//! Small per-node facts (task health and the like) carried by foca's custom broadcasts.
//!
//! A fact is `(node, key) -> value` with a version; the newest version wins everywhere. Only
//! the node itself writes its facts, so versions come from one clock: the wall clock in
//! microseconds, forced to grow, which also keeps a restarted node's facts newer than those of
//! its previous life. Broadcasts reach most peers but not all (they are sent a bounded number
//! of times and UDP loses some), so each node re-broadcasts its own facts periodically and when
//! a member comes up; receivers that already hold a version do not spread it again.
//!
//! Wire format of one fact, all lengths bounded so that one always fits in a datagram:
//! `u8 node_len, node, u8 key_len, key, u64 version (BE), u16 value_len (BE), value`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut};

use super::identity::{unix_millis, validate_node_id, NodeIdentity};

/// Longest fact key, in bytes.
pub const MAX_FACT_KEY_LEN: usize = 64;
/// Largest fact value, in bytes.
pub const MAX_FACT_VALUE_LEN: usize = 512;
/// Facts kept per node; more keys from the network are ignored.
pub(crate) const MAX_FACTS_PER_NODE: usize = 64;
/// Nodes we keep facts for; facts about further nodes from the network are ignored.
pub(crate) const MAX_FACT_NODES: usize = 4096;

/// A decoded fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fact {
    pub(crate) node_id: Arc<str>,
    pub(crate) key: String,
    pub(crate) version: u64,
    pub(crate) value: Vec<u8>,
}

/// Why a fact could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FactDecodeError {
    #[error("fact is truncated")]
    Truncated,
    #[error("fact has trailing bytes")]
    Trailing,
    #[error("fact field is invalid: {0}")]
    Invalid(&'static str),
}

impl Fact {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.node_id.len() + self.key.len() + self.value.len());
        out.put_u8(self.node_id.len() as u8);
        out.put_slice(self.node_id.as_bytes());
        out.put_u8(self.key.len() as u8);
        out.put_slice(self.key.as_bytes());
        out.put_u64(self.version);
        out.put_u16(self.value.len() as u16);
        out.put_slice(&self.value);
        out
    }

    pub(crate) fn decode(mut data: &[u8]) -> Result<Fact, FactDecodeError> {
        let node_id = take_str(&mut data, 1)?;
        validate_node_id(&node_id).map_err(FactDecodeError::Invalid)?;
        let key = take_str(&mut data, 1)?;
        validate_key(&key).map_err(FactDecodeError::Invalid)?;
        if data.remaining() < 8 {
            return Err(FactDecodeError::Truncated);
        }
        let version = data.get_u64();
        let value = take_bytes(&mut data, 2)?.to_vec();
        if value.len() > MAX_FACT_VALUE_LEN {
            return Err(FactDecodeError::Invalid("value is too long"));
        }
        if data.has_remaining() {
            return Err(FactDecodeError::Trailing);
        }
        Ok(Fact { node_id: Arc::from(node_id), key, version, value })
    }
}

fn take_bytes<'a>(data: &mut &'a [u8], len_bytes: usize) -> Result<&'a [u8], FactDecodeError> {
    if data.remaining() < len_bytes {
        return Err(FactDecodeError::Truncated);
    }
    let len = if len_bytes == 1 { data.get_u8() as usize } else { data.get_u16() as usize };
    if data.remaining() < len {
        return Err(FactDecodeError::Truncated);
    }
    let (head, tail) = data.split_at(len);
    *data = tail;
    Ok(head)
}

fn take_str(data: &mut &[u8], len_bytes: usize) -> Result<String, FactDecodeError> {
    let bytes = take_bytes(data, len_bytes)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| FactDecodeError::Invalid("not UTF-8"))
}

pub(crate) fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        Err("fact key is empty")
    } else if key.len() > MAX_FACT_KEY_LEN {
        Err("fact key is longer than 64 bytes")
    } else {
        Ok(())
    }
}

/// Packs encoded facts into datagram bodies of at most `max` bytes, each fact prefixed by its
/// length (u16, BE). Used to hand a member that just came up our facts directly.
pub(crate) fn pack(facts: &[Fact], max: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    for fact in facts {
        let encoded = fact.encode();
        if !body.is_empty() && body.len() + 2 + encoded.len() > max {
            bodies.push(std::mem::take(&mut body));
        }
        body.put_u16(encoded.len() as u16);
        body.put_slice(&encoded);
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    bodies
}

/// The inverse of [`pack`]; fails on the first bad entry.
pub(crate) fn unpack(mut body: &[u8]) -> Result<Vec<Fact>, FactDecodeError> {
    let mut facts = Vec::new();
    while body.has_remaining() {
        facts.push(Fact::decode(take_bytes(&mut body, 2)?)?);
    }
    Ok(facts)
}

/// Every fact this node knows, its own included.
#[derive(Default, Debug)]
pub(crate) struct FactStore {
    nodes: HashMap<Arc<str>, NodeFacts>,
}

/// One node's facts: key -> (version, value).
type NodeFacts = BTreeMap<String, (u64, Vec<u8>)>;

impl FactStore {
    /// Stores `fact` if it is newer than what we hold; says whether it did.
    pub(crate) fn insert_if_newer(&mut self, fact: &Fact) -> bool {
        if !self.nodes.contains_key(&fact.node_id) && self.nodes.len() >= MAX_FACT_NODES {
            return false;
        }
        let facts = self.nodes.entry(fact.node_id.clone()).or_default();
        match facts.get(&fact.key) {
            Some((version, _)) if *version >= fact.version => false,
            None if facts.len() >= MAX_FACTS_PER_NODE => false,
            _ => {
                facts.insert(fact.key.clone(), (fact.version, fact.value.clone()));
                true
            }
        }
    }

    /// The version a new local write of `key` must carry: newer than anything seen.
    pub(crate) fn next_version(&self, node_id: &str, key: &str) -> u64 {
        let previous = self.nodes.get(node_id).and_then(|f| f.get(key)).map_or(0, |(v, _)| *v);
        unix_millis().saturating_mul(1000).max(previous.saturating_add(1))
    }

    pub(crate) fn values(&self, node_id: &str) -> BTreeMap<String, Vec<u8>> {
        let Some(facts) = self.nodes.get(node_id) else { return BTreeMap::new() };
        facts.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn retain_nodes(&mut self, keep: impl Fn(&Arc<str>) -> bool) {
        self.nodes.retain(|id, _| keep(id));
    }

    /// Every fact of `node_id`, for re-broadcasting.
    pub(crate) fn facts_of(&self, node_id: &Arc<str>) -> Vec<Fact> {
        let Some(facts) = self.nodes.get(node_id) else { return Vec::new() };
        facts
            .iter()
            .map(|(key, (version, value))| Fact {
                node_id: node_id.clone(),
                key: key.clone(),
                version: *version,
                value: value.clone(),
            })
            .collect()
    }
}

/// Identifies one queued broadcast so foca can drop stale versions from its backlog.
pub(crate) struct FactKey {
    node_id: Arc<str>,
    key: String,
    version: u64,
}

impl foca::Invalidates for FactKey {
    fn invalidates(&self, other: &Self) -> bool {
        // `>=`: a periodic re-broadcast of the same version replaces the queued copy.
        self.node_id == other.node_id && self.key == other.key && self.version >= other.version
    }
}

/// foca's hook for custom broadcasts: decides which facts are news worth spreading.
pub(crate) struct FactHandler {
    pub(crate) own: Arc<str>,
    pub(crate) store: Arc<Mutex<FactStore>>,
}

impl foca::BroadcastHandler<NodeIdentity> for FactHandler {
    type Key = FactKey;
    type Error = FactDecodeError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeIdentity>) -> Result<Option<FactKey>, Self::Error> {
        let fact = Fact::decode(data)?;
        let key = FactKey { node_id: fact.node_id.clone(), key: fact.key.clone(), version: fact.version };
        if sender.is_none() {
            // Our own write (already stored by `Gossip::set_fact`) or a re-broadcast: spread it.
            return Ok(Some(key));
        }
        if fact.node_id == self.own {
            // We are the only writer of our facts; echoes and stale copies from a previous
            // life of this node are not news.
            return Ok(None);
        }
        let fresh = self.store.lock().unwrap_or_else(|e| e.into_inner()).insert_if_newer(&fact);
        Ok(fresh.then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(node: &str, key: &str, version: u64, value: &[u8]) -> Fact {
        Fact { node_id: Arc::from(node), key: key.into(), version, value: value.to_vec() }
    }

    #[test]
    fn round_trip_and_bad_input() {
        let f = fact("node-a", "task/1/health", 7, b"healthy");
        assert_eq!(Fact::decode(&f.encode()).unwrap(), f);

        let good = f.encode();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut long_value = fact("n", "k", 1, &[]).encode();
        long_value.truncate(long_value.len() - 2);
        long_value.extend_from_slice(&((MAX_FACT_VALUE_LEN + 1) as u16).to_be_bytes());
        long_value.extend_from_slice(&[0; MAX_FACT_VALUE_LEN + 1]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("trailing", trailing),
            ("empty node", fact("", "k", 1, b"").encode()),
            ("empty key", fact("n", "", 1, b"").encode()),
            ("long value", long_value),
            ("bad utf8", vec![1, 0xff, 1, b'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (name, bytes) in cases {
            assert!(Fact::decode(&bytes).is_err(), "{name} decoded");
        }
    }

    #[test]
    fn pack_splits_at_the_datagram_limit() {
        let facts: Vec<Fact> = (0..10).map(|i| fact("node-a", &format!("k{i}"), i, &[i as u8; 300])).collect();
        let bodies = pack(&facts, 1000);
        assert!(bodies.len() > 1 && bodies.iter().all(|b| b.len() <= 1000));
        let back: Vec<Fact> = bodies.iter().flat_map(|b| unpack(b).unwrap()).collect();
        assert_eq!(back, facts);
        assert!(pack(&[], 1000).is_empty());
        assert!(unpack(&[0, 5, 1]).is_err());
        assert!(unpack(&[0]).is_err());
    }

    #[test]
    fn newest_version_wins_and_store_is_bounded() {
        let mut store = FactStore::default();
        assert!(store.insert_if_newer(&fact("a", "k", 2, b"two")));
        assert!(!store.insert_if_newer(&fact("a", "k", 1, b"one")));
        assert!(!store.insert_if_newer(&fact("a", "k", 2, b"again")));
        assert_eq!(store.values("a")["k"], b"two");
        assert!(store.next_version("a", "k") > 2);

        for i in 1..MAX_FACTS_PER_NODE {
            assert!(store.insert_if_newer(&fact("a", &format!("k{i}"), 1, b"")));
        }
        assert!(!store.insert_if_newer(&fact("a", "one-too-many", 1, b"")));
        assert_eq!(store.values("a").len(), MAX_FACTS_PER_NODE);
    }
}
