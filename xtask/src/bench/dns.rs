//! `cargo xtask bench dns`: the embedded resolver against dnsmasq, serving the same table on
//! loopback in the same run. Shoal's side is the `dns` crate's `serve` example (the real
//! `Resolver`, release build), fed a generated table of [`SERVICES`] services with
//! [`TASKS_PER_SERVICE`] tasks each; dnsmasq gets the same names from a config generated from that
//! table (`host-record=` for the VIPs and task names, with their PTRs, `address=` for
//! `tasks.<service>`). The queries are the four kinds a task asks: a service's VIP, `tasks.`, a
//! task name and a task IP's PTR.
//!
//! - Throughput: dnsperf for [`LOAD_SECS`] s per run, [`RUNS`] runs per server, the servers
//!   alternating; the median queries/s.
//! - Latency under load: dnsperf `-v` (it prints every query's latency; this dnsperf has no
//!   histogram option) at a fixed [`LOADED_QPS`] for both servers, p50 and p99 over all runs.
//! - Unloaded latency: this process sends one query at a time ([`UNLOADED_QUERIES`] per run) and
//!   times each answer; p50 and p99 over all runs.
//!
//! Targets (issue: embedded DNS): ≥ 1.0× dnsmasq's queries/s, p99 ≤ 1 ms unloaded. Reported,
//! never asserted.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netns_tests::{poll_until, SHORT};

use super::{doc_path, machine, ms, quantile, write_section};
use crate::deps::Tool;

const RUNS: usize = 5;
const LOAD_SECS: u32 = 5;
const LATENCY_SECS: u32 = 2;
const LOADED_QPS: u32 = 10_000;
const UNLOADED_QUERIES: usize = 2_000;
const SERVICES: usize = 100;
const TASKS_PER_SERVICE: usize = 3;
const NETWORK: &str = "bench-net";
const PORT: u16 = 5300;
const SHOAL_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const DNSMASQ_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const TARGET_RATIO: f64 = 1.0;
const TARGET_P99: Duration = Duration::from_millis(1);

const TOOLS: &[Tool] = &[
    Tool { command: "dnsperf", package: "dnsperf", why: "load in `bench dns`" },
    Tool { command: "dnsmasq", package: "dnsmasq-base", why: "the baseline resolver in `bench dns`" },
];

/// One server's figures over all runs.
#[derive(Default)]
struct Figures {
    qps: Vec<f64>,
    lost: Vec<f64>,
    loaded: Vec<Duration>,
    unloaded: Vec<Duration>,
    codes: String,
}

