//! `shoal swarm init|join|join-token|leave|update`, after docker's `cli/command/swarm`.

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};
use control::objects::{InitRequest, JoinRequest, Node, NodeAvailability, Swarm, SwarmSpec};
use serde_json::Value;

use super::duration::parse_go_duration;
use super::pretty::{init_banner, join_command};
use crate::client::{encode_component, Client};

const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:2377";

#[derive(Subcommand, Debug)]
pub enum SwarmCommand {
    /// Initialize a swarm
    Init(InitArgs),
    /// Join a swarm as a node and/or manager
    Join(JoinArgs),
    /// Manage join tokens
    JoinToken(JoinTokenArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Update the swarm
    Update(SpecArgs),
}

/// The cluster settings `init` and `update` share (docker's `swarmOptions`). Unset flags leave
/// the spec alone, like docker's `flags.Changed` checks.
#[derive(Args, Debug, Default)]
pub struct SpecArgs {
    /// Task history retention limit (default 5)
    #[arg(long = "task-history-limit", value_name = "int")]
    task_history_limit: Option<i64>,
    /// Dispatcher heartbeat period (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "dispatcher-heartbeat", value_name = "duration", value_parser = parse_go_duration)]
    dispatcher_heartbeat: Option<i64>,
    /// Validity period for node certificates (ns|us|ms|s|m|h) (default 2160h0m0s)
    #[arg(long = "cert-expiry", value_name = "duration", value_parser = parse_go_duration)]
    cert_expiry: Option<i64>,
    /// Number of log entries between Raft snapshots (default 10000)
    #[arg(long = "snapshot-interval", value_name = "uint")]
    snapshot_interval: Option<u64>,
    /// Number of additional Raft snapshots to retain
    #[arg(long = "max-snapshots", value_name = "uint")]
    max_snapshots: Option<u64>,
}

impl SpecArgs {
    fn is_empty(&self) -> bool {
        self.task_history_limit.is_none()
            && self.dispatcher_heartbeat.is_none()
            && self.cert_expiry.is_none()
            && self.snapshot_interval.is_none()
            && self.max_snapshots.is_none()
    }

    /// docker's `mergeSwarmSpec`.
    fn merge_into(&self, spec: &mut SwarmSpec) {
        if let Some(v) = self.task_history_limit {
            spec.orchestration.task_history_retention_limit = Some(v);
        }
        if let Some(v) = self.dispatcher_heartbeat {
            spec.dispatcher.heartbeat_period = v;
        }
        if let Some(v) = self.cert_expiry {
            spec.ca_config.node_cert_expiry = v;
        }
        if let Some(v) = self.snapshot_interval {
            spec.raft.snapshot_interval = v;
        }
        if let Some(v) = self.max_snapshots {
            spec.raft.keep_old_snapshots = Some(v);
        }
    }
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long = "advertise-addr", value_name = "string", default_value = "", hide_default_value = true)]
    advertise_addr: String,
    /// Listen address (format: "<ip|interface>[:port]")
    #[arg(long = "listen-addr", value_name = "node-addr", default_value = DEFAULT_LISTEN_ADDR, value_parser = parse_listen_addr)]
    listen_addr: String,
    /// Address or interface to use for data path traffic (format: "<ip|interface>")
    #[arg(long = "data-path-addr", value_name = "string", default_value = "", hide_default_value = true)]
    data_path_addr: String,
    /// Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, the default port (4789) is used.
    #[arg(long = "data-path-port", value_name = "uint32", default_value_t = 0, hide_default_value = true)]
    data_path_port: u32,
    /// default address pool in CIDR format
    #[arg(long = "default-addr-pool", value_name = "ipNetSlice", value_delimiter = ',', value_parser = parse_cidr)]
    default_addr_pool: Vec<String>,
    /// default address pool subnet mask length
    #[arg(long = "default-addr-pool-mask-length", value_name = "uint32", default_value_t = 24)]
    default_addr_pool_mask_length: u32,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long = "availability", value_name = "string", default_value = "active")]
    availability: String,
    /// Force create a new cluster from current state
    #[arg(long = "force-new-cluster")]
    force_new_cluster: bool,
    #[command(flatten)]
    spec: SpecArgs,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// Token for entry into the swarm
    #[arg(long = "token", value_name = "string", default_value = "", hide_default_value = true)]
    token: String,
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long = "advertise-addr", value_name = "string", default_value = "", hide_default_value = true)]
    advertise_addr: String,
    /// Listen address (format: "<ip|interface>[:port]")
    #[arg(long = "listen-addr", value_name = "node-addr", default_value = DEFAULT_LISTEN_ADDR, value_parser = parse_listen_addr)]
    listen_addr: String,
    /// Address or interface to use for data path traffic (format: "<ip|interface>")
    #[arg(long = "data-path-addr", value_name = "string", default_value = "", hide_default_value = true)]
    data_path_addr: String,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long = "availability", value_name = "string", default_value = "active")]
    availability: String,
    #[arg(value_name = "HOST:PORT")]
    remote: String,
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    /// Only display token
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Rotate join token
    #[arg(long = "rotate")]
    rotate: bool,
    #[arg(value_name = "worker|manager")]
    role: String,
}

