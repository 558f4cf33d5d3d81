//! Manager RPCs on 2377: generated gRPC types, the permission table, TLS transport, services.

pub mod acl;
pub mod peers;
pub mod server;
pub mod services;
pub mod transport;

/// Types and stubs generated from `proto/shoal.proto`.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("shoal");
}
