//! Overlay-network helpers for the t9x tests and `cargo xtask bench overlay`: networks through the
//! CLI, a task's overlay address and network namespace, traffic between namespaces made by the
//! test process itself, packet captures, and dumps of the kernel state the overlay programs.
//!
//! Traffic is made from this process rather than with `ping`/`nc`: a thread enters the namespace
//! (a task's `/proc/<pid>/ns/net`, a node's `/run/netns/<name>`), opens its socket there and leaves;
//! the socket stays in that namespace. So a test knows exactly what was sent and what came back,
//! byte for byte, without parsing another tool's output. Only `tcpdump`, `ip` and `bridge` are
//! run, always inside a lab namespace through `nsenter --net=…`.
//!
//! Every address used is inside the lab: node underlay addresses (198.18.0.0/15), the lab
//! server's [`UNDERLAY_SERVER`] on the lab bridge, and overlay task addresses (10.0.0.0/8).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cmd::{run_timeout, sh, CmdOutput};
use crate::node::CLI_TIMEOUT;
use crate::poll::{poll_until, try_poll_until};
use crate::{Lab, Node, TaskView, SHORT};

/// The driver option Docker shows a network's VNI under.
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The address the lab server listens on: on the lab bridge `br0`, inside 198.18.0.0/15 but
/// above every node address, so a task that reaches it crossed its node's underlay.
pub const UNDERLAY_SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);

// ---- networks through the CLI ---------------------------------------------------------------

impl Lab {
    /// `shoal network create -d overlay <args…> <name>` on node `via`; asserts success and returns
    /// `network inspect`'s object.
    #[track_caller]
    pub fn create_overlay(&self, via: usize, name: &str, args: &[&str]) -> Value {
        let mut full = vec!["network", "create", "-d", "overlay"];
        full.extend_from_slice(args);
        full.push(name);
        let out = self.node(via).shoal(&full);
        out.assert_ok();
        let net = self.inspect_network(via, name);
        assert_eq!(out.stdout.trim(), net["Id"].as_str().unwrap_or_default(), "create printed another ID");
        net
    }

    /// `shoal network inspect <name>` on node `via`: the one object of the JSON array it prints.
    pub fn try_inspect_network(&self, via: usize, name: &str) -> Result<Value, String> {
        let out = self.node(via).shoal(&["network", "inspect", name]);
        if !out.success() {
            return Err(out.combined().trim().to_string());
        }
        let json: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;
        match json.as_array().map(Vec::as_slice) {
            Some([one]) => Ok(one.clone()),
            _ => Err(format!("not a one-element array: {json}")),
        }
    }

    #[track_caller]
    pub fn inspect_network(&self, via: usize, name: &str) -> Value {
        self.try_inspect_network(via, name).unwrap_or_else(|e| panic!("node{via}: network inspect {name}: {e}"))
    }

    /// The names in node `via`'s `GET /networks`, sorted.
    #[track_caller]
    pub fn network_names(&self, via: usize) -> Vec<String> {
        let list = self.node(via).api_get("/networks");
        let mut names: Vec<String> =
            list.as_array().into_iter().flatten().filter_map(|n| n["Name"].as_str().map(str::to_string)).collect();
        names.sort();
        names
    }

    /// Creates a one-replica `shoal/echo` service on `network`, pinned to node `node`, and waits
    /// until it runs; returns its task.
    #[track_caller]
    pub fn pinned_echo(&self, via: usize, name: &str, network: &str, node: usize) -> TaskView {
        let constraint = format!("node.hostname==node{node}");
        self.node(via)
            .service(&["create", "-d", "--name", name, "--network", network, "--constraint", &constraint, "shoal/echo"])
            .assert_ok();
        let task = self.wait_converged(via, name, 1).remove(0);
        assert!(task.pid > 0, "{}", task.brief());
        task
    }

