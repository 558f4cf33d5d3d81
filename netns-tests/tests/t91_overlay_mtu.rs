//! Band 91 (overlay networks, test 4): MTU. With the underlay at 1500 and at 1400 bytes, an
//! overlay network's interfaces get underlay − 50 (the VXLAN overhead), a 1 MB TCP transfer and
//! 1,400-byte (1,300 at 1400) UDP datagrams with the don't-fragment bit cross between tasks on
//! two nodes, one byte more than the MTU allows is refused at the task, and no fragment ever
//! appears on the underlay. `-o com.docker.network.driver.mtu=N` overrides the default.
//!
//! Each MTU has its own 2-node lab: the underlay MTU is set on both ends of every node link
//! before the daemons start.

use std::time::Duration;

use netns_tests::overlay::{tcp_transfer, udp_datagrams, Capture, Netns};
use netns_tests::{Lab, TaskView};

const MB: u64 = 1 << 20;

fn lab_with_underlay_mtu(mtu: u32) -> Lab {
    let lab = Lab::new(2);
    for i in 1..=2 {
        lab.set_underlay_mtu(i, mtu);
    }
    lab.start_daemons();
    lab.form_swarm(1, &[]);
    for i in 1..=2 {
        assert_eq!(Netns::node(lab.node(i)).link_mtu("eth0"), mtu);
    }
    lab
}

/// The checks for one network between two tasks on node1 and node2 whose interface MTU must be
/// `mtu`, sending `datagram`-byte UDP payloads.
fn check_network(lab: &Lab, network: &str, vni: u32, mtu: u32, underlay: u32, datagram: usize) {
    let t1 = lab.pinned_echo(1, &format!("{network}-1"), network, 1);
    let t2 = lab.pinned_echo(1, &format!("{network}-2"), network, 2);
    let (ip1, ip2) = (t1.overlay_ip(network), t2.overlay_ip(network));
    for (t, ip) in [(&t1, ip1), (&t2, ip2)] {
        let (ifname, _, got) = t.netns().iface_with_addr(ip).unwrap_or_else(|| panic!("{ip} not in {}", t.brief()));
        assert_eq!(got, mtu, "{}: {ifname} MTU", t.brief());
    }
    for i in 1..=2 {
        let dev = Netns::node(lab.node(i)).vxlan_for(vni).unwrap_or_else(|| panic!("node{i}: no VXLAN with vni {vni}"));
        // The VXLAN device carries at least the network's MTU and never more than the underlay
        // allows (equal to both without the option).
        assert!(dev.mtu >= mtu && dev.mtu <= underlay - 50, "node{i}: {} MTU {}, network {mtu}", dev.name, dev.mtu);
    }

    // Any IPv4 fragment, outer or inner, on node1's underlay.
    let fragments = Capture::underlay(lab.node(1), "ip[6:2] & 0x3fff != 0", Duration::from_secs(120));
    let (n1, n2) = (t1.netns(), t2.netns());
    for (from, to, to_ip, what) in [(&n1, &n2, ip2, "node1 -> node2"), (&n2, &n1, ip1, "node2 -> node1")] {
        let took = tcp_transfer(from, to, to_ip, 5001, MB).unwrap_or_else(|e| panic!("{network}: 1 MB {what}: {e}"));
        eprintln!("{network} (MTU {mtu}): 1 MB {what} in {took:?}");
        let got = udp_datagrams(from, to, to_ip, 5002, datagram, 20)
            .unwrap_or_else(|e| panic!("{network}: {datagram}-byte datagrams {what}: {e}"));
        assert_eq!(got, 20, "{network}: {datagram}-byte datagrams {what}: {got} of 20 arrived");
    }
    // The limit is the MTU itself: one byte more than fits is refused before it leaves the task.
    let over = mtu as usize - 28 + 1;
    let err = udp_datagrams(&n1, &n2, ip2, 5003, over, 1).expect_err("a datagram over the MTU with DF was sent");
    assert!(err.contains("Message too long"), "{network}: {over} bytes: {err}");
    let fragments = fragments.stop();
    assert_eq!(fragments.packets, 0, "{network}: fragments on the underlay:\n{}", fragments.text());
    remove(lab, &[&t1, &t2]);
}

fn remove(lab: &Lab, tasks: &[&TaskView]) {
    for t in tasks {
        lab.node(1).service(&["rm", &t.service_id]).assert_ok();
    }
}

#[test]
fn underlay_1500_carries_full_size_traffic_and_the_mtu_option_overrides() {
    let lab = lab_with_underlay_mtu(1500);
    let net = lab.create_overlay(1, "mtu", &["--subnet", "10.91.1.0/24"]);
    assert_eq!(net["Options"].get("com.docker.network.driver.mtu"), None, "{net}");
    check_network(&lab, "mtu", netns_tests::overlay::vni(&net), 1450, 1500, 1400);

    let net =
        lab.create_overlay(1, "mtu-opt", &["--subnet", "10.91.2.0/24", "-o", "com.docker.network.driver.mtu=1300"]);
    assert_eq!(net["Options"]["com.docker.network.driver.mtu"], "1300", "{net}");
    check_network(&lab, "mtu-opt", netns_tests::overlay::vni(&net), 1300, 1500, 1200);
}

#[test]
fn underlay_1400_carries_full_size_traffic() {
    let lab = lab_with_underlay_mtu(1400);
    let net = lab.create_overlay(1, "mtu", &["--subnet", "10.91.3.0/24"]);
    check_network(&lab, "mtu", netns_tests::overlay::vni(&net), 1350, 1400, 1300);
}
