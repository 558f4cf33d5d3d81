//! `GET /shoal/mesh`: the answering node's eBPF load-balancer table (Shoal's own path, not
//! Docker's; it takes the same `/v1.NN` prefixes as every other route).

use axum::extract::State;
use axum::Json;
use control::api::MeshTable;

use super::errors::HttpError;
use super::AppState;

pub async fn table(State(st): State<AppState>) -> Result<Json<MeshTable>, HttpError> {
    Ok(Json(st.mesh.mesh_table().await?))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use control::api::{MeshApi, MeshCounters, MeshKind, MeshService, MeshTable};
    use control::objects::service::PortProtocol;
    use control::{ApiError, ApiResult};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::super::service_tests::FakeServices;

    /// A node's mesh with one published port; `broken` makes reading it fail.
    #[derive(Default)]
    pub(crate) struct FakeMesh {
        pub broken: bool,
    }

    #[async_trait::async_trait]
    impl MeshApi for FakeMesh {
        async fn mesh_table(&self) -> ApiResult<MeshTable> {
            if self.broken {
                return Err(ApiError::internal("reading the routing mesh: map gone"));
            }
            Ok(MeshTable {
                node_id: "node1id".into(),
                services: vec![MeshService {
                    service_id: "s1".into(),
                    service_name: "web".into(),
                    kind: MeshKind::Published,
                    network: "ingress".into(),
                    address: "198.18.0.1".parse().unwrap(),
                    port: 8080,
                    protocol: PortProtocol::Tcp,
                    scheduler: "maglev".into(),
                    counters: MeshCounters { new_flows: 7, ..Default::default() },
                    backends: Vec::new(),
                }],
                ..Default::default()
            })
        }
    }

    async fn get(mesh: FakeMesh, uri: &str) -> (StatusCode, Value) {
        let services = FakeServices::cluster();
        let app = super::super::router(
            services.clone(),
            services,
            Arc::new(super::super::logs::tests::FakeLogs),
            Arc::new(super::super::network_tests::FakeNetworks::default()),
            Arc::new(mesh),
            super::super::tests::engine_fixture("alpha"),
        );
        let resp = app.oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn serves_the_table_with_and_without_a_version_prefix() {
        for uri in ["/shoal/mesh", "/v1.51/shoal/mesh", "/v1.24/shoal/mesh"] {
            let (status, body) = get(FakeMesh::default(), uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert_eq!(body["NodeID"], "node1id", "{uri}");
            assert_eq!(body["Services"][0]["Kind"], "published");
            assert_eq!(body["Services"][0]["Counters"]["NewFlows"], 7);
        }
    }

    #[tokio::test]
    async fn a_failed_read_is_a_server_error_with_a_message() {
        let (status, body) = get(FakeMesh { broken: true }, "/shoal/mesh").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "reading the routing mesh: map gone");
    }
}
