//! Band 90 (overlay networks, tests 1–3): the data path between tasks. Tasks on one overlay
//! network talk across nodes by IP (ICMP, TCP, UDP), and the underlay carries that traffic only
//! as VXLAN (UDP 4789) with the network's VNI; tasks on two different networks cannot reach each
//! other at all, whichever node they are on; a task on an `--internal` network sends nothing to
//! the underlay, while one on a normal network reaches a server there through its node's
//! gateway NAT, seen with the node's underlay address.
//!
//! The three tests share one 3-node lab (node1 manager, node2 and node3 workers) when they run
//! at the same time; each uses its own networks, subnets and services.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use netns_tests::overlay::{in_subnet, subnet, vni, Capture, LabRef, Netns, SharedLab, UNDERLAY_SERVER};
use netns_tests::{Lab, TaskView};

static LAB: SharedLab = SharedLab::new();

fn lab() -> LabRef {
    LAB.get(|| {
        let lab = Lab::with_daemons(3);
        lab.form_swarm(1, &[]);
        lab
    })
}

/// How long a capture may run at most (it is stopped as soon as the probes are done).
const CAPTURE_MAX: Duration = Duration::from_secs(120);

#[test]
fn tasks_on_one_network_talk_across_nodes_over_vxlan_with_its_vni() {
    let lab = lab();
    let net = lab.create_overlay(1, "dp-a", &["--subnet", "10.90.1.0/24"]);
    let vni = vni(&net);
    assert!(vni >= 4096, "VNI {vni} below Docker's first, 4096");
    let a1 = lab.pinned_echo(1, "dp-a1", "dp-a", 1);
    let a3 = lab.pinned_echo(1, "dp-a3", "dp-a", 3);
    let (ip1, ip3) = (a1.overlay_ip("dp-a"), a3.overlay_ip("dp-a"));
    for (t, ip) in [(&a1, ip1), (&a3, ip3)] {
        assert!(in_subnet(ip, subnet(&net)), "{} got {ip}, outside {:?}", t.brief(), subnet(&net));
        let (ifname, _, _) = t.netns().iface_with_addr(ip).unwrap_or_else(|| panic!("{ip} is not in {}", t.brief()));
        assert_eq!(ifname, "eth0", "{}: the first network's interface", t.brief());
    }

    let vxlan = Capture::underlay(lab.node(1), "udp port 4789", CAPTURE_MAX);
    // Overlay addresses never appear unencapsulated on the underlay.
    let bare = Capture::underlay(lab.node(1), &format!("ip host {ip1} or ip host {ip3}"), CAPTURE_MAX);

    let ping = a1.netns().ping(ip3, 3, 56);
    assert_eq!(ping.replies, 3, "ICMP {ip1} -> {ip3}: {ping:?}");
    let ping = a3.netns().ping(ip1, 3, 56);
    assert_eq!(ping.replies, 3, "ICMP {ip3} -> {ip1}: {ping:?}");
    // The echo server answers with its task name and the source it saw: no NAT inside a network.
    for (from, to, to_ip, from_ip, node) in
        [(&a1, ("dp-a3", &a3), ip3, ip1, "node3"), (&a3, ("dp-a1", &a1), ip1, ip3, "node1")]
    {
        let want = format!("{} on {node} from {from_ip}:", task_name(to.0, to.1));
        let line = from.netns().tcp_line(SocketAddrV4::new(to_ip, 80)).expect("TCP to the echo server");
        assert!(line.starts_with(&want), "TCP {from_ip} -> {to_ip}:80 answered {line:?}, want {want:?}…");
        let line = from.netns().udp_line(SocketAddrV4::new(to_ip, 80)).expect("UDP to the echo server");
        assert!(line.starts_with(&want), "UDP {from_ip} -> {to_ip}:80 answered {line:?}, want {want:?}…");
    }

    let bare = bare.stop();
    let vxlan = vxlan.stop();
    assert_eq!(bare.packets, 0, "overlay addresses seen bare on node1's underlay:\n{}", bare.text());
    assert_eq!(vxlan.dropped, 0, "the capture lost packets; its counts mean nothing");
    let ours: Vec<(String, u32, String)> =
        vxlan.vxlan().into_iter().filter(|(_, _, inner)| inner.contains(&format!("{ip1}"))).collect();
    let (n1, n3) = (lab.node(1).addr(), lab.node(3).addr());
    for (outer, v, inner) in &ours {
        assert_eq!(*v, vni, "{outer} / {inner}: wrong VNI");
        let between = (outer.contains(&format!("IP {n1}.")) && outer.contains(&format!("> {n3}.4789:")))
            || (outer.contains(&format!("IP {n3}.")) && outer.contains(&format!("> {n1}.4789:")));
        assert!(between, "{outer}: not between the two nodes' VTEPs");
    }
    let has = |needle: &str| ours.iter().any(|(_, _, inner)| inner.contains(needle));
    for needle in [
        format!("IP {ip1} > {ip3}: ICMP echo request"),
        format!("IP {ip3} > {ip1}: ICMP echo reply"),
        format!("IP {ip3} > {ip1}: ICMP echo request"),
        format!("> {ip3}.80: Flags [S]"),
        format!("IP {ip3}.80 > {ip1}."),
        format!("> {ip3}.80: UDP"),
        format!("> {ip1}.80: UDP"),
    ] {
        assert!(has(&needle), "no VXLAN packet (vni {vni}) carrying {needle:?}:\n{}", vxlan.text());
    }
}