#[derive(Args, Debug)]
pub struct LeaveArgs {
    /// Force this node to leave the swarm, ignoring warnings
    #[arg(short = 'f', long = "force")]
    force: bool,
}

pub async fn run(client: &Client, cmd: SwarmCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        SwarmCommand::Init(args) => init(client, args, out).await,
        SwarmCommand::Join(args) => join(client, args, out).await,
        SwarmCommand::JoinToken(args) => join_token(client, args, out).await,
        SwarmCommand::Leave(args) => {
            client.post_unit::<()>(&format!("/swarm/leave?force={}", args.force), None).await?;
            writeln!(out, "Node left the swarm.")?;
            Ok(())
        }
        SwarmCommand::Update(args) => update(client, args, out).await,
    }
}

async fn init(client: &Client, args: InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let req = init_request(args)?;
    let node_id: String = match client.post("/swarm/init", &req).await {
        Ok(id) => id,
        Err(e) if e.to_string().contains("could not choose an IP address to advertise") => {
            bail!("{e} - specify one with --advertise-addr")
        }
        Err(e) => return Err(e.into()),
    };
    let worker_join = worker_join_command(client, &node_id).await?;
    write!(out, "{}", init_banner(&node_id, worker_join.as_deref()))?;
    Ok(())
}

/// docker's `runInit` request: the address pool, its mask length and the data path port go
/// to the daemon as `DefaultAddrPool`, `SubnetSize` and `DataPathPort`.
fn init_request(args: InitArgs) -> anyhow::Result<InitRequest> {
    let mut spec = SwarmSpec::default();
    args.spec.merge_into(&mut spec);
    Ok(InitRequest {
        listen_addr: args.listen_addr,
        advertise_addr: args.advertise_addr,
        data_path_addr: args.data_path_addr,
        data_path_port: args.data_path_port,
        default_addr_pool: args.default_addr_pool,
        subnet_size: args.default_addr_pool_mask_length,
        force_new_cluster: args.force_new_cluster,
        availability: Some(parse_availability(&args.availability)?),
        spec: Some(spec),
    })
}

async fn worker_join_command(client: &Client, node_id: &str) -> anyhow::Result<Option<String>> {
    Ok(join_commands(client, node_id, true, false).await?.pop())
}

/// docker's `printJoinCommand`: the join line for each asked role, if this node is a manager.
async fn join_commands(client: &Client, node_id: &str, worker: bool, manager: bool) -> anyhow::Result<Vec<String>> {
    let node: Node = client.get(&format!("/nodes/{}", encode_component(node_id))).await?;
    let swarm: Swarm = client.get("/swarm").await?;
    let Some(ms) = node.manager_status else { return Ok(vec![]) };
    let mut lines = Vec::new();
    if worker {
        lines.push(join_command("worker", &swarm.join_tokens.worker, &ms.addr));
    }
    if manager {
        lines.push(join_command("manager", &swarm.join_tokens.manager, &ms.addr));
    }
    Ok(lines)
}

