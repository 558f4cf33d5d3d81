//! Shoal's cluster control plane.
//!
//! Managers replicate every cluster object through openraft (log and state in redb under the
//! data root); all manager traffic, Raft included, is gRPC over mutual TLS on 2377/tcp. A root CA
//! made at `swarm init` issues node certificates whose OU is the node's role; every RPC declares
//! the roles it admits. Each node's agent keeps a dispatcher session (heartbeats) to a manager.
//!
//! Module map: [`objects`] (Engine API shapes), [`state`] (the replicated state and its only
//! mutator), [`store`] (openraft storage on redb), [`ca`]/[`token`]/[`tls`] (identity),
//! [`rpc`] (gRPC services, role checks, transport), [`manager`] (Raft member, writes, liveness),
//! [`agent`] (heartbeats, promotion/demotion), [`daemon`] (a node's swarm lifecycle).

pub mod agent;
pub mod api;
pub mod ca;
pub mod daemon;
pub mod error;
pub mod executor;
pub mod ipam;
mod lifecycle;
mod logs;
pub mod manager;
mod mesh_api;
pub mod netmap;
mod network_api;
pub mod node_mesh;
pub mod node_network;
pub mod objects;
pub mod orchestrator;
pub mod raft_network;
pub mod rpc;
mod service_api;
pub mod state;
pub mod store;
pub mod tls;
pub mod token;

pub use api::{LogMessage, LogOptions, LogsApi, NetworkApi, ServiceApi, SwarmApi};
pub use error::{ApiError, ApiResult, ErrorKind};
