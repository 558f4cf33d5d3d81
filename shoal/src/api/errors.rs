//! Errors as the Engine API shows them, and the request extractors that produce them.
//!
//! Every failure answers `{"message": "…"}` with `Content-Type: application/json`, the status
//! coming from [`ApiError::http_status`]; axum's plain-text rejections never reach a client
//! because bodies and query strings go through [`JsonBody`] and [`Params`] instead.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::ApiError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An error response: a status and dockerd's `{"message"}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError { status, message: e.message }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        (self.status, Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

/// dockerd's answer to an unknown path.
pub async fn page_not_found() -> HttpError {
    HttpError { status: StatusCode::NOT_FOUND, message: "page not found".into() }
}

/// A JSON request body. An empty body is the type's default (dockerd accepts it too); bodies
/// written by Go clients are normalised first (see [`go_compat`]).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| HttpError::bad_request(format!("invalid request body: {e}")))?;
        parse_json_body(&bytes).map(JsonBody)
    }
}

/// Parses a request body the way [`JsonBody`] does.
pub fn parse_json_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| HttpError::bad_request(format!("invalid JSON: {e}")))?;
    go_compat(&mut value);
    serde_json::from_value(value).map_err(|e| HttpError::bad_request(format!("invalid JSON: {e}")))
}

/// Go's encoding/json writes nil maps and slices as `null` and unset enum strings as `""` (the
/// docker CLI sends `"Labels": null` and `"Availability": ""` in `swarm init`/`join`). Dropping
/// those entries lets `#[serde(default)]` and `Option` fields take them as absent.
fn go_compat(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, v| !(v.is_null() || (key == "Availability" && v.as_str() == Some(""))));
            map.values_mut().for_each(go_compat);
        }
        Value::Array(items) => items.iter_mut().for_each(go_compat),
        _ => {}
    }
}

/// The query string as a map; a malformed one is a 400 with a JSON body.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(map)| Params(map))
            .map_err(|e| HttpError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// dockerd's `httputils.BoolValue`: anything but "", "0", "no", "false" and "none" is true.
    pub fn bool_value(&self, key: &str) -> bool {
        let v = self.get(key).unwrap_or("").trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
    }

    /// A strict boolean (Go's `strconv.ParseBool`); absent or empty is false.
    pub fn parse_bool(&self, key: &str) -> Result<bool, HttpError> {
        match self.get(key).unwrap_or("") {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            other => Err(HttpError::bad_request(format!("invalid value for {key}: {other}"))),
        }
    }

    /// The required `version` query parameter, refused as dockerd does:
    /// `invalid node version 'x': strconv.ParseUint: parsing "x": invalid syntax`.
    pub fn object_version(&self, object: &str) -> Result<u64, HttpError> {
        let raw = self.get("version").unwrap_or("");
        parse_uint(raw).map_err(|why| {
            HttpError::bad_request(format!(
                "invalid {object} version '{raw}': strconv.ParseUint: parsing {raw:?}: {why}"
            ))
        })
    }
}

fn parse_uint(raw: &str) -> Result<u64, &'static str> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    raw.parse::<u64>().map_err(|_| "value out of range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::objects::{InitRequest, NodeAvailability, SwarmSpec};

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn version_parameter_errors_read_like_dockerd() {
        assert_eq!(params(&[("version", "12")]).object_version("node"), Ok(12));
        let e = params(&[]).object_version("node").unwrap_err();
        assert_eq!(e.message, r#"invalid node version '': strconv.ParseUint: parsing "": invalid syntax"#);
        let e = params(&[("version", "-1")]).object_version("swarm").unwrap_err();
        assert_eq!(e.message, r#"invalid swarm version '-1': strconv.ParseUint: parsing "-1": invalid syntax"#);
        let e = params(&[("version", "99999999999999999999")]).object_version("node").unwrap_err();
        assert!(e.message.ends_with("value out of range"), "{}", e.message);
    }

    #[test]
    fn booleans_follow_dockerd() {
        let p = params(&[("force", "1"), ("a", "no"), ("b", "True"), ("c", "yes")]);
        assert!(p.bool_value("force"));
        assert!(!p.bool_value("a"));
        assert!(!p.bool_value("missing"));
        assert_eq!(p.parse_bool("b"), Ok(true));
        assert_eq!(p.parse_bool("missing"), Ok(false));
        assert_eq!(p.parse_bool("c").unwrap_err().message, "invalid value for c: yes");
    }

    #[test]
    fn go_client_bodies_are_accepted() {
        let body = br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","DataPathPort":0,
            "DefaultAddrPool":null,"ForceNewCluster":false,"Availability":"","SubnetSize":24,
            "Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},
            "Dispatcher":{},"CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}}}"#;
        let req: InitRequest = parse_json_body(body).unwrap();
        assert_eq!(req.listen_addr, "0.0.0.0:2377");
        assert_eq!(req.availability, None);
        assert!(req.default_addr_pool.is_empty());
        assert!(req.spec.unwrap().labels.is_empty());

        let req: InitRequest = parse_json_body(br#"{"Availability":"drain"}"#).unwrap();
        assert_eq!(req.availability, Some(NodeAvailability::Drain));
    }

    #[test]
    fn empty_and_malformed_bodies() {
        let spec: SwarmSpec = parse_json_body(b"  ").unwrap();
        assert_eq!(spec, SwarmSpec::default());
        let e = parse_json_body::<InitRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("invalid JSON: "), "{}", e.message);
        let e = parse_json_body::<InitRequest>(br#"{"Availability":"sometimes"}"#).unwrap_err();
        assert!(e.message.contains("sometimes"), "{}", e.message);
    }
}
