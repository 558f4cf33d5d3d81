//! `shoal service inspect [--pretty]`: JSON with the daemon's defaults filled in
//! (`insertDefaults=true`, as docker asks), or docker's human template, tabs included. `--pretty`
//! ends with Shoal's `Mesh (this node):` block when the daemon serves its load-balancer table.

use std::collections::HashMap;
use std::io::Write;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args;
use control::api::MeshTable;
use control::objects::service::{Service, UpdateConfig, UpdateState};

use crate::cli::duration::human_duration;
use crate::cli::format::{api_name, bytes_size, inspect_all};
use crate::cli::units::go_duration;
use crate::client::{encode_component, Client, ClientError};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or 'TEMPLATE'
    #[arg(short = 'f', long = "format", value_name = "string")]
    format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long = "pretty")]
    pretty: bool,
    #[arg(value_name = "SERVICE", required = true)]
    services: Vec<String>,
}

async fn get(client: &Client, name: &str) -> anyhow::Result<Service> {
    match client.get(&format!("/services/{}?insertDefaults=true", encode_component(name))).await {
        Ok(s) => Ok(s),
        Err(ClientError::Daemon { status, .. }) if status == 404 => bail!("Error: no such service: {name}"),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(client: &Client, args: InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let format = if args.pretty { "pretty".to_string() } else { args.format.unwrap_or_default() };
    if format.starts_with("pretty") && format != "pretty" {
        bail!("Cannot supply extra formatting options to the pretty template");
    }
    if format == "pretty" {
        // docker stops at the first service it cannot show.
        let mut text = String::new();
        // Extra information: a daemon without the table (or failing to read it) just omits it.
        let mesh: Option<MeshTable> = client.get(crate::cli::mesh::MESH_PATH).await.ok();
        for name in &args.services {
            let service = get(client, name).await?;
            let network_names = super::networks::network_names(client, &service.spec).await;
            text.push_str(&pretty_service(&service, Utc::now(), &network_names, mesh.as_ref()));
        }
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    inspect_all(&args.services, &format, out, |name| async move { get(client, &name).await }).await
}

/// docker's `serviceInspectPrettyTemplate` for one service, followed by the blank line
/// docker's formatter adds. `network_names` maps network targets (IDs) to the names shown;
/// `mesh`, this node's load-balancer table, adds the service's `Mesh (this node):` block.
pub fn pretty_service(
    service: &Service,
    now: DateTime<Utc>,
    network_names: &HashMap<String, String>,
    mesh: Option<&MeshTable>,
) -> String {
    let spec = &service.spec;
    let task = &spec.task_template;
    let c = &task.container_spec;
    let mut o = format!("\nID:\t\t{}\nName:\t\t{}", service.id, spec.name);
    if !spec.labels.is_empty() {
        o.push_str("\nLabels:");
        for (k, v) in &spec.labels {
            o.push_str(&if v.is_empty() { format!("\n {k}") } else { format!("\n {k}={v}") });
        }
    }
    o.push_str("\nService Mode:");
    if spec.mode.global.is_some() {
        o.push_str("\tGlobal");
    } else if let Some(r) = &spec.mode.replicated {
        o.push_str("\tReplicated");
        if let Some(n) = r.replicas {
            o.push_str(&format!("\n Replicas:\t{n}"));
        }
    }
    if let Some(status) = &service.update_status {
        o.push_str(&format!("\nUpdateStatus:\n State:\t\t{}", api_name(&status.state)));
        let ago = |t: &DateTime<Utc>| format!("{} ago", human_duration((now - *t).num_nanoseconds().unwrap_or(0)));
        if let Some(started) = &status.started_at {
            o.push_str(&format!("\n Started:\t{}", ago(started)));
        }
        if let (UpdateState::Completed, Some(done)) = (status.state, &status.completed_at) {
            o.push_str(&format!("\n Completed:\t{}", ago(done)));
        }
        o.push_str(&format!("\n Message:\t{}", status.message));
    }
    o.push_str("\nPlacement:");
    if let Some(p) = &task.placement {
        if !p.constraints.is_empty() {
            o.push_str(&format!("\n Constraints:\t[{}]", p.constraints.join(" ")));
        }
        if p.max_replicas > 0 {
            o.push_str(&format!("\n Max Replicas Per Node:   {}", p.max_replicas));
        }
    }
    if let Some(u) = &spec.update_config {
        o.push_str(&update_section("UpdateConfig", "Update order:     ", u));
    }
    if let Some(u) = &spec.rollback_config {
        o.push_str(&update_section("RollbackConfig", "Rollback order:   ", u));
    }
    o.push_str(&format!("\nContainerSpec:\n Image:\t\t{}", c.image));
    if !c.args.is_empty() {
        o.push_str(&format!("\n Args:\t\t{}", c.args.iter().map(|a| format!("{a} ")).collect::<String>()));
    }
    if !c.env.is_empty() {
        o.push_str(&format!("\n Env:\t\t{}", c.env.iter().map(|e| format!("{e} ")).collect::<String>()));
    }
    if !c.dir.is_empty() {
        o.push_str(&format!("\n Dir:\t\t{}", c.dir));
    }
    if !c.user.is_empty() {
        o.push_str(&format!("\n User: {}", c.user));
    }
    let limits = task.resources.as_ref().and_then(|r| r.limits.as_ref());
    if let Some(resources) = &task.resources {
        o.push_str("\nResources:");
        for (title, r) in [(" Reservations:", &resources.reservations), (" Limits:", &resources.limits)] {
            let Some(r) =
                r.as_ref().filter(|r| r.nano_cpus > 0 || r.memory_bytes > 0 || (title == " Limits:" && r.pids > 0))
            else {
                continue;
            };
            o.push_str(&format!("\n{title}"));
            if r.nano_cpus > 0 {
                o.push_str(&format!("\n  CPU:\t\t{}", r.nano_cpus as f64 / 1e9));
            }
            if r.memory_bytes > 0 {
                o.push_str(&format!("\n  Memory:\t{}", bytes_size(r.memory_bytes as f64)));
            }
        }
    }
    if let Some(pids) = limits.map(|l| l.pids).filter(|p| *p > 0) {
        o.push_str(&format!("\n  PIDs:\t\t{pids}"));
    }
    if !task.networks.is_empty() {
        o.push_str(&format!(
            "\nNetworks:{} ",
            task.networks
                .iter()
                .map(|n| format!(" {}", network_names.get(&n.target).unwrap_or(&n.target)))
                .collect::<String>()
        ));
    }
    let mode = spec.endpoint_spec.as_ref().map(|e| api_name(&e.mode)).unwrap_or_default();
    o.push_str(&format!("\nEndpoint Mode:\t{mode}"));
    if !service.endpoint.ports.is_empty() {
        o.push_str("\nPorts:");
        for p in &service.endpoint.ports {
            o.push_str(&format!(
                "\n PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}",
                p.published_port,
                api_name(&p.protocol),
                p.target_port,
                api_name(&p.publish_mode)
            ));
        }
        o.push(' ');
    }
    if let Some(h) = &c.healthcheck {
        o.push_str(&format!(
            "\n Healthcheck:\n  Interval = {}\n  Retries = {}\n  StartPeriod =\t{}\n  Timeout =\t{}",
            go_duration(h.interval),
            h.retries,
            go_duration(h.start_period),
            go_duration(h.timeout)
        ));
        if !h.test.is_empty() {
            o.push_str("\n  Tests:");
            for t in &h.test {
                o.push_str(&format!("\n\t Test = {t}"));
            }
            o.push(' ');
        }
    }
    if let Some(table) = mesh {
        o.push_str(&crate::cli::mesh::pretty_block(table, &service.id));
    }
    o.push_str("\n\n");
    o
}

fn update_section(title: &str, order_label: &str, u: &UpdateConfig) -> String {
    let mut o = format!("\n{title}:\n Parallelism:\t{}", u.parallelism);
    if u.delay > 0 {
        o.push_str(&format!("\n Delay:\t\t{}", go_duration(u.delay)));
    }
    o.push_str(&format!("\n On failure:\t{}", api_name(&u.failure_action)));
    if u.monitor > 0 {
        o.push_str(&format!("\n Monitoring Period: {}", go_duration(u.monitor)));
    }
    o.push_str(&format!("\n Max failure ratio: {}\n {order_label} {}", u.max_failure_ratio, api_name(&u.order)));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::default_update_config;
    use crate::cli::service::fixtures::{now, service};
    use control::objects::service::{HealthConfig, Placement, ResourceLimits, TaskResources, UpdateStatus};

    #[test]
    fn pretty_matches_dockers_template() {
        let mut s = service("de179gar9d0o7ltdybungplod", "my_service", Some(2), 2, &[(30000, 5000)]);
        s.spec.labels.insert("com.label".into(), "foo".into());
        let t = &mut s.spec.task_template;
        t.container_spec.image = "foo/bar@sha256:this_is_a_test".into();
        t.container_spec.env = vec!["A=1".into()];
        t.container_spec.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "curl".into()],
            interval: 4,
            timeout: 1,
            retries: 3,
            start_period: 2,
        });
        t.resources = Some(TaskResources {
            limits: Some(ResourceLimits { nano_cpus: 100_000_000_000, memory_bytes: 10_490_000, pids: 20 }),
            reservations: Some(ResourceLimits::default()),
        });
        t.placement = Some(Placement { constraints: vec!["node.role==manager".into()], ..Default::default() });
        s.spec.update_config = Some(UpdateConfig { delay: 1_000_000_000, ..default_update_config() });
        s.update_status = Some(UpdateStatus {
            state: UpdateState::Completed,
            started_at: Some(now() - chrono::Duration::seconds(90)),
            completed_at: Some(now() - chrono::Duration::seconds(30)),
            message: "update completed".into(),
        });
        let want = "\nID:\t\tde179gar9d0o7ltdybungplod\nName:\t\tmy_service\nLabels:\n com.label=foo\n\
            Service Mode:\tReplicated\n Replicas:\t2\n\
            UpdateStatus:\n State:\t\tcompleted\n Started:\tAbout a minute ago\n Completed:\t30 seconds ago\n Message:\tupdate completed\n\
            Placement:\n Constraints:\t[node.role==manager]\n\
            UpdateConfig:\n Parallelism:\t1\n Delay:\t\t1s\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n Update order:      stop-first\n\
            ContainerSpec:\n Image:\t\tfoo/bar@sha256:this_is_a_test\n Env:\t\tA=1 \n\
            Resources:\n Limits:\n  CPU:\t\t100\n  Memory:\t10MiB\n  PIDs:\t\t20\n\
            Endpoint Mode:\tvip\n\
            Ports:\n PublishedPort = 30000\n  Protocol = tcp\n  TargetPort = 5000\n  PublishMode = ingress \n\
            Healthcheck:\n  Interval = 4ns\n  Retries = 3\n  StartPeriod =\t2ns\n  Timeout =\t1ns\n  Tests:\n\t Test = CMD-SHELL\n\t Test = curl \n\n";
        assert_eq!(pretty_service(&s, now(), &HashMap::new(), None), want.replace("\nHealthcheck:", "\n Healthcheck:"));
    }

    #[test]
    fn pretty_shows_network_names() {
        use control::objects::service::NetworkAttachmentConfig;
        let mut s = service("abc", "mon", None, 1, &[]);
        s.spec.endpoint_spec = None;
        s.spec.task_template.networks =
            ["netid1", "netid2"].map(|t| NetworkAttachmentConfig { target: t.into(), ..Default::default() }).into();
        let names = HashMap::from([("netid1".to_string(), "appnet".to_string())]);
        let text = pretty_service(&s, now(), &names, None);
        assert!(text.contains("\nNetworks: appnet netid2 \nEndpoint Mode:"), "{text:?}");
    }

    #[test]
    fn pretty_global_without_extras() {
        let mut s = service("abc", "mon", None, 1, &[]);
        s.spec.endpoint_spec = None;
        assert_eq!(
            pretty_service(&s, now(), &HashMap::new(), None),
            "\nID:\t\tabc\nName:\t\tmon\nService Mode:\tGlobal\nPlacement:\nContainerSpec:\n Image:\t\tshoal/echo:latest\nEndpoint Mode:\t\n\n"
        );
    }

    #[test]
    fn pretty_ends_with_the_mesh_block_of_this_service() {
        use control::api::{MeshCounters, MeshKind, MeshService};
        use control::objects::service::PortProtocol;
        let s = service("abc", "web", Some(1), 1, &[]);
        let entry = |id: &str| MeshService {
            service_id: id.into(),
            service_name: "x".into(),
            kind: MeshKind::Vip,
            network: "app".into(),
            address: "10.0.1.2".parse().unwrap(),
            port: 0,
            protocol: PortProtocol::Tcp,
            scheduler: "maglev".into(),
            counters: MeshCounters { new_flows: 3, ..Default::default() },
            backends: Vec::new(),
        };
        let table = MeshTable { services: vec![entry("other"), entry("abc")], ..Default::default() };
        let text = pretty_service(&s, now(), &HashMap::new(), Some(&table));
        assert!(text.ends_with("\nEndpoint Mode:\tvip\nMesh (this node):\n KIND   ADDRESS      PROTO   SCHED    CONNS   PACKETS   BYTES   DROPS\n   -> TASK   ADDRESS   NODE   STATE   CONNS   PACKETS   BYTES\n vip    10.0.1.2:*   tcp     maglev   3       0         0B      0\n\n"), "{text:?}");
        // A service this node programs nothing for reads exactly as without a table.
        let other = MeshTable { services: vec![entry("other")], ..Default::default() };
        assert_eq!(
            pretty_service(&s, now(), &HashMap::new(), Some(&other)),
            pretty_service(&s, now(), &HashMap::new(), None)
        );
    }
}
