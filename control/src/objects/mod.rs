//! Cluster objects in the Docker Engine API's JSON shapes (API v1.51).
//!
//! The store keeps objects in the same shape the API serves, so the API layer is a thin
//! translation of paths and status codes, never of fields. Fields that only Shoal needs live in
//! the `*Record` wrappers in [`crate::state`], never in these types.

pub mod network;
pub mod service;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Docker's optimistic-concurrency version: the Raft log index of the object's last write.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub index: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeAvailability {
    #[default]
    Active,
    Pause,
    Drain,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    #[default]
    Unknown,
    Unreachable,
    Reachable,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub role: NodeRole,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub availability: NodeAvailability,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    pub architecture: String,
    #[serde(rename = "OS")]
    pub os: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Resources {
    #[serde(rename = "NanoCPUs")]
    pub nano_cpus: i64,
    #[serde(rename = "MemoryBytes")]
    pub memory_bytes: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EnginePlugin {
    #[serde(rename = "Type")]
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EngineDescription {
    pub engine_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub plugins: Vec<EnginePlugin>,
}

/// The trust root as Docker shows it in `Node.Description.TLSInfo` and `Swarm.TLSInfo`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TlsInfo {
    pub trust_root: String,
    /// Base64 of the DER-encoded subject of the issuer (the root CA).
    pub cert_issuer_subject: String,
    /// Base64 of the DER-encoded SubjectPublicKeyInfo of the issuer.
    pub cert_issuer_public_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub resources: Resources,
    pub engine: EngineDescription,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The node's address as managers see it (IP only, like Docker).
    #[serde(default)]
    pub addr: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    #[serde(default)]
    pub leader: bool,
    pub reachability: Reachability,
    /// `ip:port` of the node's manager listener (2377 by default).
    pub addr: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

/// Go clients send `null` for empty maps and slices: read it as the default.
pub fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Go clients send `""` for an unset enum: read it (and `null`) as the default.
pub fn empty_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    use serde::de::IntoDeserializer;
    match Option::<String>::deserialize(de)? {
        None => Ok(T::default()),
        Some(s) if s.is_empty() => Ok(T::default()),
        Some(s) => T::deserialize(s.into_deserializer()),
    }
}

/// Durations in the Engine API are integers of nanoseconds.
pub const SECOND_NS: i64 = 1_000_000_000;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct OrchestrationConfig {
    #[serde(default)]
    pub task_history_retention_limit: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfig {
    #[serde(default)]
    pub snapshot_interval: u64,
    #[serde(default)]
    pub keep_old_snapshots: Option<u64>,
    #[serde(default)]
    pub log_entries_for_slow_followers: u64,
    #[serde(default)]
    pub election_tick: i64,
    #[serde(default)]
    pub heartbeat_tick: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DispatcherConfig {
    /// Nanoseconds between agent heartbeats.
    #[serde(default)]
    pub heartbeat_period: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CaConfig {
    /// Nanoseconds a node certificate stays valid.
    #[serde(default)]
    pub node_cert_expiry: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionConfig {
    #[serde(default)]
    pub auto_lock_managers: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    pub orchestration: OrchestrationConfig,
    pub raft: RaftConfig,
    pub dispatcher: DispatcherConfig,
    #[serde(rename = "CAConfig")]
    pub ca_config: CaConfig,
    #[serde(default)]
    pub encryption_config: EncryptionConfig,
    #[serde(default)]
    pub task_defaults: serde_json::Value,
}

impl Default for SwarmSpec {
    /// swarmkit's defaults (api/defaults and manager/manager.go).
    fn default() -> Self {
        SwarmSpec {
            name: "default".into(),
            labels: BTreeMap::new(),
            orchestration: OrchestrationConfig { task_history_retention_limit: Some(5) },
            raft: RaftConfig {
                snapshot_interval: 10_000,
                keep_old_snapshots: Some(0),
                log_entries_for_slow_followers: 500,
                election_tick: 10,
                heartbeat_tick: 1,
            },
            dispatcher: DispatcherConfig { heartbeat_period: 5 * SECOND_NS },
            ca_config: CaConfig { node_cert_expiry: 90 * 24 * 3600 * SECOND_NS },
            encryption_config: EncryptionConfig::default(),
            task_defaults: serde_json::json!({}),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

/// `GET /swarm`: the cluster object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub spec: SwarmSpec,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    pub root_rotation_in_progress: bool,
    pub data_path_port: u32,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub join_tokens: JoinTokens,
}

/// `POST /swarm/init` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_addr: String,
    pub data_path_port: u32,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub force_new_cluster: bool,
    pub availability: Option<NodeAvailability>,
    pub spec: Option<SwarmSpec>,
}

/// `POST /swarm/join` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_addr: String,
    pub remote_addrs: Vec<String>,
    pub join_token: String,
    pub availability: Option<NodeAvailability>,
}

/// Which join tokens `POST /swarm/update` rotates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotateTokens {
    pub worker: bool,
    pub manager: bool,
}

/// `Swarm.LocalNodeState` in `/info`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LocalNodeState {
    #[default]
    Inactive,
    Pending,
    Active,
    Error,
    Locked,
}

impl LocalNodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalNodeState::Inactive => "inactive",
            LocalNodeState::Pending => "pending",
            LocalNodeState::Active => "active",
            LocalNodeState::Error => "error",
            LocalNodeState::Locked => "locked",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Peer {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub addr: String,
}

/// `Info.Swarm` in `GET /info`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: LocalNodeState,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<Peer>>,
    pub nodes: Option<u64>,
    pub managers: Option<u64>,
    /// The cluster object as `/info` shows it (no join tokens); only on managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_serializes_with_engine_api_field_names() {
        let node = Node {
            id: "abc".into(),
            version: Version { index: 7 },
            created_at: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            updated_at: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            spec: NodeSpec { role: NodeRole::Manager, ..Default::default() },
            description: NodeDescription {
                resources: Resources { nano_cpus: 2_000_000_000, memory_bytes: 1 },
                ..Default::default()
            },
            status: NodeStatus { state: NodeState::Ready, message: String::new(), addr: "198.18.0.1".into() },
            manager_status: Some(ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable,
                addr: "198.18.0.1:2377".into(),
            }),
        };
        let v = serde_json::to_value(&node).unwrap();
        assert_eq!(v["ID"], "abc");
        assert_eq!(v["Version"]["Index"], 7);
        assert_eq!(v["Spec"]["Role"], "manager");
        assert_eq!(v["Spec"]["Availability"], "active");
        assert_eq!(v["Description"]["Resources"]["NanoCPUs"], 2_000_000_000i64);
        assert_eq!(v["Description"]["Platform"]["OS"], "");
        assert!(v["Description"]["TLSInfo"].is_object());
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["ManagerStatus"]["Reachability"], "reachable");
        assert_eq!(v["CreatedAt"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn go_style_nulls_and_empty_enums_read_as_defaults() {
        let spec: NodeSpec = serde_json::from_str(r#"{"Labels":null,"Role":"","Availability":""}"#).unwrap();
        assert_eq!(spec, NodeSpec::default());
        let spec: NodeSpec =
            serde_json::from_str(r#"{"Labels":{"a":"b"},"Role":"manager","Availability":"drain"}"#).unwrap();
        assert_eq!(spec.role, NodeRole::Manager);
        assert_eq!(spec.availability, NodeAvailability::Drain);
        assert!(serde_json::from_str::<NodeSpec>(r#"{"Role":"boss"}"#).is_err());
        let engine = serde_json::to_value(EngineDescription::default()).unwrap();
        assert!(engine.get("Labels").is_none() && engine.get("Plugins").is_none());
    }

    #[test]
    fn swarm_spec_defaults_match_swarmkit() {
        let spec = SwarmSpec::default();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["Dispatcher"]["HeartbeatPeriod"], 5_000_000_000i64);
        assert_eq!(v["CAConfig"]["NodeCertExpiry"], 7_776_000_000_000_000i64);
        assert_eq!(v["Orchestration"]["TaskHistoryRetentionLimit"], 5);
        assert_eq!(v["Raft"]["SnapshotInterval"], 10_000);
    }
}
