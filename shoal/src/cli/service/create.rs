//! `shoal service create`, after docker's `cli/command/service/create.go` and `opts.go`
//! (`ToService`): flags become a `ServiceSpec`, the daemon answers the new ID, and the command
//! waits for the service to converge unless `-d`.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use control::objects::service::{
    ContainerSpec, EndpointSpec, GlobalService, NetworkAttachmentConfig, Placement, ReplicatedService, ResourceLimits,
    ServiceMode, ServiceSpec, TaskResources, TaskSpec,
};
use serde::Deserialize;

use super::flags::{endpoint_mode, env, label, ServiceFlags, SpecFlags};
use super::networks::{check_networks, network_attachment};
use super::ports::{ports, Ports};
use super::wait::wait_on_service;
use crate::cli::units::shell_words;
use crate::client::Client;

#[derive(Args, Debug)]
#[command(override_usage = "shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]")]
pub struct CreateArgs {
    /// Service name
    #[arg(long = "name", value_name = "string")]
    pub name: Option<String>,
    /// Service mode ("replicated", "global")
    #[arg(long = "mode", value_name = "string", default_value = "replicated")]
    pub mode: String,
    /// Publish a port as a node port
    #[arg(short = 'p', long = "publish", value_name = "port", value_parser = ports)]
    pub publish: Vec<Ports>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list", value_parser = env)]
    pub env: Vec<String>,
    /// Service labels
    #[arg(short = 'l', long = "label", value_name = "list", value_parser = label)]
    pub labels: Vec<String>,
    /// Container labels
    #[arg(long = "container-label", value_name = "list", value_parser = label)]
    pub container_labels: Vec<String>,
    /// Placement constraints
    #[arg(long = "constraint", value_name = "list")]
    pub constraints: Vec<String>,
    /// Network attachments
    #[arg(long = "network", value_name = "network", value_parser = network_attachment)]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[command(flatten)]
    pub flags: ServiceFlags,
    /// The image, then the command and its arguments
    #[arg(value_name = "IMAGE", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub image_and_command: Vec<String>,
}

#[derive(Deserialize)]
struct CreateAnswer {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Warnings", default)]
    warnings: Option<Vec<String>>,
}

pub async fn run(client: &Client, args: CreateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut spec = create_spec(&args)?;
    check_networks(client, &mut spec.task_template.networks).await?;
    let answer: CreateAnswer = client.post("/services/create", &spec).await?;
    for warning in answer.warnings.unwrap_or_default() {
        eprintln!("{warning}");
    }
    writeln!(out, "{}", answer.id)?;
    out.flush()?;
    if args.flags.detach {
        return Ok(());
    }
    wait_on_service(client, &answer.id, args.flags.quiet).await
}

/// docker's `ToService` for what Shoal models, plus the Go client's `:latest` tagging.
pub fn create_spec(args: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let f = &args.flags.spec;
    let env = merge_env(&args.env);
    let healthcheck = f.new_health_config()?;
    let mode = service_mode(&args.mode, f)?;
    let mut update_config = None;
    f.update_flags().merge_into(&mut update_config)?;
    let mut rollback_config = None;
    f.rollback_flags().merge_into(&mut rollback_config)?;
    let mut restart_policy = None;
    f.merge_restart_policy(&mut restart_policy)?;
    let mut limits = ResourceLimits::default();
    f.merge_limits(&mut limits);
    let mut reservations = ResourceLimits::default();
    f.merge_reservations(&mut reservations);
    let mut networks = args.networks.clone();
    networks.sort_by(|a, b| a.target.cmp(&b.target));
    let (image, args_) = args.image_and_command.split_first().expect("clap requires IMAGE");
    let command = f.entrypoint.as_deref().map(shell_words).transpose().map_err(anyhow::Error::msg)?;
    Ok(ServiceSpec {
        name: args.name.clone().unwrap_or_default(),
        labels: kv_map(&args.labels),
        task_template: TaskSpec {
            container_spec: ContainerSpec {
                image: image_with_tag(image),
                labels: kv_map(&args.container_labels),
                command: command.unwrap_or_default(),
                args: args_.to_vec(),
                hostname: f.hostname.clone().unwrap_or_default(),
                env,
                dir: f.workdir.clone().unwrap_or_default(),
                user: f.user.clone().unwrap_or_default(),
                stop_grace_period: f.stop_grace_period,
                healthcheck,
                isolation: None,
            },
            resources: Some(TaskResources { limits: Some(limits), reservations: Some(reservations) }),
            restart_policy,
            placement: Some(Placement {
                constraints: args.constraints.clone(),
                preferences: vec![],
                max_replicas: f.max_replicas.unwrap_or(0),
            }),
            force_update: 0,
            runtime: None,
            networks,
        },
        mode,
        update_config,
        rollback_config,
        endpoint_spec: Some(EndpointSpec {
            mode: endpoint_mode(f.endpoint_mode.as_deref().unwrap_or("vip"))?,
            ports: args.publish.iter().flat_map(|p| p.0.clone()).collect(),
        }),
    })
}

