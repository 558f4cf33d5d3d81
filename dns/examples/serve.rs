//! Serves a table from a JSON file on given sockets, without a cluster, so benchmarks (dnsperf)
//! and manual tests can talk to the real resolver:
//!
//! ```text
//! cargo run -p dns --example serve -- 127.0.0.1:5300 records.json net-a
//! dig @127.0.0.1 -p 5300 tasks.web
//! ```
//!
//! `records.json` is a serialized `dns::Records`. Names that are not in it are forwarded to the
//! servers in this machine's /etc/resolv.conf.

use std::net::SocketAddr;

use dns::{Records, Resolver, ResolverConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, records, network] = args.as_slice() else {
        return Err("usage: serve <addr:port> <records.json> <network-id>".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("bad address {addr}: {e}"))?;
    let text = std::fs::read_to_string(records).map_err(|e| format!("cannot read {records}: {e}"))?;
    let records: Records = serde_json::from_str(&text).map_err(|e| format!("cannot parse {records}: {e}"))?;
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = dns::upstreams_from_resolv_conf(&resolv_conf);

    let resolver = Resolver::new(ResolverConfig { upstreams: upstreams.clone(), ..ResolverConfig::default() });
    let (services, tasks) = (records.services.len(), records.tasks.len());
    resolver.set_records(records);
    let udp = tokio::net::UdpSocket::bind(addr).await.map_err(|e| format!("cannot bind udp {addr}: {e}"))?;
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot bind tcp {addr}: {e}"))?;
    resolver.serve_sockets("example", udp, tcp, vec![network.clone()]).await?;
    eprintln!("serving {services} services and {tasks} tasks of network {network} on {addr} (udp+tcp), upstreams {upstreams:?}; Ctrl-C stops");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
