//! The Docker Engine API subset `shoal daemon` serves (API v1.51, accepting v1.24 and up).
//!
//! Routes are a thin translation of paths, query strings and status codes onto
//! [`control::SwarmApi`] (swarm, nodes), [`control::ServiceApi`] (services, tasks) and
//! [`control::NetworkApi`] (networks), plus Shoal's own `/shoal/mesh` onto
//! [`control::api::MeshApi`]; the JSON shapes come from `control::objects` unchanged.
//! Everything here is generic over those traits (`Arc<dyn …>`) so the router can be driven
//! in-process against fakes.
//!
//! Requests may carry a `/v1.NN` prefix like dockerd's; [`version::strip_version_prefix`] removes
//! it before routing, so the route table lists each path once.

mod errors;
mod filters;
pub(crate) mod logs;
mod mesh;
mod networks;
mod nodes;
mod services;
mod swarm;
mod system;
mod tasks;
mod version;

#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use control::api::MeshApi;
use control::{LogsApi, NetworkApi, ServiceApi, SwarmApi};
use mesh_agent::host::HostFacts;
use tower::Layer;

pub use services::default_update_config;
pub use system::{build_time, go_arch};
pub use version::API_VERSION;

/// What `/info` and `/version` report about this engine besides the swarm state.
#[derive(Clone, Debug)]
pub struct EngineFacts {
    pub host: HostFacts,
    /// A stable identifier of this engine (not the swarm node ID), like dockerd's `ID`.
    pub engine_id: String,
    pub data_root: PathBuf,
}

/// The state every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub api: Arc<dyn SwarmApi>,
    pub services: Arc<dyn ServiceApi>,
    pub logs: Arc<dyn LogsApi>,
    pub networks: Arc<dyn NetworkApi>,
    pub mesh: Arc<dyn MeshApi>,
    pub engine: Arc<EngineFacts>,
}

/// Builds the Engine API router. The returned router strips a `/v1.NN` prefix before routing.
pub fn router(
    api: Arc<dyn SwarmApi>,
    services: Arc<dyn ServiceApi>,
    logs: Arc<dyn LogsApi>,
    networks: Arc<dyn NetworkApi>,
    mesh: Arc<dyn MeshApi>,
    engine: EngineFacts,
) -> Router {
    let state = AppState { api, services, logs, networks, mesh, engine: Arc::new(engine) };
    let routes = Router::new()
        // A GET route also answers HEAD (axum drops the body), as dockerd does for /_ping.
        .route("/_ping", get(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route("/services/{id}", get(services::inspect).delete(services::remove))
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks/{id}/logs", get(logs::task_logs))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::connect))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/distribution/{*image}", get(services::distribution))
        .route("/shoal/mesh", get(mesh::table))
        .fallback(errors::page_not_found)
        .method_not_allowed_fallback(errors::page_not_found)
        .with_state(state);
    // Middleware added with `Router::layer` runs after routing; the prefix must go before it, so
    // the versioned router is wrapped as the fallback service of an empty outer router.
    let versioned = axum::middleware::from_fn(version::strip_version_prefix).layer(routes);
    Router::new().fallback_service(versioned)
}
