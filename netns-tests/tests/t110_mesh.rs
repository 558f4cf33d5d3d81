//! Band 110 (routing mesh, test 1): published ports seen from outside the cluster. A client in
//! its own namespace on the lab bridge (198.19.254.<k>, no node) reaches a service's published
//! port on every node's underlay address, including a node that runs none of its tasks; the
//! answers come from every task and show the client's own address (no SNAT), over TCP (HTTP)
//! and UDP. Scaling 3 → 6 → 1 under load loses no request; `--publish-add` opens a port on every
//! node and `--publish-rm` closes it; a host-mode port answers only on nodes with a task, from
//! that node's task; a `dnsrr` service has no VIP and its name resolves to the task addresses.
//! One client ip:port reaching the same task through two nodes at once keeps both connections.
//!
//! The tests share one 3-node lab (node1 manager) when they run at the same time; each uses its
//! own service names and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use netns_tests::dns::must_dig;
use netns_tests::mesh::{by_task, failure_kinds, Failure, LoadMode, LoadOptions, Outcome};
use netns_tests::overlay::{LabRef, SharedLab};
use netns_tests::{poll_until, Lab, TaskView, SHORT};

static LAB: SharedLab = SharedLab::new();

fn lab() -> LabRef {
    LAB.get(|| {
        let lab = Lab::with_daemons(3);
        lab.form_swarm(1, &[]);
        lab
    })
}

/// Requests per node and protocol in the spread checks: with 3 tasks, the chance that one of
/// them gets none of 30 hashed flows is 3 × (2/3)^30 ≈ 2e-5.
const PER_NODE: usize = 30;

/// `service create` of a 3-task `shoal/echo --http` service publishing `port` → 80, converged.
fn three_echo_tasks(lab: &Lab, name: &str, port: u16) -> Vec<TaskView> {
    let publish = format!("{port}:80");
    lab.node(1)
        .service(&["create", "-d", "--name", name, "--replicas", "3", "-p", &publish, "shoal/echo", "--http"])
        .assert_ok();
    lab.wait_converged(1, name, 3)
}

fn names(tasks: &[TaskView], service: &str) -> BTreeSet<String> {
    tasks.iter().map(|t| format!("{service}.{}.{}", t.slot, t.id)).collect()
}

fn at(lab: &Lab, i: usize, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(lab.node(i).addr(), port)
}

/// Waits until `to` answers `probe` (the mesh is programmed a moment after the API converges).
fn wait_answering(to: SocketAddrV4, what: &str, probe: impl Fn() -> Outcome) {
    poll_until(SHORT, &format!("{what} to answer at {to}"), || probe().map_err(|f| f.to_string()));
}

/// Every outcome is an answer from one of `want`, showing the client's address; all of `want`
/// answered.
#[track_caller]
fn assert_spread(what: &str, outcomes: &[Outcome], want: &BTreeSet<String>, client: Ipv4Addr) {
    let failures = failure_kinds(outcomes);
    assert!(failures.is_empty(), "{what}: failures {failures:?}: {outcomes:?}");
    let seen = by_task(outcomes);
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(&got, want, "{what}: answered by {seen:?}");
    for r in outcomes.iter().flatten() {
        assert!(
            matches!(r.from, SocketAddr::V4(a) if *a.ip() == client),
            "{what}: {} saw the client as {}, not {client} (SNAT?)",
            r.task,
            r.from
        );
    }
}

#[test]
fn published_ports_answer_on_every_node_from_every_task_with_the_client_address() {
    let lab = lab();
    lab.node(1)
        .service(&[
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "-p",
            "8081:80/udp",
            "--constraint",
            "node.hostname!=node3",
            "shoal/echo",
            "--http",
        ])
        .assert_ok();
    let tasks = lab.wait_converged(1, "web", 3);
    let placement = lab.placement(1, &tasks);
    assert_eq!(placement.get("node3"), None, "node3 must run no web task: {placement:?}");
    let want = names(&tasks, "web");
    let client = lab.mesh_client();

    for i in 1..=3 {
        let (tcp, udp) = (at(&lab, i, 8080), at(&lab, i, 8081));
        wait_answering(tcp, "web (HTTP)", || client.http(tcp));
        let http = client.http_n(tcp, PER_NODE);
        assert_spread(&format!("HTTP to node{i} {tcp}"), &http, &want, client.addr);
        wait_answering(udp, "web (UDP)", || client.udp_n(udp, 1).remove(0));
        let outcomes = client.udp_n(udp, PER_NODE);
        assert_spread(&format!("UDP to node{i} {udp}"), &outcomes, &want, client.addr);
        eprintln!("t110: node{i}: HTTP {:?}, UDP {:?}", by_task(&http), by_task(&outcomes));
    }
    // The published TCP port is not a UDP one and the other way round.
    assert!(client.udp_n(at(&lab, 3, 8080), 1)[0].is_err(), "UDP answered on the TCP-only port 8080");
    assert_eq!(client.connects(at(&lab, 3, 8081)), Err(Failure::Refused), "TCP on the UDP-only port 8081");
}

