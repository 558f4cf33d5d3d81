//! In-process clusters on 127.0.0.1 (port 0, so every node gets its own port).
//!
//! Timing goals (down within 3 s) are measured and printed, not asserted: the assertions only
//! guard against hangs (10 s), because a loaded CI machine stretches every timer. Run with
//! `--nocapture` to see the numbers. `SHOAL_GOSSIP_LOSSY_SECS` sets how long the lossy test
//! runs (default 20 s; the netns lab runs the 2-minute version on real links).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::transport::{Faults, MAGIC, VERSION};
use super::*;

const HANG_GUARD: Duration = Duration::from_secs(10);

fn config(node_id: &str) -> GossipConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    GossipConfig::new(node_id, any, any)
}

async fn start_cluster(n: usize, faults: Faults) -> Vec<Gossip> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(Gossip::start_with_faults(config(&format!("node-{i}")), faults).await.unwrap());
    }
    let seed = nodes[0].advertise_addr();
    for node in &nodes {
        node.join(&[seed]); // node-0 ignores itself
    }
    nodes
}

/// Polls `done` every 10 ms; returns how long it took, panics after `guard`.
async fn wait_for(what: &str, guard: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < guard, "timed out after {guard:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn member(node: &Gossip, id: &str) -> Option<Member> {
    node.members().into_iter().find(|m| m.node_id == id)
}

fn state_of(node: &Gossip, id: &str) -> Option<MemberState> {
    member(node, id).map(|m| m.state)
}

fn alive_count(node: &Gossip) -> usize {
    node.members().iter().filter(|m| m.state == MemberState::Alive).count()
}

async fn converge(nodes: &[Gossip]) -> Duration {
    wait_for("every node to see every node alive", HANG_GUARD, || nodes.iter().all(|n| alive_count(n) == nodes.len()))
        .await
}

/// Records when each of `watchers` first sees `id` down, measured from `since`.
async fn time_to_down(watchers: &[Gossip], id: &str, since: Instant) -> Vec<Duration> {
    let mut seen: Vec<Option<Duration>> = vec![None; watchers.len()];
    wait_for(&format!("{id} down everywhere"), HANG_GUARD, || {
        for (i, w) in watchers.iter().enumerate() {
            if seen[i].is_none() && state_of(w, id) == Some(MemberState::Down) {
                seen[i] = Some(since.elapsed());
            }
        }
        seen.iter().all(Option::is_some)
    })
    .await;
    seen.into_iter().map(Option::unwrap).collect()
}

fn down_events(rx: &mut broadcast::Receiver<MemberEvent>) -> Vec<String> {
    let mut downs = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let MemberEvent::Down(id) = event {
            downs.push(id);
        }
    }
    downs
}

#[tokio::test]
async fn five_nodes_converge() {
    let nodes = start_cluster(5, Faults::default()).await;
    let took = converge(&nodes).await;
    println!("5 nodes converged in {took:?}");
    for node in &nodes {
        let me = member(node, node.node_id()).unwrap();
        assert_eq!((me.state, me.addr), (MemberState::Alive, node.advertise_addr()));
    }
}

#[tokio::test]
async fn killed_node_is_reported_down() {
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        let mut nodes = start_cluster(5, Faults::default()).await;
        converge(&nodes).await;
        let mut watch: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
        let victim = nodes.pop().unwrap();
        let id = victim.node_id().to_string();
        let killed = Instant::now();
        drop(victim); // abrupt: no leave
        let times = time_to_down(&nodes, &id, killed).await;
        println!("round {round}: killed node reported down after {times:?} (goal <= 3 s)");
        worst = worst.max(times.iter().copied().max().unwrap());
        // Nobody else was taken down along the way.
        for rx in watch.iter_mut().take(4) {
            assert_eq!(down_events(rx), vec![id.clone()]);
        }
    }
    println!("worst detection time over 3 kills: {worst:?}");
}

