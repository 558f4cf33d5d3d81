//! Band 112 (routing mesh, test 3): a rolling update under load. A 6-task service published on
//! port 8090 is updated (`--env-add`, `--update-parallelism 2`) while an outside client sends
//! HTTP requests through every node's published port, one load on a new connection per request
//! and one on keep-alive connections. The promise is no failed request: every old task
//! leaves the mesh's maps before it is stopped, and a keep-alive connection is ended gracefully
//! (`Connection: close` on its last answer, which the client follows with a new connection).
//! The test prints how many requests failed, how (refused, reset, timeout) and when.
//!
//! One client sends both loads, so its source ports meet the same task through several nodes
//! (Linux reuses a port towards another destination): the backend node must remap such a
//! connection's client port rather than let it take the older connection's return path over.
//! Six tasks start on three nodes while the nodes load their mesh: every task veth must still
//! carry the reply-steering programs.

use std::net::SocketAddrV4;

use netns_tests::mesh::{LoadMode, LoadOptions, LoadReport};
use netns_tests::{poll_until, Lab, CLUSTER, SHORT};

/// Requests on new connections the load must have sent by the end (the issue says 10,000).
const NEW_CONNECTIONS: u64 = 10_000;

#[test]
fn a_rolling_update_under_load_fails_no_request() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    lab.node(1)
        .service(&[
            "create",
            "-d",
            "--name",
            "roll",
            "--replicas",
            "6",
            "--update-parallelism",
            "2",
            "-p",
            "8090:80",
            "shoal/echo",
            "--http",
        ])
        .assert_ok();
    let before = lab.wait_converged(1, "roll", 6);
    // Two tasks per node are wired while the node's mesh loads (the first published port): each
    // must still get the reply-steering programs, or its replies via other nodes are lost.
    for i in 1..=3 {
        poll_until(SHORT, &format!("node{i}'s task veths to carry the mesh programs"), || {
            let missing = lab.unsteered_task_veths(1, i);
            missing.is_empty().then_some(()).ok_or(missing)
        });
    }
    let client = lab.mesh_client();
    let targets: Vec<SocketAddrV4> = (1..=3).map(|i| SocketAddrV4::new(lab.node(i).addr(), 8090)).collect();
    for t in &targets {
        poll_until(SHORT, &format!("{t} to answer"), || client.http(*t).map_err(|f| f.to_string()));
    }
    let fresh = client.load(LoadOptions::new(LoadMode::NewConnection, targets.clone()));
    let kept = client.load(LoadOptions::new(LoadMode::KeepAlive, targets.clone()));
    poll_until(SHORT, "1,000 requests before the update", || (fresh.sent() >= 1000).then_some(()).ok_or(fresh.sent()));

    let update_started = fresh.since_start();
    lab.node(1).service(&["update", "-d", "--env-add", "ROUND=2", "roll"]).assert_ok();
    lab.wait_service(1, "roll", "the update to complete", |s| {
        let state = s["UpdateStatus"]["State"].as_str().unwrap_or_default().to_string();
        (state == "completed").then_some(()).ok_or(state)
    });
    let after = lab.wait_converged(1, "roll", 6);
    let update_done = fresh.since_start();
    assert!(
        after.iter().all(|t| before.iter().all(|b| b.id != t.id)),
        "every task was replaced: before {before:?}, after {after:?}"
    );
    let sent_at_end = fresh.sent();
    poll_until(CLUSTER, &format!("{NEW_CONNECTIONS} requests and 1,000 after the update"), || {
        let n = fresh.sent();
        (n >= NEW_CONNECTIONS && n >= sent_at_end + 1000).then_some(()).ok_or(n)
    });
    let (fresh, kept) = (fresh.stop(), kept.stop());
    let during = |r: &LoadReport| r.failures.iter().filter(|f| f.at >= update_started && f.at <= update_done).count();
    eprintln!(
        "t112: update ran from {:.2} s to {:.2} s of the load\n  new connections: {}\n  keep-alive: {}\n  \
         failures during the update: {} new-connection, {} keep-alive",
        update_started.as_secs_f64(),
        update_done.as_secs_f64(),
        fresh.summary(),
        kept.summary(),
        during(&fresh),
        during(&kept)
    );
    if fresh.failed() + kept.failed() > 0 {
        diagnose(&lab);
    }
    assert!(fresh.sent >= NEW_CONNECTIONS, "{}", fresh.summary());
    assert!(kept.sent >= 1000, "{}", kept.summary());
    assert_eq!(fresh.wrong_source + kept.wrong_source, 0, "answers showed another source than the client");
    assert_eq!(fresh.failed(), 0, "new-connection requests failed: {}", fresh.summary());
    assert_eq!(kept.failed(), 0, "keep-alive requests failed: {}", kept.summary());
}

/// What the mesh of every node counted, printed when a request failed.
fn diagnose(lab: &Lab) {
    for i in 1..=3 {
        let n = lab.node(i);
        eprintln!("t112: node{i} ({}) `shoal mesh --stats`:\n{}", n.addr(), n.shoal(&["mesh", "--stats"]).stdout);
    }
}
