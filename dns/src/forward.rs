//! Forwarding names that are not the cluster's to the node's upstream resolvers.
//!
//! Each forward uses a fresh socket with a random source port and a random query ID, so an
//! off-path attacker cannot guess where to inject an answer, and a late or stray datagram is
//! ignored. Upstreams are tried in order with a per-try timeout, the whole forward is capped, and a
//! semaphore bounds how many run at once: the resolver answers every query, quickly, never hangs.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use crate::config::ResolverConfig;

/// A whole forward (all upstreams, UDP and TCP) never takes longer than this, so a client whose
/// own timeout is glibc's 5 s gets our SERVFAIL first and can move on instead of timing out.
const MAX_FORWARD_TIME: Duration = Duration::from_secs(3);

/// Room for an upstream's UDP answer. A bigger datagram arrives cut short, fails to parse, and
/// the query is retried over TCP, which is what a truncated answer asks for anyway.
const UDP_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream resolver is configured")]
    NoUpstream,
    #[error("too many forwarded queries are in flight")]
    Busy,
    #[error("no upstream resolver answered in time")]
    NoAnswer,
}

pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    try_timeout: Duration,
    permits: Semaphore,
}

impl Forwarder {
    pub(crate) fn new(config: &ResolverConfig) -> Forwarder {
        Forwarder {
            upstreams: config.upstreams.clone(),
            try_timeout: config.upstream_timeout,
            permits: Semaphore::new(config.max_inflight_forwards),
        }
    }

    /// Sends `query` (a client's wire-format query) upstream and returns the first usable answer.
    /// `over_tcp` skips UDP for clients that came over TCP: they expect answers of any size.
    ///
    /// An answer is usable unless it is SERVFAIL, REFUSED or another error code, which (as in
    /// Docker) moves on to the next upstream. NXDOMAIN is taken from the first upstream that says
    /// it, as glibc does; asking the others too would triple the cost of every search-domain miss.
    pub(crate) async fn forward(&self, query: &[u8], over_tcp: bool) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let _permit = self.permits.try_acquire().map_err(|_| ForwardError::Busy)?;
        let deadline = Instant::now() + MAX_FORWARD_TIME;
        let mut last_error_answer = None;
        for upstream in &self.upstreams {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let try_deadline = deadline.min(now + self.try_timeout);
            match timeout_at(try_deadline, exchange(*upstream, query, over_tcp)).await {
                Ok(Ok(answer)) => match answer.metadata.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => return Ok(answer),
                    code => {
                        debug!(%upstream, %code, "upstream resolver failed the query, trying the next");
                        last_error_answer = Some(answer);
                    }
                },
                Ok(Err(error)) => debug!(%upstream, %error, "upstream resolver unreachable, trying the next"),
                Err(_) => debug!(%upstream, "upstream resolver timed out, trying the next"),
            }
        }
        last_error_answer.ok_or(ForwardError::NoAnswer)
    }
}

/// One try at one upstream: UDP first (unless `over_tcp`), then TCP if the answer was truncated.
async fn exchange(upstream: SocketAddr, query: &[u8], over_tcp: bool) -> io::Result<Message> {
    if query.len() < 12 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "query shorter than a DNS header"));
    }
    let id: u16 = rand::random();
    let mut wire = query.to_vec();
    wire[..2].copy_from_slice(&id.to_be_bytes());
    if !over_tcp {
        if let Some(answer) = exchange_udp(upstream, &wire, id).await? {
            if !answer.metadata.truncation {
                return Ok(answer);
            }
        }
        debug!(%upstream, "truncated answer over UDP, retrying over TCP");
    }
    exchange_tcp(upstream, &wire, id).await
}

/// Returns `None` when the answer did not fit or did not parse: worth a retry over TCP.
async fn exchange_udp(upstream: SocketAddr, wire: &[u8], id: u16) -> io::Result<Option<Message>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone else and reports ICMP errors, so a dead
    // upstream fails at once instead of after the timeout.
    socket.connect(upstream).await?;
    socket.send(wire).await?;
    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        let len = socket.recv(&mut buffer).await?;
        let datagram = &buffer[..len];
        if len < 2 || datagram[..2] != id.to_be_bytes() {
            continue; // a late answer to an earlier query, or noise
        }
        return Ok(match Message::from_vec(datagram) {
            Ok(answer) if answer.metadata.message_type == MessageType::Response => Some(answer),
            Ok(_) => continue,
            Err(_) => None,
        });
    }
}

async fn exchange_tcp(upstream: SocketAddr, wire: &[u8], id: u16) -> io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(wire.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    let answer = Message::from_vec(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if answer.metadata.id != id || answer.metadata.message_type != MessageType::Response {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "answer does not match the query"));
    }
    Ok(answer)
}
