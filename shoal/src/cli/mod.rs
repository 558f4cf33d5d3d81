//! The `shoal` command line: docker's `swarm` and `node` commands (same flags, output and
//! messages, with `shoal` in place of `docker`), plus `info` and `version`.
//!
//! Commands talk to a daemon through [`crate::client::Client`]; everything they print is built
//! by pure functions in [`format`] and [`pretty`] so it can be tested without a daemon.

mod duration;
mod format;
mod node;
mod pretty;
mod swarm;
mod template;

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
    /// Display system-wide information
    Info,
    /// Show the Shoal version information
    Version,
}

/// Runs a client command against the daemon at `host`.
pub async fn run(host: &str, command: Command) -> anyhow::Result<()> {
    let client = Client::new(host)?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Daemon(_) => unreachable!("main runs the daemon"),
        Command::Swarm(cmd) => swarm::run(&client, cmd, &mut out).await,
        Command::Node(cmd) => node::run(&client, cmd, &mut out).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
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
