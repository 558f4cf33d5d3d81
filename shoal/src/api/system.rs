//! `/_ping`, `/version` and `/info`: what the docker CLI asks before anything else.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::objects::{LocalNodeState, SwarmInfo};
use serde_json::{json, Value};

use super::version::{API_VERSION, MIN_API_VERSION};
use super::{AppState, EngineFacts};

/// The engine version reported everywhere (`ServerVersion`, `Version`, node `EngineVersion`).
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `Swarm` header of `/_ping`, which the docker CLI reads to hide manager-only commands.
pub fn swarm_status(info: &SwarmInfo) -> String {
    match info.local_node_state {
        LocalNodeState::Active if info.control_available => "active/manager".into(),
        LocalNodeState::Active => "active/worker".into(),
        other => other.as_str().into(),
    }
}

pub async fn ping(State(st): State<AppState>) -> Response {
    let swarm = swarm_status(&st.api.info().await);
    let headers = [
        ("Api-Version", API_VERSION.to_string()),
        ("Ostype", "linux".to_string()),
        ("Docker-Experimental", "false".to_string()),
        (CACHE_CONTROL.as_str(), "no-cache, no-store, must-revalidate".to_string()),
        (PRAGMA.as_str(), "no-cache".to_string()),
        ("Swarm", swarm),
        (CONTENT_TYPE.as_str(), "text/plain; charset=utf-8".to_string()),
    ];
    (headers, "OK").into_response()
}

/// Go's `runtime.GOARCH` for a Rust target architecture (`/version` reports Go names).
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// When this binary was built, RFC 3339 (the build script records it).
pub fn build_time() -> String {
    let secs: i64 = env!("SHOAL_BUILD_EPOCH").parse().unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn version_body(engine: &EngineFacts) -> Value {
    let arch = go_arch(&engine.host.architecture);
    let build_time = build_time();
    json!({
        "Platform": { "Name": "Shoal" },
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "Arch": arch,
                "BuildTime": build_time,
                "Experimental": "false",
                "GitCommit": "",
                "GoVersion": "",
                "KernelVersion": engine.host.kernel_version,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": engine.host.os,
            },
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": engine.host.os,
        "Arch": arch,
        "KernelVersion": engine.host.kernel_version,
        "BuildTime": build_time,
    })
}

pub async fn version(State(st): State<AppState>) -> Json<Value> {
    Json(version_body(&st.engine))
}

/// `GET /info`: the fields `docker info` prints, with zeros where Shoal has no equivalent
/// (it runs tasks, not containers, and stores no images).
pub fn info_body(engine: &EngineFacts, swarm: &SwarmInfo) -> Value {
    let host = &engine.host;
    json!({
        "ID": engine.engine_id,
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "shoal",
        "DriverStatus": [],
        "Plugins": { "Volume": [], "Network": ["overlay"], "Authorization": null, "Log": [] },
        "MemoryLimit": false,
        "SwapLimit": false,
        "CpuCfsPeriod": false,
        "CpuCfsQuota": false,
        "CPUShares": false,
        "CPUSet": false,
        "PidsLimit": false,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "CgroupVersion": "",
        "NEventsListener": 0,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSVersion": "",
        "OSType": host.os,
        "Architecture": host.architecture,
        "IndexServerAddress": "",
        "RegistryConfig": null,
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": null,
        "DockerRootDir": engine.data_root.display().to_string(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": swarm,
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "" },
        "RuncCommit": { "ID": "" },
        "InitCommit": { "ID": "" },
        "SecurityOptions": [],
        "CDISpecDirs": [],
        "Warnings": null,
    })
}

pub async fn info(State(st): State<AppState>) -> Json<Value> {
    let swarm = st.api.info().await;
    Json(info_body(&st.engine, &swarm))
}
