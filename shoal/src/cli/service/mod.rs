//! `shoal service create|inspect|ls|ps|rm|rollback|scale|update`, after docker's
//! `cli/command/service`: same flags, columns, messages and progress display.
//!
//! Everything printed comes from pure functions ([`ls::render_service_list`],
//! [`ps::render_task_list`], [`inspect::pretty_service`], [`progress::ServiceProgress`]) so it
//! is tested without a daemon; the `run` functions only fetch and post.

pub mod create;
pub mod flags;
pub mod inspect;
pub mod logs;
pub mod ls;
pub mod networks;
pub mod ports;
pub mod progress;
pub mod ps;
pub mod update;
pub mod wait;

#[cfg(test)]
pub mod fixtures;

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::cli::format::joined;
use crate::client::{encode_component, Client};

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a new service
    Create(Box<create::CreateArgs>),
    /// Display detailed information on one or more services
    Inspect(inspect::InspectArgs),
    /// Fetch the logs of a service or task
    Logs(logs::LogsArgs),
    /// List services
    #[command(visible_alias = "list")]
    Ls(ls::LsArgs),
    /// List the tasks of one or more services
    Ps(ps::PsArgs),
    /// Remove one or more services
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(value_name = "SERVICE", required = true)]
        services: Vec<String>,
    },
    /// Revert changes to a service's configuration
    Rollback(update::RollbackArgs),
    /// Scale one or multiple replicated services
    Scale(ScaleArgs),
    /// Update a service
    Update(Box<update::UpdateArgs>),
}

#[derive(Args, Debug)]
#[command(override_usage = "shoal service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]")]
pub struct ScaleArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    #[arg(value_name = "SERVICE=REPLICAS", required = true)]
    scales: Vec<String>,
}

pub async fn run(client: &Client, cmd: ServiceCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Create(args) => create::run(client, *args, out).await,
        ServiceCommand::Inspect(args) => inspect::run(client, args, out).await,
        ServiceCommand::Logs(args) => logs::run(client, args, out).await,
        ServiceCommand::Ls(args) => ls::run(client, args, out).await,
        ServiceCommand::Ps(args) => ps::service_ps(client, args, out).await,
        ServiceCommand::Rm { services } => remove(client, &services, out).await,
        ServiceCommand::Rollback(args) => update::rollback(client, args, out).await,
        ServiceCommand::Scale(args) => scale(client, args, out).await,
        ServiceCommand::Update(args) => update::run(client, *args, out).await,
    }
}

/// docker's `runRemove`: each name printed as it goes, errors collected.
async fn remove(client: &Client, services: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    crate::cli::remove_each(client, services, |name| format!("/services/{}", encode_component(name)), out).await
}

/// docker's `scaleArgs` check, before anything is sent.
pub fn check_scale_args(scales: &[String]) -> anyhow::Result<()> {
    for arg in scales {
        if !arg.split_once('=').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()) {
            bail!(
                "invalid scale specifier '{arg}'.\nSee 'shoal service scale --help'.\n\n\
                 Usage:  shoal service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\n\
                 Scale one or multiple replicated services"
            );
        }
    }
    Ok(())
}

/// docker's `runScale`: each service updated with its new replica count and reported, then
/// each waited on unless `-d`.
async fn scale(client: &Client, args: ScaleArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_scale_args(&args.scales)?;
    let (mut errors, mut scaled) = (Vec::new(), Vec::new());
    for arg in &args.scales {
        let (name, value) = arg.split_once('=').expect("checked above");
        let replicas = match parse_replicas(value) {
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("{name}: invalid replicas value {value}: {e}"));
                continue;
            }
        };
        let result = async {
            let mut service = update::get_service(client, name).await?;
            match service.spec.mode.replicated.as_mut() {
                Some(r) => r.replicas = Some(replicas),
                None => bail!("scale can only be used with replicated or replicated-job mode"),
            }
            update::post_update(client, &service, &service.spec, false).await
        };
        match result.await {
            Ok(()) => {
                writeln!(out, "{name} scaled to {replicas}")?;
                scaled.push(name.to_string());
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    out.flush()?;
    if !args.detach {
        for name in &scaled {
            if let Err(e) = wait::wait_on_service(client, name, false).await {
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    joined(errors)
}

/// `strconv.ParseUint(s, 10, 64)` (no base prefixes here).
fn parse_replicas(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    s.parse().map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_arguments_are_checked_like_docker() {
        assert!(check_scale_args(&["web=3".into(), "api=0".into()]).is_ok());
        let e = check_scale_args(&["web".into()]).unwrap_err().to_string();
        assert!(e.starts_with("invalid scale specifier 'web'.\nSee 'shoal service scale --help'."), "{e}");
        assert_eq!(parse_replicas("010"), Ok(10));
        assert_eq!(parse_replicas("0"), Ok(0));
        assert_eq!(parse_replicas("-1"), Err(r#"strconv.ParseUint: parsing "-1": invalid syntax"#.into()));
    }
}