pub fn run(debug: bool) -> anyhow::Result<()> {
    crate::deps::ensure(&[TOOLS])?;
    let serve = build_serve(!debug)?;
    let dir = netns_tests::binary::target_dir().join("bench-dns");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let table = Table::generate();
    std::fs::write(dir.join("records.json"), table.records_json())?;
    std::fs::write(dir.join("dnsmasq.conf"), table.dnsmasq_conf())?;
    std::fs::write(dir.join("queries.txt"), table.dnsperf_queries())?;

    let mut shoal = Server::start(
        "shoal",
        SHOAL_ADDR,
        Command::new(&serve)
            .arg(format!("{SHOAL_ADDR}:{PORT}"))
            .arg(dir.join("records.json"))
            .arg(NETWORK)
            .stderr(log_file(&dir, "serve.log")?),
    )?;
    let mut dnsmasq = Server::start(
        "dnsmasq",
        DNSMASQ_ADDR,
        Command::new("dnsmasq")
            .arg("-C")
            .arg(dir.join("dnsmasq.conf"))
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--pid-file="])
            .arg(format!("--port={PORT}"))
            .arg(format!("--listen-address={DNSMASQ_ADDR}"))
            .arg(format!("--log-facility={}", dir.join("dnsmasq.log").display()))
            .stderr(log_file(&dir, "dnsmasq.stderr")?),
    )?;
    let probe = table.probe();
    for server in [&shoal, &dnsmasq] {
        server.check(&probe)?;
    }

    let queries = dir.join("queries.txt");
    let (mut ours, mut theirs) = (Figures::default(), Figures::default());
    for run in 0..RUNS {
        // Alternate who goes first, so a drift of the machine hits both alike.
        let order: [(&mut Server, &mut Figures); 2] = if run % 2 == 0 {
            [(&mut shoal, &mut ours), (&mut dnsmasq, &mut theirs)]
        } else {
            [(&mut dnsmasq, &mut theirs), (&mut shoal, &mut ours)]
        };
        for (server, figures) in order {
            server.alive()?;
            let (qps, lost, codes) = dnsperf_throughput(server.addr, &queries)?;
            figures.qps.push(qps);
            figures.lost.push(lost);
            figures.codes = codes;
            figures.loaded.extend(dnsperf_latencies(server.addr, &queries)?);
            figures.unloaded.extend(unloaded(server.addr, &table.wire_queries())?);
            eprintln!("xtask: bench dns run {}/{RUNS}: {} {qps:.0} queries/s", run + 1, server.name);
        }
    }
    drop((shoal, dnsmasq));

    let report = render(&ours, &theirs, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = doc_path();
    write_section(&doc, "dns", &report)?;
    println!("written to {}", doc.display());
    Ok(())
}

fn build_serve(release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = crate::cargo();
    cmd.args(["build", "-p", "dns", "--example", "serve"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!("xtask: cargo build -p dns --example serve{}", if release { " --release" } else { "" });
    let status = cmd.status()?;
    if !status.success() {
        bail!("`cargo build -p dns --example serve` failed ({status})");
    }
    let bin = netns_tests::binary::target_dir().join(if release { "release" } else { "debug" }).join("examples/serve");
    anyhow::ensure!(bin.is_file(), "built the serve example but {} is missing", bin.display());
    Ok(bin)
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("create {}", dir.join(name).display()))
}

// ---- the table, in three spellings ------------------------------------------------------------

struct Service {
    name: String,
    vip: Ipv4Addr,
    tasks: Vec<(String, Ipv4Addr)>,
}

struct Table {
    services: Vec<Service>,
}

impl Table {
    fn generate() -> Table {
        let services = (0..SERVICES)
            .map(|i| {
                let name = format!("svc{i}");
                let tasks = (1..=TASKS_PER_SERVICE)
                    .map(|slot| {
                        // Task IDs are 25 lower-case alphanumerics, like swarmkit's.
                        let id = format!("{:0>25}", format!("t{i}x{slot}"));
                        (format!("{name}.{slot}.{id}"), Ipv4Addr::new(10, 201, i as u8, slot as u8))
                    })
                    .collect();
                Service { vip: Ipv4Addr::new(10, 200, (i / 250) as u8, (i % 250 + 1) as u8), name, tasks }
            })
            .collect();
        Table { services }
    }

    /// A serialized `dns::Records`.
    fn records_json(&self) -> String {
        let services: Vec<serde_json::Value> = self
            .services
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "network_id": NETWORK, "vip": s.vip.to_string() }))
            .collect();
        let tasks: Vec<serde_json::Value> = self
            .services
            .iter()
            .flat_map(|s| {
                s.tasks.iter().map(|(task, ip)| {
                    let slot = task.rsplit_once('.').map(|(slot, _)| slot.to_string());
                    serde_json::json!({
                        "service_name": s.name, "network_id": NETWORK, "ip": ip.to_string(),
                        "task_name": task, "slot_name": slot, "running": true,
                    })
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({ "services": services, "tasks": tasks }))
            .expect("serialize records")
    }

    fn dnsmasq_conf(&self) -> String {
        let mut conf = String::new();
        for s in &self.services {
            conf.push_str(&format!("host-record={},{}\n", s.name, s.vip));
            for (task, ip) in &s.tasks {
                conf.push_str(&format!("address=/tasks.{}/{ip}\nhost-record={task},{ip}\n", s.name));
            }
        }
        conf
    }

    /// (name, type) pairs: per service its name, `tasks.`, its first task's name and that task's PTR.
    fn queries(&self) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for s in &self.services {
            let (task, ip) = &s.tasks[0];
            let [a, b, c, d] = ip.octets();
            out.push((s.name.clone(), "A"));
            out.push((format!("tasks.{}", s.name), "A"));
            out.push((task.clone(), "A"));
            out.push((format!("{d}.{c}.{b}.{a}.in-addr.arpa"), "PTR"));
        }
        out
    }

    fn dnsperf_queries(&self) -> String {
        self.queries().iter().map(|(name, qtype)| format!("{name} {qtype}\n")).collect()
    }

    fn wire_queries(&self) -> Vec<Vec<u8>> {
        self.queries()
            .iter()
            .enumerate()
            .map(|(i, (name, qtype))| {
                netns_tests::dns::query_bytes(i as u16, name, if *qtype == "PTR" { 12 } else { 1 })
            })
            .collect()
    }

    /// A query both servers must answer with this address: the first service's VIP.
    fn probe(&self) -> (Vec<u8>, Ipv4Addr) {
        (netns_tests::dns::query_bytes(7, &self.services[0].name, 1), self.services[0].vip)
    }
}

// ---- servers ------------------------------------------------------------------------------------

struct Server {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

impl Server {
    fn start(name: &'static str, ip: Ipv4Addr, cmd: &mut Command) -> anyhow::Result<Server> {
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().with_context(|| format!("start {name}"))?;
        Ok(Server { name, addr: SocketAddr::from((ip, PORT)), child })
    }

    /// Waits until the server answers the probe with its address.
    fn check(&self, (query, want): &(Vec<u8>, Ipv4Addr)) -> anyhow::Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let want = want.octets();
        poll_until(SHORT, &format!("{} on {} to answer", self.name, self.addr), || {
            socket.send_to(query, self.addr).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf).map_err(|e| e.to_string())?;
            // The answer's last four bytes are the first A record's address.
            (n >= 16 && buf[n - 4..n] == want).then_some(()).ok_or_else(|| format!("answer {:?}", &buf[..n]))
        });
        Ok(())
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status})", self.name);
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- measuring ------------------------------------------------------------------------------------