    /// Node ID → underlay address (`Status.Addr` in node `via`'s `GET /nodes`).
    #[track_caller]
    pub fn node_addrs(&self, via: usize) -> std::collections::HashMap<String, Ipv4Addr> {
        let nodes = self.node(via).api_get("/nodes");
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| Some((n["ID"].as_str()?.to_string(), n["Status"]["Addr"].as_str()?.parse().ok()?)))
            .collect()
    }

    /// Sets the MTU of node `i`'s underlay link, both ends (`eth0` in the node, `vn<i>` on the lab
    /// bridge, which follows its smallest port). Call before the daemon starts: it reads the
    /// underlay MTU when it builds a network.
    #[track_caller]
    pub fn set_underlay_mtu(&self, i: usize, mtu: u32) {
        let mtu = mtu.to_string();
        let node = self.node(i);
        sh("ip", &["-n", self.lab_ns(), "link", "set", &format!("vn{i}"), "mtu", &mtu]).expect("lab-side mtu");
        sh("ip", &["-n", node.ns(), "link", "set", "eth0", "mtu", &mtu]).expect("node-side mtu");
    }

    /// The lab namespace (holding the underlay bridge) as a [`Netns`].
    pub fn lab_netns(&self) -> Netns {
        Netns::named(self.lab_ns())
    }

    /// Starts a TCP and UDP server on [`UNDERLAY_SERVER`]:`port` in the lab namespace (adding the
    /// address to `br0`); it records the source of everything it receives.
    #[track_caller]
    pub fn underlay_server(&self, port: u16) -> UnderlayServer {
        let addr = format!("{UNDERLAY_SERVER}/15");
        sh("ip", &["-n", self.lab_ns(), "addr", "replace", &addr, "dev", "br0"]).expect("address on br0");
        UnderlayServer::start(&self.lab_netns(), SocketAddrV4::new(UNDERLAY_SERVER, port))
    }
}

/// A network's VNI (`Options["com.docker.network.driver.overlay.vxlanid_list"]`, first entry).
#[track_caller]
pub fn vni(network: &Value) -> u32 {
    let list = network["Options"][VXLAN_ID_OPTION].as_str().unwrap_or_default();
    list.split(',').next().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no VNI in {network}"))
}

