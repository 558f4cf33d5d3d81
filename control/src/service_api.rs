//! The service and task endpoints on a running [`Daemon`]: validation with Docker's messages,
//! published-port allocation, and reads of the replicated state.

use async_trait::async_trait;
use rand::Rng;

use crate::api::ServiceApi;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::objects::service::{
    Endpoint, EndpointMode, EndpointSpec, PortConfig, PublishMode, ReplicatedService, Service, ServiceSpec,
    ServiceStatus, Task, TaskState,
};
use crate::objects::Version;
use crate::rpc::services::new_node_id;
use crate::state::{ClusterState, Command};

/// Dynamic published ports come from this range, like Docker's ingress.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

fn invalid(desc: impl AsRef<str>) -> ApiError {
    ApiError::invalid(format!("rpc error: code = InvalidArgument desc = {}", desc.as_ref()))
}

/// Finds a service by ID, name, or unique ID prefix (`docker service inspect`).
pub fn find_service<'a>(state: &'a ClusterState, key: &str) -> ApiResult<&'a Service> {
    if let Some(service) = state.services.get(key) {
        return Ok(service);
    }
    if let Some(service) = state.services.values().find(|s| s.spec.name == key) {
        return Ok(service);
    }
    let matches: Vec<&Service> = state.services.values().filter(|s| s.id.starts_with(key)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::not_found(format!("service {key} not found"))),
        many => Err(ApiError::invalid(format!("service {key} is ambiguous ({} matches found)", many.len()))),
    }
}

pub(crate) fn find_task<'a>(state: &'a ClusterState, key: &str) -> ApiResult<&'a Task> {
    if let Some(task) = state.tasks.get(key) {
        return Ok(task);
    }
    let matches: Vec<&Task> = state.tasks.values().filter(|t| t.id.starts_with(key)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::not_found(format!("task {key} not found"))),
        many => Err(ApiError::invalid(format!("task {key} is ambiguous ({} matches found)", many.len()))),
    }
}

/// A DNS label, as swarmkit requires of service names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A random `adjective_noun` name for services created without `--name`, like Docker's.
fn random_name() -> String {
    const ADJECTIVES: &[&str] =
        &["brave", "calm", "eager", "fond", "keen", "lucid", "quirky", "sharp", "vivid", "witty"];
    const NOUNS: &[&str] = &["curie", "darwin", "euler", "hopper", "knuth", "lovelace", "noether", "shannon", "turing"];
    let mut rng = rand::rng();
    format!("{}-{}", ADJECTIVES[rng.random_range(0..ADJECTIVES.len())], NOUNS[rng.random_range(0..NOUNS.len())])
}

/// Checks a spec the way swarmkit's controlapi does and fills in defaults.
pub fn validate_spec(spec: &mut ServiceSpec) -> ApiResult<()> {
    if spec.name.is_empty() {
        spec.name = random_name();
    }
    if !valid_name(&spec.name) {
        return Err(invalid(format!("name must be valid as a DNS name component: {:?}", spec.name)));
    }
    if spec.task_template.container_spec.image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    match (&spec.mode.replicated, &spec.mode.global) {
        // dockerd's wording (daemon/cluster/convert/service.go).
        (Some(_), Some(_)) => return Err(ApiError::invalid("must specify only one service mode")),
        (None, None) => spec.mode.replicated = Some(ReplicatedService { replicas: Some(1) }),
        (Some(r), None) if r.replicas.is_none() => spec.mode.replicated = Some(ReplicatedService { replicas: Some(1) }),
        _ => {}
    }
    if let Some(policy) = &spec.task_template.restart_policy {
        if policy.delay.is_some_and(|d| d < 0) {
            return Err(invalid("TaskSpec: restart-delay cannot be negative"));
        }
        if policy.window < 0 {
            return Err(invalid("TaskSpec: restart-window cannot be negative"));
        }
    }
    if let Some(grace) = spec.task_template.container_spec.stop_grace_period {
        if grace < 0 {
            return Err(invalid("TaskSpec: stop-grace-period cannot be negative"));
        }
    }
    for config in [&spec.update_config, &spec.rollback_config].into_iter().flatten() {
        if config.delay < 0 {
            return Err(invalid("TaskSpec: update-delay cannot be negative"));
        }
        if !(0.0..=1.0).contains(&config.max_failure_ratio) {
            return Err(invalid("UpdateConfig: max-failure-ratio must be between 0 and 1"));
        }
    }
    if let Some(placement) = &spec.task_template.placement {
        for constraint in &placement.constraints {
            crate::orchestrator::parse_constraint(constraint).map_err(invalid)?;
        }
    }
    let endpoint = spec.endpoint_spec.clone().unwrap_or_default();
    if endpoint.mode == EndpointMode::Dnsrr && endpoint.ports.iter().any(|p| p.publish_mode == PublishMode::Ingress) {
        return Err(invalid("port published with ingress mode can't be used with dnsrr mode"));
    }
    Ok(())
}

