//! Cluster names answered over real sockets (UDP and TCP on 127.0.0.1), end to end through
//! hickory's server loops and wire format.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use dns::{Records, Resolver};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

fn resolver() -> Resolver {
    // No upstream: a name that leaked to forwarding would show up as SERVFAIL.
    let resolver = Resolver::new(config(vec![], Duration::from_millis(200)));
    resolver.set_records(cluster());
    resolver
}

#[tokio::test]
async fn cluster_names_over_udp_and_tcp() {
    let resolver = resolver();
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    let cases = [
        ("web.", RecordType::A, "NOERROR 10.0.1.2"),
        ("WeB.", RecordType::A, "NOERROR 10.0.1.2"),
        ("www.", RecordType::A, "NOERROR 10.0.1.2"),
        ("web.2.bbb.", RecordType::A, "NOERROR 10.0.1.11"),
        ("web.3.", RecordType::A, "NOERROR 10.0.1.12"),
        ("web.", RecordType::AAAA, "NOERROR"),
        ("web.", RecordType::MX, "NOERROR"),
        ("hidden.", RecordType::A, "NXDOMAIN"),
        ("tasks.hidden.", RecordType::A, "NXDOMAIN"),
        ("tasks.nope.", RecordType::A, "NXDOMAIN"),
        ("10.1.0.10.in-addr.arpa.", RecordType::PTR, "NOERROR web.1.aaa."),
        ("2.1.0.10.in-addr.arpa.", RecordType::PTR, "NOERROR web."),
        ("10.2.0.10.in-addr.arpa.", RecordType::PTR, "NXDOMAIN"),
        // Not ours and no upstream: SERVFAIL, not a hang.
        ("example.com.", RecordType::A, "SERVFAIL"),
    ];
    for (name, record_type, expected) in cases {
        let udp = query_udp(addr, name, record_type).await;
        assert_eq!(summary(&udp), expected, "{name} {record_type} over UDP");
        assert!(udp.metadata.recursion_available, "RA set like Docker's resolver");
        let tcp = query_tcp(addr, name, record_type).await;
        assert_eq!(summary(&tcp), expected, "{name} {record_type} over TCP");
    }
    // Cluster answers carry the configured short TTL.
    let answer = query_udp(addr, "web.", RecordType::A).await;
    assert_eq!(answer.answers[0].ttl, dns::DEFAULT_TTL);
}

#[tokio::test]
async fn tasks_answers_rotate_per_query() {
    let resolver = resolver();
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    let mut firsts = HashSet::new();
    for _ in 0..6 {
        let answer = query_udp(addr, "tasks.web.", RecordType::A).await;
        let ips = addresses(&answer);
        let mut sorted = ips.clone();
        sorted.sort();
        let expected: Vec<std::net::Ipv4Addr> =
            vec![[10, 0, 1, 10].into(), [10, 0, 1, 11].into(), [10, 0, 1, 12].into()];
        assert_eq!(sorted, expected);
        firsts.insert(ips[0]);
    }
    assert_eq!(firsts.len(), 3, "each task comes first in turn");
}

#[tokio::test]
async fn scope_and_records_change_while_serving() {
    let resolver = resolver();
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    assert_eq!(summary(&query_udp(addr, "hidden.", RecordType::A).await), "NXDOMAIN");

    resolver.set_scope("task-1", vec!["net-a".into(), "net-b".into()]);
    assert_eq!(summary(&query_udp(addr, "hidden.", RecordType::A).await), "NOERROR 10.0.2.2");

    // Serving the same key again is a scope update, not a second server.
    let (udp, tcp, _) = loopback_sockets().await;
    resolver.serve_sockets("task-1", udp, tcp, vec!["net-b".into()]).await.unwrap();
    assert_eq!(summary(&query_udp(addr, "web.", RecordType::A).await), "NXDOMAIN");

    resolver.set_records(Records::default());
    assert_eq!(summary(&query_udp(addr, "hidden.", RecordType::A).await), "SERVFAIL");
}

#[tokio::test]
async fn stop_closes_the_sockets() {
    let resolver = resolver();
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    assert_eq!(summary(&query_tcp(addr, "web.", RecordType::A).await), "NOERROR 10.0.1.2");
    resolver.stop("task-1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "TCP listener still open after stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_notimp() {
    let resolver = resolver();
    let addr = serve(&resolver, "task-1", &["net-a"]).await;

    // Two questions: valid wire format, but not a query we answer.
    let mut two = query_message("web.", RecordType::A, false);
    two.add_query(Query::query(Name::from_ascii("www.").unwrap(), RecordType::A));
    let answer = Message::from_vec(&exchange_udp_raw(addr, &two.to_vec().unwrap()).await).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // A header that promises a question the datagram does not carry.
    let mut cut = query_message("web.", RecordType::A, false).to_vec().unwrap();
    cut.truncate(15);
    let answer = Message::from_vec(&exchange_udp_raw(addr, &cut).await).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // A NOTIFY (opcode 4) is not something a task's resolver does.
    let mut notify = query_message("web.", RecordType::A, false);
    notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let answer = Message::from_vec(&exchange_udp_raw(addr, &notify.to_vec().unwrap()).await).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);
}

#[tokio::test]
async fn big_answers_truncate_over_udp_and_fit_over_tcp() {
    let resolver = Resolver::new(config(vec![], Duration::from_millis(200)));
    let mut records = Records { services: vec![service("big", "net-a", Some([10, 0, 3, 2]))], tasks: vec![] };
    for i in 0..200u32 {
        records.tasks.push(task(
            "big",
            i + 1,
            &format!("t{i}"),
            "net-a",
            [10, 0, 3 + (i / 200) as u8, (i % 200 + 10) as u8],
        ));
    }
    resolver.set_records(records);
    let addr = serve(&resolver, "task-1", &["net-a"]).await;
    let udp = query_udp(addr, "tasks.big.", RecordType::A).await;
    assert!(udp.metadata.truncation, "200 addresses do not fit in 512 bytes");
    let wire_len = udp.to_vec().unwrap().len();
    assert!(wire_len <= 512, "UDP answer of {wire_len} bytes exceeds 512");
    let tcp = query_tcp(addr, "tasks.big.", RecordType::A).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(addresses(&tcp).len(), 200);
}
