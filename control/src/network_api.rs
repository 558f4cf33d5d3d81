//! `/networks` on a manager: create, list, inspect and remove overlay networks.
//!
//! Requests are checked here with dockerd's wording (moby `api/types/network` `ValidateIPAM`,
//! swarmkit `controlapi/network.go`); the rules that depend on the state (name taken, subnet
//! overlap, network in use) are checked again when the entry is applied, so racing writers
//! cannot both win. Subnets and VNIs are chosen in `ClusterState::apply`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::api::NetworkApi;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::ipam::Cidr;
use crate::objects::network::{
    ConfigReference, Ipam, Network, NetworkCreateRequest, NetworkCreateResponse, PeerInfo, MTU_OPTION, VXLAN_ID_OPTION,
};
use crate::objects::Version;
use crate::rpc::services::new_node_id;
use crate::state::{ClusterState, Command, NetworkRecord};

/// Drivers Docker ships that Shoal does not have (anything else is an unknown plugin).
const DOCKER_BUILTIN_DRIVERS: &[&str] = &["bridge", "host", "null", "none", "macvlan", "ipvlan", "nat", "transparent"];

/// The MTU range Linux accepts for an IPv4 interface.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// Checks a create request and turns it into the network to propose (ID chosen here; subnet,
/// gateway and VNI, when not given, are chosen when the entry is applied).
pub fn network_from_request(req: NetworkCreateRequest, id: String) -> ApiResult<Network> {
    if req.name.is_empty() {
        return Err(ApiError::invalid("network name must not be empty"));
    }
    if ["bridge", "host", "none"].contains(&req.name.as_str()) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("{} is a pre-defined network and cannot be created", req.name),
        ));
    }
    match req.driver.as_str() {
        "overlay" => {}
        "" | "bridge" => {
            return Err(ApiError::invalid(
                "Shoal has only swarm-scoped overlay networks: create it with --driver overlay (the bridge driver \
                 is not supported)",
            ))
        }
        builtin if DOCKER_BUILTIN_DRIVERS.contains(&builtin) => {
            return Err(ApiError::invalid(format!(
                "the {builtin} driver is not supported: Shoal has only swarm-scoped overlay networks (--driver overlay)"
            )))
        }
        unknown => return Err(ApiError::not_found(format!("plugin \"{unknown}\" not found"))),
    }
    if !req.scope.is_empty() && req.scope != "swarm" {
        return Err(ApiError::invalid(format!(
            "overlay networks are swarm-scoped: scope {:?} is not supported",
            req.scope
        )));
    }
    if req.config_only || req.config_from.as_ref().is_some_and(|c| !c.network.is_empty()) {
        return Err(ApiError::invalid("config-only networks are not supported by Shoal"));
    }
    if req.enable_ipv6 == Some(true) {
        return Err(ApiError::invalid("IPv6 is not supported on Shoal overlay networks"));
    }
    if req.enable_ipv4 == Some(false) {
        return Err(ApiError::invalid("Shoal overlay networks are IPv4 networks: IPv4 cannot be disabled"));
    }
    if let Some(value) = req.options.get(MTU_OPTION) {
        if !value.parse::<u32>().is_ok_and(|mtu| MTU_RANGE.contains(&mtu)) {
            return Err(ApiError::invalid(format!(
                "invalid MTU {value:?} in option {MTU_OPTION}: it must be an integer between {} and {}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            )));
        }
    }
    let ipam = req.ipam.unwrap_or_default();
    if !ipam.driver.is_empty() && ipam.driver != "default" {
        return Err(ApiError::not_found(format!("plugin \"{}\" not found", ipam.driver)));
    }
    if ipam.config.len() > 1 {
        return Err(ApiError::invalid("Shoal overlay networks have one IPv4 subnet: give a single --subnet"));
    }
    if let Some(config) = ipam.config.first() {
        if [&config.subnet, &config.ip_range, &config.gateway].iter().any(|v| v.contains(':')) {
            return Err(ApiError::invalid("IPv6 is not supported on Shoal overlay networks"));
        }
        if config.subnet.is_empty() {
            if !config.ip_range.is_empty() || !config.gateway.is_empty() || !config.auxiliary_addresses.is_empty() {
                return Err(ApiError::invalid("an ip-range, a gateway or an aux-address needs a subnet"));
            }
        } else {
            validate_ipam_config(&config.subnet, &config.ip_range, &config.gateway, &config.auxiliary_addresses)?;
        }
    }
    let mut options = req.options;
    // The VNI is the cluster's choice, never the client's.
    options.remove(VXLAN_ID_OPTION);
    let ipam = Ipam {
        driver: "default".into(),
        config: ipam.config.into_iter().filter(|c| !c.subnet.is_empty()).collect(),
        options: ipam.options,
    };
    Ok(Network {
        name: req.name,
        id,
        created: chrono::Utc::now(),
        scope: "swarm".into(),
        driver: "overlay".into(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam,
        internal: req.internal,
        attachable: req.attachable,
        ingress: req.ingress,
        config_from: ConfigReference::default(),
        config_only: false,
        containers: BTreeMap::new(),
        options,
        labels: req.labels,
        peers: Vec::new(),
        version: Version::default(),
    })
}

/// dockerd's `ValidateIPAM` for one IPv4 config, with its messages (several are joined as
/// `* a\n* b`, as dockerd does).
fn validate_ipam_config(subnet: &str, ip_range: &str, gateway: &str, aux: &BTreeMap<String, String>) -> ApiResult<()> {
    let Ok(parsed) = Cidr::parse(subnet) else {
        return Err(ApiError::invalid(format!("invalid subnet {subnet}: invalid CIDR block notation")));
    };
    let mut errors = Vec::new();
    if parsed.to_string() != subnet {
        errors.push(format!("invalid subnet {subnet}: it should be {parsed}"));
    }
    if !ip_range.is_empty() {
        match Cidr::parse(ip_range) {
            Err(_) => errors.push(format!("invalid ip-range {ip_range}: invalid CIDR block notation")),
            Ok(range) => {
                if range.prefix_len < parsed.prefix_len {
                    errors.push(format!(
                        "invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {parsed}"
                    ));
                }
                if range.to_string() != ip_range {
                    errors.push(format!("invalid ip-range {ip_range}: it should be {range}"));
                }
                if !parsed.overlaps(&range) {
                    errors
                        .push(format!("invalid ip-range {ip_range}: parent subnet {parsed} doesn't contain ip-range"));
                }
            }
        }
    }
    let address = |what: &str, value: &str| -> Option<String> {
        if value.is_empty() {
            return None;
        }
        match value.parse::<std::net::Ipv4Addr>() {
            Err(_) => Some(format!("invalid {what} {value}: invalid address")),
            Ok(ip) if !parsed.contains(ip) => {
                Some(format!("invalid {what} {value}: parent subnet {parsed} doesn't contain this address"))
            }
            Ok(_) => None,
        }
    };
    errors.extend(address("gateway", gateway));
    for (name, value) in aux {
        errors.extend(address(&format!("auxiliary address {name}"), value));
    }
    match errors.as_slice() {
        [] => Ok(()),
        [one] => Err(ApiError::invalid(one.clone())),
        many => Err(ApiError::invalid(format!("* {}", many.join("\n* ")))),
    }
}

/// A network as `GET /networks` shows it: `Peers` are the nodes running a task on it.
pub fn network_view(state: &ClusterState, record: &NetworkRecord) -> Network {
    let mut peers: BTreeMap<&str, PeerInfo> = BTreeMap::new();
    for task in state.tasks.values() {
        if task.status.state.is_terminal() || task.node_id.is_empty() {
            continue;
        }
        if !task.networks_attachments.iter().any(|a| a.network.id == record.network.id) {
            continue;
        }
        if let Some(node) = state.nodes.get(&task.node_id) {
            peers
                .entry(node.node.id.as_str())
                .or_insert_with(|| PeerInfo { name: node.hostname().to_string(), ip: node.node.status.addr.clone() });
        }
    }
    let mut peers: Vec<PeerInfo> = peers.into_values().collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    Network { peers, ..record.network.clone() }
}

#[async_trait]
impl NetworkApi for Daemon {
    async fn create_network(&self, req: NetworkCreateRequest) -> ApiResult<NetworkCreateResponse> {
        let manager = self.require_manager()?;
        let network = network_from_request(req, new_node_id())?;
        manager.read_barrier().await?;
        let state = manager.state();
        if state.networks.values().any(|r| r.network.name == network.name) {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("network with name {} already exists", network.name),
            ));
        }
        let id = network.id.clone();
        manager.propose(Command::CreateNetwork { network: Box::new(network) }).await?;
        Ok(NetworkCreateResponse { id, warning: String::new() })
    }

    async fn list_networks(&self) -> ApiResult<Vec<Network>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        Ok(state.networks.values().map(|r| network_view(&state, r)).collect())
    }

    async fn inspect_network(&self, key: &str) -> ApiResult<Network> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        let record = state.find_network(key)?;
        Ok(network_view(&state, record))
    }

    async fn remove_network(&self, key: &str) -> ApiResult<()> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let id = manager.state().find_network(key)?.network.id.clone();
        manager.propose(Command::RemoveNetwork { id }).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::network::IpamConfig;

    fn request(name: &str, driver: &str) -> NetworkCreateRequest {
        NetworkCreateRequest { name: name.into(), driver: driver.into(), ..Default::default() }
    }

    fn with_subnet(subnet: &str, ip_range: &str, gateway: &str) -> NetworkCreateRequest {
        let config = IpamConfig {
            subnet: subnet.into(),
            ip_range: ip_range.into(),
            gateway: gateway.into(),
            ..Default::default()
        };
        NetworkCreateRequest {
            ipam: Some(Ipam { config: vec![config], ..Default::default() }),
            ..request("n", "overlay")
        }
    }

    fn error(req: NetworkCreateRequest) -> ApiError {
        network_from_request(req, "id".into()).unwrap_err()
    }

    #[test]
    fn only_the_overlay_driver_is_accepted() {
        let network = network_from_request(request("appnet", "overlay"), "id1".into()).unwrap();
        assert_eq!((network.driver.as_str(), network.scope.as_str()), ("overlay", "swarm"));
        assert!(error(request("appnet", "")).message.contains("--driver overlay"));
        assert!(error(request("appnet", "bridge")).message.contains("bridge driver is not supported"));
        assert!(error(request("appnet", "macvlan")).message.contains("macvlan driver is not supported"));
        let unknown = error(request("appnet", "weave"));
        assert_eq!((unknown.kind, unknown.message.as_str()), (ErrorKind::NotFound, "plugin \"weave\" not found"));
        let predefined = error(request("bridge", "overlay"));
        assert_eq!(predefined.message, "bridge is a pre-defined network and cannot be created");
    }

    #[test]
    fn ipam_configs_are_checked_with_dockerd_messages() {
        assert!(network_from_request(with_subnet("10.9.0.0/24", "10.9.0.128/25", "10.9.0.1"), "i".into()).is_ok());
        assert_eq!(
            error(with_subnet("10.9.0/24", "", "")).message,
            "invalid subnet 10.9.0/24: invalid CIDR block notation"
        );
        assert_eq!(
            error(with_subnet("10.9.0.5/24", "", "")).message,
            "invalid subnet 10.9.0.5/24: it should be 10.9.0.0/24"
        );
        assert_eq!(
            error(with_subnet("10.9.0.0/24", "", "10.8.0.1")).message,
            "invalid gateway 10.8.0.1: parent subnet 10.9.0.0/24 doesn't contain this address"
        );
        assert_eq!(
            error(with_subnet("10.9.0.0/24", "10.8.0.0/25", "")).message,
            "invalid ip-range 10.8.0.0/25: parent subnet 10.9.0.0/24 doesn't contain ip-range"
        );
        assert_eq!(
            error(with_subnet("10.9.0.0/24", "10.9.0.0/16", "x")).message,
            "* invalid ip-range 10.9.0.0/16: CIDR block is bigger than its parent subnet 10.9.0.0/24\n* invalid \
             gateway x: invalid address"
        );
        assert!(error(with_subnet("fd00::/64", "", "")).message.contains("IPv6"));
        let v6 = NetworkCreateRequest { enable_ipv6: Some(true), ..request("n", "overlay") };
        assert!(error(v6).message.contains("IPv6 is not supported"));
    }

    #[test]
    fn mtu_option_is_validated_and_labels_and_flags_are_kept() {
        let mut req = request("n", "overlay");
        req.options.insert(MTU_OPTION.into(), "1400".into());
        req.options.insert(VXLAN_ID_OPTION.into(), "42".into());
        req.labels.insert("team".into(), "blue".into());
        req.internal = true;
        req.attachable = true;
        let network = network_from_request(req.clone(), "i".into()).unwrap();
        assert_eq!(network.options.get(MTU_OPTION).map(String::as_str), Some("1400"));
        assert!(!network.options.contains_key(VXLAN_ID_OPTION), "the VNI is chosen by the cluster");
        assert_eq!(network.labels["team"], "blue");
        assert!(network.internal && network.attachable);
        for bad in ["67", "65536", "abc", ""] {
            req.options.insert(MTU_OPTION.into(), bad.into());
            let err = error(req.clone());
            assert!(err.message.starts_with(&format!("invalid MTU {bad:?}")), "{}", err.message);
        }
    }
}
