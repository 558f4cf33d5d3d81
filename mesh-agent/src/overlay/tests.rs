//! Privileged tests of the overlay (we run as root): two "nodes" are network namespaces joined by
//! a veth underlay, each with its own [`Overlay`]; tasks are namespaces of their own made with
//! [`create_netns`]. Traffic is generated from sockets opened on threads inside the namespaces
//! (raw ICMP for ping), tables are read back with `ip`/`bridge`. Everything a test makes is
//! removed by a Drop guard, even when it panics.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);
const PORT: u16 = 4789;

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawning a command");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside the namespace at `path`; sockets it opens stay in that namespace.
fn in_ns<R: Send + 'static>(path: &Path, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `count` ICMP echo requests of `payload` bytes with DF set, `interval` apart, from the
/// namespace at `ns`, and returns how many were answered (each waits up to 1 s).
fn ping(ns: &Path, dst: Ipv4Addr, payload: usize, count: u16, interval: Duration) -> u16 {
    in_ns(ns, move || {
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is owned from here on.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let pmtu: libc::c_int = libc::IP_PMTUDISC_DO;
        let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
        // SAFETY: setsockopt reads the given values, which outlive the calls.
        unsafe {
            libc::setsockopt(raw, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, (&pmtu as *const libc::c_int).cast(), 4);
            libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&timeout as *const libc::timeval).cast(), 16);
        }
        let id = (std::process::id() as u16) ^ (COUNTER.fetch_add(1, Ordering::Relaxed) as u16).rotate_left(8);
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(dst).to_be() },
            sin_zero: [0; 8],
        };
        let mut answered = 0;
        for seq in 0..count {
            let mut packet = vec![8u8, 0, 0, 0];
            packet.extend(id.to_be_bytes());
            packet.extend(seq.to_be_bytes());
            packet.extend(std::iter::repeat_n(0xa5, payload));
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
            // SAFETY: the buffer and address outlive the call.
            let sent = unsafe {
                libc::sendto(raw, packet.as_ptr().cast(), packet.len(), 0, (&to as *const libc::sockaddr_in).cast(), 16)
            };
            if sent < 0 {
                std::thread::sleep(interval);
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                // SAFETY: buf is valid for its length for the call.
                let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    break;
                }
                let header = usize::from(buf[0] & 0x0f) * 4;
                let icmp = &buf[header..n as usize];
                let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                if icmp.len() >= 8
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && icmp[6..8] == seq.to_be_bytes()
                    && from == dst
                {
                    answered += 1;
                    break;
                }
            }
            std::thread::sleep(interval);
        }
        answered
    })
}

/// A lab: node namespaces (named, in /run/netns) and task namespaces under a temp dir.
struct Lab {
    id: String,
    nodes: Vec<String>,
    dir: tempfile::TempDir,
    tasks: Vec<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for task in &self.tasks {
            let _ = remove_netns(task);
        }
        for node in &self.nodes {
            let _ = Command::new("ip").args(["netns", "del", node]).status();
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Lab {
            id: format!("ov-{}-{n}", std::process::id()),
            nodes: vec![],
            dir: tempfile::tempdir().unwrap(),
            tasks: vec![],
        }
    }

    fn subnet_byte(&self) -> u8 {
        (self.id.rsplit('-').next().unwrap().parse::<u32>().unwrap() % 250) as u8
    }

    fn node_path(&self, node: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{node}"))
    }

    /// Two nodes `-a` (198.18.<n>.1) and `-b` (.2) on a veth underlay of `mtu`.
    fn two_nodes(&mut self, mtu: u32) -> (String, String) {
        let (a, b) = (format!("{}-a", self.id), format!("{}-b", self.id));
        for node in [&a, &b] {
            run(&["ip", "netns", "add", node]);
            self.nodes.push(node.clone());
            run(&["ip", "-n", node, "link", "set", "lo", "up"]);
        }
        run(&["ip", "-n", &a, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", &b]);
        let byte = self.subnet_byte().to_string();
        for (node, host) in [(&a, "1"), (&b, "2")] {
            run(&["ip", "-n", node, "addr", "add", &format!("198.18.{byte}.{host}/15"), "dev", "u0"]);
            run(&["ip", "-n", node, "link", "set", "u0", "mtu", &mtu.to_string(), "up"]);
        }
        (a, b)
    }

    fn underlay_addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet_byte(), host)
    }