#[test]
fn tasks_on_different_networks_cannot_reach_each_other() {
    let lab = lab();
    lab.create_overlay(1, "iso-a", &["--subnet", "10.90.2.0/24"]);
    lab.create_overlay(1, "iso-b", &["--subnet", "10.90.3.0/24"]);
    let a1 = lab.pinned_echo(1, "iso-a1", "iso-a", 1);
    let a3 = lab.pinned_echo(1, "iso-a3", "iso-a", 3);
    let b1 = lab.pinned_echo(1, "iso-b1", "iso-b", 1);
    let b3 = lab.pinned_echo(1, "iso-b3", "iso-b", 3);
    let ip = |t: &TaskView, n: &str| t.overlay_ip(n);
    let (a1_ip, a3_ip, b1_ip, b3_ip) = (ip(&a1, "iso-a"), ip(&a3, "iso-a"), ip(&b1, "iso-b"), ip(&b3, "iso-b"));

    // Everything unicast arriving at the b tasks, and at a3 (which does get a1's probes: the
    // control). Multicast is left out: a bridge coming up on the same node reports its IGMP
    // membership to its own network's ports, which is not a path between networks.
    let inbound =
        |t: &TaskView| Capture::start(&t.netns(), "any", &["-Q", "in"], "ip and not ip multicast", CAPTURE_MAX);
    let (cap_b1, cap_b3, cap_a3) = (inbound(&b1), inbound(&b3), inbound(&a3));

    let from = a1.netns();
    for target in [b3_ip, b1_ip] {
        let ping = from.ping(target, 3, 56);
        assert_eq!(ping.replies, 0, "ICMP {a1_ip} (iso-a) -> {target} (iso-b) got replies: {ping:?}");
        let tcp = from.tcp_connect(SocketAddrV4::new(target, 80), Duration::from_secs(2));
        assert!(tcp.is_err(), "TCP {a1_ip} (iso-a) -> {target}:80 (iso-b) connected");
        let udp = from.udp_line(SocketAddrV4::new(target, 80));
        assert!(udp.is_err(), "UDP {a1_ip} (iso-a) -> {target}:80 (iso-b) answered {udp:?}");
    }
    let ping = from.ping(a3_ip, 3, 56);
    assert_eq!(ping.replies, 3, "control: ICMP {a1_ip} -> {a3_ip} on iso-a: {ping:?}");

    let (got_b1, got_b3, got_a3) = (cap_b1.stop(), cap_b3.stop(), cap_a3.stop());
    assert_eq!(got_b1.packets, 0, "packets reached iso-b1 ({b1_ip}, same node as the sender):\n{}", got_b1.text());
    assert_eq!(got_b3.packets, 0, "packets reached iso-b3 ({b3_ip}, another node):\n{}", got_b3.text());
    assert!(got_a3.packets >= 3, "control: a3 saw {} packets:\n{}", got_a3.packets, got_a3.text());

    // And the other way round: b reaches neither a task.
    for target in [a1_ip, a3_ip] {
        let ping = b1.netns().ping(target, 2, 56);
        assert_eq!(ping.replies, 0, "ICMP {b1_ip} (iso-b) -> {target} (iso-a) got replies: {ping:?}");
        let tcp = b3.netns().tcp_connect(SocketAddrV4::new(target, 80), Duration::from_secs(2));
        assert!(tcp.is_err(), "TCP {b3_ip} (iso-b) -> {target}:80 (iso-a) connected");
    }
}

