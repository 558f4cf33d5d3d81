//! Band 100 (embedded DNS, tests 1, 3, 4 and 5): what a task's resolver at 127.0.0.11 answers,
//! asked by a real client (`dig`, and glibc through `getent`) from inside task namespaces on a
//! 3-node lab (node1 manager, node2 and node3 workers) whose daemons forward to a test upstream
//! (`dnsmasq` on the lab bridge, started with `--dns-upstream`).
//!
//! - Names: `web` → its VIP, `tasks.web` → the 3 task IPs rotated between queries, task and slot
//!   names, a network alias, PTR of a task IP and of the VIP, AAAA → NOERROR without answers, TTL
//!   1 s; unknown names NXDOMAIN; outside names answered by the upstream.
//! - Isolation: a task on network `back` gets NXDOMAIN for `front`'s names, and they are never
//!   forwarded (the upstream knows `web` and `tasks.web` too and logs every query it gets).
//! - dnsrr: the service name answers the task IPs, no VIP.
//! - Bad input: 100,000 random datagrams at the resolver inside a task; it answers afterwards and
//!   the daemon's RSS stays bounded.
//!
//! The churn tests (scale, node failure) are in `t101_dns_churn`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use netns_tests::dns::{self, must_dig, DnsAnswer, Upstream};
use netns_tests::overlay::{in_subnet, parse_cidr};
use netns_tests::{poll_until, Lab, TaskView, CLUSTER};
use serde_json::Value;

/// What the test upstream answers: an outside name, and names the cluster also knows, so a
/// forwarded cluster name would come back with an address instead of NXDOMAIN.
const UPSTREAM_NAME: &str = "upstream.test";
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
const DECOY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 201);

const FRONT_SUBNET: &str = "10.100.1.0/24";
const BACK_SUBNET: &str = "10.100.2.0/24";

/// A lab whose daemons forward to a fresh test upstream.
fn lab_with_upstream(nodes: usize) -> (Lab, Upstream) {
    let lab = Lab::new(nodes);
    let upstream = lab.dns_upstream(&[
        (UPSTREAM_NAME, UPSTREAM_IP),
        ("web", DECOY_IP),
        ("tasks.web", DECOY_IP),
        ("www", DECOY_IP),
        ("tasks.nosuch", DECOY_IP),
    ]);
    let args = upstream.daemon_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for node in lab.nodes() {
        node.start_daemon_with(&args);
    }
    lab.form_swarm(1, &[]);
    (lab, upstream)
}

/// The service's VIP on the network with ID `network` (`Endpoint.VirtualIPs[].Addr`).
fn vip(service: &Value, network: &str) -> Option<Ipv4Addr> {
    let vips = service["Endpoint"]["VirtualIPs"].as_array()?;
    let v = vips.iter().find(|v| v["NetworkID"] == network)?;
    Some(parse_cidr(v["Addr"].as_str()?)?.0)
}

fn ips(tasks: &[TaskView], network: &str) -> BTreeSet<Ipv4Addr> {
    tasks.iter().map(|t| t.overlay_ip(network)).collect()
}

#[track_caller]
fn assert_nxdomain(pid: i32, query: &[&str]) {
    let a = must_dig(pid, query);
    assert_eq!(a.status, "NXDOMAIN", "{query:?}: {}", a.raw);
    assert!(a.answers.is_empty(), "{query:?}: {}", a.raw);
}

/// Every answer record carries the resolver's 1 s TTL (Swarm's 600 s kept dead IPs in caches).
#[track_caller]
fn assert_ttl_1(a: &DnsAnswer) {
    assert!(a.answers.iter().all(|r| r.ttl == 1), "TTL is not 1 s: {}", a.raw);
}

