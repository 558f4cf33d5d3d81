//! Routing-mesh helpers for the t11x tests and `cargo xtask bench mesh`: an outside client (a
//! namespace of its own on the lab bridge), HTTP, TCP and UDP requests with one outcome each,
//! and a load generator that counts every failure by kind.
//!
//! ```text
//!  shl-<pid>-<n>-cl<k>             shl-<pid>-<n>-lab
//!  ┌──────────────────────┐        ┌────────────┐
//!  │ eth0 198.19.254.<k>  ├─veth───┤ br0 ── vn1… │── node1 … nodeN
//!  └──────────────────────┘  vc<k> └────────────┘
//! ```
//!
//! The client stands where a user outside the cluster would: it is no node, it reaches the nodes'
//! underlay addresses (198.18.0.<i>) over the lab bridge, and the echo tasks answer with the
//! client address they saw, so a test can tell that the mesh did not SNAT. Requests are made by
//! this process on threads that entered the client's namespace, so every request has an exact
//! outcome: the reply (task, node, source seen) or the way it failed (refused, reset, timeout…).
//!
//! The client's namespace is named after the lab (`<lab prefix>-cl<k>`), so a crashed run's
//! leftover is swept with the lab's; dropping a [`Client`] removes it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cmd::{run_timeout, sh, CmdOutput};
use crate::node::CLI_TIMEOUT;
use crate::overlay::Netns;
use crate::{netns, Lab, Node, TaskView};

/// Counter for client namespaces and addresses (198.19.254.<k>), unique in this process.
static CLIENTS: AtomicU32 = AtomicU32::new(1);

/// The address of client `k` on the lab bridge: inside 198.18.0.0/15, owned by no node.
pub fn client_addr(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 254, 0)) + k)
}

/// An outside client: its own namespace with one veth onto the lab bridge.
pub struct Client {
    name: String,
    netns: Netns,
    pub addr: Ipv4Addr,
}

