//! `shoal`: one binary that is the node daemon (`shoal daemon`, like dockerd), the
//! Docker-compatible Engine API server it runs, and the CLI that talks to it.
//!
//! Module map: [`daemon_cmd`] starts the control plane and serves [`api`] on every `-H`;
//! [`cli`] parses the command line and drives a daemon through [`client`].

// `GET /info` is one large `json!` literal.
#![recursion_limit = "256"]
#![forbid(unsafe_code)]

mod api;
mod cli;
mod client;
mod daemon_cmd;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Hidden subcommands the task runtime re-executes this binary with: they must never reach
    // clap (no help, no async runtime, single-threaded until they fork).
    match std::env::args().nth(1).as_deref() {
        Some("__task-init") => mesh_agent::runtime::task_init_main(),
        Some("__echo") => mesh_agent::echo::echo_main(std::env::args().skip(2).collect()),
        _ => {}
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let argv: Vec<String> = std::env::args().collect();
            match cli::flag_error_text(&e, &argv) {
                Some(text) => eprintln!("{text}"),
                None => {
                    let _ = e.print();
                }
            }
            // docker exits 125 on a command-line error; help and --version are not errors.
            return if e.use_stderr() { ExitCode::from(125) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Daemon(args) => daemon_cmd::run(args).await,
            command => cli::run(&cli.host, command).await,
        }
    });
    // Blocking work still running in the control plane gets a bounded grace period, so a
    // SIGTERM always ends the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(3));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Like docker: the message alone on stderr (daemon errors already read
            // "Error response from daemon: …"), exit status 1.
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