#[test]
fn scaling_up_and_down_under_load_answers_every_request() {
    let lab = lab();
    three_echo_tasks(&lab, "scaled", 8082);
    let client = lab.mesh_client();
    let targets: Vec<SocketAddrV4> = (1..=3).map(|i| at(&lab, i, 8082)).collect();
    for t in &targets {
        wait_answering(*t, "scaled", || client.http(*t));
    }
    let load = client.load(LoadOptions::new(LoadMode::NewConnection, targets.clone()));

    lab.node(1).service(&["scale", "-d", "scaled=6"]).assert_ok();
    let six = names(&lab.wait_converged(1, "scaled", 6), "scaled");
    // Every new task joins the mesh on every node.
    for t in &targets {
        poll_until(SHORT, &format!("all 6 tasks to answer through {t}"), || {
            let seen: BTreeSet<String> = by_task(&client.http_n(*t, 90)).into_keys().collect();
            (seen == six).then_some(()).ok_or(seen)
        });
    }
    lab.node(1).service(&["scale", "-d", "scaled=1"]).assert_ok();
    let one = names(&lab.wait_converged(1, "scaled", 1), "scaled");
    lab.wait_processes_match_api(1, "scaled");
    for t in &targets {
        poll_until(SHORT, &format!("only the last task to answer through {t}"), || {
            let seen: BTreeSet<String> = by_task(&client.http_n(*t, 20)).into_keys().collect();
            (seen == one).then_some(()).ok_or(seen)
        });
    }
    let sent = load.sent();
    poll_until(SHORT, "200 more requests after scaling down", || (load.sent() >= sent + 200).then_some(()));
    let report = load.stop();
    eprintln!("t110: scale 3 → 6 → 1 under load: {}", report.summary());
    assert!(report.sent >= 500, "too few requests to judge: {}", report.summary());
    assert_eq!(report.wrong_source, 0, "{}", report.summary());
    assert_eq!(report.failed(), 0, "requests failed while scaling: {}", report.summary());
}

#[test]
fn publish_add_opens_a_port_on_every_node_and_publish_rm_closes_it() {
    let lab = lab();
    lab.node(1)
        .service(&[
            "create",
            "-d",
            "--name",
            "pub",
            "--replicas",
            "2",
            "-p",
            "8083:80",
            "shoal/echo",
            "--http",
            "--tcp",
            "80",
            "--tcp",
            "81",
        ])
        .assert_ok();
    lab.wait_converged(1, "pub", 2);
    let client = lab.mesh_client();
    for i in 1..=3 {
        assert_eq!(client.connects(at(&lab, i, 9090)), Err(Failure::Refused), "node{i}:9090 before --publish-add");
    }

    lab.node(1).service(&["update", "-d", "--publish-add", "9090:81", "pub"]).assert_ok();
    let tasks = lab.wait_converged(1, "pub", 2);
    let want = names(&tasks, "pub");
    for i in 1..=3 {
        let to = at(&lab, i, 9090);
        poll_until(SHORT, &format!("{to} to answer from both pub tasks"), || {
            let outcomes = client.http_n(to, PER_NODE);
            let seen: BTreeSet<String> = by_task(&outcomes).into_keys().collect();
            (seen == want && outcomes.iter().all(Result::is_ok)).then_some(()).ok_or(outcomes)
        });
    }
    let published = lab.inspect_service(1, "pub")["Endpoint"]["Ports"].clone();
    assert_eq!(published.as_array().map(Vec::len), Some(2), "two published ports: {published}");

    // Like docker's, `--publish-rm` names the target port (and protocol): 81 is 9090's alone.
    lab.node(1).service(&["update", "-d", "--publish-rm", "81", "pub"]).assert_ok();
    for i in 1..=3 {
        let to = at(&lab, i, 9090);
        poll_until(SHORT, &format!("{to} to refuse after --publish-rm"), || {
            let r = client.connects(to);
            (r == Err(Failure::Refused)).then_some(()).ok_or(r)
        });
        // The other port still answers.
        let kept = at(&lab, i, 8083);
        poll_until(SHORT, &format!("{kept} to keep answering"), || client.http(kept).map_err(|f| f.to_string()));
    }
    let ports = lab.inspect_service(1, "pub")["Endpoint"]["Ports"].clone();
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "one published port left: {ports}");
}

