//! `shoal network create|ls|inspect|rm|prune`, after docker's `cli/command/network`: same
//! flags, table, JSON and messages. Shoal has only swarm-scoped overlay networks, so `create`
//! defaults to the `overlay` driver where docker defaults to `bridge`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use control::objects::network::{
    ConfigReference, Ipam, IpamConfig, Network, NetworkCreateRequest, NetworkCreateResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::format::{inspect_all, joined, natural_cmp, render_rows};
use super::node::filters_json;
use super::pretty::go_time;
use super::service::flags::label;
use crate::client::{encode_component, Client, ClientError};

const TABLE_FORMAT: &str = "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}";
const RAW_FORMAT: &str = "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n";

const INGRESS_WARNING: &str = "WARNING! Before removing the routing-mesh network, make sure all the nodes in your \
    swarm run the same shoal version. Otherwise, removal may not be effective and functionality of newly created \
    ingress networks will be impaired.\nAre you sure you want to continue?";
const PRUNE_WARNING: &str =
    "WARNING! This will remove all custom networks not used by at least one service.\nAre you sure you want to continue?";

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network
    Create(Box<CreateArgs>),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Args, Debug, Default)]
#[command(override_usage = "shoal network create [OPTIONS] NETWORK")]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long = "driver", value_name = "string", default_value = "overlay")]
    driver: String,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    opts: Vec<String>,
    /// Set metadata on a network
    #[arg(long = "label", value_name = "list", value_parser = label)]
    labels: Vec<String>,
    /// Restrict external access to the network
    #[arg(long = "internal")]
    internal: bool,
    /// Enable or disable IPv4 address assignment
    #[arg(long = "ipv4", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ipv4: Option<bool>,
    /// Enable or disable IPv6 address assignment
    #[arg(long = "ipv6", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ipv6: Option<bool>,
    /// Enable manual container attachment
    #[arg(long = "attachable")]
    attachable: bool,
    /// Create swarm routing-mesh network
    #[arg(long = "ingress")]
    ingress: bool,
    /// Control the network's scope
    #[arg(long = "scope", value_name = "string")]
    scope: Option<String>,
    /// Create a configuration only network
    #[arg(long = "config-only")]
    config_only: bool,
    /// The network from which to copy the configuration
    #[arg(long = "config-from", value_name = "string")]
    config_from: Option<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", value_name = "string", default_value = "default")]
    ipam_driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long = "subnet", value_name = "strings", value_delimiter = ',')]
    subnets: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range", value_name = "strings", value_delimiter = ',')]
    ip_ranges: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long = "gateway", value_name = "strings", value_delimiter = ',')]
    gateways: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address", value_name = "map")]
    aux_addresses: Vec<String>,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt", value_name = "map")]
    ipam_opts: Vec<String>,
    #[arg(value_name = "NETWORK")]
    name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=overlay")
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or 'TEMPLATE'
    #[arg(long = "format", value_name = "string")]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or 'TEMPLATE'
    #[arg(short = 'f', long = "format", value_name = "string")]
    format: Option<String>,
    /// Verbose output for diagnostics
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

pub async fn run(client: &Client, cmd: NetworkCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut input = std::io::stdin().lock();
    match cmd {
        NetworkCommand::Create(args) => {
            let req = create_request(&args)?;
            let answer: NetworkCreateResponse = client.post("/networks/create", &req).await?;
            writeln!(out, "{}", answer.id)?;
            Ok(())
        }
        NetworkCommand::Inspect(args) => inspect(client, args, out).await,
        NetworkCommand::Ls(args) => list(client, args, out).await,
        NetworkCommand::Prune(args) => prune(client, args, &mut input, out).await,
        NetworkCommand::Rm(args) => remove(client, args, &mut input, out).await,
    }
}

/// docker's `runCreate`: the flags as a `POST /networks/create` body.
pub fn create_request(args: &CreateArgs) -> anyhow::Result<NetworkCreateRequest> {
    Ok(NetworkCreateRequest {
        name: args.name.clone(),
        driver: args.driver.clone(),
        scope: args.scope.clone().unwrap_or_default(),
        internal: args.internal,
        attachable: args.attachable,
        ingress: args.ingress,
        config_only: args.config_only,
        config_from: args.config_from.clone().map(|network| ConfigReference { network }),
        ipam: Some(ipam_config(args)?),
        enable_ipv4: args.ipv4,
        enable_ipv6: args.ipv6,
        options: map_opts(&args.opts),
        labels: super::service::create::kv_map(&args.labels),
        check_duplicate: None,
    })
}

