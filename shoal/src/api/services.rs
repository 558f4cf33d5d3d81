//! `/services`, `/services/create`, `/services/{id}`, `/services/{id}/update`, and the
//! `/distribution/{image}/json` lookup the docker CLI makes before creating a service.
//!
//! Filters, `status=true` and `insertDefaults=true` are applied here, not in the control plane,
//! so every [`ServiceApi`](control::ServiceApi) gets them alike.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use control::objects::service::{
    FailureAction, Placement, RestartCondition, RestartPolicy, Service, ServiceSpec, TaskResources, UpdateConfig,
    UpdateOrder,
};
use serde_json::{json, Value};

use super::errors::{HttpError, Params};
use super::filters::{labels_match, split_label, Filters};
use super::AppState;

const SECOND: i64 = 1_000_000_000;

/// `GET /services?filters=&status=`: `ServiceStatus` only when `status` is true.
pub async fn list(State(st): State<AppState>, params: Params) -> Result<Json<Vec<Service>>, HttpError> {
    let filter = ServiceFilter::new(&Filters::parse(params.get("filters"))?)?;
    let status = params.parse_bool("status")?;
    let services = st.services.list_services().await?;
    Ok(Json(
        services
            .into_iter()
            .filter(|s| filter.matches(s))
            .map(|mut s| {
                if !status {
                    s.service_status = None;
                }
                s
            })
            .collect(),
    ))
}

/// A `ServiceSpec` body. Enum values Shoal does not know are refused with dockerd's wording
/// (daemon/cluster/convert/service.go) before serde would call them `unknown variant`.
pub struct SpecBody(pub ServiceSpec);

impl<S: Send + Sync> axum::extract::FromRequest<S> for SpecBody {
    type Rejection = HttpError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| HttpError::bad_request(format!("invalid request body: {e}")))?;
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            check_enums(&value)?;
        }
        super::errors::parse_json_body(&bytes).map(SpecBody)
    }
}

fn string_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

/// dockerd's messages for enum values it does not know.
pub fn check_enums(spec: &Value) -> Result<(), HttpError> {
    if let Some(c) = string_at(spec, &["TaskTemplate", "RestartPolicy", "Condition"]) {
        if !matches!(c, "" | "none" | "on-failure" | "any") {
            return Err(HttpError::bad_request(format!("invalid RestartCondition: {c:?}")));
        }
    }
    for config in ["UpdateConfig", "RollbackConfig"] {
        if let Some(action) = string_at(spec, &[config, "FailureAction"]) {
            if !matches!(action, "" | "pause" | "continue" | "rollback") {
                return Err(HttpError::bad_request(format!("unrecognized update failure action {action}")));
            }
        }
        if let Some(order) = string_at(spec, &[config, "Order"]) {
            if !matches!(order, "" | "stop-first" | "start-first") {
                return Err(HttpError::bad_request(format!("unrecognized update order {order}")));
            }
        }
    }
    if let Some(mode) = string_at(spec, &["EndpointSpec", "Mode"]) {
        if !matches!(mode, "" | "vip" | "dnsrr") {
            return Err(HttpError::bad_request(format!("invalid resolution mode: {mode:?}")));
        }
    }
    Ok(())
}

/// `POST /services/create` → 201 `{"ID", "Warnings"}`. The `X-Registry-Auth` header the docker
/// CLI sends is ignored: Shoal pulls nothing from registries.
pub async fn create(
    State(st): State<AppState>,
    SpecBody(spec): SpecBody,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let (id, warnings) = st.services.create_service(spec).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ID": id, "Warnings": warnings }))))
}

/// `GET /services/{id}?insertDefaults=`.
pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Service>, HttpError> {
    let insert = params.parse_bool("insertDefaults")?;
    let mut service = st.services.inspect_service(&id).await?;
    if insert {
        insert_defaults(&mut service.spec);
        if let Some(previous) = service.previous_spec.as_mut() {
            insert_defaults(previous);
        }
    }
    Ok(Json(service))
}

pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> Result<(), HttpError> {
    Ok(st.services.remove_service(&id).await?)
}