/// `IPAM.Config[0].Subnet` of a network, as (address, prefix length).
#[track_caller]
pub fn subnet(network: &Value) -> (Ipv4Addr, u8) {
    let s = network["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or_default();
    parse_cidr(s).unwrap_or_else(|| panic!("no IPAM.Config[0].Subnet in {network}"))
}

/// `10.0.1.3/24` → (10.0.1.3, 24).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

/// Whether `ip` lies in `net/len`.
pub fn in_subnet(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl TaskView {
    /// The task's address on the network named `network` (`NetworksAttachments[].Addresses`).
    pub fn overlay_addr(&self, network: &str) -> Option<(Ipv4Addr, u8)> {
        let attachments = self.json["NetworksAttachments"].as_array()?;
        let a = attachments.iter().find(|a| a["Network"]["Spec"]["Name"] == network)?;
        parse_cidr(a["Addresses"][0].as_str()?)
    }

    /// [`TaskView::overlay_addr`] without the prefix; panics if the task has none.
    #[track_caller]
    pub fn overlay_ip(&self, network: &str) -> Ipv4Addr {
        self.overlay_addr(network)
            .unwrap_or_else(|| {
                panic!("{} has no address on {network}: {}", self.brief(), self.json["NetworksAttachments"])
            })
            .0
    }

    /// The task's network namespace (through its PID 1).
    pub fn netns(&self) -> Netns {
        assert!(self.pid > 0, "{} has no process", self.brief());
        Netns::task(self.pid)
    }
}

/// Whether a task state is terminal (the task holds nothing any more).
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned")
}

// ---- namespaces and traffic -----------------------------------------------------------------

/// A network namespace named by path: a node's or the lab's `/run/netns/<name>`, or a task's
/// `/proc/<pid>/ns/net`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns(PathBuf);

impl Netns {
    pub fn named(name: &str) -> Netns {
        Netns(PathBuf::from(format!("/run/netns/{name}")))
    }

    pub fn task(pid: i32) -> Netns {
        Netns(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    pub fn node(node: &Node) -> Netns {
        Netns::named(node.ns())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        crate::netns::in_netns_at(&self.0, f)
    }

    /// `nsenter --net=<path> -- <cmd…>`, with the CLI hang guard.
    pub fn cmd(&self, cmd: &[&str]) -> CmdOutput {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.0.display())).arg("--").args(cmd);
        run_timeout(&mut c, CLI_TIMEOUT)
    }

    /// [`Netns::cmd`] for `ip -j …` / `bridge -j …`, parsed; panics if the command fails.
    #[track_caller]
    pub fn json(&self, cmd: &[&str]) -> Value {
        let out = self.cmd(cmd);
        out.assert_ok();
        if out.stdout.trim().is_empty() {
            return Value::Array(Vec::new());
        }
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
    }

    /// A TCP listener on `addr` inside this namespace.
    pub fn tcp_listen(&self, addr: SocketAddrV4) -> std::io::Result<TcpListener> {
        self.run(|| TcpListener::bind(addr))
    }

    /// A TCP connection from inside this namespace.
    pub fn tcp_connect(&self, to: SocketAddrV4, timeout: Duration) -> std::io::Result<TcpStream> {
        self.run(|| TcpStream::connect_timeout(&SocketAddr::V4(to), timeout))
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddrV4) -> std::io::Result<UdpSocket> {
        self.run(|| UdpSocket::bind(addr))
    }

    /// Connects to a line server (`shoal/echo`, the lab server) over TCP and returns its line.
    pub fn tcp_line(&self, to: SocketAddrV4) -> std::io::Result<String> {
        let mut s = self.tcp_connect(to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        s.read_to_string(&mut line)?;
        Ok(line)
    }

    /// Sends one datagram to a line server over UDP and returns the answer (3 s at most).
    pub fn udp_line(&self, to: SocketAddrV4) -> std::io::Result<String> {
        let s = self.udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(b"hello\n", to)?;
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Sends `count` ICMP echo requests (`payload` bytes each, 100 ms apart) from this namespace
    /// and counts the replies from `dst` (waiting up to 1 s after the last request).
    pub fn ping(&self, dst: Ipv4Addr, count: u16, payload: usize) -> Ping {
        self.run(|| icmp_ping(dst, count, payload))
    }

    /// The interface holding `ip` here: (name, MAC, MTU).
    #[track_caller]
    pub fn iface_with_addr(&self, ip: Ipv4Addr) -> Option<(String, String, u32)> {
        let links = self.json(&["ip", "-j", "addr", "show"]);
        links.as_array().into_iter().flatten().find_map(|l| {
            let has = l["addr_info"].as_array()?.iter().any(|a| a["local"].as_str() == Some(&ip.to_string()));
            has.then(|| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                (s("ifname"), s("address"), l["mtu"].as_u64().unwrap_or(0) as u32)
            })
        })
    }

    /// The IPv4 addresses here (`ip -j addr`), as (interface, address, prefix).
    #[track_caller]
    pub fn addrs(&self) -> Vec<(String, Ipv4Addr, u8)> {
        let links = self.json(&["ip", "-j", "-4", "addr", "show"]);
        let mut out = Vec::new();
        for l in links.as_array().into_iter().flatten() {
            let name = l["ifname"].as_str().unwrap_or_default();
            for a in l["addr_info"].as_array().into_iter().flatten() {
                if let (Some(ip), Some(len)) =
                    (a["local"].as_str().and_then(|s| s.parse().ok()), a["prefixlen"].as_u64())
                {
                    out.push((name.to_string(), ip, len as u8));
                }
            }
        }
        out
    }

    /// The default IPv4 routes here, as (gateway, device).
    #[track_caller]
    pub fn default_routes(&self) -> Vec<(Option<Ipv4Addr>, String)> {
        let routes = self.json(&["ip", "-j", "-4", "route", "show", "default"]);
        routes
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (r["gateway"].as_str().and_then(|g| g.parse().ok()), r["dev"].as_str().unwrap_or_default().into()))
            .collect()
    }

    /// The MTU of link `dev`.
    #[track_caller]
    pub fn link_mtu(&self, dev: &str) -> u32 {
        let l = self.json(&["ip", "-j", "link", "show", "dev", dev]);
        l[0]["mtu"].as_u64().unwrap_or_else(|| panic!("no mtu for {dev}: {l}")) as u32
    }

    /// The VXLAN devices here (`ip -d -j link show type vxlan`).
    #[track_caller]
    pub fn vxlan_devices(&self) -> Vec<VxlanDev> {
        let links = self.json(&["ip", "-d", "-j", "link", "show", "type", "vxlan"]);
        links
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let d = &l["linkinfo"]["info_data"];
                VxlanDev {
                    name: l["ifname"].as_str().unwrap_or_default().into(),
                    ifindex: l["ifindex"].as_u64().unwrap_or(0) as u32,
                    vni: d["id"].as_u64().unwrap_or(0) as u32,
                    mtu: l["mtu"].as_u64().unwrap_or(0) as u32,
                    local: d["local"].as_str().and_then(|s| s.parse().ok()),
                    port: d["port"].as_u64().unwrap_or(0) as u16,
                    learning: d["learning"].as_bool().unwrap_or(true),
                    master: l["master"].as_str().map(str::to_string),
                }
            })
            .collect()
    }

    /// The VXLAN device carrying `vni` here, if any.
    #[track_caller]
    pub fn vxlan_for(&self, vni: u32) -> Option<VxlanDev> {
        self.vxlan_devices().into_iter().find(|d| d.vni == vni)
    }

    /// The remote entries of a VXLAN device's FDB (`bridge -j fdb show dev <dev>`, entries with a
    /// `dst`: MAC → VTEP). The bridge's own entries for the port carry no `dst` and are left out.
    #[track_caller]
    pub fn fdb(&self, dev: &str) -> Vec<FdbEntry> {
        let entries = self.json(&["bridge", "-j", "fdb", "show", "dev", dev]);
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some(FdbEntry {
                    mac: e["mac"].as_str()?.to_string(),
                    dst: e["dst"].as_str()?.parse().ok()?,
                    flags: e["flags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str().map(Into::into))
                        .collect(),
                    state: e["state"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect()
    }

    /// The IPv4 neighbour entries of `dev` (`ip -j neigh show dev <dev>`).
    #[track_caller]
    pub fn neighbours(&self, dev: &str) -> Vec<NeighEntry> {
        let entries = self.json(&["ip", "-4", "-j", "neigh", "show", "dev", dev]);
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some(NeighEntry {
                    ip: e["dst"].as_str()?.parse().ok()?,
                    mac: e["lladdr"].as_str().map(str::to_string),
                    state: e["state"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(Into::into))
                        .collect(),
                })
            })
            .collect()
    }
}

/// One VXLAN device as `ip -d link` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanDev {
    pub name: String,
    pub ifindex: u32,
    pub vni: u32,
    pub mtu: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
    /// The bridge it is a port of.
    pub master: Option<String>,
}

