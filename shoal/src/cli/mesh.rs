//! `shoal mesh`: the eBPF load balancer of the node the CLI talks to, as `ipvsadm -L -n` shows
//! IPVS: one line per service key, its backends indented under it with `->`.
//!
//! ```text
//! SERVICE   KIND        ADDRESS           PROTO   SCHED    CONNS   BYTES
//!   -> TASK                ADDRESS        NODE    STATE    CONNS   BYTES
//! web       published   198.18.0.1:8080   tcp     maglev   1234    1.2MiB
//!   -> web.1.abc           10.0.0.5:80    node2   active   612     640KiB
//! ```
//!
//! Service lines align among themselves and backend lines among themselves, each under its own
//! header, so a long task name never pushes the service columns. `--stats` adds packets and
//! drops, and the node-wide counters. The same lines make `service inspect --pretty`'s
//! `Mesh (this node):` block.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use control::api::{MeshBackend, MeshCounters, MeshNodeStats, MeshService, MeshTable};

use crate::cli::format::{api_name, bytes_size, tabwrite};
use crate::client::Client;

/// The daemon's path for the table (Shoal's own, not Docker's).
pub const MESH_PATH: &str = "/shoal/mesh";

#[derive(Args, Debug)]
pub struct MeshArgs {
    /// Format output: 'table' or 'json'
    #[arg(short = 'f', long = "format", value_name = "string", default_value = "table")]
    format: String,
    /// Add packets, drops and the node-wide counters
    #[arg(long = "stats")]
    stats: bool,
}