/// docker's `MapOpts`: `k=v` → k: v, `k` → k: "".
fn map_opts(entries: &[String]) -> BTreeMap<String, String> {
    entries.iter().map(|e| e.split_once('=').unwrap_or((e, ""))).map(|(k, v)| (k.into(), v.into())).collect()
}

/// An address prefix as Go's `net.ParseCIDR` reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cidr {
    addr: IpAddr,
    len: u32,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let invalid = || format!("invalid CIDR address: {s}");
        let (addr, len) = s.split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u32 = len.parse().ok().filter(|l| *l <= max && !len.starts_with('+')).ok_or_else(invalid)?;
        Ok(Cidr { addr, len })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        // An IPv4 address sits in the top 32 bits, so a prefix length counts from the top bit
        // for both families.
        let ((net, v4), (other, other_v4)) = (bits(self.addr), bits(ip));
        let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
        v4 == other_v4 && net & mask == other & mask
    }
}

/// docker's `subnetMatches`: whether `data` (an address or a prefix) lies in `subnet`.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, String> {
    let s = Cidr::parse(subnet).map_err(|e| format!("invalid subnet: {e}"))?;
    let ip = if data.contains('/') {
        Cidr::parse(data)?.addr
    } else {
        match data.parse() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    Ok(s.contains(ip))
}

/// docker's `createIPAMConfig`: subnets with the ranges, gateways and auxiliary addresses that
/// fall in them, refused as docker refuses them.
fn ipam_config(args: &CreateArgs) -> anyhow::Result<Ipam> {
    if args.subnets.len() < args.ip_ranges.len() || args.subnets.len() < args.gateways.len() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let mut configs: Vec<IpamConfig> = Vec::new();
    for s in &args.subnets {
        for other in &configs {
            if subnet_matches(s, &other.subnet).map_err(|e| anyhow!(e))?
                || subnet_matches(&other.subnet, s).map_err(|e| anyhow!(e))?
            {
                bail!("multiple overlapping subnet configuration is not supported");
            }
        }
        Cidr::parse(s).map_err(|e| anyhow!("invalid subnet: {e}"))?;
        configs.push(IpamConfig { subnet: s.clone(), ..Default::default() });
    }
    for r in &args.ip_ranges {
        Cidr::parse(r).map_err(|e| anyhow!(e))?;
        let mut matched = false;
        for config in configs.iter_mut() {
            if !subnet_matches(&config.subnet, r).map_err(|e| anyhow!(e))? {
                continue;
            }
            if !config.ip_range.is_empty() {
                bail!(
                    "cannot configure multiple ranges ({r}, {}) on the same subnet ({})",
                    config.ip_range,
                    config.subnet
                );
            }
            config.ip_range = r.clone();
            matched = true;
        }
        if !matched {
            bail!("no matching subnet for range {r}");
        }
    }
    for g in &args.gateways {
        if g.parse::<IpAddr>().is_err() {
            bail!("invalid string being converted to IP address: {g}");
        }
        let mut matched = false;
        for config in configs.iter_mut() {
            if !subnet_matches(&config.subnet, g).map_err(|e| anyhow!(e))? {
                continue;
            }
            if !config.gateway.is_empty() {
                bail!(
                    "cannot configure multiple gateways ({g}, {}) for the same subnet ({})",
                    config.gateway,
                    config.subnet
                );
            }
            config.gateway = g.clone();
            matched = true;
        }
        if !matched {
            bail!("no matching subnet for gateway {g}");
        }
    }
    for (key, address) in map_opts(&args.aux_addresses) {
        let mut matched = false;
        for config in configs.iter_mut() {
            if subnet_matches(&config.subnet, &address).map_err(|e| anyhow!(e))? {
                config.auxiliary_addresses.insert(key.clone(), address.clone());
                matched = true;
            }
        }
        if !matched {
            bail!("no matching subnet for aux-address {address}");
        }
    }
    Ok(Ipam { driver: args.ipam_driver.clone(), config: configs, options: map_opts(&args.ipam_opts) })
}

