//! Labs that outlive the command: `cargo xtask demo` (a swarm) and `cargo xtask lab up` (bare
//! daemons).
//!
//! A kept lab has a fixed name prefix (`shl-demo`, `shl-lab`) and lives in `target/shoal-demo/`
//! or `target/shoal-lab/` (data roots, sockets, daemon logs, and `state.json` describing it).
//! Its daemons keep running after xtask exits; `--down` / `lab down` kills them and removes the
//! namespaces and the directory. Creating a kept lab first removes a previous one of the same kind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use netns_tests::{Lab, LabOptions};
use serde_json::json;

use crate::deps;

struct Kind {
    prefix: &'static str,
    dir: &'static str,
    down: &'static str,
}

const DEMO: Kind = Kind { prefix: "shl-demo", dir: "shoal-demo", down: "cargo xtask demo --down" };
const BARE: Kind = Kind { prefix: "shl-lab", dir: "shoal-lab", down: "cargo xtask lab down" };

impl Kind {
    fn dir(&self) -> PathBuf {
        netns_tests::binary::target_dir().join(self.dir)
    }

    /// Removes a previous lab of this kind, if any; says what it removed.
    fn tear_down(&self) -> anyhow::Result<bool> {
        let removed = Lab::destroy(self.prefix, &self.dir())?;
        for ns in &removed {
            eprintln!("xtask: removed namespace {ns}");
        }
        Ok(!removed.is_empty())
    }

    /// Builds a lab with `n` nodes and running daemons, runs `setup` on it, then keeps it.
    /// If anything panics, the lab is dropped (daemon logs printed, everything removed).
    fn create(&self, n: usize, setup: impl FnOnce(&Lab) -> String) -> anyhow::Result<(Vec<NodeInfo>, String)> {
        crate::require_root(if self.prefix == DEMO.prefix { "demo" } else { "lab up" })?;
        deps::ensure(&[deps::BUILD, deps::LAB])?;
        let bin = crate::build_shoal(false)?;
        if self.tear_down()? {
            eprintln!("xtask: removed the previous {} lab", self.prefix);
        }
        let opts =
            LabOptions { nodes: n, prefix: Some(self.prefix.into()), dir: Some(self.dir()), bin: Some(bin.clone()) };
        let lab = Lab::create(opts)?;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            lab.start_daemons();
            setup(&lab)
        }));
        let Ok(summary) = outcome else {
            lab.print_logs(80);
            drop(lab);
            anyhow::bail!("setting up the lab failed (see the message and daemon logs above); it has been removed");
        };
        let nodes: Vec<NodeInfo> = lab
            .nodes()
            .iter()
            .map(|n| NodeInfo {
                hostname: n.hostname().into(),
                ns: n.ns().into(),
                addr: n.addr().to_string(),
                host: n.host_url(),
                log: n.log_path().display().to_string(),
            })
            .collect();
        let state = json!({
            "prefix": self.prefix,
            "lab_namespace": lab.lab_ns(),
            "bin": bin,
            "nodes": nodes.iter().map(|n| json!({
                "hostname": n.hostname, "namespace": n.ns, "addr": n.addr, "host": n.host, "log": n.log,
                "pid": lab.node(lab.index_of(&n.hostname).unwrap()).daemon_pid(),
            })).collect::<Vec<_>>(),
        });
        let state_file = self.dir().join("state.json");
        std::fs::write(&state_file, serde_json::to_string_pretty(&state)?)
            .with_context(|| format!("write {}", state_file.display()))?;
        lab.keep();
        Ok((nodes, summary))
    }
}

struct NodeInfo {
    hostname: String,
    ns: String,
    addr: String,
    host: String,
    log: String,
}

fn shoal_path() -> String {
    let bin = netns_tests::binary::target_dir().join("debug/shoal");
    let root = netns_tests::binary::workspace_root();
    bin.strip_prefix(&root).map(|p| p.display().to_string()).unwrap_or_else(|_| bin.display().to_string())
}