impl Lab {
    /// A new outside client on the lab bridge.
    #[track_caller]
    pub fn mesh_client(&self) -> Client {
        let k = CLIENTS.fetch_add(1, Ordering::Relaxed);
        assert!(k < 255, "too many clients in one process");
        let name = format!("{}-cl{k}", self.prefix());
        let addr = client_addr(k);
        let build = || -> anyhow::Result<()> {
            netns::create(&name)?;
            let peer = format!("vc{k}");
            sh(
                "ip",
                &["link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &peer, "netns", self.lab_ns()],
            )?;
            sh("ip", &["-n", self.lab_ns(), "link", "set", &peer, "master", "br0"])?;
            sh("ip", &["-n", self.lab_ns(), "link", "set", &peer, "up"])?;
            sh("ip", &["-n", &name, "addr", "add", &format!("{addr}/15"), "dev", "eth0"])?;
            sh("ip", &["-n", &name, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
            Ok(())
        };
        let built = build();
        let client = Client { netns: Netns::named(&name), name, addr };
        built.unwrap_or_else(|e| panic!("cannot build the mesh client {}: {e:#}", client.name));
        client
    }
}

impl Lab {
    /// The task veths on node `i`'s ingress bridge without the mesh's reply-steering programs
    /// (their pinned tcx links, `<bpffs>/shoal/<node id>/v2/links/tcx-<ifindex>-shoal_task_*`).
    /// Without them, replies to clients routed in through another node leave through this node's
    /// own stack and never reach the client. `via` is a manager to read the ingress VNI from.
    pub fn unsteered_task_veths(&self, via: usize, i: usize) -> Vec<String> {
        let node = self.node(i);
        let vni = crate::overlay::vni(&self.inspect_network(via, "ingress"));
        let links = Netns::node(node).json(&["ip", "-d", "-j", "link", "show"]);
        let links = links.as_array().cloned().unwrap_or_default();
        let Some(bridge) = links.iter().find_map(|l| {
            let vxlan = l["linkinfo"]["info_kind"] == "vxlan" && l["linkinfo"]["info_data"]["id"] == vni;
            vxlan.then(|| l["master"].as_str().map(str::to_string)).flatten()
        }) else {
            return Vec::new();
        };
        let pins = node.bpffs().join("shoal").join(node.node_id()).join("v2").join("links");
        links
            .iter()
            .filter(|l| l["master"].as_str() == Some(&bridge) && l["linkinfo"]["info_kind"] == "veth")
            .filter(|l| {
                let ifindex = l["ifindex"].as_u64().unwrap_or_default();
                ["shoal_task_egress", "shoal_task_ingress"]
                    .iter()
                    .any(|p| !pins.join(format!("tcx-{ifindex}-{p}")).exists())
            })
            .map(|l| l["ifname"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Client {
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn ns_name(&self) -> &str {
        &self.name
    }

    /// One HTTP request on a new connection.
    pub fn http(&self, to: SocketAddrV4) -> Outcome {
        self.netns.run(|| http_get(to, REQUEST_TIMEOUT))
    }

    /// `n` HTTP requests, each on a new connection.
    pub fn http_n(&self, to: SocketAddrV4, n: usize) -> Vec<Outcome> {
        self.netns.run(|| (0..n).map(|_| http_get(to, REQUEST_TIMEOUT)).collect())
    }

    /// `n` UDP requests, each from a new socket (a new flow).
    pub fn udp_n(&self, to: SocketAddrV4, n: usize) -> Vec<Outcome> {
        self.netns.run(|| (0..n).map(|_| udp_request(to, REQUEST_TIMEOUT)).collect())
    }

    /// A plain TCP connection attempt with a short timeout: whether anything accepts at `to`.
    pub fn connects(&self, to: SocketAddrV4) -> Result<(), Failure> {
        self.netns.run(|| {
            TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(1)).map(drop).map_err(Failure::from)
        })
    }

    /// Starts a load generator from this client (see [`Load`]).
    pub fn load(&self, opts: LoadOptions) -> Load {
        Load::start(self.netns.path().to_path_buf(), opts)
    }

    /// A `nsenter --net=<client>` command, e.g. for `iperf3 -c`.
    pub fn cmd(&self, cmd: &[&str]) -> CmdOutput {
        self.netns.cmd(cmd)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Err(e) = netns::kill_all_and_delete(&self.name) {
            eprintln!("netns-tests: cannot delete the client namespace {}: {e:#}", self.name);
        }
    }
}

// ---- outcomes -------------------------------------------------------------------------------

/// How long one request may take, connect and answer together.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What an echo task answered: `<task> on <node> from <client ip:port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub task: String,
    pub node: String,
    pub from: SocketAddr,
}

impl Reply {
    /// Parses the echo line (with or without its newline).
    pub fn parse(line: &str) -> Option<Reply> {
        let (task, rest) = line.trim_end().split_once(" on ")?;
        let (node, from) = rest.split_once(" from ")?;
        Some(Reply { task: task.into(), node: node.into(), from: from.parse().ok()? })
    }

    /// The task's slot, from `<service>.<slot>.<task id>`.
    pub fn slot(&self) -> Option<u64> {
        self.task.split('.').nth(1)?.parse().ok()
    }
}

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The connection was refused (RST to the SYN, or ICMP port unreachable for UDP).
    Refused,
    /// The connection was reset or the peer closed it before the whole answer came.
    Reset,
    /// No answer within the request's time.
    Timeout,
    /// No route, or the host did not answer ARP.
    Unreachable,
    /// An answer that is not the echo's.
    BadReply(String),
    Other(String),
}

impl Failure {
    /// The kind without details, for tallies.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::BadReply(_) => "bad reply",
            Failure::Other(_) => "other",
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => Failure::Reset,
            ErrorKind::UnexpectedEof => Failure::Reset,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Failure::Unreachable,
            _ => Failure::Other(e.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::BadReply(s) => write!(f, "bad reply {s:?}"),
            Failure::Other(s) => write!(f, "{s}"),
            other => f.write_str(other.kind()),
        }
    }
}

pub type Outcome = Result<Reply, Failure>;

/// Tasks that answered, and how often.
pub fn by_task(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in outcomes.iter().flatten() {
        *m.entry(r.task.clone()).or_default() += 1;
    }
    m
}

/// The failures among `outcomes`, by kind.
pub fn failure_kinds(outcomes: &[Outcome]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for f in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        *m.entry(f.kind()).or_default() += 1;
    }
    m
}

// ---- requests (on the calling thread, in whatever namespace it is in) -------------------------

/// One `GET /` on a new connection (`Connection: close`), the answer read to EOF.
pub fn http_get(to: SocketAddrV4, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), timeout)?;
    s.set_nodelay(true)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf)? {
            0 => break,
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(if raw.is_empty() { Failure::Reset } else { Failure::BadReply(text.into_owned()) });
    };
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(Failure::BadReply(head.to_string()));
    }
    Reply::parse(body).ok_or_else(|| Failure::BadReply(body.to_string()))
}