    fn overlay(&self, node: &str, host: u8) -> Overlay {
        let path = self.node_path(node);
        let underlay = detect_underlay_in(self.underlay_addr(host), PORT, Some(&path)).unwrap();
        Overlay::new(underlay, Some(path)).unwrap()
    }

    fn task_ns(&mut self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        create_netns(&path).unwrap();
        self.tasks.push(path.clone());
        path
    }
}

fn network(id: &str, vni: u32, third: u8) -> OverlayNetwork {
    OverlayNetwork {
        id: id.into(),
        vni,
        subnet: Ipv4Addr::new(10, third, 0, 0),
        prefix_len: 24,
        mtu: None,
        internal: true,
    }
}

fn mac_of(third: u8, host: u8) -> [u8; 6] {
    [0x02, 0x42, 10, third, 0, host]
}

fn iface(net: &OverlayNetwork, host: u8) -> TaskInterface {
    let third = net.subnet.octets()[1];
    TaskInterface {
        network_id: net.id.clone(),
        ip: Ipv4Addr::new(10, third, 0, host),
        prefix_len: 24,
        mac: mac_of(third, host),
        reply_gateway: None,
    }
}

fn endpoint(i: &TaskInterface, vtep: Ipv4Addr) -> RemoteEndpoint {
    RemoteEndpoint { network_id: i.network_id.clone(), ip: i.ip, mac: i.mac, vtep }
}

/// The node's FDB entries and neighbours on the VXLAN device of `vni`, as `bridge`/`ip` show
/// them: (MAC, "self <vtep>" | "master") and (IP, MAC). The port's own MAC entry is skipped.
/// FDB entries and neighbours as read back: ((MAC, where), (IP, MAC)).
type Tables = (BTreeSet<(String, String)>, BTreeSet<(String, String)>);

fn tables(node: &str, vni: u32) -> Tables {
    let dev = names::network_vxlan(vni);
    let link = run(&["ip", "-n", node, "-o", "link", "show", &dev]);
    let own_mac = link.split("link/ether ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let mut fdb = BTreeSet::new();
    for line in run(&["bridge", "-n", node, "fdb", "show", "dev", &dev]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == own_mac {
            continue;
        }
        if let Some(at) = words.iter().position(|w| *w == "dst") {
            assert!(line.contains("self permanent"), "{line}");
            fdb.insert((words[0].to_owned(), format!("self {}", words[at + 1])));
        } else {
            assert!(line.contains("master") && line.contains("static"), "{line}");
            fdb.insert((words[0].to_owned(), "master".to_owned()));
        }
    }
    let mut neighbours = BTreeSet::new();
    for line in run(&["ip", "-n", node, "neigh", "show", "dev", &dev]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(line.contains("PERMANENT"), "{line}");
        neighbours.insert((words[0].to_owned(), words[2].to_owned()));
    }
    (fdb, neighbours)
}

fn expected_tables(remote: &[RemoteEndpoint], local: &[RemoteEndpoint]) -> Tables {
    let mut fdb = BTreeSet::new();
    for ep in remote {
        fdb.insert((tables::fmt_mac(&ep.mac), format!("self {}", ep.vtep)));
        fdb.insert((tables::fmt_mac(&ep.mac), "master".to_owned()));
    }
    let neighbours = remote.iter().chain(local).map(|ep| (ep.ip.to_string(), tables::fmt_mac(&ep.mac))).collect();
    (fdb, neighbours)
}

fn link_indexes(ns: &str, prefixes: &[&str]) -> BTreeSet<(u32, String)> {
    run(&["ip", "-n", ns, "-o", "link"])
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(": ");
            let index = parts.next()?.trim().parse().ok()?;
            let name = parts.next()?.split('@').next()?.to_owned();
            prefixes.iter().any(|p| name.starts_with(p)).then_some((index, name))
        })
        .collect()
}

fn tcp_echo(server_ns: &Path, server: Ipv4Addr, client_ns: &Path) -> SocketAddr {
    let listener = in_ns(server_ns, move || TcpListener::bind((server, 7000)).unwrap());
    let accepting = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
        peer
    });
    let mut client =
        in_ns(client_ns, move || TcpStream::connect_timeout(&(server, 7000).into(), Duration::from_secs(5)).unwrap());
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    accepting.join().unwrap()
}