/// A remote FDB entry of a VXLAN device: frames for `mac` go to the VTEP `dst`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: String,
    pub dst: Ipv4Addr,
    pub flags: Vec<String>,
    pub state: String,
}

impl FdbEntry {
    /// `self permanent`: programmed statically on the device, never learned.
    pub fn is_static(&self) -> bool {
        self.flags.iter().any(|f| f == "self") && self.state == "permanent"
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighEntry {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    pub state: Vec<String>,
}

impl NeighEntry {
    pub fn is_permanent(&self) -> bool {
        self.state.iter().any(|s| s == "PERMANENT")
    }
}

/// What [`Netns::ping`] saw.
#[derive(Clone, Debug, Default)]
pub struct Ping {
    pub sent: u16,
    pub replies: u16,
    /// Send errors (`Network is unreachable` on a namespace without a route), de-duplicated.
    pub errors: Vec<String>,
}

/// ICMP echo over a raw socket of the calling thread's namespace.
fn icmp_ping(dst: Ipv4Addr, count: u16, payload: usize) -> Ping {
    let mut ping = Ping::default();
    // SAFETY: socket(2) with constant arguments; the fd is checked and then owned by `sock`.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if fd < 0 {
        ping.errors.push(format!("raw socket: {}", std::io::Error::last_os_error()));
        return ping;
    }
    // SAFETY: `fd` is a fresh socket nothing else owns. A raw socket takes sendto/recvfrom like
    // a datagram socket, which is all `UdpSocket` does with it; the port is ignored.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = (std::process::id() as u16) ^ NEXT_ID.fetch_add(0x101, Ordering::Relaxed);
    let mut seen = BTreeSet::new();
    let note = |ping: &mut Ping, e: String| {
        if !ping.errors.contains(&e) {
            ping.errors.push(e);
        }
    };
    let mut drain = |ping: &mut Ping, until: Instant| {
        let mut buf = [0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            let _ = sock.set_read_timeout(Some(until - now));
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                    if n >= ihl + 8 && buf[ihl] == 0 && src == dst {
                        let rid = u16::from_be_bytes([buf[ihl + 4], buf[ihl + 5]]);
                        let seq = u16::from_be_bytes([buf[ihl + 6], buf[ihl + 7]]);
                        if rid == id && seen.insert(seq) {
                            ping.replies += 1;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    };
    for seq in 0..count {
        let mut pkt = vec![0u8; 8 + payload];
        pkt[0] = 8; // echo request
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in pkt[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        match sock.send_to(&pkt, SocketAddrV4::new(dst, 0)) {
            Ok(_) => ping.sent += 1,
            Err(e) => note(&mut ping, e.to_string()),
        }
        drain(&mut ping, Instant::now() + Duration::from_millis(100));
    }
    drain(&mut ping, Instant::now() + Duration::from_secs(1));
    ping
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Byte `i` of every test stream: a pattern that catches loss, duplication and reordering.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Sends `bytes` bytes over one TCP connection from `from` to a listener this opens in `to` on
/// `to_ip:port`, checks every byte that arrives, and returns how long it took.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_ip: Ipv4Addr, port: u16, bytes: u64) -> Result<Duration, String> {
    let t = Transfer::start(from, to, SocketAddrV4::new(to_ip, port), None, Some(bytes))?;
    let start = Instant::now();
    let got = t.finish(Duration::from_secs(60))?;
    if got != bytes {
        return Err(format!("{got} of {bytes} bytes arrived"));
    }
    Ok(start.elapsed())
}

/// A running TCP transfer between two namespaces: the sender writes the test pattern (at a
/// steady rate, if given) until told to stop or `total` is reached; the receiver checks every
/// byte. Both sockets time out after 60 s without progress.
pub struct Transfer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    sender: JoinHandle<Result<u64, String>>,
    receiver: JoinHandle<Result<u64, String>>,
}

impl Transfer {
    pub fn start(
        from: &Netns,
        to: &Netns,
        addr: SocketAddrV4,
        rate_bytes_per_sec: Option<u64>,
        total: Option<u64>,
    ) -> Result<Transfer, String> {
        let listener = to.tcp_listen(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
        let stream = poll_connect(from, addr)?;
        let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let idle = Some(Duration::from_secs(60));
        stream.set_write_timeout(idle).map_err(|e| e.to_string())?;
        server.set_read_timeout(idle).map_err(|e| e.to_string())?;
        let (stop, sent, received) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let sender = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || send_pattern(stream, &stop, &sent, rate_bytes_per_sec, total))
        };
        let receiver = {
            let received = Arc::clone(&received);
            std::thread::spawn(move || receive_pattern(server, &received))
        };
        Ok(Transfer { stop, sent, received, sender, receiver })
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops sending (if not done), closes, and waits up to `timeout` for the receiver to see
    /// the end of the stream. Ok: every byte sent arrived intact; their number.
    pub fn finish(self, timeout: Duration) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        try_poll_until(timeout, || self.receiver.is_finished().then_some(()))
            .map_err(|_| format!("the receiver did not see the end within {timeout:?}: {} bytes", self.received()))?;
        let sent = self.sender.join().map_err(|_| "sender panicked".to_string())??;
        let received = self.receiver.join().map_err(|_| "receiver panicked".to_string())??;
        if sent != received {
            return Err(format!("sent {sent} bytes, {received} arrived"));
        }
        Ok(received)
    }
}

fn poll_connect(from: &Netns, addr: SocketAddrV4) -> Result<TcpStream, String> {
    try_poll_until(SHORT, || from.tcp_connect(addr, Duration::from_secs(3)).map_err(|e| e.to_string()))
        .map_err(|e| format!("connect to {addr}: {e}"))
}

fn send_pattern(
    mut s: TcpStream,
    stop: &AtomicBool,
    sent: &AtomicU64,
    rate: Option<u64>,
    total: Option<u64>,
) -> Result<u64, String> {
    const CHUNK: u64 = 16 * 1024;
    let start = Instant::now();
    let mut off = 0u64;
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let n = match total {
            Some(t) => CHUNK.min(t - off),
            None if stop.load(Ordering::Relaxed) => 0,
            None => CHUNK,
        };
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n as usize].iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        s.write_all(&buf[..n as usize]).map_err(|e| format!("send at byte {off}: {e}"))?;
        off += n;
        sent.store(off, Ordering::Relaxed);
        if let Some(rate) = rate {
            // Pacing, not waiting: the sender stays at `rate` on average.
            let due = Duration::from_secs_f64(off as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    Ok(off)
}

fn receive_pattern(mut s: TcpStream, received: &AtomicU64) -> Result<u64, String> {
    let mut off = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("receive at byte {off}: {e}"))?;
        if n == 0 {
            return Ok(off);
        }
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern(off + i as u64)) {
            return Err(format!("byte {} is {}, want {}", off + i as u64, buf[i], pattern(off + i as u64)));
        }
        off += n as u64;
        received.store(off, Ordering::Relaxed);
    }
}

/// Sends `count` UDP datagrams of `size` bytes with the don't-fragment bit from `from` to a
/// socket this binds in `to` on `to_ip:port`; returns how many arrived intact (waiting up to 2 s
/// after the last), or the send error (`Message too long` past the path MTU).
pub fn udp_datagrams(
    from: &Netns,
    to: &Netns,
    to_ip: Ipv4Addr,
    port: u16,
    size: usize,
    count: usize,
) -> Result<usize, String> {
    let dst = SocketAddrV4::new(to_ip, port);
    let rx = to.udp_bind(dst).map_err(|e| format!("bind {dst}: {e}"))?;
    let tx = from.udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    set_dont_fragment(&tx)?;
    let mut sent = Vec::with_capacity(size);
    for n in 0..count {
        sent.clear();
        sent.extend((0..size).map(|i| pattern((n * 7 + i) as u64)));
        tx.send_to(&sent, dst).map_err(|e| format!("datagram {n} of {size} bytes: {e}"))?;
        std::thread::sleep(Duration::from_millis(2));
    }
    rx.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    let mut good = 0;
    while let Ok(len) = rx.recv(&mut buf) {
        let n = (0..count).find(|n| buf[0] == pattern((n * 7) as u64) && buf[1] == pattern((n * 7 + 1) as u64));
        let intact = n.is_some_and(|n| len == size && (0..size).all(|i| buf[i] == pattern((n * 7 + i) as u64)));
        if intact {
            good += 1;
        }
        if good == count {
            break;
        }
    }
    Ok(good)
}

/// `IP_MTU_DISCOVER = IP_PMTUDISC_DO`: the kernel sets DF and refuses datagrams over the MTU.
fn set_dont_fragment(s: &UdpSocket) -> Result<(), String> {
    let v: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("IP_MTU_DISCOVER: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

// ---- the lab server -------------------------------------------------------------------------

/// A TCP and UDP line server on the lab bridge. Each TCP connection and each datagram gets
/// `from <ip:port>` back, and the source is recorded, so a test sees which address a task's
/// traffic arrived from after NAT. Stops when dropped.
pub struct UnderlayServer {
    pub addr: SocketAddrV4,
    seen: Arc<Mutex<Vec<(&'static str, SocketAddr)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UnderlayServer {
    #[track_caller]
    fn start(ns: &Netns, addr: SocketAddrV4) -> UnderlayServer {
        let tcp = ns.tcp_listen(addr).unwrap_or_else(|e| panic!("lab server: listen on {addr}: {e}"));
        let udp = ns.udp_bind(addr).unwrap_or_else(|e| panic!("lab server: bind {addr}: {e}"));
        tcp.set_nonblocking(true).expect("nonblocking listener");
        udp.set_read_timeout(Some(Duration::from_millis(100))).expect("udp timeout");
        let seen: Arc<Mutex<Vec<(&'static str, SocketAddr)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut s, peer)) => {
                            seen.lock().unwrap_or_else(PoisonError::into_inner).push(("tcp", peer));
                            let _ = s.set_nonblocking(false);
                            let _ = writeln!(s, "from {peer}");
                        }
                        // A server loop's idle tick, not a wait for a condition.
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        let udp_thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                        seen.lock().unwrap_or_else(PoisonError::into_inner).push(("udp", peer));
                        let _ = udp.send_to(format!("from {peer}\n").as_bytes(), peer);
                    }
                }
            })
        };
        UnderlayServer { addr, seen, stop, threads: vec![tcp_thread, udp_thread] }
    }

    /// Everything received so far: ("tcp" | "udp", source).
    pub fn seen(&self) -> Vec<(&'static str, SocketAddr)> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for UnderlayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---- captures -------------------------------------------------------------------------------

/// A `tcpdump` running inside a namespace (`-n -l -t`, lines as they come). It stops when
/// [`Capture::stop`] is called, or by itself at its deadline, and is killed if dropped.
pub struct Capture {
    child: Arc<Mutex<Option<Child>>>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    what: String,
}

/// What a capture saw.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    /// tcpdump's own `N packets captured`.
    pub packets: u64,
    /// `K packets dropped by kernel`: a count claim means nothing if this is not 0.
    pub dropped: u64,
    /// One line per packet; a VXLAN packet's line is followed by its inner packet's line.
    pub lines: Vec<String>,
}

