//! A stable-Rust fuzz harness for the request path (cargo-fuzz needs nightly and `cargo fuzz`,
//! which CI does not have): a seeded random-mutation loop over valid queries, fed through hickory's
//! request parser and our handler exactly as the server does, minus the socket. Properties: no
//! panic, every parsed query gets exactly one answer, and that answer is valid wire format with the
//! query's ID.
//!
//! `FUZZ_SECONDS` sets the duration (default 2), `FUZZ_SEED` the seed (default fixed, printed on
//! failure so a finding can be replayed).

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::ResolverConfig;
use crate::forward::Forwarder;
use crate::handler::{Shared, TaskHandler};
use crate::records::{Records, ServiceRecord, TaskRecord};
use crate::table::Table;

/// Keeps the encoded answers instead of sending them.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(512);
        let info = response.destructive_emit(&mut encoder)?;
        self.0.lock().unwrap().push(bytes);
        Ok(info)
    }
}

fn handler() -> TaskHandler {
    let records = Records {
        services: vec![ServiceRecord {
            name: "web".into(),
            network_id: "net-a".into(),
            vip: Some([10, 0, 1, 2].into()),
            dnsrr: false,
            aliases: vec!["www".into()],
        }],
        tasks: (1..=40)
            .map(|slot| TaskRecord {
                service_name: "web".into(),
                network_id: "net-a".into(),
                ip: [10, 0, 1, 10 + slot as u8].into(),
                task_name: format!("web.{slot}.t{slot}"),
                slot_name: Some(format!("web.{slot}")),
                running: true,
                aliases: vec![],
            })
            .collect(),
    };
    // No upstream: forwarded mutants answer SERVFAIL at once instead of leaving the process.
    let config = ResolverConfig::default();
    TaskHandler {
        shared: Arc::new(Shared {
            table: RwLock::new(Arc::new(Table::new(&records))),
            forwarder: Forwarder::new(&config),
            ttl: config.ttl,
            rotation: AtomicUsize::new(0),
        }),
        scope: Arc::new(RwLock::new(Arc::from(vec!["net-a".to_string()]))),
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let queries = [
        ("web.", RecordType::A),
        ("tasks.web.", RecordType::A),
        ("web.3.t3.", RecordType::AAAA),
        ("12.1.0.10.in-addr.arpa.", RecordType::PTR),
        ("example.com.", RecordType::A),
    ];
    let mut seeds = Vec::new();
    for (i, (name, record_type)) in queries.into_iter().enumerate() {
        let mut message = Message::query();
        message.metadata.id = i as u16;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        seeds.push(message.to_vec().unwrap());
        message.set_edns(Edns::new());
        seeds.push(message.to_vec().unwrap());
    }
    seeds
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..5) {
            0 if !input.is_empty() => {
                let at = rng.random_range(0..input.len());
                input[at] ^= 1 << rng.random_range(0..8);
            }
            1 if !input.is_empty() => {
                let at = rng.random_range(0..input.len());
                input[at] = rng.random();
            }
            2 => {
                let at = rng.random_range(0..=input.len());
                input.insert(at, rng.random());
            }
            3 if !input.is_empty() => {
                let at = rng.random_range(0..input.len());
                input.remove(at);
            }
            _ => {
                let len = rng.random_range(0..=input.len());
                input.truncate(len);
            }
        }
    }
}

#[tokio::test]
async fn mutated_queries_always_get_one_well_formed_answer() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5ea1);
    let mut rng = StdRng::seed_from_u64(seed);
    let handler = handler();
    let seeds = seeds();
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut iterations, mut handled) = (0u64, 0u64);
    while Instant::now() < deadline {
        iterations += 1;
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        mutate(&mut rng, &mut input);
        // What hickory's server does before our handler: parse, drop responses.
        let Ok(request) = Request::from_bytes(input.clone(), src, Protocol::Udp) else { continue };
        if request.metadata.message_type != MessageType::Query {
            continue;
        }
        handled += 1;
        let capture = Capture::default();
        handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
        let answers = capture.0.lock().unwrap();
        let context = format!("seed {seed}, iteration {iterations}, input {input:02x?}");
        assert_eq!(answers.len(), 1, "{context}");
        let answer =
            Message::from_vec(&answers[0]).unwrap_or_else(|e| panic!("answer does not parse ({e}): {context}"));
        assert_eq!(answer.metadata.id, request.metadata.id, "{context}");
        assert_eq!(answer.metadata.message_type, MessageType::Response, "{context}");
        assert!(answers[0].len() <= 512, "{context}");
    }
    eprintln!("fuzz: {iterations} inputs, {handled} reached the handler, seed {seed}");
    assert!(handled > 100, "too few mutants reached the handler: {handled}");
}

/// The fuzzer's first finding: a question name ending in a compression pointer into the header.
#[tokio::test]
async fn a_question_pointing_into_the_header_is_echoed_canonically() {
    let input = vec![
        0x00, 0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x77, 0x65, 0x62, 0x01, 0x33,
        0xc0, 0x02, 0x74, 0x33, 0x00, 0x18, 0x00, 0x01,
    ];
    let request = Request::from_bytes(input, "127.0.0.1:5353".parse().unwrap(), Protocol::Udp).unwrap();
    let capture = Capture::default();
    handler().handle_request::<_, TokioTime>(&request, capture.clone()).await;
    let answer = Message::from_vec(&capture.0.lock().unwrap()[0]).expect("answer parses");
    assert_eq!(answer.queries[0].name().to_ascii(), "web.3.");
}
