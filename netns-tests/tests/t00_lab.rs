//! Band 00: the lab itself. Every other test trusts these properties: nodes reach each other on
//! the underlay, each daemon runs inside its node's namespace with its own hostname, faults do
//! what they say, a crashed run's leftovers are swept, nothing leaks into the root namespace,
//! and dropping a lab removes all of it, task processes that outlive their daemon included.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use netns_tests::cmd::{run_timeout, sh};
use netns_tests::services::task_http_get;
use netns_tests::tasks::{mounts_anywhere_under, namespace_holders, ns_of, process_mentions};
use netns_tests::{netns, poll_until, Lab, SHORT};

/// What the root namespace looks like to `ip` and `nft`: links, routes, rules.
fn root_snapshot() -> String {
    let links = sh("ip", &["-o", "link", "show"]).unwrap();
    // Only names and flags: counters and timers change on their own.
    let links: Vec<String> = links.lines().map(|l| l.split(':').take(3).collect::<Vec<_>>().join(":")).collect();
    let routes = sh("ip", &["route", "show", "table", "all"]).unwrap();
    let rules = sh("nft", &["list", "ruleset"]).unwrap();
    format!("{}\n{routes}\n{rules}", links.join("\n"))
}

fn can_connect(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok()
}

#[test]
fn nodes_run_daemons_in_their_namespaces_and_everything_goes_on_drop() {
    let before = root_snapshot();
    let lab = Lab::with_daemons(2);
    let mut names: Vec<String> = lab.nodes().iter().map(|n| n.ns().to_string()).collect();
    names.push(lab.lab_ns().to_string());
    let listed = netns::list().unwrap();
    for name in &names {
        assert!(listed.contains(name), "{name} not in `ip netns list`: {listed:?}");
    }
    let dir = lab.dir().to_path_buf();

    for node in lab.nodes() {
        let ping = node.api("GET", "/_ping", None).unwrap();
        assert_eq!((ping.status, ping.text().as_str()), (200, "OK"), "{}", node.hostname());
        assert_eq!(ping.header("Api-Version"), Some("1.51"), "{}: headers {:?}", node.hostname(), ping.headers);

        // The daemon's network namespace is the node's, and its hostname is the node's.
        let pid = node.daemon_pid().unwrap();
        let daemon_net = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino();
        let node_net = std::fs::metadata(format!("/run/netns/{}", node.ns())).unwrap().ino();
        assert_eq!(daemon_net, node_net, "{}: daemon (pid {pid}) is not in {}", node.hostname(), node.ns());
        let pid_s = pid.to_string();
        let hostname = run_timeout(Command::new("nsenter").args(["-t", &pid_s, "-u", "hostname"]), SHORT);
        assert_eq!(hostname.assert_ok().stdout.trim(), node.hostname());

        // eth0 carries the node's underlay address.
        let addrs = sh("ip", &["-n", node.ns(), "-o", "-4", "addr", "show", "dev", "eth0"]).unwrap();
        assert!(addrs.contains(&format!("inet {}/15", node.addr())), "{}: {addrs}", node.hostname());
    }

    // node1 reaches a listener on node2's underlay address.
    let (n1, n2) = (lab.node(1), lab.node(2));
    let to = SocketAddr::from((n2.addr(), 7000));
    let _listener = n2.in_netns(|| TcpListener::bind(to).unwrap());
    assert!(n1.in_netns(|| can_connect(to)), "node1 cannot reach {to}");
    // (Whether the root namespace can reach {to} says nothing here: some sandboxes proxy every
    // outbound TCP connect. The snapshot below is what proves the root namespace is untouched.)

    assert_eq!(root_snapshot(), before, "building a lab changed the root namespace");
    drop(lab);

    let listed = netns::list().unwrap();
    for name in &names {
        assert!(!listed.contains(name), "{name} survived the lab's drop");
    }
    assert!(!dir.exists(), "{} survived the lab's drop", dir.display());
    assert_eq!(root_snapshot(), before, "removing a lab changed the root namespace");
}

