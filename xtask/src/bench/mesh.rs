//! `cargo xtask bench mesh`: what the routing mesh costs against the load balancers people would
//! use instead. On a 3-node lab with 3 `shoal/echo --http` tasks (one per node) and one
//! `iperf3 -s` task on node2, the same client measurements run over four paths (each from an
//! outside client namespace of its own), interleaved in
//! the same run:
//!
//! - **direct**: from an outside client like the others (its own address), routed through node1
//!   (plain IP forwarding, a route to the ingress subnet via node1) to the task on node2: no load
//!   balancer, the same hops and the same VXLAN crossing as a balanced flow to a remote task;
//! - **mesh**: from an outside client namespace on the lab bridge to node1's published port
//!   (eBPF, Maglev, no SNAT);
//! - **nft DNAT**: to another port of node1, where an nftables table in node1's
//!   namespace does what kube-proxy's nftables mode does (`numgen random mod N` into a verdict map
//!   of per-endpoint `dnat` chains) plus masquerade, so replies come back through node1;
//! - **HAProxy**: to HAProxy `mode tcp` (round robin) in node1's namespace.
//!
//! Figures: HTTP requests per second on one keep-alive connection and their p50/p99 latency,
//! new connections per second (connect, request, answer, close) and their p50/p99, iperf3 bulk
//! throughput (1 stream), and machine-wide busy CPU per keep-alive request from /proc/stat
//! (noisy: everything else on the machine counts too). Each figure is the median of [`RUNS`]
//! runs; the table gives each path ÷ direct. Reported, never asserted.
//!
//! Scale, in the kernel without the lab: the `mesh-ebpf` test
//! `scale_figures_with_one_and_ten_thousand_services` (release build) times a new flow's first
//! packet, an established flow's packet and one backend change with 1 and with 10,000 published
//! services through BPF_PROG_TEST_RUN, and `cost_per_packet_of_each_program` each program's
//! cost; their printed figures go into the same section.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use netns_tests::mesh::{http_get, KeepAlive, REQUEST_TIMEOUT};
use netns_tests::overlay::Netns;
use netns_tests::{poll_until, Lab, TaskView, SHORT};

use super::{doc_path, machine, ms, quantile, write_section};
use crate::deps::Tool;

const RUNS: usize = 5;
const PHASE: Duration = Duration::from_secs(2);
const IPERF_SECS: u32 = 3;
/// Published (mesh) ports, and the ports nft and HAProxy listen on in node1.
const HTTP_MESH: u16 = 8080;
const HTTP_NFT: u16 = 8180;
const HTTP_HAPROXY: u16 = 8280;
const IPERF: u16 = 5201;
const IPERF_NFT: u16 = 5202;
const IPERF_HAPROXY: u16 = 5203;

const TOOLS: &[Tool] = &[
    Tool { command: "iperf3", package: "iperf3", why: "throughput in `bench mesh`" },
    Tool { command: "haproxy", package: "haproxy", why: "the HAProxy baseline in `bench mesh`" },
    Tool { command: "nft", package: "nftables", why: "the nftables DNAT baseline in `bench mesh`" },
];

const PATHS: [&str; 4] = ["direct", "mesh", "nft DNAT", "HAProxy"];

/// One way to reach the backends: where the client runs and what it connects to.
struct Path {
    name: &'static str,
    client: Netns,
    http: SocketAddrV4,
    iperf: SocketAddrV4,
}

#[derive(Default, Clone)]
struct Samples {
    keepalive_rate: Vec<f64>,
    keepalive_p50: Vec<f64>,
    keepalive_p99: Vec<f64>,
    conn_rate: Vec<f64>,
    conn_p50: Vec<f64>,
    conn_p99: Vec<f64>,
    iperf: Vec<f64>,
    cpu_us: Vec<f64>,
}

