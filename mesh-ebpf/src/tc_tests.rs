//! Packet tables for the routing-mesh programs, run with BPF_PROG_TEST_RUN (no device attached):
//! each row is a frame, the program, the verdict and the exact frame expected out. Expected
//! frames are built independently with freshly computed checksums, so a byte-exact match also
//! proves the incremental checksum updates. Frames shorter than an IPv4 header go through the XDP
//! probe, because tc test runs refuse them. Needs root: programs are loaded in a sandbox.

use std::net::Ipv4Addr;
use std::time::Duration;

use aya::programs::Xdp;
use aya::{TestRun, TestRunOptions};

use super::*;
use crate::mesh::{Backend, NodeConfig, Proto, ServiceKey};
use crate::testns::{in_sandbox, run};

const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const T1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const T2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);
const T3: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
const UNDERLAY_IFINDEX: u32 = 3;
const BRIDGE_IFINDEX: u32 = 7;
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
const ENTRY_A_MAC: [u8; 6] = [0x02, 0x53, 0, 0, 0, 0x0a];
const ENTRY_B_MAC: [u8; 6] = [0x02, 0x53, 0, 0, 0, 0x0b];
const ENTRY_C_MAC: [u8; 6] = [0x02, 0x53, 0, 0, 0, 0x0c];
const TASK_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0x05];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0x01];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

fn config() -> NodeConfig {
    NodeConfig {
        node_addr: NODE,
        hash_seed: 0x5ee0a11,
        underlay_ifindex: UNDERLAY_IFINDEX,
        ingress_bridge_ifindex: BRIDGE_IFINDEX,
        host_netns_cookie: 0,
        flow_table_entries: 0,
    }
}

fn published_tcp() -> ServiceKey {
    ServiceKey::Published { port: 8080, proto: Proto::Tcp }
}

/// One IPv4 packet in an Ethernet frame; `build` computes every checksum from scratch.
#[derive(Clone)]
struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ip_options: Vec<u8>,
    frag_off: u16,
    /// ICMP: (type, code, quoted bytes) instead of ports.
    icmp: Option<(u8, u8, Vec<u8>)>,
}

impl Frame {
    fn tcp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, flags: u8) -> Frame {
        Frame {
            src_mac: CLIENT_MAC,
            dst_mac: NODE_MAC,
            saddr,
            daddr,
            proto: IPPROTO_TCP,
            sport,
            dport,
            tcp_flags: flags,
            ip_options: Vec::new(),
            frag_off: 0,
            icmp: None,
        }
    }

    fn udp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16) -> Frame {
        Frame { proto: IPPROTO_UDP, ..Frame::tcp(saddr, sport, daddr, dport, 0) }
    }

    fn with_addrs(&self, saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16) -> Frame {
        Frame { saddr, sport, daddr, dport, ..self.clone() }
    }

    fn build(&self) -> Vec<u8> {
        let l4 = match &self.icmp {
            Some((kind, code, quoted)) => {
                let mut icmp = vec![*kind, *code, 0, 0, 0, 0, 0x05, 0x78];
                icmp.extend_from_slice(quoted);
                let sum = checksum(&icmp, 0);
                icmp[2..4].copy_from_slice(&sum.to_be_bytes());
                icmp
            }
            None if self.proto == IPPROTO_TCP => {
                let mut tcp = vec![0u8; 20];
                tcp[0..2].copy_from_slice(&self.sport.to_be_bytes());
                tcp[2..4].copy_from_slice(&self.dport.to_be_bytes());
                tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = self.tcp_flags;
                tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
                tcp.extend_from_slice(b"hello");
                let sum = checksum(&tcp, pseudo_sum(self.saddr, self.daddr, IPPROTO_TCP, tcp.len()));
                tcp[16..18].copy_from_slice(&sum.to_be_bytes());
                tcp
            }
            None => {
                let mut udp = vec![0u8; 8];
                udp[0..2].copy_from_slice(&self.sport.to_be_bytes());
                udp[2..4].copy_from_slice(&self.dport.to_be_bytes());
                udp.extend_from_slice(b"hello");
                let len = udp.len() as u16;
                udp[4..6].copy_from_slice(&len.to_be_bytes());
                let sum = checksum(&udp, pseudo_sum(self.saddr, self.daddr, IPPROTO_UDP, udp.len()));
                udp[6..8].copy_from_slice(&sum.to_be_bytes());
                udp
            }
        };
        let ihl = 5 + self.ip_options.len() / 4;
        let mut ip = vec![0u8; 20];
        ip[0] = 0x40 | ihl as u8;
        ip[2..4].copy_from_slice(&((ihl * 4 + l4.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
        ip[6..8].copy_from_slice(&self.frag_off.to_be_bytes());
        ip[8] = 64;
        ip[9] = if self.icmp.is_some() { IPPROTO_ICMP } else { self.proto };
        ip[12..16].copy_from_slice(&self.saddr.octets());
        ip[16..20].copy_from_slice(&self.daddr.octets());
        ip.extend_from_slice(&self.ip_options);
        let sum = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());

        let mut frame = Vec::new();
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }

    /// The IPv4 header and first 8 L4 bytes of this packet, as an ICMP error quotes them.
    fn quoted(&self) -> Vec<u8> {
        self.build()[14..14 + 28].to_vec()
    }

    fn icmp_error(&self, from: Ipv4Addr, to: Ipv4Addr, quoting: &Frame) -> Frame {
        Frame { saddr: from, daddr: to, icmp: Some((3, 4, quoting.quoted())), ..self.clone() }
    }
}

fn pseudo_sum(saddr: Ipv4Addr, daddr: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&saddr.octets());
    pseudo.extend_from_slice(&daddr.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    sum_words(&pseudo, 0)
}

fn sum_words(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { (chunk[0] as u16) << 8 };
        sum += word as u32;
    }
    sum
}