#[tokio::test]
async fn leaving_node_is_down_quickly() {
    let mut nodes = start_cluster(5, Faults::default()).await;
    converge(&nodes).await;
    let leaver = nodes.pop().unwrap();
    let id = leaver.node_id().to_string();
    let left = Instant::now();
    let ((), times) = tokio::join!(leaver.shutdown(), time_to_down(&nodes, &id, left));
    println!("node that left reported down after {times:?}");
}

#[tokio::test]
async fn restarted_node_comes_back_up() {
    let mut nodes = start_cluster(5, Faults::default()).await;
    converge(&nodes).await;
    let seed = nodes[0].advertise_addr();
    let mut events = nodes[1].subscribe();

    // Killed, declared down, restarted on the same address with the same ID.
    let old = nodes.pop().unwrap();
    let (id, addr) = (old.node_id().to_string(), old.local_addr());
    let old_bump = member(&nodes[0], &id).unwrap().bump;
    drop(old);
    time_to_down(&nodes, &id, Instant::now()).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // let the aborted tasks close the socket
    let restarted = Gossip::start(GossipConfig::new(id.as_str(), addr, addr)).await.unwrap();
    restarted.join(&[seed]);
    nodes.push(restarted);
    let took = converge(&nodes).await;
    println!("restarted node back up everywhere after {took:?}");
    for node in &nodes {
        assert!(member(node, &id).unwrap().bump > old_bump, "old life still listed");
    }
    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(seen, vec![MemberEvent::Down(id.clone()), MemberEvent::Up(id.clone(), addr)]);

    // Restarted faster than failure detection: foca sees a rename; no down, one more Up.
    let old = nodes.pop().unwrap();
    let new_bump = member(&nodes[0], &id).unwrap().bump;
    drop(old);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let restarted = Gossip::start(GossipConfig::new(id.as_str(), addr, addr)).await.unwrap();
    restarted.join(&[seed]);
    wait_for("the fast restart to be seen", HANG_GUARD, || {
        nodes.iter().all(|n| member(n, &id).is_some_and(|m| m.bump > new_bump && m.state == MemberState::Alive))
    })
    .await;
    nodes.push(restarted);
    converge(&nodes).await;
    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(seen, vec![MemberEvent::Up(id.clone(), addr)]);
}

#[tokio::test]
async fn facts_reach_every_node_and_newest_wins() {
    let nodes = start_cluster(5, Faults::default()).await;
    converge(&nodes).await;
    nodes[0].set_fact("task/1/health", b"starting".to_vec()).unwrap();
    nodes[0].set_fact("task/1/health", b"healthy".to_vec()).unwrap();
    nodes[3].set_fact("load", vec![7]).unwrap();
    let want = |n: &Gossip| {
        n.facts("node-0").get("task/1/health").map(Vec::as_slice) == Some(b"healthy".as_slice())
            && n.facts("node-3").get("load") == Some(&vec![7])
    };
    let took = wait_for("facts everywhere", HANG_GUARD, || nodes.iter().all(want)).await;
    println!("facts spread to 5 nodes in {took:?}");

    // A node joining later gets them too (members re-broadcast their facts on MemberUp).
    let late = Gossip::start(config("node-late")).await.unwrap();
    late.join(&[nodes[2].advertise_addr()]);
    let took = wait_for("facts on the late joiner", HANG_GUARD, || want(&late)).await;
    println!("late joiner had the facts after {took:?}");
    assert!(late.facts("nobody").is_empty());

    let node = &nodes[0];
    assert!(matches!(node.set_fact("", vec![]), Err(GossipError::InvalidFact(_))));
    assert!(matches!(node.set_fact(&"k".repeat(65), vec![]), Err(GossipError::InvalidFact(_))));
    assert!(matches!(node.set_fact("k", vec![0; 513]), Err(GossipError::InvalidFact(_))));
    for i in 1..64 {
        node.set_fact(&format!("k{i}"), vec![]).unwrap();
    }
    assert!(matches!(node.set_fact("one-more", vec![]), Err(GossipError::TooManyFacts { max: 64 })));
}

