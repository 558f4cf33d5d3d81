//! Facts about the host a node reports in `Node.Description` and `/info`.

use std::fs;

/// What the agent reports about its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    /// Go-style architecture name as Docker reports it (`x86_64` → `x86_64`, like dockerd).
    pub architecture: String,
    pub os: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub ncpu: u64,
    pub mem_total: u64,
}

/// Reads the host's facts from the kernel (`/proc`, `uname`).
pub fn describe() -> HostFacts {
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
    let kernel_version =
        fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let operating_system = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| parse_os_release_pretty_name(&s))
        .unwrap_or_else(|| "Linux".to_string());
    let mem_total = fs::read_to_string("/proc/meminfo").ok().and_then(|s| parse_mem_total(&s)).unwrap_or(0);
    let ncpu = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    HostFacts {
        hostname,
        architecture: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        kernel_version,
        operating_system,
        ncpu,
        mem_total,
    }
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn parse_os_release_pretty_name(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_and_os_release() {
        assert_eq!(parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), Some(24576000 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
        assert_eq!(
            parse_os_release_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn describes_this_host() {
        let facts = describe();
        assert!(facts.ncpu >= 1);
        assert!(facts.mem_total > 0);
        assert!(!facts.kernel_version.is_empty());
    }
}

/// The host's IPv4 addresses by interface, loopback excluded: what `swarm init` chooses its
/// advertise address from when none is given.
pub fn ipv4_addrs() -> Vec<(String, std::net::Ipv4Addr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out = Vec::new();
    for ifaddr in addrs {
        let Some(addr) = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|a| a.ip()) else {
            continue;
        };
        if addr.is_loopback() {
            continue;
        }
        out.push((ifaddr.interface_name.clone(), addr));
    }
    out
}

#[cfg(test)]
mod addr_tests {
    #[test]
    fn lists_no_loopback_addresses() {
        assert!(super::ipv4_addrs().iter().all(|(_, ip)| !ip.is_loopback()));
    }
}
