//! `/networks` until overlay networks exist: none is known, and asking for one answers dockerd's
//! not-found error, which the docker CLI relies on (`service create --network x` looks the
//! network up first and prints the daemon's message).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;

use super::errors::HttpError;

pub async fn list() -> Json<Vec<serde_json::Value>> {
    Json(Vec::new())
}

pub async fn inspect(Path(id): Path<String>) -> HttpError {
    HttpError { status: StatusCode::NOT_FOUND, message: format!("network {id} not found") }
}
