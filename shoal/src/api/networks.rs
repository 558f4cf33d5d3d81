//! `/networks`, `/networks/{id}`, `/networks/create`, `/networks/prune` and the container
//! `connect`/`disconnect` routes, over [`control::NetworkApi`].
//!
//! Filters and prune are applied here, as dockerd's router and `daemon/network/filter.go` do,
//! so every `NetworkApi` gets them alike. Prune is a list followed by removals: the control
//! plane refuses to remove a network in use, and prune skips those, as dockerd's
//! `clusterNetworksPrune` does.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use control::objects::network::{Network, NetworkCreateRequest, NetworkCreateResponse};
use serde_json::{json, Value};

use super::errors::{HttpError, JsonBody, Params};
use super::filters::{labels_match, split_label, Filters};
use super::AppState;

const NETWORK_FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];
const PRUNE_FILTERS: &[&str] = &["label", "label!", "until"];

/// `GET /networks?filters=`.
pub async fn list(State(st): State<AppState>, params: Params) -> Result<Json<Vec<Network>>, HttpError> {
    let filter = NetworkFilter::new(&Filters::parse(params.get("filters"))?)?;
    let networks = st.networks.list_networks().await?;
    let in_use = match filter.dangling {
        Some(_) => networks_in_use(&st).await?,
        None => HashSet::new(),
    };
    Ok(Json(networks.into_iter().filter(|n| filter.matches(n, &in_use)).collect()))
}

/// `GET /networks/{id}?verbose=&scope=`. Every Shoal network is swarm-scoped: asking for the
/// `local` scope finds none. `verbose` is accepted; a swarm network shows the same either way.
pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Network>, HttpError> {
    if let Some(v) = params.get("verbose").filter(|v| !v.is_empty()) {
        params.parse_bool("verbose").map_err(|_| HttpError::bad_request(format!("invalid value for verbose: {v}")))?;
    }
    match params.get("scope").unwrap_or("") {
        "" | "swarm" | "global" => {}
        "local" => return Err(not_found(&id)),
        other => return Err(HttpError::bad_request(format!("invalid scope value: {other}"))),
    }
    Ok(Json(st.networks.inspect_network(&id).await?))
}

fn not_found(id: &str) -> HttpError {
    HttpError { status: StatusCode::NOT_FOUND, message: format!("network {id} not found") }
}

/// `POST /networks/create` → 201 `{"Id", "Warning"}`.
pub async fn create(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<NetworkCreateRequest>,
) -> Result<(StatusCode, Json<NetworkCreateResponse>), HttpError> {
    Ok((StatusCode::CREATED, Json(st.networks.create_network(req).await?)))
}

