//! `/swarm`, `/swarm/init|join|leave|update`.

use axum::extract::State;
use axum::Json;
use control::objects::{InitRequest, JoinRequest, RotateTokens, Swarm, SwarmSpec};

use super::errors::{HttpError, JsonBody, Params};
use super::AppState;

pub async fn inspect(State(st): State<AppState>) -> Result<Json<Swarm>, HttpError> {
    Ok(Json(st.api.inspect_swarm().await?))
}

/// Answers the new node's ID as a JSON string, as dockerd does.
pub async fn init(State(st): State<AppState>, JsonBody(req): JsonBody<InitRequest>) -> Result<Json<String>, HttpError> {
    Ok(Json(st.api.init(req).await?))
}

pub async fn join(State(st): State<AppState>, JsonBody(req): JsonBody<JoinRequest>) -> Result<(), HttpError> {
    Ok(st.api.join(req).await?)
}

pub async fn leave(State(st): State<AppState>, params: Params) -> Result<(), HttpError> {
    Ok(st.api.leave(params.bool_value("force")).await?)
}

pub async fn update(
    State(st): State<AppState>,
    params: Params,
    JsonBody(spec): JsonBody<SwarmSpec>,
) -> Result<(), HttpError> {
    let version = params.object_version("swarm")?;
    let rotate = RotateTokens {
        worker: params.parse_bool("rotateWorkerToken")?,
        manager: params.parse_bool("rotateManagerToken")?,
    };
    if params.parse_bool("rotateManagerUnlockKey")? {
        return Err(HttpError::bad_request("rotating the manager unlock key is not supported"));
    }
    Ok(st.api.update_swarm(version, spec, rotate).await?)
}
