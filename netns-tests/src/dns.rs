//! Embedded-DNS helpers for the t10x tests: a real resolver client (`dig`, glibc's `getent`) run
//! inside a task's namespaces, the parsing of what it printed, a `dnsmasq` test upstream on the lab
//! bridge, a flood of random datagrams sent from inside a task, and a process's RSS.
//!
//! `dig` runs through `nsenter -t <pid> -n` (the task's network namespace: 127.0.0.11 there is the
//! task's resolver); `getent` also enters the task's mount namespace (`-m`), so glibc reads the
//! task's own /etc/resolv.conf. The upstream listens on [`UPSTREAM_ADDR`], an address of the lab
//! bridge inside 198.18.0.0/15 that no node has, so every forwarded query stays in the lab; it logs
//! every query it gets, so a test can tell that a cluster name was *not* forwarded.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cmd::{run_timeout, sh, CmdOutput};
use crate::node::CLI_TIMEOUT;
use crate::poll::poll_until;
use crate::{Lab, SHORT};

/// Where the lab's test upstream listens: on the lab bridge `br0`, in the underlay's /15 but above
/// every node address and apart from the overlay tests' server (198.19.255.254).
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 53);

/// The address every task's resolver listens on.
pub const RESOLVER: &str = "127.0.0.11";

/// One resource record of an answer section, as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// What one query got: the response code and the answer section, in order.
#[derive(Debug, Clone)]
pub struct DnsAnswer {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, …
    pub status: String,
    pub answers: Vec<DnsRecord>,
    /// dig's whole output, for failure messages.
    pub raw: String,
}

impl DnsAnswer {
    /// The A records' addresses, in the order the server sent them.
    pub fn ips(&self) -> Vec<Ipv4Addr> {
        self.answers.iter().filter(|r| r.rtype == "A").filter_map(|r| r.data.parse().ok()).collect()
    }

    /// [`DnsAnswer::ips`] as a set.
    pub fn ip_set(&self) -> BTreeSet<Ipv4Addr> {
        self.ips().into_iter().collect()
    }

    /// The PTR records' targets (`web.1.<id>.`).
    pub fn ptr_names(&self) -> Vec<String> {
        self.answers.iter().filter(|r| r.rtype == "PTR").map(|r| r.data.clone()).collect()
    }

    /// `NOERROR [10.0.1.3, 10.0.1.4]`, for messages.
    pub fn brief(&self) -> String {
        let data: Vec<&str> = self.answers.iter().map(|r| r.data.as_str()).collect();
        format!("{} {data:?}", self.status)
    }
}

/// Parses dig's default output: the status from the `->>HEADER<<-` line, records from the
/// `ANSWER SECTION` (up to the next blank line).
pub fn parse_dig(out: &str) -> Result<DnsAnswer, String> {
    let status = out
        .lines()
        .find(|l| l.contains("->>HEADER<<-"))
        .and_then(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .ok_or_else(|| format!("no header in dig's output:\n{out}"))?
        .trim()
        .to_string();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in out.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if !in_answer {
            continue;
        }
        if line.trim().is_empty() || line.starts_with(";;") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, ttl, _class, rtype, data @ ..] = words.as_slice() else {
            return Err(format!("cannot read answer line {line:?}"));
        };
        answers.push(DnsRecord {
            name: name.to_string(),
            ttl: ttl.parse().map_err(|_| format!("bad TTL in {line:?}"))?,
            rtype: rtype.to_string(),
            data: data.join(" "),
        });
    }
    Ok(DnsAnswer { status, answers, raw: out.to_string() })
}

/// Runs `dig @127.0.0.11 +time=2 +tries=1 <query…>` in the network namespace of process `pid` (a
/// task's PID 1), e.g. `dig(pid, &["tasks.web"])`, `dig(pid, &["web", "AAAA"])`, `dig(pid, &["-x",
/// "10.0.1.3"])`, `dig(pid, &["+tcp", "web"])`. `Err` when dig got no answer or printed none.
pub fn dig(pid: i32, query: &[&str]) -> Result<DnsAnswer, String> {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t").arg(pid.to_string()).args(["-n", "--", "dig"]);
    cmd.arg(format!("@{RESOLVER}")).args(["+time=2", "+tries=1"]).args(query);
    let out = run_timeout(&mut cmd, CLI_TIMEOUT);
    if !out.success() {
        return Err(format!("`{}` failed: {}", out.cmdline, out.combined().trim()));
    }
    parse_dig(&out.stdout)
}