async fn list(client: &Client, args: LsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut path = "/networks".to_string();
    if !args.filter.is_empty() {
        path = format!("/networks?filters={}", encode_component(&filters_json(&args.filter)?));
    }
    let networks: Vec<Network> = client.get(&path).await?;
    let format = list_format(args.format.as_deref(), args.quiet);
    let text = render_network_list(&networks, &format, !args.no_trunc).map_err(|e| anyhow!(e))?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// docker's `NewFormat` for `network ls`.
pub fn list_format(format: Option<&str>, quiet: bool) -> String {
    match format.unwrap_or("") {
        "" | "table" if quiet => "{{.ID}}".into(),
        "" | "table" => TABLE_FORMAT.into(),
        "raw" if quiet => "network_id: {{.ID}}".into(),
        "raw" => RAW_FORMAT.into(),
        other => other.into(),
    }
}

/// What a `network ls` template sees for one network (docker's `networkContext`).
pub fn network_row(network: &Network, trunc: bool) -> Value {
    let id = if trunc { network.id.chars().take(12).collect() } else { network.id.clone() };
    let labels: Vec<String> = network.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "CreatedAt": go_time(&network.created),
        "Driver": network.driver,
        "ID": id,
        "IPv4": network.enable_ipv4.to_string(),
        "IPv6": network.enable_ipv6.to_string(),
        "Internal": network.internal.to_string(),
        "Labels": labels.join(","),
        "Name": network.name,
        "Scope": network.scope,
    })
}

fn network_headers() -> Value {
    json!({
        "CreatedAt": "CREATED AT",
        "Driver": "DRIVER",
        "ID": "NETWORK ID",
        "IPv4": "IPV4",
        "IPv6": "IPV6",
        "Internal": "INTERNAL",
        "Labels": "LABELS",
        "Name": "NAME",
        "Scope": "SCOPE",
    })
}

/// `network ls` output: networks sorted naturally by name.
pub fn render_network_list(networks: &[Network], format: &str, trunc: bool) -> Result<String, String> {
    let mut sorted: Vec<&Network> = networks.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let rows: Vec<Value> = sorted.iter().map(|n| network_row(n, trunc)).collect();
    render_rows(format, &rows, &network_headers())
}

async fn inspect(client: &Client, args: InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let format = args.format.unwrap_or_default();
    let query = if args.verbose { "?verbose=true" } else { "" };
    inspect_all(&args.networks, &format, out, |name| async move {
        Ok(client.get::<Network>(&format!("/networks/{}{query}", encode_component(&name))).await?)
    })
    .await
}