/// The Internet checksum of `data` (with its checksum field zeroed) plus `initial`.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = sum_words(data, initial);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Verdict {
    code: u32,
    frame: Vec<u8>,
    duration: Duration,
}

fn run_tc(mesh: &mut Mesh, program: &'static str, frame: &[u8], repeat: u32) -> Verdict {
    let ebpf = if program.starts_with("shoal_task") { &mut mesh.task } else { &mut mesh.host };
    let prog = classifier(ebpf, program).unwrap();
    let mut out = vec![0u8; frame.len() + 64];
    let result = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .unwrap_or_else(|e| panic!("test run of {program}: {e}"));
    out.truncate(result.data_size_out as usize);
    Verdict { code: result.return_value, frame: out, duration: result.duration }
}

fn probe(mesh: &mut Mesh, frame: &[u8]) -> u32 {
    let prog: &mut Xdp = mesh.host.program_mut("shoal_parse_probe").unwrap().try_into().unwrap();
    if prog.fd().is_err() {
        prog.load().unwrap();
    }
    match prog.test_run(TestRunOptions { data_in: Some(frame), ..Default::default() }) {
        Ok(result) => result.return_value,
        Err(e) => panic!("XDP test run of a {}-byte frame: {e}", frame.len()),
    }
}

/// The backend address a translated SYN was sent to.
fn chosen(verdict: &Verdict) -> Ipv4Addr {
    assert_eq!(verdict.code, TC_ACT_REDIRECT);
    Ipv4Addr::new(verdict.frame[30], verdict.frame[31], verdict.frame[32], verdict.frame[33])
}

fn with_mesh(f: impl FnOnce(&mut Mesh) + Send + 'static) {
    in_sandbox(move |sandbox| {
        let mut mesh = Mesh::load(&sandbox.pin_dir("n1"), config()).expect("load");
        f(&mut mesh);
    });
}

#[test]
fn a_syn_to_a_published_port_is_sent_to_a_backend_and_its_reply_comes_back_from_the_node() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80)]).unwrap();
        let syn = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN);
        let out = run_tc(mesh, "shoal_underlay_ingress", &syn.build(), 1);
        assert_eq!(out.code, TC_ACT_REDIRECT);
        assert_eq!(out.frame, syn.with_addrs(CLIENT, 40000, T1, 80).build(), "DNAT keeps the client source");

        let reply = Frame::tcp(T1, 80, CLIENT, 40000, SYN | ACK);
        let out = run_tc(mesh, "shoal_bridge_ingress", &reply.build(), 1);
        assert_eq!(out.code, TC_ACT_REDIRECT);
        assert_eq!(out.frame, reply.with_addrs(NODE, 8080, CLIENT, 40000).build());

        // UDP keeps a zero ("no checksum") UDP checksum zero and fixes a real one.
        let udp_key = ServiceKey::Published { port: 5353, proto: Proto::Udp };
        mesh.set_service(udp_key, &[Backend::new(T2, 53)]).unwrap();
        let query = Frame::udp(CLIENT, 41000, NODE, 5353);
        let out = run_tc(mesh, "shoal_underlay_ingress", &query.build(), 1);
        assert_eq!(out.frame, query.with_addrs(CLIENT, 41000, T2, 53).build());
        let mut unsummed = query.build();
        unsummed[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        let out = run_tc(mesh, "shoal_underlay_ingress", &unsummed, 1);
        assert_eq!(&out.frame[40..42], &[0, 0]);

        let stats = mesh.mesh_stats().unwrap();
        assert_eq!((stats.new_flows, stats.replies_translated), (2, 1));
        let counters = mesh.counters().unwrap();
        // Packets and bytes of both directions, per service and per backend (`shoal mesh`).
        let both = (syn.build().len() + reply.build().len()) as u64;
        let tcp = &counters[&published_tcp()];
        assert_eq!((tcp.service.new_flows, tcp.service.packets, tcp.service.bytes), (1, 2, both));
        assert_eq!(tcp.backends.len(), 1);
        assert_eq!(tcp.backends[0].0, (T1, 80));
        assert_eq!((tcp.backends[0].1.new_flows, tcp.backends[0].1.packets, tcp.backends[0].1.bytes), (1, 2, both));
    });
}