#[test]
fn host_mode_ports_answer_only_on_nodes_with_a_task_and_from_that_task() {
    let lab = lab();
    lab.node(1)
        .service(&[
            "create",
            "-d",
            "--name",
            "hostmode",
            "--replicas",
            "2",
            "--publish",
            "mode=host,published=8088,target=80",
            "shoal/echo",
            "--http",
        ])
        .assert_ok();
    let tasks = lab.wait_converged(1, "hostmode", 2);
    let hosts = lab.hostnames(1);
    let on: BTreeMap<String, String> =
        tasks.iter().map(|t| (hosts[&t.node_id].clone(), format!("hostmode.{}.{}", t.slot, t.id))).collect();
    assert_eq!(on.len(), 2, "two host-mode tasks on two nodes: {on:?}");
    let client = lab.mesh_client();
    for i in 1..=3 {
        let to = at(&lab, i, 8088);
        match on.get(&format!("node{i}")) {
            Some(task) => {
                wait_answering(to, "hostmode", || client.http(to));
                let outcomes = client.http_n(to, 10);
                let seen = by_task(&outcomes);
                assert_eq!(seen, BTreeMap::from([(task.clone(), 10)]), "node{i}: only its own task: {outcomes:?}");
            }
            None => {
                let outcomes = client.http_n(to, 5);
                assert!(
                    outcomes.iter().all(|o| o == &Err(Failure::Refused)),
                    "node{i} runs no hostmode task, yet {to} gave {outcomes:?}"
                );
            }
        }
    }
}

