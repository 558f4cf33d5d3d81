//! The 2377 listener: every service behind the permission layer, over our own TLS acceptor.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use super::acl::AuthzLayer;
use super::pb;
use super::services::Services;
use super::transport::tls_incoming;
use crate::daemon::Core;

/// Raft snapshots and large forwarded writes can exceed tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Binds `listen` and serves until the returned sender says stop.
pub async fn spawn(
    listen: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    core: Arc<Core>,
) -> anyhow::Result<watch::Sender<bool>> {
    let listener = bind(listen).await?;
    let services = Services { core };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let incoming = tls_incoming(listener, config);
    let router = tonic::transport::Server::builder()
        .layer(AuthzLayer)
        .add_service(pb::ca_server::CaServer::new(services.clone()))
        .add_service(pb::node_ca_server::NodeCaServer::new(services.clone()))
        .add_service(pb::raft_server::RaftServer::new(services.clone()).max_decoding_message_size(MAX_MESSAGE))
        .add_service(pb::raft_membership_server::RaftMembershipServer::new(services.clone()))
        .add_service(pb::control_server::ControlServer::new(services.clone()).max_decoding_message_size(MAX_MESSAGE))
        .add_service(pb::dispatcher_server::DispatcherServer::new(services.clone()))
        .add_service(pb::agent_server::AgentServer::new(services));
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!("manager listener on {listen} failed: {e}");
        }
    });
    Ok(stop_tx)
}

/// Binds with SO_REUSEADDR so a restarted manager gets its port back at once; a listener being
/// replaced (new certificate) may still hold the port for a moment, so `AddrInUse` is retried.
async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match try_bind(listen) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("failed to listen on remote API address {listen}: {e}")),
        }
    }
}

fn try_bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}