pub async fn run(client: &Client, args: MeshArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table: MeshTable = client.get(MESH_PATH).await?;
    let text = match args.format.as_str() {
        "table" | "" => render_table(&table, args.stats),
        "json" => json_text(&table),
        other => bail!("unknown format {other:?}: use 'table' or 'json'"),
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// The table as JSON, indented as `inspect` indents.
pub fn json_text(table: &MeshTable) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(table, &mut ser).expect("the mesh table serializes");
    let mut s = String::from_utf8(buf).expect("JSON is UTF-8");
    s.push('\n');
    s
}

/// `shoal mesh` output: the note of a node without a mesh, else the table (and with `stats`,
/// the node-wide counters).
pub fn render_table(table: &MeshTable, stats: bool) -> String {
    if table.services.is_empty() && !table.note.is_empty() {
        return format!("{}\n", table.note);
    }
    let mut out = lines(&table.services, stats, true).join("\n");
    out.push('\n');
    if let (true, Some(node)) = (stats, &table.stats) {
        out.push_str(&format!("\nNode {}:\n", if table.node_id.is_empty() { "-" } else { &table.node_id }));
        out.push_str(&node_stats(node));
    }
    out
}

/// `service inspect --pretty`'s block for one service (empty when this node programs nothing
/// for it): its lines of the table with drops, without the service column.
pub fn pretty_block(table: &MeshTable, service_id: &str) -> String {
    let services: Vec<MeshService> = table.services.iter().filter(|s| s.service_id == service_id).cloned().collect();
    if services.is_empty() {
        return String::new();
    }
    let body: String = lines(&services, true, false).iter().map(|l| format!("\n {l}")).collect();
    format!("\nMesh (this node):{body}")
}

/// The header lines and then each service followed by its backends.
fn lines(services: &[MeshService], stats: bool, with_service: bool) -> Vec<String> {
    let counter_heads: &[&str] = if stats { &["CONNS", "PACKETS", "BYTES", "DROPS"] } else { &["CONNS", "BYTES"] };
    let mut service_rows = vec![[&["SERVICE", "KIND", "ADDRESS", "PROTO", "SCHED"][..], counter_heads].concat()];
    service_rows[0].retain(|h| with_service || *h != "SERVICE");
    let service_rows: Vec<Vec<String>> = service_rows
        .into_iter()
        .map(|r| r.into_iter().map(str::to_string).collect())
        .chain(services.iter().map(|s| service_cells(s, stats, with_service)))
        .collect();
    // Backends have no drops of their own: a drop happens before a backend is chosen.
    let backend_heads = if stats { &counter_heads[..3] } else { counter_heads };
    let backend_rows: Vec<Vec<String>> = std::iter::once(
        [&["  -> TASK", "ADDRESS", "NODE", "STATE"][..], backend_heads]
            .concat()
            .into_iter()
            .map(str::to_string)
            .collect(),
    )
    .chain(services.iter().flat_map(|s| s.backends.iter().map(|b| backend_cells(b, stats))))
    .collect();
    let service_lines = aligned(&service_rows);
    let mut backend_lines = aligned(&backend_rows).into_iter();
    let mut out = vec![service_lines[0].clone(), backend_lines.next().unwrap_or_default()];
    for (service, line) in services.iter().zip(&service_lines[1..]) {
        out.push(line.clone());
        out.extend(backend_lines.by_ref().take(service.backends.len()));
    }
    out
}

fn service_cells(s: &MeshService, stats: bool, with_service: bool) -> Vec<String> {
    let mut cells = Vec::new();
    if with_service {
        cells.push(or_dash(&s.service_name));
    }
    cells.extend([api_name(&s.kind), address(s.address, s.port), api_name(&s.protocol), s.scheduler.clone()]);
    cells.extend(counter_cells(&s.counters, stats, true));
    cells
}

fn backend_cells(b: &MeshBackend, stats: bool) -> Vec<String> {
    let node = if b.node.is_empty() { &b.node_id } else { &b.node };
    let mut cells = vec![format!("  -> {}", or_dash(&b.task_name)), address(b.address, b.port), or_dash(node)];
    cells.push(api_name(&b.state));
    cells.extend(counter_cells(&b.counters, stats, false));
    cells
}

fn counter_cells(c: &MeshCounters, stats: bool, drops: bool) -> Vec<String> {
    let bytes = bytes_size(c.bytes as f64);
    match (stats, drops) {
        (false, _) => vec![c.new_flows.to_string(), bytes],
        (true, false) => vec![c.new_flows.to_string(), c.packets.to_string(), bytes],
        (true, true) => vec![c.new_flows.to_string(), c.packets.to_string(), bytes, c.dropped_no_backend.to_string()],
    }
}

/// `addr:port`, or `addr:*` for port 0 (a VIP answers on every port; its backends keep the
/// client's).
fn address(addr: std::net::Ipv4Addr, port: u16) -> String {
    if port == 0 {
        format!("{addr}:*")
    } else {
        format!("{addr}:{port}")
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Rows padded into columns (three spaces between columns, the last cell unpadded).
fn aligned(rows: &[Vec<String>]) -> Vec<String> {
    let text: Vec<String> = rows.iter().map(|r| r.join("\t")).collect();
    tabwrite(&text.join("\n"), 0, 3).split('\n').map(str::to_string).collect()
}

fn node_stats(s: &MeshNodeStats) -> String {
    let rows = [
        ("New flows", s.new_flows),
        ("Replies translated", s.replies_translated),
        ("Dropped, no backend", s.dropped_no_backend),
        ("Dropped, rewrite failed", s.dropped_rewrite_failed),
        ("Dropped, return path conflict", s.dropped_return_conflict),
        ("Return path takeovers", s.return_path_takeovers),
        ("Client ports remapped", s.client_ports_remapped),
        ("ICMP errors translated", s.icmp_errors_translated),
        ("ICMP errors untracked", s.icmp_errors_untracked),
        ("Fragments passed", s.fragments_passed),
        ("Truncated passed", s.truncated_passed),
        ("IP options", s.ip_options),
    ];
    let text: Vec<String> = rows.iter().map(|(name, value)| format!(" {name}:\t{value}")).collect();
    tabwrite(&text.join("\n"), 0, 1) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{MeshBackendState, MeshKind};
    use control::objects::service::PortProtocol;

    fn counters(flows: u64, bytes: u64) -> MeshCounters {
        MeshCounters { new_flows: flows, packets: flows * 3, bytes, dropped_no_backend: 0 }
    }

    fn backend(task: &str, last: u8, port: u16, node: &str, state: MeshBackendState, flows: u64) -> MeshBackend {
        MeshBackend {
            task_id: format!("{task}id"),
            task_name: task.into(),
            address: std::net::Ipv4Addr::new(10, 0, 0, last),
            port,
            node_id: format!("{node}id"),
            node: node.into(),
            state,
            counters: counters(flows, flows * 1024),
        }
    }

    fn table() -> MeshTable {
        MeshTable {
            node_id: "node1id".into(),
            note: String::new(),
            services: vec![
                MeshService {
                    service_id: "s1".into(),
                    service_name: "web".into(),
                    kind: MeshKind::Published,
                    network: "ingress".into(),
                    address: "198.18.0.1".parse().unwrap(),
                    port: 8080,
                    protocol: PortProtocol::Tcp,
                    scheduler: "maglev".into(),
                    counters: MeshCounters { dropped_no_backend: 2, ..counters(1234, 1_300_000) },
                    backends: vec![
                        backend("web.1.abc", 5, 80, "node2", MeshBackendState::Active, 612),
                        backend("web.2.defghijkl", 6, 80, "node3", MeshBackendState::Draining, 622),
                    ],
                },
                MeshService {
                    service_id: "s2".into(),
                    service_name: "db".into(),
                    kind: MeshKind::Vip,
                    network: "back".into(),
                    address: "10.0.1.2".parse().unwrap(),
                    port: 0,
                    protocol: PortProtocol::Udp,
                    scheduler: "maglev".into(),
                    counters: counters(0, 0),
                    backends: Vec::new(),
                },
                MeshService {
                    service_id: String::new(),
                    service_name: String::new(),
                    kind: MeshKind::Host,
                    network: String::new(),
                    address: "198.18.0.1".parse().unwrap(),
                    port: 9999,
                    protocol: PortProtocol::Tcp,
                    scheduler: "maglev".into(),
                    counters: counters(1, 10),
                    backends: vec![MeshBackend {
                        task_id: String::new(),
                        node_id: String::new(),
                        ..backend("", 9, 0, "", MeshBackendState::Stale, 1)
                    }],
                },
            ],
            stats: Some(MeshNodeStats { new_flows: 1235, dropped_no_backend: 2, ..Default::default() }),
        }
    }

    #[test]
    fn table_lists_services_with_their_backends_under_them() {
        let want = "\
SERVICE   KIND        ADDRESS           PROTO   SCHED    CONNS   BYTES
  -> TASK              ADDRESS       NODE    STATE      CONNS   BYTES
web       published   198.18.0.1:8080   tcp     maglev   1234    1.24MiB
  -> web.1.abc         10.0.0.5:80   node2   active     612     612KiB
  -> web.2.defghijkl   10.0.0.6:80   node3   draining   622     622KiB
db        vip         10.0.1.2:*        udp     maglev   0       0B
-         host        198.18.0.1:9999   tcp     maglev   1       10B
  -> -                 10.0.0.9:*    -       stale      1       1KiB
";
        assert_eq!(render_table(&table(), false), want);
    }

    #[test]
    fn stats_add_packets_drops_and_the_node_counters() {
        let text = render_table(&table(), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE   KIND        ADDRESS           PROTO   SCHED    CONNS   PACKETS   BYTES     DROPS"
        );
        assert_eq!(lines[1], "  -> TASK              ADDRESS       NODE    STATE      CONNS   PACKETS   BYTES");
        assert_eq!(lines[2], "web       published   198.18.0.1:8080   tcp     maglev   1234    3702      1.24MiB   2");
        assert_eq!(lines[3], "  -> web.1.abc         10.0.0.5:80   node2   active     612     1836      612KiB");
        assert!(text.contains("\nNode node1id:\n New flows:                     1235\n"), "{text}");
        assert!(text.contains("\n Dropped, no backend:           2\n"), "{text}");
        assert!(text.ends_with(" IP options:                    0\n"), "{text}");
    }

    #[test]
    fn a_node_without_a_mesh_shows_its_note() {
        let table = MeshTable { note: "the routing mesh is not loaded on this node yet".into(), ..Default::default() };
        assert_eq!(render_table(&table, true), "the routing mesh is not loaded on this node yet\n");
        // Loaded but nothing programmed: the headers alone, as ipvsadm shows an empty table.
        let empty = MeshTable { node_id: "n".into(), ..Default::default() };
        assert_eq!(render_table(&empty, false).lines().count(), 2);
    }

    #[test]
    fn json_round_trips() {
        let text = json_text(&table());
        assert!(text.starts_with("{\n    \"NodeID\": \"node1id\",\n"), "{text}");
        assert_eq!(serde_json::from_str::<MeshTable>(&text).unwrap(), table());
    }

    #[test]
    fn pretty_block_shows_only_the_service_and_nothing_for_others() {
        let block = pretty_block(&table(), "s1");
        let want = "\nMesh (this node):\
\n KIND        ADDRESS           PROTO   SCHED    CONNS   PACKETS   BYTES     DROPS\
\n   -> TASK              ADDRESS       NODE    STATE      CONNS   PACKETS   BYTES\
\n published   198.18.0.1:8080   tcp     maglev   1234    3702      1.24MiB   2\
\n   -> web.1.abc         10.0.0.5:80   node2   active     612     1836      612KiB\
\n   -> web.2.defghijkl   10.0.0.6:80   node3   draining   622     1866      622KiB";
        assert_eq!(block, want);
        assert_eq!(pretty_block(&table(), "nope"), "");
    }
}