#[test]
fn established_flows_keep_their_backend_when_the_backend_set_changes() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80), Backend::new(T2, 80)]).unwrap();
        let ports: Vec<u16> = (40000..40040).collect();
        let first: Vec<Ipv4Addr> = ports
            .iter()
            .map(|&p| {
                chosen(&run_tc(mesh, "shoal_underlay_ingress", &Frame::tcp(CLIENT, p, NODE, 8080, SYN).build(), 1))
            })
            .collect();
        assert!(first.contains(&T1) && first.contains(&T2), "40 flows use both backends: {first:?}");

        // T1 leaves, T3 joins (5 backends make the table outgrow its first map, too).
        let many = [T2, T3, Ipv4Addr::new(10, 0, 0, 8), Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 10)];
        let backends: Vec<Backend> = many.iter().map(|&a| Backend::new(a, 80)).collect();
        mesh.set_service(published_tcp(), &backends).unwrap();
        for (&port, &backend) in ports.iter().zip(&first) {
            let ack = Frame::tcp(CLIENT, port, NODE, 8080, ACK).build();
            assert_eq!(chosen(&run_tc(mesh, "shoal_underlay_ingress", &ack, 1)), backend, "port {port}");
            // A retransmitted SYN is the same connection, unless its backend is gone.
            let syn = Frame::tcp(CLIENT, port, NODE, 8080, SYN).build();
            let now = chosen(&run_tc(mesh, "shoal_underlay_ingress", &syn, 1));
            if backend == T1 {
                assert!(many.contains(&now), "port {port}: a SYN for gone T1 went to {now}");
            } else {
                assert_eq!(now, backend, "port {port}");
            }
        }
        // After a reset, the next SYN on the same ports is a new connection: never the gone T1.
        for &port in &ports {
            let rst = Frame::tcp(CLIENT, port, NODE, 8080, RST).build();
            run_tc(mesh, "shoal_underlay_ingress", &rst, 1);
            let syn = Frame::tcp(CLIENT, port, NODE, 8080, SYN).build();
            let backend = chosen(&run_tc(mesh, "shoal_underlay_ingress", &syn, 1));
            assert!(many.contains(&backend), "port {port} went to {backend}");
        }
        // New flows never go to a removed backend.
        for port in 50000..50040 {
            let syn = Frame::tcp(CLIENT, port, NODE, 8080, SYN).build();
            assert_ne!(chosen(&run_tc(mesh, "shoal_underlay_ingress", &syn, 1)), T1);
        }
        // No active backend: new flows are dropped (the client retries) and counted.
        mesh.set_service(published_tcp(), &[Backend { draining: true, ..Backend::new(T2, 80) }]).unwrap();
        let syn = Frame::tcp(CLIENT, 60000, NODE, 8080, SYN).build();
        assert_eq!(run_tc(mesh, "shoal_underlay_ingress", &syn, 1).code, TC_ACT_SHOT);
        assert_eq!(mesh.mesh_stats().unwrap().dropped_no_backend, 1);
    });
}

