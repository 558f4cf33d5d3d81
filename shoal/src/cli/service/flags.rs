//! The flags `service create` and `service update` share (docker's `addServiceFlags`), and how
//! each turns into a piece of the `ServiceSpec`.
//!
//! Every value flag is an `Option` so "not given" differs from "given the default", which is
//! what docker's `flags.Changed` checks decide. Values parse with Go's messages, so a bad one
//! reads `invalid argument "-1" for "--replicas" flag: strconv.ParseUint: …` like docker's.

use anyhow::bail;
use clap::Args;
use control::objects::service::{
    EndpointMode, FailureAction, HealthConfig, ResourceLimits, RestartCondition, RestartPolicy, UpdateConfig,
    UpdateOrder,
};

use super::super::duration::parse_go_duration;
use super::super::units::{parse_cpus, parse_float, parse_int, parse_uint, ram_in_bytes};
use crate::api::default_update_config;

const SECOND: i64 = 1_000_000_000;

/// A duration that may not be negative (docker's `PositiveDurationOpt`).
pub fn positive_duration(s: &str) -> Result<i64, String> {
    match parse_go_duration(s)? {
        d if d < 0 => Err("duration cannot be negative".into()),
        d => Ok(d),
    }
}

#[derive(Args, Debug, Default, Clone, PartialEq)]
pub struct ServiceFlags {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub spec: SpecFlags,
}

/// The flags that change the spec (everything but `-d` and `-q`).
#[derive(Args, Debug, Default, Clone, PartialEq)]
pub struct SpecFlags {
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "string")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user", value_name = "string")]
    pub user: Option<String>,
    /// Container hostname
    #[arg(long = "hostname", value_name = "string")]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long = "entrypoint", value_name = "command", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Limit CPUs
    #[arg(long = "limit-cpu", value_name = "decimal", value_parser = parse_cpus, allow_hyphen_values = true)]
    pub limit_cpu: Option<i64>,
    /// Limit Memory
    #[arg(long = "limit-memory", value_name = "bytes", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub limit_memory: Option<i64>,
    /// Limit maximum number of processes (default 0 = unlimited)
    #[arg(long = "limit-pids", value_name = "int", value_parser = parse_int, allow_hyphen_values = true)]
    pub limit_pids: Option<i64>,
    /// Reserve CPUs
    #[arg(long = "reserve-cpu", value_name = "decimal", value_parser = parse_cpus, allow_hyphen_values = true)]
    pub reserve_cpu: Option<i64>,
    /// Reserve Memory
    #[arg(long = "reserve-memory", value_name = "bytes", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub reserve_memory: Option<i64>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)
    #[arg(long = "stop-grace-period", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub stop_grace_period: Option<i64>,
    /// Number of tasks
    #[arg(long = "replicas", value_name = "uint", value_parser = parse_uint, allow_hyphen_values = true)]
    pub replicas: Option<u64>,
    /// Maximum number of tasks per node (default 0 = unlimited)
    #[arg(long = "replicas-max-per-node", value_name = "uint", value_parser = parse_uint, allow_hyphen_values = true)]
    pub max_replicas: Option<u64>,
    /// Restart when condition is met ("none", "on-failure", "any") (default "any")
    #[arg(long = "restart-condition", value_name = "string")]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "restart-delay", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub restart_delay: Option<i64>,
    /// Maximum number of restarts before giving up
    #[arg(long = "restart-max-attempts", value_name = "uint", value_parser = parse_uint, allow_hyphen_values = true)]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long = "restart-window", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub restart_window: Option<i64>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once) (default 1)
    #[arg(long = "update-parallelism", value_name = "uint", value_parser = parse_uint, allow_hyphen_values = true)]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h) (default 0s)
    #[arg(long = "update-delay", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub update_delay: Option<i64>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "update-monitor", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub update_monitor: Option<i64>,
    /// Action on update failure ("pause", "continue", "rollback") (default "pause")
    #[arg(long = "update-failure-action", value_name = "string")]
    pub update_failure_action: Option<String>,
    /// Failure rate to tolerate during an update (default 0)
    #[arg(long = "update-max-failure-ratio", value_name = "float", value_parser = parse_float, allow_hyphen_values = true)]
    pub update_max_failure_ratio: Option<f64>,
    /// Update order ("start-first", "stop-first") (default "stop-first")
    #[arg(long = "update-order", value_name = "string")]
    pub update_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once) (default 1)
    #[arg(long = "rollback-parallelism", value_name = "uint", value_parser = parse_uint, allow_hyphen_values = true)]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s)
    #[arg(long = "rollback-delay", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub rollback_delay: Option<i64>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "rollback-monitor", value_name = "duration", value_parser = parse_go_duration, allow_hyphen_values = true)]
    pub rollback_monitor: Option<i64>,
    /// Action on rollback failure ("pause", "continue") (default "pause")
    #[arg(long = "rollback-failure-action", value_name = "string")]
    pub rollback_failure_action: Option<String>,
    /// Failure rate to tolerate during a rollback (default 0)
    #[arg(long = "rollback-max-failure-ratio", value_name = "float", value_parser = parse_float, allow_hyphen_values = true)]
    pub rollback_max_failure_ratio: Option<f64>,
    /// Rollback order ("start-first", "stop-first") (default "stop-first")
    #[arg(long = "rollback-order", value_name = "string")]
    pub rollback_order: Option<String>,
    /// Endpoint mode (vip or dnsrr) (default "vip")
    #[arg(long = "endpoint-mode", value_name = "string")]
    pub endpoint_mode: Option<String>,
    /// Send registry authentication details to swarm agents (accepted; Shoal uses no registry)
    #[arg(long = "with-registry-auth")]
    pub with_registry_auth: bool,
    /// Do not query the registry to resolve image digest and supported platforms (Shoal never does)
    #[arg(long = "no-resolve-image")]
    pub no_resolve_image: bool,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval", value_name = "duration", value_parser = positive_duration, allow_hyphen_values = true)]
    pub health_interval: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout", value_name = "duration", value_parser = positive_duration, allow_hyphen_values = true)]
    pub health_timeout: Option<i64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "int", value_parser = parse_int, allow_hyphen_values = true)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)
    #[arg(long = "health-start-period", value_name = "duration", value_parser = positive_duration, allow_hyphen_values = true)]
    pub health_start_period: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
}