#[test]
fn internal_networks_send_nothing_out_and_others_reach_the_underlay_through_nat() {
    let lab = lab();
    let server = lab.underlay_server(8090);
    let target = SocketAddrV4::new(UNDERLAY_SERVER, 8090);
    let internal = lab.create_overlay(1, "nat-int", &["--internal", "--subnet", "10.90.4.0/24"]);
    assert_eq!(internal["Internal"], true, "{internal}");
    lab.create_overlay(1, "nat-ext", &["--subnet", "10.90.5.0/24"]);
    let int1 = lab.pinned_echo(1, "nat-int1", "nat-int", 1);
    let ext1 = lab.pinned_echo(1, "nat-ext1", "nat-ext", 1);
    let gateway_net = (Ipv4Addr::new(172, 18, 0, 0), 16);

    // The internal task has no way out: no default route, no gateway-bridge address.
    let int_ns = int1.netns();
    assert_eq!(int_ns.default_routes(), [], "{}: an internal task has a default route", int1.brief());
    let addrs = int_ns.addrs();
    assert!(!addrs.iter().any(|(_, ip, _)| in_subnet(*ip, gateway_net)), "internal task on the gateway: {addrs:?}");

    let cap = Capture::underlay(lab.node(1), &format!("ip host {UNDERLAY_SERVER}"), CAPTURE_MAX);
    let ping = int_ns.ping(UNDERLAY_SERVER, 3, 56);
    assert_eq!(ping.replies, 0, "an internal task pinged the underlay: {ping:?}");
    assert!(int_ns.tcp_connect(target, Duration::from_secs(2)).is_err(), "an internal task reached {target} over TCP");
    assert!(int_ns.udp_line(target).is_err(), "an internal task got a UDP answer from {target}");
    let got = cap.stop();
    assert_eq!(got.packets, 0, "the internal task's probes left node1:\n{}", got.text());
    assert!(server.seen().is_empty(), "the lab server heard from an internal task: {:?}", server.seen());

    // The other task goes out through shoal_gwbridge and leaves node1 as node1.
    let ext_ns = ext1.netns();
    let routes = ext_ns.default_routes();
    assert!(
        matches!(routes.as_slice(), [(Some(gw), _)] if in_subnet(*gw, gateway_net)),
        "{}: default route {routes:?}, want one via the gateway bridge (172.18.0.0/16)",
        ext1.brief()
    );
    let node_ns = Netns::node(lab.node(1));
    let gw_addrs: Vec<_> = node_ns.addrs().into_iter().filter(|(dev, _, _)| dev == "shoal_gwbridge").collect();
    assert!(
        gw_addrs.iter().any(|(_, ip, len)| in_subnet(*ip, gateway_net) && *len == 16),
        "node1 has no shoal_gwbridge in 172.18.0.0/16: {:?}",
        node_ns.addrs()
    );

    let node1 = lab.node(1).addr();
    let cap = Capture::underlay(lab.node(1), &format!("ip host {UNDERLAY_SERVER}"), CAPTURE_MAX);
    let ping = ext_ns.ping(UNDERLAY_SERVER, 3, 56);
    assert_eq!(ping.replies, 3, "ICMP to the lab server through NAT: {ping:?}");
    let line = ext_ns.tcp_line(target).expect("TCP to the lab server through NAT");
    assert!(line.starts_with(&format!("from {node1}:")), "the server saw TCP {line:?}, want node1's {node1}");
    let line = ext_ns.udp_line(target).expect("UDP to the lab server through NAT");
    assert!(line.starts_with(&format!("from {node1}:")), "the server saw UDP {line:?}, want node1's {node1}");
    let got = cap.stop();
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, peer)| peer.ip() == node1), "sources {seen:?}, want {node1}");
    let out: Vec<&String> = got.lines.iter().filter(|l| l.contains(&format!("> {UNDERLAY_SERVER}"))).collect();
    assert!(out.len() >= 5, "expected the probes on node1's underlay:\n{}", got.text());
    assert!(out.iter().all(|l| l.starts_with(&format!("IP {node1}"))), "unmasqueraded packets:\n{}", got.text());
}

/// The name the echo server answers with: `<service>.<slot>.<task id>`.
fn task_name(service: &str, t: &TaskView) -> String {
    format!("{service}.{}.{}", t.slot, t.id)
}