/// One datagram from a new socket, and its answer.
pub fn udp_request(to: SocketAddrV4, timeout: Duration) -> Outcome {
    // Unconnected, so that an answer from the wrong source is seen (and reported) rather than
    // filtered out by the kernel.
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_read_timeout(Some(timeout))?;
    s.send_to(b"hello\n", to)?;
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf)?;
    let line = String::from_utf8_lossy(&buf[..n]);
    if from != SocketAddr::V4(to) {
        return Err(Failure::BadReply(format!("from {from}, not {to}: {line}")));
    }
    Reply::parse(&line).ok_or_else(|| Failure::BadReply(line.into_owned()))
}

/// A TCP connection from local port `port` (0: any) with `SO_REUSEADDR`, so that connections to
/// different destinations can share one source port, as Linux's own port choice for connect()
/// does: how one client ip:port reaches a service through two nodes at once.
pub fn tcp_connect_from(port: u16, to: SocketAddrV4, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let check = |r: libc::c_int| if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) has no preconditions; the descriptor is owned by the stream from here on,
    // which closes it on every early return.
    let stream = unsafe {
        TcpStream::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?)
    };
    let fd = stream.as_raw_fd();
    let one: libc::c_int = 1;
    // Linux bounds a blocking connect() by SO_SNDTIMEO.
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    let (local, remote) = (sockaddr(Ipv4Addr::UNSPECIFIED, port), sockaddr(*to.ip(), to.port()));
    // SAFETY: valid descriptor; each pointer and length describes a live local of that size.
    unsafe {
        let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            int_len,
        ))?;
        let tv_len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        check(libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, (&tv as *const libc::timeval).cast(), tv_len))?;
        check(libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len))?;
        if let Err(e) = check(libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len)) {
            return Err(match e.raw_os_error() {
                Some(libc::EINPROGRESS) => std::io::Error::new(ErrorKind::TimedOut, "connect timed out"),
                _ => e,
            });
        }
    }
    Ok(stream)
}

/// An HTTP/1.1 keep-alive connection: requests one after the other on the same socket.
pub struct KeepAlive {
    to: SocketAddrV4,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Connections opened so far.
    pub connections: u64,
}

impl KeepAlive {
    pub fn new(to: SocketAddrV4, timeout: Duration) -> KeepAlive {
        KeepAlive { to, timeout, stream: None, buf: Vec::new(), connections: 0 }
    }

    /// A keep-alive client on a connection already made (e.g. by [`tcp_connect_from`]).
    pub fn on(stream: TcpStream, to: SocketAddrV4, timeout: Duration) -> std::io::Result<KeepAlive> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(KeepAlive { to, timeout, stream: Some(stream), buf: Vec::new(), connections: 1 })
    }

    /// One request; connects first if needed. A server that announces `Connection: close` (a
    /// graceful end) is followed by a new connection on the next request, and is no failure; a
    /// connection that dies under a request is.
    pub fn request(&mut self) -> Outcome {
        let r = self.exchange();
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn exchange(&mut self) -> Outcome {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&SocketAddr::V4(self.to), self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            self.stream = Some(s);
            self.buf.clear();
            self.connections += 1;
        }
        let s = self.stream.as_mut().expect("connected");
        s.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\n\r\n")?;
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk)? {
                0 => return Err(Failure::Reset),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Failure::BadReply(head.clone()))?;
        while self.buf.len() < head_end + len {
            match s.read(&mut chunk)? {
                0 => return Err(Failure::Reset),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        if head.contains("connection: close") {
            self.stream = None;
        }
        if !head.starts_with("http/1.1 200 ") {
            return Err(Failure::BadReply(head));
        }
        Reply::parse(&body).ok_or(Failure::BadReply(body))
    }
}

