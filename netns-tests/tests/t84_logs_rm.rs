//! Band 84 (issue 3, test 5): `service logs` gathers the stdout and stderr of tasks on every node
//! (remote ones included) with Docker's `<task>@<node>    | ` prefix, `--tail` and `-t`; and
//! `service rm` leaves nothing behind: no task in the API, and on the machines no process,
//! cgroup, namespace or mount of any of its tasks.

use netns_tests::poll_until;
use netns_tests::tasks::{mounts_anywhere_under, namespace_holders, ns_of, process_mentions};
use netns_tests::{Lab, TaskView, CLUSTER};

/// Each task says who it is on stdout and on stderr, then idles.
const TALK: &str =
    r#"echo "out $SHOAL_TASK_NAME on $SHOAL_NODE_NAME"; echo "err $SHOAL_TASK_NAME" >&2; exec sleep 600"#;

/// Docker's prefix for a task's log lines: `<service>.<slot>.<12-char task id>@<node>`.
fn prefix(service: &str, t: &TaskView, host: &str) -> String {
    format!("{service}.{}.{}@{host}", t.slot, &t.id[..12])
}

#[test]
fn service_logs_gather_stdout_and_stderr_from_every_node() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    let create =
        ["create", "-d", "--name", "talk", "--replicas", "3", "--stop-grace-period", "1s", "busybox", "sh", "-c", TALK];
    n1.service(&create).assert_ok();
    let tasks = lab.wait_converged(1, "talk", 3);
    let names = lab.hostnames(1);
    assert_eq!(lab.placement(1, &tasks).len(), 3, "one task per node");

    let out = poll_until(CLUSTER, "service logs to hold both lines of all 3 tasks", || {
        let out = n1.service(&["logs", "talk"]);
        let ok = out.success()
            && tasks.iter().all(|t| {
                let host = &names[&t.node_id];
                let name = format!("talk.{}.{}", t.slot, t.id);
                let p = prefix("talk", t, host);
                out.stdout
                    .lines()
                    .chain(out.stderr.lines())
                    .any(|l| l.starts_with(&p) && l.ends_with(&format!("| out {name} on {host}")))
                    && out
                        .stdout
                        .lines()
                        .chain(out.stderr.lines())
                        .any(|l| l.starts_with(&p) && l.ends_with(&format!("| err {name}")))
            });
        ok.then_some(out.clone()).ok_or(out.describe())
    });
    // stdout lines on stdout, stderr lines on stderr, as docker prints them.
    assert!(out.stdout.lines().all(|l| !l.contains("| err ")), "{}", out.describe());
    assert!(out.stderr.lines().any(|l| l.contains("| err ")), "{}", out.describe());

    // --tail 1: the last line of each task only.
    let tail = n1.service(&["logs", "--tail", "1", "talk"]);
    tail.assert_ok();
    let lines: Vec<&str> = tail.stdout.lines().chain(tail.stderr.lines()).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{}", tail.describe());
    // -t: an RFC 3339 timestamp first.
    let stamped = n1.service(&["logs", "-t", "talk"]);
    stamped.assert_ok();
    for line in stamped.stdout.lines().filter(|l| !l.is_empty()) {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        assert!(netns_tests::services::parse_time(stamp).is_some(), "no timestamp in {line:?}");
    }
    // One task's logs, by task ID: its lines only.
    let one = &tasks[1];
    let only = n1.service(&["logs", &one.id]);
    only.assert_ok();
    let all: Vec<&str> = only.stdout.lines().chain(only.stderr.lines()).filter(|l| !l.is_empty()).collect();
    let p = prefix("talk", one, &names[&one.node_id]);
    assert!(all.len() == 2 && all.iter().all(|l| l.starts_with(&p)), "{}", only.describe());
}

#[test]
fn service_rm_leaves_nothing_behind() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.service(&["create", "-d", "--name", "web", "--replicas", "3", "shoal/echo", "--http"]).assert_ok();
    n1.service(&["create", "-d", "--name", "agent", "--mode", "global", "shoal/echo"]).assert_ok();
    let mut tasks = lab.wait_converged(1, "web", 3);
    tasks.extend(lab.wait_converged(1, "agent", 3));
    let service_ids: Vec<String> =
        ["web", "agent"].iter().map(|s| lab.inspect_service(1, s)["ID"].as_str().unwrap().to_string()).collect();

    // Everything the 6 tasks hold, from their nodes' records and /proc.
    let records: Vec<_> =
        lab.nodes().iter().flat_map(|n| n.task_records()).filter(|r| tasks.iter().any(|t| t.id == r.id)).collect();
    assert_eq!(records.len(), 6, "{records:#?}");
    assert!(records.iter().all(|r| r.task_running()), "{records:#?}");
    let cgroups: Vec<_> = records.iter().flat_map(|r| r.cgroups.clone()).collect();
    assert!(cgroups.len() >= 6 && cgroups.iter().all(|c| c.is_dir()), "{cgroups:?}");
    let namespaces: Vec<String> = tasks
        .iter()
        .flat_map(|t| ["net", "mnt", "pid", "uts", "ipc"].map(|kind| ns_of(t.pid, kind).expect("task namespace")))
        .collect();
    let task_mounts: usize = records.iter().map(|r| mounts_anywhere_under(&r.dir).len()).sum();
    assert!(task_mounts >= 6, "the tasks' /etc/resolv.conf and /etc/hosts mounts are not seen");

    let out = n1.service(&["rm", "web", "agent"]);
    out.assert_ok();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["web", "agent"], "{}", out.describe());
    let r = n1.api("GET", "/services/web", None).unwrap();
    assert_eq!((r.status, r.message().as_deref()), (404, Some("service web not found")), "{}", r.text());
    assert_eq!(n1.service(&["ls", "-q"]).assert_ok().stdout.trim(), "", "services left");

    // (A `service` filter naming a removed service is a 404, as in Docker: list them all.)
    poll_until(CLUSTER, "the removed services' tasks to leave the API", || {
        let all = lab.try_tasks(1, &[])?;
        let left: Vec<String> = all.iter().filter(|t| service_ids.contains(&t.service_id)).map(|t| t.brief()).collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
    poll_until(CLUSTER, "every process, cgroup, namespace and mount of the tasks to go", || {
        let mut left = Vec::new();
        for r in &records {
            for pid in r.live_pids() {
                left.push(format!("{}: pid {pid} runs", r.id));
            }
            for c in r.existing_cgroups() {
                left.push(format!("{}: cgroup {}", r.id, c.display()));
            }
            for m in mounts_anywhere_under(&r.dir) {
                left.push(format!("{}: mount {m}", r.id));
            }
        }
        // Namespace inodes are reused by other labs' new namespaces: only this lab's processes
        // (its directory in their command line, a task ID in their cgroup) count.
        let dir = lab.dir().to_string_lossy().into_owned();
        let mut ours: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        ours.push(&dir);
        for ns in &namespaces {
            for (pid, holder) in namespace_holders(ns) {
                if process_mentions(pid, &ours) {
                    left.push(format!("{ns}: {holder}"));
                }
            }
        }
        left.is_empty().then_some(()).ok_or(left)
    });
}
