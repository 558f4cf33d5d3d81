//! A lab: the underlay namespace with its bridge, the node namespaces, their directories, and
//! the guarantee that all of it disappears on drop.
//!
//! ```text
//!  shl-<pid>-<n>-lab            shl-<pid>-<n>-n1 … -nN
//!  ┌────────────────────┐       ┌──────────────────────────────┐
//!  │ br0 (up)           │       │ eth0 198.18.0.1/15, lo       │
//!  │  ├─ vn1 ───────────┼─veth──┤ shoal daemon (hostname node1)│
//!  │  ├─ vn2 …          │       └──────────────────────────────┘
//! ```
//!
//! Each node's directory (`<lab dir>/node<i>/`) holds `data/` (the daemon's `--data-root`),
//! `shoal.sock` and `daemon.log`. When a test panics, dropping the lab prints each daemon's log
//! tail before removing everything: daemons, task processes (which survive their daemon on
//! purpose), task cgroups, mounts under the lab directory, namespaces, files.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use anyhow::Context;

use crate::binary::shoal_bin;
use crate::cmd::sh;
use crate::netns;
use crate::node::Node;
use crate::tasks;

/// How many log lines per node a failing test prints.
const LOG_TAIL_LINES: usize = 80;

/// How to make a lab. [`Lab::new`] covers tests; `cargo xtask` makes persistent labs with a
/// fixed prefix and a directory under `target/`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub nodes: usize,
    /// Namespace name prefix; `None` for a unique `shl-<pid>-<counter>`.
    pub prefix: Option<String>,
    /// Directory for node data, sockets and logs; `None` for `<tmp>/<prefix>`.
    pub dir: Option<PathBuf>,
    /// The `shoal` binary; `None` for [`shoal_bin`].
    pub bin: Option<PathBuf>,
}

impl LabOptions {
    pub fn nodes(n: usize) -> LabOptions {
        LabOptions { nodes: n, prefix: None, dir: None, bin: None }
    }
}

pub struct Lab {
    prefix: String,
    lab_ns: String,
    dir: PathBuf,
    nodes: Vec<Node>,
    /// Namespaces created so far, node namespaces first removed on drop.
    created_ns: Vec<String>,
    /// The node a swarm was initialised on; joins go through it.
    anchor: Mutex<Option<usize>>,
    /// Set by [`Lab::keep`]: drop leaves everything running.
    kept: bool,
}

static LAB_COUNTER: AtomicU64 = AtomicU64::new(0);
static SWEEP: Once = Once::new();

impl Lab {
    /// A lab of `n` nodes with no daemons running yet; panics if it cannot be built.
    #[track_caller]
    pub fn new(n: usize) -> Lab {
        Lab::create(LabOptions::nodes(n)).unwrap_or_else(|e| panic!("cannot build a {n}-node lab: {e:#}"))
    }

    /// A lab of `n` nodes with every daemon started and answering `/_ping`.
    #[track_caller]
    pub fn with_daemons(n: usize) -> Lab {
        let lab = Lab::new(n);
        lab.start_daemons();
        lab
    }

    /// Builds a lab as `opts` says. On error, whatever was built is removed again.
    pub fn create(opts: LabOptions) -> anyhow::Result<Lab> {
        anyhow::ensure!(opts.nodes >= 1, "a lab needs at least one node");
        anyhow::ensure!(opts.nodes < 65_000, "198.18.0.0/15 holds fewer nodes than {}", opts.nodes);
        // SAFETY: geteuid has no preconditions.
        anyhow::ensure!(
            unsafe { libc::geteuid() } == 0,
            "the netns lab needs root (network namespaces, veths, nftables); run as root, e.g. `sudo -E cargo xtask test`"
        );
        let tmp = std::env::temp_dir();
        SWEEP.call_once(|| netns::sweep_stale(&tmp));
        let prefix = opts.prefix.clone().unwrap_or_else(|| {
            format!("{}{}-{}", netns::PREFIX, std::process::id(), LAB_COUNTER.fetch_add(1, Ordering::Relaxed))
        });
        let dir = opts.dir.clone().unwrap_or_else(|| tmp.join(&prefix));
        let bin = match &opts.bin {
            Some(b) => b.clone(),
            None => shoal_bin().to_path_buf(),
        };
        let mut lab = Lab {
            lab_ns: format!("{prefix}-lab"),
            prefix,
            dir,
            nodes: Vec::new(),
            created_ns: Vec::new(),
            anchor: Mutex::new(None),
            kept: false,
        };
        lab.build(opts.nodes, &bin)?;
        Ok(lab)
    }

