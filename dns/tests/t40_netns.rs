//! `serve_netns` in a real network namespace, queried with `dig` from inside it. Privileged: needs
//! root to create namespaces. Each test makes its own namespace (unique name with the pid and a
//! counter) and a guard removes it even on panic; nothing in the root namespace is touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use dns::{DnsError, Resolver};

static NEXT_NETNS: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace with `lo` up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("shoal-dns-{}-{}", std::process::id(), NEXT_NETNS.fetch_add(1, Ordering::SeqCst));
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        run("ip", &["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `dig` inside the namespace against the embedded resolver; returns its stdout.
    async fn dig(&self, args: &[&str]) -> String {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.name, "dig", "@127.0.0.11", "+tries=1", "+time=3"]).args(args);
        let output = tokio::time::timeout(Duration::from_secs(10), command.output())
            .await
            .expect("dig did not finish")
            .expect("run dig");
        assert!(output.status.success(), "dig {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect("run command");
    assert!(status.success(), "{program} {args:?} failed");
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_inside_a_task_namespace() {
    if !is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return;
    }
    let netns = Netns::new();
    let resolver = Resolver::new(config(vec![], Duration::from_millis(200)));
    resolver.set_records(cluster());
    resolver.serve_netns("task-1", &netns.path(), vec!["net-a".into()]).await.expect("serve in netns");
    // Idempotent: a second call for the key does not try to bind again.
    resolver.serve_netns("task-1", &netns.path(), vec!["net-a".into()]).await.expect("serve again");

    assert_eq!(netns.dig(&["+short", "web"]).await.trim(), "10.0.1.2");
    let mut tasks: Vec<String> = netns.dig(&["+short", "+tcp", "tasks.web"]).await.lines().map(String::from).collect();
    tasks.sort();
    assert_eq!(tasks, ["10.0.1.10", "10.0.1.11", "10.0.1.12"]);
    assert!(netns.dig(&["hidden"]).await.contains("status: NXDOMAIN"));
    assert_eq!(netns.dig(&["+short", "-x", "10.0.1.11"]).await.trim(), "web.2.bbb.");

    resolver.set_scope("task-1", vec!["net-b".into()]);
    assert_eq!(netns.dig(&["+short", "hidden"]).await.trim(), "10.0.2.2");
    resolver.stop("task-1");
}

#[tokio::test]
async fn a_missing_namespace_is_an_error() {
    let resolver = Resolver::new(config(vec![], Duration::from_millis(200)));
    let error = resolver.serve_netns("t", Path::new("/run/netns/shoal-dns-does-not-exist"), vec![]).await.unwrap_err();
    assert!(matches!(error, DnsError::Netns { .. }), "{error:?}");
    assert_eq!(error.to_string(), "cannot enter the network namespace /run/netns/shoal-dns-does-not-exist");
}