async fn join(client: &Client, args: JoinArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let req = JoinRequest {
        listen_addr: args.listen_addr,
        advertise_addr: args.advertise_addr,
        data_path_addr: args.data_path_addr,
        remote_addrs: vec![args.remote],
        join_token: args.token,
        availability: Some(parse_availability(&args.availability)?),
    };
    client.post_unit("/swarm/join", Some(&req)).await?;
    let info: Value = client.get("/info").await?;
    let manager = info.pointer("/Swarm/ControlAvailable").and_then(Value::as_bool).unwrap_or(false);
    writeln!(out, "This node joined a swarm as a {}.", if manager { "manager" } else { "worker" })?;
    Ok(())
}

async fn join_token(client: &Client, args: JoinTokenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (worker, manager) = (args.role == "worker", args.role == "manager");
    if !worker && !manager {
        bail!("unknown role {}", args.role);
    }
    if args.rotate {
        let sw: Swarm = client.get("/swarm").await?;
        let path = format!(
            "/swarm/update?version={}&rotateWorkerToken={worker}&rotateManagerToken={manager}",
            sw.version.index
        );
        client.post_unit(&path, Some(&sw.spec)).await?;
        if !args.quiet {
            write!(out, "Successfully rotated {} join token.\n\n", args.role)?;
        }
    }
    // Read the swarm again: a rotation just changed the tokens.
    let sw: Swarm = client.get("/swarm").await?;
    if args.quiet {
        let token = if worker { &sw.join_tokens.worker } else { &sw.join_tokens.manager };
        writeln!(out, "{token}")?;
        return Ok(());
    }
    let info: Value = client.get("/info").await?;
    let node_id = info.pointer("/Swarm/NodeID").and_then(Value::as_str).unwrap_or("");
    for text in join_commands(client, node_id, worker, manager).await? {
        write!(out, "{text}")?;
    }
    Ok(())
}

async fn update(client: &Client, args: SpecArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.is_empty() {
        // docker prints the command's help when no flag is given.
        use clap::CommandFactory;
        let mut cmd = super::Cli::command();
        cmd.build();
        let help =
            cmd.find_subcommand_mut("swarm").and_then(|s| s.find_subcommand_mut("update")).map(|u| u.render_help());
        write!(out, "{}", help.map(|h| h.to_string()).unwrap_or_default())?;
        return Ok(());
    }
    let mut sw: Swarm = client.get("/swarm").await?;
    args.merge_into(&mut sw.spec);
    client.post_unit(&format!("/swarm/update?version={}", sw.version.index), Some(&sw.spec)).await?;
    writeln!(out, "Swarm updated.")?;
    Ok(())
}

/// docker's check for `--availability` (`init` and `join`).
fn parse_availability(s: &str) -> anyhow::Result<NodeAvailability> {
    match s.to_ascii_lowercase().as_str() {
        "active" => Ok(NodeAvailability::Active),
        "pause" => Ok(NodeAvailability::Pause),
        "drain" => Ok(NodeAvailability::Drain),
        _ => bail!("invalid availability {s:?}, only active, pause and drain are supported"),
    }
}

