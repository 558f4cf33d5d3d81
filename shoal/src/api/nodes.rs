//! `/nodes`, `/nodes/{id}`, `/nodes/{id}/update`.

use axum::extract::{Path, State};
use axum::Json;
use control::objects::{Node, NodeSpec};

use super::errors::{HttpError, JsonBody, Params};
use super::filters::{Filters, NodeFilter};
use super::AppState;

/// Filters are applied here, not in the control plane, so every `SwarmApi` gets them alike.
pub async fn list(State(st): State<AppState>, params: Params) -> Result<Json<Vec<Node>>, HttpError> {
    let filter = NodeFilter::new(&Filters::parse(params.get("filters"))?)?;
    let nodes = st.api.list_nodes().await?;
    Ok(Json(nodes.into_iter().filter(|n| filter.matches(n)).collect()))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Node>, HttpError> {
    Ok(Json(st.api.inspect_node(&id).await?))
}

pub async fn remove(State(st): State<AppState>, Path(id): Path<String>, params: Params) -> Result<(), HttpError> {
    Ok(st.api.remove_node(&id, params.bool_value("force")).await?)
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    JsonBody(spec): JsonBody<NodeSpec>,
) -> Result<(), HttpError> {
    let version = params.object_version("node")?;
    Ok(st.api.update_node(&id, version, spec).await?)
}
