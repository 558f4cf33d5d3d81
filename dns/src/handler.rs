//! The hickory `RequestHandler` that answers one task: cluster names from the table, scoped to the
//! task's networks, everything else through the forwarder.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tracing::debug;

use crate::forward::Forwarder;
use crate::table::{NameLookup, PtrLookup, Table};

/// What all tasks served by one [`crate::Resolver`] share.
pub(crate) struct Shared {
    /// Swapped whole by `set_records`; a query clones the `Arc` once and answers from that table.
    pub(crate) table: RwLock<Arc<Table>>,
    pub(crate) forwarder: Forwarder,
    pub(crate) ttl: u32,
    /// Moves on every query so rotated answers start with a different address each time.
    pub(crate) rotation: AtomicUsize,
}

/// The networks (IDs) of one served task; changed in place by `set_scope`.
pub(crate) type Scope = Arc<RwLock<Arc<[String]>>>;

pub(crate) struct TaskHandler {
    pub(crate) shared: Arc<Shared>,
    pub(crate) scope: Scope,
}

/// How a query is answered before it is encoded.
enum Reply {
    Local { code: ResponseCode, answers: Vec<Record> },
    Forwarded(Message),
}

impl TaskHandler {
    async fn reply(&self, request: &Request) -> Reply {
        let error = |code| Reply::Local { code, answers: Vec::new() };
        if request.metadata.op_code != OpCode::Query {
            return error(ResponseCode::NotImp);
        }
        // Exactly one question, as every stub resolver sends.
        let Ok(info) = request.request_info() else {
            return error(ResponseCode::FormErr);
        };
        let question = info.query.original();
        let name = question.name();
        let table = self.shared.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let scope = self.scope.read().unwrap_or_else(|e| e.into_inner()).clone();
        let ttl = self.shared.ttl;

        if question.query_type() == RecordType::PTR {
            if let Some(ip) = reverse_ipv4(name) {
                match table.reverse(ip, &scope) {
                    PtrLookup::Found(targets) => {
                        let answers = targets
                            .iter()
                            .filter_map(|target| Name::from_ascii(format!("{target}.")).ok())
                            .map(|target| Record::from_rdata(name.clone(), ttl, RData::PTR(PTR(target))))
                            .collect();
                        return Reply::Local { code: ResponseCode::NoError, answers };
                    }
                    PtrLookup::NxDomain => return error(ResponseCode::NXDomain),
                    PtrLookup::NotOurs => return self.forward(request).await,
                }
            }
        }

        let rotation = self.shared.rotation.fetch_add(1, Ordering::Relaxed);
        match table.resolve(&name.to_ascii(), &scope, rotation) {
            NameLookup::Found(ips) => {
                // The cluster only has IPv4 addresses: AAAA, MX and every other type of a known
                // name get NOERROR with no answer, so clients fall back to A rather than
                // asking the outside world about a cluster name.
                let wants_addresses = question.query_type() == RecordType::A && question.query_class() == DNSClass::IN;
                let answers = if wants_addresses {
                    ips.into_iter().map(|ip| Record::from_rdata(name.clone(), ttl, RData::A(A(ip)))).collect()
                } else {
                    Vec::new()
                };
                Reply::Local { code: ResponseCode::NoError, answers }
            }
            NameLookup::NxDomain => error(ResponseCode::NXDomain),
            NameLookup::NotOurs => self.forward(request).await,
        }
    }

    async fn forward(&self, request: &Request) -> Reply {
        match self.shared.forwarder.forward(request.as_slice(), request.protocol() == Protocol::Tcp).await {
            Ok(answer) => Reply::Forwarded(answer),
            Err(error) => {
                debug!(%error, "forward failed, answering SERVFAIL");
                Reply::Local { code: ResponseCode::ServFail, answers: Vec::new() }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for TaskHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let reply = self.reply(request).await;

        // Answer EDNS with EDNS, offering the client's own buffer size (hickory's encoder truncates
        // UDP answers to it and sets TC, so the client retries over TCP).
        let edns = request.edns.as_ref().map(|client| {
            let mut ours = Edns::new();
            ours.set_max_payload(client.max_payload().max(512));
            ours
        });
        let queries = echoed_question(request);
        let mut builder = MessageResponseBuilder::new(&queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        // As Docker's resolver: recursion is available (we forward), and we are not authoritative.
        metadata.recursion_available = true;
        metadata.authoritative = false;
        let no_records = std::iter::empty::<&Record>;
        let sent = match &reply {
            Reply::Local { code, answers } => {
                metadata.response_code = *code;
                response.send_response(builder.build(metadata, answers, no_records(), no_records(), no_records())).await
            }
            Reply::Forwarded(answer) => {
                metadata.response_code = answer.metadata.response_code;
                metadata.authoritative = answer.metadata.authoritative;
                metadata.authentic_data = answer.metadata.authentic_data;
                let response_message =
                    builder.build(metadata, &answer.answers, &answer.authorities, no_records(), &answer.additionals);
                response.send_response(response_message).await
            }
        };
        sent.unwrap_or_else(|error| {
            debug!(%error, "cannot send the answer");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        })
    }
}

/// The question to echo in the answer, encoded afresh. hickory echoes the client's question bytes
/// as they came, and a question whose name holds a compression pointer (legal to parse, pointing
/// into the header) would then point into *our* header and make the answer unparsable; found by
/// the fuzz harness. Anything but exactly one question echoes none (FORMERR).
fn echoed_question(request: &Request) -> Queries {
    let mut bytes = Vec::new();
    let count = match request.request_info() {
        Ok(info) if info.query.original().emit(&mut BinEncoder::new(&mut bytes)).is_ok() => 1,
        _ => {
            bytes.clear();
            0
        }
    };
    Queries::read(&mut BinDecoder::new(&bytes), count).unwrap_or_else(|_| {
        Queries::read(&mut BinDecoder::new(&[]), 0).expect("reading zero questions from nothing cannot fail")
    })
}

/// The address in `d.c.b.a.in-addr.arpa.`, if `name` is exactly one IPv4 address's PTR name.
fn reverse_ipv4(name: &Name) -> Option<Ipv4Addr> {
    let net = name.parse_arpa_name().ok()?;
    match (net.addr(), net.prefix_len()) {
        (std::net::IpAddr::V4(ip), 32) => Some(ip),
        _ => None,
    }
}
