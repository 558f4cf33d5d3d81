//! `/networks` on a manager: create, list, inspect and remove overlay networks.
//!
//! PLACEHOLDER: being written (IPAM and network objects in the store); every call fails for now.

use async_trait::async_trait;

use crate::api::NetworkApi;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::objects::network::{Network, NetworkCreateRequest, NetworkCreateResponse};

#[async_trait]
impl NetworkApi for Daemon {
    async fn create_network(&self, _req: NetworkCreateRequest) -> ApiResult<NetworkCreateResponse> {
        Err(ApiError::invalid("overlay networks are not implemented yet"))
    }
    async fn list_networks(&self) -> ApiResult<Vec<Network>> {
        Ok(Vec::new())
    }
    async fn inspect_network(&self, key: &str) -> ApiResult<Network> {
        Err(ApiError::not_found(format!("network {key} not found")))
    }
    async fn remove_network(&self, key: &str) -> ApiResult<()> {
        Err(ApiError::not_found(format!("network {key} not found")))
    }
}
