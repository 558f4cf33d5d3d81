//! [`Resolver`]: one per node, serving every task's namespace from one table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::config::ResolverConfig;
use crate::forward::Forwarder;
use crate::handler::{Scope, Shared, TaskHandler};
use crate::records::Records;
use crate::table::Table;
use crate::{DnsError, RESOLVER_ADDR};

/// A TCP client that sends nothing for this long is disconnected, so idle or half-sent
/// connections cannot pile up.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers queued per TCP connection before the connection's reader waits for the writer.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The node's embedded DNS resolver. Cheap to clone; all clones serve from the same table.
/// Dropping the last clone stops serving every task.
#[derive(Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
    served: Arc<Mutex<HashMap<String, Served>>>,
}

/// A task being served. Dropping it (on `stop`) drops `stop`, which shuts its sockets down.
struct Served {
    scope: Scope,
    _stop: oneshot::Sender<()>,
}

impl Resolver {
    /// A resolver with an empty table that serves nothing yet.
    pub fn new(config: ResolverConfig) -> Resolver {
        Resolver {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                forwarder: Forwarder::new(&config),
                ttl: config.ttl,
                rotation: AtomicUsize::new(0),
            }),
            served: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replaces the table atomically: a query answers from the old table or the new one, never
    /// half of each.
    pub fn set_records(&self, records: Records) {
        let table = Arc::new(Table::new(&records));
        *self.shared.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// Serves a task: opens UDP and TCP 127.0.0.11:53 inside the network namespace at `netns`
    /// (e.g. `/proc/<pid>/ns/net` or `/run/netns/<name>`, whose `lo` must be up) and answers with
    /// the scope `networks` (network IDs). The sockets are opened by a short-lived thread that
    /// enters the namespace; tokio's workers never change namespace. Calling it again for a `key`
    /// already served only updates its networks.
    pub async fn serve_netns(&self, key: &str, netns: &Path, networks: Vec<String>) -> Result<(), DnsError> {
        if self.update_if_served(key, &networks) {
            return Ok(());
        }
        let path = netns.to_owned();
        let (sender, receiver) = oneshot::channel();
        std::thread::Builder::new()
            .name("dns-netns-bind".into())
            .spawn(move || {
                let _ = sender.send(bind_in_netns(&path));
            })
            .map_err(DnsError::Thread)?;
        let (udp, tcp) = receiver.await.map_err(|_| DnsError::ThreadDied)??;
        let udp = UdpSocket::from_std(udp).map_err(DnsError::Register)?;
        let tcp = TcpListener::from_std(tcp).map_err(DnsError::Register)?;
        self.serve_sockets(key, udp, tcp, networks).await
    }

    /// Changes the networks of a served task (e.g. after `service update --network-add`). Does
    /// nothing for a key not served.
    pub fn set_scope(&self, key: &str, networks: Vec<String>) {
        self.update_if_served(key, &networks);
    }

    /// Stops serving a task: its sockets close shortly after (asynchronously). Unknown keys are
    /// ignored.
    pub fn stop(&self, key: &str) {
        if self.served.lock().unwrap_or_else(|e| e.into_inner()).remove(key).is_some() {
            debug!(key, "stopped serving DNS");
        }
    }

    /// Serves a task on sockets the caller opened (tests and benchmarks: e.g. 127.0.0.1:0 in the
    /// current namespace). Idempotent per `key` like [`Resolver::serve_netns`]: a second call only
    /// updates the networks and drops the given sockets.
    pub async fn serve_sockets(
        &self,
        key: &str,
        udp: UdpSocket,
        tcp: TcpListener,
        networks: Vec<String>,
    ) -> Result<(), DnsError> {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = served.get(key) {
            *task.scope.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(networks);
            return Ok(());
        }
        let scope: Scope = Arc::new(RwLock::new(Arc::from(networks)));
        let mut server = Server::new(TaskHandler { shared: self.shared.clone(), scope: scope.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        let shutdown = server.shutdown_token().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let key_owned = key.to_owned();
        tokio::spawn(async move {
            // Either `stop` sends or the `Served` entry is dropped: both end the wait.
            let _ = stopped.await;
            shutdown.cancel();
            if let Err(error) = server.block_until_done().await {
                warn!(key = key_owned, %error, "DNS server for the task ended with an error");
            }
        });
        served.insert(key.to_owned(), Served { scope, _stop: stop });
        debug!(key, "serving DNS");
        Ok(())
    }

    fn update_if_served(&self, key: &str, networks: &[String]) -> bool {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        match served.get(key) {
            Some(task) => {
                *task.scope.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(networks);
                true
            }
            None => false,
        }
    }
}

/// Runs on a thread of its own: enters the namespace (for this thread only, which then ends) and
/// opens the sockets there. A socket stays in the namespace it was created in.
fn bind_in_netns(path: &Path) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let netns_error = |source| DnsError::Netns { path: PathBuf::from(path), source };
    let file = std::fs::File::open(path).map_err(netns_error)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| netns_error(e.into()))?;
    let addr = SocketAddr::from((RESOLVER_ADDR, 53));
    let bind_error = |protocol, source| DnsError::Bind { protocol, addr, source };
    let udp = std::net::UdpSocket::bind(addr).map_err(|e| bind_error("udp", e))?;
    let tcp = std::net::TcpListener::bind(addr).map_err(|e| bind_error("tcp", e))?;
    udp.set_nonblocking(true).map_err(|e| bind_error("udp", e))?;
    tcp.set_nonblocking(true).map_err(|e| bind_error("tcp", e))?;
    Ok((udp, tcp))
}
