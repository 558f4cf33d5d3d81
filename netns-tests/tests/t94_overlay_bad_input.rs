//! Band 94 (overlay networks, test 7): bad input to `shoal network create` gets Docker's
//! messages and creates nothing: a subnet overlapping an existing network's, a malformed CIDR, a
//! gateway or an IP range outside the subnet, an unknown driver, a taken name. `network rm` of a
//! network a service uses is refused and the network stays; once the service is gone it works.

use netns_tests::{poll_until, Lab, CLUSTER};

#[test]
fn bad_network_input_gets_dockers_messages_and_creates_nothing() {
    let lab = Lab::with_daemons(1);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    let create = |args: &[&str]| {
        let mut full = vec!["network", "create"];
        full.extend_from_slice(args);
        n1.shoal(&full)
    };
    let good = lab.create_overlay(1, "good", &["--subnet", "10.94.0.0/24"]);
    let before = lab.network_names(1);
    assert!(before.contains(&"good".to_string()), "{before:?}");

    let overlap = "Pool overlaps with other one on this address space";
    create(&["-d", "overlay", "--subnet", "10.94.0.128/25", "inside"]).assert_fails_with(overlap);
    create(&["-d", "overlay", "--subnet", "10.94.0.0/24", "same"]).assert_fails_with(overlap);
    create(&["-d", "overlay", "--subnet", "10.94.0.0/16", "around"]).assert_fails_with(overlap);

    create(&["-d", "overlay", "--subnet", "10.94.300.0/24", "badcidr"]).assert_fails_with("invalid CIDR");
    create(&["-d", "overlay", "--subnet", "garbage", "badcidr"]).assert_fails_with("invalid CIDR");

    create(&["-d", "overlay", "--subnet", "10.94.1.0/24", "--gateway", "10.95.0.1", "badgw"])
        .assert_fails_with("no matching subnet for gateway 10.95.0.1");
    create(&["-d", "overlay", "--subnet", "10.94.1.0/24", "--ip-range", "10.95.0.0/25", "badrange"])
        .assert_fails_with("no matching subnet for range 10.95.0.0/25");

    create(&["-d", "foo", "nodriver"]).assert_fails_with(r#"plugin "foo" not found"#);
    create(&["-d", "overlay", "good"]).assert_fails_with("network with name good already exists");

    assert_eq!(lab.network_names(1), before, "a refused create left a network behind");
    assert_eq!(lab.inspect_network(1, "good"), good, "a refused create changed the existing network");

    // In use: refused, still there; after the service is gone, removed.
    n1.service(&["create", "-d", "--name", "user", "--network", "good", "shoal/echo"]).assert_ok();
    lab.wait_converged(1, "user", 1);
    n1.shoal(&["network", "rm", "good"]).assert_fails_with("is in use by service");
    assert_eq!(lab.inspect_network(1, "good")["Id"], good["Id"], "good is gone after a refused rm");
    n1.service(&["rm", "user"]).assert_ok();
    poll_until(CLUSTER, "network rm good to succeed once its service is gone", || {
        let out = n1.shoal(&["network", "rm", "good"]);
        out.success().then_some(()).ok_or(out.combined())
    });
    let err = lab.try_inspect_network(1, "good").expect_err("good still inspects after rm");
    assert!(err.contains("network good not found"), "{err}");
    assert!(!lab.network_names(1).contains(&"good".to_string()));
}