/// `POST /services/{id}/update?version=&rollback=previous&registryAuthFrom=` → `{"Warnings"}`.
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    SpecBody(spec): SpecBody,
) -> Result<Json<Value>, HttpError> {
    let version = params.object_version("service")?;
    let rollback = match params.get("rollback").unwrap_or("") {
        "" | "none" => false,
        "previous" => true,
        other => return Err(HttpError::bad_request(format!("unrecognized rollback option {other}"))),
    };
    if !matches!(params.get("registryAuthFrom").unwrap_or(""), "" | "spec" | "previous-spec") {
        return Err(HttpError::bad_request("unsupported registryAuthFrom value"));
    }
    let warnings = st.services.update_service(&id, version, spec, rollback).await?;
    Ok(Json(json!({ "Warnings": warnings })))
}

/// `GET /distribution/{image}/json`: there is no registry to ask. The docker CLI turns the
/// error into its "could not be accessed on a registry to record its digest" warning and
/// creates the service with the image name as given (`--no-resolve-image` skips the call).
pub async fn distribution(Path(rest): Path<String>) -> HttpError {
    let image = rest.strip_suffix("/json").unwrap_or(&rest);
    HttpError {
        status: StatusCode::NOT_FOUND,
        message: format!("no registry access for {image}: Shoal runs built-in images and host commands"),
    }
}

/// swarmkit's `defaults.InterpolateService`: what `insertDefaults=true` shows for unset fields.
pub fn insert_defaults(spec: &mut ServiceSpec) {
    let task = &mut spec.task_template;
    task.container_spec.stop_grace_period.get_or_insert(10 * SECOND);
    task.resources.get_or_insert_with(TaskResources::default);
    let restart = task.restart_policy.get_or_insert(RestartPolicy {
        condition: RestartCondition::Any,
        delay: None,
        max_attempts: 0,
        window: 0,
    });
    restart.delay.get_or_insert(5 * SECOND);
    task.placement.get_or_insert_with(Placement::default);
    spec.update_config.get_or_insert_with(default_update_config);
    spec.rollback_config.get_or_insert_with(default_update_config);
}

/// swarmkit's default `UpdateConfig` (also its default `RollbackConfig`).
pub fn default_update_config() -> UpdateConfig {
    UpdateConfig {
        parallelism: 1,
        delay: 0,
        failure_action: FailureAction::Pause,
        monitor: 5 * SECOND,
        max_failure_ratio: 0.0,
        order: UpdateOrder::StopFirst,
    }
}

const SERVICE_FILTERS: &[&str] = &["id", "label", "mode", "name", "runtime"];

/// The `GET /services` filter: ID and name prefixes, labels, and the exact mode.
#[derive(Debug, Default)]
pub struct ServiceFilter {
    ids: Vec<String>,
    names: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    modes: Vec<String>,
}

impl ServiceFilter {
    pub fn new(filters: &Filters) -> Result<ServiceFilter, HttpError> {
        filters.validate(SERVICE_FILTERS)?;
        Ok(ServiceFilter {
            ids: filters.get("id").map(str::to_string).collect(),
            names: filters.get("name").map(str::to_string).collect(),
            labels: filters.get("label").map(split_label).collect(),
            modes: filters.get("mode").map(str::to_string).collect(),
        })
    }

    pub fn matches(&self, service: &Service) -> bool {
        let prefix_of = |wanted: &[String], v: &str| wanted.is_empty() || wanted.iter().any(|w| v.starts_with(w));
        let mode = if service.spec.mode.global.is_some() { "global" } else { "replicated" };
        prefix_of(&self.ids, &service.id)
            && prefix_of(&self.names, &service.spec.name)
            && labels_match(&self.labels, &service.spec.labels)
            && (self.modes.is_empty() || self.modes.iter().any(|m| m == mode))
    }
}

#[cfg(test)]
mod enum_tests {
    use super::*;

    #[test]
    fn unknown_enum_values_get_dockerds_messages() {
        let check = |v: Value| check_enums(&v).map_err(|e| e.message);
        assert_eq!(
            check(json!({"TaskTemplate": {"RestartPolicy": {"Condition": "always"}}})),
            Err("invalid RestartCondition: \"always\"".into())
        );
        assert_eq!(
            check(json!({"UpdateConfig": {"FailureAction": "explode"}})),
            Err("unrecognized update failure action explode".into())
        );
        assert_eq!(
            check(json!({"RollbackConfig": {"Order": "random"}})),
            Err("unrecognized update order random".into())
        );
        assert_eq!(check(json!({"EndpointSpec": {"Mode": "x"}})), Err("invalid resolution mode: \"x\"".into()));
        assert_eq!(
            check(
                json!({"TaskTemplate": {"RestartPolicy": {"Condition": "on-failure"}}, "EndpointSpec": {"Mode": ""}})
            ),
            Ok(())
        );
    }
}
