//! The gossip task: owns the foca instance and plays its runtime.
//!
//! foca does no I/O. After every call into it (a datagram, a timer, an announce) this task
//! drains foca's `AccumulatingRuntime`: datagrams go to the socket, timer requests go to a
//! min-heap that the select loop sleeps on (so timers are handed back in deadline order, which
//! foca relies on), and notifications become [`MemberEvent`]s. It then copies foca's view of
//! the members into the table `Gossip::members` reads, so readers never wait on this task.
//!
//! It also runs what foca leaves to its user: joining through seeds known only by address (a
//! `JoinRequest` datagram that a seed answers with its identity, which we then announce to),
//! retrying those seeds while we know no live member, and handing our facts directly to each
//! member that comes up (foca's broadcasts go to random members and may miss a newcomer).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Codec, Foca, OwnedNotification, PostcardCodec, Timer};
use rand_foca::rngs::SmallRng;
use rand_foca::SeedableRng;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use super::facts::{self, Fact, FactHandler};
use super::identity::NodeIdentity;
use super::transport::{bump, Inbound, Kind, Outbound};
use super::{lock, GossipConfig, Member, MemberEvent, MemberState, Shared};

type Swim = Foca<NodeIdentity, PostcardCodec, SmallRng, FactHandler>;

/// Requests from the [`super::Gossip`] handle.
pub(crate) enum Command {
    Join(Vec<SocketAddr>),
    /// An encoded fact of ours, already in the fact store.
    AnnounceFact(Vec<u8>),
    Leave(oneshot::Sender<()>),
}

/// Seeds remembered for rejoining.
const MAX_SEEDS: usize = 64;
/// Known-but-down members also tried per rejoin round.
const MAX_REJOIN_TARGETS: usize = 8;

pub(crate) struct Actor {
    foca: Swim,
    rt: AccumulatingRuntime<NodeIdentity>,
    timers: BinaryHeap<Reverse<(Instant, Timer<NodeIdentity>)>>,
    out: Outbound,
    shared: Arc<Shared>,
    events: broadcast::Sender<MemberEvent>,
    node_id: Arc<str>,
    seeds: Vec<SocketAddr>,
    gossip_interval: Duration,
    rejoin_interval: Duration,
    facts_refresh: Duration,
    max_body: usize,
    /// Members that came up since the last drain; they get our facts directly.
    push_facts_to: Vec<SocketAddr>,
    left: bool,
}

