//! A small Engine API client for the CLI: HTTP/1.1 over the daemon's unix socket or TCP.
//!
//! One connection per request keeps it simple; the CLI makes a handful of calls per command.
//! Daemon errors surface as `Error response from daemon: <message>`, like the docker CLI.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::API_VERSION;

/// Where the daemon listens, as given to `-H` / `SHOAL_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    pub fn parse(spec: &str) -> anyhow::Result<Host> {
        if let Some(path) = spec.strip_prefix("unix://") {
            anyhow::ensure!(!path.is_empty(), "invalid host {spec:?}: empty socket path");
            Ok(Host::Unix(path.into()))
        } else if let Some(addr) = spec.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            anyhow::ensure!(addr.contains(':'), "invalid host {spec:?}: expected tcp://host:port");
            Ok(Host::Tcp(addr.to_string()))
        } else {
            anyhow::bail!("invalid host {spec:?}: expected unix:///path or tcp://host:port")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Error response from daemon: {message}")]
    Daemon { status: StatusCode, message: String },
    #[error("Cannot connect to the shoal daemon at {host}. Is the shoal daemon running?")]
    Connect { host: String },
    #[error("error during connect: {0}")]
    Transport(String),
    #[error("cannot decode the daemon's answer to {path}: {error}")]
    Decode { path: String, error: String },
}

pub type ClientResult<T> = Result<T, ClientError>;

pub struct Client {
    host: Host,
    display: String,
}

impl Client {
    pub fn new(spec: &str) -> anyhow::Result<Client> {
        Ok(Client { host: Host::parse(spec)?, display: spec.to_string() })
    }

    /// Sends one request to `/v1.51{path}` and returns the answer, whatever its status.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> ClientResult<hyper::Response<hyper::body::Incoming>> {
        let uri = format!("/v{API_VERSION}{path}");
        let mut builder = Request::builder().method(method).uri(&uri).header("Host", "shoal");
        builder = builder.header("User-Agent", concat!("shoal-cli/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        match &self.host {
            Host::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|_| self.connect_error())?;
                send(TokioIo::new(stream), req).await
            }
            Host::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|_| self.connect_error())?;
                send(TokioIo::new(stream), req).await
            }
        }
    }

    /// Sends one request to `/v1.51{path}` and returns the body of a 2xx answer.
    pub async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> ClientResult<Bytes> {
        let response = self.exchange(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(ClientError::Daemon { status, message: error_message(status, &bytes) })
    }

    /// A GET whose 2xx body is read as it arrives (`logs --follow`); errors as [`Self::request`].
    pub async fn get_stream(&self, path: &str) -> ClientResult<hyper::body::Incoming> {
        let response = self.exchange(Method::GET, path, None).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let bytes = response.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        Err(ClientError::Daemon { status, message: error_message(status, &bytes) })
    }

    fn connect_error(&self) -> ClientError {
        ClientError::Connect { host: self.display.clone() }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        let bytes = self.request(Method::GET, path, None).await?;
        decode(path, &bytes)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> ClientResult<T> {
        let bytes = self.request(Method::POST, path, Some(encode(body))).await?;
        decode(path, &bytes)
    }

    /// A POST whose answer has no body worth reading.
    pub async fn post_unit<B: Serialize>(&self, path: &str, body: Option<&B>) -> ClientResult<()> {
        self.request(Method::POST, path, body.map(encode)).await.map(drop)
    }

    pub async fn delete(&self, path: &str) -> ClientResult<()> {
        self.request(Method::DELETE, path, None).await.map(drop)
    }
}

async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> ClientResult<hyper::Response<hyper::body::Incoming>>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| ClientError::Transport(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection to the daemon ended");
        }
    });
    sender.send_request(req).await.map_err(|e| ClientError::Transport(e.to_string()))
}

fn encode<B: Serialize>(body: &B) -> Vec<u8> {
    serde_json::to_vec(body).expect("request bodies serialize")
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> ClientResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode { path: path.to_string(), error: e.to_string() })
}

/// The `message` of a JSON error body; otherwise the body text, or the status line.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.trim().to_string();
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

/// Percent-encodes a query or path component (RFC 3986 unreserved characters pass).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(Host::parse("unix:///run/shoal/shoal.sock").unwrap(), Host::Unix("/run/shoal/shoal.sock".into()));
        assert_eq!(Host::parse("tcp://127.0.0.1:2375/").unwrap(), Host::Tcp("127.0.0.1:2375".into()));
        assert!(Host::parse("http://x").is_err());
    }

    #[test]
    fn error_messages_come_from_json_bodies() {
        assert_eq!(error_message(StatusCode::NOT_FOUND, br#"{"message":"node x not found"}"#), "node x not found");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b"upstream down\n"), "upstream down");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "502 Bad Gateway");
    }

    #[test]
    fn encodes_components() {
        assert_eq!(encode_component(r#"{"role":{"manager":true}}"#), "%7B%22role%22%3A%7B%22manager%22%3Atrue%7D%7D");
        assert_eq!(encode_component("node-1.a_b~"), "node-1.a_b~");
    }

    #[tokio::test]
    async fn talks_to_a_router_over_a_unix_socket() {
        use axum::routing::get;
        let dir = std::env::temp_dir().join(format!("shoal-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let router = axum::Router::new()
            .route("/v1.51/ok", get(|| async { axum::Json(serde_json::json!({"ID": "abc"})) }))
            .route(
                "/v1.51/bad",
                get(|| async {
                    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"message": "node x not found"})))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });

        let client = Client::new(&format!("unix://{}", path.display())).unwrap();
        let v: serde_json::Value = client.get("/ok").await.unwrap();
        assert_eq!(v["ID"], "abc");
        let e = client.get::<serde_json::Value>("/bad").await.unwrap_err();
        assert_eq!(e.to_string(), "Error response from daemon: node x not found");
        assert!(matches!(e, ClientError::Daemon { status: StatusCode::NOT_FOUND, .. }));

        let gone = Client::new("unix:///nonexistent/shoal.sock").unwrap();
        let e = gone.get::<serde_json::Value>("/ok").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot connect to the shoal daemon at unix:///nonexistent/shoal.sock. Is the shoal daemon running?"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