pub fn mesh(debug: bool) -> anyhow::Result<()> {
    crate::require_root("bench mesh")?;
    crate::deps::ensure(&[TOOLS])?;
    let scale = scale_figures(debug)?;
    let samples = super::in_lab("mesh", 3, debug, measure)?;
    let report = render(&samples, &scale, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = doc_path();
    write_section(&doc, "mesh", &report)?;
    println!("written to {}", doc.display());
    Ok(())
}

fn measure(lab: &Lab) -> BTreeMap<&'static str, Samples> {
    lab.start_daemons();
    lab.form_swarm(1, &[]);
    let node1 = lab.node(1);
    node1
        .service(&["create", "-d", "--name", "web", "--replicas", "3", "-p", "8080:80", "shoal/echo", "--http"])
        .assert_ok();
    node1
        .service(&[
            "create",
            "-d",
            "--name",
            "iperf",
            "--constraint",
            "node.hostname==node2",
            "-p",
            &format!("{IPERF}:{IPERF}"),
            "--entrypoint",
            &format!("iperf3 -s -p {IPERF}"),
            "shoal/echo",
        ])
        .assert_ok();
    let web = lab.wait_converged(1, "web", 3);
    assert_eq!(lab.placement(1, &web).len(), 3, "one web task per node");
    let iperf_task = lab.wait_converged(1, "iperf", 1).remove(0);
    let hosts = lab.hostnames(1);
    let web_ips: Vec<Ipv4Addr> = web.iter().map(ingress_ip).collect();
    let on_node2 = web.iter().find(|t| hosts[&t.node_id] == "node2").expect("a web task on node2");
    let iperf_ip = ingress_ip(&iperf_task);

    let entry = Netns::node(node1);
    let nft = Nft::install(&entry, node1.addr(), &web_ips, iperf_ip);
    let _haproxy = Haproxy::start(lab, node1.addr(), &web_ips, iperf_ip);
    // A client namespace (and address) per path. The mesh keeps client addresses, so a mesh flow
    // and a flow of another path from the same ip:port to the same task would be one 4-tuple;
    // and the entry node's conntrack keeps a closed mesh flow's entries until the LRU evicts
    // them, which would take the other path's replies for the mesh's (see SPECIFICATION.md).
    let direct = lab.mesh_client();
    let client = lab.mesh_client();
    let nft_client = lab.mesh_client();
    let haproxy_client = lab.mesh_client();
    // The direct path routes the ingress subnet through node1, which forwards.
    let (subnet, len) = netns_tests::overlay::subnet(&lab.inspect_network(1, "ingress"));
    direct.cmd(&["ip", "route", "add", &format!("{subnet}/{len}"), "via", &node1.addr().to_string()]).assert_ok();
    let at = |port| SocketAddrV4::new(node1.addr(), port);
    let paths = [
        Path {
            name: PATHS[0],
            client: direct.netns().clone(),
            http: SocketAddrV4::new(ingress_ip(on_node2), 80),
            iperf: SocketAddrV4::new(iperf_ip, IPERF),
        },
        Path { name: PATHS[1], client: client.netns().clone(), http: at(HTTP_MESH), iperf: at(IPERF) },
        Path { name: PATHS[2], client: nft_client.netns().clone(), http: at(HTTP_NFT), iperf: at(IPERF_NFT) },
        Path {
            name: PATHS[3],
            client: haproxy_client.netns().clone(),
            http: at(HTTP_HAPROXY),
            iperf: at(IPERF_HAPROXY),
        },
    ];
    for p in &paths {
        poll_until(SHORT, &format!("{} to answer at {}", p.name, p.http), || {
            p.client.run(|| http_get(p.http, REQUEST_TIMEOUT)).map_err(|f| f.to_string())
        });
        poll_until(SHORT, &format!("iperf3 over {}", p.name), || iperf(p).map_err(|e| format!("{e:#}")));
    }
    let mut samples: BTreeMap<&'static str, Samples> = BTreeMap::new();
    for run in 1..=RUNS {
        for p in &paths {
            let s = samples.entry(p.name).or_default();
            let cpu = CpuStat::read();
            let (ka_rate, ka_lat) = p.client.run(|| keepalive(p.http));
            let busy = CpuStat::read().busy_secs_since(&cpu);
            let (conn_rate, conn_lat) = p.client.run(|| new_connections(p.http));
            let bits = iperf(p).unwrap_or_else(|e| panic!("{}: {e:#}", p.name));
            let cpu_us = busy * 1e6 / (ka_rate * PHASE.as_secs_f64());
            println!(
                "run {run} {:>9}: keep-alive {ka_rate:.0}/s (p50 {:.3} ms, p99 {:.3} ms, {cpu_us:.1} CPU-µs/req), \
                 new connections {conn_rate:.0}/s (p50 {:.3} ms, p99 {:.3} ms), iperf3 {:.2} Gbit/s",
                p.name,
                ms(q(&ka_lat, 0.5)),
                ms(q(&ka_lat, 0.99)),
                ms(q(&conn_lat, 0.5)),
                ms(q(&conn_lat, 0.99)),
                bits / 1e9
            );
            s.keepalive_rate.push(ka_rate);
            s.keepalive_p50.push(ms(q(&ka_lat, 0.5)));
            s.keepalive_p99.push(ms(q(&ka_lat, 0.99)));
            s.conn_rate.push(conn_rate);
            s.conn_p50.push(ms(q(&conn_lat, 0.5)));
            s.conn_p99.push(ms(q(&conn_lat, 0.99)));
            s.iperf.push(bits);
            s.cpu_us.push(cpu_us);
        }
    }
    println!("nft rule counters after the run:\n{}", nft.counters());
    samples
}

