//! How the resolver forwards what is not a cluster name, and how long answers may be cached.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Docker forwards to at most three servers, like glibc reads at most three `nameserver` lines.
const MAX_UPSTREAMS: usize = 3;

/// The resolver's settings. [`ResolverConfig::default`] gives the values the daemon should use
/// unless it has a reason not to; only `upstreams` is node-specific.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The node's resolvers, tried in order (see [`upstreams_from_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// How long one try at one upstream may take. A whole forward is also capped at 3 s so a
    /// client (glibc waits 5 s per try) always gets a SERVFAIL before it gives up on us.
    pub upstream_timeout: Duration,
    /// Forwards in flight at once across all tasks; one more is answered SERVFAIL at once rather
    /// than queued, so a flood of outside names cannot pile up memory or delay cluster names.
    pub max_inflight_forwards: usize,
    /// TTL of cluster answers in seconds.
    pub ttl: u32,
}

/// TTL of cluster answers. Swarm's 600 s lets caching clients (Go, the JVM, nscd, systemd-resolved)
/// keep a dead task's IP or an old VIP for ten minutes (moby#38575, moby#42833). Our tables change
/// within a second of a task starting or dying and the resolver is local and cheap, so answers may
/// be cached for one second only.
pub const DEFAULT_TTL: u32 = 1;

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(1),
            // Docker's limit (`maxConcurrent` in libnetwork's resolver).
            max_inflight_forwards: 1024,
            ttl: DEFAULT_TTL,
        }
    }
}

/// The upstream resolvers in a `resolv.conf` text: the first three usable `nameserver` lines, on
/// port 53. Loopback servers (127.0.0.0/8, ::1) are skipped: inside a task they would be the task
/// itself, and the embedded resolver at 127.0.0.11 would forward to itself. Unparsable lines (e.g.
/// `fe80::1%eth0`) are skipped too.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .filter(|ip| !ip.is_loopback())
        .take(MAX_UPSTREAMS)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_gives_at_most_three_non_loopback_servers() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n\
                    nameserver   2001:db8::1  \nnameserver ::1\nnameserver fe80::1%eth0\nnameserver bogus\n\
                    options ndots:2\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        let got: Vec<String> = upstreams_from_resolv_conf(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.2:53", "[2001:db8::1]:53", "192.0.2.1:53"]);
    }

    #[test]
    fn only_loopback_servers_leave_no_upstream() {
        assert!(upstreams_from_resolv_conf("nameserver 127.0.0.11\nnameserver 127.0.0.53\n").is_empty());
        assert!(upstreams_from_resolv_conf("").is_empty());
    }
}