/// [`dig`] that panics with dig's output when there is no answer at all.
#[track_caller]
pub fn must_dig(pid: i32, query: &[&str]) -> DnsAnswer {
    dig(pid, query).unwrap_or_else(|e| panic!("dig {query:?} in task pid {pid}: {e}"))
}

/// `getent ahostsv4 <name>` in the network *and* mount namespaces of `pid`: glibc's stub resolver
/// reading the task's own /etc/resolv.conf. Returns the distinct addresses it printed.
pub fn getent(pid: i32, name: &str) -> Result<BTreeSet<Ipv4Addr>, String> {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t").arg(pid.to_string()).args(["-n", "-m", "--", "getent", "ahostsv4", name]);
    let out = run_timeout(&mut cmd, CLI_TIMEOUT);
    if !out.success() {
        return Err(format!("`{}` failed ({}): {}", out.cmdline, out.status, out.combined().trim()));
    }
    Ok(out.stdout.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect())
}

/// The task's /etc/resolv.conf, read in its mount namespace.
#[track_caller]
pub fn task_resolv_conf(pid: i32) -> String {
    let out = crate::services::nsenter(pid, &["-m"], &["cat", "/etc/resolv.conf"]);
    out.assert_ok();
    out.stdout
}

// ---- the test upstream ----------------------------------------------------------------------

/// A `dnsmasq` in the lab namespace on [`UPSTREAM_ADDR`]:53 answering a fixed table, NXDOMAIN for
/// every other name, and logging every query. Killed when dropped (and by the lab's teardown,
/// which kills everything in the lab namespace).
pub struct Upstream {
    child: Child,
    log: PathBuf,
    lab_ns: String,
}

impl Lab {
    /// Starts the test upstream with `names` (each answers its address, subdomains too) and waits
    /// until it answers. Start it before the daemons: they take it as their upstream
    /// ([`Upstream::daemon_args`]).
    #[track_caller]
    pub fn dns_upstream(&self, names: &[(&str, Ipv4Addr)]) -> Upstream {
        let cidr = format!("{UPSTREAM_ADDR}/15");
        sh("ip", &["-n", self.lab_ns(), "addr", "replace", &cidr, "dev", "br0"]).expect("upstream address on br0");
        let log = self.dir().join("dnsmasq.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.lab_ns(), "dnsmasq", "-C", "/dev/null", "--keep-in-foreground"]);
        cmd.args(["--no-resolv", "--no-hosts", "--port=53", "--bind-interfaces", "--pid-file=", "--log-queries"]);
        cmd.arg(format!("--listen-address={UPSTREAM_ADDR}")).arg(format!("--log-facility={}", log.display()));
        for (name, ip) in names {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        // Everything else is NXDOMAIN, so "not a cluster name" has a definite answer.
        cmd.arg("--address=/#/");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        let upstream = Upstream { child, log, lab_ns: self.lab_ns().to_string() };
        if let Some((name, ip)) = names.first() {
            poll_until(SHORT, "the test upstream (dnsmasq) to answer", || {
                let out = upstream.ask(name);
                let answer = parse_dig(&out.stdout)?;
                if answer.ips() == [*ip] {
                    Ok(())
                } else {
                    Err(answer.brief())
                }
            });
        }
        upstream
    }
}

impl Upstream {
    /// The daemon flags that make a node forward to this upstream.
    pub fn daemon_args(&self) -> [String; 2] {
        ["--dns-upstream".to_string(), UPSTREAM_ADDR.to_string()]
    }

    /// Asks the upstream directly, from the lab namespace.
    pub fn ask(&self, name: &str) -> CmdOutput {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.lab_ns, "dig", &format!("@{UPSTREAM_ADDR}"), "+time=2", "+tries=1", name]);
        run_timeout(&mut cmd, CLI_TIMEOUT)
    }

