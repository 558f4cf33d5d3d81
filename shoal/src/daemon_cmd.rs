//! `shoal daemon`: starts the node's control plane and serves the Engine API on every `-H`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use control::api::MeshApi;
use control::daemon::{Daemon, DaemonConfig};
use control::{LogsApi, NetworkApi, ServiceApi, SwarmApi};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::api::{self, EngineFacts};

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/shoal";
pub const DEFAULT_HOST: &str = "unix:///run/shoal/shoal.sock";

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Root directory of persistent Shoal state
    #[arg(long = "data-root", value_name = "DIR", default_value = DEFAULT_DATA_ROOT)]
    pub data_root: PathBuf,
    /// Daemon socket(s) to listen on (unix:///path or tcp://ip:port)
    #[arg(short = 'H', long = "host", value_name = "HOST", default_value = DEFAULT_HOST)]
    pub hosts: Vec<String>,
    /// Set the logging level ("debug"|"info"|"warn"|"error"), or a tracing filter
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// DNS server the tasks' embedded resolver forwards to (repeatable; default: the host's resolv.conf)
    #[arg(long = "dns-upstream", value_name = "IP")]
    pub dns_upstreams: Vec<std::net::IpAddr>,
    /// A mounted bpf filesystem for the routing mesh's pins (default: /sys/fs/bpf)
    #[arg(long = "bpffs", value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// cgroup2 group (path in the hierarchy) whose processes reach published ports on this node's own address and on localhost (default: /, every process)
    #[arg(long = "host-cgroup", value_name = "PATH")]
    pub host_cgroup: Option<PathBuf>,
}

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl ListenAddr {
    pub fn parse(spec: &str) -> anyhow::Result<ListenAddr> {
        if let Some(path) = spec.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("invalid socket address {spec:?}: empty path");
            }
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        } else if let Some(addr) = spec.strip_prefix("tcp://") {
            if addr.is_empty() || !addr.contains(':') {
                bail!("invalid tcp address {spec:?}: expected tcp://host:port");
            }
            Ok(ListenAddr::Tcp(addr.trim_end_matches('/').to_string()))
        } else {
            bail!("invalid host {spec:?}: expected unix:///path or tcp://host:port")
        }
    }
}

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level)?;
    let listen: Vec<ListenAddr> = args.hosts.iter().map(|h| ListenAddr::parse(h)).collect::<Result<_, _>>()?;

    let config = DaemonConfig {
        data_root: args.data_root.clone(),
        dns_upstreams: args.dns_upstreams.clone(),
        bpffs: args.bpffs.clone(),
        host_cgroup: args.host_cgroup.clone(),
    };
    let daemon = Daemon::start(config)
        .await
        .with_context(|| format!("failed to start the control plane in {}", args.data_root.display()))?;
    let engine = EngineFacts {
        host: mesh_agent::host::describe(),
        engine_id: engine_id(&args.data_root)?,
        data_root: args.data_root.clone(),
    };
    let api: Arc<dyn SwarmApi> = daemon.clone();
    let services: Arc<dyn ServiceApi> = daemon.clone();
    let logs: Arc<dyn LogsApi> = daemon.clone();
    let networks: Arc<dyn NetworkApi> = daemon.clone();
    let mesh: Arc<dyn MeshApi> = daemon.clone();
    let router = api::router(api, services, logs, networks, mesh, engine);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for addr in &listen {
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        match addr {
            ListenAddr::Unix(path) => {
                let listener = bind_unix(path)?;
                sockets.push(path.clone());
                tracing::info!(socket = %path.display(), "API listening");
                servers.spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await });
            }
            ListenAddr::Tcp(hostport) => {
                let listener = tokio::net::TcpListener::bind(hostport)
                    .await
                    .with_context(|| format!("cannot listen on tcp://{hostport}"))?;
                tracing::warn!(addr = %hostport, "API listening on TCP without TLS: anyone who can reach it controls this node");
                servers.spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await });
            }
        }
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_root = %args.data_root.display(), "daemon has completed initialization");

    tokio::select! {
        signal = wait_for_signal() => {
            tracing::info!(signal = signal?, "shutting down");
        }
        Some(result) = servers.join_next() => {
            // A server only ends on its own when it failed.
            let _ = stop_tx.send(true);
            cleanup(&sockets);
            result.context("API server task failed")?.context("API server failed")?;
            bail!("API server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    while let Some(result) = servers.join_next().await {
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "API server ended with an error");
        }
    }
    cleanup(&sockets);
    // Close Raft and its store cleanly; a wedged peer must not keep the process alive.
    if tokio::time::timeout(std::time::Duration::from_secs(3), daemon.shutdown()).await.is_err() {
        tracing::warn!("the control plane did not stop within 3s");
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// A plain level applies to Shoal's own crates (dependencies such as openraft stay at `warn`);
/// anything else is taken as a full tracing filter (`info,openraft=debug`).
fn log_filter(level: &str) -> String {
    match level.to_ascii_lowercase().as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error") => {
            format!("warn,shoal={l},control={l},mesh_agent={l},dns={l}")
        }
        "fatal" | "panic" => "error".into(),
        _ => level.to_string(),
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(log_filter(level)).with_context(|| format!("invalid log level {level:?}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init().ok();
    Ok(())
}

/// Binds a unix socket, creating its directory and replacing a stale socket file left by a
/// daemon that died; refuses to steal the socket of a daemon that still answers.
fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on unix://{}", path.display()))
}

fn cleanup(sockets: &[PathBuf]) {
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// This engine's identity for `/info` (`ID`), kept in `<data-root>/engine-id` across restarts.
fn engine_id(data_root: &Path) -> anyhow::Result<String> {
    let file = data_root.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(data_root).with_context(|| format!("cannot create {}", data_root.display()))?;
    let id = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("cannot read /proc/sys/kernel/random/uuid")?
        .trim()
        .to_string();
    std::fs::write(&file, format!("{id}\n")).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            ListenAddr::parse("unix:///run/shoal/shoal.sock").unwrap(),
            ListenAddr::Unix("/run/shoal/shoal.sock".into())
        );
        assert_eq!(ListenAddr::parse("tcp://127.0.0.1:2375").unwrap(), ListenAddr::Tcp("127.0.0.1:2375".into()));
        assert!(ListenAddr::parse("unix://").is_err());
        assert!(ListenAddr::parse("tcp://nohost").is_err());
        assert!(ListenAddr::parse("/run/shoal.sock").is_err());
    }

    #[test]
    fn log_levels_keep_dependencies_quiet() {
        assert_eq!(log_filter("debug"), "warn,shoal=debug,control=debug,mesh_agent=debug,dns=debug");
        assert_eq!(log_filter("info,openraft=debug"), "info,openraft=debug");
        assert!(EnvFilter::try_new(log_filter("INFO")).is_ok());
    }

    #[test]
    fn engine_id_is_stable() {
        let dir = std::env::temp_dir().join(format!("shoal-engine-id-{}", std::process::id()));
        let first = engine_id(&dir).unwrap();
        assert_eq!(engine_id(&dir).unwrap(), first);
        assert_eq!(first.len(), 36);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one() {
        let dir = std::env::temp_dir().join(format!("shoal-sock-{}", std::process::id()));
        let path = dir.join("sub/s.sock");
        let live = bind_unix(&path).unwrap();
        assert!(bind_unix(&path).unwrap_err().to_string().contains("already listening"));
        drop(live);
        // The file stays behind after the listener is gone: a stale socket.
        assert!(path.exists());
        bind_unix(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
