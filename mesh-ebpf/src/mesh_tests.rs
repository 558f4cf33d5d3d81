//! Privileged tests of the socket-level VIPs: a real cgroup, real sockets, a child process.
//! Each test runs in its own sandbox (private mount and network namespaces, own bpffs and
//! cgroup2 mounts); see `testns`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::testns::{command_in_cgroup, in_sandbox, run, Sandbox};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const B1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

fn config() -> NodeConfig {
    NodeConfig {
        node_addr: Ipv4Addr::new(198, 18, 0, 1),
        hash_seed: 0x5ee0a11,
        underlay_ifindex: 0,
        ingress_bridge_ifindex: 0,
        host_netns_cookie: 0,
        flow_table_entries: 0,
    }
}

/// A TCP backend that answers every connection with its name until dropped.
struct TcpBackend {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
}

impl TcpBackend {
    fn start(ip: Ipv4Addr, port: u16, name: &'static str) -> TcpBackend {
        let addr = SocketAddrV4::new(ip, port);
        let listener = TcpListener::bind(addr).expect("bind backend");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut conn) = conn {
                    let _ = conn.write_all(name.as_bytes());
                }
            }
        });
        TcpBackend { addr, stop }
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop; this thread is outside the test cgroup, so no VIP logic applies.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A UDP backend that answers every datagram with its name (exits with the namespace's thread).
fn udp_backend(ip: Ipv4Addr, port: u16, name: &'static str) {
    let socket = UdpSocket::bind(SocketAddrV4::new(ip, port)).expect("bind udp backend");
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = socket.recv_from(&mut buf) {
            if &buf[..4] == b"stop" {
                break;
            }
            let _ = socket.send_to(name.as_bytes(), from);
        }
    });
}

