//! `shoal service update` and `shoal service rollback`, after docker's `update.go` and
//! `rollback.go`: read the service, change its spec as the flags say, write it back at the
//! version read, and wait for convergence unless `-d`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use control::objects::service::{
    NetworkAttachmentConfig, Placement, PortConfig, ResourceLimits, Service, ServiceSpec, TaskResources,
};
use serde::Deserialize;

use super::create::{image_with_tag, kv_map};
use super::flags::{endpoint_mode, env, label, ServiceFlags, SpecFlags};
use super::networks::{network_attachment, update_networks};
use super::ports::{ports, update_ports, Ports};
use super::wait::wait_on_service;
use crate::cli::units::shell_words;
use crate::client::{encode_component, Client};

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub changes: UpdateChanges,
    #[command(flatten)]
    pub flags: ServiceFlags,
    /// Rollback to previous specification
    #[arg(long = "rollback")]
    pub rollback: bool,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

/// The flags only `update` has.
#[derive(Args, Debug, Default, Clone, PartialEq)]
pub struct UpdateChanges {
    /// Service image tag
    #[arg(long = "image", value_name = "string")]
    pub image: Option<String>,
    /// Service command args
    #[arg(long = "args", value_name = "command", allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Force update even if no changes require it
    #[arg(long = "force")]
    pub force: bool,
    /// Add or update an environment variable
    #[arg(long = "env-add", value_name = "list", value_parser = env)]
    pub env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long = "env-rm", value_name = "list")]
    pub env_rm: Vec<String>,
    /// Add or update a service label
    #[arg(long = "label-add", value_name = "list", value_parser = label)]
    pub label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long = "label-rm", value_name = "list")]
    pub label_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long = "container-label-add", value_name = "list", value_parser = label)]
    pub container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long = "container-label-rm", value_name = "list")]
    pub container_label_rm: Vec<String>,
    /// Add or update a placement constraint
    #[arg(long = "constraint-add", value_name = "list")]
    pub constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long = "constraint-rm", value_name = "list")]
    pub constraint_rm: Vec<String>,
    /// Add or update a published port
    #[arg(long = "publish-add", value_name = "port", value_parser = ports)]
    pub publish_add: Vec<Ports>,
    /// Remove a published port by its target port
    #[arg(long = "publish-rm", value_name = "port", value_parser = ports)]
    pub publish_rm: Vec<Ports>,
    /// Add a network
    #[arg(long = "network-add", value_name = "network", value_parser = network_attachment)]
    pub network_add: Vec<NetworkAttachmentConfig>,
    /// Remove a network
    #[arg(long = "network-rm", value_name = "list")]
    pub network_rm: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Suppress progress output
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

#[derive(Deserialize)]
struct UpdateAnswer {
    #[serde(rename = "Warnings", default)]
    warnings: Option<Vec<String>>,
}

pub async fn run(client: &Client, args: UpdateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let service = get_service(client, &args.service).await?;
    if args.rollback && (args.changes != UpdateChanges::default() || args.flags.spec != SpecFlags::default()) {
        bail!("other flags may not be combined with --rollback");
    }
    let mut spec = service.spec.clone();
    if !args.rollback {
        apply_update(&mut spec, &args.flags.spec, &args.changes)?;
        update_networks(client, &mut spec, &args.changes.network_add, &args.changes.network_rm).await?;
    }
    post_update(client, &service, &spec, args.rollback).await?;
    writeln!(out, "{}", args.service)?;
    out.flush()?;
    if args.flags.detach {
        return Ok(());
    }
    wait_on_service(client, &args.service, args.flags.quiet).await
}

/// `service rollback`: a server-side rollback to `PreviousSpec`.
pub async fn rollback(client: &Client, args: RollbackArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let service = get_service(client, &args.service).await?;
    post_update(client, &service, &service.spec, true).await?;
    writeln!(out, "{}", args.service)?;
    out.flush()?;
    if args.detach {
        return Ok(());
    }
    wait_on_service(client, &args.service, args.quiet).await
}

pub async fn get_service(client: &Client, name: &str) -> anyhow::Result<Service> {
    Ok(client.get(&format!("/services/{}?insertDefaults=false", encode_component(name))).await?)
}

/// `POST /services/{id}/update` at the version read; prints the daemon's warnings.
pub async fn post_update(client: &Client, service: &Service, spec: &ServiceSpec, rollback: bool) -> anyhow::Result<()> {
    let mut path = format!("/services/{}/update?version={}", encode_component(&service.id), service.version.index);
    if rollback {
        path.push_str("&rollback=previous");
    }
    path.push_str("&registryAuthFrom=spec");
    let answer: UpdateAnswer = client.post(&path, spec).await?;
    for warning in answer.warnings.unwrap_or_default() {
        eprintln!("{warning}");
    }
    Ok(())
}