#[test]
fn a_udp_flow_keeps_its_backend_and_moves_at_once_when_the_backend_is_gone() {
    with_mesh(|mesh| {
        let key = ServiceKey::Published { port: 5353, proto: Proto::Udp };
        mesh.set_service(key, &[Backend::new(T1, 53), Backend::new(T2, 53)]).unwrap();
        let ports: Vec<u16> = (41000..41040).collect();
        let pick = |mesh: &mut Mesh, port: u16| {
            chosen(&run_tc(mesh, "shoal_underlay_ingress", &Frame::udp(CLIENT, port, NODE, 5353).build(), 1))
        };
        let first: Vec<Ipv4Addr> = ports.iter().map(|&p| pick(mesh, p)).collect();
        assert!(first.contains(&T1) && first.contains(&T2), "40 flows use both backends: {first:?}");
        // T3 joins: every flow keeps its backend (no SYN to start over with, no reason to move).
        mesh.set_service(key, &[Backend::new(T1, 53), Backend::new(T2, 53), Backend::new(T3, 53)]).unwrap();
        for (&port, &backend) in ports.iter().zip(&first) {
            assert_eq!(pick(mesh, port), backend, "port {port} moved while its backend lives");
        }
        // T1 is gone: its flows move with their next datagram; the others stay.
        mesh.set_service(key, &[Backend::new(T2, 53), Backend::new(T3, 53)]).unwrap();
        for (&port, &backend) in ports.iter().zip(&first) {
            let now = pick(mesh, port);
            if backend == T1 {
                assert!(now == T2 || now == T3, "port {port}: a datagram for gone T1 went to {now}");
            } else {
                assert_eq!(now, backend, "port {port}");
            }
        }
    });
}

#[test]
fn traffic_the_mesh_does_not_own_passes_untouched() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80)]).unwrap();
        let mut arp = Frame::tcp(CLIENT, 1, NODE, 8080, SYN).build();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut echo = Frame::tcp(CLIENT, 0, NODE, 0, 0);
        echo.icmp = Some((8, 0, vec![1, 2, 3, 4]));
        let mut fragment = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN);
        fragment.frag_off = 0x2000; // more fragments
        let mut later_fragment = Frame::udp(CLIENT, 40000, NODE, 8080);
        later_fragment.frag_off = 0x00b9;
        let rows: Vec<(&str, &str, Vec<u8>)> = vec![
            ("another destination", "shoal_underlay_ingress", Frame::tcp(CLIENT, 1, ROUTER, 8080, SYN).build()),
            ("unknown port", "shoal_underlay_ingress", Frame::tcp(CLIENT, 1, NODE, 22, SYN).build()),
            ("UDP to a TCP-only port", "shoal_underlay_ingress", Frame::udp(CLIENT, 1, NODE, 8080).build()),
            ("not IPv4", "shoal_underlay_ingress", arp),
            ("ICMP echo", "shoal_underlay_ingress", echo.build()),
            ("first fragment", "shoal_underlay_ingress", fragment.build()),
            ("later fragment", "shoal_underlay_ingress", later_fragment.build()),
            ("untracked reply", "shoal_bridge_ingress", Frame::tcp(T1, 80, CLIENT, 1, ACK).build()),
            ("untracked ICMP error", "shoal_underlay_ingress", echo.icmp_error(ROUTER, NODE, &fragment).build()),
            ("task traffic, nothing remembered", "shoal_task_ingress", Frame::tcp(T1, 80, CLIENT, 9, ACK).build()),
        ];
        for (what, program, frame) in &rows {
            let out = run_tc(mesh, program, frame, 1);
            assert_eq!(out.code, TC_ACT_UNSPEC, "{what}");
            assert_eq!(&out.frame, frame, "{what}: frame changed");
        }
        // A TCP header cut short (the IPv4 header is whole, so tc accepts the frame).
        let mut cut = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN).build();
        cut.truncate(14 + 20 + 10);
        cut[16..18].copy_from_slice(&30u16.to_be_bytes());
        let out = run_tc(mesh, "shoal_underlay_ingress", &cut, 1);
        assert_eq!((out.code, &out.frame), (TC_ACT_UNSPEC, &cut));
        let stats = mesh.mesh_stats().unwrap();
        assert_eq!((stats.fragments_passed, stats.truncated_passed, stats.icmp_errors_untracked), (2, 1, 1));
        assert_eq!(stats.new_flows, 0);
    });
}