fn udp_echo(server_ns: &Path, server: Ipv4Addr, client_ns: &Path) {
    let socket = in_ns(server_ns, move || UdpSocket::bind((server, 7001)).unwrap());
    let client = in_ns(client_ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
    client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    // UDP may lose the very first datagram while nothing is resolved yet: retry with a deadline.
    wait_until("a UDP round trip", || {
        client.send_to(b"ping", (server, 7001)).unwrap();
        let mut buf = [0u8; 16];
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            socket.send_to(&buf[..n], peer).unwrap();
        }
        matches!(client.recv_from(&mut buf), Ok((4, _)))
    });
}

fn ifname_mtu(ns: &Path, ifname: &str) -> u32 {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "link", "show", ifname])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(" mtu ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Two nodes, one network, one task on each: wanted state for node `host` (1 = a, 2 = b).
struct Pair {
    net: OverlayNetwork,
    ia: TaskInterface,
    ib: TaskInterface,
    ta: PathBuf,
    tb: PathBuf,
}

impl Pair {
    fn wanted(&self, lab: &Lab, host: u8, extra_remote: &[RemoteEndpoint]) -> WantedOverlay {
        let (mine, theirs, vtep) = if host == 1 {
            (&self.ia, &self.ib, lab.underlay_addr(2))
        } else {
            (&self.ib, &self.ia, lab.underlay_addr(1))
        };
        let mut remote = vec![endpoint(theirs, vtep)];
        remote.extend_from_slice(extra_remote);
        WantedOverlay {
            networks: vec![self.net.clone()],
            remote,
            local: vec![endpoint(mine, lab.underlay_addr(host))],
            isolated_pools: vec![(self.net.subnet, self.net.prefix_len)],
            bridge_addrs: vec![],
        }
    }
}

async fn pair(lab: &mut Lab, oa: &Overlay, ob: &Overlay, net: OverlayNetwork) -> Pair {
    let (ia, ib) = (iface(&net, 2), iface(&net, 3));
    let ta = lab.task_ns(&format!("ta-{}", net.vni));
    let tb = lab.task_ns(&format!("tb-{}", net.vni));
    let p = Pair { net, ia, ib, ta, tb };
    oa.sync(&p.wanted(lab, 1, &[])).await.unwrap();
    ob.sync(&p.wanted(lab, 2, &[])).await.unwrap();
    oa.attach_task("task-a", &p.ta, &[(p.net.clone(), p.ia.clone())], false).await.unwrap();
    ob.attach_task("task-b", &p.tb, &[(p.net.clone(), p.ib.clone())], false).await.unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_two_nodes_talk_and_tables_equal_the_wanted_endpoints() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1500);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    let p = pair(&mut lab, &oa, &ob, network("net1", 4101, 1)).await;

    assert_eq!(ping(&p.ta, p.ib.ip, 56, 3, Duration::from_millis(10)), 3, "ping a → b");
    assert_eq!(ping(&p.tb, p.ia.ip, 56, 3, Duration::from_millis(10)), 3, "ping b → a");
    assert_eq!(tcp_echo(&p.tb, p.ib.ip, &p.ta).ip(), p.ia.ip, "TCP a → b sees a's overlay address");
    udp_echo(&p.ta, p.ia.ip, &p.tb);
    assert_eq!(ifname_mtu(&p.ta, "eth0"), 1450);

    for (node, host) in [(&a, 1), (&b, 2)] {
        let wanted = p.wanted(&lab, host, &[]);
        assert_eq!(tables(node, 4101), expected_tables(&wanted.remote, &wanted.local), "{node}");
    }

    // Remove b's task from a's map and add an endpoint on a third node: exactly that changes.
    let ghost = RemoteEndpoint {
        network_id: "net1".into(),
        ip: Ipv4Addr::new(10, 1, 0, 9),
        mac: mac_of(1, 9),
        vtep: Ipv4Addr::new(198, 18, 77, 7),
    };
    let mut wanted = p.wanted(&lab, 1, std::slice::from_ref(&ghost));
    wanted.remote.remove(0);
    oa.sync(&wanted).await.unwrap();
    assert_eq!(tables(&a, 4101), expected_tables(&wanted.remote, &wanted.local));
    assert_eq!(ping(&p.ta, p.ib.ip, 56, 2, Duration::from_millis(10)), 0, "b is no longer programmed on a");

    // And back again (twice: the second sync has nothing to do).
    let wanted = p.wanted(&lab, 1, &[]);
    oa.sync(&wanted).await.unwrap();
    oa.sync(&wanted).await.unwrap();
    assert_eq!(tables(&a, 4101), expected_tables(&wanted.remote, &wanted.local));
    assert_eq!(ping(&p.ta, p.ib.ip, 56, 3, Duration::from_millis(10)), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_on_the_same_nodes_are_isolated() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1500);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    // Same subnet on purpose: only the VNI separates them.
    let (n1, mut n2) = (network("red", 4201, 5), network("blue", 4202, 5));
    n2.subnet = n1.subnet;
    let (a1, b1, b2) = (iface(&n1, 2), iface(&n1, 3), iface(&n2, 4));
    let (ta1, tb1, tb2) = (lab.task_ns("a1"), lab.task_ns("b1"), lab.task_ns("b2"));
    let (va, vb) = (lab.underlay_addr(1), lab.underlay_addr(2));
    let wanted_a = WantedOverlay {
        networks: vec![n1.clone(), n2.clone()],
        remote: vec![endpoint(&b1, vb), endpoint(&b2, vb)],
        local: vec![endpoint(&a1, va)],
        ..WantedOverlay::default()
    };
    let wanted_b = WantedOverlay {
        networks: vec![n1.clone(), n2.clone()],
        remote: vec![endpoint(&a1, va)],
        local: vec![endpoint(&b1, vb), endpoint(&b2, vb)],
        ..WantedOverlay::default()
    };
    oa.sync(&wanted_a).await.unwrap();
    ob.sync(&wanted_b).await.unwrap();
    oa.attach_task("a1", &ta1, &[(n1.clone(), a1.clone())], false).await.unwrap();
    ob.attach_task("b1", &tb1, &[(n1.clone(), b1.clone())], false).await.unwrap();
    ob.attach_task("b2", &tb2, &[(n2.clone(), b2.clone())], false).await.unwrap();

    assert_eq!(ping(&ta1, b1.ip, 56, 2, Duration::from_millis(10)), 2, "same network");
    assert_eq!(ping(&ta1, b2.ip, 56, 3, Duration::from_millis(10)), 0, "red must not reach blue");
    assert_eq!(ping(&tb2, a1.ip, 56, 3, Duration::from_millis(10)), 0, "blue must not reach red");
    assert_eq!(ping(&tb2, b1.ip, 56, 3, Duration::from_millis(10)), 0, "nor on the same node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_everything_without_loss() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1500);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    let p = pair(&mut lab, &oa, &ob, network("net1", 4301, 3)).await;
    let prefixes = ["sht", "shbr", "shvx", "u0"];
    let before = (link_indexes(&a, &prefixes), tables(&a, 4301));
    assert_eq!(before.0.len(), 4, "{before:?}");

    let (ta, ib) = (p.ta.clone(), p.ib.ip);
    let pinging = std::thread::spawn(move || ping(&ta, ib, 56, 100, Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(300));
    drop(oa);
    let restarted = lab.overlay(&a, 1);
    assert_eq!(restarted.attached_tasks().await.unwrap(), vec!["task-a".to_owned()]);
    restarted.sync(&p.wanted(&lab, 1, &[])).await.unwrap();
    restarted.attach_task("task-a", &p.ta, &[(p.net.clone(), p.ia.clone())], false).await.unwrap();
    assert_eq!(pinging.join().unwrap(), 100, "no echo lost across the restart");
    assert_eq!((link_indexes(&a, &prefixes), tables(&a, 4301)), before, "nothing recreated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1400_underlay_gives_1350_task_mtu_and_full_size_df_pings_pass() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1400);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    assert_eq!(oa.underlay().mtu, 1400);
    let p = pair(&mut lab, &oa, &ob, network("net1", 4401, 4)).await;
    assert_eq!(ifname_mtu(&p.ta, "eth0"), 1350);
    assert_eq!(ifname_mtu(&p.tb, "eth0"), 1350);
    // 1350-byte IP packets: 20 IP + 8 ICMP + 1322.
    assert_eq!(ping(&p.ta, p.ib.ip, 1322, 3, Duration::from_millis(10)), 3);
    assert_eq!(ping(&p.ta, p.ib.ip, 1323, 1, Duration::from_millis(10)), 0, "one byte more does not fit with DF");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_leaves_nothing_and_churn_ends_equal_to_the_live_set() {
    let mut lab = Lab::new();
    let (a, _b) = lab.two_nodes(1500);
    let oa = lab.overlay(&a, 1);
    let net = network("churn", 4501, 6);
    let va = lab.underlay_addr(1);
    let mut live: Vec<(String, TaskInterface)> = Vec::new();
    let mut namespaces = std::collections::BTreeMap::new();
    for round in 0..50u8 {
        let task = format!("churn-{round}");
        let ns = lab.task_ns(&task);
        let interface = iface(&net, 10 + round);
        oa.attach_task(&task, &ns, &[(net.clone(), interface.clone())], false).await.unwrap();
        namespaces.insert(task.clone(), ns);
        live.push((task, interface));
        if round % 3 == 2 {
            // Detach one in three, oldest first.
            let (gone, _) = live.remove(0);
            oa.detach_task(&gone).await.unwrap();
            let ns = &namespaces[&gone];
            let links = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(["ip", "-o", "link"])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&links.stdout).lines().count(),
                1,
                "only lo stays in {gone}'s namespace"
            );
        }
        if round % 10 == 9 {
            let local: Vec<_> = live.iter().map(|(_, i)| endpoint(i, va)).collect();
            oa.sync(&WantedOverlay { networks: vec![net.clone()], local, ..WantedOverlay::default() }).await.unwrap();
        }
    }
    let live_ids: Vec<String> = {
        let mut v: Vec<_> = live.iter().map(|(t, _)| t.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(oa.attached_tasks().await.unwrap(), live_ids);
    assert_eq!(link_indexes(&a, &["sht"]).len(), live.len());
    let local: Vec<_> = live.iter().map(|(_, i)| endpoint(i, va)).collect();
    assert_eq!(tables(&a, 4501), expected_tables(&[], &local));
    let first = &namespaces[&live[0].0];
    let last_ip = live.last().unwrap().1.ip;
    assert_eq!(ping(first, last_ip, 56, 1, Duration::ZERO), 1, "two live tasks on one node talk over the bridge");

    for (task, _) in &live {
        oa.detach_task(task).await.unwrap();
    }
    assert!(oa.attached_tasks().await.unwrap().is_empty());
    assert!(link_indexes(&a, &["sht", "shu", "shg", "shq"]).is_empty());
    // With no task left and no network wanted, the network goes too.
    oa.sync(&WantedOverlay::default()).await.unwrap();
    assert!(link_indexes(&a, &["shbr", "shvx"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_with_a_local_task_survives_a_map_without_it() {
    let mut lab = Lab::new();
    let (a, _b) = lab.two_nodes(1500);
    let oa = lab.overlay(&a, 1);
    let net = network("keep", 4601, 7);
    let ns = lab.task_ns("keeper");
    oa.attach_task("keeper", &ns, &[(net.clone(), iface(&net, 2))], false).await.unwrap();
    oa.sync(&WantedOverlay::default()).await.unwrap();
    assert_eq!(link_indexes(&a, &["shbr", "shvx", "sht"]).len(), 3, "still wired");
    oa.detach_task("keeper").await.unwrap();
    oa.sync(&WantedOverlay::default()).await.unwrap();
    assert!(link_indexes(&a, &["shbr", "shvx", "sht"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_leaves_through_the_gateway_with_the_nodes_address() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1500);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    let mut net = network("web", 4701, 8);
    net.internal = false;
    let p = pair(&mut lab, &oa, &ob, net.clone()).await;
    oa.attach_task("task-a", &p.ta, &[(p.net.clone(), p.ia.clone())], true).await.unwrap();

    // The outside: a namespace on a second link of node a.
    let outside = format!("{}-x", lab.id);
    run(&["ip", "netns", "add", &outside]);
    lab.nodes.push(outside.clone());
    let byte = lab.subnet_byte().to_string();
    run(&["ip", "-n", &a, "link", "add", "x0", "type", "veth", "peer", "name", "x0", "netns", &outside]);
    run(&["ip", "-n", &a, "addr", "add", &format!("198.19.{byte}.1/24"), "dev", "x0"]);
    run(&["ip", "-n", &outside, "addr", "add", &format!("198.19.{byte}.2/24"), "dev", "x0"]);
    run(&["ip", "-n", &a, "link", "set", "x0", "up"]);
    run(&["ip", "-n", &outside, "link", "set", "x0", "up"]);
    let server: Ipv4Addr = format!("198.19.{byte}.2").parse().unwrap();
    let node_side: Ipv4Addr = format!("198.19.{byte}.1").parse().unwrap();

    assert_eq!(run(&["ip", "netns", "exec", &a, "cat", "/proc/sys/net/ipv4/ip_forward"]).trim(), "1");
    let outside_path = lab.node_path(&outside);
    assert_eq!(tcp_echo(&outside_path, server, &p.ta).ip(), node_side, "masqueraded to the node's address");
    // The overlay still works next to egress, and attaching again changes nothing.
    let before = link_indexes(&a, &["sht", "shg", "shoal_gw"]);
    oa.attach_task("task-a", &p.ta, &[(p.net.clone(), p.ia.clone())], true).await.unwrap();
    assert_eq!(link_indexes(&a, &["sht", "shg", "shoal_gw"]), before);
    assert_eq!(ping(&p.ta, p.ib.ip, 56, 2, Duration::from_millis(10)), 2);
    // Dropping egress removes the gateway port and the default route with it.
    oa.attach_task("task-a", &p.ta, &[(p.net.clone(), p.ia.clone())], false).await.unwrap();
    assert!(link_indexes(&a, &["shg"]).is_empty());
    assert_eq!(ping(&p.ta, server, 56, 1, Duration::ZERO), 0);
}

/// Runs `ip …` inside the namespace at `ns` (a task's, which is not a named one).
fn ip_in(ns: &Path, args: &[&str]) -> String {
    let out = Command::new("nsenter").arg(format!("--net={}", ns.display())).arg("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv4 addresses (`a.b.c.d/len`) of `dev` in the named namespace `node`.
fn ipv4_addrs(node: &str, dev: &str) -> Vec<String> {
    run(&["ip", "-n", node, "-o", "-4", "addr", "show", "dev", dev])
        .lines()
        .filter_map(|line| line.split(" inet ").nth(1)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn link_mac(node: &str, dev: &str) -> String {
    let link = run(&["ip", "-n", node, "-o", "link", "show", dev]);
    link.split("link/ether ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// The ingress-like network of the bridge-address tests and each node's address on it.
fn ingress_net(vni: u32, third: u8) -> OverlayNetwork {
    OverlayNetwork { id: format!("ingress-{vni}"), ..network("", vni, third) }
}

fn bridge_addr(net: &OverlayNetwork, node_id: &str, host: u8) -> BridgeAddress {
    let third = net.subnet.octets()[1];
    BridgeAddress {
        network_id: net.id.clone(),
        ip: Ipv4Addr::new(10, third, 0, host),
        prefix_len: net.prefix_len,
        mac: node_bridge_mac(node_id, &net.id),
    }
}

/// A peer's bridge address as the map hands it over: an ordinary remote endpoint.
fn bridge_endpoint(address: &BridgeAddress, vtep: Ipv4Addr) -> RemoteEndpoint {
    RemoteEndpoint { network_id: address.network_id.clone(), ip: address.ip, mac: address.mac, vtep }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_addresses_reach_remote_tasks_and_peer_bridges_without_a_local_task() {
    let mut lab = Lab::new();
    let (a, b) = lab.two_nodes(1500);
    let (oa, ob) = (lab.overlay(&a, 1), lab.overlay(&b, 2));
    let (va, vb) = (lab.underlay_addr(1), lab.underlay_addr(2));
    let net = ingress_net(4801, 9);
    let (bra, brb) = (bridge_addr(&net, "node-a", 101), bridge_addr(&net, "node-b", 102));
    let ib = iface(&net, 3);
    let tb = lab.task_ns("tb");
    // Node a runs no task on the network: its devices exist for its bridge address alone.
    let wanted_a = WantedOverlay {
        networks: vec![net.clone()],
        remote: vec![endpoint(&ib, vb), bridge_endpoint(&brb, vb)],
        bridge_addrs: vec![bra.clone()],
        ..WantedOverlay::default()
    };
    let wanted_b = WantedOverlay {
        networks: vec![net.clone()],
        remote: vec![bridge_endpoint(&bra, va)],
        local: vec![endpoint(&ib, vb)],
        bridge_addrs: vec![brb.clone()],
        ..WantedOverlay::default()
    };
    oa.sync(&wanted_a).await.unwrap();
    ob.sync(&wanted_b).await.unwrap();
    ob.attach_task("task-b", &tb, &[(net.clone(), ib.clone())], false).await.unwrap();

    let bridge = names::network_bridge(4801);
    assert_eq!(ipv4_addrs(&a, &bridge), vec!["10.9.0.101/24".to_owned()]);
    assert_eq!(link_mac(&a, &bridge), tables::fmt_mac(&bra.mac));
    assert_eq!(link_mac(&b, &bridge), tables::fmt_mac(&brb.mac));
    let index = link_indexes(&a, &[&bridge]).into_iter().next().unwrap().0;
    assert_eq!(oa.bridge_ifindex(&net.id).await.unwrap(), Some(index));
    assert_eq!(oa.bridge_ifindex("no-such-network").await.unwrap(), None);

    let node_a = lab.node_path(&a);
    assert_eq!(ping(&node_a, ib.ip, 56, 3, Duration::from_millis(10)), 3, "node a → task on b");
    assert_eq!(ping(&node_a, brb.ip, 56, 3, Duration::from_millis(10)), 3, "node a → node b's bridge");
    assert_eq!(ping(&tb, bra.ip, 56, 3, Duration::from_millis(10)), 3, "task on b → node a's bridge");
    // The peer's bridge is programmed like any remote endpoint.
    assert_eq!(tables(&a, 4801), expected_tables(&wanted_a.remote, &[]));

    // Syncing again (and with a flood entry someone else added) changes nothing.
    let flood = format!("dst {vb}");
    let vxlan = names::network_vxlan(4801);
    run(&["bridge", "-n", &a, "fdb", "append", "00:00:00:00:00:00", "dev", &vxlan, "dst", &vb.to_string()]);
    let state = |node: &str| {
        let fdb = run(&["bridge", "-n", node, "fdb", "show", "dev", &vxlan]);
        (link_indexes(node, &["shbr", "shvx"]), ipv4_addrs(node, &bridge), link_mac(node, &bridge), fdb)
    };
    let before = state(&a);
    assert!(before.3.lines().any(|line| line.starts_with("00:00:00:00:00:00") && line.contains(&flood)));
    oa.sync(&wanted_a).await.unwrap();
    assert_eq!(state(&a), before);

    // A bridge address for a network the node does not want is refused before anything changes.
    let mut wrong = wanted_a.clone();
    wrong.bridge_addrs[0].network_id = "elsewhere".into();
    assert!(matches!(oa.sync(&wrong).await, Err(OverlayError::BridgeWithoutNetwork { .. })));
    assert_eq!(state(&a), before);

    // A moved address is replaced; an address no longer wanted goes, the network stays.
    let mut moved = wanted_a.clone();
    moved.bridge_addrs[0].ip = Ipv4Addr::new(10, 9, 0, 111);
    oa.sync(&moved).await.unwrap();
    assert_eq!(ipv4_addrs(&a, &bridge), vec!["10.9.0.111/24".to_owned()]);
    oa.sync(&WantedOverlay { bridge_addrs: vec![], ..wanted_a.clone() }).await.unwrap();
    assert!(ipv4_addrs(&a, &bridge).is_empty());
    assert_eq!(link_indexes(&a, &["shbr", "shvx"]), before.0, "the devices stay");
    assert_eq!(ping(&node_a, ib.ip, 56, 1, Duration::ZERO), 0, "no address, no path");
}

/// Opens a packet socket on `ifindex` in the namespace at `ns` that sees every frame crossing
/// it. `ETH_P_ALL`, not `ETH_P_IP`: on a bridge port the bridge takes frames before per-protocol
/// sockets would see them; only taps for all protocols run first.
fn capture(ns: &Path, ifindex: u32) -> std::os::fd::OwnedFd {
    in_ns(ns, move || {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol)) };
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is owned from here on.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: bind and setsockopt read the given values, which outlive the calls.
        unsafe {
            let size = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(libc::bind(raw, (&addr as *const libc::sockaddr_ll).cast(), size), 0, "bind");
            libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&timeout as *const libc::timeval).cast(), 16);
        }
        sock
    })
}

/// Sends UDP datagrams from `from` (inside `task`) to `to` until `sock` sees one leave, and
/// returns that frame's destination MAC.
fn frame_dst_mac(sock: &std::os::fd::OwnedFd, task: &Path, from: Ipv4Addr, to: Ipv4Addr) -> [u8; 6] {
    let sender = in_ns(task, move || UdpSocket::bind((from, 0)).unwrap());
    let raw = std::os::fd::AsRawFd::as_raw_fd(sock);
    let mut found = None;
    wait_until("a datagram from the task on its ingress interface", || {
        sender.send_to(b"reply", (to, 9)).unwrap();
        let mut frame = [0u8; 2048];
        // SAFETY: frame is valid for its length for the call.
        while unsafe { libc::recv(raw, frame.as_mut_ptr().cast(), frame.len(), 0) } >= 34 {
            if frame[12..14] == [0x08, 0x00] && frame[26..30] == from.octets() && frame[30..34] == to.octets() {
                found = Some(frame[..6].try_into().unwrap());
                return true;
            }
        }
        false
    });
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_gateway_routes_replies_from_the_interface_through_the_bridge() {
    let mut lab = Lab::new();
    let (a, _b) = lab.two_nodes(1500);
    let oa = lab.overlay(&a, 1);
    let mut net = ingress_net(4901, 11);
    net.internal = false;
    let bra = bridge_addr(&net, "node-a", 101);
    oa.sync(&WantedOverlay {
        networks: vec![net.clone()],
        bridge_addrs: vec![bra.clone()],
        isolated_pools: vec![(net.subnet, net.prefix_len)],
        ..WantedOverlay::default()
    })
    .await
    .unwrap();
    let ns = lab.task_ns("replier");
    let interface = TaskInterface { reply_gateway: Some(bra.ip), ..iface(&net, 2) };
    // With egress, the task's default route is the gateway bridge's (eth1): the rule must win.
    oa.attach_task("replier", &ns, &[(net.clone(), interface.clone())], true).await.unwrap();

    let rules = ip_in(&ns, &["-4", "rule", "show"]);
    assert!(rules.lines().any(|line| line == "1000:\tfrom 10.11.0.2 lookup 1000"), "{rules}");
    let table = ip_in(&ns, &["-4", "route", "show", "table", "1000"]);
    assert!(table.contains("default via 10.11.0.101 dev eth0"), "{table}");
    assert!(table.contains("10.11.0.0/24 dev eth0 proto static scope link src 10.11.0.2"), "{table}");
    assert_eq!(table.lines().count(), 2, "{table}");
    let client = "203.0.113.7";
    let via_rule = ip_in(&ns, &["-4", "route", "get", client, "from", "10.11.0.2"]);
    assert!(via_rule.contains("via 10.11.0.101 dev eth0"), "{via_rule}");
    let default = ip_in(&ns, &["-4", "route", "get", client]);
    assert!(default.contains("via 172.18.0.1 dev eth1"), "other sources keep the default route: {default}");

    // On the wire: a datagram from the interface's address leaves on its veth towards the
    // bridge's MAC.
    let veths = oa.task_veths("replier").await.unwrap();
    let host_side = link_indexes(&a, &["sht"]).into_iter().next().unwrap().0;
    assert_eq!(veths, vec![(net.id.clone(), host_side)]);
    let node_a = lab.node_path(&a);
    let sock = capture(&node_a, host_side);
    assert_eq!(frame_dst_mac(&sock, &ns, interface.ip, client.parse().unwrap()), bra.mac);

    // Attaching again changes nothing.
    let state = || {
        let rules = ip_in(&ns, &["-4", "rule", "show"]);
        let table = ip_in(&ns, &["-4", "route", "show", "table", "1000"]);
        (rules, table, link_indexes(&a, &["sht", "shg"]), ip_in(&ns, &["-o", "link"]))
    };
    let before = state();
    oa.attach_task("replier", &ns, &[(net.clone(), interface.clone())], true).await.unwrap();
    assert_eq!(state(), before);

    // A stale rule in our range goes; without a reply gateway the rule and table go too.
    ip_in(&ns, &["rule", "add", "from", "10.11.0.99", "lookup", "1001", "priority", "1001"]);
    oa.attach_task("replier", &ns, &[(net.clone(), interface.clone())], true).await.unwrap();
    assert_eq!(state(), before);
    oa.attach_task("replier", &ns, &[(net.clone(), iface(&net, 2))], true).await.unwrap();
    let rules = ip_in(&ns, &["-4", "rule", "show"]);
    assert!(!rules.contains("lookup 1000"), "{rules}");
    assert_eq!(ip_in(&ns, &["-4", "route", "show", "table", "1000"]), "");
}