#[test]
fn cut_link_and_one_way_drops() {
    let lab = Lab::new(2);
    let (n1, n2) = (lab.node(1), lab.node(2));
    let to = SocketAddr::from((n2.addr(), 7000));
    let _listener = n2.in_netns(|| TcpListener::bind(to).unwrap());
    assert!(n1.in_netns(|| can_connect(to)));

    n2.cut_link();
    assert!(!n1.in_netns(|| can_connect(to)), "connected across a cut link");
    n2.restore_link();
    poll_until(SHORT, "node1 to reach node2 after restore_link", || n1.in_netns(|| can_connect(to)).then_some(()));

    // One-way: with node2 dropping inbound IPv4, node2 → node1 datagrams arrive, node1 → node2
    // ones do not.
    let a1 = SocketAddr::from((n1.addr(), 7001));
    let a2 = SocketAddr::from((n2.addr(), 7001));
    let u1 = n1.in_netns(|| UdpSocket::bind(a1).unwrap());
    let u2 = n2.in_netns(|| UdpSocket::bind(a2).unwrap());
    for u in [&u1, &u2] {
        u.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    }
    let mut buf = [0u8; 16];
    n2.drop_inbound();
    u2.send_to(b"out", a1).unwrap();
    assert_eq!(u1.recv(&mut buf).ok(), Some(3), "node2's outbound datagram was lost");
    u1.send_to(b"in", a2).unwrap();
    assert!(u2.recv(&mut buf).is_err(), "node2 received a datagram while dropping inbound");
    n2.heal_drops();
    poll_until(SHORT, "node2 to receive after heal_drops", || {
        u1.send_to(b"in", a2).unwrap();
        u2.recv(&mut buf).ok()
    });

    n1.drop_outbound();
    u1.send_to(b"out", a2).unwrap();
    assert!(u2.recv(&mut buf).is_err(), "node1 sent a datagram while dropping outbound");
    u2.send_to(b"in", a1).unwrap();
    assert_eq!(u1.recv(&mut buf).ok(), Some(2), "node1's inbound datagram was lost");
    n1.heal_drops();
    poll_until(SHORT, "node1 to send after heal_drops", || {
        u1.send_to(b"out", a2).unwrap();
        u2.recv(&mut buf).ok()
    });
}

#[test]
fn kill9_and_restart_keep_the_data_root() {
    let lab = Lab::with_daemons(1);
    let node = lab.node(1);
    let marker = node.data_root().join("netns-tests-marker");
    std::fs::write(&marker, "kept").unwrap();
    let pid = node.daemon_pid().unwrap();

    node.kill9();
    assert!(!netns::pid_alive(pid as i32), "daemon pid {pid} survived kill9");
    assert!(!node.daemon_running());
    assert!(!node.api("GET", "/_ping", None).is_ok_and(|r| r.is_success()), "a killed daemon answered /_ping");

    node.restart_daemon();
    assert!(node.daemon_running());
    assert_ne!(node.daemon_pid(), Some(pid));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "kept");
    assert!(node.log_tail(200).contains("daemon killed with SIGKILL"), "the log keeps both runs");
}

#[test]
fn stale_labs_of_dead_processes_are_swept() {
    // A name as a crashed run would have left it: the pid of a process that has exited.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = format!("shl-{dead_pid}-0-lab");
    // pid 1 is always alive: a parallel run's lab, which must survive.
    let live = format!("shl-1-{}-lab", std::process::id());
    netns::create(&stale).unwrap();
    netns::create(&live).unwrap();
    let stale_dir = std::env::temp_dir().join(format!("shl-{dead_pid}-0"));
    std::fs::create_dir_all(&stale_dir).unwrap();
    // A node's host cgroup (`Node::host_cgroup`) left by the same dead run.
    let cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            (right.starts_with("cgroup2 ") && left.get(3) == Some(&"/")).then(|| std::path::PathBuf::from(left[4]))
        })
        .expect("a cgroup2 mount");
    let stale_group = cgroup2.join("shoal-lab").join(format!("shl-{dead_pid}-0-n1"));
    std::fs::create_dir_all(&stale_group).unwrap();

    netns::sweep_stale(&std::env::temp_dir());

    let listed = netns::list().unwrap();
    let live_kept = listed.contains(&live);
    netns::kill_all_and_delete(&live).unwrap();
    assert!(!listed.contains(&stale), "stale {stale} was not swept");
    assert!(!stale_dir.exists(), "stale {} was not swept", stale_dir.display());
    assert!(!stale_group.exists(), "stale cgroup {} was not swept", stale_group.display());
    assert!(live_kept, "the sweep removed {live}, whose owner is alive");
}