#[test]
fn ip_options_and_icmp_errors_of_tracked_flows_are_translated() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80)]).unwrap();
        let mut syn = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN);
        syn.ip_options = vec![1, 1, 1, 0]; // NOP, NOP, NOP, end of options
        let out = run_tc(mesh, "shoal_underlay_ingress", &syn.build(), 1);
        assert_eq!(out.frame, syn.with_addrs(CLIENT, 40000, T1, 80).build());
        assert_eq!(mesh.mesh_stats().unwrap().ip_options, 1);

        // A router says our reply (node:8080 -> client) was too big: the backend must hear it.
        let sent_reply = Frame::tcp(NODE, 8080, CLIENT, 40000, ACK);
        let error = sent_reply.icmp_error(ROUTER, NODE, &sent_reply);
        let out = run_tc(mesh, "shoal_underlay_ingress", &error.build(), 1);
        assert_eq!(out.code, TC_ACT_REDIRECT);
        let backend_reply = sent_reply.with_addrs(T1, 80, CLIENT, 40000);
        assert_eq!(out.frame, backend_reply.icmp_error(ROUTER, T1, &backend_reply).build());

        // The task says the client's packet (client -> task:80) was unreachable: the client
        // must hear it from node:8080.
        let to_task = Frame::tcp(CLIENT, 40000, T1, 80, ACK);
        let error = to_task.icmp_error(T1, CLIENT, &to_task);
        let out = run_tc(mesh, "shoal_bridge_ingress", &error.build(), 1);
        assert_eq!(out.code, TC_ACT_REDIRECT);
        let as_sent = to_task.with_addrs(CLIENT, 40000, NODE, 8080);
        assert_eq!(out.frame, as_sent.icmp_error(NODE, CLIENT, &as_sent).build());
        assert_eq!(mesh.mesh_stats().unwrap().icmp_errors_translated, 2);
    });
}

#[test]
fn truncated_frames_are_classified_by_the_parser() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80)]).unwrap();
        let syn = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN).build();
        let mut bad_ihl = syn.clone();
        bad_ihl[14] = 0x44;
        let mut fragment = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN);
        fragment.frag_off = 0x2000;
        let quoted_cut = {
            let inner = Frame::tcp(NODE, 8080, CLIENT, 40000, ACK);
            let mut e = inner.icmp_error(ROUTER, NODE, &inner).build();
            e.truncate(14 + 20 + 8 + 20 + 2);
            e
        };
        // Test runs refuse frames shorter than an Ethernet header for XDP too.
        let rows: Vec<(&str, Vec<u8>, u32)> = vec![
            ("Ethernet only", syn[..14].to_vec(), XDP_ABORTED),
            ("half an IPv4 header", syn[..24].to_vec(), XDP_ABORTED),
            ("IPv4 header, no TCP", syn[..34].to_vec(), XDP_ABORTED),
            ("TCP header cut at 19 bytes", syn[..34 + 19].to_vec(), XDP_ABORTED),
            ("IHL below 5", bad_ihl, XDP_ABORTED),
            ("ICMP error quoting half the ports", quoted_cut, XDP_ABORTED),
            ("first fragment", fragment.build(), XDP_DROP),
            ("unknown port", Frame::tcp(CLIENT, 40000, NODE, 9999, SYN).build(), XDP_PASS),
            ("whole SYN to a published port", syn.clone(), XDP_TX),
        ];
        for (what, frame, verdict) in rows {
            assert_eq!(probe(mesh, &frame), verdict, "{what}");
        }
    });
}

