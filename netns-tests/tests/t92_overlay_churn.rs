//! Band 92 (overlay networks, test 5): churn. A service on an overlay network is scaled
//! 0 → 50 → 0 three times (on a /25, so addresses are reused) while a sampler reads `GET /tasks`
//! continuously: no address is ever held by two live tasks at once. Afterwards, and again at 6
//! replicas, every node's VXLAN FDB and neighbour table hold exactly the live endpoints: one
//! static entry (MAC → VTEP, `self permanent`) per task on another node, the neighbour entry
//! (IP → that MAC, `PERMANENT`) beside it, the MAC being the one the task's interface really
//! has, and nothing left over from a task that is gone. A global service keeps one task per node
//! on the network throughout, so every node keeps its VXLAN device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use netns_tests::overlay::{is_terminal, vni, Netns};
use netns_tests::{poll_until, Lab, TaskView, CLUSTER};

const NET: &str = "churn";
const ROUNDS: usize = 3;
const PEAK: usize = 50;

#[test]
fn churn_leaves_exact_tables_and_never_shares_an_address() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    let net = lab.create_overlay(1, NET, &["--subnet", "10.92.0.0/25"]);
    let vni = vni(&net);
    n1.service(&["create", "-d", "--name", "anchor", "--mode", "global", "--network", NET, "shoal/echo"]).assert_ok();
    lab.wait_converged(1, "anchor", 3);
    n1.service(&["create", "-d", "--name", "churn", "--replicas", "0", "--network", NET, "shoal/echo"]).assert_ok();

    let done = AtomicBool::new(false);
    let conflicts: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let samples = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = 0usize;
            while !done.load(Ordering::Relaxed) {
                if let Ok(tasks) = lab.try_tasks(1, &[]) {
                    samples += 1;
                    if let Some(c) = shared_address(&tasks) {
                        conflicts.lock().unwrap().push(c);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        for round in 1..=ROUNDS {
            n1.service(&["scale", "-d", &format!("churn={PEAK}")]).assert_ok();
            lab.wait_converged(1, "churn", PEAK);
            eprintln!("round {round}: {PEAK} running");
            n1.service(&["scale", "-d", "churn=0"]).assert_ok();
            lab.wait_converged(1, "churn", 0);
        }
        done.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler")
    });
    let conflicts = conflicts.into_inner().unwrap();
    assert!(samples >= 20, "only {samples} samples of GET /tasks");
    assert!(conflicts.is_empty(), "addresses held by two live tasks at once ({} samples):\n{}", conflicts.len(), {
        conflicts.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    });

    // At 0 the tables hold the anchors only; at 6 the anchors and the 6.
    wait_tables_exact(&lab, vni);
    n1.service(&["scale", "-d", "churn=6"]).assert_ok();
    lab.wait_converged(1, "churn", 6);
    wait_tables_exact(&lab, vni);
    let final_tasks = lab.try_tasks(1, &[]).unwrap();
    assert_eq!(shared_address(&final_tasks), None);
}

/// A description of the first address two live (non-terminal) tasks hold on [`NET`], if any.
fn shared_address(tasks: &[TaskView]) -> Option<String> {
    let mut holders: HashMap<Ipv4Addr, &TaskView> = HashMap::new();
    for t in tasks.iter().filter(|t| !is_terminal(&t.state)) {
        let Some((ip, _)) = t.overlay_addr(NET) else { continue };
        if let Some(other) = holders.insert(ip, t) {
            return Some(format!("{ip}: {} and {}", other.brief(), t.brief()));
        }
    }
    None
}

/// One endpoint as a node's tables should show it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    ip: Ipv4Addr,
    mac: String,
    vtep: Ipv4Addr,
}

/// Polls until every node's tables for `vni` hold exactly the running endpoints on [`NET`] of
/// the other nodes (and, for neighbours, optionally its own).
#[track_caller]
fn wait_tables_exact(lab: &Lab, vni: u32) {
    poll_until(CLUSTER, "every node's FDB and neighbours to equal the live endpoints", || {
        let tasks = lab.try_tasks(1, &[])?;
        let live: Vec<&TaskView> = tasks.iter().filter(|t| !is_terminal(&t.state)).collect();
        if live.iter().any(|t| !t.is_running() || !t.is_current()) {
            return Err(format!("tasks still moving: {:?}", live.iter().map(|t| t.brief()).collect::<Vec<_>>()));
        }
        let addrs = lab.node_addrs(1);
        let mut endpoints = Vec::new();
        for t in live {
            let Some((ip, _)) = t.overlay_addr(NET) else { continue };
            let (_, mac, _) = t.netns().iface_with_addr(ip).ok_or_else(|| format!("{ip} not in {}", t.brief()))?;
            let vtep = *addrs.get(&t.node_id).ok_or_else(|| format!("no address for node {}", t.node_id))?;
            endpoints.push(Endpoint { ip, mac, vtep });
        }
        for node in lab.nodes() {
            check_node(node.addr(), &Netns::node(node), vni, &endpoints)
                .map_err(|e| format!("{}: {e}", node.hostname()))?;
        }
        Ok::<_, String>(())
    });
}

fn check_node(me: Ipv4Addr, ns: &Netns, vni: u32, endpoints: &[Endpoint]) -> Result<(), String> {
    let dev = ns.vxlan_for(vni).ok_or_else(|| format!("no VXLAN device for vni {vni}"))?;
    if dev.learning {
        return Err(format!("{} learns addresses; entries must be static", dev.name));
    }
    let remote: BTreeSet<(String, Ipv4Addr)> =
        endpoints.iter().filter(|e| e.vtep != me).map(|e| (e.mac.clone(), e.vtep)).collect();
    let fdb = ns.fdb(&dev.name);
    let zero = "00:00:00:00:00:00";
    if let Some(e) = fdb.iter().find(|e| !e.is_static() || e.mac == zero) {
        return Err(format!("{}: FDB entry {e:?} is not a static per-endpoint entry", dev.name));
    }
    let got: BTreeSet<(String, Ipv4Addr)> = fdb.iter().map(|e| (e.mac.clone(), e.dst)).collect();
    if got.len() != fdb.len() || got != remote {
        return Err(format!("{} FDB {got:?}, want {remote:?}", dev.name));
    }
    let neigh = ns.neighbours(&dev.name);
    if let Some(n) = neigh.iter().find(|n| !n.is_permanent()) {
        return Err(format!("{}: neighbour {n:?} is not permanent", dev.name));
    }
    let got: BTreeMap<Ipv4Addr, Option<String>> = neigh.iter().map(|n| (n.ip, n.mac.clone())).collect();
    let want = |all: bool| -> BTreeMap<Ipv4Addr, Option<String>> {
        endpoints.iter().filter(|e| all || e.vtep != me).map(|e| (e.ip, Some(e.mac.clone()))).collect()
    };
    // Local endpoints may be there too (the design lets the ARP proxy answer for them); nothing
    // else may.
    if got.len() != neigh.len() || (got != want(false) && got != want(true)) {
        return Err(format!("{} neighbours {got:?}, want {:?} (or with local ones)", dev.name, want(false)));
    }
    Ok(())
}