fn python_in_cgroup(sandbox: &Sandbox, script: &str) -> String {
    let out = command_in_cgroup("python3", &sandbox.cgroup).arg("-c").arg(script).output().expect("run python3");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Connects `n` times to the VIP from a process in the cgroup; returns how many answers came from
/// b1 and b2.
fn connect_many(sandbox: &Sandbox, n: usize) -> (usize, usize) {
    let script = format!(
        "import socket\nfor i in range({n}):\n  s=socket.create_connection(('{VIP}',80),timeout=5)\n  print(s.recv(16).decode())\n  s.close()\n"
    );
    let out = python_in_cgroup(sandbox, &script);
    let b1 = out.lines().filter(|l| *l == "b1").count();
    let b2 = out.lines().filter(|l| *l == "b2").count();
    assert_eq!(b1 + b2, n, "unexpected answers: {out}");
    (b1, b2)
}

fn vip_tcp() -> ServiceKey {
    ServiceKey::Vip { addr: VIP, port: 80, proto: Proto::Tcp }
}

#[test]
fn connect_to_a_vip_spreads_over_backends_and_follows_removals() {
    in_sandbox(|sandbox| {
        run("ip", &["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        run("ip", &["addr", "add", "10.1.0.2/32", "dev", "lo"]);
        let _b1 = TcpBackend::start(B1, 8080, "b1");
        let _b2 = TcpBackend::start(B2, 8080, "b2");

        let mut mesh = Mesh::load(&sandbox.pin_dir("node1"), config()).expect("load");
        mesh.attach_cgroup(&sandbox.cgroup).expect("attach");
        mesh.set_service(vip_tcp(), &[Backend::new(B1, 8080), Backend::new(B2, 8080)]).unwrap();

        let (b1, b2) = connect_many(sandbox, 60);
        assert!(b1 >= 12 && b2 >= 12, "60 connections should spread over both backends: b1={b1} b2={b2}");

        mesh.set_service(vip_tcp(), &[Backend::new(B1, 8080)]).unwrap();
        assert_eq!(connect_many(sandbox, 20), (20, 0), "a removed backend must get no new connection");

        let counters = mesh.counters().unwrap();
        let svc = &counters[&vip_tcp()];
        assert_eq!(svc.service.new_flows, 80);
        assert_eq!(svc.backends, vec![((B1, 8080), Counters { new_flows: (b1 + 20) as u64, ..Default::default() })]);

        // A draining backend gets no new flows either; an empty active set leaves the VIP alone.
        mesh.set_service(vip_tcp(), &[Backend { draining: true, ..Backend::new(B1, 8080) }]).unwrap();
        let script = format!("import socket\ntry:\n  socket.create_connection(('{VIP}',80),timeout=1)\n  print('connected')\nexcept OSError:\n  print('failed')\n");
        assert_eq!(python_in_cgroup(sandbox, &script).trim(), "failed");
        assert_eq!(mesh.counters().unwrap()[&vip_tcp()].service.no_backend, 1);

        mesh.remove_service(vip_tcp()).unwrap();
        assert_eq!(mesh.service_count(), 0);
    });
}

#[test]
fn a_whole_vip_answers_on_every_port_and_keeps_the_port() {
    in_sandbox(|sandbox| {
        run("ip", &["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        run("ip", &["addr", "add", "10.1.0.2/32", "dev", "lo"]);
        let _b1a = TcpBackend::start(B1, 80, "b1");
        let _b2a = TcpBackend::start(B2, 80, "b2");
        let _b1b = TcpBackend::start(B1, 9000, "b1");
        let _b2b = TcpBackend::start(B2, 9000, "b2");
        let mut mesh = Mesh::load(&sandbox.pin_dir("node1"), config()).expect("load");
        mesh.attach_cgroup(&sandbox.cgroup).expect("attach");
        // Port 0: the whole VIP (Swarm's VIPs balance every port); backend port 0 keeps the client's.
        let whole = ServiceKey::Vip { addr: VIP, port: 0, proto: Proto::Tcp };
        mesh.set_service(whole, &[Backend::new(B1, 0), Backend::new(B2, 0)]).unwrap();
        let (b1, b2) = connect_many(sandbox, 40);
        assert!(b1 >= 8 && b2 >= 8, "port 80 through the whole VIP should spread: b1={b1} b2={b2}");
        let script = format!(
            "import socket\nfor i in range(20):\n  s=socket.create_connection(('{VIP}',9000),timeout=5)\n  print(s.recv(16).decode())\n  s.close()\n"
        );
        let out = python_in_cgroup(sandbox, &script);
        assert_eq!(out.lines().filter(|l| *l == "b1" || *l == "b2").count(), 20, "port 9000 kept: {out}");
        // A port-specific entry wins over the whole VIP.
        mesh.set_service(vip_tcp(), &[Backend::new(B2, 80)]).unwrap();
        assert_eq!(connect_many(sandbox, 10), (0, 10));
    });
}

#[test]
fn unconnected_udp_sees_the_vip_as_the_reply_source() {
    in_sandbox(|sandbox| {
        run("ip", &["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        run("ip", &["addr", "add", "10.1.0.2/32", "dev", "lo"]);
        udp_backend(B1, 5353, "b1");
        udp_backend(B2, 5353, "b2");
        let mut mesh = Mesh::load(&sandbox.pin_dir("node1"), config()).expect("load");
        mesh.attach_cgroup(&sandbox.cgroup).expect("attach");
        let key = ServiceKey::Vip { addr: VIP, port: 53, proto: Proto::Udp };
        mesh.set_service(key, &[Backend::new(B1, 5353), Backend::new(B2, 5353)]).unwrap();

        let script = format!(
            "import socket\nfor i in range(30):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n  s.settimeout(5)\n  s.sendto(b'hi',('{VIP}',53))\n  d,a=s.recvfrom(64)\n  print(d.decode(),a[0],a[1])\n"
        );
        let out = python_in_cgroup(sandbox, &script);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 30);
        for line in &lines {
            assert!(line.ends_with(&format!(" {VIP} 53")), "reply source must be the VIP: {line}");
        }
        let b1 = lines.iter().filter(|l| l.starts_with("b1 ")).count();
        assert!((5..=25).contains(&b1), "30 sockets should spread over both backends: b1={b1}");
    });
}

#[test]
fn a_restarted_loader_adopts_maps_and_links_without_attaching_twice() {
    in_sandbox(|sandbox| {
        run("ip", &["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        let _b1 = TcpBackend::start(B1, 8080, "b1");
        let pin = sandbox.pin_dir("node1");
        {
            let mut mesh = Mesh::load(&pin, config()).expect("load");
            mesh.attach_cgroup(&sandbox.cgroup).expect("attach");
            mesh.set_service(vip_tcp(), &[Backend::new(B1, 8080)]).unwrap();
        }
        // The first loader is gone; its pinned links keep translating.
        assert_eq!(connect_many(sandbox, 3), (3, 0));

        let mut mesh = Mesh::load(&pin, config()).expect("reload");
        assert_eq!(mesh.service_count(), 1, "services are read back from the pinned maps");
        mesh.attach_cgroup(&sandbox.cgroup).expect("re-attach");
        let links = std::fs::read_dir(pin.join("links")).unwrap().count();
        assert_eq!(links, 3, "one link per socket hook, not two");
        let attached = python_in_cgroup(sandbox, "print(open('/proc/self/cgroup').read())");
        assert!(attached.contains("shoal-test"), "{attached}");
        assert_eq!(connect_many(sandbox, 3), (3, 0));
        // Ids survive the restart: counters keep counting for the same backend.
        assert_eq!(mesh.counters().unwrap()[&vip_tcp()].backends[0].1.new_flows, 6);
        // An adopted service is changed in place, like one this loader created.
        let table = mesh.maglev_map_id(vip_tcp());
        mesh.set_service(vip_tcp(), &[Backend::new(B1, 8080)]).unwrap();
        assert_eq!(mesh.maglev_map_id(vip_tcp()), table);
    });
}

/// A backend change rewrites the idle half of the service's own Maglev map and flips the
/// generation in the service entry: the map-of-maps entry, whose replacement waits for an RCU
/// grace period (~16 ms here), is written only when a service is created or outgrows its map.
/// With 300 services around, the changed service keeps its map. (The time of a change at 1 and
/// 10,000 services is measured by `cargo xtask bench mesh`, not asserted here.)
#[test]
fn a_backend_change_rewrites_the_service_table_in_place() {
    const SERVICES: u32 = 300;
    in_sandbox(|sandbox| {
        let mut mesh = Mesh::load(&sandbox.pin_dir("node1"), config()).expect("load");
        for i in 0..SERVICES {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i);
            let key = ServiceKey::Vip { addr: vip, port: 80, proto: Proto::Tcp };
            mesh.set_service(key, &[Backend::new(B1, 8080)]).unwrap();
        }
        assert_eq!(mesh.service_count(), SERVICES as usize);
        let key = ServiceKey::Vip { addr: Ipv4Addr::new(10, 200, 0, 7), port: 80, proto: Proto::Tcp };
        let table = mesh.maglev_map_id(key).expect("the service has a Maglev map");
        for round in 0..20 {
            let backends: &[Backend] = if round % 2 == 0 {
                &[Backend::new(B1, 8080), Backend::new(B2, 8080)]
            } else {
                &[Backend::new(B1, 8080)]
            };
            mesh.set_service(key, backends).unwrap();
            assert_eq!(mesh.maglev_map_id(key), Some(table), "round {round} replaced the map");
        }
        // Outgrowing the map's capacity (251 slots: 3 backends need a 307-slot table) replaces it.
        let three: Vec<Backend> = (1..=3).map(|i| Backend::new(Ipv4Addr::new(10, 1, 0, i), 8080)).collect();
        mesh.set_service(key, &three).unwrap();
        assert_ne!(mesh.maglev_map_id(key), Some(table));
    });
}

/// The node's own processes reach its published ports on its address and on loopback (`curl
/// localhost:8080` on a node): the tc programs never see what the node sends itself, so the host
/// socket programs pick the backend at connect/sendmsg time. A process of another network
/// namespace in the same cgroup is left alone.
#[test]
fn the_node_reaches_its_published_ports_on_its_address_and_on_loopback() {
    in_sandbox(|sandbox| {
        for addr in ["10.1.0.1/32", "10.1.0.2/32", "198.18.0.1/32"] {
            run("ip", &["addr", "add", addr, "dev", "lo"]);
        }
        let _b1 = TcpBackend::start(B1, 8080, "b1");
        let _b2 = TcpBackend::start(B2, 8080, "b2");
        udp_backend(B1, 5353, "b1");
        let config = NodeConfig { host_netns_cookie: crate::netns_cookie().unwrap(), ..config() };
        let mut mesh = Mesh::load(&sandbox.pin_dir("node1"), config).expect("load");
        mesh.attach_host_cgroup(&sandbox.cgroup).expect("attach");
        let tcp = ServiceKey::Published { port: 8080, proto: Proto::Tcp };
        mesh.set_service(tcp, &[Backend::new(B1, 8080), Backend::new(B2, 8080)]).unwrap();
        mesh.set_service(ServiceKey::Published { port: 5300, proto: Proto::Udp }, &[Backend::new(B1, 5353)]).unwrap();

        for host in ["198.18.0.1", "127.0.0.1"] {
            let script = format!(
                "import socket\nfor i in range(40):\n  s=socket.create_connection(('{host}',8080),timeout=5)\n  print(s.recv(16).decode())\n  s.close()\n"
            );
            let out = python_in_cgroup(sandbox, &script);
            let (b1, b2) = (out.lines().filter(|l| *l == "b1").count(), out.lines().filter(|l| *l == "b2").count());
            assert_eq!(b1 + b2, 40, "{host}: {out}");
            assert!(b1 >= 5 && b2 >= 5, "{host}: 40 connections should reach both backends: b1={b1} b2={b2}");
        }
        // Unconnected UDP: the answer seems to come from the address and port the client used.
        let udp = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(5)\n\
                   s.sendto(b'hi',('127.0.0.1',5300))\nd,a=s.recvfrom(64)\nprint(d.decode(),a[0],a[1])\n";
        assert_eq!(python_in_cgroup(sandbox, udp).trim(), "b1 127.0.0.1 5300");
        // A port that is not published is untouched (nothing listens there).
        let refused = "import socket\ntry:\n  socket.create_connection(('127.0.0.1',8081),timeout=2)\n  print('connected')\nexcept OSError:\n  print('failed')\n";
        assert_eq!(python_in_cgroup(sandbox, refused).trim(), "failed");
        // Another network namespace in the same cgroup: its loopback is its own.
        let script = "import socket\ntry:\n  s=socket.create_connection(('127.0.0.1',8080),timeout=2)\n  print(s.recv(16).decode())\nexcept OSError:\n  print('failed')\n";
        let out = command_in_cgroup("unshare", &sandbox.cgroup).args(["-n", "python3", "-c", script]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "failed", "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(mesh.counters().unwrap()[&tcp].service.new_flows, 80);
    });
}
