//! Node liveness by SWIM gossip (foca) on UDP 7946, plus small per-node facts.
//!
//! Every node runs one [`Gossip`]: it pings a random member every probe period, asks three
//! others to ping on its behalf when the answer is late, suspects a member that nobody could
//! reach and declares it down when the suspicion is not refuted in time. Membership changes
//! and [facts](Gossip::set_fact) ride on the same datagrams. [`GossipConfig`] explains the
//! numbers: a killed node is reported down in about 2 s, and 5 % packet loss on every link
//! should not cause false downs.
//!
//! Shape: foca does no I/O, so two tasks run per node. The receive task checks the envelope
//! and size of each datagram ([`transport`]); the gossip task ([`runtime`]) owns foca, feeds it
//! datagrams and timers, writes its datagrams to the socket and publishes the member table and
//! [`MemberEvent`]s. The handle only reads shared tables and sends commands, so none of its
//! methods block on the network.
//!
//! Joining needs only addresses: a node sends a small `JoinRequest` to each seed, the seed
//! answers with its identity and the node announces itself to it with foca's announce, whose
//! reply carries the seed's member list (as many as fit in a datagram; the rest arrive by
//! gossip and by a periodic announce). There is no TCP full-state sync: for the cluster sizes
//! we target, foca's announce/feed over UDP is enough.
//!
//! **Architecture invariant:** gossip knows nothing about Raft or the managers' store; the
//! managers combine its events with their heartbeats.

mod config;
mod facts;
mod identity;
mod runtime;
#[cfg(test)]
mod tests;
mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use config::GossipConfig;
pub use facts::{MAX_FACT_KEY_LEN, MAX_FACT_VALUE_LEN};
pub use identity::MAX_NODE_ID_LEN;

use facts::{Fact, FactStore};
use identity::NodeIdentity;
use runtime::{Actor, Command};
use transport::{Counters, Faults, Outbound};

/// How a member looks from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    Alive,
    /// Someone could not reach it; it is still counted alive until the suspicion times out.
    Suspect,
    Down,
}

/// A member of the gossip cluster, this node included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    /// Where the member's gossip socket is reached.
    pub addr: SocketAddr,
    pub state: MemberState,
    /// Which life of the node this is: larger after a restart or a rejoin.
    pub bump: u64,
    /// When this node saw the member enter `state` (or a new life of it).
    pub since: Instant,
}

/// Membership changes, as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member joined, came back, or restarted (then possibly at a new address). Consumers
    /// should treat repeats as idempotent.
    Up(String, SocketAddr),
    /// A member was declared down (it failed, or left).
    Down(String),
}

/// Counters since start. Dropped datagrams are counted, never fatal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Datagrams dropped because they were not valid gossip (envelope, decoding, content).
    pub malformed: u64,
    /// Datagrams dropped because they were larger than `max_packet_size`.
    pub oversize: u64,
    /// Datagrams dropped because the gossip task was behind.
    pub queue_full: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Datagrams dropped by test fault injection.
    pub fault_dropped: u64,
}

/// Errors from gossip's own checks; the messages are meant for users.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("invalid gossip configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid fact: {0}")]
    InvalidFact(String),
    #[error("too many facts on this node (at most {max})")]
    TooManyFacts { max: usize },
    #[error("gossip is stopped")]
    Stopped,
}

