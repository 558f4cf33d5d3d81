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
        let n1 = lab.node(1);
        let net = n1.shoal(&["network", "create", "-d", "overlay", "appnet"]).assert_ok().stdout.trim().to_string();
        // Two replicas on the workers: node1 runs none, and still answers port 8080.
        let create = [
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--constraint",
            "node.role==worker",
            "--network",
            "appnet",
            "-p",
            "8080:80",
            "shoal/echo",
            "--http",
        ];
        let id = n1.service(&create).assert_ok().stdout.trim().to_string();
        lab.wait_converged(1, "web", 2);
        // A client on the same network that finds `web` by name, as Docker's embedded DNS allows.
        let client = ["create", "-d", "--name", "client", "--network", "appnet", "debian", "sh", "-c", CLIENT_SCRIPT];
        n1.service(&client).assert_ok();
        lab.wait_converged(1, "client", 1);
        let ls = n1.service(&["ls"]).assert_ok().stdout.clone();
        let ps = n1.service(&["ps", "web"]).assert_ok().stdout.clone();
        let networks = n1.shoal(&["network", "ls"]).assert_ok().stdout.clone();
        let resolved = netns_tests::poll_until(Duration::from_secs(30), "the client's first lookups", || {
            let logs = n1.service(&["logs", "--raw", "client"]).stdout.clone();
            let block: Vec<&str> = logs.lines().take_while(|l| !l.starts_with("--")).collect();
            (block.len() >= 3 && block.iter().any(|l| l.contains("on node"))).then(|| block.join("\n"))
        });
        // An outside client: an address on the lab's own bridge, outside every node.
        let lab_ns = lab.lab_ns().to_string();
        let _ =
            netns_tests::cmd::sh("ip", &["netns", "exec", &lab_ns, "ip", "addr", "add", "198.19.0.1/15", "dev", "br0"]);
        let mut curls = String::new();
        for i in 1..=3 {
            let url = format!("http://{}:8080/", netns_tests::lab::node_addr(i));
            for _ in 0..2 {
                let out = netns_tests::cmd::run_timeout(
                    Command::new("ip").args(["netns", "exec", &lab_ns, "curl", "-s", "-m", "5", &url]),
                    Duration::from_secs(10),
                );
                curls.push_str(&format!("$ curl -s {url}\n{}", out.assert_ok().stdout));
            }
        }
        format!(
            "$ shoal node ls    # on node1\n{node_ls}\n\
             $ shoal network create -d overlay appnet\n{net}\n\n$ shoal network ls\n{networks}\n\
             $ shoal service create -d --name web --replicas 2 --constraint node.role==worker \\\n    \
             --network appnet -p 8080:80 shoal/echo --http\n{id}\n\n\
             $ shoal service ls\n{ls}\n$ shoal service ps web\n{ps}\n\
             The service `client` (same network) looks `web` up through the embedded DNS at 127.0.0.11\n\
             and calls it by name (`shoal service logs --raw client`):\n{resolved}\n\n\
             Port 8080 answers on every node, node1 included although it runs no task; the task sees\n\
             the real client address (198.19.0.1, an address in the lab namespace), not a node's:\n\n{curls}"
        )
    })?;
    println!("\nShoal demo: a swarm of 3 nodes (node1 manager, node2 and node3 workers), each a network");
    println!("namespace running its own `shoal daemon`; an overlay network `appnet`; `web` (2 shoal/echo");
    println!("tasks, port 8080 published through the routing mesh) and `client` on it.\n");
    println!("{summary}");
    print_access(&DEMO, &nodes, |i| if i == 1 { "service ps web" } else { "info    # a worker" });
    println!("\nAn outside client (the lab namespace, 198.19.0.1):");
    println!("  ip netns exec {}-lab curl -s http://198.18.0.1:8080/", DEMO.prefix);
    println!("\nImages other than shoal/echo run their command from this machine's filesystem (`debian`");
    println!("above is only a name: `sh`, `getent` and `curl` are this machine's).");
    Ok(())
}

/// What the demo's `client` task runs: resolve `web` (the VIP) and `tasks.web` (every task), then
/// call `web` by name, every 5 s.
const CLIENT_SCRIPT: &str = "while true; do \
    echo \"web       -> $(getent hosts web | cut -d' ' -f1)   (the service VIP)\"; \
    echo \"tasks.web -> $(getent ahostsv4 tasks.web | cut -d' ' -f1 | sort -u | tr '\\n' ' ')  (every task)\"; \
    echo \"curl http://web/ -> $(curl -s -m 2 http://web/)\"; \
    echo --; sleep 5; done";

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