#[test]
fn the_backend_node_sends_replies_back_to_the_entry_node() {
    with_mesh(|mesh| {
        // A request for the task arrives over the overlay from entry node A's bridge.
        let mut request = Frame::tcp(CLIENT, 40000, T1, 80, SYN);
        request.src_mac = ENTRY_A_MAC;
        request.dst_mac = TASK_MAC;
        let out = run_tc(mesh, "shoal_task_egress", &request.build(), 1);
        assert_eq!((out.code, &out.frame), (TC_ACT_UNSPEC, &request.build()));

        // The task answers through its gateway; the frame is steered to entry node A instead.
        let mut reply = Frame::tcp(T1, 80, CLIENT, 40000, SYN | ACK);
        reply.src_mac = TASK_MAC;
        reply.dst_mac = GATEWAY_MAC;
        let out = run_tc(mesh, "shoal_task_ingress", &reply.build(), 1);
        assert_eq!(out.code, TC_ACT_UNSPEC);
        assert_eq!(out.frame, Frame { dst_mac: ENTRY_A_MAC, ..reply.clone() }.build());
        // An ICMP error from the task about that flow takes the same way.
        let mut error = request.icmp_error(T1, CLIENT, &request);
        error.src_mac = TASK_MAC;
        error.dst_mac = GATEWAY_MAC;
        let out = run_tc(mesh, "shoal_task_ingress", &error.build(), 1);
        assert_eq!(out.frame, Frame { dst_mac: ENTRY_A_MAC, ..error }.build());

        // The same client ip:port through entry node B while A's connection lives (a client that
        // spreads connections over nodes reuses source ports): B's connection gets another client
        // port on this node, so both live. Frames are compared whole: checksums stay right.
        let via_b = Frame { src_mac: ENTRY_B_MAC, ..request.clone() };
        let out = run_tc(mesh, "shoal_task_egress", &via_b.build(), 1);
        assert_eq!(out.code, TC_ACT_UNSPEC);
        let remapped = u16::from_be_bytes([out.frame[34], out.frame[35]]);
        assert!((1024..32768).contains(&remapped), "remapped to {remapped}");
        assert_eq!(out.frame, Frame { sport: remapped, ..via_b.clone() }.build());
        let b_ack = Frame { tcp_flags: ACK, ..via_b.clone() };
        let out = run_tc(mesh, "shoal_task_egress", &b_ack.build(), 1);
        assert_eq!((out.code, out.frame), (TC_ACT_UNSPEC, Frame { sport: remapped, ..b_ack }.build()));
        let a_ack = Frame { tcp_flags: ACK, ..request.clone() };
        let out = run_tc(mesh, "shoal_task_egress", &a_ack.build(), 1);
        assert_eq!((out.code, out.frame), (TC_ACT_UNSPEC, a_ack.build()));
        // Replies: A's go to A unchanged, B's to B with the client's own port back.
        let out = run_tc(mesh, "shoal_task_ingress", &reply.build(), 1);
        assert_eq!(out.frame, Frame { dst_mac: ENTRY_A_MAC, ..reply.clone() }.build());
        let reply_b = Frame { dport: remapped, ..reply.clone() };
        let out = run_tc(mesh, "shoal_task_ingress", &reply_b.build(), 1);
        assert_eq!(out.code, TC_ACT_UNSPEC);
        assert_eq!(out.frame, Frame { dst_mac: ENTRY_B_MAC, dport: 40000, ..reply.clone() }.build());
        // B's retransmitted SYN keeps its port.
        let out = run_tc(mesh, "shoal_task_egress", &via_b.build(), 1);
        assert_eq!(out.frame, Frame { sport: remapped, ..via_b.clone() }.build());

        // A packet of no known connection on that 4-tuple from a third entry node is dropped,
        // not answered through the wrong node.
        let stray = Frame { src_mac: ENTRY_C_MAC, tcp_flags: ACK, ..request.clone() };
        assert_eq!(run_tc(mesh, "shoal_task_egress", &stray.build(), 1).code, TC_ACT_SHOT);

        // UDP has no connection start: the newest datagram's entry node takes the path over.
        let udp_a = Frame { src_mac: ENTRY_A_MAC, dst_mac: TASK_MAC, ..Frame::udp(CLIENT, 40001, T1, 53) };
        let udp_b = Frame { src_mac: ENTRY_B_MAC, ..udp_a.clone() };
        let udp_reply = Frame { src_mac: TASK_MAC, dst_mac: GATEWAY_MAC, ..Frame::udp(T1, 53, CLIENT, 40001) };
        run_tc(mesh, "shoal_task_egress", &udp_a.build(), 1);
        assert_eq!(run_tc(mesh, "shoal_task_egress", &udp_b.build(), 1).frame, udp_b.build());
        let out = run_tc(mesh, "shoal_task_ingress", &udp_reply.build(), 1);
        assert_eq!(out.frame, Frame { dst_mac: ENTRY_B_MAC, ..udp_reply }.build());

        let stats = mesh.mesh_stats().unwrap();
        assert_eq!(
            (stats.client_ports_remapped, stats.return_path_takeovers, stats.dropped_return_conflict),
            (1, 1, 1)
        );
    });
}

#[test]
fn cost_per_packet_of_each_program() {
    with_mesh(|mesh| {
        mesh.set_service(published_tcp(), &[Backend::new(T1, 80), Backend::new(T2, 80)]).unwrap();
        let syn = Frame::tcp(CLIENT, 40000, NODE, 8080, SYN).build();
        let backend = chosen(&run_tc(mesh, "shoal_underlay_ingress", &syn, 1));
        let rows: Vec<(&str, &'static str, Vec<u8>)> = vec![
            ("established flow, DNAT", "shoal_underlay_ingress", Frame::tcp(CLIENT, 40000, NODE, 8080, ACK).build()),
            ("tracked SYN (retransmit)", "shoal_underlay_ingress", syn.clone()),
            ("reply, reverse NAT", "shoal_bridge_ingress", Frame::tcp(backend, 80, CLIENT, 40000, ACK).build()),
            ("not for the mesh", "shoal_underlay_ingress", Frame::tcp(CLIENT, 1, NODE, 22, ACK).build()),
            ("to a task", "shoal_task_egress", Frame::tcp(CLIENT, 40000, backend, 80, ACK).build()),
            ("from a task", "shoal_task_ingress", Frame::tcp(backend, 80, CLIENT, 40000, ACK).build()),
        ];
        for (what, program, frame) in rows {
            let (once, ns) = cost(mesh, program, &frame);
            assert_ne!(once.code, TC_ACT_SHOT, "{what}");
            println!("{program:24} {what:32} {ns:5} ns/packet (median of {COST_RUNS} test runs)");
        }
    });
}