/// Prints how to reach each node; `example(i)` is a command that works on node `i` (workers
/// refuse cluster commands such as `node ls`, as in Docker).
fn print_access(kind: &Kind, nodes: &[NodeInfo], example: impl Fn(usize) -> &'static str) {
    let shoal = shoal_path();
    println!("Run commands against a node (from the repository root):");
    for (i, n) in nodes.iter().enumerate() {
        println!("  {:<6} {:<12} {shoal} -H {} {}", n.hostname, n.addr, n.host, example(i + 1));
    }
    println!("\nThe real docker CLI works the same way:\n  docker -H {} {}", nodes[0].host, example(1));
    println!("\nA shell inside a node's network namespace (its eth0 is on the 198.18.0.0/15 underlay):");
    println!("  ip netns exec {} bash", nodes[0].ns);
    println!("\nDaemon logs: {}", nodes.iter().map(|n| n.log.as_str()).collect::<Vec<_>>().join(" "));
    println!("State: {}", kind.dir().join("state.json").display());
    println!("\nTear it down with:\n  {}", kind.down);
}

/// `cargo xtask demo`: 3 nodes, node1 the manager, node2 and node3 workers (the shape the
/// architecture's tour uses; `cargo xtask bench raft` covers 3 managers), running the built-in
/// `shoal/echo` image as a 3-replica service.
pub fn demo_up() -> anyhow::Result<()> {
    let (nodes, summary) = DEMO.create(3, |lab| {
        lab.form_swarm(1, &[]);
        let node_ls = lab.node(1).shoal(&["node", "ls"]).assert_ok().stdout.clone();
        let create = ["create", "-d", "--name", "web", "--replicas", "3", "-p", "8080:80", "shoal/echo", "--http"];
        let id = lab.node(1).service(&create).assert_ok().stdout.trim().to_string();
        let tasks = lab.wait_converged(1, "web", 3);
        let ls = lab.node(1).service(&["ls"]).assert_ok().stdout.clone();
        let ps = lab.node(1).service(&["ps", "web"]).assert_ok().stdout.clone();
        let pid = tasks[0].pid.to_string();
        let curl = ["-t", &pid, "-n", "curl", "-s", "http://127.0.0.1:80/"];
        let out = netns_tests::cmd::run_timeout(Command::new("nsenter").args(curl), Duration::from_secs(30));
        let answer = out.assert_ok().stdout.trim().to_string();
        format!(
            "$ shoal node ls    # on node1\n{node_ls}\n\
             $ shoal service create -d --name web --replicas 3 -p 8080:80 shoal/echo --http\n{id}\n\n\
             $ shoal service ls\n{ls}\n$ shoal service ps web\n{ps}\n\
             Each task is a process tree in its own network, mount, UTS and PID namespaces on its node;\n\
             `Status.ContainerStatus.PID` in `GET /tasks/<id>` is its PID 1, so from this machine:\n\n\
             $ nsenter -t {pid} -n curl -s http://127.0.0.1:80/\n{answer}\n\n\
             (The routing mesh, port 8080 on every node, arrives with a later issue: today the port is\n\
             recorded in the service but nothing listens on it, and a task has only `lo`.)\n"
        )
    })?;
    println!("\nShoal demo: a swarm of 3 nodes (node1 manager, node2 and node3 workers), each a network");
    println!("namespace running its own `shoal daemon`, and a service of 3 `shoal/echo` tasks.\n");
    println!("{summary}");
    print_access(&DEMO, &nodes, |i| if i == 1 { "service ps web" } else { "info    # a worker" });
    println!("\nImages other than shoal/echo run their command from this machine's filesystem; real OCI");
    println!("images, overlay networks and the routing mesh come in later steps.");
    Ok(())
}

/// `cargo xtask demo --down`.
pub fn demo_down() -> anyhow::Result<()> {
    crate::require_root("demo --down")?;
    if !DEMO.tear_down()? {
        println!("no demo lab was running");
    } else {
        println!("demo lab removed");
    }
    Ok(())
}

/// `cargo xtask lab up N`: daemons, no swarm; form one by hand with `shoal swarm init`.
pub fn lab_up(n: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=250).contains(&n), "lab up: choose 1 to 250 nodes");
    let (nodes, _) = BARE.create(n, |_| String::new())?;
    println!("\nA lab of {n} node(s), daemons running, no swarm yet. Start one with:");
    println!("  {} -H {} swarm init --advertise-addr {}\n", shoal_path(), nodes[0].host, nodes[0].addr);
    print_access(&BARE, &nodes, |_| "info");
    Ok(())
}

/// `cargo xtask lab down`.
pub fn lab_down() -> anyhow::Result<()> {
    crate::require_root("lab down")?;
    if !BARE.tear_down()? {
        println!("no lab was running");
    } else {
        println!("lab removed");
    }
    Ok(())
}
