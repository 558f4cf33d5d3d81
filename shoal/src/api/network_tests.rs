//! The network routes driven in-process against a fake `NetworkApi`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use control::objects::network::*;
use control::objects::service::NetworkAttachmentConfig;
use control::objects::Version;
use control::{ApiError, ApiResult, NetworkApi};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use super::service_tests::FakeServices;

/// Networks held in memory, looked up as the control plane does (ID, name, unique ID prefix);
/// a network named in `in_use` refuses removal. Records what it was asked.
#[derive(Default)]
pub struct FakeNetworks {
    networks: Mutex<Vec<Network>>,
    in_use: Vec<String>,
    created: Mutex<Vec<NetworkCreateRequest>>,
    removed: Mutex<Vec<String>>,
}

fn network(id: &str, name: &str, created: &str, labels: &[(&str, &str)]) -> Network {
    Network {
        name: name.into(),
        id: id.into(),
        created: created.parse().unwrap(),
        scope: "swarm".into(),
        driver: "overlay".into(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: Ipam {
            config: vec![IpamConfig { subnet: "10.0.1.0/24".into(), gateway: "10.0.1.1".into(), ..Default::default() }],
            ..Default::default()
        },
        internal: false,
        attachable: false,
        ingress: name == INGRESS_NETWORK,
        config_from: ConfigReference::default(),
        config_only: false,
        containers: BTreeMap::new(),
        options: BTreeMap::from([(VXLAN_ID_OPTION.to_string(), "4097".to_string())]),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        peers: vec![],
        version: Version { index: 5 },
    }
}

impl FakeNetworks {
    /// `ingress`, `appnet` (used by the service `web`), `backend` and `spare` (unused).
    fn cluster() -> Arc<FakeNetworks> {
        Arc::new(FakeNetworks {
            networks: Mutex::new(vec![
                network("ingressid0001", "ingress", "2024-01-01T00:00:00Z", &[]),
                network("appnetid0002", "appnet", "2024-02-01T00:00:00Z", &[("tier", "front")]),
                network("backendid0003", "backend", "2024-03-01T00:00:00Z", &[("tier", "back")]),
                network("spareid0004", "spare", "2024-04-01T00:00:00Z", &[]),
            ]),
            in_use: vec!["appnetid0002".into()],
            ..Default::default()
        })
    }

    fn find(&self, key: &str) -> ApiResult<Network> {
        let networks = self.networks.lock().unwrap();
        let prefixed: Vec<&Network> = networks.iter().filter(|n| n.id.starts_with(key)).collect();
        networks
            .iter()
            .find(|n| n.id == key || n.name == key)
            .or(if prefixed.len() == 1 { Some(prefixed[0]) } else { None })
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))
    }
}