fn dnsperf(addr: SocketAddr, queries: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(extra)
        .output()
        .context("run dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("dnsperf failed ({}): {}{}", out.status, text, String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// Queries/s, the share lost (%), and the response codes, from one dnsperf run at full load.
fn dnsperf_throughput(addr: SocketAddr, queries: &Path) -> anyhow::Result<(f64, f64, String)> {
    let secs = LOAD_SECS.to_string();
    let text = dnsperf(addr, queries, &["-l", &secs, "-c", "4", "-q", "200", "-t", "1"])?;
    let field = |label: &str| text.lines().find_map(|l| l.trim().strip_prefix(label)).map(str::trim);
    let qps = field("Queries per second:").and_then(|v| v.parse().ok()).context("no queries/s in dnsperf's output")?;
    let lost = field("Queries lost:")
        .and_then(|v| v.split(['(', '%']).nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let codes = field("Response codes:").unwrap_or("?").to_string();
    Ok((qps, lost, codes))
}

/// Every query's latency in one dnsperf `-v` run at [`LOADED_QPS`] (`> NOERROR svc1 A 0.000132`).
fn dnsperf_latencies(addr: SocketAddr, queries: &Path) -> anyhow::Result<Vec<Duration>> {
    let (secs, qps) = (LATENCY_SECS.to_string(), LOADED_QPS.to_string());
    let text = dnsperf(addr, queries, &["-v", "-l", &secs, "-Q", &qps, "-c", "4", "-t", "1"])?;
    let samples: Vec<Duration> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    anyhow::ensure!(!samples.is_empty(), "dnsperf -v printed no latencies");
    Ok(samples)
}

/// One query at a time from this process; each answer timed.
fn unloaded(addr: SocketAddr, queries: &[Vec<u8>]) -> anyhow::Result<Vec<Duration>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = [0u8; 4096];
    let mut samples = Vec::with_capacity(UNLOADED_QUERIES);
    for query in queries.iter().cycle().take(UNLOADED_QUERIES) {
        let start = Instant::now();
        socket.send_to(query, addr)?;
        loop {
            let n = socket.recv(&mut buf).with_context(|| format!("no answer from {addr}"))?;
            // Skip a late answer to an earlier query.
            if n >= 2 && buf[..2] == query[..2] {
                break;
            }
        }
        samples.push(start.elapsed());
    }
    Ok(samples)
}

// ---- the report ---------------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn render(ours: &Figures, theirs: &Figures, build: &str) -> String {
    let qps = (median(&ours.qps), median(&theirs.qps));
    let ratio = qps.0 / qps.1;
    let q = |s: &[Duration], p: f64| if s.is_empty() { f64::NAN } else { ms(quantile(s, p)) };
    let p99_unloaded = if ours.unloaded.is_empty() { Duration::MAX } else { quantile(&ours.unloaded, 0.99) };
    let mut out = String::new();
    out.push_str("### DNS: the embedded resolver against dnsmasq\n\n");
    out.push_str(&format!(
        "Command: `cargo xtask bench dns` ({build} build of `dns --example serve`) · {} · both servers on \
         loopback ({SHOAL_ADDR} and {DNSMASQ_ADDR}, port {PORT}), {SERVICES} services × {TASKS_PER_SERVICE} tasks, \
         {} distinct queries (VIP, `tasks.`, task name, PTR).\n\n",
        machine(),
        SERVICES * 4
    ));
    out.push_str("| figure | Shoal | dnsmasq | Shoal ÷ dnsmasq | target | |\n|---|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| queries/s, median of {RUNS} × {LOAD_SECS} s (dnsperf -c 4 -q 200) | {:.0} | {:.0} | {ratio:.2}× | ≥ {TARGET_RATIO:.1}× | {} |\n",
        qps.0,
        qps.1,
        if ratio >= TARGET_RATIO { "meets target" } else { "MISSES target" }
    ));
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (q(&ours.loaded, p), q(&theirs.loaded, p));
        out.push_str(&format!(
            "| latency at {LOADED_QPS} queries/s, {label} (dnsperf -v) | {a:.3} ms | {b:.3} ms | {:.2}× | | |\n",
            a / b
        ));
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (q(&ours.unloaded, p), q(&theirs.unloaded, p));
        let (target, verdict) =
            if p == 0.99 { ("≤ 1 ms", super::verdict(p99_unloaded, TARGET_P99)) } else { ("", "") };
        out.push_str(&format!(
            "| unloaded latency (one query at a time), {label} | {a:.3} ms | {b:.3} ms | {:.2}× | {target} | {verdict} |\n",
            a / b
        ));
    }
    let samples = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    out.push_str(&format!(
        "\nSamples (queries/s): Shoal {}; dnsmasq {}. Lost (%, last run): Shoal {:.2}, dnsmasq {:.2}. Response \
         codes (last run): Shoal {}; dnsmasq {}. dnsperf 2.10 has no latency histogram, so percentiles under load \
         come from its per-query `-v` lines ({} and {} samples); unloaded latency is {UNLOADED_QUERIES} queries \
         per run sent one at a time by xtask.\n",
        samples(&ours.qps),
        samples(&theirs.qps),
        ours.lost.last().copied().unwrap_or(f64::NAN),
        theirs.lost.last().copied().unwrap_or(f64::NAN),
        ours.codes,
        theirs.codes,
        ours.loaded.len(),
        theirs.loaded.len(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_table_name_the_same_things() {
        let table = Table::generate();
        let records: serde_json::Value = serde_json::from_str(&table.records_json()).unwrap();
        assert_eq!(records["services"].as_array().unwrap().len(), SERVICES);
        assert_eq!(records["tasks"].as_array().unwrap().len(), SERVICES * TASKS_PER_SERVICE);
        assert_eq!(records["tasks"][0]["slot_name"], "svc0.1");
        let conf = table.dnsmasq_conf();
        assert!(conf.starts_with("host-record=svc0,10.200.0.1\naddress=/tasks.svc0/10.201.0.1\n"), "{conf}");
        assert_eq!(conf.lines().count(), SERVICES * (1 + 2 * TASKS_PER_SERVICE));
        let queries = table.dnsperf_queries();
        assert!(queries.contains("1.0.201.10.in-addr.arpa PTR\n"), "{queries}");
        assert_eq!(queries.lines().count(), SERVICES * 4);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }
}