/// docker's `updateService` for what Shoal models, in docker's order.
pub fn apply_update(spec: &mut ServiceSpec, f: &SpecFlags, c: &UpdateChanges) -> anyhow::Result<()> {
    update_map(&mut spec.labels, &c.label_rm, &c.label_add);
    let task = &mut spec.task_template;
    let cspec = &mut task.container_spec;
    update_map(&mut cspec.labels, &c.container_label_rm, &c.container_label_add);
    if let Some(image) = &c.image {
        cspec.image = image.clone();
    }
    if let Some(args) = &c.args {
        cspec.args = shell_words(args).map_err(anyhow::Error::msg)?;
    }
    if let Some(entrypoint) = &f.entrypoint {
        cspec.command = shell_words(entrypoint).map_err(anyhow::Error::msg)?;
    }
    update_env(&mut cspec.env, &c.env_rm, &c.env_add);
    for (flag, field) in [(&f.workdir, &mut cspec.dir), (&f.user, &mut cspec.user), (&f.hostname, &mut cspec.hostname)]
    {
        if let Some(v) = flag {
            *field = v.clone();
        }
    }
    if f.limits_given() || f.reservations_given() {
        let resources = task.resources.get_or_insert_with(TaskResources::default);
        if f.limits_given() {
            f.merge_limits(resources.limits.get_or_insert_with(ResourceLimits::default));
        }
        if f.reservations_given() {
            f.merge_reservations(resources.reservations.get_or_insert_with(ResourceLimits::default));
        }
    }
    if let Some(grace) = f.stop_grace_period {
        cspec.stop_grace_period = Some(grace);
    }
    f.merge_health_config(&mut cspec.healthcheck)?;
    f.merge_restart_policy(&mut task.restart_policy)?;
    if !c.constraint_add.is_empty() || !c.constraint_rm.is_empty() {
        let placement = task.placement.get_or_insert_with(Placement::default);
        placement.constraints.extend(c.constraint_add.iter().cloned());
        placement.constraints.retain(|x| !c.constraint_rm.contains(x));
        placement.constraints.sort();
    }
    if let Some(replicas) = f.replicas {
        match spec.mode.replicated.as_mut() {
            Some(r) => r.replicas = Some(replicas),
            None => bail!("replicas can only be used with replicated mode"),
        }
    }
    if let Some(max) = f.max_replicas {
        spec.task_template.placement.get_or_insert_with(Placement::default).max_replicas = max;
    }
    f.update_flags().merge_into(&mut spec.update_config)?;
    f.rollback_flags().merge_into(&mut spec.rollback_config)?;
    if let Some(mode) = &f.endpoint_mode {
        spec.endpoint_spec.get_or_insert_with(Default::default).mode = endpoint_mode(mode)?;
    }
    if !c.publish_add.is_empty() || !c.publish_rm.is_empty() {
        let endpoint = spec.endpoint_spec.get_or_insert_with(Default::default);
        let add: Vec<PortConfig> = c.publish_add.iter().flat_map(|p| p.0.clone()).collect();
        let rm: Vec<PortConfig> = c.publish_rm.iter().flat_map(|p| p.0.clone()).collect();
        endpoint.ports = update_ports(&endpoint.ports, &rm, &add);
    }
    if c.force {
        spec.task_template.force_update += 1;
    }
    let image = &mut spec.task_template.container_spec.image;
    *image = image_with_tag(image);
    Ok(())
}

/// `--label-rm` then `--label-add` (also for container labels).
fn update_map(map: &mut BTreeMap<String, String>, rm: &[String], add: &[String]) {
    for key in rm {
        map.remove(key);
    }
    map.extend(kv_map(add));
}

