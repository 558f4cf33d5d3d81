//! One lab node: a network namespace with `eth0` on the underlay, a `shoal daemon` running inside
//! it with its own hostname and data root, and the ways a test reaches it (our CLI, the real
//! docker CLI, raw Engine API calls) or hurts it (kill -9, link down, one-way drops).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::cmd::{run_timeout, sh, CmdOutput};
use crate::http::{self, HttpResponse};
use crate::netns;
use crate::poll::poll_until;
use crate::SHORT;

/// How long one CLI invocation may take before the test calls it hung.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The nftables table the fault helpers own inside a node namespace.
const FAULT_TABLE: &str = "shoal_lab_fault";

/// A node of a [`crate::Lab`]. Methods take `&self` so tests can hold several nodes at once.
pub struct Node {
    /// 1-based; the node's address is `198.18.0.<index>` and its hostname `node<index>`.
    pub index: usize,
    hostname: String,
    ns: String,
    lab_ns: String,
    lab_veth: String,
    addr: Ipv4Addr,
    data_root: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    docker_config: PathBuf,
    bin: PathBuf,
    daemon: Mutex<Option<Child>>,
    daemon_args: Mutex<Vec<String>>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        ns: String,
        lab_ns: String,
        lab_veth: String,
        addr: Ipv4Addr,
        dir: &Path,
        docker_config: PathBuf,
        bin: PathBuf,
    ) -> Node {
        Node {
            index,
            hostname: format!("node{index}"),
            ns,
            lab_ns,
            lab_veth,
            addr,
            data_root: dir.join("data"),
            sock: dir.join("shoal.sock"),
            log: dir.join("daemon.log"),
            docker_config,
            bin,
            daemon: Mutex::new(None),
            daemon_args: Mutex::new(Vec::new()),
        }
    }

    /// The hostname the daemon sees (`node<index>`).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The node's underlay address (on `eth0`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The node's network namespace name.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The cgroup2 group of the node's own processes (`--host-cgroup`), as a hierarchy path: the
    /// mesh serves published ports on the node's address and on loopback to processes in it.
    pub fn host_cgroup(&self) -> String {
        format!("/shoal-lab/{}", self.ns)
    }

    /// That group's directory in this mount namespace, created if needed.
    fn host_cgroup_dir(&self) -> PathBuf {
        let lab_dir = self.data_root.parent().and_then(Path::parent).expect("data root is <lab>/node<i>/data");
        let mount = crate::tasks::cgroup2_mount(lab_dir).expect("find or mount the cgroup2 hierarchy");
        let dir = mount.join(self.host_cgroup().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }

    /// Runs `script` with `sh -c` as a process of the node itself: in its network namespace and
    /// its host cgroup, like `curl localhost:8080` typed on a Swarm node.
    #[track_caller]
    pub fn host_sh(&self, script: &str) -> CmdOutput {
        let enter = format!(
            "echo $$ > {}/cgroup.procs && exec nsenter --net=/run/netns/{} -- sh -c \"$0\"",
            self.host_cgroup_dir().display(),
            self.ns
        );
        let mut c = Command::new("sh");
        c.args(["-c", &enter, script]);
        crate::cmd::run_timeout(&mut c, CLI_TIMEOUT)
    }

    /// Kills what runs in the node's host cgroup and removes it (lab teardown).
    pub(crate) fn remove_host_cgroup(&self) {
        let lab_dir = self.data_root.parent().and_then(Path::parent).expect("data root is <lab>/node<i>/data");
        if let Ok(mount) = crate::tasks::cgroup2_mount(lab_dir) {
            crate::tasks::kill_and_remove_cgroup(&mount.join(self.host_cgroup().trim_start_matches('/')));
        }
    }

    /// Where the daemon's bpf filesystem is mounted (`--bpffs`).
    pub fn bpffs(&self) -> PathBuf {
        self.data_root.with_file_name("bpffs")
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    pub fn sock(&self) -> &Path {
        &self.sock
    }

    /// `unix://<socket>`, for `-H`.
    pub fn host_url(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the running daemon, if one is running.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    // ---- the daemon ---------------------------------------------------------------------

    /// Starts `shoal daemon` inside the node namespace (with its own UTS namespace and hostname)
    /// and waits until it answers `GET /_ping`.
    #[track_caller]
    pub fn start_daemon(&self) {
        self.start_daemon_with(&[]);
    }

    /// Like [`Node::start_daemon`] with extra daemon flags, remembered for restarts.
    #[track_caller]
    pub fn start_daemon_with(&self, extra: &[&str]) {
        *self.daemon_args.lock().unwrap_or_else(PoisonError::into_inner) =
            extra.iter().map(|s| s.to_string()).collect();
        self.spawn_daemon();
        self.wait_ping();
    }

    /// Starts the daemon without waiting for it (see [`Node::wait_ping`]); lets a lab start all
    /// its daemons before waiting for any.
    pub(crate) fn spawn_daemon(&self) {
        let mut slot = self.child();
        assert!(slot.is_none(), "{}: daemon already running", self.hostname);
        std::fs::create_dir_all(&self.data_root).expect("create data root");
        let bpffs = self.ensure_bpffs();
        self.host_cgroup_dir();
        let host_cgroup = self.host_cgroup();
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open daemon log");
        let _ = writeln!(log, "--- netns-tests: starting `shoal daemon` in {} ---", self.ns);
        let log_err = log.try_clone().expect("clone log fd");
        let extra = self.daemon_args.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // `ip netns exec` and `unshare` exec (no fork) and `sh` execs the daemon, so the child's
        // pid is the daemon's: kill -9 on it hits the daemon itself.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "unshare", "--uts", "--", "sh", "-c"])
            .arg(r#"h=$1; bin=$2; shift 2; hostname "$h" && exec "$bin" daemon "$@""#)
            .arg("shoal-node")
            .arg(&self.hostname)
            .arg(&self.bin)
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--bpffs")
            .arg(&bpffs)
            .arg("--host-cgroup")
            .arg(host_cgroup)
            .arg("-H")
            .arg(self.host_url())
            .args(&extra)
            .env("RUST_BACKTRACE", "1")
            .env_remove("SHOAL_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // `SHOAL_LOG=debug` (or any tracing filter) turns up every lab daemon's log.
        if let Ok(level) = std::env::var("SHOAL_LOG") {
            if !extra.iter().any(|a| a.starts_with("--log-level")) {
                cmd.arg("--log-level").arg(level);
            }
        }
        // Own process group: a Ctrl-C meant for `cargo xtask` must not reach lab daemons.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{}: cannot start daemon: {e}", self.hostname));
        *slot = Some(child);
    }

    /// The node's bpf filesystem, mounted in this (the host's) mount namespace so that the mesh's
    /// pinned programs and links outlive a daemon killed with -9, whose own mount namespace
    /// (`ip netns exec` makes one) dies with it. Lab teardown unmounts everything under the lab.
    fn ensure_bpffs(&self) -> PathBuf {
        let at = self.bpffs();
        std::fs::create_dir_all(&at).expect("create bpffs dir");
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(at.to_string_lossy().as_ref()));
        if !mounted {
            crate::cmd::sh("mount", &["-t", "bpf", "bpf", &at.to_string_lossy()]).expect("mount a bpffs for the node");
        }
        at
    }

    /// The daemon slot. Poisoning is ignored: a test that panicked while holding it must still
    /// be able to kill the daemon on drop.
    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.daemon.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the daemon answers `GET /_ping` with 200 `OK`; fails at once if the daemon
    /// exits instead (the lab prints its log).
    #[track_caller]
    pub fn wait_ping(&self) {
        poll_until(SHORT, &format!("{} daemon to answer /_ping", self.hostname), || {
            let exited = self.child().as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("{}: daemon exited ({status}) before answering /_ping", self.hostname);
            }
            match self.api("GET", "/_ping", None) {
                Ok(r) if r.status == 200 && r.text() == "OK" => Ok(()),
                Ok(r) => Err(format!("{} {:?}", r.status, r.text())),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Whether a daemon process is running (started and not exited).
    pub fn daemon_running(&self) -> bool {
        match self.child().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs the daemon and reaps it. Its data root stays as the crash left it.
    pub fn kill9(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
            self.note_in_log("daemon killed with SIGKILL");
        }
    }

    /// SIGTERMs the daemon and waits (up to [`SHORT`]) for it to exit; SIGKILLs it after that.
    pub fn stop_daemon(&self) {
        let Some(mut child) = self.child().take() else { return };
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let exited = crate::poll::try_poll_until(SHORT, || child.try_wait().ok().flatten());
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.note_in_log("daemon stopped with SIGTERM");
    }

    /// Starts the daemon again from the same data root and flags (killing it first if it is
    /// still running), and waits for `/_ping`.
    #[track_caller]
    pub fn restart_daemon(&self) {
        self.kill9();
        self.spawn_daemon();
        self.wait_ping();
    }

    /// The last `lines` lines of the daemon's log (all its runs, separated by harness notes).
    pub fn log_tail(&self, lines: usize) -> String {
        let text =
            std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log at {}: {e})", self.log.display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn note_in_log(&self, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(log, "--- netns-tests: {what} ---");
        }
    }

    // ---- faults -------------------------------------------------------------------------

    /// Takes the lab side of the node's veth down: the node loses the underlay both ways (its
    /// own `eth0` stays up, as when a switch port dies).
    pub fn cut_link(&self) {
        sh("ip", &["-n", &self.lab_ns, "link", "set", &self.lab_veth, "down"]).expect("cut link");
    }

    /// Undoes [`Node::cut_link`].
    pub fn restore_link(&self) {
        sh("ip", &["-n", &self.lab_ns, "link", "set", &self.lab_veth, "up"]).expect("restore link");
    }

    /// Drops every IPv4 packet arriving on the node's `eth0` (ARP still passes, so the node's
    /// own sends keep resolving neighbours: the partition is one-way). nftables netdev ingress
    /// inside the node namespace; programs attached at tc ingress run before it.
    pub fn drop_inbound(&self) {
        self.add_fault_chain("inbound", "ingress");
    }

    /// Drops every IPv4 packet the node sends on `eth0` (netdev egress, inside the node
    /// namespace).
    pub fn drop_outbound(&self) {
        self.add_fault_chain("outbound", "egress");
    }

    /// Drops about `percent` % of the IPv4 packets arriving on the node's `eth0`, at random
    /// (nftables `numgen random`; the kernel here has no netem). Applied on every node, each
    /// direction of every link loses that share independently. Undone by [`Node::heal_drops`].
    pub fn drop_inbound_random(&self, percent: u32) {
        assert!(percent <= 100, "{percent} % is not a share");
        let script = format!(
            "add table netdev {FAULT_TABLE}\n\
             add chain netdev {FAULT_TABLE} lossy {{ type filter hook ingress device \"eth0\" priority -500; policy accept; }}\n\
             flush chain netdev {FAULT_TABLE} lossy\n\
             add rule netdev {FAULT_TABLE} lossy meta protocol ip numgen random mod 100 < {percent} counter drop\n"
        );
        self.nft(&script).unwrap_or_else(|e| panic!("{}: {e:#}", self.hostname));
    }

    /// How many packets the fault rules of this node dropped so far (their counters summed).
    pub fn dropped_packets(&self) -> u64 {
        let out =
            sh("ip", &["netns", "exec", &self.ns, "nft", "list", "table", "netdev", FAULT_TABLE]).unwrap_or_default();
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum()
    }

    /// Removes all drops added by [`Node::drop_inbound`] / [`Node::drop_outbound`].
    pub fn heal_drops(&self) {
        let _ = self.nft(&format!("delete table netdev {FAULT_TABLE}"));
    }

    fn add_fault_chain(&self, chain: &str, hook: &str) {
        let script = format!(
            "add table netdev {FAULT_TABLE}\n\
             add chain netdev {FAULT_TABLE} {chain} {{ type filter hook {hook} device \"eth0\" priority -500; policy accept; }}\n\
             flush chain netdev {FAULT_TABLE} {chain}\n\
             add rule netdev {FAULT_TABLE} {chain} meta protocol ip counter drop\n"
        );
        self.nft(&script).unwrap_or_else(|e| panic!("{}: {e:#}", self.hostname));
    }

    /// Runs an nft script inside the node namespace (never in the root namespace).
    fn nft(&self, script: &str) -> anyhow::Result<()> {
        let path = self.data_root.with_file_name("fault.nft");
        std::fs::write(&path, script)?;
        sh("ip", &["netns", "exec", &self.ns, "nft", "-f", &path.to_string_lossy()]).map(drop)
    }

    /// Runs `f` on a thread inside the node's network namespace (see [`netns::in_netns`]).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        netns::in_netns(&self.ns, f)
    }

    // ---- talking to the node ------------------------------------------------------------

    /// Runs `shoal -H unix://<sock> <args>` (from the root namespace; the socket is a file).
    pub fn shoal(&self, args: &[&str]) -> CmdOutput {
        self.shoal_timeout(args, CLI_TIMEOUT)
    }

    /// [`Node::shoal`] with a custom hang guard.
    pub fn shoal_timeout(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-H").arg(self.host_url()).args(args).env_remove("SHOAL_HOST").env("NO_COLOR", "1");
        run_timeout(&mut cmd, timeout)
    }

    /// Runs the real `docker -H unix://<sock> <args>` with a private `DOCKER_CONFIG`.
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(self.host_url())
            .args(args)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION");
        run_timeout(&mut cmd, CLI_TIMEOUT)
    }

    /// One raw Engine API request over the node's socket (`body` is sent as-is, JSON or not).
    pub fn api(&self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<HttpResponse> {
        http::request(&self.sock, method, path, body, CLI_TIMEOUT)
    }

    /// `GET path`, asserting a 2xx JSON answer.
    #[track_caller]
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        let r = self.api("GET", path, None).unwrap_or_else(|e| panic!("{}: GET {path}: {e}", self.hostname));
        assert!(r.is_success(), "{}: GET {path} -> {} {}", self.hostname, r.status, r.text());
        r.json()
    }

    /// `POST path` with a JSON body.
    #[track_caller]
    pub fn api_post(&self, path: &str, body: &serde_json::Value) -> HttpResponse {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.api("POST", path, Some(&bytes)).unwrap_or_else(|e| panic!("{}: POST {path}: {e}", self.hostname))
    }

    /// `GET /info`.
    #[track_caller]
    pub fn info(&self) -> serde_json::Value {
        self.api_get("/info")
    }

    /// This node's swarm node ID (`/info` → `Swarm.NodeID`); panics if it has none.
    #[track_caller]
    pub fn node_id(&self) -> String {
        let info = self.info();
        let id = info["Swarm"]["NodeID"].as_str().unwrap_or_default().to_string();
        assert!(!id.is_empty(), "{}: no Swarm.NodeID in /info: {info}", self.hostname);
        id
    }

    /// `Swarm.LocalNodeState` from `/info` (`inactive`, `active`, …).
    #[track_caller]
    pub fn local_node_state(&self) -> String {
        self.info()["Swarm"]["LocalNodeState"].as_str().unwrap_or_default().to_string()
    }
}
