//! Bad input never crashes, wedges or bloats the resolver: a seeded flood of random and mutated
//! datagrams, then garbage, cut-short and stalled TCP frames, after which valid queries still
//! answer over both protocols and the process's RSS has not grown past a bound.

mod common;

use std::time::Duration;

use common::*;
use dns::Resolver;
use hickory_proto::rr::RecordType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const DATAGRAMS: usize = 100_000;
/// Growth of the resident set allowed across the whole flood.
const RSS_GROWTH_LIMIT_KB: u64 = 64 * 1024;

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A datagram: pure noise, or a valid query with a few bytes changed and maybe cut short.
fn bad_datagram(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    if rng.random_bool(0.5) {
        let len = rng.random_range(0..600);
        (0..len).map(|_| rng.random()).collect()
    } else {
        let mut datagram = valid.to_vec();
        for _ in 0..rng.random_range(1..5) {
            let at = rng.random_range(0..datagram.len());
            datagram[at] = rng.random();
        }
        if rng.random_bool(0.3) {
            datagram.truncate(rng.random_range(0..datagram.len()));
        }
        datagram
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_neither_crashes_nor_wedges_nor_bloats() {
    let resolver = Resolver::new(config(vec![], Duration::from_millis(100)));
    resolver.set_records(cluster());
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    assert_eq!(summary(&query_udp(addr, "web.", RecordType::A).await), "NOERROR 10.0.1.2");
    let rss_before = rss_kb();

    let mut rng = StdRng::seed_from_u64(0x5_0a1);
    let valid = query_message("tasks.web.", RecordType::A, true).to_vec().unwrap();
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for sent in 0..DATAGRAMS {
        let datagram = bad_datagram(&mut rng, &valid);
        let _ = flood.send_to(&datagram, addr).await;
        if sent % 256 == 0 {
            // Let the server drain its socket so the flood reaches the parser, not only the
            // kernel's receive queue.
            tokio::task::yield_now().await;
        }
    }

    // The flood reached the parser: some of it was answered (FORMERR and the like); only the
    // kernel's queue bounds how many answers are still waiting on our socket.
    let mut answered = 0;
    let mut buffer = [0u8; 1500];
    while flood.try_recv(&mut buffer).is_ok() {
        answered += 1;
    }
    assert!(answered >= 100, "only {answered} answers to the flood");

    // TCP: noise frames, frames that promise more than they send, and connections that stall
    // mid-frame and stay open while valid clients are served.
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let frame: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..300)).map(|_| rng.random()).collect(),
            1 => [&[0x40, 0x00][..], &valid[..valid.len() / 2]].concat(),
            2 => [&(valid.len() as u16).to_be_bytes()[..], &bad_datagram(&mut rng, &valid)].concat(),
            _ => vec![0x00, 0x00, 0x00, 0x01, 0xff],
        };
        let _ = stream.write_all(&frame).await;
        if i % 10 == 0 {
            stalled.push(stream);
        }
    }

    // Valid queries answer over both protocols, with stalled connections still open.
    assert_eq!(summary(&query_udp(addr, "web.", RecordType::A).await), "NOERROR 10.0.1.2");
    assert_eq!(summary(&query_tcp(addr, "web.", RecordType::A).await), "NOERROR 10.0.1.2");
    let answer = query_udp(addr, "tasks.web.", RecordType::A).await;
    assert_eq!(addresses(&answer).len(), 3);
    drop(stalled);

    let growth = rss_kb().saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_LIMIT_KB, "RSS grew by {growth} kB during the flood");
}