/// Runs `n` nodes that each drop `loss` of their outgoing datagrams for `duration`, and
/// returns the number of Down events seen after convergence (the goal is zero).
async fn run_lossy(n: usize, loss: f64, duration: Duration) -> usize {
    let nodes = start_cluster(n, Faults { send_loss: loss }).await;
    converge(&nodes).await;
    let mut rxs: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
    let (start, mut suspicions) = (Instant::now(), 0);
    // Members someone currently suspects; a suspicion counts once however far it spreads.
    let mut suspected = std::collections::HashSet::new();
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now: std::collections::HashSet<String> = nodes
            .iter()
            .flat_map(|n| n.members())
            .filter(|m| m.state == MemberState::Suspect)
            .map(|m| m.node_id)
            .collect();
        suspicions += now.difference(&suspected).count();
        suspected = now;
    }
    let downs: Vec<String> = rxs.iter_mut().flat_map(down_events).collect();
    let sent: u64 = nodes.iter().map(|n| n.stats().packets_out).sum();
    let dropped: u64 = nodes.iter().map(|n| n.stats().fault_dropped).sum();
    println!(
        "{n} nodes, {:.0} % loss, {duration:?}: {dropped} of {} datagrams dropped, {suspicions} suspicions, \
         downs: {downs:?}",
        loss * 100.0,
        sent + dropped
    );
    // Loss must not make valid traffic look malformed.
    assert_eq!(nodes.iter().map(|n| n.stats().malformed).sum::<u64>(), 0);
    downs.len()
}

#[tokio::test]
async fn five_percent_loss_causes_no_false_down() {
    let secs = std::env::var("SHOAL_GOSSIP_LOSSY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    assert_eq!(run_lossy(5, 0.05, Duration::from_secs(secs)).await, 0);
}

#[tokio::test]
async fn garbage_datagrams_are_counted_and_dropped() {
    let nodes = start_cluster(2, Faults::default()).await;
    converge(&nodes).await;
    let target = nodes[0].advertise_addr();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let header = |kind: u8| [MAGIC[0], MAGIC[1], VERSION, kind];
    let with = |kind: u8, body: &[u8]| [&header(kind)[..], body].concat();

    // (case, datagram, counts as malformed, counts as oversize)
    let cases: Vec<(&str, Vec<u8>, u64, u64)> = vec![
        ("empty", vec![], 1, 0),
        ("no magic", b"hello gossip".to_vec(), 1, 0),
        ("wrong version", vec![MAGIC[0], MAGIC[1], VERSION + 1, 0, 1, 2], 1, 0),
        ("unknown kind", with(9, b"x"), 1, 0),
        ("swim junk", with(0, &[0xff; 40]), 1, 0),
        ("swim empty", with(0, &[]), 1, 0),
        ("join request junk", with(1, &[0x80; 20]), 1, 0),
        ("join reply junk", with(2, b"\x05abc"), 1, 0),
        ("oversize", with(0, &[0; 1500]), 0, 1),
    ];
    for (name, datagram, malformed, oversize) in cases {
        let before = nodes[0].stats();
        raw.send_to(&datagram, target).await.unwrap();
        wait_for(name, HANG_GUARD, || {
            let after = nodes[0].stats();
            after.malformed - before.malformed == malformed && after.oversize - before.oversize == oversize
        })
        .await;
    }

    // A spray of random datagrams: every one is dropped and counted, nothing breaks.
    let before = nodes[0].stats();
    for i in 0..500u32 {
        let len = (i as usize * 7919) % 1400;
        let mut datagram: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        if i % 2 == 0 && len >= 4 {
            datagram[..4].copy_from_slice(&header((i % 3) as u8));
        }
        raw.send_to(&datagram, target).await.unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for("the spray to be counted", HANG_GUARD, || {
        let after = nodes[0].stats();
        after.malformed + after.queue_full - before.malformed - before.queue_full == 500
    })
    .await;
    println!("after garbage: {:?}", nodes[0].stats());

    // Still a working member: the cluster stays converged and a new node can join through it.
    let late = Gossip::start(config("node-late")).await.unwrap();
    late.join(&[target]);
    let mut all = nodes;
    all.push(late);
    converge(&all).await;
}
