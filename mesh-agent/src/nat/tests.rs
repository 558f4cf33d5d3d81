//! Privileged tests: each builds its own network namespaces (removed on drop, even on panic),
//! programs them from a thread that entered them, and inspects the result with `nft -j` and real
//! traffic. Nothing here touches the root namespace.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

use super::*;

const GATEWAY: &str = "shoal_gwbridge";

fn rules(pools: &[(Ipv4Addr, u8)]) -> EgressRules {
    EgressRules {
        gateway_ifname: GATEWAY.to_string(),
        gateway_subnet: (Ipv4Addr::new(172, 18, 0, 0), 16),
        isolated_pools: pools.to_vec(),
    }
}

/// A named network namespace of this test process, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str) -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("shoalnat-{}-{}-{role}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args…`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
                    f()
                })
                .join()
                .expect("thread in namespace panicked")
        })
    }

    /// `nft -j list ruleset` in this namespace, without handles (they change on every replace).
    fn ruleset(&self) -> Value {
        let out = run("ip", &["netns", "exec", &self.name, "nft", "-j", "list", "ruleset"]);
        let mut value: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j: {e}: {out}"));
        strip_handles(&mut value);
        value
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn strip_handles(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("handle");
            map.values_mut().for_each(strip_handles);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_handles),
        _ => {}
    }
}

/// The ruleset's objects of one kind (`table`, `chain`, `rule`), in order.
fn objects<'a>(ruleset: &'a Value, kind: &str) -> Vec<&'a Value> {
    ruleset["nftables"].as_array().expect("nftables array").iter().filter_map(|o| o.get(kind)).collect()
}

/// A rule or chain as one line, close to `nft list` (the JSON's shape is checked by rendering it).
fn render(object: &Value, kind: &str) -> String {
    if kind == "chain" {
        let c = |k: &str| object[k].to_string().trim_matches('"').to_string();
        return format!(
            "{}: type {} hook {} prio {} policy {}",
            c("name"),
            c("type"),
            c("hook"),
            c("prio"),
            c("policy")
        );
    }
    let exprs = object["expr"].as_array().expect("rule expr array");
    let parts = exprs.iter().map(|e| match e.as_object().and_then(|o| o.iter().next()) {
        Some((k, v)) if k == "match" => {
            format!("{} {} {}", operand(&v["left"]), v["op"].as_str().unwrap_or("?"), operand(&v["right"]))
        }
        Some((k, _)) if ["counter", "drop", "masquerade"].contains(&k.as_str()) => k.clone(),
        _ => e.to_string(),
    });
    format!("{}: {}", object["chain"].as_str().unwrap_or("?"), parts.collect::<Vec<_>>().join(" "))
}

fn operand(v: &Value) -> String {
    if let Some(s) = v.as_str() {
        return s.to_string();
    }
    if let Some(key) = v["meta"]["key"].as_str() {
        return key.to_string();
    }
    if let (Some(p), Some(f)) = (v["payload"]["protocol"].as_str(), v["payload"]["field"].as_str()) {
        return format!("{p} {f}");
    }
    if let (Some(a), Some(l)) = (v["prefix"]["addr"].as_str(), v["prefix"]["len"].as_u64()) {
        return format!("{a}/{l}");
    }
    v.to_string()
}