impl Captured {
    /// VXLAN packets as (outer line, VNI, inner line): tcpdump prints `IP a.p > b.4789: VXLAN,
    /// flags [I] (0x08), vni N` and the inner packet on the next line.
    pub fn vxlan(&self) -> Vec<(String, u32, String)> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let Some((_, rest)) = line.split_once("VXLAN, flags [I] (0x08), vni ") else { continue };
            let vni = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|v| v.parse().ok()).unwrap_or(0);
            out.push((line.clone(), vni, self.lines.get(i + 1).cloned().unwrap_or_default()));
        }
        out
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Capture {
    /// Starts `tcpdump -i <iface> <args…> <filter>` inside `ns` and waits until it listens; it
    /// stops by itself after `max`. `args` are extra flags (`-Q in`, …).
    #[track_caller]
    pub fn start(ns: &Netns, iface: &str, args: &[&str], filter: &str, max: Duration) -> Capture {
        let what = format!("tcpdump -i {iface} {} '{filter}' in {}", args.join(" "), ns.path().display());
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", ns.path().display()))
            .args(["--", "tcpdump", "-i", iface, "-n", "-l", "-t", "--immediate-mode"])
            .args(args)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let listening = Arc::new(AtomicBool::new(false));
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stdout).read_to_string(&mut s);
            s
        });
        let err = {
            let listening = Arc::clone(&listening);
            std::thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.starts_with("listening on") {
                        listening.store(true, Ordering::Relaxed);
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            })
        };
        let child = Arc::new(Mutex::new(Some(child)));
        let capture = Capture { child: Arc::clone(&child), out: Some(out), err: Some(err), what: what.clone() };
        poll_until(SHORT, &format!("{what} to listen"), || {
            let exited =
                child.lock().unwrap_or_else(PoisonError::into_inner).as_mut().and_then(|c| c.try_wait().ok()?);
            if let Some(status) = exited {
                panic!("{what} exited ({status}) before listening");
            }
            listening.load(Ordering::Relaxed).then_some(())
        });
        // The deadline: SIGINT (tcpdump then prints its counts) unless stopped before.
        let weak: Weak<Mutex<Option<Child>>> = Arc::downgrade(&child);
        std::thread::spawn(move || {
            let deadline = Instant::now() + max;
            while Instant::now() < deadline {
                let Some(c) = weak.upgrade() else { return };
                if c.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
                    return;
                }
                drop(c);
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(c) = weak.upgrade() {
                interrupt(&c);
            }
        });
        capture
    }

    /// Starts a capture on node `node`'s underlay interface `eth0`.
    #[track_caller]
    pub fn underlay(node: &Node, filter: &str, max: Duration) -> Capture {
        Capture::start(&Netns::node(node), "eth0", &[], filter, max)
    }

    /// Stops the capture (SIGINT, so tcpdump flushes and counts) and returns what it saw.
    #[track_caller]
    pub fn stop(mut self) -> Captured {
        interrupt(&self.child);
        let child = self.child.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut child) = child {
            let exited = try_poll_until(SHORT, || child.try_wait().ok().flatten());
            if exited.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let out = self.out.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let err = self.err.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        // tcpdump says "1 packet captured" but "0 packets captured".
        let count = |what: &str| {
            let plural = what.replacen("packet", "packets", 1);
            err.lines().find_map(|l| {
                l.strip_suffix(&plural).or_else(|| l.strip_suffix(what)).and_then(|n| n.trim().parse::<u64>().ok())
            })
        };
        let packets =
            count(" packet captured").unwrap_or_else(|| panic!("{}: no packet count from tcpdump:\n{err}", self.what));
        Captured {
            packets,
            dropped: count(" packet dropped by kernel").unwrap_or(0),
            lines: out.lines().map(str::to_string).collect(),
        }
    }
}

