//! Forwarding to upstream resolvers: fake upstreams on 127.0.0.1 that answer, stay silent, fail or
//! truncate. The promise checked everywhere: the client gets an answer, and quickly.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use dns::{Resolver, ResolverConfig};
use hickory_proto::rr::RecordType;

/// The resolver must be kept: dropping the last clone stops serving.
async fn serve_with(config: ResolverConfig) -> (Resolver, std::net::SocketAddr) {
    let resolver = Resolver::new(config);
    resolver.set_records(cluster());
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    (resolver, addr)
}

#[tokio::test]
async fn outside_names_are_forwarded_and_cluster_names_are_not() {
    let upstream = FakeUpstream::start(Upstream::Answer).await;
    let (_resolver, addr) = serve_with(config(vec![upstream.addr], Duration::from_secs(1))).await;
    assert_eq!(summary(&query_udp(addr, "example.com.", RecordType::A).await), "NOERROR 192.0.2.1");
    assert_eq!(summary(&query_tcp(addr, "example.com.", RecordType::A).await), "NOERROR 192.0.2.1");
    // (The fake upstream answers A records to everything.)
    assert_eq!(summary(&query_udp(addr, "8.8.8.8.in-addr.arpa.", RecordType::PTR).await), "NOERROR 192.0.2.1");
    let forwarded = upstream.udp_queries.load(Ordering::SeqCst) + upstream.tcp_queries.load(Ordering::SeqCst);
    assert_eq!(forwarded, 3);

    // Isolation: another network's names and tasks.<unknown> never reach the upstream.
    assert_eq!(summary(&query_udp(addr, "hidden.", RecordType::A).await), "NXDOMAIN");
    assert_eq!(summary(&query_udp(addr, "tasks.nothing.", RecordType::A).await), "NXDOMAIN");
    assert_eq!(summary(&query_udp(addr, "web.", RecordType::AAAA).await), "NOERROR");
    let forwarded_after = upstream.udp_queries.load(Ordering::SeqCst) + upstream.tcp_queries.load(Ordering::SeqCst);
    assert_eq!(forwarded_after, forwarded);
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_after_the_timeout() {
    let silent = FakeUpstream::start(Upstream::Silent).await;
    let (_resolver, addr) = serve_with(config(vec![silent.addr], Duration::from_millis(300))).await;
    let started = Instant::now();
    assert_eq!(summary(&query_udp(addr, "example.com.", RecordType::A).await), "SERVFAIL");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test]
async fn the_next_upstream_answers_when_the_first_is_silent_or_failing() {
    let silent = FakeUpstream::start(Upstream::Silent).await;
    let failing = FakeUpstream::start(Upstream::ServFail).await;
    let good = FakeUpstream::start(Upstream::Answer).await;
    let (_resolver, addr) =
        serve_with(config(vec![silent.addr, failing.addr, good.addr], Duration::from_millis(300))).await;
    let started = Instant::now();
    assert_eq!(summary(&query_udp(addr, "example.com.", RecordType::A).await), "NOERROR 192.0.2.1");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(failing.udp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_upstream_or_dead_upstreams_give_servfail_at_once() {
    let (_resolver, addr) = serve_with(config(vec![], Duration::from_secs(2))).await;
    let started = Instant::now();
    assert_eq!(summary(&query_udp(addr, "example.com.", RecordType::A).await), "SERVFAIL");
    assert!(started.elapsed() < Duration::from_millis(500));

    // Nothing listens there: ICMP port unreachable fails each try long before its 2 s timeout.
    let (udp, tcp, dead) = loopback_sockets().await;
    drop((udp, tcp));
    let (_resolver, addr) = serve_with(config(vec![dead, dead, dead], Duration::from_secs(2))).await;
    let started = Instant::now();
    assert_eq!(summary(&query_udp(addr, "example.com.", RecordType::A).await), "SERVFAIL");
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    let upstream = FakeUpstream::start(Upstream::TruncateUdp).await;
    let (_resolver, addr) = serve_with(config(vec![upstream.addr], Duration::from_secs(1))).await;
    // Over TCP the client gets all 100 records the upstream gave us over TCP.
    let answer = query_tcp(addr, "many.example.", RecordType::A).await;
    assert_eq!(addresses(&answer).len(), 100);
    // Over UDP the upstream was asked twice (UDP, then TCP), and the client gets what fits in 512
    // bytes with TC set, so it retries over TCP itself.
    let before = (upstream.udp_queries.load(Ordering::SeqCst), upstream.tcp_queries.load(Ordering::SeqCst));
    let answer = query_udp(addr, "many.example.", RecordType::A).await;
    assert!(answer.metadata.truncation);
    assert!(!addresses(&answer).is_empty());
    let after = (upstream.udp_queries.load(Ordering::SeqCst), upstream.tcp_queries.load(Ordering::SeqCst));
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
}

#[tokio::test]
async fn forwards_over_the_limit_get_servfail_without_waiting() {
    let silent = FakeUpstream::start(Upstream::Silent).await;
    let config = ResolverConfig { max_inflight_forwards: 2, ..config(vec![silent.addr], Duration::from_secs(2)) };
    let (_resolver, addr) = serve_with(config).await;
    // Two forwards hold both permits for 2 s …
    let holders: Vec<_> = (0..2).map(|_| tokio::spawn(query_udp(addr, "slow.example.", RecordType::A))).collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while silent.udp_queries.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the two forwards never reached the upstream");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // … so a third is refused at once, while cluster names still answer.
    let started = Instant::now();
    assert_eq!(summary(&query_udp(addr, "other.example.", RecordType::A).await), "SERVFAIL");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(summary(&query_udp(addr, "web.", RecordType::A).await), "NOERROR 10.0.1.2");
    for holder in holders {
        assert_eq!(summary(&holder.await.unwrap()), "SERVFAIL");
    }
}
