//! Shoal's embedded DNS: the resolver that answers inside every task's namespace at
//! 127.0.0.11:53 (service names, `tasks.<service>`, task names), forwarding everything else.
//!
//! The resolver itself arrives with the DNS issue (hickory-server with a custom handler). What
//! exists now is the part every task needs first: the `resolv.conf` that points at it.
//!
//! **Architecture invariant:** `dns` does no I/O but its sockets; it is fed its tables.

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