#[async_trait]
impl NetworkApi for FakeNetworks {
    async fn create_network(&self, req: NetworkCreateRequest) -> ApiResult<NetworkCreateResponse> {
        if req.enable_ipv6 == Some(true) {
            return Err(ApiError::invalid("IPv6 is not supported on Shoal overlay networks"));
        }
        self.created.lock().unwrap().push(req);
        Ok(NetworkCreateResponse { id: "newnetid".into(), warning: String::new() })
    }
    async fn list_networks(&self) -> ApiResult<Vec<Network>> {
        Ok(self.networks.lock().unwrap().clone())
    }
    async fn inspect_network(&self, key: &str) -> ApiResult<Network> {
        self.find(key)
    }
    async fn remove_network(&self, key: &str) -> ApiResult<()> {
        let network = self.find(key)?;
        if self.in_use.contains(&network.id) {
            return Err(ApiError::failed_precondition(format!(
                "network {} is in use by service websvc111",
                network.id
            )));
        }
        self.networks.lock().unwrap().retain(|n| n.id != network.id);
        self.removed.lock().unwrap().push(network.id);
        Ok(())
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
}

async fn call(fake: &Arc<FakeNetworks>, method: Method, uri: &str, body: &str) -> Answer {
    let services = FakeServices::cluster();
    // The service `web` is attached to `appnet`, by ID as dockerd stores it.
    services.services.lock().unwrap()[0].spec.task_template.networks =
        vec![NetworkAttachmentConfig { target: "appnetid0002".into(), ..Default::default() }];
    let engine = super::tests::engine_fixture("alpha");
    let mesh = Arc::new(super::mesh::tests::FakeMesh::default());
    let app = router(services.clone(), services, Arc::new(super::logs::tests::FakeLogs), fake.clone(), mesh, engine);
    let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Answer { status, body }
}

async fn get(fake: &Arc<FakeNetworks>, uri: &str) -> Answer {
    call(fake, Method::GET, uri, "").await
}

fn message(a: &Answer) -> (StatusCode, &str) {
    (a.status, a.body["message"].as_str().unwrap_or_else(|| panic!("no message in {}", a.body)))
}

/// `filters` JSON, percent-encoded for a query string.
fn filters(json: &str) -> String {
    json.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn names(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body.as_array().unwrap().iter().map(|v| v["Name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn create_takes_the_docker_cli_body() {
    let fake = FakeNetworks::cluster();
    // docker 28: `docker network create -d overlay --subnet 10.1.0.0/24 --gateway 10.1.0.1
    // --ip-range 10.1.0.128/25 --attachable --internal -o com.docker.network.driver.mtu=1400
    // --label a=b net1`.
    let body = r#"{"Driver":"overlay","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.1.0.0/24","IPRange":"10.1.0.128/25","Gateway":"10.1.0.1"}]},"Internal":true,"Attachable":true,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"com.docker.network.driver.mtu":"1400"},"Labels":{"a":"b"},"Name":"net1"}"#;
    let a = call(&fake, Method::POST, "/v1.51/networks/create", body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body, json!({"Id": "newnetid", "Warning": ""}));
    let want = NetworkCreateRequest {
        name: "net1".into(),
        driver: "overlay".into(),
        internal: true,
        attachable: true,
        ipam: Some(Ipam {
            driver: "default".into(),
            config: vec![IpamConfig {
                subnet: "10.1.0.0/24".into(),
                ip_range: "10.1.0.128/25".into(),
                gateway: "10.1.0.1".into(),
                auxiliary_addresses: BTreeMap::new(),
            }],
            options: BTreeMap::new(),
        }),
        options: BTreeMap::from([(MTU_OPTION.to_string(), "1400".to_string())]),
        labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
        ..Default::default()
    };
    assert_eq!(fake.created.lock().unwrap().last(), Some(&want));

    // Errors of the control plane keep their status and message.
    let a = call(&fake, Method::POST, "/networks/create", r#"{"Name":"v6","EnableIPv6":true}"#).await;
    assert_eq!(message(&a), (StatusCode::BAD_REQUEST, "IPv6 is not supported on Shoal overlay networks"));
    // Bodies are checked like the other routes'.
    let a = call(&fake, Method::POST, "/networks/create", "{not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(message(&a).1.starts_with("invalid JSON: "), "{}", a.body);
    let a = call(&fake, Method::POST, "/networks/create", r#"{"Name":"x","Internal":"yes"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(fake.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn list_applies_dockerds_filters() {
    let fake = FakeNetworks::cluster();
    let list = |f: &str| {
        let fake = fake.clone();
        let uri = format!("/networks?filters={}", filters(f));
        async move { get(&fake, &uri).await }
    };
    assert_eq!(names(&get(&fake, "/v1.44/networks").await), ["ingress", "appnet", "backend", "spare"]);
    // name: any part of the name; id: any part of the ID (dockerd matches both as patterns).
    assert_eq!(names(&list(r#"{"name":{"net":true}}"#).await), ["appnet"]);
    assert_eq!(names(&list(r#"{"name":["back","spa"]}"#).await), ["backend", "spare"]);
    assert_eq!(names(&list(r#"{"id":["backendid"]}"#).await), ["backend"]);
    assert_eq!(names(&list(r#"{"id":["0004"]}"#).await), ["spare"]);
    assert_eq!(names(&list(r#"{"driver":["overlay"],"scope":["swarm"]}"#).await).len(), 4);
    assert!(names(&list(r#"{"driver":["bridge"]}"#).await).is_empty());
    assert!(names(&list(r#"{"scope":["local"]}"#).await).is_empty());
    assert_eq!(names(&list(r#"{"label":["tier"]}"#).await), ["appnet", "backend"]);
    assert_eq!(names(&list(r#"{"label":["tier=back"]}"#).await), ["backend"]);
    // ingress is a custom network for dockerd; bridge, host and none (builtin) do not exist here.
    assert_eq!(names(&list(r#"{"type":["custom"]}"#).await).len(), 4);
    assert!(names(&list(r#"{"type":["builtin"]}"#).await).is_empty());
    assert_eq!(names(&list(r#"{"type":["builtin","custom"]}"#).await).len(), 4);
    // Dangling: used by no service (ingress carries the routing mesh, always in use).
    assert_eq!(names(&list(r#"{"dangling":["true"]}"#).await), ["backend", "spare"]);
    assert_eq!(names(&list(r#"{"dangling":["0"]}"#).await), ["ingress", "appnet"]);

    for (f, want) in [
        (r#"{"colour":["red"]}"#, "invalid filter 'colour'"),
        (r#"{"type":["special"]}"#, "invalid filter: 'type'='special'"),
        (
            r#"{"dangling":["maybe"]}"#,
            r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#,
        ),
        (r#"{"dangling":["true","false"]}"#, r#"got more than one value for filter key "dangling""#),
        ("{", "invalid filter"),
    ] {
        assert_eq!(message(&list(f).await), (StatusCode::BAD_REQUEST, want), "{f}");
    }
}

#[tokio::test]
async fn inspect_finds_by_id_name_or_prefix() {
    let fake = FakeNetworks::cluster();
    let a = get(&fake, "/v1.51/networks/appnet").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["Id"], "appnetid0002");
    assert_eq!(a.body["Scope"], "swarm");
    assert_eq!(a.body["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
    assert_eq!(get(&fake, "/networks/spare?verbose=true&scope=swarm").await.body["Name"], "spare");
    assert_eq!(get(&fake, "/networks/backendid").await.body["Name"], "backend");

    assert_eq!(message(&get(&fake, "/networks/nope").await), (StatusCode::NOT_FOUND, "network nope not found"));
    // Only swarm-scoped networks exist: the local scope has none.
    assert_eq!(
        message(&get(&fake, "/networks/appnet?scope=local").await),
        (StatusCode::NOT_FOUND, "network appnet not found")
    );
    assert_eq!(
        message(&get(&fake, "/networks/appnet?scope=galaxy").await),
        (StatusCode::BAD_REQUEST, "invalid scope value: galaxy")
    );
    assert_eq!(
        message(&get(&fake, "/networks/appnet?verbose=lots").await),
        (StatusCode::BAD_REQUEST, "invalid value for verbose: lots")
    );
}

#[tokio::test]
async fn remove_answers_204_or_the_control_planes_refusal() {
    let fake = FakeNetworks::cluster();
    let a = call(&fake, Method::DELETE, "/v1.51/networks/spare", "").await;
    assert_eq!((a.status, &a.body), (StatusCode::NO_CONTENT, &Value::Null));
    assert_eq!(*fake.removed.lock().unwrap(), ["spareid0004"]);
    let a = call(&fake, Method::DELETE, "/networks/spare", "").await;
    assert_eq!(message(&a), (StatusCode::NOT_FOUND, "network spare not found"));
    let a = call(&fake, Method::DELETE, "/networks/appnet", "").await;
    assert_eq!(
        message(&a),
        (
            StatusCode::BAD_REQUEST,
            "rpc error: code = FailedPrecondition desc = network appnetid0002 is in use by service websvc111"
        )
    );
}

#[tokio::test]
async fn prune_removes_unused_networks_but_ingress() {
    let fake = FakeNetworks::cluster();
    let a = call(&fake, Method::POST, "/networks/prune?filters=", "").await;
    assert_eq!((a.status, &a.body), (StatusCode::OK, &json!({"NetworksDeleted": ["backend", "spare"]})));
    assert_eq!(*fake.removed.lock().unwrap(), ["backendid0003", "spareid0004"]);
    let a = call(&fake, Method::POST, "/networks/prune", "").await;
    assert_eq!(a.body, json!({"NetworksDeleted": []}));
    let names =
        |fake: &Arc<FakeNetworks>| fake.networks.lock().unwrap().iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fake), ["ingress", "appnet"]);
}

#[tokio::test]
async fn prune_filters() {
    let fake = FakeNetworks::cluster();
    let prune = |f: &str| {
        let fake = fake.clone();
        let uri = format!("/networks/prune?filters={}", filters(f));
        async move { call(&fake, Method::POST, &uri, "").await }
    };
    assert_eq!(prune(r#"{"label":["tier=back"]}"#).await.body, json!({"NetworksDeleted": ["backend"]}));
    assert_eq!(prune(r#"{"until":["2024-03-15T00:00:00Z"]}"#).await.body, json!({"NetworksDeleted": []}));
    assert_eq!(prune(r#"{"label!":["tier"]}"#).await.body, json!({"NetworksDeleted": ["spare"]}));
    let a = prune(r#"{"dangling":["true"]}"#).await;
    assert_eq!(message(&a), (StatusCode::BAD_REQUEST, "invalid filter 'dangling'"));
    let a = prune(r#"{"until":["someday"]}"#).await;
    assert_eq!(message(&a), (StatusCode::BAD_REQUEST, r#"failed to parse value as time or duration: "someday""#));
}

#[tokio::test]
async fn containers_cannot_be_connected() {
    let fake = FakeNetworks::cluster();
    for verb in ["connect", "disconnect"] {
        let a = call(&fake, Method::POST, &format!("/v1.51/networks/appnet/{verb}"), r#"{"Container":"c1"}"#).await;
        assert_eq!(message(&a), (StatusCode::NOT_FOUND, "No such container: c1 (Shoal runs services, not containers)"));
    }
}
