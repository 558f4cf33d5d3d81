//! The cluster's root certificate authority and the node certificates it issues.
//!
//! Like swarmkit, a node's identity lives entirely in its certificate: the subject's CN is the
//! node id, the OU its role (`swarm-manager` / `swarm-worker`) and the O the cluster id. A joining
//! node makes its own key and sends only a CSR; the CA keeps nothing from the CSR but the public
//! key, so a node can never choose its own id or role. The role is also a DNS SAN, which lets
//! clients verify any manager under the one server name `swarm-manager`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::AttributeTypeAndValue;

use crate::objects::{NodeRole, TlsInfo};

/// Common name of the root CA, as swarmkit names it.
pub const ROOT_CN: &str = "swarm-ca";
/// Subject OU (and DNS SAN) of manager certificates.
pub const MANAGER_OU: &str = "swarm-manager";
/// Subject OU (and DNS SAN) of worker certificates.
pub const WORKER_OU: &str = "swarm-worker";
/// Root CA lifetime: 20 years, swarmkit's `630720000s`.
pub const ROOT_CA_VALIDITY: Duration = Duration::from_secs(630_720_000);
/// Default node certificate lifetime: 90 days, swarmkit's `2160h`.
pub const DEFAULT_NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far `not_before` is moved into the past so that nodes with slightly slow clocks accept
/// a certificate the moment it is issued (swarmkit's `CertBackdate`).
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("could not generate a key or certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("the {what} is not valid PEM: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the certificate could not be parsed: {0}")]
    ParseCertificate(String),
    #[error("the CA private key could not be loaded: {0}")]
    InvalidKey(#[source] rcgen::Error),
    #[error("the CA private key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("the certificate is not a certificate authority")]
    NotCa,
    #[error("the certificate signing request is not valid: {0}")]
    InvalidCsr(#[source] rcgen::Error),
    #[error("the certificate has no {0}")]
    MissingField(&'static str),
    #[error("the certificate's role {0:?} is neither swarm-manager nor swarm-worker")]
    UnknownRole(String),
}

/// Who a node certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
}

/// The OU (and SAN) string that carries `role` in a certificate.
pub fn role_ou(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_OU,
        NodeRole::Worker => WORKER_OU,
    }
}

/// SHA-256 of a DER certificate: the root CA fingerprint carried in join tokens.
pub fn digest(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// The root CA: its certificate and signing key, both PEM.
#[derive(Clone)]
pub struct RootCa {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    not_after: SystemTime,
}

// The key never goes into logs.
impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &hex::encode(digest(&self.cert_der)))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A fresh self-signed ECDSA P-256 root, valid for 20 years.
    pub fn generate() -> Result<RootCa, CaError> {
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, ROOT_CN);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + ROOT_CA_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        RootCa::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA saved with [`RootCa::cert_pem`] and [`RootCa::key_pem`], checking that the
    /// certificate is a CA and the key is its own.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, CaError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(CaError::InvalidKey)?;
        let not_after = {
            let cert = parse(&cert_der)?;
            if !cert.is_ca() {
                return Err(CaError::NotCa);
            }
            if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key) {
                return Err(CaError::KeyMismatch);
            }
            unix_time(cert.validity().not_after.timestamp())
        };
        Ok(RootCa { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string(), cert_der, not_after })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The trust root as Docker reports it in `Swarm.TLSInfo` and `Node.Description.TLSInfo`.
    pub fn tls_info(&self) -> TlsInfo {
        let cert = parse(&self.cert_der).expect("the CA certificate was parsed when loaded");
        let b64 = base64::engine::general_purpose::STANDARD;
        TlsInfo {
            trust_root: self.cert_pem.clone(),
            cert_issuer_subject: b64.encode(cert.subject().as_raw()),
            cert_issuer_public_key: b64.encode(cert.public_key().raw),
        }
    }

    /// Signs the public key of `csr_pem` into a node certificate for `identity`. Everything
    /// else in the CSR (subject, requested extensions) is ignored. The certificate never
    /// outlives the CA.
    pub fn issue(&self, csr_pem: &str, identity: &NodeIdentity, validity: Duration) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::InvalidCsr)?;
        let ou = role_ou(identity.role);
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, identity.node_id.as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, ou);
        params.distinguished_name.push(DnType::OrganizationName, identity.cluster_id.as_str());
        params.subject_alt_names = vec![dns_san(&identity.node_id)?, dns_san(ou)?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).min(self.not_after).into();

        let key = KeyPair::from_pem(&self.key_pem).map_err(CaError::InvalidKey)?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(self.cert_der.as_slice()), key)
            .map_err(CaError::Generate)?;
        let cert = params.signed_by(&csr.public_key, &issuer).map_err(CaError::Generate)?;
        Ok(cert.pem())
    }
}

