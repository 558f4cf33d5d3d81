//! Band 111 (routing mesh, test 2): east-west traffic through a service's VIP. From inside a task
//! of another service on the same overlay network, `web` resolves (embedded DNS) to one VIP, the
//! service's `Endpoint.VirtualIPs` entry for that network, and connections to it on port 80 are
//! balanced over every `web` task by the socket programs, with the caller's own overlay address
//! as the source the tasks see.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netns_tests::dns::must_dig;
use netns_tests::mesh::{sh_in_task, Reply};
use netns_tests::overlay::parse_cidr;
use netns_tests::Lab;

/// Connections made from the caller task; with 3 backends one of them gets none of 30 flows with
/// probability 3 × (2/3)^30 ≈ 2e-5.
const REQUESTS: usize = 30;

#[test]
fn a_vip_balances_connections_from_another_service_over_every_task() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let net = lab.create_overlay(1, "ewnet", &["--subnet", "10.111.1.0/24"]);
    let net_id = net["Id"].as_str().expect("network ID").to_string();
    let caller = lab.pinned_echo(1, "caller", "ewnet", 1);
    lab.node(1)
        .service(&["create", "-d", "--name", "web", "--replicas", "3", "--network", "ewnet", "shoal/echo", "--http"])
        .assert_ok();
    let tasks = lab.wait_converged(1, "web", 3);
    let placement = lab.placement(1, &tasks);
    assert_eq!(placement.len(), 3, "one web task per node: {placement:?}");
    let want: BTreeMap<String, String> =
        tasks.iter().map(|t| (format!("web.{}.{}", t.slot, t.id), lab.hostnames(1)[&t.node_id].clone())).collect();

    let endpoint = lab.inspect_service(1, "web")["Endpoint"].clone();
    let vips: Vec<Ipv4Addr> = endpoint["VirtualIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["NetworkID"] == net_id.as_str())
        .filter_map(|v| parse_cidr(v["Addr"].as_str()?).map(|(ip, _)| ip))
        .collect();
    assert_eq!(vips.len(), 1, "web has one VIP on ewnet: {endpoint}");
    let vip = vips[0];
    assert_eq!(must_dig(caller.pid, &["web"]).ips(), [vip], "`web` resolves to its VIP");

    let caller_ip = caller.overlay_ip("ewnet");
    // By name (the task's resolver) and by address; a new connection each time.
    for target in ["web".to_string(), vip.to_string()] {
        let script =
            format!("for i in $(seq {REQUESTS}); do curl -sS --max-time 2 http://{target}/ || echo FAILED; done");
        let out = sh_in_task(lab.node(1), &caller, &script);
        out.assert_ok();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for line in out.stdout.lines() {
            let r =
                Reply::parse(line).unwrap_or_else(|| panic!("http://{target}/ answered {line:?}: {}", out.describe()));
            assert_eq!(r.from.ip(), caller_ip, "{} saw the caller as {}", r.task, r.from);
            assert_eq!(want.get(&r.task), Some(&r.node), "{line:?} is no web task on its node: {want:?}");
            *seen.entry(r.task).or_default() += 1;
        }
        eprintln!("t111: http://{target}/ from caller ({caller_ip}): {seen:?}");
        assert_eq!(seen.values().sum::<usize>(), REQUESTS, "{}", out.describe());
        assert_eq!(seen.len(), 3, "http://{target}/ reached {seen:?}, want all of {want:?}");
    }
}
