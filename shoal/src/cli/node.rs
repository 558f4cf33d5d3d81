//! `shoal node ls|inspect|ps|update|promote|demote|rm`, after docker's `cli/command/node`
//! (`node ps` shares `service ps`'s task table, in [`super::service::ps`]).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use control::objects::{Node, NodeAvailability, NodeRole, SwarmInfo};
use serde_json::Value;

use super::format::{inspect_all, node_list_format, render_node_list};
use super::pretty::pretty_node;
use crate::client::{encode_component, Client};

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes in the swarm
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
    /// List tasks running on one or more nodes, defaults to current node
    Ps(super::service::ps::NodePsArgs),
    /// Update a node
    Update(UpdateArgs),
    /// Promote one or more nodes to manager in the swarm
    Promote {
        #[arg(value_name = "NODE", required = true)]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager in the swarm
    Demote {
        #[arg(value_name = "NODE", required = true)]
        nodes: Vec<String>,
    },
    /// Remove one or more nodes from the swarm
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or 'TEMPLATE'
    #[arg(long = "format", value_name = "string")]
    format: Option<String>,
    /// Only display IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or 'TEMPLATE'
    #[arg(short = 'f', long = "format", value_name = "string")]
    format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long = "pretty")]
    pretty: bool,
    #[arg(value_name = "self|NODE", required = true)]
    nodes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long = "availability", value_name = "string")]
    availability: Option<String>,
    /// Add or update a node label ("key=value")
    #[arg(long = "label-add", value_name = "list")]
    label_add: Vec<String>,
    /// Remove a node label if exists
    #[arg(long = "label-rm", value_name = "list")]
    label_rm: Vec<String>,
    /// Role of the node ("worker", "manager")
    #[arg(long = "role", value_name = "string")]
    role: Option<String>,
    #[arg(value_name = "NODE")]
    node: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force remove a node from the swarm
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(value_name = "NODE", required = true)]
    nodes: Vec<String>,
}

pub async fn run(client: &Client, cmd: NodeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Ls(args) => list(client, args, out).await,
        NodeCommand::Inspect(args) => inspect(client, args, out).await,
        NodeCommand::Ps(args) => super::service::ps::node_ps(client, args, out).await,
        NodeCommand::Update(args) => {
            let merge = |node: &mut Node, _: &mut dyn Write| merge_update(&args, node).map(|()| true);
            update_nodes(client, std::slice::from_ref(&args.node), out, merge, str::to_string).await
        }
        NodeCommand::Promote { nodes } => {
            let promote = |node: &mut Node, out: &mut dyn Write| {
                if node.spec.role == NodeRole::Manager {
                    writeln!(out, "Node {} is already a manager.", node.id)?;
                    return Ok(false);
                }
                node.spec.role = NodeRole::Manager;
                Ok(true)
            };
            update_nodes(client, &nodes, out, promote, |n| format!("Node {n} promoted to a manager in the swarm."))
                .await
        }
        NodeCommand::Demote { nodes } => {
            let demote = |node: &mut Node, out: &mut dyn Write| {
                if node.spec.role == NodeRole::Worker {
                    writeln!(out, "Node {} is already a worker.", node.id)?;
                    return Ok(false);
                }
                node.spec.role = NodeRole::Worker;
                Ok(true)
            };
            update_nodes(client, &nodes, out, demote, |n| format!("Manager {n} demoted in the swarm.")).await
        }
        NodeCommand::Rm(args) => {
            let path = |id: &str| format!("/nodes/{}?force={}", encode_component(id), args.force);
            super::remove_each(client, &args.nodes, path, out).await
        }
    }
}

/// `-f key=value` flags as the `filters` JSON dockerd reads.
pub(crate) fn filters_json(flags: &[String]) -> anyhow::Result<String> {
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in flags {
        let Some((k, v)) = f.split_once('=') else { bail!("bad format of filter (expected name=value)") };
        map.entry(k.trim().to_ascii_lowercase()).or_default().insert(v.trim().to_string(), true);
    }
    Ok(serde_json::to_string(&map)?)
}