/// `DELETE /networks/{id}` → 204.
pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, HttpError> {
    st.networks.remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /networks/prune?filters=` → `{"NetworksDeleted": [names]}`: every network that is
/// not `ingress` (removing the routing mesh must be asked for by name) and that the control
/// plane agrees to remove.
pub async fn prune(State(st): State<AppState>, params: Params) -> Result<Json<Value>, HttpError> {
    let filter = PruneFilter::new(&Filters::parse(params.get("filters"))?, Utc::now())?;
    let mut deleted = Vec::new();
    for network in st.networks.list_networks().await? {
        if network.ingress || !filter.matches(&network) {
            continue;
        }
        match st.networks.remove_network(&network.id).await {
            Ok(()) => deleted.push(network.name),
            Err(e) => tracing::debug!(network = %network.name, error = %e.message, "prune keeps network"),
        }
    }
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}

/// `POST /networks/{id}/connect` and `/disconnect` name a container; Shoal runs tasks, never
/// containers, so the container is never found (dockerd looks it up first, with this message).
pub async fn connect(Path(_id): Path<String>, JsonBody(body): JsonBody<Value>) -> HttpError {
    let container = body.get("Container").and_then(Value::as_str).unwrap_or("");
    HttpError {
        status: StatusCode::NOT_FOUND,
        message: format!("No such container: {container} (Shoal runs services, not containers)"),
    }
}

/// IDs and names of the networks some service or task uses: a network is dangling when it
/// is none of them (dockerd: no containers and no services).
async fn networks_in_use(st: &AppState) -> Result<HashSet<String>, HttpError> {
    let mut used = HashSet::new();
    for service in st.services.list_services().await? {
        used.extend(service.spec.task_template.networks.into_iter().map(|n| n.target));
    }
    for task in st.services.list_tasks().await? {
        used.extend(task.networks_attachments.into_iter().map(|a| a.network.id));
    }
    Ok(used)
}

/// dockerd's `filter.Match`: the value itself or, read as a pattern, any part of it (dockerd
/// matches a regular expression; Shoal takes the pattern literally).
fn matches_part(wanted: &[String], value: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| value.contains(w.as_str()))
}

/// A validated `GET /networks` filter.
#[derive(Debug, Default)]
pub struct NetworkFilter {
    names: Vec<String>,
    ids: Vec<String>,
    drivers: Vec<String>,
    scopes: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    /// `type=custom` keeps every Shoal network; `builtin` (bridge, host, none) none of them:
    /// `ingress` is a custom network for dockerd too.
    types: Vec<bool>,
    dangling: Option<bool>,
}

impl NetworkFilter {
    pub fn new(filters: &Filters) -> Result<NetworkFilter, HttpError> {
        filters.validate(NETWORK_FILTERS)?;
        let dangling: Vec<&str> = filters.get("dangling").collect();
        let dangling = match dangling.as_slice() {
            [] => None,
            ["0" | "false"] => Some(false),
            ["1" | "true"] => Some(true),
            [_] => {
                return Err(HttpError::bad_request(
                    r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#,
                ))
            }
            _ => return Err(HttpError::bad_request(r#"got more than one value for filter key "dangling""#)),
        };
        let mut types = Vec::new();
        for t in filters.get("type") {
            match t {
                "custom" => types.push(true),
                "builtin" => types.push(false),
                other => return Err(HttpError::bad_request(format!("invalid filter: 'type'='{other}'"))),
            }
        }
        Ok(NetworkFilter {
            names: filters.get("name").map(str::to_string).collect(),
            ids: filters.get("id").map(str::to_string).collect(),
            drivers: filters.get("driver").map(str::to_string).collect(),
            scopes: filters.get("scope").map(str::to_string).collect(),
            labels: filters.get("label").map(split_label).collect(),
            types,
            dangling,
        })
    }

    /// `in_use`: IDs and names of networks services use (needed only for `dangling`).
    pub fn matches(&self, network: &Network, in_use: &HashSet<String>) -> bool {
        let exact = |wanted: &[String], v: &str| wanted.is_empty() || wanted.iter().any(|w| w == v);
        let used = network.ingress || in_use.contains(&network.id) || in_use.contains(&network.name);
        matches_part(&self.names, &network.name)
            && matches_part(&self.ids, &network.id)
            && exact(&self.drivers, &network.driver)
            && exact(&self.scopes, &network.scope)
            && labels_match(&self.labels, &network.labels)
            && (self.types.is_empty() || self.types.contains(&true))
            && self.dangling.is_none_or(|dangling| dangling != used)
    }
}

/// The `POST /networks/prune` filter: `label`, `label!` and `until` (a timestamp or a Go
/// duration before now), as dockerd accepts them.
#[derive(Debug, Default)]
pub struct PruneFilter {
    labels: Vec<(String, Option<String>)>,
    not_labels: Vec<(String, Option<String>)>,
    until: Option<DateTime<Utc>>,
}

impl PruneFilter {
    pub fn new(filters: &Filters, now: DateTime<Utc>) -> Result<PruneFilter, HttpError> {
        filters.validate(PRUNE_FILTERS)?;
        let until: Vec<&str> = filters.get("until").collect();
        let until = match until.as_slice() {
            [] => None,
            [value] => Some(parse_timestamp(value, now).ok_or_else(|| {
                HttpError::bad_request(format!("failed to parse value as time or duration: {value:?}"))
            })?),
            _ => return Err(HttpError::bad_request("more than one until filter specified")),
        };
        Ok(PruneFilter {
            labels: filters.get("label").map(split_label).collect(),
            not_labels: filters.get("label!").map(split_label).collect(),
            until,
        })
    }

    pub fn matches(&self, network: &Network) -> bool {
        labels_match(&self.labels, &network.labels)
            && (self.not_labels.is_empty()
                || !self.not_labels.iter().any(|l| labels_match(std::slice::from_ref(l), &network.labels)))
            && self.until.is_none_or(|until| network.created < until)
    }
}

/// docker's `timetypes.GetTimestamp` for the forms people use: RFC 3339, a date, Unix seconds
/// (with a fraction), or a Go duration counted back from `now`.
fn parse_timestamp(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if let Ok(secs) = value.parse::<f64>() {
        return DateTime::from_timestamp(secs.trunc() as i64, (secs.fract() * 1e9) as u32);
    }
    let nanos = crate::cli::duration::parse_go_duration(value).ok()?;
    Some(now - chrono::Duration::nanoseconds(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_like_dockers() {
        let now: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| parse_timestamp(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2024-01-02T03:04:05Z").as_deref(), Some("2024-01-02T03:04:05+00:00"));
        assert_eq!(at("2024-01-02").as_deref(), Some("2024-01-02T00:00:00+00:00"));
        assert_eq!(at("0").as_deref(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(at("90m").as_deref(), Some("2024-05-01T10:30:00+00:00"));
        assert_eq!(at("yesterday"), None);
    }
}
