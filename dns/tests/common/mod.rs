//! Helpers shared by the socket tests: a resolver on 127.0.0.1 sockets, DNS clients over UDP and
//! TCP, and a fake upstream resolver whose behaviour each test picks.

#![allow(dead_code)] // each test file uses a different part

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dns::{Records, Resolver, ResolverConfig, ServiceRecord, TaskRecord};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long a test waits for any single answer before failing.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// Opens UDP and TCP on the same free port of 127.0.0.1.
pub async fn loopback_sockets() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let addr = tcp.local_addr().unwrap();
        if let Ok(udp) = UdpSocket::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Starts `resolver` for one task on `networks`, on fresh loopback sockets.
pub async fn serve(resolver: &Resolver, key: &str, networks: &[&str]) -> SocketAddr {
    let (udp, tcp, addr) = loopback_sockets().await;
    let networks = networks.iter().map(|n| n.to_string()).collect();
    resolver.serve_sockets(key, udp, tcp, networks).await.expect("serve");
    addr
}

pub fn service(name: &str, network: &str, vip: Option<[u8; 4]>) -> ServiceRecord {
    ServiceRecord {
        name: name.into(),
        network_id: network.into(),
        vip: vip.map(Ipv4Addr::from),
        dnsrr: false,
        aliases: vec![],
    }
}

pub fn task(service: &str, slot: u32, id: &str, network: &str, ip: [u8; 4]) -> TaskRecord {
    TaskRecord {
        service_name: service.into(),
        network_id: network.into(),
        ip: ip.into(),
        task_name: format!("{service}.{slot}.{id}"),
        slot_name: Some(format!("{service}.{slot}")),
        running: true,
        aliases: vec![],
    }
}

/// `web` (VIP 10.0.1.2, alias `www`, three tasks) on net-a; `hidden` on net-b.
pub fn cluster() -> Records {
    let mut web = service("web", "net-a", Some([10, 0, 1, 2]));
    web.aliases = vec!["www".into()];
    Records {
        services: vec![web, service("hidden", "net-b", Some([10, 0, 2, 2]))],
        tasks: vec![
            task("web", 1, "aaa", "net-a", [10, 0, 1, 10]),
            task("web", 2, "bbb", "net-a", [10, 0, 1, 11]),
            task("web", 3, "ccc", "net-a", [10, 0, 1, 12]),
            task("hidden", 1, "hhh", "net-b", [10, 0, 2, 10]),
        ],
    }
}

pub fn config(upstreams: Vec<SocketAddr>, timeout: Duration) -> ResolverConfig {
    ResolverConfig { upstreams, upstream_timeout: timeout, ..ResolverConfig::default() }
}

pub fn query_message(name: &str, record_type: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    message
}

/// Sends raw bytes over UDP and returns the raw answer.
pub async fn exchange_udp_raw(server: SocketAddr, wire: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(wire).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let len = tokio::time::timeout(ANSWER_DEADLINE, socket.recv(&mut buffer))
        .await
        .expect("no UDP answer in time")
        .expect("recv");
    buffer.truncate(len);
    buffer
}

pub async fn query_udp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let query = query_message(name, record_type, false);
    let answer = Message::from_vec(&exchange_udp_raw(server, &query.to_vec().unwrap()).await).expect("answer parses");
    assert_eq!(answer.metadata.id, query.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

pub async fn query_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let query = query_message(name, record_type, false);
    let wire = query.to_vec().unwrap();
    let answer = tokio::time::timeout(ANSWER_DEADLINE, async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        stream.write_all(&(wire.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(&wire).await.unwrap();
        let len = stream.read_u16().await.unwrap() as usize;
        let mut answer = vec![0u8; len];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    })
    .await
    .expect("no TCP answer in time");
    let answer = Message::from_vec(&answer).expect("answer parses");
    assert_eq!(answer.metadata.id, query.metadata.id);
    answer
}

/// The A addresses of an answer, in order.
pub fn addresses(answer: &Message) -> Vec<Ipv4Addr> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Summarizes an answer as "NOERROR 10.0.1.2 …", "NXDOMAIN", "SERVFAIL" …
pub fn summary(answer: &Message) -> String {
    let mut out = match answer.metadata.response_code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        other => format!("{other:?}"),
    };
    for record in &answer.answers {
        out.push(' ');
        out.push_str(&record.data.to_string());
    }
    out
}

/// What the fake upstream does with a query.
#[derive(Clone, Copy, Debug)]
pub enum Upstream {
    /// Answers every A query with 192.0.2.1.
    Answer,
    /// Never answers.
    Silent,
    /// Answers SERVFAIL.
    ServFail,
    /// Over UDP answers with TC set and no records; over TCP with 100 A records.
    TruncateUdp,
}

/// A fake upstream resolver on 127.0.0.1 (UDP and TCP on one port). Counts queries per protocol.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    pub async fn start(behaviour: Upstream) -> FakeUpstream {
        let (udp, tcp, addr) = loopback_sockets().await;
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let counter = udp_queries.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65535];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer).await {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(answer) = fake_answer(&buffer[..len], behaviour, false) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let counter = tcp_queries.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(len) = stream.read_u16().await else { return };
                    let mut query = vec![0u8; len as usize];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Some(answer) = fake_answer(&query, behaviour, true) {
                        let _ = stream.write_all(&(answer.len() as u16).to_be_bytes()).await;
                        let _ = stream.write_all(&answer).await;
                    } else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        FakeUpstream { addr, udp_queries, tcp_queries }
    }
}

fn fake_answer(query: &[u8], behaviour: Upstream, over_tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.recursion_available = true;
    answer.add_queries(query.queries.clone());
    let name = query.queries.first()?.name().clone();
    let record = |i: u8| Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, i))));
    match behaviour {
        Upstream::Silent => return None,
        Upstream::Answer => {
            answer.add_answer(record(1));
        }
        Upstream::ServFail => answer.metadata.response_code = ResponseCode::ServFail,
        Upstream::TruncateUdp if !over_tcp => answer.metadata.truncation = true,
        Upstream::TruncateUdp => {
            answer.add_answers((1..=100).map(record));
        }
    }
    answer.to_vec().ok()
}
