//! Band 113 (routing mesh, test 4): the data plane outlives its agent. While an outside client
//! sends requests through every node's published port (new connections and keep-alive), node2's
//! daemon is killed with SIGKILL and started again. No request fails, and the restarted agent
//! adopts its pinned programs instead of attaching them a second time: the tcx programs
//! `bpftool net` lists in the node's namespace and the pinned links under the node's bpffs
//! (`<lab>/node2/bpffs/shoal/<node id>/<layout>/links`) are the same before and after. (Debian
//! 12's bpftool 7.1 predates tcx and lists none; the pinned links are then what shows it.)

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::path::PathBuf;

use netns_tests::mesh::{LoadMode, LoadOptions};
use netns_tests::overlay::Netns;
use netns_tests::{poll_until, Lab, Node, CLUSTER, SHORT};

/// The node's pinned mesh links (file names), from every layout directory under its bpffs.
fn pinned_links(node: &Node) -> BTreeSet<String> {
    let root: PathBuf = node.data_root().with_file_name("bpffs").join("shoal").join(node.node_id());
    let mut links = BTreeSet::new();
    for layout in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for l in std::fs::read_dir(layout.path().join("links")).into_iter().flatten().flatten() {
            links.insert(format!("{}/{}", layout.file_name().to_string_lossy(), l.file_name().to_string_lossy()));
        }
    }
    links
}

/// The kernel IDs of the node's pinned links (`bpftool link show pinned`): an agent that
/// adopts its links keeps them; one that attached again would make new ones.
fn pinned_link_ids(node: &Node) -> BTreeSet<u64> {
    let root: PathBuf = node.data_root().with_file_name("bpffs").join("shoal").join(node.node_id());
    pinned_links(node)
        .iter()
        .map(|rel| {
            let (layout, name) = rel.split_once('/').expect("layout/name");
            let path = root.join(layout).join("links").join(name);
            let out = Netns::node(node).cmd(&["bpftool", "link", "show", "pinned", &path.to_string_lossy(), "-j"]);
            out.assert_ok();
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("bpftool json");
            v["id"].as_u64().expect("link id")
        })
        .collect()
}

/// Every BPF link in the kernel (the lab is the only user of BPF while the test runs): a
/// double attachment that is not pinned shows up here.
fn all_link_count() -> usize {
    let out = std::process::Command::new("bpftool").args(["link", "show", "-j"]).output().expect("bpftool");
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).map(|v| v.len()).unwrap_or(0)
}

#[test]
fn killing_and_restarting_an_agent_under_load_fails_no_request_and_attaches_once() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    lab.node(1)
        .service(&["create", "-d", "--name", "ag", "--replicas", "3", "-p", "8091:80", "shoal/echo", "--http"])
        .assert_ok();
    lab.wait_converged(1, "ag", 3);
    let client = lab.mesh_client();
    let targets: Vec<SocketAddrV4> = (1..=3).map(|i| SocketAddrV4::new(lab.node(i).addr(), 8091)).collect();
    for t in &targets {
        poll_until(SHORT, &format!("{t} to answer"), || client.http(*t).map_err(|f| f.to_string()));
    }
    let node2 = lab.node(2);
    let links_before = pinned_links(node2);
    let ids_before = pinned_link_ids(node2);
    let count_before = all_link_count();
    eprintln!("t113: node2 before: {} pinned links {links_before:?}, ids {ids_before:?}", links_before.len());
    assert!(links_before.len() >= 3, "node2 pins its mesh links: {links_before:?}");

    let fresh = client.load(LoadOptions::new(LoadMode::NewConnection, targets.clone()));
    // The keep-alive run comes from a second client: one address's new connections through
    // other entry nodes would otherwise, now and then, reuse a kept connection's source port
    // to the same task, the 4-tuple collision no-SNAT forwarding cannot tell apart (the newer
    // flow takes the return path; see docs/SPECIFICATION.md, known limits).
    let kept_client = lab.mesh_client();
    let kept = kept_client.load(LoadOptions::new(LoadMode::KeepAlive, targets.clone()));
    poll_until(SHORT, "500 requests before the kill", || (fresh.sent() >= 500).then_some(()));
    node2.kill9();
    let killed_at = fresh.since_start();
    let during_down = fresh.sent();
    poll_until(SHORT, "500 requests while node2's agent is dead", || (fresh.sent() >= during_down + 500).then_some(()));
    node2.restart_daemon();
    poll_until(CLUSTER, "node2 ready again", || {
        let n = lab.node(1).api_get(&format!("/nodes/{}", node2.node_id()));
        (n["Status"]["State"] == "ready").then_some(()).ok_or(n["Status"].clone())
    });
    lab.wait_processes_match_api(1, "ag");
    // The restarted agent has re-read the map and reprogrammed; traffic keeps flowing after it.
    let restarted = fresh.sent();
    poll_until(SHORT, "1,000 requests after the restart", || (fresh.sent() >= restarted + 1000).then_some(()));
    let (fresh, kept) = (fresh.stop(), kept.stop());
    eprintln!(
        "t113: node2 killed at {:.2} s of the load\n  new connections: {}\n  keep-alive: {}",
        killed_at.as_secs_f64(),
        fresh.summary(),
        kept.summary()
    );
    let links_after = pinned_links(node2);
    let ids_after = pinned_link_ids(node2);
    let count_after = all_link_count();
    eprintln!("t113: node2 after: {} pinned links, ids {ids_after:?}", links_after.len());
    assert_eq!(links_after, links_before, "pinned links changed across the restart");
    assert_eq!(ids_after, ids_before, "the restarted agent made new links instead of adopting its own");
    assert_eq!(count_after, count_before, "links in the kernel before and after the restart");
    assert_eq!(fresh.failed(), 0, "new-connection requests failed: {}", fresh.summary());
    assert_eq!(kept.failed(), 0, "keep-alive requests failed: {}", kept.summary());
    assert_eq!(kept.connections, 3, "the keep-alive connections survived: {}", kept.summary());
}
