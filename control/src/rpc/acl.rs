//! Who may call what on 2377: the one table of RPC permissions, enforced by a tower layer in
//! front of every gRPC service.
//!
//! **Invariant:** a method that is not in [`RPC_ACL`] is refused, so a new RPC is closed until
//! someone decides who may call it. Roles come from the client certificate's OU, checked against
//! the root CA during the TLS handshake; the anonymous methods are exactly the ones a joiner
//! needs before it has a certificate (swarmkit's CA.GetRootCACertificate and
//! NodeCA.IssueNodeCertificate, the latter authenticated by the join token).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::{Layer, Service};

use super::transport::PeerInfo;
use crate::objects::NodeRole;

/// Which callers a method admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admits {
    /// Any TLS client, with or without a certificate.
    Anyone,
    /// A certificate of this cluster with either role.
    AnyNode,
    /// A certificate with OU `swarm-manager`.
    Managers,
}

/// Every gRPC method served on 2377 and the callers it admits.
pub const RPC_ACL: &[(&str, Admits)] = &[
    ("/shoal.CA/GetRootCACertificate", Admits::Anyone),
    ("/shoal.NodeCA/IssueNodeCertificate", Admits::Anyone),
    ("/shoal.NodeCA/RenewNodeCertificate", Admits::AnyNode),
    ("/shoal.Dispatcher/Heartbeat", Admits::AnyNode),
    ("/shoal.Dispatcher/Assignments", Admits::AnyNode),
    ("/shoal.Dispatcher/UpdateTaskStatus", Admits::AnyNode),
    ("/shoal.Dispatcher/NetworkMap", Admits::AnyNode),
    ("/shoal.Agent/TaskLogs", Admits::Managers),
    ("/shoal.Raft/AppendEntries", Admits::Managers),
    ("/shoal.Raft/Vote", Admits::Managers),
    ("/shoal.Raft/InstallSnapshot", Admits::Managers),
    ("/shoal.RaftMembership/Join", Admits::Managers),
    ("/shoal.RaftMembership/Leave", Admits::Managers),
    ("/shoal.Control/Propose", Admits::Managers),
    ("/shoal.Control/ReadIndex", Admits::Managers),
    ("/shoal.Control/ForwardHeartbeat", Admits::Managers),
];

/// Decides whether `peer` may call `path`; `Err` carries the gRPC status to return.
pub fn authorize(path: &str, peer: Option<&PeerInfo>) -> Result<(), tonic::Status> {
    let Some((_, admits)) = RPC_ACL.iter().find(|(p, _)| *p == path) else {
        return Err(tonic::Status::permission_denied(format!("{path} is not served to anyone")));
    };
    let identity = peer.and_then(|p| p.identity.as_ref());
    match (admits, identity) {
        (Admits::Anyone, _) => Ok(()),
        (_, None) => Err(tonic::Status::unauthenticated("a node certificate is required for this call")),
        (Admits::AnyNode, Some(_)) => Ok(()),
        (Admits::Managers, Some(id)) if id.role == NodeRole::Manager => Ok(()),
        (Admits::Managers, Some(id)) => Err(tonic::Status::permission_denied(format!(
            "Permission denied: unauthorized peer role: rpc error: code = PermissionDenied desc = Permission \
             denied: remote certificate not part of organization: {} with role {}",
            id.cluster_id,
            id.role.as_str()
        ))),
    }
}

/// Tower layer applying [`authorize`] to every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthzLayer;

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authz { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Authz<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Authz<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verdict = authorize(req.uri().path(), req.extensions().get::<PeerInfo>());
        match verdict {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::NodeIdentity;

    fn peer(role: Option<NodeRole>) -> PeerInfo {
        PeerInfo {
            remote_addr: None,
            identity: role.map(|role| NodeIdentity { node_id: "n".into(), role, cluster_id: "c".into() }),
        }
    }

    #[test]
    fn unknown_methods_are_closed_to_everyone() {
        let err = authorize("/shoal.Raft/Nope", Some(&peer(Some(NodeRole::Manager)))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn every_method_admits_exactly_its_roles() {
        for (path, admits) in RPC_ACL {
            let anon = authorize(path, Some(&peer(None)));
            let worker = authorize(path, Some(&peer(Some(NodeRole::Worker))));
            let manager = authorize(path, Some(&peer(Some(NodeRole::Manager))));
            assert!(manager.is_ok(), "{path} must admit managers");
            assert_eq!(anon.is_ok(), *admits == Admits::Anyone, "{path} anonymous");
            assert_eq!(worker.is_ok(), *admits != Admits::Managers, "{path} worker");
            if *admits == Admits::Managers {
                assert_eq!(worker.unwrap_err().code(), tonic::Code::PermissionDenied);
            }
        }
    }
}
