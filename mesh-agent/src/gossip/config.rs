//! Gossip settings, their defaults, and the failure-detection time those defaults give.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

use super::facts::{MAX_FACT_KEY_LEN, MAX_FACT_VALUE_LEN};
use super::identity::{validate_node_id, MAX_NODE_ID_LEN};
use super::transport::HEADER_LEN;
use super::GossipError;

/// Smallest `max_packet_size`: a header (two identities of at most ~104 bytes) plus the largest
/// fact must fit in one datagram, or foca would keep that fact queued forever.
const MIN_PACKET_SIZE: usize = 1024;
const _: () = {
    let largest_fact = 12 + MAX_NODE_ID_LEN + MAX_FACT_KEY_LEN + MAX_FACT_VALUE_LEN;
    assert!(HEADER_LEN + 2 * (MAX_NODE_ID_LEN + 40) + 16 + largest_fact <= MIN_PACKET_SIZE);
};

/// Settings for [`super::Gossip`]. Start from [`GossipConfig::new`] and change what you need.
///
/// # Defaults and the detection time they give
///
/// foca's `Config::new_lan(5)` probes every 1 s and waits 4 s before turning a suspect down:
/// a dead node is noticed after 6–7 s. We need 3 s, so the defaults are tighter:
///
/// | setting | default | `new_lan(5)` |
/// |---|---|---|
/// | `probe_period` | 500 ms | 1 s |
/// | `probe_rtt` (wait for a direct ack before asking others) | 200 ms | 500 ms |
/// | `num_indirect_probes` | 3 | 3 |
/// | `suspect_to_down` | 1 s | 4 s |
/// | `gossip_interval` × `gossip_fanout` (only while there is news) | 100 ms × 3 | 200 ms × 3 |
/// | `max_transmissions` (times each update is sent) | 6 | 3 |
/// | `announce_interval` (ask one member for its member list) | 10 s | 30 s |
/// | `announce_down_interval` (try 2 down members, heals partitions) | 10 s | 65 s |
/// | `remove_down_after` | 24 h | 24 h |
/// | `max_packet_size` (whole datagram, 4-byte envelope included) | 1400 | 1400 |
///
/// **Detection time** of a killed node is `W + P + S + G`:
/// - `W`, until some live member next pings it. Each of the `n − 1` live members walks a
///   shuffled round-robin over the others, one ping per `P`, so the first of them gets there
///   after about `P · (n − 1)/n` on average (0.4 s for 5 nodes), whatever the cluster size. In
///   the worst case, every member had just pinged it and reshuffled it last: `(2n − 3) · P`.
/// - `P` = `probe_period`: the ping, then three indirect pings after `probe_rtt`, fail; the
///   member is suspected at the next probe tick.
/// - `S` = `suspect_to_down`.
/// - `G`, spreading "down": the next gossip tick sends it to 3 members (≤ 100 ms), who pass it on.
///
/// For 5 nodes: typically 0.4 + 0.5 + 1.0 + 0.1 ≈ 2.0 s; above 3 s only when `W` > 1.4 s, which
/// needs all four survivors to have the dead node late in their rounds (≈ 1 % of kills); the
/// absolute worst case is 3.5 + 0.5 + 1 + 0.2 ≈ 5.2 s.
///
/// **No false downs under 5 % loss on every link.** A probe wrongly fails only if the direct
/// ping or its ack is lost (9.75 %) *and* all three indirect paths (4 datagrams each, 18.5 %)
/// fail: 0.0975 · 0.185³ ≈ 6·10⁻⁴. Five nodes make 1,200 probes in 2 minutes, so about 0.75
/// false *suspicions*. A suspicion only turns into a down if the suspect's refutation (it bumps
/// its foca incarnation, which every datagram it sends carries) misses the suspecting node for
/// the whole second of `S`: the suspicion reaches the suspect on the next 100 ms gossip tick
/// (sent to 3 of 4 members, each re-gossiping it) and the refutation goes out at once to 3
/// members and rides on every later ping, ack and gossip — some ten independent datagrams
/// would all have to be lost (5 %¹⁰ ≈ 10⁻¹³). Lifeguard's local-health multiplier is not in
/// foca 2.0.0 (it implements SWIM with suspicion and infection-style dissemination only), so
/// a node starved of CPU for more than `probe_rtt` can still raise false suspicions; the 1 s
/// suspicion window is what absorbs those.
///
/// Bandwidth stays small: one ping/ack pair per node per 500 ms plus gossip only while there
/// is news, all in datagrams of at most 1400 bytes.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's ID (1–64 bytes), the key members are known by.
    pub node_id: String,
    /// Where the UDP socket binds, e.g. `0.0.0.0:7946`.
    pub bind: SocketAddr,
    /// Where peers reach us, e.g. `10.0.0.5:7946`. Port 0 means "the port we bound".
    pub advertise: SocketAddr,
    /// How often each node pings one member.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to ping (indirect probe).
    pub probe_rtt: Duration,
    /// How many members are asked to ping a member that did not answer.
    pub num_indirect_probes: usize,
    /// How long a suspect has to refute the suspicion before it is declared down.
    pub suspect_to_down: Duration,
    /// How often news (membership changes, facts) is gossiped while there is any.
    pub gossip_interval: Duration,
    /// How many members each gossip round goes to.
    pub gossip_fanout: usize,
    /// How many times each update and fact is sent before it is considered spread.
    pub max_transmissions: u8,
    /// How often we ask a random member for its member list (anti-entropy).
    pub announce_interval: Duration,
    /// How often we try to reach members we consider down (heals partitions).
    pub announce_down_interval: Duration,
    /// How long a down member is remembered (and listed by `members`).
    pub remove_down_after: Duration,
    /// While we know no live member, how often we retry the seeds given to `join`.
    pub rejoin_interval: Duration,
    /// How often this node re-broadcasts its own facts.
    pub facts_refresh: Duration,
    /// Largest datagram sent or accepted, envelope included.
    pub max_packet_size: usize,
}

