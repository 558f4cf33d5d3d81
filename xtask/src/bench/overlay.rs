//! `cargo xtask bench overlay`: what VXLAN costs. On a 2-node lab, the same measurements run
//! between two tasks on one overlay network (node1 → node2 over VXLAN) and between the two node
//! namespaces over the bare underlay, interleaved in the same run:
//!
//! - iperf3 TCP throughput with 1 and with 4 parallel streams (`-t 3 -O 1`, receiver's figure);
//! - a request/response rate: one TCP connection (`TCP_NODELAY`), 1-byte request, 1-byte answer,
//!   back to back for 2 s, made by this process from inside the namespaces (like netperf's
//!   TCP_RR).
//!
//! Each figure is the median of [`RUNS`] runs; the report gives overlay ÷ underlay. Target
//! (issue: overlay networks): ≥ 0.9× on every figure. Reported, never asserted.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use netns_tests::overlay::Netns;
use netns_tests::{poll_until, Lab, SHORT};

use super::{doc_path, machine, write_section};
use crate::deps::Tool;

const RUNS: usize = 5;
const IPERF_SECS: u32 = 3;
const RR_TIME: Duration = Duration::from_secs(2);
const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 5301;
const TARGET: f64 = 0.9;

const TOOLS: &[Tool] = &[Tool { command: "iperf3", package: "iperf3", why: "throughput in `bench overlay`" }];

/// One way between the two nodes: the namespaces at each end and the server's address.
struct Path {
    name: &'static str,
    client: Netns,
    server: Netns,
    server_ip: Ipv4Addr,
}

#[derive(Default)]
struct Samples {
    one_stream: Vec<f64>,
    four_streams: Vec<f64>,
    rr: Vec<f64>,
}

pub fn overlay(debug: bool) -> anyhow::Result<()> {
    crate::require_root("bench overlay")?;
    crate::deps::ensure(&[TOOLS])?;
    let (underlay, vxlan) = super::in_lab("overlay", 2, debug, measure)?;
    let report = render(&underlay, &vxlan, if debug { "debug" } else { "release" });
    println!("\n{report}");
    let doc = doc_path();
    write_section(&doc, "overlay", &report)?;
    println!("written to {}", doc.display());
    Ok(())
}

fn measure(lab: &Lab) -> (Samples, Samples) {
    lab.start_daemons();
    lab.form_swarm(1, &[]);
    lab.create_overlay(1, "bench", &["--subnet", "10.96.0.0/24"]);
    let t1 = lab.pinned_echo(1, "bench1", "bench", 1);
    let t2 = lab.pinned_echo(1, "bench2", "bench", 2);
    let paths = [
        Path {
            name: "underlay",
            client: Netns::node(lab.node(1)),
            server: Netns::node(lab.node(2)),
            server_ip: lab.node(2).addr(),
        },
        Path { name: "overlay", client: t1.netns(), server: t2.netns(), server_ip: t2.overlay_ip("bench") },
    ];
    let mut servers: Vec<IperfServer> = paths.iter().map(|p| IperfServer::start(&p.server)).collect();
    // Warm-up: the first client run also proves each server listens.
    for p in &paths {
        poll_until(SHORT, &format!("iperf3 over the {}", p.name), || iperf(p, 1).map_err(|e| format!("{e:#}")));
    }
    let mut samples = [Samples::default(), Samples::default()];
    for run in 1..=RUNS {
        for (p, s) in paths.iter().zip(samples.iter_mut()) {
            let one = iperf(p, 1).unwrap_or_else(|e| panic!("{}: {e:#}", p.name));
            let four = iperf(p, 4).unwrap_or_else(|e| panic!("{}: {e:#}", p.name));
            let rr = request_response(p).unwrap_or_else(|e| panic!("{}: {e:#}", p.name));
            println!(
                "run {run} {:>8}: 1 stream {:.2} Gbit/s, 4 streams {:.2} Gbit/s, {:.0} req/s",
                p.name,
                one / 1e9,
                four / 1e9,
                rr
            );
            s.one_stream.push(one);
            s.four_streams.push(four);
            s.rr.push(rr);
        }
    }
    for s in &mut servers {
        s.stop();
    }
    let [underlay, vxlan] = samples;
    (underlay, vxlan)
}

/// `iperf3 -s` in a namespace, killed when stopped or dropped.
struct IperfServer(Option<Child>);