const COST_RUNS: usize = 2001;

/// The median kernel time of `program` over `frame`, from single test runs: a run with `repeat`
/// would time the later rounds on the frame the first round rewrote (a DNATed packet is no
/// longer for the node), so each run starts from the original frame. Every run must do the same.
fn cost(mesh: &mut Mesh, program: &'static str, frame: &[u8]) -> (Verdict, u64) {
    let once = run_tc(mesh, program, frame, 1);
    let mut times: Vec<u64> = (0..COST_RUNS)
        .map(|_| {
            let out = run_tc(mesh, program, frame, 1);
            assert_eq!((out.code, &out.frame), (once.code, &once.frame), "{program}: runs differ");
            out.duration.as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    (once, times[times.len() / 2])
}

/// The scale figures of `cargo xtask bench mesh`, printed as one `mesh-scale {json}` line: the
/// kernel's time for a new flow's first packet (a SYN that creates conntrack entries) and for a
/// packet of an established flow, and the time of one backend change, with 1 and with 10,000
/// published services of 3 backends each. What it asserts is what the figures are about: at
/// either size, new flows of sampled services go to that service's own backends.
#[test]
fn scale_figures_with_one_and_ten_thousand_services() {
    const SERVICES: u32 = 10_000;
    const FIRST_PORT: u32 = 20_000;
    const SAMPLES: u32 = 2_000;
    fn key(k: u32) -> ServiceKey {
        ServiceKey::Published { port: (FIRST_PORT + k) as u16, proto: Proto::Tcp }
    }
    fn backends(k: u32) -> Vec<Backend> {
        (0..3).map(|b| Backend::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + k * 4 + b), 80)).collect()
    }
    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
    // New flows (a fresh client port each) to the first `spread` services, and one established
    // flow; the chosen backend must be one of that service's.
    fn measure(mesh: &mut Mesh, spread: u32, round: u32) -> (Duration, Duration) {
        let mut first = Vec::new();
        for i in 0..SAMPLES {
            let k = (i * 7919) % spread;
            let sport = 1024 + ((round * SAMPLES + i) % 60000) as u16;
            let syn = Frame::tcp(CLIENT, sport, NODE, (FIRST_PORT + k) as u16, SYN).build();
            let out = run_tc(mesh, "shoal_underlay_ingress", &syn, 1);
            assert!(backends(k).iter().any(|b| b.addr == chosen(&out)), "service {k} went to {}", chosen(&out));
            first.push(out.duration);
        }
        let ack = Frame::tcp(CLIENT, 1024 + (round * SAMPLES % 60000) as u16, NODE, FIRST_PORT as u16, ACK).build();
        let (established, ns) = cost(mesh, "shoal_underlay_ingress", &ack);
        assert_eq!(established.code, TC_ACT_REDIRECT);
        (median(first), Duration::from_nanos(ns))
    }
    fn backend_change(mesh: &mut Mesh) -> Duration {
        let times = (0..21)
            .map(|round| {
                let set = if round % 2 == 0 { &backends(0)[..2] } else { &backends(0)[..] };
                let t = std::time::Instant::now();
                mesh.set_service(key(0), set).unwrap();
                t.elapsed()
            })
            .collect();
        median(times)
    }
    with_mesh(|mesh| {
        mesh.set_service(key(0), &backends(0)).unwrap();
        let (first_1, established_1) = measure(mesh, 1, 0);
        let change_1 = backend_change(mesh);
        let rest: Vec<(ServiceKey, Vec<Backend>)> = (1..SERVICES).map(|k| (key(k), backends(k))).collect();
        let started = std::time::Instant::now();
        mesh.set_services(&rest).unwrap();
        let setup = started.elapsed();
        assert_eq!(mesh.service_count(), SERVICES as usize);
        // The same traffic as with one service, then new flows spread over all 10,000 (each
        // touching a service whose entries are likely out of the CPU caches).
        let (first_10k, established_10k) = measure(mesh, 1, 1);
        let (first_10k_spread, _) = measure(mesh, SERVICES, 2);
        let change_10k = backend_change(mesh);
        let ns = |d: Duration| d.as_nanos() as u64;
        println!(
            "mesh-scale {{\"first_packet_ns\":[{},{},{}],\"established_ns\":[{},{}],\"backend_change_ns\":[{},{}],\"setup_10k_ms\":{}}}",
            ns(first_1),
            ns(first_10k),
            ns(first_10k_spread),
            ns(established_1),
            ns(established_10k),
            ns(change_1),
            ns(change_10k),
            setup.as_millis()
        );
    });
}