// ---- load -----------------------------------------------------------------------------------

/// What a load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// HTTP, a new connection per request.
    NewConnection,
    /// HTTP on one keep-alive connection (a new one after a failure or a graceful close).
    KeepAlive,
    /// One UDP datagram per request, each from a new socket.
    Udp,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Requests go to these in turn.
    pub targets: Vec<SocketAddrV4>,
    pub mode: LoadMode,
    pub timeout: Duration,
    /// A pause between requests (none: back to back).
    pub pace: Option<Duration>,
}

impl LoadOptions {
    pub fn new(mode: LoadMode, targets: Vec<SocketAddrV4>) -> LoadOptions {
        LoadOptions { targets, mode, timeout: REQUEST_TIMEOUT, pace: None }
    }
}

/// One failed request: when it was started (from the load's start), where to, how it failed.
#[derive(Debug, Clone)]
pub struct FailedRequest {
    pub at: Duration,
    pub target: SocketAddrV4,
    pub failure: Failure,
}

/// What a load generator saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    /// Answers per task.
    pub tasks: BTreeMap<String, u64>,
    /// Answers that showed another source than the client's own address (SNAT).
    pub wrong_source: u64,
    pub failures: Vec<FailedRequest>,
    /// Connections opened (keep-alive mode).
    pub connections: u64,
    pub elapsed: Duration,
    /// Per target: (sent, failed).
    pub per_target: BTreeMap<SocketAddrV4, (u64, u64)>,
}

impl LoadReport {
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    pub fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for f in &self.failures {
            *m.entry(f.failure.kind()).or_default() += 1;
        }
        m
    }

    /// `12034 sent, 12034 answered by 6 tasks (…/s), 0 failed {…}` plus the first failures.
    pub fn summary(&self) -> String {
        let rate = self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let mut s = format!(
            "{} sent in {:.1} s ({rate:.0}/s), {} answered by {} tasks, {} failed {:?}, {} with another source, \
             {} connections",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.tasks.len(),
            self.failed(),
            self.kinds(),
            self.wrong_source,
            self.connections
        );
        for f in self.failures.iter().take(10) {
            s += &format!("\n  at {:.3} s to {}: {}", f.at.as_secs_f64(), f.target, f.failure);
        }
        s
    }

    /// The span from the first to the last failure (zero if none or one).
    pub fn failure_window(&self) -> Duration {
        match (self.failures.first(), self.failures.last()) {
            (Some(a), Some(b)) => b.at.saturating_sub(a.at),
            _ => Duration::ZERO,
        }
    }
}

/// A thread in the client's namespace sending requests until stopped. [`Load::sent`] tells how
/// far it got, so a test can wait for a number of requests with a deadline.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
    thread: Option<JoinHandle<LoadReport>>,
}

impl Load {
    fn start(ns: PathBuf, opts: LoadOptions) -> Load {
        assert!(!opts.targets.is_empty(), "a load needs a target");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let thread = {
            let (stop, sent, failed) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
            std::thread::spawn(move || {
                enter_netns(&ns);
                run_load(&opts, started, &stop, &sent, &failed)
            })
        };
        Load { stop, sent, failed, started, thread: Some(thread) }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Time since the load started (the origin of [`FailedRequest::at`]).
    pub fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops after the request under way and returns the report.
    pub fn stop(mut self) -> LoadReport {
        self.finish()
    }

    fn finish(&mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(e)) => std::panic::resume_unwind(e),
            None => LoadReport::default(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.thread.take().map(JoinHandle::join);
        }
    }
}