/// The six `--update-*` or `--rollback-*` flags.
pub struct UpdateFlags<'a> {
    parallelism: Option<u64>,
    delay: Option<i64>,
    monitor: Option<i64>,
    failure_action: Option<&'a str>,
    max_failure_ratio: Option<f64>,
    order: Option<&'a str>,
}

impl UpdateFlags<'_> {
    fn any(&self) -> bool {
        self.parallelism.is_some()
            || self.delay.is_some()
            || self.monitor.is_some()
            || self.failure_action.is_some()
            || self.max_failure_ratio.is_some()
            || self.order.is_some()
    }

    /// docker: nothing changes unless a flag was given; then swarmkit's defaults fill a missing
    /// config and the given flags override it.
    pub fn merge_into(&self, config: &mut Option<UpdateConfig>) -> anyhow::Result<()> {
        if !self.any() {
            return Ok(());
        }
        let config = config.get_or_insert_with(default_update_config);
        if let Some(v) = self.parallelism {
            config.parallelism = v;
        }
        if let Some(v) = self.delay {
            config.delay = v;
        }
        if let Some(v) = self.monitor {
            config.monitor = v;
        }
        if let Some(v) = self.failure_action {
            config.failure_action = match v {
                "" | "pause" => FailureAction::Pause,
                "continue" => FailureAction::Continue,
                "rollback" => FailureAction::Rollback,
                // dockerd's wording, typo included.
                other => bail!("unrecongized update failure action {other}"),
            };
        }
        if let Some(v) = self.max_failure_ratio {
            config.max_failure_ratio = v;
        }
        if let Some(v) = self.order {
            config.order = match v {
                "" | "stop-first" => UpdateOrder::StopFirst,
                "start-first" => UpdateOrder::StartFirst,
                other => bail!("unrecongized update order {other}"),
            };
        }
        Ok(())
    }
}