/// docker's `ToServiceMode` for the modes Shoal runs.
fn service_mode(mode: &str, f: &SpecFlags) -> anyhow::Result<ServiceMode> {
    match mode {
        "global" => {
            if f.replicas.is_some() {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            if f.max_replicas.unwrap_or(0) > 0 {
                bail!("replicas-max-per-node can only be used with replicated or replicated-job mode");
            }
            Ok(ServiceMode { replicated: None, global: Some(GlobalService {}) })
        }
        "replicated" => Ok(ServiceMode { replicated: Some(ReplicatedService { replicas: f.replicas }), global: None }),
        other => bail!("Unknown mode: {other}, only replicated and global supported"),
    }
}

/// docker's `makeEnv`: later values of a variable replace earlier ones, order kept.
pub fn merge_env(entries: &[String]) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    for entry in entries {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        env.retain(|current| current == entry || !current.starts_with(&format!("{key}=")));
        if !env.contains(entry) {
            env.push(entry.clone());
        }
    }
    env
}

/// docker's `ConvertKVStringsToMap`: `k=v` → k: v, `k` → k: "".
pub fn kv_map(entries: &[String]) -> std::collections::BTreeMap<String, String> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

/// The Go client's `imageWithTagString`: a reference without tag or digest gets `:latest`,
/// and Docker Hub's long forms read as docker shows them (`docker.io/library/nginx` → `nginx`).
pub fn image_with_tag(image: &str) -> String {
    let familiar = image
        .strip_prefix("docker.io/library/")
        .filter(|rest| !rest.contains('/'))
        .or_else(|| image.strip_prefix("docker.io/"))
        .unwrap_or(image);
    if familiar.is_empty() || familiar.contains('@') {
        return familiar.to_string();
    }
    let last = familiar.rsplit('/').next().unwrap_or(familiar);
    if last.contains(':') {
        familiar.to_string()
    } else {
        format!("{familiar}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use control::objects::service::{
        FailureAction, PortConfig, PortProtocol, PublishMode, RestartCondition, UpdateOrder,
    };

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    /// Parses a command line of blank-separated words.
    fn parse(line: &str) -> Result<CreateArgs, clap::Error> {
        T::try_parse_from(std::iter::once("create").chain(line.split_whitespace())).map(|t| t.a)
    }

    fn spec(line: &str) -> ServiceSpec {
        create_spec(&parse(line).unwrap()).unwrap()
    }

    #[test]
    fn flags_become_a_spec() {
        let s = spec(
            "--name web --replicas 3 -p 8080:80 -p published=53,target=5353,protocol=udp,mode=host \
             -e A=1 --env B=2 -e A=3 --label tier=front --constraint node.role==manager \
             --replicas-max-per-node 2 --limit-memory 512M --limit-cpu 0.5 -w /srv -u nobody \
             --hostname h --stop-grace-period 1m30s -d shoal/echo --http 8080",
        );
        assert_eq!(s.name, "web");
        assert_eq!(s.mode.replicated, Some(ReplicatedService { replicas: Some(3) }));
        let c = &s.task_template.container_spec;
        assert_eq!(c.image, "shoal/echo:latest");
        assert_eq!(c.args, ["--http", "8080"]);
        assert_eq!(c.env, ["B=2", "A=3"]);
        assert_eq!((c.dir.as_str(), c.user.as_str(), c.hostname.as_str()), ("/srv", "nobody", "h"));
        assert_eq!(c.stop_grace_period, Some(90_000_000_000));
        assert_eq!(s.labels["tier"], "front");
        let placement = s.task_template.placement.as_ref().unwrap();
        assert_eq!(
            (placement.constraints.as_slice(), placement.max_replicas),
            (&["node.role==manager".to_string()][..], 2)
        );
        let limits = s.task_template.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!((limits.memory_bytes, limits.nano_cpus), (512 << 20, 500_000_000));
        let ports = &s.endpoint_spec.as_ref().unwrap().ports;
        assert_eq!(ports[0], PortConfig { target_port: 80, published_port: 8080, ..Default::default() });
        assert_eq!(
            ports[1],
            PortConfig {
                protocol: PortProtocol::Udp,
                target_port: 5353,
                published_port: 53,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }
        );
        // Nothing given, nothing set: the daemon's defaults apply.
        assert!(s.update_config.is_none() && s.task_template.restart_policy.is_none());
        assert!(c.healthcheck.is_none());
    }

    #[test]
    fn policies_start_from_swarmkit_defaults() {
        let s = spec(
            "--restart-condition on-failure --restart-max-attempts 3 --update-parallelism 2 --update-delay 1s \
             --update-failure-action rollback --rollback-order start-first --health-cmd true \
             --health-interval 500ms --health-retries 2 shoal/echo",
        );
        let restart = s.task_template.restart_policy.unwrap();
        assert_eq!(restart.condition, RestartCondition::OnFailure);
        assert_eq!((restart.delay, restart.max_attempts), (Some(5_000_000_000), 3));
        let update = s.update_config.unwrap();
        assert_eq!((update.parallelism, update.delay, update.monitor), (2, 1_000_000_000, 5_000_000_000));
        assert_eq!((update.failure_action, update.order), (FailureAction::Rollback, UpdateOrder::StopFirst));
        let rollback = s.rollback_config.unwrap();
        assert_eq!((rollback.parallelism, rollback.order), (1, UpdateOrder::StartFirst));
        let health = s.task_template.container_spec.healthcheck.unwrap();
        assert_eq!(health.test, ["CMD-SHELL", "true"]);
        assert_eq!((health.interval, health.retries), (500_000_000, 2));

        let none = spec("--no-healthcheck x").task_template.container_spec.healthcheck.unwrap();
        assert_eq!(none.test, ["NONE"]);
    }

    #[test]
    fn modes_and_their_errors() {
        let s = spec("--mode global shoal/echo");
        assert!(s.mode.global.is_some() && s.mode.replicated.is_none());
        let err = |line: &str| create_spec(&parse(line).unwrap()).unwrap_err().to_string();
        assert_eq!(
            err("--mode global --replicas 2 x"),
            "replicas can only be used with replicated or replicated-job mode"
        );
        assert_eq!(err("--mode sometimes x"), "Unknown mode: sometimes, only replicated and global supported");
        assert_eq!(err("--no-healthcheck --health-cmd true x"), "--no-healthcheck conflicts with --health-* options");
        assert_eq!(err("--restart-condition always x"), r#"invalid RestartCondition: "always""#);
        assert_eq!(err("--endpoint-mode nat x"), r#"invalid resolution mode: "nat""#);
    }

    #[test]
    fn bad_values_fail_at_parse_time() {
        let e = parse("--replicas -1 x").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains(r#"strconv.ParseUint: parsing "-1": invalid syntax"#), "{e}");
        let e = parse("--update-delay 5x x").unwrap_err();
        assert!(e.to_string().contains(r#"time: unknown unit "x" in duration "5x""#), "{e}");
        let e = parse("--health-interval -1s x").unwrap_err();
        assert!(e.to_string().contains("duration cannot be negative"), "{e}");
        let e = parse("-p published=80 x").unwrap_err();
        assert!(e.to_string().contains("missing mandatory field 'target'"), "{e}");
    }

    #[test]
    fn networks_take_short_and_long_forms() {
        let s = spec("--network web-net --network name=appnet,alias=api,driver-opt=mtu=1400 shoal/echo");
        let networks = &s.task_template.networks;
        assert_eq!(networks.len(), 2);
        assert_eq!((networks[0].target.as_str(), networks[0].aliases.as_slice()), ("appnet", &["api".to_string()][..]));
        assert_eq!(networks[0].driver_opts["mtu"], "1400");
        assert_eq!(networks[1], NetworkAttachmentConfig { target: "web-net".into(), ..Default::default() });
        let body = serde_json::to_value(&s).unwrap();
        assert_eq!(
            body["TaskTemplate"]["Networks"],
            serde_json::json!([{"Target": "appnet", "Aliases": ["api"], "DriverOpts": {"mtu": "1400"}}, {"Target": "web-net"}])
        );
        let e = parse("--network name=x,color=red shoal/echo").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("invalid field key color"), "{e}");
    }

    #[test]
    fn images_get_latest_like_the_go_client() {
        assert_eq!(image_with_tag("shoal/echo"), "shoal/echo:latest");
        assert_eq!(image_with_tag("shoal/echo:2"), "shoal/echo:2");
        assert_eq!(image_with_tag("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(image_with_tag("app@sha256:abc"), "app@sha256:abc");
        assert_eq!(image_with_tag("docker.io/library/nginx"), "nginx:latest");
    }
}
