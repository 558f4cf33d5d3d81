//! The service and task routes driven in-process against a fake `ServiceApi`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, Utc};
use control::objects::service::*;
use control::objects::*;
use control::{ApiError, ApiResult, ServiceApi, SwarmApi};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;

/// Two services (`web` replicated ×2 with one task of an older spec, `mon` global) on two
/// nodes, held in memory; records what it was asked.
#[derive(Default)]
pub struct FakeServices {
    pub(super) services: Mutex<Vec<Service>>,
    pub(super) tasks: Mutex<Vec<Task>>,
    nodes: Vec<Node>,
    calls: Mutex<Vec<String>>,
}

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap()
}

fn service(id: &str, name: &str, global: bool, labels: &[(&str, &str)]) -> Service {
    let mut spec = ServiceSpec { name: name.into(), ..Default::default() };
    spec.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spec.task_template.container_spec.image = format!("shoal/echo:{name}");
    if global {
        spec.mode.global = Some(GlobalService {});
    } else {
        spec.mode.replicated = Some(ReplicatedService { replicas: Some(2) });
    }
    Service {
        id: id.into(),
        version: Version { index: 7 },
        created_at: t0(),
        updated_at: t0(),
        spec,
        previous_spec: None,
        endpoint: Endpoint::default(),
        update_status: None,
        service_status: Some(ServiceStatus { running_tasks: 1, desired_tasks: 2, completed_tasks: 0 }),
    }
}

fn task(id: &str, service: &Service, slot: u64, node: &str, desired: TaskState, state: TaskState) -> Task {
    Task {
        id: id.into(),
        version: Version { index: 3 },
        created_at: t0(),
        updated_at: t0(),
        name: String::new(),
        labels: Default::default(),
        spec: service.spec.task_template.clone(),
        service_id: service.id.clone(),
        slot,
        node_id: node.into(),
        status: TaskStatus { timestamp: t0(), state, ..Default::default() },
        desired_state: desired,
        networks_attachments: Vec::new(),
    }
}

fn node(id: &str, hostname: &str) -> Node {
    Node {
        id: id.into(),
        version: Version { index: 1 },
        created_at: t0(),
        updated_at: t0(),
        spec: NodeSpec::default(),
        description: NodeDescription { hostname: hostname.into(), ..Default::default() },
        status: NodeStatus { state: NodeState::Ready, message: String::new(), addr: "198.18.0.1".into() },
        manager_status: None,
    }
}

impl FakeServices {
    pub(super) fn cluster() -> Arc<FakeServices> {
        let web = service("websvc111", "web", false, &[("tier", "front")]);
        let mon = service("monsvc222", "mon", true, &[]);
        let mut old = task("oldtask0", &web, 1, "node1id", TaskState::Shutdown, TaskState::Shutdown);
        old.spec.container_spec.image = "shoal/echo:previous".into();
        let tasks = vec![
            task("webtask1", &web, 1, "node1id", TaskState::Running, TaskState::Running),
            old,
            task("webtask2", &web, 2, "node2id", TaskState::Running, TaskState::Starting),
            task("montask1", &mon, 0, "node1id", TaskState::Running, TaskState::Running),
        ];
        Arc::new(FakeServices {
            services: Mutex::new(vec![web, mon]),
            tasks: Mutex::new(tasks),
            nodes: vec![node("node1id", "alpha"), node("node2id", "beta")],
            calls: Mutex::default(),
        })
    }

    fn last_call(&self) -> String {
        self.calls.lock().unwrap().last().cloned().unwrap_or_default()
    }

    fn find(&self, key: &str) -> ApiResult<Service> {
        let services = self.services.lock().unwrap();
        services
            .iter()
            .find(|s| s.id == key || s.spec.name == key)
            .or_else(|| services.iter().find(|s| s.id.starts_with(key)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("service {key} not found")))
    }
}

