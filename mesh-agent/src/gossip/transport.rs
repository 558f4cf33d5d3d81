//! The UDP side of gossip: the envelope every datagram carries, the receive loop, the send
//! path (with a fault hook for tests) and the counters behind [`super::GossipStats`].
//!
//! Every datagram is `b"SG"`, a version byte, a kind byte, then the body; the whole datagram is
//! at most `max_packet_size` bytes. Anything else (wrong magic or version, unknown kind, too
//! long) is counted and dropped here, before foca sees it. Nothing in this file panics on
//! input from the network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand_foca::rngs::SmallRng;
use rand_foca::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// First bytes of every gossip datagram.
pub(crate) const MAGIC: [u8; 2] = *b"SG";
/// Wire version; bump it when the body encoding changes incompatibly.
pub(crate) const VERSION: u8 = 1;
/// Magic, version and kind.
pub(crate) const HEADER_LEN: usize = 4;

/// What a datagram's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A foca SWIM message.
    Swim = 0,
    /// "Who are you?": body is the sender's identity (a postcard-encoded foca `Member`). Lets a
    /// node join through a seed it knows only by address; the seed answers with `JoinReply`.
    JoinRequest = 1,
    /// Body is the responder's identity; the joiner then sends it a foca announce.
    JoinReply = 2,
    /// Body is the sender's own facts (see `facts::pack`), sent to a member that just came up.
    Facts = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Swim),
            1 => Some(Kind::JoinRequest),
            2 => Some(Kind::JoinReply),
            3 => Some(Kind::Facts),
            _ => None,
        }
    }
}

/// Splits a datagram into its kind and body, or says why it is not one of ours.
pub(crate) fn unframe(packet: &[u8]) -> Option<(Kind, &[u8])> {
    if packet.len() < HEADER_LEN || packet[..2] != MAGIC || packet[2] != VERSION {
        return None;
    }
    Some((Kind::from_byte(packet[3])?, &packet[HEADER_LEN..]))
}

/// Monotonic counters, shared by the socket tasks and read by `Gossip::stats`.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) packets_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversize: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
    pub(crate) fault_dropped: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Faults injected on the send path. Only tests set them; the netns lab uses `tc netem`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// Probability in `[0, 1]` that an outgoing datagram is silently dropped.
    pub(crate) send_loss: f64,
}

/// A datagram that passed the envelope checks, on its way to the gossip task.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) from: SocketAddr,
    pub(crate) kind: Kind,
    pub(crate) body: Bytes,
}

/// The send half: frames bodies and writes them to the socket.
pub(crate) struct Outbound {
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    faults: Faults,
    rng: SmallRng,
    max_packet_size: usize,
    buf: Vec<u8>,
}

impl Outbound {
    pub(crate) fn new(socket: Arc<UdpSocket>, counters: Arc<Counters>, faults: Faults, max: usize) -> Self {
        let rng = SmallRng::seed_from_u64(rand::random());
        Outbound { socket, counters, faults, rng, max_packet_size: max, buf: Vec::with_capacity(max) }
    }

    /// Sends one datagram; failures are counted and logged, never returned: gossip tolerates
    /// loss by design, and the caller has nothing better to do.
    pub(crate) async fn send(&mut self, kind: Kind, body: &[u8], to: SocketAddr) {
        if HEADER_LEN + body.len() > self.max_packet_size {
            // foca is configured with the envelope subtracted, so this is a bug, not input.
            tracing::warn!(len = body.len(), %to, "gossip datagram too large, not sent");
            bump(&self.counters.send_errors, 1);
            return;
        }
        if self.faults.send_loss > 0.0 && self.rng.random::<f64>() < self.faults.send_loss {
            bump(&self.counters.fault_dropped, 1);
            return;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&MAGIC);
        self.buf.push(VERSION);
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(body);
        match self.socket.send_to(&self.buf, to).await {
            Ok(n) => {
                bump(&self.counters.packets_out, 1);
                bump(&self.counters.bytes_out, n as u64);
            }
            Err(error) => {
                bump(&self.counters.send_errors, 1);
                tracing::debug!(%to, %error, "gossip send failed");
            }
        }
    }
}

/// Reads datagrams forever, dropping what is not ours and handing the rest to the gossip task.
/// Returns when the gossip task is gone.
pub(crate) async fn recv_loop(
    socket: Arc<UdpSocket>,
    max_packet_size: usize,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Inbound>,
) {
    // One spare byte tells a datagram of exactly the limit from a longer, truncated one.
    let mut buf = vec![0u8; max_packet_size + 1];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(error) => {
                bump(&counters.recv_errors, 1);
                tracing::debug!(%error, "gossip recv failed");
                // Errors here are transient (ICMP feedback, memory pressure); don't spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        bump(&counters.packets_in, 1);
        bump(&counters.bytes_in, len as u64);
        if len > max_packet_size {
            bump(&counters.oversize, 1);
            continue;
        }
        let Some((kind, body)) = unframe(&buf[..len]) else {
            bump(&counters.malformed, 1);
            continue;
        };
        let inbound = Inbound { from, kind, body: Bytes::copy_from_slice(body) };
        match tx.try_send(inbound) {
            Ok(()) => {}
            // The gossip task is behind; shedding load is what UDP would do anyway.
            Err(mpsc::error::TrySendError::Full(_)) => bump(&counters.queue_full, 1),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_checks() {
        type Case = (&'static [u8], Option<(Kind, &'static [u8])>);
        let cases: &[Case] = &[
            (b"SG\x01\x00body", Some((Kind::Swim, b"body"))),
            (b"SG\x01\x01", Some((Kind::JoinRequest, b""))),
            (b"SG\x01\x02x", Some((Kind::JoinReply, b"x"))),
            (b"SG\x01\x03x", Some((Kind::Facts, b"x"))),
            (b"SG\x01\x04x", None),
            (b"SG\x02\x00x", None),
            (b"XG\x01\x00x", None),
            (b"SG\x01", None),
            (b"", None),
        ];
        for (packet, want) in cases {
            assert_eq!(unframe(packet), *want, "packet {packet:?}");
        }
    }
}