impl SpecFlags {
    pub fn update_flags(&self) -> UpdateFlags<'_> {
        UpdateFlags {
            parallelism: self.update_parallelism,
            delay: self.update_delay,
            monitor: self.update_monitor,
            failure_action: self.update_failure_action.as_deref(),
            max_failure_ratio: self.update_max_failure_ratio,
            order: self.update_order.as_deref(),
        }
    }

    pub fn rollback_flags(&self) -> UpdateFlags<'_> {
        UpdateFlags {
            parallelism: self.rollback_parallelism,
            delay: self.rollback_delay,
            monitor: self.rollback_monitor,
            failure_action: self.rollback_failure_action.as_deref(),
            max_failure_ratio: self.rollback_max_failure_ratio,
            order: self.rollback_order.as_deref(),
        }
    }

    /// docker's `ToRestartPolicy` / the restart part of `updateService`: swarmkit's defaults
    /// (any, 5s, unlimited) under the flags given, if any was.
    pub fn merge_restart_policy(&self, policy: &mut Option<RestartPolicy>) -> anyhow::Result<()> {
        if self.restart_condition.is_none()
            && self.restart_delay.is_none()
            && self.restart_max_attempts.is_none()
            && self.restart_window.is_none()
        {
            return Ok(());
        }
        let policy = policy.get_or_insert_with(|| RestartPolicy {
            condition: RestartCondition::Any,
            delay: Some(5 * SECOND),
            max_attempts: 0,
            window: 0,
        });
        if let Some(c) = &self.restart_condition {
            policy.condition = match c.as_str() {
                "none" => RestartCondition::None,
                "on-failure" => RestartCondition::OnFailure,
                "any" => RestartCondition::Any,
                other => bail!("invalid RestartCondition: {other:?}"),
            };
        }
        if let Some(d) = self.restart_delay {
            policy.delay = Some(d);
        }
        if let Some(n) = self.restart_max_attempts {
            policy.max_attempts = n;
        }
        if let Some(w) = self.restart_window {
            policy.window = w;
        }
        Ok(())
    }

    /// Whether any `--health-*` flag was given (not `--no-healthcheck`).
    fn health_settings(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// docker's `toHealthConfig` (create): `NONE`, a fresh config, or nothing. An empty
    /// command and zero retries count as not given, as in docker.
    pub fn new_health_config(&self) -> anyhow::Result<Option<HealthConfig>> {
        let settings = self.health_cmd.as_deref().is_some_and(|c| !c.is_empty())
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some()
            || self.health_retries.is_some_and(|r| r != 0);
        if self.no_healthcheck {
            if settings {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..Default::default() }));
        }
        if !settings {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            test: match self.health_cmd.as_deref() {
                Some(cmd) if !cmd.is_empty() => vec!["CMD-SHELL".into(), cmd.into()],
                _ => vec![],
            },
            interval: self.health_interval.unwrap_or(0),
            timeout: self.health_timeout.unwrap_or(0),
            retries: self.health_retries.unwrap_or(0),
            start_period: self.health_start_period.unwrap_or(0),
        }))
    }

    /// docker's `updateHealthcheck` (update): edits the existing config in place.
    pub fn merge_health_config(&self, health: &mut Option<HealthConfig>) -> anyhow::Result<()> {
        if !self.no_healthcheck && !self.health_settings() {
            return Ok(());
        }
        if self.no_healthcheck {
            if self.health_settings() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            *health = Some(HealthConfig { test: vec!["NONE".into()], ..Default::default() });
            return Ok(());
        }
        let h = health.get_or_insert_with(HealthConfig::default);
        if h.test.first().map(String::as_str) == Some("NONE") {
            h.test.clear();
        }
        if let Some(v) = self.health_interval {
            h.interval = v;
        }
        if let Some(v) = self.health_timeout {
            h.timeout = v;
        }
        if let Some(v) = self.health_start_period {
            h.start_period = v;
        }
        if let Some(v) = self.health_retries {
            h.retries = v;
        }
        match self.health_cmd.as_deref() {
            Some("") => h.test.clear(),
            Some(cmd) => h.test = vec!["CMD-SHELL".into(), cmd.into()],
            None => {}
        }
        Ok(())
    }

    /// `--limit-*` applied over `limits`.
    pub fn merge_limits(&self, limits: &mut ResourceLimits) {
        if let Some(v) = self.limit_cpu {
            limits.nano_cpus = v;
        }
        if let Some(v) = self.limit_memory {
            limits.memory_bytes = v;
        }
        if let Some(v) = self.limit_pids {
            limits.pids = v;
        }
    }

    /// `--reserve-*` applied over `reservations`.
    pub fn merge_reservations(&self, reservations: &mut ResourceLimits) {
        if let Some(v) = self.reserve_cpu {
            reservations.nano_cpus = v;
        }
        if let Some(v) = self.reserve_memory {
            reservations.memory_bytes = v;
        }
    }

    pub fn limits_given(&self) -> bool {
        self.limit_cpu.is_some() || self.limit_memory.is_some() || self.limit_pids.is_some()
    }

    pub fn reservations_given(&self) -> bool {
        self.reserve_cpu.is_some() || self.reserve_memory.is_some()
    }
}

/// dockerd's check of `EndpointSpec.Mode`.
pub fn endpoint_mode(mode: &str) -> anyhow::Result<EndpointMode> {
    match mode.to_ascii_lowercase().as_str() {
        "" | "vip" => Ok(EndpointMode::Vip),
        "dnsrr" => Ok(EndpointMode::Dnsrr),
        _ => bail!("invalid resolution mode: {mode:?}"),
    }
}

/// `--label k=v` / `--env K=V` entries as docker validates them.
pub fn label(value: &str) -> Result<String, String> {
    let key = value.split_once('=').map_or(value, |(k, _)| k).trim_start();
    if key.is_empty() {
        return Err(format!("invalid label '{value}': empty name"));
    }
    if key.contains(char::is_whitespace) {
        return Err(format!("label '{key}' contains whitespaces"));
    }
    Ok(value.to_string())
}

/// docker's `ValidateEnv`: `KEY=value`, or `KEY` taking its value from this environment.
pub fn env(value: &str) -> Result<String, String> {
    let (key, has_value) = match value.split_once('=') {
        Some((k, _)) => (k, true),
        None => (value, false),
    };
    if key.is_empty() {
        return Err(format!("invalid environment variable: {value}"));
    }
    if !has_value {
        if let Ok(v) = std::env::var(key) {
            return Ok(format!("{key}={v}"));
        }
    }
    Ok(value.to_string())
}