/// A node's private key and the CSR it sends to the CA.
#[derive(Clone)]
pub struct NodeKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A fresh P-256 key and a CSR for it. The subject is a placeholder: the CA decides it.
    pub fn generate() -> Result<NodeKey, CaError> {
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "swarm-node");
        let csr = params.serialize_request(&key).map_err(CaError::Generate)?;
        Ok(NodeKey { key_pem: key.serialize_pem(), csr_pem: csr.pem().map_err(CaError::Generate)? })
    }
}

/// Reads the node id, role and cluster id out of a node certificate. This does not verify the
/// certificate: call it on certificates the TLS layer has already chained to the root.
pub fn identity_from_cert(cert_der: &[u8]) -> Result<NodeIdentity, CaError> {
    let cert = parse(cert_der)?;
    let subject = cert.subject();
    let node_id = first_attr(subject.iter_common_name(), "common name")?;
    let ou = first_attr(subject.iter_organizational_unit(), "organizational unit")?;
    let cluster_id = first_attr(subject.iter_organization(), "organization")?;
    let role = match ou.as_str() {
        MANAGER_OU => NodeRole::Manager,
        WORKER_OU => NodeRole::Worker,
        _ => return Err(CaError::UnknownRole(ou)),
    };
    Ok(NodeIdentity { node_id, role, cluster_id })
}

/// When a PEM certificate stops being valid; renewals are scheduled from it.
pub fn cert_expiry(cert_pem: &str) -> Result<SystemTime, CaError> {
    let der = pem_to_der(cert_pem)?;
    let cert = parse(&der)?;
    Ok(unix_time(cert.validity().not_after.timestamp()))
}

/// The first certificate of a PEM text, as DER (e.g. a downloaded root CA, to check it
/// against a join token).
pub fn pem_to_der(cert_pem: &str) -> Result<Vec<u8>, CaError> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| CaError::Pem { what: "certificate", reason: e.to_string() })
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(CaError::ParseCertificate(e.to_string())),
    }
}

fn first_attr<'b, 'a: 'b>(
    mut attrs: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>,
    what: &'static str,
) -> Result<String, CaError> {
    let attr = attrs.next().ok_or(CaError::MissingField(what))?;
    let value = attr.as_str().map_err(|_| CaError::MissingField(what))?;
    Ok(value.to_string())
}

fn dns_san(name: &str) -> Result<SanType, CaError> {
    Ok(SanType::DnsName(name.try_into().map_err(CaError::Generate)?))
}

/// 20 random bytes with the top bit clear: the largest positive serial RFC 5280 allows.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 20] = rand::random();
    // Top bit clear keeps the INTEGER positive; the next bit set keeps it 20 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from(bytes.to_vec())
}