fn rendered(ruleset: &Value, kind: &str) -> Vec<String> {
    objects(ruleset, kind).into_iter().map(|o| render(o, kind)).collect()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn invalid_rules_are_refused_before_reaching_the_kernel() {
    let base = rules(&[]);
    let cases = [
        (EgressRules { gateway_ifname: String::new(), ..base.clone() }, "invalid gateway interface name \"\": empty"),
        (
            EgressRules { gateway_ifname: "a_very_long_name".into(), ..base.clone() },
            "invalid gateway interface name \"a_very_long_name\": longer than 15 bytes",
        ),
        (
            EgressRules { gateway_ifname: "br/0".into(), ..base.clone() },
            "invalid gateway interface name \"br/0\": contains NUL, '/' or a space",
        ),
        (
            EgressRules { gateway_subnet: (Ipv4Addr::new(172, 18, 0, 0), 33), ..base.clone() },
            "invalid egress rules: 172.18.0.0/33 is not an IPv4 prefix",
        ),
        (
            EgressRules { isolated_pools: vec![(Ipv4Addr::new(10, 0, 0, 0), 40)], ..base.clone() },
            "invalid egress rules: 10.0.0.0/40 is not an IPv4 prefix",
        ),
    ];
    for (rules, expected) in cases {
        let err = apply_egress(&rules).expect_err(expected);
        assert!(matches!(err, NatError::InvalidRules(_)), "{err:?}");
        assert!(err.to_string().ends_with(expected), "{err} does not end with {expected}");
    }
}

#[test]
fn prefixes_lose_their_host_bits() {
    let cases = [
        ((Ipv4Addr::new(10, 0, 9, 9), 24), (Ipv4Addr::new(10, 0, 9, 0), 24)),
        ((Ipv4Addr::new(10, 0, 9, 9), 32), (Ipv4Addr::new(10, 0, 9, 9), 32)),
        ((Ipv4Addr::new(10, 255, 9, 9), 9), (Ipv4Addr::new(10, 128, 0, 0), 9)),
        ((Ipv4Addr::new(10, 0, 9, 9), 0), (Ipv4Addr::UNSPECIFIED, 0)),
    ];
    for (input, expected) in cases {
        assert_eq!(network(input).unwrap(), expected, "{input:?}");
    }
}

#[test]
fn apply_installs_one_table_idempotently_and_remove_takes_it_away() {
    let ns = Netns::new("rules");
    assert_eq!(objects(&ns.ruleset(), "table").len(), 0, "a new namespace has no tables");

    // Host bits are cleared and a /32 is an exact match.
    let first = rules(&[(Ipv4Addr::new(10, 0, 1, 7), 24), (Ipv4Addr::new(10, 0, 9, 9), 32)]);
    ns.run(|| apply_egress(&first)).expect("apply");
    let ruleset = ns.ruleset();
    assert_eq!(objects(&ruleset, "table"), [&json!({"family": "ip", "name": "shoal"})]);
    assert_eq!(
        rendered(&ruleset, "chain"),
        [
            "postrouting: type nat hook postrouting prio 100 policy accept",
            "forward: type filter hook forward prio 0 policy accept",
        ]
    );
    assert_eq!(
        rendered(&ruleset, "rule"),
        [
            "postrouting: ip saddr == 172.18.0.0/16 oifname != shoal_gwbridge masquerade",
            "forward: iifname == shoal_gwbridge ip daddr == 10.0.1.0/24 counter drop",
            "forward: iifname == shoal_gwbridge ip daddr == 10.0.9.9 counter drop",
            "forward: iifname == shoal_gwbridge ip daddr == 172.18.0.0/16 counter drop",
        ]
    );
    assert_eq!(ns.run(egress_counters).expect("counters"), EgressCounters::default());

    // Again: the very same ruleset, still one table.
    ns.run(|| apply_egress(&first)).expect("apply again");
    assert_eq!(ns.ruleset(), ruleset);

    // Other pools replace the old ones, nothing is left behind.
    ns.run(|| apply_egress(&rules(&[(Ipv4Addr::new(10, 0, 2, 0), 24)]))).expect("apply other pools");
    let replaced = ns.ruleset();
    assert_eq!(objects(&replaced, "table").len(), 1);
    assert_eq!(
        rendered(&replaced, "rule")[1..],
        [
            "forward: iifname == shoal_gwbridge ip daddr == 10.0.2.0/24 counter drop",
            "forward: iifname == shoal_gwbridge ip daddr == 172.18.0.0/16 counter drop",
        ]
    );

    ns.run(remove_egress).expect("remove");
    assert_eq!(objects(&ns.ruleset(), "table").len(), 0, "{}", ns.ruleset());
    ns.run(remove_egress).expect("removing twice is fine");
    let err = ns.run(egress_counters).expect_err("no counters without the table");
    assert!(matches!(err, NatError::NotApplied), "{err:?}");
}

/// task —veth— node (gateway bridge, NAT, forwarding) —veth— server.
struct Lab {
    task: Netns,
    node: Netns,
    server: Netns,
}

const NODE_UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// An address in an overlay pool, reachable from the node through the server side.
const ISOLATED: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 9);

