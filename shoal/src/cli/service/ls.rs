//! `shoal service ls`, after docker's `cli/command/service/list.go` and its formatter:
//! `ID NAME MODE REPLICAS IMAGE PORTS`, sorted naturally by name.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;
use control::objects::service::{PortConfig, PortProtocol, PublishMode, Service};
use serde_json::{json, Value};

use crate::cli::format::{api_name, natural_cmp, render_rows};
use crate::cli::node::filters_json;
use crate::client::{encode_component, Client};

pub const SERVICE_TABLE_FORMAT: &str =
    "table {{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}\\t{{.Image}}\\t{{.Ports}}";
const SERVICE_RAW_FORMAT: &str =
    "id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\nreplicas: {{.Replicas}}\\nimage: {{.Image}}\\nports: {{.Ports}}\\n";

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

pub async fn run(client: &Client, args: LsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // Like docker: the replica counts only when they will be shown.
    let mut query = vec![format!("status={}", !args.quiet)];
    if !args.filter.is_empty() {
        query.push(format!("filters={}", encode_component(&filters_json(&args.filter)?)));
    }
    let services: Vec<Service> = client.get(&format!("/services?{}", query.join("&"))).await?;
    let format = service_list_format(args.format.as_deref(), args.quiet);
    out.write_all(render_service_list(&services, &format).map_err(|e| anyhow!(e))?.as_bytes())?;
    Ok(())
}

/// docker's `NewListFormat`.
pub fn service_list_format(format: Option<&str>, quiet: bool) -> String {
    match format.unwrap_or("table") {
        "table" | "" if quiet => "{{.ID}}".into(),
        "table" | "" => SERVICE_TABLE_FORMAT.into(),
        "raw" if quiet => "id: {{.ID}}".into(),
        "raw" => SERVICE_RAW_FORMAT.into(),
        other => other.into(),
    }
}

pub fn render_service_list(services: &[Service], format: &str) -> Result<String, String> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.spec.name, &b.spec.name));
    let rows: Vec<Value> = sorted.iter().map(|s| service_row(s)).collect();
    let headers = json!({
        "ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS",
    });
    render_rows(format, &rows, &headers)
}

/// What a `service ls` template sees for one service (docker's `serviceContext`).
pub fn service_row(service: &Service) -> Value {
    let mode = if service.spec.mode.global.is_some() { "global" } else { "replicated" };
    json!({
        "ID": truncate_id(&service.id),
        "Image": display_image(&service.spec.task_template.container_spec.image),
        "Mode": mode,
        "Name": service.spec.name,
        "Ports": ports_text(&service.endpoint.ports),
        "Replicas": replicas(service),
    })
}

/// `running/desired`, with `(max N per node)` for a replicated service that sets it.
fn replicas(service: &Service) -> String {
    let (running, desired) =
        service.service_status.as_ref().map(|s| (s.running_tasks, s.desired_tasks)).unwrap_or((0, 0));
    let max = service.spec.task_template.placement.as_ref().map(|p| p.max_replicas).unwrap_or(0);
    if service.spec.mode.replicated.is_some() && max > 0 {
        format!("{running}/{desired} (max {max} per node)")
    } else {
        format!("{running}/{desired}")
    }
}

/// docker's `formatter.TruncateID`: 12 characters, without a `sha256:` prefix.
pub fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    id.chars().take(12).collect()
}

/// An image as `service ls` and `service ps` show it: a digest after a tag is dropped
/// (`nginx:1.25@sha256:…` → `nginx:1.25`).
pub fn display_image(image: &str) -> String {
    match image.split_once('@') {
        Some((named, _)) if named.rsplit('/').next().is_some_and(|last| last.contains(':')) => named.to_string(),
        _ => image.to_string(),
    }
}

/// docker's `Ports()`: ingress ports sorted by protocol then published port, consecutive
/// mappings grouped into ranges: `*:8080->80/tcp`, `*:80-81->80-81/tcp`.
pub fn ports_text(ports: &[PortConfig]) -> String {
    let mut sorted: Vec<&PortConfig> = ports.iter().filter(|p| p.publish_mode == PublishMode::Ingress).collect();
    sorted.sort_by(|a, b| {
        api_name(&a.protocol).cmp(&api_name(&b.protocol)).then(a.published_port.cmp(&b.published_port))
    });
    struct Range {
        p: (u32, u32),
        t: (u32, u32),
        proto: PortProtocol,
    }
    let text = |r: &Range| {
        let side = |(start, end): (u32, u32)| if end > start { format!("{start}-{end}") } else { start.to_string() };
        format!("*:{}->{}/{}", side(r.p), side(r.t), api_name(&r.proto))
    };
    let mut out = Vec::new();
    let mut current: Option<Range> = None;
    for p in sorted {
        if let Some(r) = current.as_mut() {
            let is_range = r.t.1 != r.t.0;
            let overlaps = p.target_port <= r.t.1;
            let consecutive = p.published_port.wrapping_sub(r.p.1) <= 1 && p.target_port.wrapping_sub(r.t.1) <= 1;
            if p.protocol == r.proto && consecutive && !(is_range && overlaps) {
                r.p.1 = p.published_port;
                r.t.1 = p.target_port;
                continue;
            }
            out.push(text(r));
        }
        current = Some(Range {
            p: (p.published_port, p.published_port),
            t: (p.target_port, p.target_port),
            proto: p.protocol,
        });
    }
    if let Some(r) = &current {
        out.push(text(r));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::service::fixtures::{service, SERVICES_TABLE};

    #[test]
    fn table_matches_docker() {
        let web = service("mbiap412jyugfpi4a38mb5i1k", "web", Some(3), 3, &[(8080, 80)]);
        let myweb = service("i0j6wvvtfe1360ibj04jxulmd", "myweb", Some(1), 1, &[]);
        let mut global = service("kc57xffvhul5abcdefghijklm", "mon", None, 2, &[]);
        global.spec.task_template.container_spec.image = "shoal/echo:latest@sha256:0123".into();
        let out = render_service_list(&[web, global, myweb], SERVICE_TABLE_FORMAT).unwrap();
        assert_eq!(out, SERVICES_TABLE);
        let quiet = render_service_list(&[service("abc", "a", Some(1), 0, &[])], &service_list_format(None, true));
        assert_eq!(quiet.unwrap(), "abc\n");
    }

    #[test]
    fn ports_group_like_docker() {
        let p = |published, target| PortConfig { published_port: published, target_port: target, ..Default::default() };
        assert_eq!(ports_text(&[p(8080, 80)]), "*:8080->80/tcp");
        assert_eq!(ports_text(&[p(81, 81), p(80, 80)]), "*:80-81->80-81/tcp");
        assert_eq!(ports_text(&[p(80, 80), p(81, 80)]), "*:80-81->80/tcp");
        assert_eq!(ports_text(&[p(80, 80), p(81, 81), p(82, 80)]), "*:80-81->80-81/tcp, *:82->80/tcp");
        let udp = PortConfig { protocol: PortProtocol::Udp, ..p(53, 53) };
        let host = PortConfig { publish_mode: PublishMode::Host, ..p(9000, 9000) };
        assert_eq!(ports_text(&[p(8080, 80), udp, host]), "*:8080->80/tcp, *:53->53/udp");
    }

    #[test]
    fn images_and_ids_are_shortened() {
        assert_eq!(display_image("nginx:1.25@sha256:abc"), "nginx:1.25");
        assert_eq!(display_image("nginx@sha256:abc"), "nginx@sha256:abc");
        assert_eq!(truncate_id("mbiap412jyugfpi4a38mb5i1k"), "mbiap412jyug");
    }
}