#[async_trait]
impl ServiceApi for FakeServices {
    async fn create_service(&self, spec: ServiceSpec) -> ApiResult<(String, Vec<String>)> {
        let replicas = spec.mode.replicated.as_ref().and_then(|r| r.replicas);
        self.calls
            .lock()
            .unwrap()
            .push(format!("create {} {} {replicas:?}", spec.name, spec.task_template.container_spec.image));
        Ok(("newsvc".into(), vec![]))
    }
    async fn list_services(&self) -> ApiResult<Vec<Service>> {
        Ok(self.services.lock().unwrap().clone())
    }
    async fn inspect_service(&self, key: &str) -> ApiResult<Service> {
        self.find(key)
    }
    async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: bool,
    ) -> ApiResult<Vec<String>> {
        let service = self.find(key)?;
        if service.version.index != version {
            return Err(ApiError::out_of_sequence());
        }
        if rollback && service.previous_spec.is_none() {
            return Err(ApiError::failed_precondition(format!("service {} does not have a previous spec", service.id)));
        }
        let image = spec.task_template.container_spec.image;
        self.calls.lock().unwrap().push(format!("update {} {version} {image} rollback={rollback}", service.id));
        Ok(vec![])
    }
    async fn remove_service(&self, key: &str) -> ApiResult<()> {
        let id = self.find(key)?.id;
        self.calls.lock().unwrap().push(format!("remove {id}"));
        Ok(())
    }
    async fn list_tasks(&self) -> ApiResult<Vec<Task>> {
        Ok(self.tasks.lock().unwrap().clone())
    }
    async fn inspect_task(&self, key: &str) -> ApiResult<Task> {
        let tasks = self.tasks.lock().unwrap();
        tasks.iter().find(|t| t.id == key).cloned().ok_or_else(|| ApiError::not_found(format!("task {key} not found")))
    }
}