#[test]
fn links_are_pinned_adopted_after_a_restart_and_detached() {
    in_sandbox(|sandbox| {
        run("ip", &["link", "add", "shoal-u0", "type", "veth", "peer", "name", "shoal-u1"]);
        run("ip", &["link", "add", "shoal-t0", "type", "veth", "peer", "name", "shoal-t1"]);
        run("ip", &["link", "add", "shoal-br", "type", "bridge"]);
        // Not /sys/class/net: sysfs still shows the host's namespace in the sandbox.
        let index = |name: &str| -> u32 {
            let c = std::ffi::CString::new(name).unwrap();
            // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
            let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
            assert_ne!(i, 0, "no interface {name}");
            i
        };
        let (underlay, bridge, task) = (index("shoal-u0"), index("shoal-br"), index("shoal-t0"));
        let count = |name: &str, ingress: bool| {
            let kind = if ingress { aya::programs::TcAttachType::Ingress } else { aya::programs::TcAttachType::Egress };
            aya::programs::SchedClassifier::query_tcx(name, kind).unwrap().1.len()
        };
        let pin = sandbox.pin_dir("n1");
        for _restart in 0..2 {
            let mut mesh = Mesh::load(&pin, config()).expect("load");
            mesh.attach_underlay(underlay).unwrap();
            mesh.attach_ingress_bridge(bridge).unwrap();
            mesh.attach_task_veth(task).unwrap();
        }
        assert_eq!(
            (count("shoal-u0", true), count("shoal-br", true), count("shoal-t0", true), count("shoal-t0", false)),
            (1, 1, 1, 1),
            "a restarted loader adopts its links instead of attaching again"
        );
        let mut mesh = Mesh::load(&pin, config()).expect("load");
        mesh.detach_task_veth(task).unwrap();
        assert_eq!((count("shoal-t0", true), count("shoal-t0", false)), (0, 0));
        mesh.detach_task_veth(task).unwrap();

        // A pin left by a deleted interface is replaced, not updated.
        mesh.attach_task_veth(task).unwrap();
        run("ip", &["link", "del", "shoal-t0"]);
        run("ip", &["link", "add", "shoal-t0", "type", "veth", "peer", "name", "shoal-t1"]);
        let task = index("shoal-t0");
        mesh.attach_task_veth(task).unwrap();
        assert_eq!((count("shoal-t0", true), count("shoal-t0", false)), (1, 1));
    });
}

/// `set_services` (what the agent uses) ends where one `set_service` per service would: a table
/// rewritten in place, one outgrowing its map, a new service, and a backend dropped only once
/// the new table is live — all from one batch.
#[test]
fn a_batch_of_services_routes_like_single_updates() {
    with_mesh(|mesh| {
        let port = |p: u16| ServiceKey::Published { port: p, proto: Proto::Tcp };
        mesh.set_services(&[(port(8080), vec![Backend::new(T1, 80)]), (port(8081), vec![Backend::new(T1, 80)])])
            .unwrap();
        let five: Vec<Backend> = (5..10).map(|i| Backend::new(Ipv4Addr::new(10, 0, 0, i), 80)).collect();
        let before = (mesh.maglev_map_id(port(8080)), mesh.maglev_map_id(port(8081)));
        mesh.set_services(&[
            (port(8080), vec![Backend::new(T2, 80)]),
            (port(8081), five.clone()),
            (port(8082), vec![Backend::new(T3, 80)]),
        ])
        .unwrap();
        assert_eq!(mesh.service_count(), 3);
        assert_eq!(mesh.maglev_map_id(port(8080)), before.0, "rewritten in place");
        assert_ne!(mesh.maglev_map_id(port(8081)), before.1, "5 backends outgrow the first map");
        for sport in 40000..40030 {
            let mut to = |p: u16| {
                chosen(&run_tc(mesh, "shoal_underlay_ingress", &Frame::tcp(CLIENT, sport, NODE, p, SYN).build(), 1))
            };
            assert_eq!(to(8080), T2);
            let picked = to(8081);
            assert!(five.iter().any(|b| b.addr == picked));
            assert_eq!(to(8082), T3);
        }
        let counters = mesh.counters().unwrap();
        let backends: Vec<Ipv4Addr> = counters[&port(8080)].backends.iter().map(|((a, _), _)| *a).collect();
        assert_eq!(backends, vec![T2], "T1 was forgotten");
    });
}