#[test]
fn dnsrr_services_have_no_vip_and_resolve_to_their_tasks() {
    let lab = lab();
    lab.create_overlay(1, "rrnet", &["--subnet", "10.110.5.0/24"]);
    let probe = lab.pinned_echo(1, "rrprobe", "rrnet", 3);
    lab.node(1)
        .service(&[
            "create",
            "-d",
            "--name",
            "rr",
            "--replicas",
            "3",
            "--network",
            "rrnet",
            "--endpoint-mode",
            "dnsrr",
            "shoal/echo",
        ])
        .assert_ok();
    let tasks = lab.wait_converged(1, "rr", 3);
    let endpoint = lab.inspect_service(1, "rr")["Endpoint"].clone();
    assert_eq!(endpoint["Spec"]["Mode"], "dnsrr", "{endpoint}");
    let vips = endpoint["VirtualIPs"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(vips, 0, "a dnsrr service has no VIP: {endpoint}");

    let ips: BTreeMap<Ipv4Addr, String> =
        tasks.iter().map(|t| (t.overlay_ip("rrnet"), format!("rr.{}.{}", t.slot, t.id))).collect();
    let want: BTreeSet<Ipv4Addr> = ips.keys().copied().collect();
    poll_until(Duration::from_secs(10), "rr to resolve to its 3 task addresses", || {
        let got = must_dig(probe.pid, &["rr"]).ip_set();
        (got == want).then_some(()).ok_or(got)
    });
    assert_eq!(must_dig(probe.pid, &["tasks.rr"]).ip_set(), want);
    let probe_ip = probe.overlay_ip("rrnet");
    for (ip, task) in &ips {
        let line = probe.netns().tcp_line(SocketAddrV4::new(*ip, 80)).unwrap_or_else(|e| panic!("TCP to {ip}: {e}"));
        let want = format!("{task} on ");
        assert!(line.starts_with(&want) && line.contains(&format!(" from {probe_ip}:")), "{ip} answered {line:?}");
    }
}

/// One client ip:port through two nodes at once — what a proxy with every node as upstream does,
/// since Linux reuses a source port towards another destination. Every node picks the same task
/// for the same client ip:port, so the task would see one 4-tuple for two connections; the
/// backend node gives the second connection another client port. Both connections stay up and
/// answer, and the task sees the client's own address on both.
#[test]
fn one_client_port_through_two_nodes_keeps_both_connections() {
    use netns_tests::mesh::{tcp_connect_from, KeepAlive, REQUEST_TIMEOUT};
    let lab = lab();
    three_echo_tasks(&lab, "pair", 8094);
    let client = lab.mesh_client();
    for i in [1, 2] {
        wait_answering(at(&lab, i, 8094), "pair", || client.http(at(&lab, i, 8094)));
    }
    let remapped_before = remapped_ports(&lab);
    let (a, b) = client.netns().run(|| {
        let first = tcp_connect_from(0, at(&lab, 1, 8094), REQUEST_TIMEOUT).expect("connect through node1");
        let port = first.local_addr().unwrap().port();
        let second = tcp_connect_from(port, at(&lab, 2, 8094), REQUEST_TIMEOUT).expect("connect through node2");
        assert_eq!(second.local_addr().unwrap().port(), port);
        let mut a = KeepAlive::on(first, at(&lab, 1, 8094), REQUEST_TIMEOUT).unwrap();
        let mut b = KeepAlive::on(second, at(&lab, 2, 8094), REQUEST_TIMEOUT).unwrap();
        let mut replies = (Vec::new(), Vec::new());
        for _ in 0..50 {
            replies.0.push(a.request());
            replies.1.push(b.request());
        }
        assert_eq!((a.connections, b.connections), (1, 1), "a connection was lost and made again");
        (replies.0, replies.1)
    });
    let a: Vec<_> = a.into_iter().map(|r| r.expect("request through node1")).collect();
    let b: Vec<_> = b.into_iter().map(|r| r.expect("request through node2")).collect();
    let tasks: BTreeSet<&str> = a.iter().chain(&b).map(|r| r.task.as_str()).collect();
    assert_eq!(tasks.len(), 1, "both connections reach the one task their client ip:port hashes to: {tasks:?}");
    let seen = |rs: &[netns_tests::mesh::Reply]| rs.iter().map(|r| r.from).collect::<BTreeSet<_>>();
    let (seen_a, seen_b) = (seen(&a), seen(&b));
    assert_eq!(seen_a.len(), 1, "{seen_a:?}");
    assert_eq!(seen_b.len(), 1, "{seen_b:?}");
    let (from_a, from_b) = (*seen_a.first().unwrap(), *seen_b.first().unwrap());
    assert_eq!(
        (from_a.ip(), from_b.ip()),
        (client.addr.into(), client.addr.into()),
        "the task saw the client's address"
    );
    assert_ne!(from_a.port(), from_b.port(), "two connections, two 4-tuples at the task");
    assert!(remapped_ports(&lab) > remapped_before, "the backend node counted the remapped port");
}

/// `ClientPortsRemapped` summed over the nodes' `GET /shoal/mesh`.
fn remapped_ports(lab: &Lab) -> u64 {
    (1..=3).map(|i| lab.node(i).api_get("/shoal/mesh")["Stats"]["ClientPortsRemapped"].as_u64().unwrap_or(0)).sum()
}

/// A node's own processes reach a published port on the node's address and on localhost (`curl
/// localhost:8080` on a Swarm node), spread over every task: the tc programs never see what a
/// node sends itself, so the node's socket programs pick the backend at connect time.
#[test]
fn a_node_reaches_published_ports_on_its_own_address_and_on_localhost() {
    let lab = lab();
    let tasks = three_echo_tasks(&lab, "selfie", 8095);
    let want = names(&tasks, "selfie");
    let node = lab.node(2);
    for host in [node.addr().to_string(), "127.0.0.1".to_string()] {
        let script =
            format!("for i in $(seq {PER_NODE}); do curl -s -m 2 http://{host}:8095/ || echo failed; echo; done");
        let seen = poll_until(SHORT, &format!("node2's own requests to {host}:8095 to reach every task"), || {
            let out = node.host_sh(&script);
            let replies: Vec<_> = out
                .stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| netns_tests::mesh::Reply::parse(l).ok_or_else(|| l.to_string()))
                .collect();
            let answered: BTreeSet<String> = replies.iter().flatten().map(|r| r.task.clone()).collect();
            let failed: Vec<&String> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
            if failed.is_empty() && replies.len() == PER_NODE && answered == want {
                Ok(answered)
            } else {
                Err(format!("{} replies, failed {failed:?}, answered by {answered:?}", replies.len()))
            }
        });
        assert_eq!(seen, want);
    }
}