/// Only the node lookups the task filter needs.
#[async_trait]
impl SwarmApi for FakeServices {
    async fn info(&self) -> SwarmInfo {
        SwarmInfo::default()
    }
    async fn init(&self, _: InitRequest) -> ApiResult<String> {
        Err(ApiError::invalid("unused"))
    }
    async fn join(&self, _: JoinRequest) -> ApiResult<()> {
        Err(ApiError::invalid("unused"))
    }
    async fn leave(&self, _: bool) -> ApiResult<()> {
        Err(ApiError::invalid("unused"))
    }
    async fn inspect_swarm(&self) -> ApiResult<Swarm> {
        Err(ApiError::not_in_swarm())
    }
    async fn update_swarm(&self, _: u64, _: SwarmSpec, _: RotateTokens) -> ApiResult<()> {
        Err(ApiError::invalid("unused"))
    }
    async fn list_nodes(&self) -> ApiResult<Vec<Node>> {
        Ok(self.nodes.clone())
    }
    async fn inspect_node(&self, key: &str) -> ApiResult<Node> {
        self.nodes
            .iter()
            .find(|n| n.id == key || n.description.hostname == key)
            .cloned()
            .ok_or_else(|| ApiError::node_not_found(key))
    }
    async fn update_node(&self, _: &str, _: u64, _: NodeSpec) -> ApiResult<()> {
        Err(ApiError::invalid("unused"))
    }
    async fn remove_node(&self, _: &str, _: bool) -> ApiResult<()> {
        Err(ApiError::invalid("unused"))
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
}

async fn call(fake: &Arc<FakeServices>, method: Method, uri: &str, body: &str) -> Answer {
    let engine = super::tests::engine_fixture("alpha");
    let networks = Arc::new(super::network_tests::FakeNetworks::default());
    let mesh = Arc::new(super::mesh::tests::FakeMesh::default());
    let app = router(fake.clone(), fake.clone(), Arc::new(super::logs::tests::FakeLogs), networks, mesh, engine);
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("X-Registry-Auth", "e30=")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Answer { status, body }
}

async fn get(fake: &Arc<FakeServices>, uri: &str) -> Answer {
    call(fake, Method::GET, uri, "").await
}

/// `filters` JSON, percent-encoded for a query string.
fn filters(json: &str) -> String {
    json.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn ids(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body.as_array().unwrap().iter().map(|v| v["ID"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn create_answers_201_with_an_id_and_accepts_docker_bodies() {
    let fake = FakeServices::cluster();
    // What `docker service create --name web2 --replicas 2 shoal/echo` sends: Go nulls and all.
    let body = r#"{"Name":"web2","Labels":null,"TaskTemplate":{"ContainerSpec":{"Image":"shoal/echo:latest",
        "Labels":null,"Args":null,"Env":null,"Init":false,"DNSConfig":{},"Isolation":"default"},
        "Resources":{"Limits":{},"Reservations":{}},"Placement":{},"Networks":null,"ForceUpdate":0},
        "Mode":{"Replicated":{"Replicas":2}},"EndpointSpec":{"Mode":"vip","Ports":null}}"#;
    let a = call(&fake, Method::POST, "/v1.50/services/create", body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body, json!({"ID": "newsvc", "Warnings": []}));
    assert_eq!(fake.last_call(), "create web2 shoal/echo:latest Some(2)");

    let a = call(&fake, Method::POST, "/services/create", r#"{"Name":"x","Mode":{"Replicated":"three"}}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"].as_str().unwrap().starts_with("invalid JSON"), "{}", a.body);
}

#[tokio::test]
async fn status_true_keeps_service_status() {
    let fake = FakeServices::cluster();
    let plain = get(&fake, "/services").await;
    assert!(plain.body.as_array().unwrap().iter().all(|s| s.get("ServiceStatus").is_none()));
    let with = get(&fake, "/services?status=true").await;
    assert_eq!(with.body[0]["ServiceStatus"], json!({"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}));
    let bad = get(&fake, "/services?status=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["message"], "invalid value for status: maybe");
}

#[tokio::test]
async fn service_filters() {
    let fake = FakeServices::cluster();
    let list = |f: &str| {
        let fake = fake.clone();
        let uri = format!("/services?filters={}", filters(f));
        async move { get(&fake, &uri).await }
    };
    assert_eq!(ids(&list(r#"{"name":{"we":true}}"#).await), ["websvc111"]);
    assert_eq!(ids(&list(r#"{"id":["mon"]}"#).await), ["monsvc222"]);
    assert_eq!(ids(&list(r#"{"mode":{"global":true}}"#).await), ["monsvc222"]);
    assert_eq!(ids(&list(r#"{"label":["tier=front"]}"#).await), ["websvc111"]);
    assert!(ids(&list(r#"{"label":["tier=back"]}"#).await).is_empty());
    let a = list(r#"{"colour":["red"]}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["message"], "invalid filter 'colour'");
}

#[tokio::test]
async fn task_filters_resolve_services_and_nodes() {
    let fake = FakeServices::cluster();
    let list = |f: &str| {
        let fake = fake.clone();
        let uri = format!("/tasks?filters={}", filters(f));
        async move { get(&fake, &uri).await }
    };
    assert_eq!(ids(&get(&fake, "/tasks").await).len(), 4);
    // By service name or ID, as the docker CLI's `service ps` and progress display send them.
    assert_eq!(ids(&list(r#"{"service":{"web":true}}"#).await), ["webtask1", "oldtask0", "webtask2"]);
    assert_eq!(ids(&list(r#"{"service":["websvc111"],"desired-state":["running"]}"#).await), ["webtask1", "webtask2"]);
    assert_eq!(ids(&list(r#"{"desired-state":["shutdown"]}"#).await), ["oldtask0"]);
    assert_eq!(ids(&list(r#"{"desired-state":["running","shutdown"],"node":["beta"]}"#).await), ["webtask2"]);
    assert_eq!(ids(&list(r#"{"node":["node1id"],"service":["mon"]}"#).await), ["montask1"]);
    // The old task runs a spec the service no longer has.
    assert_eq!(
        ids(&list(r#"{"service":{"websvc111":true},"_up-to-date":{"true":true}}"#).await),
        ["webtask1", "webtask2"]
    );
    assert_eq!(ids(&list(r#"{"name":["web.2"]}"#).await), ["webtask2"]);
    assert_eq!(ids(&list(r#"{"label":["tier"]}"#).await), ["webtask1", "oldtask0", "webtask2"]);

    let a = list(r#"{"service":["nope"]}"#).await;
    assert_eq!((a.status, a.body["message"].as_str().unwrap()), (StatusCode::NOT_FOUND, "service nope not found"));
    let a = list(r#"{"node":["gamma"]}"#).await;
    assert_eq!((a.status, a.body["message"].as_str().unwrap()), (StatusCode::NOT_FOUND, "node gamma not found"));
    let a = list(r#"{"desired-state":["sleeping"]}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["message"], "Invalid desired-state filter: 'sleeping'");

    let a = get(&fake, "/v1.51/tasks/montask1").await;
    assert_eq!(a.body["ServiceID"], "monsvc222");
    assert_eq!(get(&fake, "/tasks/zzz").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn update_passes_version_and_rollback() {
    let fake = FakeServices::cluster();
    fake.services.lock().unwrap()[0].previous_spec = Some(ServiceSpec::default());
    let spec = serde_json::to_string(&fake.find("web").unwrap().spec).unwrap();

    let a = call(&fake, Method::POST, "/services/web/update?version=7&registryAuthFrom=spec", &spec).await;
    assert_eq!((a.status, &a.body), (StatusCode::OK, &json!({"Warnings": []})));
    assert_eq!(fake.last_call(), "update websvc111 7 shoal/echo:web rollback=false");

    let a = call(&fake, Method::POST, "/v1.51/services/websvc111/update?version=7&rollback=previous", &spec).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.last_call(), "update websvc111 7 shoal/echo:web rollback=true");

    let a = call(&fake, Method::POST, "/services/mon/update?version=7&rollback=previous", &spec).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.body["message"],
        "rpc error: code = FailedPrecondition desc = service monsvc222 does not have a previous spec"
    );

    for (uri, want) in [
        ("/services/web/update", r#"invalid service version '': strconv.ParseUint: parsing "": invalid syntax"#),
        ("/services/web/update?version=6", "rpc error: code = Unknown desc = update out of sequence"),
        ("/services/web/update?version=7&rollback=next", "unrecognized rollback option next"),
        ("/services/web/update?version=7&registryAuthFrom=x", "unsupported registryAuthFrom value"),
    ] {
        let a = call(&fake, Method::POST, uri, &spec).await;
        assert_eq!((a.status, a.body["message"].as_str().unwrap()), (StatusCode::BAD_REQUEST, want), "{uri}");
    }
}

#[tokio::test]
async fn inspect_inserts_defaults_on_request() {
    let fake = FakeServices::cluster();
    let plain = get(&fake, "/services/web").await.body;
    assert!(plain["Spec"].get("UpdateConfig").is_none());
    let full = get(&fake, "/services/web?insertDefaults=true").await.body;
    assert_eq!(
        full["Spec"]["UpdateConfig"],
        json!({"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": 5_000_000_000i64,
               "MaxFailureRatio": 0.0, "Order": "stop-first"})
    );
    assert_eq!(full["Spec"]["TaskTemplate"]["RestartPolicy"]["Delay"], 5_000_000_000i64);
    assert_eq!(full["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"], 10_000_000_000i64);
}

#[tokio::test]
async fn errors_keep_status_codes() {
    let fake = FakeServices::cluster();
    let a = get(&fake, "/services/nope").await;
    assert_eq!((a.status, a.body["message"].as_str().unwrap()), (StatusCode::NOT_FOUND, "service nope not found"));
    let a = call(&fake, Method::DELETE, "/services/nope", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(&fake, Method::DELETE, "/v1.51/services/mon", "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.last_call(), "remove monsvc222");
    // No registry: the docker CLI only warns and goes on.
    let a = get(&fake, "/v1.50/distribution/shoal/echo:latest/json").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["message"].as_str().unwrap().contains("shoal/echo:latest"), "{}", a.body);
}