/// SIGINT to a capture's tcpdump if it still runs (it is our child and not reaped, so its pid is
/// still its own).
fn interrupt(child: &Mutex<Option<Child>>) {
    let mut guard = child.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = guard.as_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            // `nsenter` execs tcpdump, so this pid is tcpdump's.
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- a lab shared by the tests of one file ---------------------------------------------------

/// One lab for the tests of a file that run at the same time: the first test to ask builds it,
/// the others get the same, and it is removed when the last of them is done. (Tests that run
/// one after the other each build their own: nothing outlives the test process.)
pub struct SharedLab {
    slot: Mutex<Weak<Lab>>,
}

impl SharedLab {
    pub const fn new() -> SharedLab {
        SharedLab { slot: Mutex::new(Weak::new()) }
    }

    /// The current shared lab, or a new one from `build`.
    pub fn get(&self, build: impl FnOnce() -> Lab) -> LabRef {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lab) = slot.upgrade() {
            return LabRef(lab);
        }
        let lab = Arc::new(build());
        *slot = Arc::downgrade(&lab);
        LabRef(lab)
    }
}

impl Default for SharedLab {
    fn default() -> Self {
        SharedLab::new()
    }
}

/// A test's hold on a [`SharedLab`]. A test that panics prints the daemons' logs here when
/// another test still holds the lab (otherwise dropping the lab does).
pub struct LabRef(Arc<Lab>);