#[test]
fn tasks_resolve_names_of_their_networks_only_and_forward_the_rest() {
    let (lab, upstream) = lab_with_upstream(3);
    let front = lab.create_overlay(1, "front", &["--subnet", FRONT_SUBNET]);
    lab.create_overlay(1, "back", &["--subnet", BACK_SUBNET]);
    let front_id = front["Id"].as_str().unwrap().to_string();
    let n1 = lab.node(1);
    n1.service(&[
        "create",
        "-d",
        "--name",
        "web",
        "--network",
        "name=front,alias=www",
        "--replicas",
        "3",
        "shoal/echo",
        "--http",
    ])
    .assert_ok();
    n1.service(&[
        "create",
        "-d",
        "--name",
        "rr",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        "front",
        "--replicas",
        "2",
        "shoal/echo",
    ])
    .assert_ok();
    let web = lab.wait_converged(1, "web", 3);
    let rr = lab.wait_converged(1, "rr", 2);
    let probe_b = lab.pinned_echo(1, "probe-b", "back", 2);

    let web_vip = vip(&lab.inspect_service(1, "web"), &front_id).expect("web has a VIP on front");
    let web_ips = ips(&web, "front");
    let front_net = parse_cidr(FRONT_SUBNET).unwrap();
    assert!(in_subnet(web_vip, front_net) && web_ips.iter().all(|ip| in_subnet(*ip, front_net)));
    assert!(!web_ips.contains(&web_vip));
    let client = &web[0];
    let pid = client.pid;

    // The task's resolv.conf points at the embedded resolver, and glibc resolves through it.
    let conf = dns::task_resolv_conf(pid);
    let lines: Vec<&str> = conf.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(lines.contains(&"nameserver 127.0.0.11"), "{conf}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("nameserver")).count(), 1, "{conf}");
    assert!(lines.iter().any(|l| l.starts_with("options") && l.contains("ndots:0")), "{conf}");
    // The name may take a moment to appear in a just-started task's table.
    let via_glibc = poll_until(CLUSTER, "glibc in the task to resolve web", || {
        dns::getent(pid, "web").and_then(|s| if s.is_empty() { Err("no address".into()) } else { Ok(s) })
    });
    assert_eq!(via_glibc, BTreeSet::from([web_vip]));

    // `web` → its VIP, on every node; the alias too.
    for t in &web {
        let a = must_dig(t.pid, &["web"]);
        assert_eq!((a.status.as_str(), a.ips()), ("NOERROR", vec![web_vip]), "from {}: {}", t.brief(), a.raw);
        assert_ttl_1(&a);
    }
    let alias = must_dig(pid, &["www"]);
    assert_eq!(alias.ips(), [web_vip], "alias www: {}", alias.raw);
    assert_eq!(must_dig(pid, &["WEB."]).ips(), [web_vip], "names are case-insensitive");

    // `tasks.web` → the 3 task IPs, in a rotating order.
    let mut orders = BTreeSet::new();
    for _ in 0..8 {
        let a = must_dig(pid, &["tasks.web"]);
        assert_eq!(a.status, "NOERROR", "{}", a.raw);
        assert_eq!(a.ips().len(), 3, "{}", a.raw);
        assert_eq!(a.ip_set(), web_ips, "{}", a.raw);
        assert_ttl_1(&a);
        orders.insert(a.ips());
    }
    assert!(orders.len() > 1, "tasks.web came back in one order 8 times: {orders:?}");

    // Task names `web.<slot>.<id>` and `web.<slot>`, and PTR back to the task name.
    for t in &web {
        let ip = t.overlay_ip("front");
        let name = format!("web.{}.{}", t.slot, t.id);
        assert_eq!(must_dig(pid, &[&name]).ips(), [ip], "{name}");
        assert_eq!(must_dig(pid, &[&format!("web.{}", t.slot)]).ips(), [ip], "web.{}", t.slot);
        let ptr = must_dig(pid, &["-x", &ip.to_string()]);
        assert_eq!((ptr.status.as_str(), ptr.ptr_names()), ("NOERROR", vec![format!("{name}.")]), "{}", ptr.raw);
    }
    let ptr = must_dig(pid, &["-x", &web_vip.to_string()]);
    assert_eq!(ptr.ptr_names(), ["web."], "PTR of the VIP: {}", ptr.raw);

    // AAAA of a cluster name: it exists, without IPv6 addresses.
    let aaaa = must_dig(pid, &["web", "AAAA"]);
    assert_eq!((aaaa.status.as_str(), aaaa.answers.len()), ("NOERROR", 0), "{}", aaaa.raw);

    // Unknown names; `tasks.<label>` is never forwarded (the upstream would answer it).
    assert_nxdomain(pid, &["nosuch"]);
    assert_nxdomain(pid, &["tasks.nosuch"]);

    // An outside name is forwarded to the node's upstream and answered, over UDP and TCP.
    let out = must_dig(pid, &[UPSTREAM_NAME]);
    assert_eq!((out.status.as_str(), out.ips()), ("NOERROR", vec![UPSTREAM_IP]), "{}", out.raw);
    let out = must_dig(pid, &["+tcp", UPSTREAM_NAME]);
    assert_eq!(out.ips(), [UPSTREAM_IP], "over TCP: {}", out.raw);
    assert_eq!(must_dig(pid, &["+tcp", "tasks.web"]).ip_set(), web_ips, "cluster names over TCP");

    // dnsrr: the service name gives the task IPs, and the service has no VIP.
    let rr_service = lab.inspect_service(1, "rr");
    assert_eq!(vip(&rr_service, &front_id), None, "a dnsrr service got a VIP: {}", rr_service["Endpoint"]);
    let rr_ips = ips(&rr, "front");
    for query in ["rr", "tasks.rr"] {
        let a = must_dig(pid, &[query]);
        assert_eq!((a.status.as_str(), a.ips().len()), ("NOERROR", 2), "{query}: {}", a.raw);
        assert_eq!(a.ip_set(), rr_ips, "{query}: {}", a.raw);
    }

    // Isolation: from a task on `back`, front's names do not exist, and are not forwarded.
    let b = probe_b.pid;
    assert_eq!(must_dig(b, &["probe-b"]).status, "NOERROR", "back's own names resolve on back");
    for name in ["web", "tasks.web", "www", "rr", "tasks.rr", &format!("web.{}.{}", client.slot, client.id)] {
        assert_nxdomain(b, &[name]);
    }
    let ptr = must_dig(b, &["-x", &client.overlay_ip("front").to_string()]);
    assert!(ptr.ptr_names().is_empty(), "back sees a PTR of front's task: {}", ptr.raw);
    assert_eq!(must_dig(b, &[UPSTREAM_NAME]).ips(), [UPSTREAM_IP], "back's task forwards outside names too");

    // The upstream saw the outside names and none of the cluster's (judged against what it saw).
    let asked = upstream.asked();
    assert!(asked.contains(UPSTREAM_NAME) && asked.contains("nosuch"), "upstream saw {asked:?}");
    for name in ["web", "tasks.web", "www", "rr", "tasks.rr", "tasks.nosuch"] {
        assert!(!asked.contains(name), "the cluster name {name} was forwarded: upstream saw {asked:?}");
    }
    assert!(upstream.queries_from_nodes() > 0, "the upstream was asked by the nodes' underlay addresses");
}

/// Test 5: bad input at the resolver inside a task, on a 1-node swarm (the resolver and the
/// daemon are per node).
#[test]
fn random_datagrams_leave_the_resolver_answering_with_bounded_memory() {
    const DATAGRAMS: u64 = 100_000;
    /// Growth of the daemon's RSS during and after the flood that counts as bounded.
    const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;

    let (lab, _upstream) = lab_with_upstream(1);
    lab.create_overlay(1, "front", &["--subnet", FRONT_SUBNET]);
    let n1 = lab.node(1);
    n1.service(&["create", "-d", "--name", "web", "--network", "front", "--replicas", "2", "shoal/echo"]).assert_ok();
    let web = lab.wait_converged(1, "web", 2);
    let pid = web[0].pid;
    let web_ips = ips(&web, "front");
    let ready = poll_until(CLUSTER, "tasks.web to answer both tasks", || {
        let a = dns::dig(pid, &["tasks.web"])?;
        if a.ip_set() == web_ips {
            Ok(a)
        } else {
            Err(a.brief())
        }
    });
    assert_eq!(ready.status, "NOERROR");

    let daemon = n1.daemon_pid().expect("daemon running");
    let rss_before = dns::rss_kib(daemon).expect("daemon RSS");
    let drops_before = dns::udp_rcvbuf_errors(pid).unwrap_or(0);
    // Sample the daemon's RSS while the flood runs.
    let peak = std::sync::atomic::AtomicU64::new(rss_before);
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(rss) = dns::rss_kib(daemon) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                // A sampling interval, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let report = dns::flood(pid, DATAGRAMS, 0x5eed_d15c);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        report
    });
    let drops = dns::udp_rcvbuf_errors(pid).unwrap_or(0).saturating_sub(drops_before);
    assert_eq!(report.sent, DATAGRAMS, "not every datagram could be sent");
    assert!(n1.daemon_running(), "the daemon died under the flood");

    // Valid queries still answer, over UDP and TCP, names and forwards alike.
    let a = must_dig(pid, &["tasks.web"]);
    assert_eq!((a.status.as_str(), a.ip_set()), ("NOERROR", web_ips.clone()), "{}", a.raw);
    assert_eq!(must_dig(pid, &["+tcp", "tasks.web"]).ip_set(), web_ips);
    assert_eq!(must_dig(pid, &[UPSTREAM_NAME]).ips(), [UPSTREAM_IP]);
    assert_nxdomain(pid, &["tasks.nosuch"]);

    let rss_after = dns::rss_kib(daemon).expect("daemon RSS");
    let peak = peak.into_inner().max(rss_after);
    eprintln!(
        "t100: {} datagrams in {:.2} s, {} replies, {} dropped at receive buffers; daemon RSS {} KiB before, \
         peak {} KiB, {} KiB after",
        report.sent,
        report.elapsed.as_secs_f64(),
        report.replies,
        drops,
        rss_before,
        peak,
        rss_after
    );
    // The flood reached the resolver: some of it is parsable enough to get FORMERR, NOTIMP or an answer.
    assert!(report.replies > 0, "the resolver answered none of {} datagrams", report.sent);
    assert!(
        peak <= rss_before + RSS_GROWTH_MAX_KIB,
        "daemon RSS grew from {rss_before} KiB to {peak} KiB under the flood"
    );
}
