//! The `shoal` command line: docker's `swarm`, `node`, `service` and `network` commands (same flags,
//! output and messages, with `shoal` in place of `docker`), plus `info`, `version` and Shoal's own
//! `mesh` (the node's load-balancer table).
//!
//! Commands talk to a daemon through [`crate::client::Client`]; everything they print is built
//! by pure functions in [`format`] and [`pretty`] so it can be tested without a daemon.

pub(crate) mod duration;
mod format;
mod mesh;
mod network;
mod node;
mod pretty;
mod service;
mod swarm;
mod template;
mod units;

#[cfg(test)]
mod fixtures;

use std::io::Write;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::client::Client;
use crate::daemon_cmd::{DaemonArgs, DEFAULT_HOST};

#[derive(Parser, Debug)]
#[command(name = "shoal", version, about = "A Docker Swarm compatible container orchestrator")]
#[command(propagate_version = true)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", env = "SHOAL_HOST", default_value = DEFAULT_HOST, value_name = "HOST")]
    pub host: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Shoal daemon (API server and swarm node)
    Daemon(DaemonArgs),
    /// Manage Swarm
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
    /// Manage Swarm nodes
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Manage Swarm services
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Show this node's load balancer: services, backends and counters
    Mesh(mesh::MeshArgs),
    /// Display system-wide information
    Info,
    /// Show the Shoal version information
    Version,
}

/// docker's `rm` of several objects: each name printed once removed, the errors of the others
/// reported together at the end.
pub(crate) async fn remove_each(
    client: &Client,
    names: &[String],
    path: impl Fn(&str) -> String,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in names {
        match client.delete(&path(name)).await {
            Ok(()) => writeln!(out, "{name}")?,
            Err(e) => errors.push(e.to_string()),
        }
    }
    format::joined(errors)
}

/// Runs a client command against the daemon at `host`.
pub async fn run(host: &str, command: Command) -> anyhow::Result<()> {
    let client = Client::new(host)?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Daemon(_) => unreachable!("main runs the daemon"),
        Command::Swarm(cmd) => swarm::run(&client, cmd, &mut out).await,
        Command::Node(cmd) => node::run(&client, cmd, &mut out).await,
        Command::Service(cmd) => service::run(&client, cmd, &mut out).await,
        Command::Network(cmd) => network::run(&client, cmd, &mut out).await,
        Command::Mesh(args) => mesh::run(&client, args, &mut out).await,
        Command::Info => {
            let info: Value = client.get("/info").await?;
            out.write_all(pretty::info_text(&info).as_bytes())?;
            Ok(())
        }
        Command::Version => {
            let server = client.get::<Value>("/version").await;
            out.write_all(pretty::version_text(server.as_ref().ok()).as_bytes())?;
            out.flush()?;
            server.map(drop).map_err(Into::into)
        }
    }
}

/// docker's wording for a flag value it refuses (pflag's message as docker 28's
/// `FlagErrorFunc` shows it):
///
/// ```text
/// invalid argument "-1" for "--replicas" flag: strconv.ParseUint: parsing "-1": invalid syntax
///
/// Usage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]
///
/// Run 'shoal service create --help' for more information
/// ```
///
/// `None` for other command-line errors, which keep clap's text.
pub fn flag_error_text(e: &clap::Error, argv: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) =
        (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue))
    else {
        return None;
    };
    let reason = std::error::Error::source(e)?.to_string();
    // The subcommand the arguments name, for its flags, usage and path.
    let mut cmd = Cli::command();
    cmd.build();
    let mut path = vec![cmd.get_name().to_string()];
    for word in argv.iter().skip(1) {
        let next = cmd.get_subcommands().find(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word));
        if let Some(sub) = next.cloned() {
            path.push(sub.get_name().to_string());
            cmd = sub;
        }
    }
    let shown = arg.split_whitespace().next()?;
    let flag = match shown.strip_prefix("--") {
        Some(long) => cmd.get_arguments().find(|a| a.get_long() == Some(long)),
        None => shown
            .strip_prefix('-')
            .and_then(|s| s.chars().next())
            .and_then(|c| cmd.get_arguments().find(|a| a.get_short() == Some(c))),
    };
    let name = match flag.map(|a| (a.get_short(), a.get_long())) {
        Some((Some(s), Some(l))) => format!("-{s}, --{l}"),
        Some((None, Some(l))) => format!("--{l}"),
        _ => shown.to_string(),
    };
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim().strip_prefix("Usage:").unwrap_or(&usage).trim();
    let path = path.join(" ");
    Some(format!(
        "invalid argument {value:?} for {name:?} flag: {reason}\n\nUsage:  {usage}\n\nRun '{path} --help' for more information"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_flag_values_read_like_docker() {
        let argv: Vec<String> = ["shoal", "-H", "unix:///s", "service", "create", "--replicas", "-1", "shoal/echo"]
            .map(String::from)
            .into();
        let e = Cli::try_parse_from(&argv).unwrap_err();
        assert_eq!(
            flag_error_text(&e, &argv).unwrap(),
            "invalid argument \"-1\" for \"--replicas\" flag: strconv.ParseUint: parsing \"-1\": invalid syntax\n\n\
             Usage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n\
             Run 'shoal service create --help' for more information"
        );
        let argv: Vec<String> = ["shoal", "service", "update", "-p", "x", "web"].map(String::from).into();
        assert!(Cli::try_parse_from(&argv).is_err());
        let argv: Vec<String> = ["shoal", "service", "create", "-p", "target=x", "img"].map(String::from).into();
        let e = Cli::try_parse_from(&argv).unwrap_err();
        assert_eq!(
            flag_error_text(&e, &argv).unwrap(),
            "invalid argument \"target=x\" for \"-p, --publish\" flag: invalid target port (x): value must be an \
             integer: invalid syntax\n\nUsage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n\
             Run 'shoal service create --help' for more information"
        );
        let e = Cli::try_parse_from(["shoal", "service", "nope"]).unwrap_err();
        assert_eq!(flag_error_text(&e, &[]), None);
    }

    #[test]
    fn create_takes_everything_after_the_image_as_the_command() {
        let cli =
            Cli::try_parse_from(["shoal", "service", "create", "-d", "--name", "a", "shoal/echo", "--http", "-d"])
                .unwrap();
        let Command::Service(service::ServiceCommand::Create(args)) = cli.command else { panic!("create") };
        assert!(args.flags.detach);
        assert_eq!(args.image_and_command, ["shoal/echo", "--http", "-d"]);
    }

    #[test]
    fn host_flag_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["shoal", "-H", "unix:///tmp/s.sock", "node", "ls", "-q"]).unwrap();
        assert_eq!(cli.host, "unix:///tmp/s.sock");
        assert!(matches!(cli.command, Command::Node(_)));
        let cli =
            Cli::try_parse_from(["shoal", "daemon", "-H", "unix:///a.sock", "-H", "tcp://127.0.0.1:2375"]).unwrap();
        let Command::Daemon(args) = cli.command else { panic!("daemon") };
        assert_eq!(args.hosts, ["unix:///a.sock", "tcp://127.0.0.1:2375"]);
        let cli = Cli::try_parse_from(["shoal", "daemon"]).unwrap();
        let Command::Daemon(args) = cli.command else { panic!("daemon") };
        assert_eq!(args.hosts, [DEFAULT_HOST]);
        assert_eq!(args.data_root, std::path::PathBuf::from("/var/lib/shoal"));
    }
}
