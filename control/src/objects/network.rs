//! Networks in the Engine API's shapes: `GET /networks`, `POST /networks/create`, and the
//! `NetworksAttachments` a task carries (moby `api/swagger.yaml` v1.51, `Network`,
//! `NetworkCreateRequest`, swarm `NetworkAttachment`).
//!
//! Only swarm-scoped overlay networks exist in Shoal; `Scope` is always `"swarm"`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{null_as_default, Version};

/// The driver option that overrides a network's MTU (`-o com.docker.network.driver.mtu=N`).
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The driver option Docker shows the VNI under (`docker network inspect` → `Options`).
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// The network every service with ingress-published ports is attached to (created by `init`).
pub const INGRESS_NETWORK: &str = "ingress";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub auxiliary_addresses: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(default = "default_ipam_driver")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: Vec<IpamConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

impl Default for Ipam {
    fn default() -> Self {
        Ipam { driver: default_ipam_driver(), config: Vec::new(), options: BTreeMap::new() }
    }
}

fn default_ipam_driver() -> String {
    "default".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    #[serde(default)]
    pub network: String,
}

/// A node that has an endpoint on the network (`Peers` in `docker network inspect`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInfo {
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

/// `POST /networks/create` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreateRequest {
    pub name: String,
    /// Empty means the default driver (`bridge` on Docker, which Shoal does not have).
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    pub config_from: Option<ConfigReference>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Ignored since API 1.44 (names are always checked), accepted for older clients.
    pub check_duplicate: Option<bool>,
}

/// `POST /networks/create` answer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    pub id: String,
    #[serde(default)]
    pub warning: String,
}

/// `GET /networks/{id}`: a network as Docker shows a swarm-scoped one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Network {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: DateTime<Utc>,
    /// Always `"swarm"`.
    #[serde(rename = "Scope")]
    pub scope: String,
    /// Always `"overlay"`.
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "EnableIPv4", default = "yes")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    #[serde(rename = "Internal", default)]
    pub internal: bool,
    #[serde(rename = "Attachable", default)]
    pub attachable: bool,
    #[serde(rename = "Ingress", default)]
    pub ingress: bool,
    #[serde(rename = "ConfigFrom", default)]
    pub config_from: ConfigReference,
    #[serde(rename = "ConfigOnly", default)]
    pub config_only: bool,
    /// Local containers; tasks are not containers here, so it stays empty (as on a manager that
    /// runs none of the network's tasks).
    #[serde(rename = "Containers", default, deserialize_with = "null_as_default")]
    pub containers: BTreeMap<String, serde_json::Value>,
    /// Driver options, including the VNI under [`VXLAN_ID_OPTION`].
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Nodes with an endpoint on the network (filled in when read, never stored).
    #[serde(rename = "Peers", default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub peers: Vec<PeerInfo>,
    /// Shoal keeps the Raft index of the last write, as for every other object.
    #[serde(rename = "Version", default, skip_serializing_if = "is_unset")]
    pub version: Version,
}

fn yes() -> bool {
    true
}

fn is_unset(v: &Version) -> bool {
    v.index == 0
}

/// The network part of a task's `NetworksAttachments` entry (swarmkit's `Network` object,
/// reduced to what clients read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    pub spec: AttachedNetworkSpec,
    #[serde(default)]
    pub driver_state: DriverState,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetworkSpec {
    pub name: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub ingress: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DriverState {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

/// One entry of a task's `NetworksAttachments`: the network and the task's address on it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    pub network: AttachedNetwork,
    /// `ip/prefix`, e.g. `10.0.1.3/24`; empty until the address is allocated.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    /// `--network name=x,alias=y` aliases of the task's service on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub aliases: Vec<String>,
}
