//! Band 95 (overlay networks, test 8): the real docker CLI (28.x, unmodified) drives overlay
//! networks on a Shoal manager: `network create -d overlay` with IPAM flags, `network ls`,
//! `network inspect`, `service create --network`, a refused `network rm` while in use, and
//! `network rm`. Each prints what Docker would, and the API agrees with what it did.

use netns_tests::overlay::{in_subnet, vni};
use netns_tests::table::parse_table;
use netns_tests::{poll_until, CmdOutput, Lab, CLUSTER};

fn rows(out: &CmdOutput) -> Vec<std::collections::HashMap<String, String>> {
    let (names, rows) = parse_table(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
    rows.into_iter().map(|r| names.iter().cloned().zip(r).collect()).collect()
}

#[test]
fn docker_cli_drives_overlay_networks() {
    let lab = Lab::with_daemons(2);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);

    let out = n1.docker(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.95.0.0/24",
        "--gateway",
        "10.95.0.254",
        "--ip-range",
        "10.95.0.0/25",
        "--attachable",
        "web",
    ]);
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    assert!(id.len() >= 12, "create printed {id:?}");

    // ls: Docker's columns, the overlay row with swarm scope.
    let ls = n1.docker(&["network", "ls"]);
    ls.assert_ok();
    let table = rows(&ls);
    let web = table.iter().find(|r| r["NAME"] == "web").unwrap_or_else(|| panic!("no web row:\n{}", ls.stdout));
    assert_eq!(
        (web["NETWORK ID"].as_str(), web["DRIVER"].as_str(), web["SCOPE"].as_str()),
        (&id[..12], "overlay", "swarm")
    );
    let q = n1.docker(&["network", "ls", "-q", "--filter", "driver=overlay"]);
    assert!(q.assert_ok().stdout.lines().any(|l| l == &id[..12]), "{}", q.stdout);

    // inspect: what was asked for, and a VNI.
    let inspect = n1.docker(&["network", "inspect", "web"]);
    let json: serde_json::Value = serde_json::from_str(&inspect.assert_ok().stdout).expect("inspect prints JSON");
    let net = &json[0];
    assert_eq!(
        (net["Id"].as_str(), net["Driver"].as_str(), net["Scope"].as_str()),
        (Some(id.as_str()), Some("overlay"), Some("swarm"))
    );
    assert_eq!(net["Attachable"], true);
    assert_eq!(net["Internal"], false);
    let ipam = &net["IPAM"]["Config"][0];
    assert_eq!(
        (ipam["Subnet"].as_str(), ipam["Gateway"].as_str(), ipam["IPRange"].as_str()),
        (Some("10.95.0.0/24"), Some("10.95.0.254"), Some("10.95.0.0/25")),
        "{net}"
    );
    assert!(vni(net) >= 4096, "{net}");
    let fmt = n1.docker(&["network", "inspect", "-f", "{{.Driver}} {{.Scope}}", "web"]);
    assert_eq!(fmt.assert_ok().stdout.trim(), "overlay swarm");

    // A service on it: its tasks get addresses from the range, the service a VIP on the network.
    n1.docker(&["service", "create", "-d", "--name", "svc", "--replicas", "2", "--network", "web", "shoal/echo"])
        .assert_ok();
    let tasks = lab.wait_converged(1, "svc", 2);
    let range = (std::net::Ipv4Addr::new(10, 95, 0, 0), 25);
    for t in &tasks {
        let ip = t.overlay_ip("web");
        assert!(in_subnet(ip, range), "{} got {ip}, outside --ip-range 10.95.0.0/25", t.brief());
    }
    let svc = n1.docker(&["service", "inspect", "svc"]);
    let svc: serde_json::Value = serde_json::from_str(&svc.assert_ok().stdout).expect("JSON");
    let vips = svc[0]["Endpoint"]["VirtualIPs"].as_array().cloned().unwrap_or_default();
    assert!(
        vips.iter()
            .any(|v| v["NetworkID"] == id.as_str() && v["Addr"].as_str().is_some_and(|a| a.starts_with("10.95.0."))),
        "no VIP on web: {vips:?}"
    );
    assert_eq!(svc[0]["Spec"]["TaskTemplate"]["Networks"][0]["Target"], id.as_str(), "{}", svc[0]["Spec"]);

    // rm while in use: Docker's refusal; the network stays.
    n1.docker(&["network", "rm", "web"]).assert_fails_with("is in use by service");
    n1.docker(&["network", "inspect", "web"]).assert_ok();

    n1.docker(&["service", "rm", "svc"]).assert_ok();
    poll_until(CLUSTER, "docker network rm web to succeed once svc is gone", || {
        let out = n1.docker(&["network", "rm", "web"]);
        (out.success() && out.stdout.trim() == "web").then_some(()).ok_or(out.describe())
    });
    let gone = n1.docker(&["network", "inspect", "web"]);
    assert!(!gone.success() && gone.combined().contains("web"), "{}", gone.describe());
    assert!(
        gone.combined().contains("not found") || gone.combined().contains("No such network"),
        "{}",
        gone.describe()
    );
    let ls = n1.docker(&["network", "ls"]);
    assert!(!rows(ls.assert_ok()).iter().any(|r| r["NAME"] == "web"), "{}", ls.stdout);
}
