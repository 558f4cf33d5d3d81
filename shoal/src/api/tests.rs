//! The router driven in-process against a fake `SwarmApi`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use control::objects::*;
use control::{ApiError, ApiResult, SwarmApi};
use http_body_util::BodyExt;
use mesh_agent::host::HostFacts;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, EngineFacts};

/// A cluster of three nodes held in memory; records what it was asked.
#[derive(Default)]
struct Fake {
    info: Mutex<SwarmInfo>,
    nodes: Mutex<Vec<Node>>,
    calls: Mutex<Vec<String>>,
}

fn node(id: &str, hostname: &str, role: NodeRole, labels: &[(&str, &str)], engine_labels: &[(&str, &str)]) -> Node {
    let t = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
    let to_map = |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Node {
        id: id.into(),
        version: Version { index: 10 },
        created_at: t,
        updated_at: t,
        spec: NodeSpec { name: None, labels: to_map(labels), role, availability: NodeAvailability::Active },
        description: NodeDescription {
            hostname: hostname.into(),
            engine: EngineDescription {
                engine_version: "0.1.0".into(),
                labels: to_map(engine_labels),
                plugins: vec![],
            },
            ..Default::default()
        },
        status: NodeStatus { state: NodeState::Ready, message: String::new(), addr: "198.18.0.1".into() },
        manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
            leader: true,
            reachability: Reachability::Reachable,
            addr: "198.18.0.1:2377".into(),
        }),
    }
}

impl Fake {
    fn cluster() -> Arc<Fake> {
        let fake = Fake::default();
        *fake.nodes.lock().unwrap() = vec![
            node("aaa111", "node1", NodeRole::Manager, &[("zone", "a")], &[("disk", "ssd")]),
            node("bbb222", "node2", NodeRole::Worker, &[("zone", "b")], &[]),
            node("abc333", "node3", NodeRole::Worker, &[("zone", "a"), ("gpu", "")], &[]),
        ];
        Arc::new(fake)
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn find(&self, key: &str) -> ApiResult<Node> {
        let nodes = self.nodes.lock().unwrap();
        nodes
            .iter()
            .find(|n| n.id == key || n.description.hostname == key)
            .cloned()
            .ok_or_else(|| ApiError::node_not_found(key))
    }
}

#[async_trait]
impl SwarmApi for Fake {
    async fn info(&self) -> SwarmInfo {
        self.info.lock().unwrap().clone()
    }
    async fn init(&self, req: InitRequest) -> ApiResult<String> {
        self.record(format!("init {} {:?}", req.listen_addr, req.availability));
        Ok("newnodeid".into())
    }
    async fn join(&self, req: JoinRequest) -> ApiResult<()> {
        self.record(format!("join {:?} {}", req.remote_addrs, req.join_token));
        Ok(())
    }
    async fn leave(&self, force: bool) -> ApiResult<()> {
        self.record(format!("leave {force}"));
        Err(ApiError::invalid("This node is not part of a swarm"))
    }
    async fn inspect_swarm(&self) -> ApiResult<Swarm> {
        Err(ApiError::not_in_swarm())
    }
    async fn update_swarm(&self, version: u64, spec: SwarmSpec, rotate: RotateTokens) -> ApiResult<()> {
        self.record(format!("update_swarm {version} {} {rotate:?}", spec.dispatcher.heartbeat_period));
        Ok(())
    }
    async fn list_nodes(&self) -> ApiResult<Vec<Node>> {
        Ok(self.nodes.lock().unwrap().clone())
    }
    async fn inspect_node(&self, key: &str) -> ApiResult<Node> {
        self.find(key)
    }
    async fn update_node(&self, key: &str, version: u64, spec: NodeSpec) -> ApiResult<()> {
        let node = self.find(key)?;
        if node.version.index != version {
            return Err(ApiError::out_of_sequence());
        }
        self.record(format!("update_node {key} {version} {:?}", spec.availability));
        Ok(())
    }
    async fn remove_node(&self, key: &str, force: bool) -> ApiResult<()> {
        self.record(format!("remove_node {key} {force}"));
        Ok(())
    }
}

/// The engine every router test runs as, on host `hostname`.
pub(super) fn engine_fixture(hostname: &str) -> EngineFacts {
    EngineFacts {
        host: HostFacts {
            hostname: hostname.into(),
            architecture: "x86_64".into(),
            os: "linux".into(),
            kernel_version: "6.18.0".into(),
            operating_system: "Debian GNU/Linux 13 (trixie)".into(),
            ncpu: 2,
            mem_total: 1 << 30,
        },
        engine_id: "engine-1".into(),
        data_root: PathBuf::from("/var/lib/shoal"),
    }
}

fn app(fake: &Arc<Fake>) -> Router {
    let engine = engine_fixture("node1");
    router(
        fake.clone(),
        Arc::new(super::service_tests::FakeServices::default()),
        Arc::new(super::logs::tests::FakeLogs),
        Arc::new(super::network_tests::FakeNetworks::default()),
        Arc::new(super::mesh::tests::FakeMesh::default()),
        engine,
    )
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn message(&self) -> String {
        assert_eq!(self.headers["content-type"], "application/json", "error bodies are JSON");
        self.json()["message"].as_str().expect("a message").to_string()
    }
}

async fn call(fake: &Arc<Fake>, method: Method, uri: &str, body: &str) -> Answer {
    let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    let resp = app(fake).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

async fn get(fake: &Arc<Fake>, uri: &str) -> Answer {
    call(fake, Method::GET, uri, "").await
}

#[tokio::test]
async fn ping_reports_versions_and_swarm_state() {
    let fake = Fake::cluster();
    let a = get(&fake, "/_ping").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"OK");
    for (name, value) in [
        ("api-version", "1.51"),
        ("ostype", "linux"),
        ("docker-experimental", "false"),
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
        ("swarm", "inactive"),
    ] {
        assert_eq!(a.headers[name], value, "{name}");
    }

    let cases = [
        (LocalNodeState::Active, true, "active/manager"),
        (LocalNodeState::Active, false, "active/worker"),
        (LocalNodeState::Pending, false, "pending"),
        (LocalNodeState::Locked, false, "locked"),
        (LocalNodeState::Error, false, "error"),
    ];
    for (state, control, want) in cases {
        *fake.info.lock().unwrap() =
            SwarmInfo { local_node_state: state, control_available: control, ..Default::default() };
        let a = call(&fake, Method::HEAD, "/v1.50/_ping", "").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.headers["swarm"], want);
        assert!(a.body.is_empty(), "HEAD has no body");
    }
}