/// Certificates dated before 1970 do not occur here; clamp rather than fail.
fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(ca: &RootCa, node_id: &str, role: NodeRole) -> (NodeKey, String) {
        let key = NodeKey::generate().unwrap();
        let identity = NodeIdentity { node_id: node_id.into(), role, cluster_id: "cluster0".into() };
        let cert = ca.issue(&key.csr_pem, &identity, DEFAULT_NODE_CERT_VALIDITY).unwrap();
        (key, cert)
    }

    #[test]
    fn issued_certificates_carry_the_identity() {
        let ca = RootCa::generate().unwrap();
        for (id, role) in [("mgr1", NodeRole::Manager), ("wrk1", NodeRole::Worker)] {
            let (_, cert) = issue(&ca, id, role);
            let got = identity_from_cert(&pem_to_der(&cert).unwrap()).unwrap();
            let want = NodeIdentity { node_id: id.into(), role, cluster_id: "cluster0".into() };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn node_certificate_lifetime_is_backdated_and_capped_by_the_ca() {
        let ca = RootCa::generate().unwrap();
        let (_, cert) = issue(&ca, "n1", NodeRole::Worker);
        let expiry = cert_expiry(&cert).unwrap();
        let in_90d = SystemTime::now() + DEFAULT_NODE_CERT_VALIDITY;
        assert!(expiry <= in_90d && expiry + Duration::from_secs(60) > in_90d);

        let key = NodeKey::generate().unwrap();
        let identity = identity_from_cert(&pem_to_der(&cert).unwrap()).unwrap();
        let long = ca.issue(&key.csr_pem, &identity, ROOT_CA_VALIDITY * 2).unwrap();
        assert_eq!(cert_expiry(&long).unwrap(), cert_expiry(ca.cert_pem()).unwrap());
    }

    #[test]
    fn digest_is_stable_and_is_sha256_of_der() {
        let ca = RootCa::generate().unwrap();
        let d = digest(ca.cert_der());
        assert_eq!(d.len(), 32);
        assert_eq!(d, digest(ca.cert_der()));
        let reloaded = RootCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(digest(reloaded.cert_der()), d);
        assert_ne!(digest(RootCa::generate().unwrap().cert_der()), d);
    }

    #[test]
    fn root_ca_shape() {
        let ca = RootCa::generate().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert_eq!(cert.subject().to_string(), "CN=swarm-ca");
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime as u64, (ROOT_CA_VALIDITY + BACKDATE).as_secs());
    }

    #[test]
    fn tls_info_is_base64_of_subject_and_spki() {
        let ca = RootCa::generate().unwrap();
        let info = ca.tls_info();
        assert_eq!(info.trust_root, ca.cert_pem());
        let b64 = base64::engine::general_purpose::STANDARD;
        let subject = b64.decode(&info.cert_issuer_subject).unwrap();
        let (_, name) =
            <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<x509_parser::error::X509Error>>::from_der(
                &subject,
            )
            .unwrap();
        assert_eq!(name.to_string(), "CN=swarm-ca");
        let spki = b64.decode(&info.cert_issuer_public_key).unwrap();
        let key = KeyPair::from_pem(ca.key_pem()).unwrap();
        assert_eq!(spki, rcgen::PublicKeyData::subject_public_key_info(&key));
    }

    #[test]
    fn from_pem_rejects_mismatched_key_and_non_ca() {
        let a = RootCa::generate().unwrap();
        let b = RootCa::generate().unwrap();
        let err = RootCa::from_pem(a.cert_pem(), b.key_pem()).unwrap_err();
        assert_eq!(err.to_string(), "the CA private key does not belong to the CA certificate");
        let (key, cert) = issue(&a, "n1", NodeRole::Manager);
        let err = RootCa::from_pem(&cert, &key.key_pem).unwrap_err();
        assert_eq!(err.to_string(), "the certificate is not a certificate authority");
    }

    #[test]
    fn identity_requires_a_known_role() {
        let ca = RootCa::generate().unwrap();
        let err = identity_from_cert(ca.cert_der()).unwrap_err();
        assert_eq!(err.to_string(), "the certificate has no organizational unit");

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "n1");
        params.distinguished_name.push(DnType::OrganizationalUnitName, "swarm-admin");
        params.distinguished_name.push(DnType::OrganizationName, "c");
        let cert = params.self_signed(&key).unwrap();
        let err = identity_from_cert(cert.der()).unwrap_err();
        assert!(matches!(err, CaError::UnknownRole(ref ou) if ou == "swarm-admin"));
    }

    #[test]
    fn garbage_csr_is_rejected() {
        let ca = RootCa::generate().unwrap();
        let identity = NodeIdentity { node_id: "n".into(), role: NodeRole::Worker, cluster_id: "c".into() };
        let err = ca.issue("not a csr", &identity, DEFAULT_NODE_CERT_VALIDITY);
        assert!(matches!(err, Err(CaError::InvalidCsr(_))));
    }
}
