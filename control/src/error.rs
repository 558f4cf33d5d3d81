//! Errors the control plane returns to API callers.
//!
//! Each error carries the class the Engine API maps to an HTTP status, and a message worded as
//! Docker words it (including swarmkit's `rpc error: code = … desc = …` prefix where dockerd
//! relays a manager error), because users and scripts match on those sentences.

use serde::{Deserialize, Serialize};

/// The class of an [`ApiError`], which decides its HTTP status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or not allowed in the current state.
    InvalidArgument,
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 403
    Forbidden,
    /// 503: not in a swarm, not a manager, or no leader.
    Unavailable,
    /// 500
    Internal,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// Docker: a write while the Raft group has no leader.
    pub fn no_leader() -> Self {
        Self::unavailable(
            "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few \
             managers are online. Make sure more than half of the managers are online.",
        )
    }

    /// Docker: a swarm API call on a node that is in no swarm.
    pub fn not_in_swarm() -> Self {
        Self::unavailable(
            "This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this \
             node to swarm and try again.",
        )
    }

    /// Docker: a cluster API call on a worker.
    pub fn not_a_manager() -> Self {
        Self::unavailable(
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please \
             run this command on a manager node or promote the current node to a manager.",
        )
    }

    /// Docker: `swarm init` or `swarm join` on a node already in a swarm.
    pub fn already_in_swarm() -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.",
        )
    }

    /// Docker (swarmkit `ErrSequenceConflict`): an update carrying a stale `version`.
    pub fn out_of_sequence() -> Self {
        Self::new(ErrorKind::InvalidArgument, "rpc error: code = Unknown desc = update out of sequence")
    }

    pub fn node_not_found(id: &str) -> Self {
        Self::not_found(format!("node {id} not found"))
    }

    /// Wraps a manager-side precondition failure the way dockerd relays it.
    pub fn failed_precondition(desc: impl AsRef<str>) -> Self {
        Self::invalid(format!("rpc error: code = FailedPrecondition desc = {}", desc.as_ref()))
    }
}