impl Actor {
    pub(crate) fn new(
        config: &GossipConfig,
        me: NodeIdentity,
        out: Outbound,
        shared: Arc<Shared>,
        events: broadcast::Sender<MemberEvent>,
    ) -> Actor {
        let node_id = me.node_id.clone();
        let handler = FactHandler { own: node_id.clone(), store: shared.facts.clone() };
        let rng = SmallRng::seed_from_u64(rand::random());
        let foca = Foca::with_custom_broadcast(me, config.to_foca(), rng, PostcardCodec, handler);
        let mut actor = Actor {
            foca,
            rt: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            out,
            shared,
            events,
            node_id,
            seeds: Vec::new(),
            gossip_interval: config.gossip_interval,
            rejoin_interval: config.rejoin_interval,
            facts_refresh: config.facts_refresh,
            max_body: config.max_packet_size - super::transport::HEADER_LEN,
            push_facts_to: Vec::new(),
            left: false,
        };
        actor.sync_members();
        actor
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) {
        let mut rejoin = tokio::time::interval(self.rejoin_interval);
        rejoin.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(self.facts_refresh);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.fire_due_timers().await;
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let wake = next_timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                packet = inbound.recv() => match packet {
                    Some(packet) => self.on_inbound(packet).await,
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Join(seeds)) => self.join(seeds).await,
                    Some(Command::AnnounceFact(encoded)) => self.add_broadcast(&encoded),
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = sleep_until(wake) => {}
                _ = rejoin.tick() => self.rejoin_if_alone().await,
                _ = refresh.tick() => self.rebroadcast_own_facts(),
            }
        }
    }

    async fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, timer))) = self.timers.pop() else { break };
            let removes_member = matches!(timer, Timer::RemoveDown(_));
            if let Err(error) = self.foca.handle_timer(timer, &mut self.rt) {
                tracing::debug!(?error, "gossip timer");
            }
            self.drain().await;
            if removes_member {
                self.prune_members();
            }
        }
    }

    async fn on_inbound(&mut self, packet: Inbound) {
        match packet.kind {
            Kind::Swim => {
                if let Err(error) = self.foca.handle_data(&packet.body, &mut self.rt) {
                    bump(&self.shared.counters.malformed, 1);
                    tracing::debug!(from = %packet.from, ?error, "gossip datagram rejected");
                }
                self.drain().await;
            }
            Kind::Facts => self.on_facts(&packet.body),
            Kind::JoinRequest | Kind::JoinReply => {
                let mut codec = PostcardCodec;
                let Ok(peer) = Codec::<NodeIdentity>::decode_member(&mut codec, &packet.body[..]) else {
                    bump(&self.shared.counters.malformed, 1);
                    return;
                };
                let peer = peer.id().clone();
                if peer.node_id == self.node_id {
                    return; // Our own address is among the seeds.
                }
                if packet.kind == Kind::JoinRequest {
                    // Answer to where the request came from, not to the address it claims.
                    let me = self.identity_body();
                    self.out.send(Kind::JoinReply, &me, packet.from).await;
                } else {
                    if let Err(error) = self.foca.announce(peer, &mut self.rt) {
                        tracing::debug!(?error, "gossip announce");
                    }
                    self.drain().await;
                }
            }
        }
    }

    async fn join(&mut self, seeds: Vec<SocketAddr>) {
        for seed in &seeds {
            if !self.seeds.contains(seed) && self.seeds.len() < MAX_SEEDS {
                self.seeds.push(*seed);
            }
        }
        self.send_join_requests(seeds).await;
    }

    /// While we know no live member, keep knocking on the seeds and on whoever we last knew.
    async fn rejoin_if_alone(&mut self) {
        if self.left || self.foca.num_members() > 0 {
            return;
        }
        let mut targets = self.seeds.clone();
        let known = self.foca.iter_membership_state().filter(|m| m.id().node_id != self.node_id);
        targets.extend(known.take(MAX_REJOIN_TARGETS).map(|m| m.id().addr));
        targets.sort();
        targets.dedup();
        self.send_join_requests(targets).await;
    }

    async fn send_join_requests(&mut self, targets: Vec<SocketAddr>) {
        let me = self.identity_body();
        let advertise = self.foca.identity().addr;
        for target in targets.into_iter().filter(|t| *t != advertise) {
            self.out.send(Kind::JoinRequest, &me, target).await;
        }
    }

    fn identity_body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        let me = foca::Member::alive(self.foca.identity().clone());
        if let Err(error) = PostcardCodec.encode_member(&me, &mut body) {
            tracing::warn!(%error, "encoding our gossip identity");
        }
        body
    }

    fn add_broadcast(&mut self, encoded: &[u8]) {
        if let Err(error) = self.foca.add_broadcast(encoded) {
            tracing::warn!(?error, "queueing a gossip fact");
        }
    }

    /// Facts a member pushed to us when we came up. Ours are not taken from others.
    fn on_facts(&mut self, body: &[u8]) {
        let Ok(facts) = facts::unpack(body) else {
            bump(&self.shared.counters.malformed, 1);
            return;
        };
        let mut store = lock(&self.shared.facts);
        for fact in facts.iter().filter(|f| f.node_id != self.node_id) {
            store.insert_if_newer(fact);
        }
    }

    async fn push_own_facts(&mut self, to: SocketAddr) {
        let own = lock(&self.shared.facts).facts_of(&self.node_id);
        for body in facts::pack(&own, self.max_body) {
            self.out.send(Kind::Facts, &body, to).await;
        }
    }

    fn rebroadcast_own_facts(&mut self) {
        let own = lock(&self.shared.facts).facts_of(&self.node_id);
        for fact in own {
            self.add_broadcast(&Fact::encode(&fact));
        }
    }

    /// Graceful exit: tell the cluster we are down, then say it once more so that a lost
    /// datagram does not leave members to find out by probing.
    async fn leave(&mut self) {
        if let Err(error) = self.foca.leave_cluster(&mut self.rt) {
            tracing::warn!(?error, "leaving the gossip cluster");
        }
        self.left = true;
        self.drain().await;
        sleep(self.gossip_interval / 2).await;
        if let Err(error) = self.foca.gossip(&mut self.rt) {
            tracing::debug!(?error, "gossiping our leave");
        }
        self.drain().await;
    }

    /// Acts on everything foca asked for during the last call into it.
    async fn drain(&mut self) {
        while let Some((dst, data)) = self.rt.to_send() {
            self.out.send(Kind::Swim, &data, dst.addr).await;
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        while let Some(notification) = self.rt.to_notify() {
            self.on_notification(notification);
        }
        self.sync_members();
        for to in std::mem::take(&mut self.push_facts_to) {
            self.push_own_facts(to).await;
        }
    }

    fn on_notification(&mut self, notification: OwnedNotification<NodeIdentity>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                tracing::info!(member = ?id, "gossip: member up");
                self.emit(MemberEvent::Up(id.node_id.to_string(), id.addr));
                // A newcomer has none of our facts yet, and broadcasts may miss it.
                self.push_facts_to.push(id.addr);
            }
            OwnedNotification::MemberDown(id) => {
                tracing::info!(member = ?id, "gossip: member down");
                self.emit(MemberEvent::Down(id.node_id.to_string()));
            }
            OwnedNotification::Rename(old, new) => {
                // A restart that beat failure detection: foca reports only the rename, but the
                // node is a new process (maybe at a new address), so subscribers hear Up again.
                let was_active = lock(&self.shared.members)
                    .get(&old.node_id)
                    .is_some_and(|m| m.bump == old.bump && m.state != MemberState::Down);
                let is_active = self.foca.iter_members().any(|m| m.id() == &new);
                tracing::info!(?old, ?new, "gossip: member restarted");
                if was_active && is_active {
                    self.emit(MemberEvent::Up(new.node_id.to_string(), new.addr));
                    self.push_facts_to.push(new.addr);
                }
            }
            OwnedNotification::Active => tracing::debug!("gossip: joined the cluster"),
            OwnedNotification::Idle => tracing::info!("gossip: no live member left"),
            OwnedNotification::Defunct => tracing::warn!("gossip: declared down and cannot rejoin"),
            OwnedNotification::Rejoin(id) => tracing::warn!(identity = ?id, "gossip: declared down, rejoined"),
        }
    }

    fn emit(&self, event: MemberEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    /// Copies foca's member states into the table `Gossip::members` reads.
    fn sync_members(&mut self) {
        let now = std::time::Instant::now();
        let mut table = lock(&self.shared.members);
        let me = self.foca.identity();
        let my_state = if self.left { MemberState::Down } else { MemberState::Alive };
        upsert(&mut table, me, my_state, now);
        for member in self.foca.iter_membership_state() {
            // foca keeps our own previous lives as down members; we are listed above.
            if member.id().node_id != self.node_id {
                upsert(&mut table, member.id(), member.state().into(), now);
            }
        }
    }

    /// Forgets members, and their facts, once foca has forgotten them (`remove_down_after`).
    fn prune_members(&mut self) {
        let known: Vec<Arc<str>> = self.foca.iter_membership_state().map(|m| m.id().node_id.clone()).collect();
        let own = self.node_id.clone();
        let keep = |id: &Arc<str>| *id == own || known.contains(id);
        lock(&self.shared.members).retain(|id, _| keep(id));
        lock(&self.shared.facts).retain_nodes(keep);
    }
}

fn upsert(
    table: &mut std::collections::BTreeMap<Arc<str>, Member>,
    id: &NodeIdentity,
    state: MemberState,
    now: std::time::Instant,
) {
    match table.get_mut(&id.node_id) {
        Some(entry) => {
            if entry.state != state || entry.bump != id.bump {
                entry.since = now;
            }
            entry.state = state;
            entry.bump = id.bump;
            entry.addr = id.addr;
        }
        None => {
            let member = Member { node_id: id.node_id.to_string(), addr: id.addr, state, bump: id.bump, since: now };
            table.insert(id.node_id.clone(), member);
        }
    }
}

impl From<foca::State> for MemberState {
    fn from(state: foca::State) -> Self {
        match state {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        }
    }
}