#[tokio::test]
async fn version_prefixes_are_accepted_within_range() {
    let fake = Fake::cluster();
    for uri in ["/info", "/v1.24/info", "/v1.40/info", "/v1.51/info"] {
        let a = get(&fake, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.headers["api-version"], "1.51");
        assert_eq!(a.json()["Name"], "node1");
    }
    let a = get(&fake, "/v1.52/info").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "client version 1.52 is too new. Maximum supported API version is 1.51");
    let a = get(&fake, "/v1.12/info").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().starts_with("client version 1.12 is too old. Minimum supported API version is 1.24"));
    // The query string survives the rewrite.
    let a = get(&fake, "/v1.51/nodes?filters=%7B%22role%22%3A%5B%22manager%22%5D%7D").await;
    assert_eq!(a.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let fake = Fake::cluster();
    for uri in ["/nope", "/v1.51/containers/json", "/vfoo/info"] {
        let a = get(&fake, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(a.message(), "page not found");
    }
    let a = call(&fake, Method::PUT, "/swarm/init", "").await;
    assert_eq!(a.message(), "page not found");
}

#[tokio::test]
async fn version_and_info_carry_what_the_docker_cli_prints() {
    let fake = Fake::cluster();
    let v = get(&fake, "/version").await.json();
    assert_eq!(v["ApiVersion"], "1.51");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Arch"], "amd64");
    assert_eq!(v["Platform"]["Name"], "Shoal");
    assert_eq!(v["Components"][0]["Name"], "Engine");
    assert_eq!(v["Components"][0]["Details"]["MinAPIVersion"], "1.24");

    *fake.info.lock().unwrap() = SwarmInfo {
        node_id: "aaa111".into(),
        local_node_state: LocalNodeState::Active,
        control_available: true,
        managers: Some(1),
        nodes: Some(3),
        ..Default::default()
    };
    let i = get(&fake, "/v1.51/info").await.json();
    assert_eq!(i["NCPU"], 2);
    assert_eq!(i["OSType"], "linux");
    assert_eq!(i["Architecture"], "x86_64");
    assert_eq!(i["Driver"], "shoal");
    assert_eq!(i["Plugins"]["Network"], json!(["overlay"]));
    assert_eq!(i["Swarm"]["NodeID"], "aaa111");
    assert_eq!(i["Swarm"]["LocalNodeState"], "active");
    assert_eq!(i["Swarm"]["ControlAvailable"], true);
    assert_eq!(i["Swarm"]["Nodes"], 3);
}

#[tokio::test]
async fn init_answers_a_json_string_and_accepts_go_bodies() {
    let fake = Fake::cluster();
    let body = r#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DefaultAddrPool":null,"Availability":"",
        "Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},
        "CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}}}"#;
    let a = call(&fake, Method::POST, "/v1.51/swarm/init", body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, br#""newnodeid""#);
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), "init 0.0.0.0:2377 None");

    let a = call(&fake, Method::POST, "/swarm/join", r#"{"RemoteAddrs":["198.18.0.1:2377"],"JoinToken":"T"}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), r#"join ["198.18.0.1:2377"] T"#);
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_message() {
    let fake = Fake::cluster();
    for (uri, body) in [
        ("/swarm/init", "{"),
        ("/swarm/join", r#"{"RemoteAddrs":"not a list"}"#),
        ("/nodes/aaa111/update?version=10", "[1,2]"),
        ("/swarm/update?version=1", "nope"),
    ] {
        let a = call(&fake, Method::POST, uri, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.message().starts_with("invalid JSON: "), "{uri}: {}", a.message());
    }
    assert!(fake.calls.lock().unwrap().is_empty(), "nothing reached the control plane");
}

#[tokio::test]
async fn control_errors_keep_their_status_and_wording() {
    let fake = Fake::cluster();
    let a = get(&fake, "/nodes/zzz").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "node zzz not found");

    let a = get(&fake, "/v1.51/swarm").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.message().starts_with("This node is not a swarm manager."));

    let a = call(&fake, Method::POST, "/swarm/leave?force=1", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "This node is not part of a swarm");
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), "leave true");
}