/// [`quantile`], or zero when every request of a phase failed.
fn q(s: &[Duration], p: f64) -> Duration {
    if s.is_empty() {
        Duration::ZERO
    } else {
        quantile(s, p)
    }
}

fn ingress_ip(t: &TaskView) -> Ipv4Addr {
    t.overlay_ip("ingress")
}

/// HTTP requests on one keep-alive connection for [`PHASE`]: rate and per-request latencies.
fn keepalive(to: SocketAddrV4) -> (f64, Vec<Duration>) {
    let mut c = KeepAlive::new(to, REQUEST_TIMEOUT);
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < PHASE {
        let t = Instant::now();
        match c.request() {
            Ok(_) => lat.push(t.elapsed()),
            Err(f) => eprintln!("keep-alive request to {to} failed: {f}"),
        }
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

/// Connect, one HTTP request, close, back to back for [`PHASE`]: rate and latencies of the
/// requests answered (a failure is printed and not counted).
fn new_connections(to: SocketAddrV4) -> (f64, Vec<Duration>) {
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < PHASE {
        let t = Instant::now();
        match http_get(to, REQUEST_TIMEOUT) {
            Ok(_) => lat.push(t.elapsed()),
            Err(f) => eprintln!("new connection to {to} failed: {f}"),
        }
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

/// One iperf3 run (1 stream), the receiver's bits per second.
fn iperf(p: &Path) -> anyhow::Result<f64> {
    let out = p.client.cmd(&[
        "iperf3",
        "-c",
        &p.iperf.ip().to_string(),
        "-p",
        &p.iperf.port().to_string(),
        "-t",
        &IPERF_SECS.to_string(),
        "-O",
        "1",
        "-J",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).with_context(|| out.describe())?;
    anyhow::ensure!(out.success(), "iperf3 failed: {}", json["error"]);
    json["end"]["sum_received"]["bits_per_second"].as_f64().with_context(|| format!("no sum_received: {}", out.stdout))
}

/// Aggregate busy and total jiffies from the first line of /proc/stat.
struct CpuStat {
    busy: u64,
}

impl CpuStat {
    fn read() -> CpuStat {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> =
            text.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
        let busy = v.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).take(8).map(|(_, x)| x).sum();
        CpuStat { busy }
    }

    fn busy_secs_since(&self, before: &CpuStat) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.busy.saturating_sub(before.busy) as f64 / hz
    }
}

/// The kube-proxy-style table in node1's namespace; removed on drop (with the namespace anyway).
struct Nft {
    ns: Netns,
}

impl Nft {
    fn install(ns: &Netns, node: Ipv4Addr, web: &[Ipv4Addr], iperf: Ipv4Addr) -> Nft {
        let endpoints: String = web
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("  chain ep{i} {{ meta l4proto tcp counter dnat ip to {ip}:80; }}\n"))
            .collect();
        let vmap: Vec<String> = (0..web.len()).map(|i| format!("{i} : goto ep{i}")).collect();
        let rules = format!(
            "table ip shoal_bench {{\n{endpoints}  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {node} tcp dport {HTTP_NFT} numgen random mod {} vmap {{ {} }}\n    \
             ip daddr {node} tcp dport {IPERF_NFT} counter dnat ip to {iperf}:{IPERF}\n  }}\n  \
             chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             ct status dnat ip saddr != {node} counter masquerade\n  }}\n}}\n",
            web.len(),
            vmap.join(", ")
        );
        let file = std::env::temp_dir().join(format!("shoal-bench-mesh-{}.nft", std::process::id()));
        std::fs::write(&file, &rules).expect("write the nft rules");
        let out = ns.cmd(&["nft", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        assert!(out.success(), "nft -f:\n{rules}\n{}", out.describe());
        Nft { ns: ns.clone() }
    }

    fn counters(&self) -> String {
        self.ns.cmd(&["nft", "list", "table", "ip", "shoal_bench"]).stdout
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        let _ = self.ns.cmd(&["nft", "delete", "table", "ip", "shoal_bench"]);
    }
}

/// HAProxy in node1's namespace, `mode tcp`, round robin; killed on drop.
struct Haproxy {
    child: Child,
    cfg: std::path::PathBuf,
}

impl Haproxy {
    fn start(lab: &Lab, node: Ipv4Addr, web: &[Ipv4Addr], iperf: Ipv4Addr) -> Haproxy {
        let servers: String = web.iter().enumerate().map(|(i, ip)| format!("  server s{i} {ip}:80\n")).collect();
        let cfg = format!(
            "global\n  maxconn 4000\n  nbthread 1\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend http\n  bind {node}:{HTTP_HAPROXY}\n  default_backend web\n\
             backend web\n  balance roundrobin\n{servers}\
             frontend iperf\n  bind {node}:{IPERF_HAPROXY}\n  default_backend iperf\n\
             backend iperf\n  server i0 {iperf}:{IPERF}\n"
        );
        let path = lab.dir().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.node(1).ns()))
            .args(["--", "haproxy", "-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy");
        Haproxy { child, cfg: path }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // Our own child (nsenter execs haproxy).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.cfg);
    }
}

fn median(s: &[f64]) -> f64 {
    let mut v = s.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

type Figure = (&'static str, fn(&Samples) -> &Vec<f64>, fn(f64) -> String);

/// What the two `mesh-ebpf` tests printed (see the module doc).
#[derive(Default)]
struct Scale {
    /// One service; 10,000 with the same traffic; 10,000 with new flows spread over all.
    first_packet_ns: [u64; 3],
    established_ns: [u64; 2],
    backend_change_ns: [u64; 2],
    setup_10k_ms: u64,
    /// `(program, row, ns)` of `cost_per_packet_of_each_program`.
    per_program: Vec<(String, String, u64)>,
}

/// Runs the two `mesh-ebpf` tests that print the in-kernel figures and reads what they printed.
fn scale_figures(debug: bool) -> anyhow::Result<Scale> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(netns_tests::binary::workspace_root()).args(["test", "-p", "mesh-ebpf", "--lib"]);
    if !debug {
        cmd.arg("--release");
    }
    cmd.args([
        "--",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "tc::tests::scale_figures_with_one_and_ten_thousand_services",
        "tc::tests::cost_per_packet_of_each_program",
    ]);
    eprintln!("xtask: {cmd:?}");
    let out = cmd.output().context("run cargo test -p mesh-ebpf")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "the mesh-ebpf scale tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_scale(&stdout)
}

fn parse_scale(stdout: &str) -> anyhow::Result<Scale> {
    // The test harness prints `test <name> ... ` before the test's first output, on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("mesh-scale ").map(|i| &l[i + "mesh-scale ".len()..]))
        .context("no `mesh-scale` line printed")?;
    let json: serde_json::Value = serde_json::from_str(line).with_context(|| format!("bad mesh-scale line {line}"))?;
    let nums = |k: &str| -> Vec<u64> {
        json[k].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default()
    };
    let (first, established, change) = (nums("first_packet_ns"), nums("established_ns"), nums("backend_change_ns"));
    anyhow::ensure!(
        first.len() == 3 && established.len() == 2 && change.len() == 2,
        "incomplete mesh-scale line {line}"
    );
    let per_program = stdout
        .lines()
        .filter_map(|l| {
            let l = &l[l.find("shoal_")?..];
            let (head, _) = l.split_once(" ns/packet")?;
            let (rest, ns) = head.trim_end().rsplit_once(' ')?;
            let (program, row) = rest.split_once(' ')?;
            Some((program.to_string(), row.trim().to_string(), ns.trim().parse().ok()?))
        })
        .collect();
    Ok(Scale {
        first_packet_ns: [first[0], first[1], first[2]],
        established_ns: [established[0], established[1]],
        backend_change_ns: [change[0], change[1]],
        setup_10k_ms: json["setup_10k_ms"].as_u64().unwrap_or_default(),
        per_program,
    })
}

fn render_scale(scale: &Scale) -> String {
    let [f1, f10k, spread] = scale.first_packet_ns;
    let [e1, e10k] = scale.established_ns;
    let [c1, c10k] = scale.backend_change_ns;
    let ratio = |a: u64, b: u64| b as f64 / a.max(1) as f64;
    let mut t = String::from("| figure (in the kernel, median) | 1 service | 10,000 services |\n|---|---|---|\n");
    t += &format!(
        "| new flow, first packet (SYN: Maglev pick + 2 conntrack entries) | {f1} ns | {f10k} ns ({:.2}×) |\n",
        ratio(f1, f10k)
    );
    t += &format!("| new flows spread over all 10,000 services | | {spread} ns ({:.2}×) |\n", ratio(f1, spread));
    t += &format!("| packet of an established flow | {e1} ns | {e10k} ns ({:.2}×) |\n", ratio(e1, e10k));
    t += &format!(
        "| one backend change (`Mesh::set_service`) | {:.1} µs | {:.1} µs ({:.2}×) |\n",
        c1 as f64 / 1e3,
        c10k as f64 / 1e3,
        ratio(c1, c10k)
    );
    t += &format!(
        "| setting up 9,999 more services (one `Mesh::set_services` batch) | | {:.2} s |\n",
        scale.setup_10k_ms as f64 / 1e3
    );
    let programs: String =
        scale.per_program.iter().map(|(p, row, ns)| format!("| `{p}` | {row} | {ns} ns |\n")).collect();
    format!("{t}\nPer program and packet (one service, median of single test runs):\n\n| program | packet | cost |\n|---|---|---|\n{programs}")
}

/// A text bar chart of one figure's medians per path (the "plot" of the section).
fn bars(
    title: &str,
    samples: &BTreeMap<&'static str, Samples>,
    pick: fn(&Samples) -> &Vec<f64>,
    show: fn(f64) -> String,
) -> String {
    const WIDTH: f64 = 48.0;
    let medians: Vec<(&str, f64)> =
        PATHS.iter().map(|p| (*p, samples.get(p).map(|s| median(pick(s))).unwrap_or(f64::NAN))).collect();
    let top = medians.iter().map(|(_, v)| *v).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let mut out = format!("{title}\n");
    for (path, v) in medians {
        let n = if top > 0.0 && v.is_finite() { (v / top * WIDTH).round() as usize } else { 0 };
        out += &format!("  {path:<9} {:<48} {}\n", "█".repeat(n), show(v));
    }
    out
}

fn render(samples: &BTreeMap<&'static str, Samples>, scale: &Scale, profile: &str) -> String {
    let figures: [Figure; 8] = [
        ("HTTP keep-alive requests", |s| &s.keepalive_rate, |v| format!("{v:.0} /s")),
        ("keep-alive p50", |s| &s.keepalive_p50, |v| format!("{v:.3} ms")),
        ("keep-alive p99", |s| &s.keepalive_p99, |v| format!("{v:.3} ms")),
        ("new connections (connect + request + close)", |s| &s.conn_rate, |v| format!("{v:.0} /s")),
        ("new connection p50", |s| &s.conn_p50, |v| format!("{v:.3} ms")),
        ("new connection p99", |s| &s.conn_p99, |v| format!("{v:.3} ms")),
        ("iperf3 TCP, 1 stream", |s| &s.iperf, |v| format!("{:.2} Gbit/s", v / 1e9)),
        ("busy CPU per keep-alive request (machine-wide)", |s| &s.cpu_us, |v| format!("{v:.1} µs")),
    ];
    let empty = Samples::default();
    let get = |p: &str| samples.get(p).unwrap_or(&empty);
    let mut table = format!("| figure (median of {RUNS}) | {} |\n|---|---|---|---|---|\n", PATHS.join(" | "));
    let mut lines = String::new();
    for (name, pick, show) in figures {
        let base = median(pick(get(PATHS[0])));
        let cells: Vec<String> = PATHS
            .iter()
            .map(|p| {
                let m = median(pick(get(p)));
                if *p == PATHS[0] {
                    show(m)
                } else {
                    format!("{} ({:.2}×)", show(m), m / base)
                }
            })
            .collect();
        table += &format!("| {name} | {} |\n", cells.join(" | "));
        let all: Vec<String> = PATHS
            .iter()
            .map(|p| format!("{p} {}", pick(get(p)).iter().map(|v| show(*v)).collect::<Vec<_>>().join(", ")))
            .collect();
        lines += &format!("- {name}: {}\n", all.join("; "));
    }
    format!(
        "### Routing mesh against nftables DNAT and HAProxy\n\n\
         Command: `sudo cargo xtask bench mesh` ({profile} build) · {}, a 3-node netns lab, 3 `shoal/echo --http` \
         tasks (one per node) and an `iperf3 -s` task on node2. Each path has a client namespace of its own on \
         the lab bridge. *direct*: routed through node1 (IP forwarding, no load balancer) to the web task on \
         node2; *mesh*: to node1's published port; \
         *nft DNAT*: to node1, where nftables does kube-proxy's `numgen random mod 3` verdict map and \
         masquerade; *HAProxy*: to HAProxy `mode tcp` (round robin, 1 thread) in node1. The \
         balanced paths spread over all 3 tasks (2 of 3 flows cross VXLAN). Each phase runs {} s; iperf3 `-t \
         {IPERF_SECS} -O 1`, receiver's figure; ratios are to *direct* (for latencies and CPU, higher is worse). \
         CPU is /proc/stat busy time over the keep-alive phase divided by its requests: the whole machine, other \
         work included.\n\n{table}\n```text\n{}\n{}\n{}```\n\n#### Scale: 1 and 10,000 services\n\nIn the kernel through \
         BPF_PROG_TEST_RUN, no lab (`cargo test --release -p mesh-ebpf scale_figures cost_per_packet -- \
         --nocapture`): 10,000 published ports of 3 backends each, 2,001 single runs per figure (a repeated run \
         would time the rewritten packet, see the test). Not through `kernel.bpf_stats_enabled`: a machine-wide \
         sysctl, which the benchmarks do not change.\n\n{}\nSamples:\n\n{lines}",
        machine(),
        PHASE.as_secs(),
        bars("HTTP keep-alive requests /s", samples, |s| &s.keepalive_rate, |v| format!("{v:.0}")),
        bars("new connections /s", samples, |s| &s.conn_rate, |v| format!("{v:.0}")),
        bars("iperf3 Gbit/s", samples, |s| &s.iperf, |v| format!("{:.2}", v / 1e9)),
        render_scale(scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_path_and_ratios_to_direct() {
        let mut samples = BTreeMap::new();
        for (i, p) in PATHS.iter().enumerate() {
            let f = (i + 1) as f64;
            samples.insert(
                *p,
                Samples {
                    keepalive_rate: vec![1000.0 / f; 5],
                    keepalive_p50: vec![0.1 * f; 5],
                    keepalive_p99: vec![0.2 * f; 5],
                    conn_rate: vec![500.0; 5],
                    conn_p50: vec![1.0; 5],
                    conn_p99: vec![2.0; 5],
                    iperf: vec![10e9; 5],
                    cpu_us: vec![10.0; 5],
                },
            );
        }
        let scale = parse_scale(
            "test tc::tests::cost_per_packet_of_each_program ... shoal_underlay_ingress   established flow, DNAT             581 ns/packet (median of 2001 test runs)\n\
             test tc::tests::scale_figures_with_one_and_ten_thousand_services ... mesh-scale {\"first_packet_ns\":[1000,1100,3000],\"established_ns\":[500,550],\"backend_change_ns\":[90000,120000],\"setup_10k_ms\":107000}\n",
        )
        .unwrap();
        let r = render(&samples, &scale, "release");
        assert!(
            r.contains(
                "| new flow, first packet (SYN: Maglev pick + 2 conntrack entries) | 1000 ns | 1100 ns (1.10×) |"
            ),
            "{r}"
        );
        assert!(r.contains("| one backend change (`Mesh::set_service`) | 90.0 µs | 120.0 µs (1.33×) |"), "{r}");
        assert!(r.contains("| `shoal_underlay_ingress` | established flow, DNAT | 581 ns |"), "{r}");
        // The plot: the fastest path gets the whole bar, the others their share.
        assert!(r.contains(&format!("  direct    {} 1000\n", "█".repeat(48))), "{r}");
        assert!(r.contains(&format!("  HAProxy   {:<48} 250\n", "█".repeat(12))), "{r}");
        assert!(r.contains("| figure (median of 5) | direct | mesh | nft DNAT | HAProxy |"), "{r}");
        assert!(
            r.contains("| HTTP keep-alive requests | 1000 /s | 500 /s (0.50×) | 333 /s (0.33×) | 250 /s (0.25×) |"),
            "{r}"
        );
        assert!(r.contains("| iperf3 TCP, 1 stream | 10.00 Gbit/s | 10.00 Gbit/s (1.00×) |"), "{r}");
    }
}
