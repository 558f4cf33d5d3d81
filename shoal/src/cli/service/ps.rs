//! `shoal service ps` and `shoal node ps`, after docker's `service/ps.go`, `node/ps.go` and
//! `task/print.go`: tasks sorted by name then newest first, earlier tasks of the same slot
//! indented with ` \_ `, `CURRENT STATE` as `Running 5 seconds ago`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::{anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use control::objects::service::{PortConfig, Service, Task};
use control::objects::Node;
use serde_json::{json, Value};

use super::ls::{display_image, truncate_id};
use crate::cli::duration::human_duration;
use crate::cli::format::{api_name, capitalize_first, natural_cmp, render_rows};
use crate::cli::node::{filters_json, reference};
use crate::client::{encode_component, Client};

pub const TASK_TABLE_FORMAT: &str = "table {{.ID}}\\t{{.Name}}\\t{{.Image}}\\t{{.Node}}\\t{{.DesiredState}}\\t{{.CurrentState}}\\t{{.Error}}\\t{{.Ports}}";
const TASK_RAW_FORMAT: &str = "id: {{.ID}}\\nname: {{.Name}}\\nimage: {{.Image}}\\nnode: {{.Node}}\\ndesired_state: {{.DesiredState}}\\ncurrent_state: {{.CurrentState}}\\nerror: {{.Error}}\\nports: {{.Ports}}\\n";
const MAX_ERR_LENGTH: usize = 30;

/// The flags `service ps` and `node ps` share.
#[derive(Args, Debug, Default)]
pub struct TaskListFlags {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Pretty-print tasks using a Go template
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,
    /// Do not map IDs to Names
    #[arg(long = "no-resolve")]
    pub no_resolve: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display task IDs
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub flags: TaskListFlags,
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NodePsArgs {
    #[command(flatten)]
    pub flags: TaskListFlags,
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
}

type FilterMap = BTreeMap<String, BTreeMap<String, bool>>;

fn user_filters(client_flags: &[String]) -> anyhow::Result<FilterMap> {
    Ok(serde_json::from_str(&filters_json(client_flags)?)?)
}

async fn list_tasks(client: &Client, filters: &FilterMap) -> anyhow::Result<Vec<Task>> {
    let json = serde_json::to_string(filters)?;
    Ok(client.get(&format!("/tasks?filters={}", encode_component(&json))).await?)
}

/// docker's `updateNodeFilter`: `node=self` means this node.
async fn resolve_node_filter(client: &Client, filters: &mut FilterMap) -> anyhow::Result<()> {
    if let Some(nodes) = filters.remove("node") {
        let mut resolved = BTreeMap::new();
        for name in nodes.into_keys() {
            resolved.insert(reference(client, &name).await?, true);
        }
        filters.insert("node".into(), resolved);
    }
    Ok(())
}

pub async fn service_ps(client: &Client, args: PsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let services: Vec<Service> = client.get("/services").await?;
    let mut filters = user_filters(&args.flags.filter)?;
    let (ids, not_found) = match_services(&services, &args.services)?;
    filters.entry("service".into()).or_default().extend(ids.into_iter().map(|id| (id, true)));
    resolve_node_filter(client, &mut filters).await?;
    let tasks = list_tasks(client, &filters).await?;
    print_tasks(client, &tasks, Some(&services), &args.flags, out).await?;
    if !not_found.is_empty() {
        bail!(not_found.join("\n"));
    }
    Ok(())
}

/// docker's `createFilter`: each argument by full ID, then full name, then unique ID prefix.
pub fn match_services(services: &[Service], wanted: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut ids, mut not_found) = (Vec::new(), Vec::new());
    for w in wanted {
        if let Some(s) = services.iter().find(|s| &s.id == w).or_else(|| services.iter().find(|s| &s.spec.name == w)) {
            ids.push(s.id.clone());
            continue;
        }
        let prefixed: Vec<&Service> = services.iter().filter(|s| s.id.starts_with(w.as_str())).collect();
        match prefixed.as_slice() {
            [] => not_found.push(format!("no such service: {w}")),
            [one] => ids.push(one.id.clone()),
            _ => bail!("multiple services found with provided prefix: {w}"),
        }
    }
    if ids.is_empty() {
        bail!(not_found.join("\n"));
    }
    Ok((ids, not_found))
}