impl Lab {
    fn new() -> Lab {
        let lab = Lab { task: Netns::new("task"), node: Netns::new("node"), server: Netns::new("server") };
        let (task, node, server) = (&lab.task, &lab.node, &lab.server);
        node.ip(&["link", "add", GATEWAY, "type", "bridge"]);
        node.ip(&["addr", "add", "172.18.0.1/16", "dev", GATEWAY]);
        node.ip(&["link", "set", GATEWAY, "up"]);
        node.ip(&["link", "add", "veth-task", "type", "veth", "peer", "name", "eth0", "netns", &task.name]);
        node.ip(&["link", "set", "veth-task", "master", GATEWAY, "up"]);
        task.ip(&["addr", "add", "172.18.0.2/16", "dev", "eth0"]);
        task.ip(&["link", "set", "eth0", "up"]);
        task.ip(&["route", "add", "default", "via", "172.18.0.1"]);
        node.ip(&["link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", &server.name]);
        node.ip(&["addr", "add", "198.18.0.1/24", "dev", "eth1"]);
        node.ip(&["link", "set", "eth1", "up"]);
        node.ip(&["route", "add", "10.0.9.0/24", "via", "198.18.0.2"]);
        server.ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"]);
        server.ip(&["link", "set", "eth0", "up"]);
        server.ip(&["addr", "add", "10.0.9.9/32", "dev", "lo"]);
        // Forwarding inside the node's namespace only.
        run("ip", &["netns", "exec", &node.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab
    }

    /// Sends datagrams from the task to `to` until `receiver` (in the server) gets one; returns the
    /// source it saw.
    fn udp_arrives(&self, receiver: &UdpSocket, to: SocketAddr) -> SocketAddr {
        let sender = self.task.run(|| UdpSocket::bind("0.0.0.0:0")).expect("task udp socket");
        receiver.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 64];
        poll("a datagram to reach the server", Duration::from_secs(10), || {
            sender.send_to(b"hello", to).expect("send");
            match receiver.recv_from(&mut buf) {
                Ok((n, from)) if &buf[..n] == b"hello" => Some(from),
                Ok(_) => None,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
                Err(e) => panic!("recv: {e}"),
            }
        })
    }
}

#[test]
fn tasks_egress_masqueraded_and_cannot_reach_isolated_pools() {
    let lab = Lab::new();
    let receiver = lab.server.run(|| UdpSocket::bind("0.0.0.0:0")).expect("server udp socket");
    let isolated = SocketAddr::new(ISOLATED.into(), receiver.local_addr().unwrap().port());

    // Control: with 10.0.9.0/24 not isolated, the route through the server works and is
    // masqueraded (the server has no route back to 172.18.0.0/16).
    lab.node.run(|| apply_egress(&rules(&[(Ipv4Addr::new(10, 0, 7, 0), 24)]))).expect("apply");
    let from = lab.udp_arrives(&receiver, isolated);
    assert_eq!(from.ip(), NODE_UNDERLAY, "datagram source seen by the server");

    // TCP from the task reaches the server with the node's underlay address as source.
    let listener = lab.server.run(|| TcpListener::bind((SERVER, 0))).expect("listen");
    listener.set_nonblocking(true).unwrap();
    let server_addr = listener.local_addr().unwrap();
    let mut client = poll("a TCP connection from the task", Duration::from_secs(10), || {
        lab.task.run(|| TcpStream::connect_timeout(&server_addr, Duration::from_secs(1))).ok()
    });
    let (mut accepted, peer) = poll("the server to accept", Duration::from_secs(5), || listener.accept().ok());
    assert_eq!(peer.ip(), NODE_UNDERLAY, "TCP peer seen by the server");
    std::io::Write::write_all(&mut client, b"ping").unwrap();
    accepted.set_nonblocking(false).unwrap();
    accepted.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 4];
    accepted.read_exact(&mut got).expect("server reads");
    assert_eq!(&got, b"ping");

    // Isolate 10.0.9.0/24: the task's datagrams are dropped at the node and counted.
    lab.node
        .run(|| apply_egress(&rules(&[(Ipv4Addr::new(10, 0, 7, 0), 24), (Ipv4Addr::new(10, 0, 9, 0), 24)])))
        .expect("apply with isolation");
    assert_eq!(lab.node.run(egress_counters).unwrap(), EgressCounters::default(), "new rules count from 0");
    // Drain anything the control phase left in flight.
    receiver.set_nonblocking(true).unwrap();
    while receiver.recv_from(&mut [0u8; 64]).is_ok() {}

    let sender = lab.task.run(|| UdpSocket::bind("0.0.0.0:0")).expect("task udp socket");
    sender.send_to(b"isolated", isolated).expect("send");
    let counters = poll("the drop counter", Duration::from_secs(10), || {
        let c = lab.node.run(egress_counters).expect("counters");
        (c.dropped_packets > 0).then_some(c)
    });
    // One datagram: 20 bytes of IP, 8 of UDP, 8 of payload.
    assert_eq!(counters, EgressCounters { dropped_packets: 1, dropped_bytes: 36 });
    // The counter moved when the packet was dropped, so it can no longer arrive.
    let mut buf = [0u8; 64];
    let err = receiver.recv_from(&mut buf).expect_err("nothing may arrive from an isolated task");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);

    // Egress elsewhere still works under the new rules.
    let listener_addr = listener.local_addr().unwrap();
    lab.task
        .run(|| TcpStream::connect_timeout(&listener_addr, Duration::from_secs(5)))
        .expect("egress to the server still works");
}

/// Drops CAP_NET_ADMIN from the calling thread's effective set (capabilities are per thread).
fn drop_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset read and write exactly one header and two data structs (version 3).
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()), 0, "capget");
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()), 0, "capset");
    }
}

#[test]
fn refusals_say_what_was_being_done() {
    let ns = Netns::new("eperm");
    let (apply, counters) = ns.run(|| {
        drop_net_admin();
        (apply_egress(&rules(&[])), egress_counters())
    });
    let apply = apply.expect_err("applying needs CAP_NET_ADMIN");
    assert!(
        matches!(&apply, NatError::Refused { step, source, .. }
            if step == "batch begin" && source.raw_os_error() == Some(libc::EPERM)),
        "{apply:?}"
    );
    assert_eq!(
        apply.to_string(),
        "nf_tables refused to replace the egress rules at step \"batch begin\": Operation not permitted (os error 1)"
    );
    let counters = counters.expect_err("reading needs CAP_NET_ADMIN");
    assert_eq!(
        counters.to_string(),
        "cannot talk to nf_tables to read the egress counters: Operation not permitted (os error 1)"
    );
    assert_eq!(objects(&ns.ruleset(), "table").len(), 0, "nothing was installed");
}