/// docker's `NodeAddrOption`: a missing host or port is taken from `0.0.0.0:2377`.
fn parse_listen_addr(s: &str) -> Result<String, String> {
    let addr = s.strip_prefix("tcp://").unwrap_or(s).trim_end_matches('/');
    if addr.contains("://") {
        return Err(format!("Invalid proto, expected tcp: {s}"));
    }
    let (host, port) = match addr.rsplit_once(':') {
        // A bare IPv6 address without brackets has several colons and no port.
        Some((h, _)) if h.contains(':') && !h.starts_with('[') => (addr, ""),
        Some((h, p)) => (h, p),
        None => (addr, ""),
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let port = if port.is_empty() { "2377" } else { port };
    port.parse::<u16>().map_err(|_| format!("invalid port {port:?} in address {s:?}"))?;
    Ok(format!("{host}:{port}"))
}

/// An `ipNetSlice` element: canonical `network/len` (`10.20.1.1/16` → `10.20.0.0/16`).
fn parse_cidr(s: &str) -> Result<String, String> {
    let invalid = || format!("invalid CIDR address: {s}");
    let (ip, len) = s.trim().split_once('/').ok_or_else(invalid)?;
    let len: u32 = len.parse().map_err(|_| invalid())?;
    match ip.parse::<std::net::IpAddr>().map_err(|_| invalid())? {
        std::net::IpAddr::V4(v4) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Ok(format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(v4) & mask)))
        }
        std::net::IpAddr::V6(v6) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            Ok(format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(v6) & mask)))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_fill_in_defaults() {
        assert_eq!(parse_listen_addr("198.18.0.1").unwrap(), "198.18.0.1:2377");
        assert_eq!(parse_listen_addr(":2400").unwrap(), "0.0.0.0:2400");
        assert_eq!(parse_listen_addr("tcp://10.0.0.1:2500").unwrap(), "10.0.0.1:2500");
        assert_eq!(parse_listen_addr("eth0").unwrap(), "eth0:2377");
        assert!(parse_listen_addr("10.0.0.1:http").is_err());
        assert!(parse_listen_addr("udp://1.2.3.4").is_err());
    }

    #[test]
    fn init_sends_the_address_pool_and_data_path_port() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: InitArgs,
        }
        let parse = |line: &str| T::try_parse_from(std::iter::once("init").chain(line.split_whitespace())).unwrap().a;
        let req = init_request(parse(
            "--default-addr-pool 10.20.1.0/16,10.30.0.0/16 --default-addr-pool 192.168.0.0/20 \
             --default-addr-pool-mask-length 26 --data-path-port 7789",
        ))
        .unwrap();
        let body = serde_json::to_value(&req).unwrap();
        assert_eq!(body["DefaultAddrPool"], serde_json::json!(["10.20.0.0/16", "10.30.0.0/16", "192.168.0.0/20"]));
        assert_eq!((&body["SubnetSize"], &body["DataPathPort"]), (&serde_json::json!(26), &serde_json::json!(7789)));
        // Nothing given: an empty pool, /24 subnets and port 0, which the daemon reads as its defaults.
        let body = serde_json::to_value(init_request(parse("")).unwrap()).unwrap();
        assert_eq!(
            (&body["DefaultAddrPool"], &body["SubnetSize"], &body["DataPathPort"]),
            (&serde_json::json!([]), &serde_json::json!(24), &serde_json::json!(0))
        );
        assert!(T::try_parse_from(["init", "--default-addr-pool", "10.0.0.0"]).is_err());
    }

    #[test]
    fn cidrs_are_canonical() {
        assert_eq!(parse_cidr("10.20.1.1/16").unwrap(), "10.20.0.0/16");
        assert_eq!(parse_cidr("fd00::1/64").unwrap(), "fd00::/64");
        assert_eq!(parse_cidr("10.0.0.0").unwrap_err(), "invalid CIDR address: 10.0.0.0");
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn availability_is_checked_like_docker() {
        assert_eq!(parse_availability("Drain").unwrap(), NodeAvailability::Drain);
        assert_eq!(
            parse_availability("sometimes").unwrap_err().to_string(),
            r#"invalid availability "sometimes", only active, pause and drain are supported"#
        );
    }

    #[test]
    fn spec_flags_change_only_what_was_given() {
        let args = SpecArgs { dispatcher_heartbeat: Some(2_000_000_000), max_snapshots: Some(3), ..Default::default() };
        let mut spec = SwarmSpec::default();
        args.merge_into(&mut spec);
        assert_eq!(spec.dispatcher.heartbeat_period, 2_000_000_000);
        assert_eq!(spec.raft.keep_old_snapshots, Some(3));
        assert_eq!(spec.orchestration, SwarmSpec::default().orchestration);
        assert!(SpecArgs::default().is_empty());
    }
}