async fn list(client: &Client, args: LsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut path = "/nodes".to_string();
    if !args.filter.is_empty() {
        path = format!("/nodes?filters={}", encode_component(&filters_json(&args.filter)?));
    }
    let nodes: Vec<Node> = client.get(&path).await?;
    // Like docker, ask /info for the current node only when it will be shown.
    let mut swarm = SwarmInfo::default();
    if !nodes.is_empty() && !args.quiet {
        let info: Value = client.get("/info").await?;
        swarm = info.get("Swarm").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
    }
    let format = node_list_format(args.format.as_deref(), args.quiet);
    let text = render_node_list(&nodes, &swarm, &format).map_err(|e| anyhow!(e))?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// docker's `node.Reference`: `self` is the current node's ID from `/info`.
pub(crate) async fn reference(client: &Client, name: &str) -> anyhow::Result<String> {
    if name != "self" {
        return Ok(name.to_string());
    }
    let info: Value = client.get("/info").await?;
    match info.pointer("/Swarm/NodeID").and_then(Value::as_str).filter(|id| !id.is_empty()) {
        Some(id) => Ok(id.to_string()),
        None => {
            // Not a manager, probably: the node list gives the precise error.
            client.get::<Value>("/nodes").await?;
            bail!("node ID not found in /info")
        }
    }
}

async fn get_node(client: &Client, name: &str) -> anyhow::Result<Node> {
    let id = reference(client, name).await?;
    Ok(client.get(&format!("/nodes/{}", encode_component(&id))).await?)
}

async fn inspect(client: &Client, args: InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let format = if args.pretty { "pretty".to_string() } else { args.format.unwrap_or_default() };
    if format.starts_with("pretty") && format != "pretty" {
        bail!("cannot supply extra formatting options to the pretty template");
    }
    if format == "pretty" {
        // docker stops at the first node it cannot show.
        let mut text = String::new();
        for name in &args.nodes {
            text.push_str(&pretty_node(&get_node(client, name).await?));
        }
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    inspect_all(&args.nodes, &format, out, |name| async move { get_node(client, &name).await }).await
}

/// docker's `updateNodes`: read each node, let `merge` change its spec (false: nothing to do),
/// write it back at the version read, then print `success` for the name given. Stops at the
/// first error.
async fn update_nodes<F>(
    client: &Client,
    names: &[String],
    out: &mut dyn Write,
    mut merge: F,
    success: fn(&str) -> String,
) -> anyhow::Result<()>
where
    F: FnMut(&mut Node, &mut dyn Write) -> anyhow::Result<bool>,
{
    for name in names {
        let mut node: Node = client.get(&format!("/nodes/{}", encode_component(name))).await?;
        if !merge(&mut node, out)? {
            continue;
        }
        let path = format!("/nodes/{}/update?version={}", encode_component(&node.id), node.version.index);
        client.post_unit(&path, Some(&node.spec)).await?;
        writeln!(out, "{}", success(name))?;
    }
    Ok(())
}

/// docker's `mergeNodeUpdate`.
fn merge_update(args: &UpdateArgs, node: &mut Node) -> anyhow::Result<()> {
    let spec = &mut node.spec;
    if let Some(role) = &args.role {
        spec.role = match role.as_str() {
            "worker" => NodeRole::Worker,
            "manager" => NodeRole::Manager,
            other => bail!("invalid role {other:?}, only worker and manager are supported"),
        };
    }
    if let Some(a) = &args.availability {
        spec.availability = match a.as_str() {
            "active" => NodeAvailability::Active,
            "pause" => NodeAvailability::Pause,
            "drain" => NodeAvailability::Drain,
            other => bail!("invalid availability {other:?}, only active, pause and drain are supported"),
        };
    }
    for kv in &args.label_add {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        spec.labels.insert(k.to_string(), v.to_string());
    }
    for k in &args.label_rm {
        if spec.labels.remove(k).is_none() {
            bail!("key {k} doesn't exist in node's labels");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fixtures::seed_cluster;

    fn update_args(extra: &[&str]) -> UpdateArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: UpdateArgs,
        }
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        argv.push("node1");
        T::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn update_merges_flags_like_docker() {
        let mut node = seed_cluster().remove(2);
        node.spec.labels.insert("old".into(), "x".into());
        let args = update_args(&[
            "--availability",
            "drain",
            "--role",
            "manager",
            "--label-add",
            "zone=a",
            "--label-add",
            "ssd",
            "--label-rm",
            "old",
        ]);
        merge_update(&args, &mut node).unwrap();
        assert_eq!(node.spec.availability, NodeAvailability::Drain);
        assert_eq!(node.spec.role, NodeRole::Manager);
        assert_eq!(node.spec.labels, BTreeMap::from([("ssd".to_string(), String::new()), ("zone".into(), "a".into())]));

        let e = merge_update(&update_args(&["--label-rm", "nope"]), &mut node).unwrap_err();
        assert_eq!(e.to_string(), "key nope doesn't exist in node's labels");
        let e = merge_update(&update_args(&["--availability", "gone"]), &mut node).unwrap_err();
        assert_eq!(e.to_string(), r#"invalid availability "gone", only active, pause and drain are supported"#);
    }

    #[test]
    fn filters_become_dockerd_json() {
        let flags = ["role=manager".to_string(), "Name = node1".to_string(), "role=worker".to_string()];
        assert_eq!(filters_json(&flags).unwrap(), r#"{"name":{"node1":true},"role":{"manager":true,"worker":true}}"#);
        assert_eq!(
            filters_json(&["role".into()]).unwrap_err().to_string(),
            "bad format of filter (expected name=value)"
        );
    }
}
