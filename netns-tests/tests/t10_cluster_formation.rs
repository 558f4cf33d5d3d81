//! Band 10 (issue 2, test 1): 3 managers and 2 workers form one cluster; `node ls` (ours and
//! the real docker CLI's) shows 5 nodes, exactly one Leader and two Reachable; a worker's `info`
//! lists the three managers.

use std::collections::BTreeSet;

use netns_tests::swarm::check_shape;
use netns_tests::{poll_until, Lab, CLUSTER};

#[test]
fn three_managers_and_two_workers_form_one_cluster() {
    let lab = Lab::with_daemons(5);
    lab.form_swarm(3, &[]);

    // Every manager sees the same cluster, and marks itself with `*`.
    for m in 1..=3 {
        let rows = lab.wait_node_ls(m, "5 Ready nodes, 1 Leader, 2 Reachable", |rows| check_shape(rows, 5, 3));
        let me: Vec<_> = rows.iter().filter(|r| r.is_self).map(|r| r.hostname.as_str()).collect();
        assert_eq!(me, [lab.node(m).hostname()], "node{m}: self marker in {rows:#?}");
        let hostnames: BTreeSet<_> = rows.iter().map(|r| r.hostname.as_str()).collect();
        let want: BTreeSet<_> = lab.nodes().iter().map(|n| n.hostname()).collect();
        assert_eq!(hostnames, want);
        for r in &rows {
            let i = lab.index_of(&r.hostname).unwrap();
            assert_eq!(r.manager_status.is_empty(), i > 3, "{} has MANAGER STATUS {:?}", r.hostname, r.manager_status);
            assert_eq!(r.availability, "Active");
        }
    }

    // The real docker CLI reads the same table.
    let rows = lab.docker_node_ls(1);
    check_shape(&rows, 5, 3).unwrap_or_else(|e| panic!("docker node ls: {e}: {rows:#?}"));
    assert_eq!(rows.iter().filter(|r| r.is_self).count(), 1);

    // A worker knows the managers (it learns them over its dispatcher session, hence the poll).
    let want: BTreeSet<String> = (1..=3).map(|m| format!("{}:2377", lab.node(m).addr())).collect();
    let worker = lab.node(4);
    let info = poll_until(CLUSTER, "node4 /info to list the 3 managers", || {
        let info = worker.info();
        let got: BTreeSet<String> = info["Swarm"]["RemoteManagers"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["Addr"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if got == want {
            Ok(info)
        } else {
            Err(format!("RemoteManagers {got:?}"))
        }
    });
    assert_eq!(info["Swarm"]["LocalNodeState"], "active");
    assert_eq!(info["Swarm"]["ControlAvailable"], false, "a worker claims control: {info}");
    assert_eq!(info["Swarm"]["NodeAddr"], worker.addr().to_string());
    let ping = worker.api("HEAD", "/_ping", None).unwrap();
    assert_eq!(ping.header("Swarm"), Some("active/worker"));
    let ping = lab.node(2).api("HEAD", "/_ping", None).unwrap();
    assert_eq!(ping.header("Swarm"), Some("active/manager"));

    // `docker info` on the worker prints the manager addresses too.
    let out = worker.docker(&["info"]);
    out.assert_ok();
    for addr in &want {
        out.assert_stdout_contains(addr);
    }
}