/// Resolves `TaskTemplate.Networks[].Target` (a name, an ID or a unique ID prefix) to network
/// IDs, which is what Docker stores, and applies swarmkit's rules.
pub fn resolve_networks(state: &ClusterState, spec: &mut ServiceSpec) -> ApiResult<()> {
    let mut seen: Vec<String> = Vec::new();
    for attachment in &mut spec.task_template.networks {
        let record = state.find_network(&attachment.target).map_err(|e| match e.kind {
            crate::error::ErrorKind::NotFound => {
                ApiError::not_found(format!("network {} not found", attachment.target))
            }
            _ => e,
        })?;
        if record.network.ingress {
            return Err(invalid(format!(
                "Service cannot be explicitly attached to the ingress network {:?}",
                record.network.name
            )));
        }
        if seen.contains(&record.network.id) {
            return Err(invalid(format!("duplicate network attachment: {}", attachment.target)));
        }
        seen.push(record.network.id.clone());
        attachment.target = record.network.id.clone();
    }
    Ok(())
}

/// Resolves published ports: keeps the ports a service already had, allocates dynamic ones,
/// and refuses an ingress port another service holds.
pub fn resolve_endpoint(state: &ClusterState, service_id: &str, spec: &Option<EndpointSpec>) -> ApiResult<Endpoint> {
    let spec = spec.clone().unwrap_or_default();
    let current = state.services.get(service_id).map(|s| s.endpoint.ports.clone()).unwrap_or_default();
    let mut taken: Vec<(u32, crate::objects::service::PortProtocol, String, String)> = state
        .services
        .values()
        .filter(|s| s.id != service_id)
        .flat_map(|s| {
            s.endpoint
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Ingress)
                .map(move |p| (p.published_port, p.protocol, s.spec.name.clone(), s.id.clone()))
        })
        .collect();
    let mut ports = Vec::new();
    for port in &spec.ports {
        let mut port: PortConfig = port.clone();
        if port.publish_mode == PublishMode::Ingress {
            if port.published_port == 0 {
                let reuse = current.iter().find(|p| {
                    p.target_port == port.target_port
                        && p.protocol == port.protocol
                        && p.publish_mode == port.publish_mode
                });
                port.published_port = match reuse {
                    Some(p) => p.published_port,
                    None => DYNAMIC_PORTS
                        .clone()
                        .find(|candidate| {
                            !taken.iter().any(|(p, proto, _, _)| p == candidate && *proto == port.protocol)
                        })
                        .ok_or_else(|| invalid("no free port in the dynamic range 30000-32767"))?,
                };
            }
            if let Some((_, _, name, id)) =
                taken.iter().find(|(p, proto, _, _)| *p == port.published_port && *proto == port.protocol)
            {
                return Err(invalid(format!(
                    "port '{}' is already in use by service '{name}' ({id}) as an ingress port",
                    port.published_port
                )));
            }
            taken.push((port.published_port, port.protocol, String::new(), service_id.to_string()));
        }
        ports.push(port);
    }
    Ok(Endpoint { spec, ports, virtual_ips: Vec::new() })
}

/// A service as first created: no history, no update in progress (times and version are set
/// when the entry is applied).
fn new_service(id: &str, spec: ServiceSpec, endpoint: Endpoint) -> Service {
    let now = chrono::Utc::now();
    Service {
        id: id.to_string(),
        version: Version::default(),
        created_at: now,
        updated_at: now,
        spec,
        previous_spec: None,
        endpoint,
        update_status: None,
        service_status: None,
    }
}

/// `ServiceStatus` as `docker service ls` shows it (REPLICAS running/desired).
pub fn service_status(state: &ClusterState, service: &Service) -> ServiceStatus {
    let tasks = state.tasks.values().filter(|t| t.service_id == service.id);
    let mut running = 0;
    let mut desired_running = 0;
    let mut completed = 0;
    for task in tasks {
        if task.desired_state == TaskState::Running {
            desired_running += 1;
            if task.status.state == TaskState::Running {
                running += 1;
            }
        }
        if task.status.state == TaskState::Complete {
            completed += 1;
        }
    }
    let desired = match &service.spec.mode.replicated {
        Some(r) => r.replicas.unwrap_or(1),
        None => desired_running,
    };
    ServiceStatus { running_tasks: running, desired_tasks: desired, completed_tasks: completed }
}

