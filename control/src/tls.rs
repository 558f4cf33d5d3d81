//! rustls configurations for manager traffic on 2377/tcp.
//!
//! Servers (managers) present their node certificate and accept clients with or without one;
//! a client certificate, when present, must chain to the root CA. Anonymous clients get a TLS
//! session but no identity, and the RPC layer lets them reach only the CA-fetch and join calls.
//! Clients verify every manager against the root CA under the single server name
//! [`MANAGER_SERVER_NAME`], which only manager certificates carry as a SAN. All configs use the
//! ring provider explicitly so aws-lc never enters the build.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ca::{identity_from_cert, NodeIdentity};

/// The name clients verify managers under: a DNS SAN of every manager certificate.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";

const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the {what} is not valid PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the root CA PEM holds no certificate")]
    NoRootCertificate,
    #[error("the root CA certificate was rejected: {0}")]
    RootCertificate(#[source] rustls::Error),
    #[error("the client certificate verifier could not be built: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the TLS configuration was rejected: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(root_ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    // Every certificate in the PEM is trusted, so a bundle can carry old and new roots
    // during a CA rotation.
    for cert in CertificateDer::pem_slice_iter(root_ca_pem.as_bytes()) {
        let cert = cert.map_err(|source| TlsError::Pem { what: "root CA certificate", source })?;
        store.add(cert).map_err(TlsError::RootCertificate)?;
    }
    if store.is_empty() {
        return Err(TlsError::NoRootCertificate);
    }
    Ok(Arc::new(store))
}

fn cert_chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what: "node certificate", source })
}

fn private_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|source| TlsError::Pem { what: "node private key", source })
}

/// A manager's server config: presents `cert_pem`/`key_pem`, takes optional client
/// certificates that must chain to `root_ca_pem`, speaks h2.
pub fn server_config(root_ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(root_ca_pem)?, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain(cert_pem)?, private_key(key_pem)?)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A node's client config: trusts only `root_ca_pem` and presents `identity` (certificate
/// and key PEM) when given. Connect with server name [`MANAGER_SERVER_NAME`].
pub fn client_config(root_ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(root_ca_pem)?);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(cert_chain(cert_pem)?, private_key(key_pem)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client config that accepts any server certificate chain.
///
/// Used only to download the root CA from a manager when joining: the joining node hashes the
/// certificate it receives (SHA-256) and compares it with the digest in its join token before
/// it sends anything secret — the token itself included — over a verified connection. This is
/// exactly swarmkit's scheme. The handshake is still a real one: the server must prove it
/// holds the key of the certificate it presents, checked with the ring provider's algorithms.
pub fn fetch_ca_client_config() -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyServerCert { algorithms: provider.signature_verification_algorithms });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