impl GossipConfig {
    /// The defaults above for `node_id`, binding `bind` and reachable at `advertise`.
    pub fn new(node_id: impl Into<String>, bind: SocketAddr, advertise: SocketAddr) -> Self {
        GossipConfig {
            node_id: node_id.into(),
            bind,
            advertise,
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            num_indirect_probes: 3,
            suspect_to_down: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(100),
            gossip_fanout: 3,
            max_transmissions: 6,
            announce_interval: Duration::from_secs(10),
            announce_down_interval: Duration::from_secs(10),
            remove_down_after: Duration::from_secs(24 * 3600),
            rejoin_interval: Duration::from_secs(1),
            facts_refresh: Duration::from_secs(10),
            max_packet_size: 1400,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), GossipError> {
        let invalid = |why: &str| Err(GossipError::InvalidConfig(why.to_string()));
        validate_node_id(&self.node_id).map_err(|why| GossipError::InvalidConfig(why.to_string()))?;
        let zero = Duration::ZERO;
        if self.advertise.ip().is_unspecified() {
            return invalid("advertise address must be an address peers can reach, not 0.0.0.0 or ::");
        }
        if self.probe_rtt == zero || self.probe_rtt >= self.probe_period {
            return invalid("probe_rtt must be above zero and below probe_period");
        }
        let timers = [
            self.suspect_to_down,
            self.gossip_interval,
            self.announce_interval,
            self.announce_down_interval,
            self.rejoin_interval,
            self.facts_refresh,
        ];
        if timers.contains(&zero) {
            return invalid("intervals and timeouts must be above zero");
        }
        if self.num_indirect_probes == 0 || self.gossip_fanout == 0 || self.max_transmissions == 0 {
            return invalid("num_indirect_probes, gossip_fanout and max_transmissions must be above zero");
        }
        if self.max_packet_size < MIN_PACKET_SIZE || self.max_packet_size > 65_507 {
            return invalid("max_packet_size must be between 1024 and 65507");
        }
        Ok(())
    }

    /// The foca configuration these settings stand for.
    pub(crate) fn to_foca(&self) -> foca::Config {
        let nz = |n: usize| NonZeroUsize::new(n.max(1)).expect("at least one");
        let mut config = foca::Config::new_lan(NonZeroU32::new(5).expect("nonzero"));
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = nz(self.num_indirect_probes);
        config.max_transmissions = NonZeroU8::new(self.max_transmissions.max(1)).expect("at least one");
        config.suspect_to_down_after = self.suspect_to_down;
        config.remove_down_after = Some(self.remove_down_after);
        config.max_packet_size = nz(self.max_packet_size - HEADER_LEN);
        config.notify_down_members = true;
        config.periodic_announce = Some(foca::PeriodicParams { frequency: self.announce_interval, num_members: nz(1) });
        config.periodic_announce_to_down_members =
            Some(foca::PeriodicParams { frequency: self.announce_down_interval, num_members: nz(2) });
        config.periodic_gossip =
            Some(foca::PeriodicParams { frequency: self.gossip_interval, num_members: nz(self.gossip_fanout) });
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let base = GossipConfig::new("node-a", addr, addr);
        base.validate().unwrap();
        assert_eq!(base.to_foca().max_packet_size.get(), 1396);

        let cases: Vec<(&str, GossipConfig)> = vec![
            ("empty id", GossipConfig { node_id: String::new(), ..base.clone() }),
            ("unspecified advertise", GossipConfig { advertise: "0.0.0.0:7946".parse().unwrap(), ..base.clone() }),
            ("rtt >= period", GossipConfig { probe_rtt: base.probe_period, ..base.clone() }),
            ("zero suspicion", GossipConfig { suspect_to_down: Duration::ZERO, ..base.clone() }),
            ("zero fanout", GossipConfig { gossip_fanout: 0, ..base.clone() }),
            ("tiny packets", GossipConfig { max_packet_size: 512, ..base.clone() }),
        ];
        for (name, config) in cases {
            assert!(matches!(config.validate(), Err(GossipError::InvalidConfig(_))), "{name} accepted");
        }
    }
}