impl std::ops::Deref for LabRef {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl Drop for LabRef {
    fn drop(&mut self) {
        if std::thread::panicking() && Arc::strong_count(&self.0) > 1 {
            self.0.print_logs(80);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_subnets() {
        assert_eq!(parse_cidr("10.0.1.3/24"), Some((Ipv4Addr::new(10, 0, 1, 3), 24)));
        assert_eq!(parse_cidr("10.0.1.3"), None);
        assert_eq!(parse_cidr("10.0.1.3/33"), None);
        let net = (Ipv4Addr::new(10, 0, 1, 0), 24);
        assert!(in_subnet(Ipv4Addr::new(10, 0, 1, 254), net));
        assert!(!in_subnet(Ipv4Addr::new(10, 0, 2, 1), net));
        assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), (Ipv4Addr::UNSPECIFIED, 0)));
    }

    #[test]
    fn vxlan_lines_pair_with_their_inner_packet() {
        let c = Captured {
            packets: 2,
            dropped: 0,
            lines: [
                "IP 198.18.0.1.48302 > 198.18.0.3.4789: VXLAN, flags [I] (0x08), vni 4096",
                "IP 10.9.0.2.53005 > 10.9.0.3.80: UDP, length 3",
                "IP 198.18.0.3.34357 > 198.18.0.1.4789: VXLAN, flags [I] (0x08), vni 4097",
                "IP 10.9.0.3 > 10.9.0.2: ICMP echo reply, id 1, seq 1, length 64",
            ]
            .map(String::from)
            .to_vec(),
        };
        let v = c.vxlan();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].1, v[0].2.as_str()), (4096, "IP 10.9.0.2.53005 > 10.9.0.3.80: UDP, length 3"));
        assert_eq!(v[1].1, 4097);
    }

    #[test]
    fn icmp_checksum() {
        // An echo request with id 1, seq 1 and no payload: 0x0800 + 0x0001 + 0x0001 → !0x0802.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), !0x0802);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
