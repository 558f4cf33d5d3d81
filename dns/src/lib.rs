//! Shoal's embedded DNS: the resolver that answers inside every task's network namespace at
//! 127.0.0.11:53 (UDP and TCP), like Docker's embedded DNS server.
//!
//! One [`Resolver`] per node serves all its tasks from one table ([`Records`], fed by the daemon):
//! `<service>` gives the service's VIP (task IPs in dnsrr mode), `tasks.<service>` the running task
//! IPs rotated per query, `<service>.<slot>[.<task-id>]` a task, plus network aliases and PTR
//! records. Each task only sees the names of its own networks; other cluster names are NXDOMAIN.
//! Everything else is forwarded to the node's upstream resolvers ([`upstreams_from_resolv_conf`]).
//! The wire format and the serving loops are hickory's (`hickory-proto`, `hickory-server`).
//!
//! **Architecture invariant:** `dns` does no I/O but its sockets; it is fed its tables.

mod config;
mod forward;
mod handler;
mod records;
mod resolver;
mod table;

#[cfg(test)]
mod fuzz_tests;

use std::path::PathBuf;

pub use config::{upstreams_from_resolv_conf, ResolverConfig, DEFAULT_TTL};
pub use records::{Records, ServiceRecord, TaskRecord};
pub use resolver::Resolver;

/// Why a task could not be served.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot enter the network namespace {path}")]
    Netns { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {protocol} {addr} (is `lo` up in the task's namespace?)")]
    Bind { protocol: &'static str, addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start the thread that opens the DNS sockets")]
    Thread(#[source] std::io::Error),
    #[error("the thread that opens the DNS sockets died")]
    ThreadDied,
    #[error("cannot hand the DNS sockets to the runtime")]
    Register(#[source] std::io::Error),
}

/// The address the embedded resolver listens on inside each task, as in Docker.
pub const RESOLVER_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// The `/etc/resolv.conf` a task gets: only the embedded resolver, `ndots:0` so single-label
/// service names are tried as-is first.
pub fn task_resolv_conf(search_domains: &[&str]) -> String {
    let mut out = format!("nameserver {RESOLVER_ADDR}\noptions ndots:0\n");
    if !search_domains.is_empty() {
        out.push_str(&format!("search {}\n", search_domains.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_the_embedded_resolver() {
        assert_eq!(task_resolv_conf(&[]), "nameserver 127.0.0.11\noptions ndots:0\n");
        assert_eq!(task_resolv_conf(&["a.example"]), "nameserver 127.0.0.11\noptions ndots:0\nsearch a.example\n");
    }
}