/// docker's `updateEnvironment`: remove by key, then add or replace by key (sorted by key here,
/// where Go's map gives a random order).
fn update_env(env: &mut Vec<String>, rm: &[String], add: &[String]) {
    let key = |v: &str| v.split_once('=').map_or(v, |(k, _)| k).to_string();
    env.retain(|v| !rm.contains(&key(v)));
    if add.is_empty() {
        return;
    }
    let mut by_key: BTreeMap<String, String> = env.iter().map(|v| (key(v), v.clone())).collect();
    by_key.extend(add.iter().map(|v| (key(v), v.clone())));
    *env = by_key.into_values().collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use control::objects::service::{FailureAction, ReplicatedService};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: UpdateArgs,
    }

    /// Parses blank-separated flags for `update … web`.
    fn args(line: &str) -> UpdateArgs {
        T::try_parse_from(std::iter::once("update").chain(line.split_whitespace()).chain(["web"])).unwrap().a
    }

    fn base() -> ServiceSpec {
        let mut spec = ServiceSpec { name: "web".into(), ..Default::default() };
        spec.mode.replicated = Some(ReplicatedService { replicas: Some(3) });
        let c = &mut spec.task_template.container_spec;
        c.image = "shoal/echo:1".into();
        c.env = vec!["A=1".into(), "B=2".into()];
        spec.task_template.placement =
            Some(Placement { constraints: vec!["node.role==worker".into()], ..Default::default() });
        spec.endpoint_spec = Some(Default::default());
        spec.endpoint_spec.as_mut().unwrap().ports =
            vec![PortConfig { target_port: 80, published_port: 8080, ..Default::default() }];
        spec
    }

    fn updated(line: &str) -> ServiceSpec {
        let a = args(line);
        let mut spec = base();
        apply_update(&mut spec, &a.flags.spec, &a.changes).unwrap();
        spec
    }

    #[test]
    fn changes_only_what_the_flags_name() {
        let s = updated("--image shoal/echo:2 --replicas 5 --env-add C=3 --env-add A=9 --env-rm B");
        assert_eq!(s.task_template.container_spec.image, "shoal/echo:2");
        assert_eq!(s.mode.replicated.as_ref().unwrap().replicas, Some(5));
        assert_eq!(s.task_template.container_spec.env, ["A=9", "C=3"]);
        assert_eq!(s.task_template.placement.as_ref().unwrap().constraints, ["node.role==worker"]);
        assert!(s.update_config.is_none());

        let s = updated("--constraint-add node.labels.zone==a --constraint-rm node.role==worker --force");
        assert_eq!(s.task_template.placement.unwrap().constraints, ["node.labels.zone==a"]);
        assert_eq!(s.task_template.force_update, 1);

        let s = updated("--update-failure-action rollback --limit-memory 1G --label-add a=b");
        let u = s.update_config.unwrap();
        assert_eq!((u.failure_action, u.parallelism, u.monitor), (FailureAction::Rollback, 1, 5_000_000_000));
        assert_eq!(s.task_template.resources.unwrap().limits.unwrap().memory_bytes, 1 << 30);
        assert_eq!(s.labels["a"], "b");
    }

    #[test]
    fn publish_add_and_rm() {
        let s = updated("--publish-add 9090:90 --publish-rm 80");
        let ports: Vec<_> = s.endpoint_spec.unwrap().ports.iter().map(|p| (p.published_port, p.target_port)).collect();
        assert_eq!(ports, [(9090, 90)]);
        let s = updated("--publish-add 8080:80 --publish-add 70:7");
        let ports: Vec<_> = s.endpoint_spec.unwrap().ports.iter().map(|p| (p.published_port, p.target_port)).collect();
        assert_eq!(ports, [(70, 7), (8080, 80)]);
    }

    #[test]
    fn health_updates_edit_in_place() {
        let s = updated("--health-cmd true --health-retries 3");
        let h = s.task_template.container_spec.healthcheck.unwrap();
        assert_eq!((h.test.as_slice(), h.retries), (&["CMD-SHELL".to_string(), "true".into()][..], 3));
        let s = updated("--no-healthcheck");
        assert_eq!(s.task_template.container_spec.healthcheck.unwrap().test, ["NONE"]);
    }

    #[test]
    fn replicas_need_replicated_mode() {
        let a = args("--replicas 2");
        let mut spec = base();
        spec.mode = Default::default();
        spec.mode.global = Some(Default::default());
        let e = apply_update(&mut spec, &a.flags.spec, &a.changes).unwrap_err();
        assert_eq!(e.to_string(), "replicas can only be used with replicated mode");
    }

    #[test]
    fn network_flags_parse() {
        let a = args("--network-add name=appnet,alias=api --network-add spare --network-rm old");
        let targets: Vec<_> = a.changes.network_add.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["appnet", "spare"]);
        assert_eq!(a.changes.network_add[0].aliases, ["api"]);
        assert_eq!(a.changes.network_rm, ["old"]);
        let a = args("--rollback --network-rm old");
        assert!(a.changes != UpdateChanges::default());
    }

    #[test]
    fn rollback_stands_alone() {
        let a = args("--rollback -d");
        assert!(a.changes == UpdateChanges::default() && a.flags.spec == SpecFlags::default());
        let a = args("--rollback --image x");
        assert!(a.changes != UpdateChanges::default());
    }
}