pub async fn node_ps(client: &Client, args: NodePsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let names = if args.nodes.is_empty() { vec!["self".to_string()] } else { args.nodes.clone() };
    let (mut errors, mut tasks) = (Vec::new(), Vec::new());
    for name in &names {
        let found = async {
            let id = reference(client, name).await?;
            let node: Node = client.get(&format!("/nodes/{}", encode_component(&id))).await?;
            let mut filters = user_filters(&args.flags.filter)?;
            filters.entry("node".into()).or_default().insert(node.id, true);
            list_tasks(client, &filters).await
        };
        match found.await {
            Ok(t) => tasks.extend(t),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() || !tasks.is_empty() {
        if let Err(e) = print_tasks(client, &tasks, None, &args.flags, out).await {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!(errors.join("\n"));
    }
    Ok(())
}

/// docker's `task.Print`: resolves service and node names (unless `--no-resolve`) and renders.
async fn print_tasks(
    client: &Client,
    tasks: &[Task],
    services: Option<&[Service]>,
    flags: &TaskListFlags,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut resolver = Names::default();
    if !flags.no_resolve && !tasks.is_empty() {
        let fetched;
        let services = match services {
            Some(s) => s,
            None => {
                fetched = client.get::<Vec<Service>>("/services").await?;
                &fetched
            }
        };
        resolver.services = services.iter().map(|s| (s.id.clone(), s.spec.name.clone())).collect();
        let nodes: Vec<Node> = client.get("/nodes").await.unwrap_or_default();
        resolver.nodes = nodes.iter().map(|n| (n.id.clone(), node_name(n))).collect();
    }
    let format = task_list_format(flags.format.as_deref(), flags.quiet);
    let trunc = !flags.no_trunc && !flags.quiet;
    let text = render_task_list(tasks, &resolver, Utc::now(), trunc, &format).map_err(|e| anyhow!(e))?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn node_name(node: &Node) -> String {
    match node.spec.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ if !node.description.hostname.is_empty() => node.description.hostname.clone(),
        _ => node.id.clone(),
    }
}

/// Service and node names by ID; an ID it does not know is shown as is.
#[derive(Debug, Default)]
pub struct Names {
    pub services: HashMap<String, String>,
    pub nodes: HashMap<String, String>,
}

impl Names {
    fn service(&self, id: &str) -> String {
        self.services.get(id).cloned().unwrap_or_else(|| id.to_string())
    }
    fn node(&self, id: &str) -> String {
        self.nodes.get(id).cloned().unwrap_or_else(|| id.to_string())
    }
}

/// docker's `newTaskFormat`.
pub fn task_list_format(format: Option<&str>, quiet: bool) -> String {
    match format.unwrap_or("table") {
        "table" | "" if quiet => "{{.ID}}".into(),
        "table" | "" => TASK_TABLE_FORMAT.into(),
        "raw" if quiet => "id: {{.ID}}".into(),
        "raw" => TASK_RAW_FORMAT.into(),
        other => other.into(),
    }
}

/// The task table: `<service>.<slot>` names (global: `<service>.<node ID>`), sorted naturally
/// and newest first within a name, history rows indented in table formats.
pub fn render_task_list(
    tasks: &[Task],
    names: &Names,
    now: DateTime<Utc>,
    trunc: bool,
    format: &str,
) -> Result<String, String> {
    let mut named: Vec<(String, &Task)> = tasks
        .iter()
        .map(|t| {
            let service = names.service(&t.service_id);
            let name = if t.slot != 0 { format!("{service}.{}", t.slot) } else { format!("{service}.{}", t.node_id) };
            (name, t)
        })
        .collect();
    named.sort_by(|(an, a), (bn, b)| natural_cmp(an, bn).then(b.created_at.cmp(&a.created_at)));
    let indent = if format.starts_with("table") { " \\_ " } else { "" };
    let mut previous = "";
    let mut rows = Vec::new();
    for (name, task) in &named {
        let shown = if name == previous { format!("{indent}{name}") } else { name.clone() };
        previous = name;
        rows.push(task_row(task, &shown, &names.node(&task.node_id), now, trunc));
    }
    let headers = json!({
        "ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
        "CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS",
    });
    render_rows(format, &rows, &headers)
}

/// What a task template sees (docker's `taskContext`).
pub fn task_row(task: &Task, name: &str, node: &str, now: DateTime<Utc>, trunc: bool) -> Value {
    let image = &task.spec.container_spec.image;
    let since = (now - task.status.timestamp).num_nanoseconds().unwrap_or(i64::MAX);
    let mut error = task.status.err.clone();
    if trunc {
        error = ellipsis(&error, MAX_ERR_LENGTH);
    }
    if !error.is_empty() {
        error = format!("\"{error}\"");
    }
    json!({
        "CurrentState": format!(
            "{} {} ago",
            capitalize_first(task.status.state.as_str()),
            human_duration(since).to_lowercase()
        ),
        "DesiredState": capitalize_first(&api_name(&task.desired_state)),
        "Error": error,
        "ID": if trunc { truncate_id(&task.id) } else { task.id.clone() },
        "Image": if trunc { display_image(image) } else { image.clone() },
        "Name": name,
        "Node": node,
        "Ports": task_ports(&task.status.port_status),
    })
}

/// `Status.PortStatus.Ports` as `*:30000->80/tcp,…`.
fn task_ports(port_status: &Value) -> String {
    let ports: Vec<PortConfig> =
        port_status.get("Ports").and_then(|p| serde_json::from_value(p.clone()).ok()).unwrap_or_default();
    ports
        .iter()
        .map(|p| format!("*:{}->{}/{}", p.published_port, p.target_port, api_name(&p.protocol)))
        .collect::<Vec<_>>()
        .join(",")
}

/// docker's `formatter.Ellipsis` for a width in characters.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::service::fixtures::{history_tasks, now, HISTORY_TABLE};

    fn names() -> Names {
        Names {
            services: [("svcvote".to_string(), "vote".to_string())].into(),
            nodes: [("n1".to_string(), "worker1".to_string()), ("n2".to_string(), "worker2".to_string())].into(),
        }
    }

    #[test]
    fn history_rows_are_indented_under_their_slot() {
        let out = render_task_list(&history_tasks(), &names(), now(), true, TASK_TABLE_FORMAT).unwrap();
        assert_eq!(out, HISTORY_TABLE);
    }

    #[test]
    fn quiet_and_templates_do_not_indent() {
        let tasks = history_tasks();
        let quiet = render_task_list(&tasks, &names(), now(), false, &task_list_format(None, true)).unwrap();
        assert_eq!(quiet.lines().count(), tasks.len());
        assert!(quiet.lines().all(|l| l.len() == 25), "{quiet}");
        let names_only = render_task_list(&tasks, &names(), now(), true, "{{.Name}} {{.Node}}").unwrap();
        assert_eq!(names_only, "vote.1 worker1\nvote.1 worker2\nvote.1 worker1\nvote.2 worker2\nvote.n1 worker1\n");
    }

    #[test]
    fn matches_services_like_docker() {
        use crate::cli::service::fixtures::service;
        let services = [service("abc123", "web", Some(1), 1, &[]), service("abd456", "api", Some(1), 1, &[])];
        let want = |w: &[&str]| match_services(&services, &w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(want(&["web", "abd"]).unwrap().0, ["abc123", "abd456"]);
        assert_eq!(want(&["web", "nope"]).unwrap().1, ["no such service: nope"]);
        assert_eq!(want(&["ab"]).unwrap_err().to_string(), "multiple services found with provided prefix: ab");
        assert_eq!(want(&["x", "y"]).unwrap_err().to_string(), "no such service: x\nno such service: y");
    }

    #[test]
    fn long_errors_are_cut_and_quoted() {
        assert_eq!(ellipsis("short", 30), "short");
        assert_eq!(ellipsis(&"x".repeat(40), 30).chars().count(), 30);
    }
}