impl IperfServer {
    fn start(ns: &Netns) -> IperfServer {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args(["--", "iperf3", "-s", "-p", &IPERF_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s");
        IperfServer(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // Our own child (nsenter execs iperf3).
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One iperf3 run from the path's client to its server; the receiver's bits per second.
fn iperf(p: &Path, streams: u32) -> anyhow::Result<f64> {
    let out = p.client.cmd(&[
        "iperf3",
        "-c",
        &p.server_ip.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &IPERF_SECS.to_string(),
        "-O",
        "1",
        "-P",
        &streams.to_string(),
        "-J",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).with_context(|| out.describe())?;
    anyhow::ensure!(out.success(), "iperf3 failed: {}", json["error"]);
    json["end"]["sum_received"]["bits_per_second"].as_f64().with_context(|| format!("no sum_received: {}", out.stdout))
}

/// Transactions per second of 1-byte request / 1-byte answer on one TCP connection.
fn request_response(p: &Path) -> anyhow::Result<f64> {
    let addr = SocketAddrV4::new(p.server_ip, RR_PORT);
    let listener = p.server.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, RR_PORT))?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = p.client.tcp_connect(addr, Duration::from_secs(5))?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut b = [0u8; 1];
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < RR_TIME {
        c.write_all(&[n as u8])?;
        c.read_exact(&mut b)?;
        anyhow::ensure!(b[0] == n as u8, "answer {} to request {}", b[0], n as u8);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(c);
    server.join().map_err(|_| anyhow::anyhow!("the request/response server panicked"))??;
    Ok(rate)
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

/// One figure of the report: its name, underlay and overlay samples, and how to show a value.
type Row<'a> = (&'a str, &'a Vec<f64>, &'a Vec<f64>, &'a dyn Fn(f64) -> String);

fn render(underlay: &Samples, vxlan: &Samples, profile: &str) -> String {
    let mut table = String::from("| figure | bare underlay | overlay (VXLAN) | overlay ÷ underlay | target | |\n");
    table += "|---|---|---|---|---|---|\n";
    let gbit = |v: f64| format!("{:.2} Gbit/s", v / 1e9);
    let per_sec = |v: f64| format!("{v:.0} /s");
    let rows: [Row; 3] = [
        ("iperf3 TCP, 1 stream", &underlay.one_stream, &vxlan.one_stream, &gbit),
        ("iperf3 TCP, 4 streams", &underlay.four_streams, &vxlan.four_streams, &gbit),
        ("TCP request/response (1 byte each way)", &underlay.rr, &vxlan.rr, &per_sec),
    ];
    let mut samples = String::new();
    for (figure, u, o, show) in rows {
        let (mu, mo) = (median(u), median(o));
        let ratio = mo / mu;
        let verdict = if ratio >= TARGET { "meets target" } else { "MISSES target" };
        table += &format!(
            "| {figure}, median of {} | {} | {} | {ratio:.2}× | ≥ {TARGET}× | {verdict} |\n",
            u.len(),
            show(mu),
            show(mo)
        );
        let list = |s: &Vec<f64>| s.iter().map(|v| show(*v)).collect::<Vec<_>>().join(", ");
        samples += &format!("- {figure}: underlay {}; overlay {}\n", list(u), list(o));
    }
    format!(
        "### Overlay networks: VXLAN against the bare underlay\n\n\
         Command: `sudo cargo xtask bench overlay` ({profile} build) · {}, a 2-node netns lab. The overlay \
         path runs between two `shoal/echo` tasks on one overlay network, on node1 and node2 (task veth, \
         bridge, VXLAN, underlay veth); the underlay path between the two node namespaces themselves \
         (198.18.0.1 → 198.18.0.2), in the same run, interleaved. iperf3 `-t {IPERF_SECS} -O 1`, receiver's \
         figure; request/response: one TCP connection with `TCP_NODELAY`, 1-byte request and answer back to \
         back for {} s.\n\n{table}\nSamples:\n\n{samples}",
        machine(),
        RR_TIME.as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn report_has_ratios_and_verdicts() {
        let u = Samples { one_stream: vec![10e9; 5], four_streams: vec![20e9; 5], rr: vec![1000.0; 5] };
        let o = Samples { one_stream: vec![9.5e9; 5], four_streams: vec![10e9; 5], rr: vec![950.0; 5] };
        let r = render(&u, &o, "release");
        assert!(
            r.contains(
                "| iperf3 TCP, 1 stream, median of 5 | 10.00 Gbit/s | 9.50 Gbit/s | 0.95× | ≥ 0.9× | meets target |"
            ),
            "{r}"
        );
        assert!(r.contains("| 0.50× | ≥ 0.9× | MISSES target |"), "{r}");
        assert!(r.contains("| 1000 /s | 950 /s | 0.95× |"), "{r}");
    }
}