/// The identity in the leaf of a verified peer chain; `None` for anonymous peers or a leaf
/// that is not a node certificate.
pub fn peer_identity(peer_certs: &[CertificateDer<'_>]) -> Option<NodeIdentity> {
    identity_from_cert(peer_certs.first()?).ok()
}

#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{NodeKey, RootCa, DEFAULT_NODE_CERT_VALIDITY};
    use crate::objects::NodeRole;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    struct Node {
        cert_pem: String,
        key_pem: String,
    }

    fn node(ca: &RootCa, node_id: &str, role: NodeRole) -> Node {
        let key = NodeKey::generate().unwrap();
        let identity = NodeIdentity { node_id: node_id.into(), role, cluster_id: "c1".into() };
        let cert_pem = ca.issue(&key.csr_pem, &identity, DEFAULT_NODE_CERT_VALIDITY).unwrap();
        Node { cert_pem, key_pem: key.key_pem }
    }

    struct Outcome {
        client_ok: bool,
        /// `Some(peer identity)` when the server finished the handshake and read the ping.
        server: Option<Option<NodeIdentity>>,
    }

    /// Runs one handshake over an in-memory pipe and a ping/pong so that TLS 1.3's late
    /// client-certificate rejection is seen by both sides.
    async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let server_side = async move {
            let mut tls = TlsAcceptor::from(server).accept(s).await.ok()?;
            let identity = tls.get_ref().1.peer_certificates().and_then(peer_identity);
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            tls.write_all(b"pong").await.ok()?;
            tls.flush().await.ok()?;
            Some(identity)
        };
        let client_side = async move {
            let name = ServerName::try_from(MANAGER_SERVER_NAME).unwrap();
            let Ok(mut tls) = TlsConnector::from(client).connect(name, c).await else {
                return false;
            };
            let mut buf = [0u8; 4];
            tls.write_all(b"ping").await.is_ok()
                && tls.flush().await.is_ok()
                && tls.read_exact(&mut buf).await.is_ok()
                && &buf == b"pong"
        };
        let (server, client_ok) = tokio::join!(server_side, client_side);
        Outcome { client_ok, server }
    }

    fn manager_server(ca: &RootCa) -> Arc<ServerConfig> {
        let m = node(ca, "mgr1", NodeRole::Manager);
        server_config(ca.cert_pem(), &m.cert_pem, &m.key_pem).unwrap()
    }

    #[tokio::test]
    async fn client_with_cert_is_identified() {
        let ca = RootCa::generate().unwrap();
        for (id, role) in [("w1", NodeRole::Worker), ("m2", NodeRole::Manager)] {
            let n = node(&ca, id, role);
            let client = client_config(ca.cert_pem(), Some((&n.cert_pem, &n.key_pem))).unwrap();
            let out = handshake(manager_server(&ca), client).await;
            assert!(out.client_ok);
            let identity = out.server.expect("server handshake").expect("peer identity");
            assert_eq!((identity.node_id.as_str(), identity.role), (id, role));
            assert_eq!(identity.cluster_id, "c1");
        }
    }

    #[tokio::test]
    async fn anonymous_client_connects_without_identity() {
        let ca = RootCa::generate().unwrap();
        let client = client_config(ca.cert_pem(), None).unwrap();
        let out = handshake(manager_server(&ca), client).await;
        assert!(out.client_ok);
        assert_eq!(out.server, Some(None));
    }

    #[tokio::test]
    async fn client_cert_from_foreign_ca_is_rejected() {
        let ca = RootCa::generate().unwrap();
        let foreign = RootCa::generate().unwrap();
        let n = node(&foreign, "w1", NodeRole::Worker);
        // The client trusts the real CA, so only the server can object.
        let client = client_config(ca.cert_pem(), Some((&n.cert_pem, &n.key_pem))).unwrap();
        let out = handshake(manager_server(&ca), client).await;
        assert!(out.server.is_none());
        assert!(!out.client_ok);
    }

    #[tokio::test]
    async fn client_with_wrong_root_rejects_server() {
        let ca = RootCa::generate().unwrap();
        let foreign = RootCa::generate().unwrap();
        let client = client_config(foreign.cert_pem(), None).unwrap();
        let out = handshake(manager_server(&ca), client).await;
        assert!(!out.client_ok);
        assert!(out.server.is_none());
    }

    #[tokio::test]
    async fn worker_certificate_cannot_serve_as_manager() {
        let ca = RootCa::generate().unwrap();
        let w = node(&ca, "w1", NodeRole::Worker);
        let server = server_config(ca.cert_pem(), &w.cert_pem, &w.key_pem).unwrap();
        let out = handshake(server, client_config(ca.cert_pem(), None).unwrap()).await;
        assert!(!out.client_ok, "a worker cert lacks the swarm-manager SAN");
    }

    #[tokio::test]
    async fn fetch_ca_client_connects_to_any_server() {
        let ca = RootCa::generate().unwrap();
        let foreign = RootCa::generate().unwrap();
        for server in [manager_server(&ca), manager_server(&foreign)] {
            let out = handshake(server, fetch_ca_client_config()).await;
            assert!(out.client_ok);
            assert_eq!(out.server, Some(None));
        }
    }

    #[test]
    fn bad_pem_is_reported() {
        let err = client_config("nothing here", None).unwrap_err();
        assert_eq!(err.to_string(), "the root CA PEM holds no certificate");
        let ca = RootCa::generate().unwrap();
        assert!(server_config(ca.cert_pem(), ca.cert_pem(), "no key").is_err());
        assert_eq!(peer_identity(&[]), None);
    }
}