    fn build(&mut self, n: usize, bin: &Path) -> anyhow::Result<()> {
        let sock_len = self.dir.join("node00000/shoal.sock").as_os_str().len();
        anyhow::ensure!(sock_len < 100, "lab dir {} is too long for unix socket paths", self.dir.display());
        std::fs::create_dir_all(&self.dir).with_context(|| format!("create {}", self.dir.display()))?;
        let docker_config = self.dir.join("docker-config");
        std::fs::create_dir_all(&docker_config)?;

        let lab = self.lab_ns.clone();
        netns::create(&lab)?;
        self.created_ns.push(lab.clone());
        ip(&["-n", &lab, "link", "set", "lo", "up"])?;
        ip(&["-n", &lab, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lab, "link", "set", "br0", "up"])?;

        for i in 1..=n {
            let ns = format!("{}-n{i}", self.prefix);
            netns::create(&ns)?;
            self.created_ns.insert(0, ns.clone());
            let veth = format!("vn{i}");
            // Both ends are born inside their namespaces: nothing appears in the root namespace.
            ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &veth, "netns", &lab])?;
            ip(&["-n", &lab, "link", "set", &veth, "master", "br0"])?;
            ip(&["-n", &lab, "link", "set", &veth, "up"])?;
            let addr = node_addr(i);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/15"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let node_dir = self.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            self.nodes.push(Node::new(
                i,
                ns,
                lab.clone(),
                veth,
                addr,
                &node_dir,
                docker_config.clone(),
                bin.to_path_buf(),
            ));
        }
        Ok(())
    }

    /// Node `i`, 1-based (`node(1)` is `node1` at 198.18.0.1).
    #[track_caller]
    pub fn node(&self, i: usize) -> &Node {
        assert!(i >= 1 && i <= self.nodes.len(), "no node{i} in a {}-node lab", self.nodes.len());
        &self.nodes[i - 1]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The namespace holding the underlay bridge.
    pub fn lab_ns(&self) -> &str {
        &self.lab_ns
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts every node's daemon and waits until all answer `/_ping`.
    #[track_caller]
    pub fn start_daemons(&self) {
        for node in &self.nodes {
            node.spawn_daemon();
        }
        for node in &self.nodes {
            node.wait_ping();
        }
    }

    /// Prints the last `lines` lines of every daemon's log to stderr (done automatically when a
    /// lab is dropped during a panic).
    pub fn print_logs(&self, lines: usize) {
        for node in &self.nodes {
            eprintln!(
                "\n===== {} ({}, {}) daemon log, last {lines} lines =====\n{}",
                node.hostname(),
                node.addr(),
                node.ns(),
                node.log_tail(lines)
            );
        }
        eprintln!("===== end of daemon logs ({}) =====\n", self.prefix);
    }

    pub(crate) fn anchor(&self) -> Option<usize> {
        *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_anchor(&self, i: usize) {
        *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(i);
    }

    /// Keeps the lab (namespaces, daemons, files) after this value is dropped, for `cargo xtask
    /// demo|lab`; remove it later with [`Lab::destroy`] and the same prefix and directory.
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// Removes a kept lab: every namespace named `<prefix>-…` (killing what runs inside), the
    /// task processes, cgroups and mounts of its nodes, and its directory. Returns the namespaces
    /// removed.
    pub fn destroy(prefix: &str, dir: &Path) -> anyhow::Result<Vec<String>> {
        // Daemons and shims first, so that nothing starts a task while the tasks are reaped.
        for ns in netns::list()?.iter().filter(|n| n.starts_with(&format!("{prefix}-"))) {
            netns::kill_all(ns);
        }
        // The nodes' host cgroups are named after their namespaces (`/shoal-lab/<prefix>-n<i>`).
        if let Ok(groups) = tasks::cgroup2_mount(dir).map(|m| m.join("shoal-lab")) {
            for group in std::fs::read_dir(&groups).into_iter().flatten().flatten() {
                if group.file_name().to_string_lossy().starts_with(&format!("{prefix}-")) {
                    tasks::kill_and_remove_cgroup(&group.path());
                }
            }
        }
        for problem in tasks::reap_lab_dir(dir) {
            eprintln!("netns-tests: {problem}");
        }
        let deleted = netns::delete_with_prefix(&format!("{prefix}-"))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        Ok(deleted)
    }
}

/// The underlay address of node `i` (1-based): 198.18.0.0 + i.
pub fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    sh("ip", args).map(drop)
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if std::thread::panicking() {
            self.print_logs(LOG_TAIL_LINES);
        }
        // Daemons first, then what else runs in the node namespaces (task shims), so that nothing
        // can start a task while the tasks, which outlive their daemon on purpose and run in
        // namespaces of their own, are killed and their cgroups removed.
        for node in &self.nodes {
            node.kill9();
        }
        for ns in &self.created_ns {
            netns::kill_all(ns);
        }
        for node in &self.nodes {
            node.remove_host_cgroup();
        }
        for problem in tasks::reap_lab_dir(&self.dir) {
            eprintln!("netns-tests: {problem}");
        }
        for ns in &self.created_ns {
            if let Err(e) = netns::kill_all_and_delete(ns) {
                eprintln!("netns-tests: cannot delete namespace {ns}: {e:#}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("netns-tests: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}