#[async_trait]
impl ServiceApi for Daemon {
    async fn create_service(&self, mut spec: ServiceSpec) -> ApiResult<(String, Vec<String>)> {
        let manager = self.require_manager()?;
        validate_spec(&mut spec)?;
        manager.read_barrier().await?;
        let state = manager.state();
        resolve_networks(&state, &mut spec)?;
        let id = new_node_id();
        let endpoint = resolve_endpoint(&state, &id, &spec.endpoint_spec)?;
        let service = new_service(&id, spec, endpoint);
        manager.propose(Command::CreateService { service: Box::new(service) }).await?;
        Ok((id, Vec::new()))
    }

    async fn list_services(&self) -> ApiResult<Vec<Service>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        Ok(state
            .services
            .values()
            .map(|s| Service { service_status: Some(service_status(&state, s)), ..s.clone() })
            .collect())
    }

    async fn inspect_service(&self, key: &str) -> ApiResult<Service> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        find_service(&state, key).cloned()
    }

    async fn update_service(
        &self,
        key: &str,
        version: u64,
        mut spec: ServiceSpec,
        rollback: bool,
    ) -> ApiResult<Vec<String>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        let service = find_service(&state, key)?;
        let id = service.id.clone();
        if rollback {
            let previous = service.previous_spec.as_ref().ok_or_else(|| {
                ApiError::invalid(format!(
                    "rpc error: code = FailedPrecondition desc = service {id} does not have a previous spec"
                ))
            })?;
            let endpoint = resolve_endpoint(&state, &id, &previous.endpoint_spec)?;
            manager.propose(Command::RollbackService { id, version: Some(version), endpoint: Some(endpoint) }).await?;
            return Ok(Vec::new());
        }
        validate_spec(&mut spec)?;
        resolve_networks(&state, &mut spec)?;
        if spec.name != service.spec.name {
            return Err(ApiError::invalid("rpc error: code = Unimplemented desc = renaming services is not supported"));
        }
        if spec.mode.global.is_some() != service.spec.mode.global.is_some() {
            return Err(ApiError::invalid("rpc error: code = Unimplemented desc = service mode change is not allowed"));
        }
        let endpoint = resolve_endpoint(&state, &id, &spec.endpoint_spec)?;
        manager.propose(Command::UpdateService { id, version, spec: Box::new(spec), endpoint }).await?;
        Ok(Vec::new())
    }

    async fn remove_service(&self, key: &str) -> ApiResult<()> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let id = find_service(&manager.state(), key)?.id.clone();
        manager.propose(Command::RemoveService { id }).await?;
        Ok(())
    }

    async fn list_tasks(&self) -> ApiResult<Vec<Task>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        Ok(manager.state().tasks.values().cloned().collect())
    }

    async fn inspect_task(&self, key: &str) -> ApiResult<Task> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        find_task(&manager.state(), key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::service::{PortProtocol, ServiceMode};

    fn spec(name: &str, ports: &[(u32, u32)]) -> ServiceSpec {
        let mut spec = ServiceSpec { name: name.into(), ..Default::default() };
        spec.task_template.container_spec.image = "shoal/echo".into();
        spec.endpoint_spec = Some(EndpointSpec {
            ports: ports
                .iter()
                .map(|&(published, target)| PortConfig {
                    target_port: target,
                    published_port: published,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        spec
    }

    fn with_service(state: &mut ClusterState, id: &str, spec: ServiceSpec) {
        let endpoint = resolve_endpoint(state, id, &spec.endpoint_spec).unwrap();
        state.services.insert(id.into(), new_service(id, spec, endpoint));
    }

    #[test]
    fn validation_fills_defaults_and_refuses_bad_specs() {
        let mut s = spec("web", &[]);
        validate_spec(&mut s).unwrap();
        assert_eq!(s.mode.replicated.unwrap().replicas, Some(1));
        let mut s = spec("bad_name!", &[]);
        assert!(validate_spec(&mut s).unwrap_err().message.contains("valid as a DNS name"));
        let mut s = spec("web", &[]);
        s.task_template.container_spec.image.clear();
        assert!(validate_spec(&mut s).unwrap_err().message.contains("image reference must be provided"));
        let mut s = spec("web", &[]);
        s.mode =
            ServiceMode { replicated: Some(ReplicatedService { replicas: Some(1) }), global: Some(Default::default()) };
        assert!(validate_spec(&mut s).is_err());
        let mut s = spec("web", &[]);
        s.task_template.placement = Some(crate::objects::service::Placement {
            constraints: vec!["node.role=manager".into()],
            ..Default::default()
        });
        let err = validate_spec(&mut s).unwrap_err();
        assert_eq!(
            err.message,
            "rpc error: code = InvalidArgument desc = constraint expected one operator from ==, !="
        );
        let mut s = spec("", &[]);
        validate_spec(&mut s).unwrap();
        assert!(valid_name(&s.name), "generated name {:?}", s.name);
    }

    #[test]
    fn network_targets_resolve_to_ids_with_swarmkit_rules() {
        use crate::objects::network::{Network, INGRESS_NETWORK};
        use crate::objects::service::NetworkAttachmentConfig;
        use crate::state::Proposal;
        let mut state = ClusterState::default();
        let mut apply = |id: &str, name: &str, ingress: bool| {
            let network: Network = serde_json::from_value(serde_json::json!({
                "Name": name, "Id": id, "Created": "2026-01-01T00:00:00Z", "Scope": "swarm", "Driver": "overlay",
                "IPAM": {"Driver": "default", "Config": []}, "Ingress": ingress,
            }))
            .unwrap();
            let command = Command::CreateNetwork { network: Box::new(network) };
            state.apply(1, &Proposal::now(command)).unwrap();
        };
        apply("abc123", "appnet", false);
        apply("abd456", "backend", false);
        apply("ing789", INGRESS_NETWORK, true);
        let with = |targets: &[&str]| {
            let mut s = spec("web", &[]);
            s.task_template.networks = targets
                .iter()
                .map(|t| NetworkAttachmentConfig { target: t.to_string(), ..Default::default() })
                .collect();
            s
        };
        let mut s = with(&["appnet", "abd4"]);
        resolve_networks(&state, &mut s).unwrap();
        let targets: Vec<&str> = s.task_template.networks.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["abc123", "abd456"]);
        let err = resolve_networks(&state, &mut with(&["nope"])).unwrap_err();
        assert_eq!((err.kind, err.message.as_str()), (crate::error::ErrorKind::NotFound, "network nope not found"));
        let err = resolve_networks(&state, &mut with(&["ab"])).unwrap_err();
        assert_eq!(err.message, "network ab is ambiguous (2 matches found)");
        let err = resolve_networks(&state, &mut with(&["ingress"])).unwrap_err();
        assert_eq!(
            err.message,
            "rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network \"ingress\""
        );
        let err = resolve_networks(&state, &mut with(&["appnet", "abc123"])).unwrap_err();
        assert!(err.message.contains("duplicate network attachment"), "{}", err.message);
        let mut dnsrr = spec("web", &[(8080, 80)]);
        dnsrr.endpoint_spec.as_mut().unwrap().mode = EndpointMode::Dnsrr;
        assert_eq!(
            validate_spec(&mut dnsrr).unwrap_err().message,
            "rpc error: code = InvalidArgument desc = port published with ingress mode can't be used with dnsrr mode"
        );
    }

    #[test]
    fn ingress_ports_are_exclusive_and_dynamic_ports_are_allocated() {
        let mut state = ClusterState::default();
        with_service(&mut state, "a", spec("a", &[(8080, 80), (0, 81)]));
        assert_eq!(state.services["a"].endpoint.ports[1].published_port, 30000);
        let err = resolve_endpoint(&state, "b", &spec("b", &[(8080, 80)]).endpoint_spec).unwrap_err();
        assert!(err.message.contains("port '8080' is already in use by service 'a'"), "{}", err.message);
        let b = resolve_endpoint(&state, "b", &spec("b", &[(0, 80)]).endpoint_spec).unwrap();
        assert_eq!(b.ports[0].published_port, 30001);
        // The same service keeps its dynamic port across updates.
        let again = resolve_endpoint(&state, "a", &spec("a", &[(8080, 80), (0, 81)]).endpoint_spec).unwrap();
        assert_eq!(again.ports[1].published_port, 30000);
        // UDP and TCP on the same number do not conflict.
        let mut udp = spec("c", &[(8080, 80)]);
        udp.endpoint_spec.as_mut().unwrap().ports[0].protocol = PortProtocol::Udp;
        assert!(resolve_endpoint(&state, "c", &udp.endpoint_spec).is_ok());
    }
}
