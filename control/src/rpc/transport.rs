//! gRPC over mutual TLS without tonic's built-in TLS: we drive rustls ourselves so that a
//! node's certificate can change at run time (promotion, demotion, renewal) and so that a joiner
//! can fetch the root CA before it trusts it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{server::TlsStream as ServerTlsStream, TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint};

use crate::ca::NodeIdentity;
use crate::tls;

/// What the server knows about the caller of an RPC (in the request's extensions).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// `None` for a client that presented no certificate.
    pub identity: Option<NodeIdentity>,
}

/// A server-side TLS connection that tells tonic who is on the other end.
pub struct TlsConn {
    stream: ServerTlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently (a slow or hostile client
/// cannot hold up the accept loop); yields only finished handshakes.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<TlsConn, std::io::Error>>(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            // Stop (and release the port) as soon as the server stops reading.
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept on the manager port failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                let stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake from {remote} refused: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let identity = stream.get_ref().1.peer_certificates().and_then(tls::peer_identity);
                let info = PeerInfo { remote_addr: Some(remote), identity };
                let _ = tx.send(Ok(TlsConn { stream, info })).await;
            });
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A lazily connecting channel to `addr` (`ip:port`) over TLS with `config`.
///
/// `server_name` is what the server certificate must carry ([`tls::MANAGER_SERVER_NAME`] for
/// managers); with [`tls::fetch_ca_client_config`] it is not checked.
pub fn channel(addr: &str, config: Arc<rustls::ClientConfig>, server_name: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let connector = TlsConnector::from(config);
    let addr = addr.to_string();
    let server_name = server_name.to_string();
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let addr = addr.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from(server_name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}
