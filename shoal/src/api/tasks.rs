//! `/tasks` and `/tasks/{id}`.
//!
//! The `filters` follow dockerd and swarmkit: `service` and `node` values are resolved the way
//! `GET /services/{id}` and `GET /nodes/{id}` resolve them (ID, name, unique ID prefix) and fail
//! the same way; `id` and `name` are prefixes; `label` matches the service's labels; and the
//! hidden `_up-to-date` keeps tasks whose spec is the service's current task template.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::{Path, State};
use axum::Json;
use control::objects::service::{Service, Task, TaskState};

use super::errors::{HttpError, Params};
use super::filters::{labels_match, split_label, Filters};
use super::AppState;

const TASK_FILTERS: &[&str] = &["desired-state", "id", "label", "name", "node", "runtime", "service", "_up-to-date"];

pub async fn list(State(st): State<AppState>, params: Params) -> Result<Json<Vec<Task>>, HttpError> {
    let filters = Filters::parse(params.get("filters"))?;
    filters.validate(TASK_FILTERS)?;
    let desired_states = parse_desired_states(&filters)?;
    let mut service_ids = HashSet::new();
    for key in filters.get("service") {
        service_ids.insert(st.services.inspect_service(key).await?.id);
    }
    let mut node_ids = HashSet::new();
    for key in filters.get("node") {
        node_ids.insert(st.api.inspect_node(key).await?.id);
    }
    let services = st.services.list_services().await?;
    let filter = TaskFilter {
        ids: filters.get("id").map(str::to_string).collect(),
        names: filters.get("name").map(str::to_string).collect(),
        labels: filters.get("label").map(split_label).collect(),
        service_ids,
        node_ids,
        desired_states,
        up_to_date: filters.get("_up-to-date").next().is_some(),
        services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
    };
    let tasks = st.services.list_tasks().await?;
    Ok(Json(tasks.into_iter().filter(|t| filter.matches(t)).collect()))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Task>, HttpError> {
    Ok(Json(st.services.inspect_task(&id).await?))
}

/// Any task state name is a valid `desired-state` (the CLI documents running, shutdown and
/// accepted); anything else is refused with dockerd's message.
fn parse_desired_states(filters: &Filters) -> Result<Vec<TaskState>, HttpError> {
    let mut states = Vec::new();
    for s in filters.get("desired-state").filter(|s| !s.is_empty()) {
        let state = serde_json::from_value::<TaskState>(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| HttpError::bad_request(format!("Invalid desired-state filter: '{s}'")))?;
        states.push(state);
    }
    Ok(states)
}

/// A validated `GET /tasks` filter with the services it needs to evaluate names, labels and
/// `_up-to-date`.
#[derive(Debug, Default)]
pub struct TaskFilter {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub labels: Vec<(String, Option<String>)>,
    pub service_ids: HashSet<String>,
    pub node_ids: HashSet<String>,
    pub desired_states: Vec<TaskState>,
    pub up_to_date: bool,
    pub services: HashMap<String, Service>,
}

impl TaskFilter {
    pub fn matches(&self, task: &Task) -> bool {
        let service = self.services.get(&task.service_id);
        let prefix_of = |wanted: &[String], v: &str| wanted.is_empty() || wanted.iter().any(|w| v.starts_with(w));
        let labels = || {
            let mut all: BTreeMap<String, String> = service.map(|s| s.spec.labels.clone()).unwrap_or_default();
            all.extend(task.labels.clone());
            all
        };
        prefix_of(&self.ids, &task.id)
            && (self.names.is_empty() || prefix_of(&self.names, &task_name(task, service)))
            && (self.service_ids.is_empty() || self.service_ids.contains(&task.service_id))
            && (self.node_ids.is_empty() || self.node_ids.contains(&task.node_id))
            && (self.desired_states.is_empty() || self.desired_states.contains(&task.desired_state))
            && (self.labels.is_empty() || labels_match(&self.labels, &labels()))
            // swarmkit's "not dirty": the task runs the service's current task template.
            && (!self.up_to_date || service.is_some_and(|s| s.spec.task_template == task.spec))
    }
}

/// swarmkit's `naming.Task`: the stored name, else `<service>.<slot>.<id>` (global services:
/// `<service>.<node>.<id>`).
pub fn task_name(task: &Task, service: Option<&Service>) -> String {
    if !task.name.is_empty() {
        return task.name.clone();
    }
    let service_name = service.map(|s| s.spec.name.as_str()).unwrap_or(&task.service_id);
    if task.slot != 0 {
        format!("{service_name}.{}.{}", task.slot, task.id)
    } else {
        format!("{service_name}.{}.{}", task.node_id, task.id)
    }
}