fn run_load(
    opts: &LoadOptions,
    started: Instant,
    stop: &AtomicBool,
    sent: &AtomicU64,
    failed: &AtomicU64,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut conns: Vec<KeepAlive> = opts.targets.iter().map(|t| KeepAlive::new(*t, opts.timeout)).collect();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let k = i % opts.targets.len();
        i += 1;
        let target = opts.targets[k];
        let at = started.elapsed();
        let outcome = match opts.mode {
            LoadMode::NewConnection => http_get(target, opts.timeout),
            LoadMode::KeepAlive => conns[k].request(),
            LoadMode::Udp => udp_request(target, opts.timeout),
        };
        report.sent += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        let entry = report.per_target.entry(target).or_default();
        entry.0 += 1;
        match outcome {
            Ok(reply) => {
                report.ok += 1;
                *report.tasks.entry(reply.task).or_default() += 1;
                if !matches!(reply.from, SocketAddr::V4(a) if Some(*a.ip()) == local_ip(target)) {
                    report.wrong_source += 1;
                }
            }
            Err(failure) => {
                entry.1 += 1;
                failed.fetch_add(1, Ordering::Relaxed);
                report.failures.push(FailedRequest { at, target, failure });
            }
        }
        if let Some(p) = opts.pace {
            // Pacing between requests is the load's shape, not a wait for a condition.
            std::thread::sleep(p);
        }
    }
    report.elapsed = started.elapsed();
    report.connections = conns.iter().map(|c| c.connections).sum();
    report
}

/// The local address this namespace uses towards `to` (a connected UDP socket's, no packet sent).
fn local_ip(to: SocketAddrV4) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(to).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) => Some(*a.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// Moves the calling thread into the network namespace at `path`, for good.
fn enter_netns(path: &std::path::Path) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    // SAFETY: setns(2) on a valid namespace fd; it changes only this thread's network namespace,
    // and this thread is the load generator's own.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns into {}: {}", path.display(), std::io::Error::last_os_error());
}

// ---- inside a task ----------------------------------------------------------------------------

/// Runs `script` with `sh -c` as a process of task `task` on `node`: in the task's cgroup (so the
/// mesh's socket programs, attached to the tasks' cgroup, see its connections) and its network
/// and mount namespaces, as a process the task started itself would be.
#[track_caller]
pub fn sh_in_task(node: &Node, task: &TaskView, script: &str) -> CmdOutput {
    let record = node
        .task_records()
        .into_iter()
        .find(|r| r.id == task.id)
        .unwrap_or_else(|| panic!("{} has no record of {}", node.hostname(), task.brief()));
    let cgroup = record
        .existing_cgroups()
        .into_iter()
        .find(|d| d.join("cgroup.procs").exists() && !d.to_string_lossy().contains("cgroup-"))
        .or_else(|| record.existing_cgroups().into_iter().next())
        .unwrap_or_else(|| panic!("{} has no cgroup in this mount namespace: {record:?}", task.brief()));
    let enter =
        format!("echo $$ > {}/cgroup.procs && exec nsenter -t {} -n -m -- sh -c \"$0\"", cgroup.display(), task.pid);
    let mut c = Command::new("sh");
    c.args(["-c", &enter, script]);
    run_timeout(&mut c, CLI_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_lines_parse() {
        let r = Reply::parse("web.3.abc on node1 from 198.19.254.1:58234\n").unwrap();
        assert_eq!(r.task, "web.3.abc");
        assert_eq!(r.node, "node1");
        assert_eq!(r.from, "198.19.254.1:58234".parse::<SocketAddr>().unwrap());
        assert_eq!(r.slot(), Some(3));
        assert_eq!(Reply::parse("HTTP/1.1 404"), None);
        assert_eq!(Reply::parse("x on y from nowhere"), None);
    }

    #[test]
    fn io_errors_become_kinds() {
        let k = |e: ErrorKind| Failure::from(std::io::Error::from(e)).kind();
        assert_eq!(k(ErrorKind::ConnectionRefused), "refused");
        assert_eq!(k(ErrorKind::ConnectionReset), "reset");
        assert_eq!(k(ErrorKind::WouldBlock), "timeout");
        assert_eq!(k(ErrorKind::HostUnreachable), "unreachable");
        assert_eq!(client_addr(1), Ipv4Addr::new(198, 19, 254, 1));
    }
}