/// docker's `prompt.Confirm`: the question, then `y` or `Y` on the next line of input.
pub fn confirm(question: &str, input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<bool> {
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y"))
}

/// docker's `runRemove`: the routing mesh only after confirmation; each name printed once
/// removed; with `-f`, a network that does not exist is no error.
async fn remove(client: &Client, args: RmArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.networks {
        let path = format!("/networks/{}", encode_component(name));
        if let Ok(network) = client.get::<Network>(&path).await {
            if network.ingress && !confirm(INGRESS_WARNING, input, out)? {
                continue;
            }
        }
        match client.delete(&path).await {
            Ok(()) => writeln!(out, "{name}")?,
            Err(ClientError::Daemon { status, .. }) if args.force && status == 404 => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    joined(errors)
}

#[derive(Deserialize)]
struct PruneAnswer {
    #[serde(rename = "NetworksDeleted", default)]
    deleted: Option<Vec<String>>,
}

/// docker's `network prune`: confirmation unless `-f`, then the names the daemon removed.
async fn prune(client: &Client, args: PruneArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    if !args.force && !confirm(PRUNE_WARNING, input, out)? {
        bail!("network prune has been cancelled");
    }
    let mut path = "/networks/prune".to_string();
    if !args.filter.is_empty() {
        path = format!("{path}?filters={}", encode_component(&filters_json(&args.filter)?));
    }
    let answer: PruneAnswer = client.post(&path, &Value::Null).await?;
    out.write_all(prune_text(&answer.deleted.unwrap_or_default()).as_bytes())?;
    Ok(())
}

pub fn prune_text(deleted: &[String]) -> String {
    if deleted.is_empty() {
        return String::new();
    }
    let mut text = "Deleted Networks:\n".to_string();
    for name in deleted {
        text.push_str(name);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: NetworkCommand,
    }

    fn parse(line: &str) -> Result<NetworkCommand, clap::Error> {
        T::try_parse_from(std::iter::once("network").chain(line.split_whitespace())).map(|t| t.cmd)
    }

    fn create(line: &str) -> anyhow::Result<NetworkCreateRequest> {
        let NetworkCommand::Create(args) = parse(&format!("create {line}")).unwrap() else { panic!("create") };
        let args = *args;
        create_request(&args)
    }

    fn network(id: &str, name: &str) -> Network {
        serde_json::from_value(json!({
            "Name": name, "Id": id, "Created": "2024-05-01T10:20:30.5Z", "Scope": "swarm", "Driver": "overlay",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
            "Labels": {"b": "2", "a": "1"},
        }))
        .unwrap()
    }

    #[test]
    fn create_flags_become_dockers_request() {
        let req = create(
            "--subnet 10.1.0.0/24 --gateway 10.1.0.1 --ip-range 10.1.0.128/25 --attachable --internal \
             -o com.docker.network.driver.mtu=1400 --label a=b --aux-address host1=10.1.0.5 net1",
        )
        .unwrap();
        let body = serde_json::to_value(&req).unwrap();
        assert_eq!(body["Name"], "net1");
        assert_eq!(body["Driver"], "overlay");
        assert_eq!(
            (&body["Internal"], &body["Attachable"], &body["Ingress"]),
            (&json!(true), &json!(true), &json!(false))
        );
        assert_eq!(
            body["IPAM"],
            json!({"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.128/25",
                   "Gateway": "10.1.0.1", "AuxiliaryAddresses": {"host1": "10.1.0.5"}}]})
        );
        assert_eq!(body["Options"], json!({"com.docker.network.driver.mtu": "1400"}));
        assert_eq!(body["Labels"], json!({"a": "b"}));
        assert_eq!((&body["EnableIPv6"], &body["ConfigFrom"]), (&Value::Null, &Value::Null));

        let req = create("-d overlay --ipv6 --scope swarm --config-from base plain").unwrap();
        assert_eq!((req.enable_ipv6, req.scope.as_str()), (Some(true), "swarm"));
        assert_eq!(req.config_from, Some(ConfigReference { network: "base".into() }));
        assert!(req.ipam.unwrap().config.is_empty());
        assert_eq!(create("--ipv6=false x").unwrap().enable_ipv6, Some(false));
    }

    #[test]
    fn ipam_flags_are_checked_like_docker() {
        let err = |line: &str| create(line).unwrap_err().to_string();
        assert_eq!(err("--gateway 10.0.0.1 x"), "every ip-range or gateway must have a corresponding subnet");
        assert_eq!(
            err("--subnet 10.0.0.0/16 --subnet 10.0.1.0/24 x"),
            "multiple overlapping subnet configuration is not supported"
        );
        assert_eq!(err("--subnet 10.0.0.0/24 --gateway 10.9.0.1 x"), "no matching subnet for gateway 10.9.0.1");
        assert_eq!(err("--subnet 10.0.0.0/24 --ip-range 10.9.0.0/25 x"), "no matching subnet for range 10.9.0.0/25");
        assert_eq!(err("--subnet 10.0.0/24 x"), "invalid subnet: invalid CIDR address: 10.0.0/24");
        assert_eq!(err("--subnet 10.0.0.0/24 --ip-range 10.0.0.0 x"), "invalid CIDR address: 10.0.0.0");
        assert_eq!(
            err("--subnet 10.0.0.0/24 --aux-address a=10.5.0.1 x"),
            "no matching subnet for aux-address 10.5.0.1"
        );
        // Two subnets, each with its own gateway.
        let req = create("--subnet 10.0.0.0/24,10.0.1.0/24 --gateway 10.0.1.1 --gateway 10.0.0.1 x").unwrap();
        let gateways: Vec<_> = req.ipam.unwrap().config.into_iter().map(|c| (c.subnet, c.gateway)).collect();
        assert_eq!(
            gateways,
            [("10.0.0.0/24".to_string(), "10.0.0.1".to_string()), ("10.0.1.0/24".into(), "10.0.1.1".into())]
        );
        assert!(parse("create --label =x n").is_err());
    }

    #[test]
    fn ls_prints_dockers_table() {
        let networks =
            vec![network("w8bu3ekowt6ajjc5agn4ik0ko", "net10"), network("zk3kb8nsnj8ovbmlx1jmn5sbi", "net2")];
        let table = render_network_list(&networks, &list_format(None, false), true).unwrap();
        assert_eq!(
            table,
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             zk3kb8nsnj8o   net2      overlay   swarm\n\
             w8bu3ekowt6a   net10     overlay   swarm\n"
        );
        assert_eq!(
            render_network_list(&networks, &list_format(None, true), false).unwrap(),
            "zk3kb8nsnj8ovbmlx1jmn5sbi\nw8bu3ekowt6ajjc5agn4ik0ko\n"
        );
        assert_eq!(
            render_network_list(
                &networks[..1],
                &list_format(Some("{{.Name}} {{.Labels}} {{.CreatedAt}}"), false),
                true
            )
            .unwrap(),
            "net10 a=1,b=2 2024-05-01 10:20:30.5 +0000 UTC\n"
        );
        assert_eq!(
            render_network_list(&networks[..1], &list_format(Some("raw"), false), true).unwrap(),
            "network_id: w8bu3ekowt6a\nname: net10\ndriver: overlay\nscope: swarm\n\n"
        );
        let json_line = render_network_list(&networks[..1], "json", true).unwrap();
        let v: Value = serde_json::from_str(json_line.trim()).unwrap();
        assert_eq!((&v["Name"], &v["IPv6"], &v["Internal"]), (&json!("net10"), &json!("false"), &json!("false")));
    }

    #[test]
    fn prune_and_confirmation() {
        assert_eq!(prune_text(&[]), "");
        assert_eq!(prune_text(&["a".into(), "b".into()]), "Deleted Networks:\na\nb\n");
        let mut out = Vec::new();
        assert!(confirm("Sure?", &mut "y\n".as_bytes(), &mut out).unwrap());
        assert_eq!(out, b"Sure? [y/N] ");
        assert!(!confirm("Sure?", &mut "yes\n".as_bytes(), &mut Vec::new()).unwrap());
        assert!(!confirm("Sure?", &mut "".as_bytes(), &mut Vec::new()).unwrap());
    }

    #[test]
    fn verbs_and_aliases_parse() {
        assert!(matches!(parse("list -q --no-trunc").unwrap(), NetworkCommand::Ls(a) if a.quiet && a.no_trunc));
        assert!(matches!(parse("remove -f a b").unwrap(), NetworkCommand::Rm(a) if a.force && a.networks.len() == 2));
        assert!(matches!(parse("inspect -v -f {{.Id}} a").unwrap(), NetworkCommand::Inspect(a) if a.verbose));
        assert!(matches!(parse("prune -f --filter until=24h").unwrap(), NetworkCommand::Prune(a) if a.force));
        assert!(parse("create").is_err());
        assert!(parse("rm").is_err());
    }

    #[test]
    fn cidrs_match_like_go() {
        assert_eq!(subnet_matches("10.0.0.0/8", "10.200.1.1"), Ok(true));
        assert_eq!(subnet_matches("10.0.0.0/8", "11.0.0.1"), Ok(false));
        assert_eq!(subnet_matches("10.0.0.0/24", "10.0.0.128/25"), Ok(true));
        assert_eq!(subnet_matches("fd00::/64", "fd00::1"), Ok(true));
        assert_eq!(subnet_matches("fd00::/64", "10.0.0.1"), Ok(false));
        assert_eq!(subnet_matches("0.0.0.0/0", "1.2.3.4"), Ok(true));
        assert!(subnet_matches("10.0.0.0/33", "10.0.0.1").is_err());
    }
}