/// State the gossip task writes and the handle reads.
pub(crate) struct Shared {
    pub(crate) members: Mutex<BTreeMap<Arc<str>, Member>>,
    pub(crate) facts: Arc<Mutex<FactStore>>,
    pub(crate) counters: Arc<Counters>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tables stay consistent between statements, so a panic elsewhere cannot corrupt them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running gossip member. Dropping it stops gossip abruptly, as a crash would (peers will
/// declare the node down); [`Gossip::shutdown`] leaves gracefully.
pub struct Gossip {
    node_id: Arc<str>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    events: broadcast::Sender<MemberEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gossip {
    /// Binds the UDP socket and starts gossiping; call [`Gossip::join`] to meet the cluster.
    pub async fn start(config: GossipConfig) -> anyhow::Result<Gossip> {
        Self::start_with_faults(config, Faults::default()).await
    }

    pub(crate) async fn start_with_faults(config: GossipConfig, faults: Faults) -> anyhow::Result<Gossip> {
        config.validate()?;
        let socket = UdpSocket::bind(config.bind)
            .await
            .with_context(|| format!("binding the gossip socket to {}", config.bind))?;
        let local_addr = socket.local_addr().context("reading the gossip socket address")?;
        let mut advertise = config.advertise;
        if advertise.port() == 0 {
            advertise.set_port(local_addr.port());
        }
        let socket = Arc::new(socket);
        let node_id: Arc<str> = Arc::from(config.node_id.as_str());
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            members: Mutex::new(BTreeMap::new()),
            facts: Arc::new(Mutex::new(FactStore::default())),
            counters: counters.clone(),
        });
        let (events, _) = broadcast::channel(1024);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound_rx) = mpsc::channel(1024);

        let out = Outbound::new(socket.clone(), counters.clone(), faults, config.max_packet_size);
        let me = NodeIdentity::new(node_id.clone(), advertise);
        let actor = Actor::new(&config, me, out, shared.clone(), events.clone());
        let tasks = vec![
            tokio::spawn(transport::recv_loop(socket, config.max_packet_size, counters, inbound_tx)),
            tokio::spawn(actor.run(command_rx, inbound_rx)),
        ];
        tracing::info!(node_id = %node_id, %local_addr, %advertise, "gossip started");
        Ok(Gossip { node_id, local_addr, advertise, commands, shared, events, tasks })
    }

    /// Announces this node to `seeds` (gossip addresses of known members, typically the
    /// managers). Seeds are remembered and retried while this node knows no live member, so
    /// calling it before the seeds are up is fine. Our own address among them is ignored.
    pub fn join(&self, seeds: &[SocketAddr]) {
        let _ = self.commands.send(Command::Join(seeds.to_vec()));
    }

    /// Every member this node knows of, itself included, sorted by node ID. Down members stay
    /// listed for `remove_down_after`.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.shared.members).values().cloned().collect()
    }

    /// Membership changes from now on. A receiver that falls more than 1024 events behind
    /// gets `Lagged` and should re-read [`Gossip::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Sets a fact about this node (at most 64 keys of 64 bytes, values of 512 bytes) and
    /// spreads it; the newest value wins on every node.
    pub fn set_fact(&self, key: &str, value: Vec<u8>) -> Result<(), GossipError> {
        facts::validate_key(key).map_err(|why| GossipError::InvalidFact(why.to_string()))?;
        if value.len() > MAX_FACT_VALUE_LEN {
            return Err(GossipError::InvalidFact(format!("value is longer than {MAX_FACT_VALUE_LEN} bytes")));
        }
        let fact = {
            let mut store = lock(&self.shared.facts);
            let version = store.next_version(&self.node_id, key);
            let fact = Fact { node_id: self.node_id.clone(), key: key.to_string(), version, value };
            if !store.insert_if_newer(&fact) {
                return Err(GossipError::TooManyFacts { max: facts::MAX_FACTS_PER_NODE });
            }
            fact
        };
        self.commands.send(Command::AnnounceFact(fact.encode())).map_err(|_| GossipError::Stopped)
    }

    /// The facts this node has heard from `node_id` (its own included).
    pub fn facts(&self, node_id: &str) -> BTreeMap<String, Vec<u8>> {
        lock(&self.shared.facts).values(node_id)
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The address the socket is bound to (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address peers reach this node at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    pub fn stats(&self) -> GossipStats {
        let c = &self.shared.counters;
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        GossipStats {
            packets_in: get(&c.packets_in),
            bytes_in: get(&c.bytes_in),
            packets_out: get(&c.packets_out),
            bytes_out: get(&c.bytes_out),
            malformed: get(&c.malformed),
            oversize: get(&c.oversize),
            queue_full: get(&c.queue_full),
            send_errors: get(&c.send_errors),
            recv_errors: get(&c.recv_errors),
            fault_dropped: get(&c.fault_dropped),
        }
    }

    /// Leaves the cluster (peers mark this node down at once instead of after a few seconds
    /// of probing) and stops. Gives up waiting after 2 s.
    pub async fn shutdown(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
        // Dropping `self` stops both tasks and closes the socket.
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// The handle is shared across tasks by callers.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Gossip>();
};
