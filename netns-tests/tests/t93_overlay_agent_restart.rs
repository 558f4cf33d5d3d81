//! Band 93 (overlay networks, test 6): the data plane outlives its agent. A long TCP transfer
//! runs between tasks on node2 and node3 over an overlay network while node2's daemon, then
//! node3's, is killed with SIGKILL and restarted. Bytes keep arriving after each is back; the
//! transfer completes with every byte intact and in order; the tasks keep
//! their processes, and each node keeps the VXLAN device it had (adopted, not rebuilt).

use std::net::SocketAddrV4;
use std::time::Duration;

use netns_tests::overlay::{vni, Netns, Transfer};
use netns_tests::{poll_until, Lab, CLUSTER};

/// The sender's pace: slow enough that the transfer spans both restarts, fast enough to notice a
/// stall at once.
const RATE: u64 = 2 << 20;
/// How much more must arrive to count as "still flowing".
const STEP: u64 = 2 << 20;

#[test]
fn a_transfer_survives_kill_9_and_restart_of_both_agents() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let net = lab.create_overlay(1, "keep", &["--subnet", "10.93.0.0/24"]);
    let vni = vni(&net);
    let t2 = lab.pinned_echo(1, "keep2", "keep", 2);
    let t3 = lab.pinned_echo(1, "keep3", "keep", 3);
    let ip3 = t3.overlay_ip("keep");
    let devices: Vec<_> = [2, 3]
        .map(|i| Netns::node(lab.node(i)).vxlan_for(vni).unwrap_or_else(|| panic!("node{i}: no VXLAN for {vni}")))
        .to_vec();

    let transfer = Transfer::start(&t2.netns(), &t3.netns(), SocketAddrV4::new(ip3, 5001), Some(RATE), None)
        .unwrap_or_else(|e| panic!("start the transfer: {e}"));
    let flowing = |what: &str| {
        let from = transfer.received();
        poll_until(Duration::from_secs(30), &format!("{} more bytes {what}", STEP), || {
            let now = transfer.received();
            (now >= from + STEP).then_some(now).ok_or(format!("{now} bytes so far (from {from})"))
        });
    };
    flowing("before any kill");

    for victim in [2, 3] {
        let node = lab.node(victim);
        // Back at once: a daemon that stayed away longer would be declared down and its tasks
        // replaced, which is t81's subject, not this one's.
        node.kill9();
        let dead_from = transfer.received();
        node.restart_daemon();
        eprintln!("node{victim}: {} bytes arrived while its daemon restarted", transfer.received() - dead_from);
        let host = node.hostname().to_string();
        lab.wait_node_ls(1, &format!("{host} Ready"), |rows| {
            match rows.iter().find(|r| r.hostname == host).map(|r| r.status.as_str()) {
                Some("Ready") => Ok(()),
                other => Err(format!("{host}: {other:?}")),
            }
        });
        flowing(&format!("after node{victim}'s daemon restarted"));
    }

    let total = transfer.finish(CLUSTER).unwrap_or_else(|e| panic!("the transfer broke: {e}"));
    eprintln!("{total} bytes crossed two agent restarts intact");

    // The tasks were adopted (same processes), and so were the VXLAN devices.
    for (service, before) in [("keep2", &t2), ("keep3", &t3)] {
        let now = lab.wait_converged(1, service, 1).remove(0);
        assert_eq!((now.id.as_str(), now.pid), (before.id.as_str(), before.pid), "{service} was restarted");
    }
    for (i, before) in [2, 3].into_iter().zip(&devices) {
        let now = Netns::node(lab.node(i)).vxlan_for(vni);
        assert_eq!(now.as_ref(), Some(before), "node{i}: the VXLAN device was rebuilt by the restart");
    }
}