#[tokio::test]
async fn node_update_needs_a_current_version() {
    let fake = Fake::cluster();
    let spec = r#"{"Labels":{},"Role":"worker","Availability":"drain"}"#;
    let a = call(&fake, Method::POST, "/nodes/bbb222/update", spec).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), r#"invalid node version '': strconv.ParseUint: parsing "": invalid syntax"#);
    let a = call(&fake, Method::POST, "/nodes/bbb222/update?version=abc", spec).await;
    assert_eq!(a.message(), r#"invalid node version 'abc': strconv.ParseUint: parsing "abc": invalid syntax"#);

    let a = call(&fake, Method::POST, "/nodes/bbb222/update?version=9", spec).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "rpc error: code = Unknown desc = update out of sequence");

    let a = call(&fake, Method::POST, "/v1.51/nodes/bbb222/update?version=10", spec).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), "update_node bbb222 10 Drain");
}

#[tokio::test]
async fn swarm_update_passes_version_and_rotation() {
    let fake = Fake::cluster();
    let spec = serde_json::to_string(&SwarmSpec::default()).unwrap();
    let a = call(&fake, Method::POST, "/swarm/update?version=7&rotateWorkerToken=true", &spec).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        fake.calls.lock().unwrap().last().unwrap(),
        "update_swarm 7 5000000000 RotateTokens { worker: true, manager: false }"
    );
    let a = call(&fake, Method::POST, "/swarm/update?version=7&rotateManagerToken=maybe", &spec).await;
    assert_eq!(a.message(), "invalid value for rotateManagerToken: maybe");
    let a = call(&fake, Method::POST, "/swarm/update", &spec).await;
    assert!(a.message().starts_with("invalid swarm version ''"));
}

#[tokio::test]
async fn node_filters() {
    let fake = Fake::cluster();
    let ids = |a: Answer| -> Vec<String> {
        assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
        a.json().as_array().unwrap().iter().map(|n| n["ID"].as_str().unwrap().to_string()).collect()
    };
    let list = |filters: &str| {
        let fake = fake.clone();
        let encoded: String = filters
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        async move { get(&fake, &format!("/nodes?filters={encoded}")).await }
    };
    assert_eq!(ids(get(&fake, "/nodes").await), ["aaa111", "bbb222", "abc333"]);
    assert_eq!(ids(list(r#"{"role":{"manager":true}}"#).await), ["aaa111"]);
    assert_eq!(ids(list(r#"{"role":["worker"]}"#).await), ["bbb222", "abc333"]);
    assert_eq!(ids(list(r#"{"role":["worker","manager"]}"#).await), ["aaa111", "bbb222", "abc333"]);
    assert_eq!(ids(list(r#"{"id":["a"]}"#).await), ["aaa111", "abc333"]);
    assert_eq!(ids(list(r#"{"id":["a"],"role":["worker"]}"#).await), ["abc333"]);
    assert_eq!(ids(list(r#"{"name":{"node2":true}}"#).await), ["bbb222"]);
    assert_eq!(ids(list(r#"{"name":["node"]}"#).await), ["aaa111", "bbb222", "abc333"]);
    assert_eq!(ids(list(r#"{"node.label":["zone=a"]}"#).await), ["aaa111", "abc333"]);
    assert_eq!(ids(list(r#"{"node.label":["zone=a","gpu"]}"#).await), ["abc333"]);
    assert_eq!(ids(list(r#"{"label":["disk=ssd"]}"#).await), ["aaa111"]);
    assert_eq!(ids(list(r#"{"membership":["accepted"]}"#).await).len(), 3);
    assert!(ids(list(r#"{"membership":["pending"]}"#).await).is_empty());

    let a = list(r#"{"colour":["red"]}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid filter 'colour'");
    let a = list("{broken").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid filter");
}

#[tokio::test]
async fn node_remove_passes_force() {
    let fake = Fake::cluster();
    let a = call(&fake, Method::DELETE, "/v1.51/nodes/bbb222?force=true", "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), "remove_node bbb222 true");
    call(&fake, Method::DELETE, "/nodes/bbb222", "").await;
    assert_eq!(fake.calls.lock().unwrap().last().unwrap(), "remove_node bbb222 false");
}