#[test]
fn task_processes_cgroups_and_mounts_go_with_the_lab() {
    let lab = Lab::with_daemons(2);
    lab.form_swarm(1, &[]);
    lab.node(1).service(&["create", "-d", "--name", "web", "--replicas", "4", "shoal/echo", "--http"]).assert_ok();
    let tasks = lab.wait_converged(1, "web", 4);
    let dir = lab.dir().to_path_buf();

    // While the service runs, the harness sees what it must later remove: the tasks' processes
    // (the API's PIDs are the recorded ones, and they answer), their cgroups, their namespaces,
    // and mounts under the lab directory (cgroup hierarchies in the daemons' mount namespaces,
    // /etc/resolv.conf and /etc/hosts in the tasks').
    let records: Vec<_> = lab.nodes().iter().flat_map(|n| n.task_records()).collect();
    let running: Vec<_> = records.iter().filter(|r| r.task_running()).collect();
    assert_eq!(running.len(), 4, "recorded task processes: {records:#?}");
    for task in &tasks {
        assert!(running.iter().any(|r| r.pid.map(|p| p.0) == Some(task.pid)), "API pid {} not recorded", task.pid);
        let (status, body) = task_http_get(task.pid, 80, "/").unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(&format!("web.{}.", task.slot)), "{body}");
    }
    let cgroups: Vec<_> = running.iter().flat_map(|r| r.cgroups.clone()).collect();
    assert!(!cgroups.is_empty() && cgroups.iter().all(|c| c.is_dir()), "task cgroups: {cgroups:?}");
    let namespaces: Vec<String> = tasks.iter().map(|t| ns_of(t.pid, "net").unwrap()).collect();
    let mounts = mounts_anywhere_under(&dir);
    assert!(mounts.iter().any(|m| m.contains("cgroup")), "no cgroup mount seen under {}: {mounts:#?}", dir.display());
    assert!(mounts.iter().any(|m| m.contains("resolv.conf")), "no task mount seen: {mounts:#?}");

    // A daemon killed with -9 leaves its tasks running on purpose (a restarted agent adopts
    // them); the lab must remove them all the same.
    lab.node(2).kill9();
    assert!(lab.node(2).running_task_processes().len() == 2, "node2's tasks died with their daemon");
    drop(lab);

    let live: Vec<_> = records.iter().filter(|r| !r.live_pids().is_empty()).map(|r| (&r.id, r.live_pids())).collect();
    assert!(live.is_empty(), "task processes survived the lab: {live:?}");
    let left: Vec<_> = cgroups.iter().filter(|c| c.exists()).collect();
    assert!(left.is_empty(), "task cgroups survived the lab: {left:?}");
    // Namespace inodes are reused by other labs' new namespaces: only this lab's processes count.
    let mut ours: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let dir_text = dir.to_string_lossy().into_owned();
    ours.push(&dir_text);
    for ns in &namespaces {
        let holders: Vec<_> =
            namespace_holders(ns).into_iter().filter(|(pid, _)| process_mentions(*pid, &ours)).collect();
        assert!(holders.is_empty(), "task namespace {ns} survived the lab: {holders:?}");
    }
    let mounts = mounts_anywhere_under(&dir);
    assert!(mounts.is_empty(), "mounts under {} survived the lab: {mounts:#?}", dir.display());
    assert!(!dir.exists(), "{} survived the lab's drop", dir.display());
}