    /// The names dnsmasq was asked about so far (`query[A] web from 198.18.0.1` → `web`),
    /// lower-case.
    pub fn asked(&self) -> BTreeSet<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let rest = &l[l.find("query[")?..];
                let name = rest.split_whitespace().nth(1)?;
                Some(name.trim_end_matches('.').to_ascii_lowercase())
            })
            .collect()
    }

    /// How many queries it received from anyone but the harness (`from 198.18.0.<node>`).
    pub fn queries_from_nodes(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("query[") && l.contains(" from 198.18.")).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- following a name on several tasks -------------------------------------------------------

/// Polls `name` (A) in every task of `probes` (label, pid) every 20 ms until each answers exactly
/// `want`, and returns, per probe, the time from `since` to its first matching answer. Panics after
/// `timeout` with each probe's last answer.
#[track_caller]
pub fn wait_answers(
    probes: &[(String, i32)],
    name: &str,
    want: &BTreeSet<Ipv4Addr>,
    since: Instant,
    timeout: Duration,
) -> Vec<(String, Duration)> {
    wait_answers_by(probes, name, since, timeout, &format!("exactly {want:?}"), |a| {
        a.status == "NOERROR" && a.ips().len() == want.len() && &a.ip_set() == want
    })
}

/// [`wait_answers`] with any acceptance test on each probe's answer.
#[track_caller]
pub fn wait_answers_by(
    probes: &[(String, i32)],
    name: &str,
    since: Instant,
    timeout: Duration,
    what: &str,
    accept: impl Fn(&DnsAnswer) -> bool,
) -> Vec<(String, Duration)> {
    let deadline = Instant::now() + timeout;
    let mut matched: Vec<Option<Duration>> = vec![None; probes.len()];
    let mut last: Vec<String> = vec![String::new(); probes.len()];
    loop {
        for (i, (_, pid)) in probes.iter().enumerate() {
            if matched[i].is_some() {
                continue;
            }
            match dig(*pid, &[name]) {
                Ok(answer) if accept(&answer) => matched[i] = Some(since.elapsed()),
                Ok(answer) => last[i] = answer.brief(),
                Err(e) => last[i] = e,
            }
        }
        if matched.iter().all(Option::is_some) {
            return probes.iter().zip(matched).map(|((label, _), d)| (label.clone(), d.unwrap_or_default())).collect();
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = probes
                .iter()
                .zip(&last)
                .zip(&matched)
                .map(|(((label, _), last), m)| match m {
                    Some(d) => format!("{label}: matched after {d:?}"),
                    None => format!("{label}: {last}"),
                })
                .collect();
            panic!("timed out after {timeout:?} waiting for `{name}` to answer {what} in every probe: {seen:#?}");
        }
        // The poll interval of a measurement, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `node1 0.41 s, node2 0.38 s`, for printed figures.
pub fn figures(times: &[(String, Duration)]) -> String {
    times.iter().map(|(l, d)| format!("{l} {:.2} s", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
}

// ---- bad input ------------------------------------------------------------------------------

/// What [`flood`] did.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    pub sent: u64,
    /// Datagrams that came back from the resolver (answers, FORMERR, SERVFAIL …).
    pub replies: u64,
    pub elapsed: Duration,
}

/// Sends `count` bad datagrams to 127.0.0.11:53 from inside the network namespace of process
/// `pid`: a quarter pure noise (0–600 random bytes), a quarter a valid query with 1–8 bytes
/// changed, a quarter a valid header with random counts over random bytes, a quarter a valid query
/// cut short. Reproducible from `seed`. Counts the datagrams that came back.
pub fn flood(pid: i32, count: u64, seed: u64) -> FloodReport {
    let ns = format!("/proc/{pid}/ns/net");
    crate::netns::in_netns_at(Path::new(&ns), || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket in the task");
        let to = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
        let reader = socket.try_clone().expect("clone the socket");
        reader.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let replies = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let counter = {
            let (replies, stop) = (Arc::clone(&replies), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if reader.recv(&mut buf).is_ok() {
                        replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let mut rng = XorShift(seed | 1);
        let start = Instant::now();
        let mut sent = 0;
        for i in 0..count {
            let datagram = bad_datagram(&mut rng, i);
            if socket.send_to(&datagram, to).is_ok() {
                sent += 1;
            }
        }
        let elapsed = start.elapsed();
        // Late replies for the last datagrams: give the reader one more read timeout.
        let settle = Instant::now();
        let mut seen = replies.load(Ordering::Relaxed);
        while settle.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(200));
            let now = replies.load(Ordering::Relaxed);
            if now == seen {
                break;
            }
            seen = now;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = counter.join();
        FloodReport { sent, replies: replies.load(Ordering::Relaxed), elapsed }
    })
}

/// A well-formed query for `web` A, with `id`.
pub fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn bad_datagram(rng: &mut XorShift, i: u64) -> Vec<u8> {
    let valid = query_bytes(rng.next() as u16, "web", 1);
    match i % 4 {
        0 => {
            let len = rng.below(601);
            (0..len).map(|_| rng.next() as u8).collect()
        }
        1 => {
            let mut q = valid;
            for _ in 0..=rng.below(8) {
                let at = rng.below(q.len() as u64) as usize;
                q[at] = rng.next() as u8;
            }
            q
        }
        2 => {
            let mut q = valid[..12].to_vec();
            for byte in &mut q[4..12] {
                *byte = rng.next() as u8;
            }
            let tail = rng.below(300);
            q.extend((0..tail).map(|_| rng.next() as u8));
            q
        }
        _ => {
            let cut = rng.below(valid.len() as u64) as usize;
            valid[..cut].to_vec()
        }
    }
}

/// xorshift64: enough randomness for garbage, no dependency, reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// `VmRSS` of a process in KiB, if it exists.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// UDP receive-buffer drops counted in the network namespace of `pid` (`/proc/<pid>/net/snmp`,
/// `Udp: … RcvbufErrors`): datagrams the kernel could not queue for any socket there.
pub fn udp_rcvbuf_errors(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|w| w == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIG: &str = "\n; <<>> DiG 9.18.49 <<>> @127.0.0.11 tasks.web\n; (1 server found)\n;; global options: +cmd\n\
;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n\
;; flags: qr rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n\n;; QUESTION SECTION:\n\
;tasks.web.\t\t\tIN\tA\n\n;; ANSWER SECTION:\ntasks.web.\t\t1\tIN\tA\t10.0.1.4\n\
tasks.web.\t\t1\tIN\tA\t10.0.1.3\n\n;; Query time: 0 msec\n;; SERVER: 127.0.0.11#53(127.0.0.11) (UDP)\n";

    #[test]
    fn dig_answers_are_read_in_order() {
        let a = parse_dig(DIG).unwrap();
        assert_eq!(a.status, "NOERROR");
        assert_eq!(a.ips(), [Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 0, 1, 3)]);
        assert_eq!(a.answers[0].ttl, 1);
        assert_eq!(a.answers[0].name, "tasks.web.");
    }

    #[test]
    fn dig_nxdomain_and_ptr() {
        let nx = parse_dig(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n;; flags: qr rd ra;\n").unwrap();
        assert_eq!((nx.status.as_str(), nx.answers.len()), ("NXDOMAIN", 0));
        let ptr = parse_dig(
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 2\n\n;; ANSWER SECTION:\n\
             3.1.0.10.in-addr.arpa. 1 IN PTR web.1.abc.\n\n",
        )
        .unwrap();
        assert_eq!(ptr.ptr_names(), ["web.1.abc."]);
        assert!(parse_dig("connection timed out; no servers could be reached").is_err());
    }

    #[test]
    fn queries_are_well_formed() {
        let q = query_bytes(0x1234, "tasks.web", 1);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x05tasks\x03web\x00\x00\x01\x00\x01");
    }

    #[test]
    fn bad_datagrams_are_reproducible_and_varied() {
        let (mut a, mut b) = (XorShift(7), XorShift(7));
        let xs: Vec<Vec<u8>> = (0..100).map(|i| bad_datagram(&mut a, i)).collect();
        let ys: Vec<Vec<u8>> = (0..100).map(|i| bad_datagram(&mut b, i)).collect();
        assert_eq!(xs, ys);
        let lengths: BTreeSet<usize> = xs.iter().map(Vec::len).collect();
        assert!(lengths.len() > 20, "{lengths:?}");
    }
}
