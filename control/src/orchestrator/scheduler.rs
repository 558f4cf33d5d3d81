//! The scheduler: picks a node for every task that has none, as swarmkit's does.
//!
//! Filters run in swarmkit's order and a node fails at the first one it does not pass: ready
//! (node `ready` and availability `active`), constraints, host-mode published ports, and
//! `max_replicas` per node. Among the nodes left, spread: fewest tasks of the same service, then
//! fewest tasks in total, then node ID so that two managers compute the same plan. Nodes sit in an
//! ordered set keyed by that triple and are re-keyed after every placement, so a pass that places
//! many tasks balances them as it goes and costs O(tasks · log nodes) plus O(nodes) per service.
//! A task that fits nowhere stays `pending` with Docker's `no suitable node (…)` in `Status.Err`
//! (what `docker service ps` shows under ERROR) and is tried again on the next pass.
//!
//! Resource reservations and platforms are not checked yet (no task asks for them today).

use std::collections::{BTreeSet, HashSet};

use super::constraint::{node_matches, parse_constraints, Constraint};
use super::slot::{is_live, TaskView};
use super::{FastMap, Pass, ServiceWork};
use crate::objects::service::{PortProtocol, PublishMode, Service, Task, TaskState, TaskStatus};
use crate::objects::{NodeAvailability, NodeState};
use crate::state::NodeRecord;

/// A host-mode published port: (protocol, port).
type HostPort = (u8, u32);

/// The filters, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Ready,
    Constraint,
    HostPort,
    MaxReplicas,
}

const PIPELINE: [Filter; 4] = [Filter::Ready, Filter::Constraint, Filter::HostPort, Filter::MaxReplicas];

impl Filter {
    /// swarmkit's `Explain` texts.
    fn explain(self, nodes: usize) -> String {
        let plural = if nodes == 1 { "1 node".to_string() } else { format!("{nodes} nodes") };
        match self {
            Filter::Ready => format!("{plural} not available for new tasks"),
            Filter::Constraint => format!("scheduling constraints not satisfied on {plural}"),
            Filter::HostPort => format!("host-mode port already in use on {plural}"),
            Filter::MaxReplicas => "max replicas per node limit exceed".to_string(),
        }
    }
}

/// What the scheduler knows about one node.
struct NodeLoad<'a> {
    record: &'a NodeRecord,
    /// Live tasks (desired `running`) assigned and not yet stopped: swarmkit's `ActiveTasksCount`.
    total: u32,
    by_service: FastMap<usize, u32>,
    /// Host-mode ports held by any task on the node that has not stopped yet.
    ports: HashSet<HostPort>,
}

impl NodeLoad<'_> {
    fn of_service(&self, service: usize) -> u32 {
        self.by_service.get(&service).copied().unwrap_or(0)
    }
}

fn protocol_number(p: PortProtocol) -> u8 {
    match p {
        PortProtocol::Tcp => 0,
        PortProtocol::Udp => 1,
        PortProtocol::Sctp => 2,
    }
}

/// The host-mode ports a service's tasks publish (the allocated endpoint, else the spec).
fn host_ports(service: &Service) -> Vec<HostPort> {
    let ports = if service.endpoint.ports.is_empty() {
        service.spec.endpoint_spec.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[])
    } else {
        service.endpoint.ports.as_slice()
    };
    ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
        .map(|p| (protocol_number(p.protocol), p.published_port))
        .collect()
}

fn holds_node(task: &Task) -> bool {
    !task.node_id.is_empty() && task.status.state >= TaskState::Assigned && !task.status.state.is_terminal()
}

fn needs_node(task: &Task) -> bool {
    is_live(task) && task.status.state < TaskState::Assigned
}

struct Cluster<'a> {
    nodes: Vec<NodeLoad<'a>>,
    index: FastMap<&'a str, usize>,
}

impl<'a> Cluster<'a> {
    fn build(pass: &Pass<'a>, works: &[ServiceWork<'_>], ports: &[Vec<HostPort>]) -> Self {
        let nodes: Vec<NodeLoad<'a>> = pass
            .state
            .nodes
            .values()
            .map(|record| NodeLoad { record, total: 0, by_service: FastMap::default(), ports: HashSet::new() })
            .collect();
        let index = nodes.iter().enumerate().map(|(i, n)| (n.record.node.id.as_str(), i)).collect();
        let mut cluster = Cluster { nodes, index };
        for (s, work) in works.iter().enumerate() {
            for task in work.slots.iter().flat_map(|slot| slot.tasks.iter()) {
                if !holds_node(task) {
                    continue;
                }
                let Some(&n) = cluster.index.get(task.node_id.as_str()) else { continue };
                let load = &mut cluster.nodes[n];
                if is_live(task) {
                    load.total += 1;
                    *load.by_service.entry(s).or_default() += 1;
                }
                load.ports.extend(ports[s].iter().copied());
            }
        }
        cluster
    }

    fn place(&mut self, n: usize, service: usize, ports: &[HostPort]) {
        let load = &mut self.nodes[n];
        load.total += 1;
        *load.by_service.entry(service).or_default() += 1;
        load.ports.extend(ports.iter().copied());
    }
}

/// What one group of identical tasks asks of a node.
struct Request<'r> {
    service: usize,
    constraints: &'r [Constraint],
    max_replicas: u64,
    ports: &'r [HostPort],
}

impl Request<'_> {
    /// The first filter `load` fails, if any.
    fn check(&self, load: &NodeLoad<'_>) -> Option<Filter> {
        self.check_static(load).or_else(|| self.check_dynamic(load))
    }

    fn check_static(&self, load: &NodeLoad<'_>) -> Option<Filter> {
        let node = &load.record.node;
        if node.status.state != NodeState::Ready || node.spec.availability != NodeAvailability::Active {
            return Some(Filter::Ready);
        }
        if !node_matches(self.constraints, node) {
            return Some(Filter::Constraint);
        }
        None
    }

    fn check_dynamic(&self, load: &NodeLoad<'_>) -> Option<Filter> {
        if self.ports.iter().any(|p| load.ports.contains(p)) {
            return Some(Filter::HostPort);
        }
        if self.max_replicas > 0 && u64::from(load.of_service(self.service)) >= self.max_replicas {
            return Some(Filter::MaxReplicas);
        }
        None
    }
}

/// swarmkit's `Pipeline.Explain`: failures per filter, most frequent first, ties in pipeline order.
fn explain(failures: impl Iterator<Item = Filter>) -> String {
    let mut counts = [0usize; PIPELINE.len()];
    for f in failures {
        counts[PIPELINE.iter().position(|p| *p == f).expect("filter in pipeline")] += 1;
    }
    let mut order: Vec<usize> = (0..PIPELINE.len()).filter(|i| counts[*i] > 0).collect();
    order.sort_by_key(|i| std::cmp::Reverse(counts[*i]));
    order.iter().map(|i| PIPELINE[*i].explain(counts[*i])).collect::<Vec<_>>().join("; ")
}

fn assign(task: &mut TaskView<'_>, node_id: &str, pass: &Pass<'_>) {
    let task = task.to_mut();
    task.node_id = node_id.to_string();
    task.status = TaskStatus {
        timestamp: pass.now,
        state: TaskState::Assigned,
        message: "scheduler assigned task to node".into(),
        ..Default::default()
    };
}

/// Records why a task stays pending; the timestamp moves only when the reason changes.
fn leave_pending(task: &mut TaskView<'_>, err: &str, pass: &Pass<'_>) {
    if task.status.err != err {
        let status = &mut task.to_mut().status;
        status.err = err.to_string();
        status.timestamp = pass.now;
    }
}

/// Assigns nodes to every live task of `works` that has none.
pub(crate) fn schedule(pass: &Pass<'_>, works: &mut [ServiceWork<'_>]) {
    let pending = works.iter().any(|w| w.slots.iter().flat_map(|s| s.tasks.iter()).any(|t| needs_node(t)));
    if !pending {
        return;
    }
    let ports: Vec<Vec<HostPort>> = works.iter().map(|w| host_ports(w.service)).collect();
    let mut cluster = Cluster::build(pass, works, &ports);
    for (s, work) in works.iter_mut().enumerate() {
        let mut tasks: Vec<&mut TaskView<'_>> =
            work.slots.iter_mut().flat_map(|slot| slot.tasks.iter_mut()).filter(|t| needs_node(t)).collect();
        if tasks.is_empty() {
            continue;
        }
        // Group identical specs: they share constraints and limits.
        let mut groups: Vec<Vec<&mut TaskView<'_>>> = Vec::new();
        for task in tasks.drain(..) {
            match groups.iter_mut().find(|g| g[0].spec == task.spec) {
                Some(group) => group.push(task),
                None => groups.push(vec![task]),
            }
        }
        for group in groups {
            let placement = group[0].spec.placement.clone().unwrap_or_default();
            // Constraints were validated by the API; like swarmkit, a list that does not parse is ignored.
            let constraints = parse_constraints(&placement.constraints).unwrap_or_default();
            let request = Request {
                service: s,
                constraints: &constraints,
                max_replicas: placement.max_replicas,
                ports: &ports[s],
            };
            schedule_group(pass, &mut cluster, &request, group);
        }
    }
}

fn schedule_group(pass: &Pass<'_>, cluster: &mut Cluster<'_>, request: &Request<'_>, group: Vec<&mut TaskView<'_>>) {
    let (preassigned, free): (Vec<_>, Vec<_>) = group.into_iter().partition(|t| !t.node_id.is_empty());

    // Global tasks come with their node: check it, as swarmkit's `taskFitNode` does.
    for task in preassigned {
        let Some(&n) = cluster.index.get(task.node_id.as_str()) else { continue };
        match request.check(&cluster.nodes[n]) {
            None => {
                let node_id = cluster.nodes[n].record.node.id.clone();
                assign(task, &node_id, pass);
                cluster.place(n, request.service, request.ports);
            }
            Some(filter) => leave_pending(task, &filter.explain(1), pass),
        }
    }
    if free.is_empty() {
        return;
    }

    let key = |load: &NodeLoad<'_>, n: usize| (load.of_service(request.service), load.total, n);
    let mut candidates: BTreeSet<(u32, u32, usize)> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, load)| request.check(load).is_none())
        .map(|(n, load)| key(load, n))
        .collect();
    let mut free = free.into_iter();
    for task in free.by_ref() {
        let Some(first) = candidates.pop_first() else {
            let reason = explain(cluster.nodes.iter().filter_map(|load| request.check(load)));
            let err =
                if reason.is_empty() { "no suitable node".to_string() } else { format!("no suitable node ({reason})") };
            leave_pending(task, &err, pass);
            for task in free.by_ref() {
                leave_pending(task, &err, pass);
            }
            return;
        };
        let n = first.2;
        let node_id = cluster.nodes[n].record.node.id.clone();
        assign(task, &node_id, pass);
        cluster.place(n, request.service, request.ports);
        if request.check_dynamic(&cluster.nodes[n]).is_none() {
            candidates.insert(key(&cluster.nodes[n], n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::service::{EndpointSpec, Placement, PortConfig};
    use crate::objects::NodeRole;
    use crate::orchestrator::testkit::{node, replicated, Sim};

    /// Creates `services` on `nodes`, runs one pass, and compares the placement: per service,
    /// the number of tasks per node (nodes in ID order), or the pending error.
    fn check(nodes: Vec<NodeRecord>, services: Vec<Service>, expected: &[&str]) {
        let mut sim = Sim::new(nodes);
        for service in services {
            sim.create(service);
        }
        sim.step();
        let node_ids: Vec<String> = sim.state.nodes.keys().cloned().collect();
        let mut got = Vec::new();
        for service in sim.state.services.values() {
            let tasks: Vec<&Task> = sim.state.tasks.values().filter(|t| t.service_id == service.id).collect();
            let counts: Vec<String> = node_ids
                .iter()
                .map(|n| {
                    tasks
                        .iter()
                        .filter(|t| t.node_id == *n && t.desired_state <= TaskState::Running)
                        .count()
                        .to_string()
                })
                .collect();
            let mut line =
                format!("{}:{}", service.spec.name, counts.iter().map(|c| format!(" {c}")).collect::<String>());
            let errors: BTreeSet<&str> =
                tasks.iter().filter(|t| t.status.state == TaskState::Pending).map(|t| t.status.err.as_str()).collect();
            for err in errors {
                let n = tasks.iter().filter(|t| t.status.err == err && t.status.state == TaskState::Pending).count();
                line.push_str(&format!(" | {n} pending: {err}"));
            }
            got.push(line);
        }
        assert_eq!(got, expected);
    }

    fn three_nodes() -> Vec<NodeRecord> {
        vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")]
    }

    fn constrained(name: &str, replicas: u64, constraints: &[&str]) -> Service {
        let mut s = replicated(name, replicas);
        s.spec.task_template.placement =
            Some(Placement { constraints: constraints.iter().map(|c| c.to_string()).collect(), ..Default::default() });
        s
    }

    fn host_port(name: &str, replicas: u64, port: u32) -> Service {
        let mut s = replicated(name, replicas);
        s.spec.endpoint_spec = Some(EndpointSpec {
            ports: vec![PortConfig {
                target_port: 80,
                published_port: port,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }],
            ..Default::default()
        });
        s
    }

    #[test]
    fn six_replicas_on_three_nodes_are_two_per_node() {
        check(three_nodes(), vec![replicated("web", 6)], &["web: 2 2 2"]);
    }

    #[test]
    fn spread_accounts_for_other_services_and_earlier_placements() {
        // "a" lands first (service IDs order the pass); "b" then prefers the emptier nodes.
        check(three_nodes(), vec![replicated("a", 2), replicated("b", 4)], &["a: 1 1 0", "b: 1 1 2"]);
    }

    #[test]
    fn constraints_on_role_and_labels() {
        let mut nodes = three_nodes();
        nodes[0].node.spec.role = NodeRole::Manager;
        nodes[1].node.spec.labels.insert("disk".into(), "ssd".into());
        nodes[2].node.spec.labels.insert("disk".into(), "ssd".into());
        check(
            nodes,
            vec![
                constrained("mgr", 3, &["node.role==manager"]),
                constrained("ssd", 4, &["node.labels.disk==ssd"]),
                constrained("both", 1, &["node.role==manager", "node.labels.disk==ssd"]),
            ],
            &[
                "mgr: 3 0 0",
                "ssd: 0 2 2",
                "both: 0 0 0 | 1 pending: no suitable node (scheduling constraints not satisfied on 3 nodes)",
            ],
        );
    }

    #[test]
    fn unschedulable_tasks_keep_dockers_message() {
        let mut nodes = three_nodes();
        nodes[0].node.spec.availability = NodeAvailability::Pause;
        nodes[1].node.status.state = NodeState::Down;
        let mut capped = replicated("capped", 3);
        capped.spec.task_template.placement = Some(Placement { max_replicas: 1, ..Default::default() });
        check(
            nodes,
            vec![capped, constrained("nowhere", 1, &["node.hostname==h9"])],
            &[
                "capped: 0 0 1 | 2 pending: no suitable node (2 nodes not available for new tasks; max replicas per node limit exceed)",
                "nowhere: 0 0 0 | 1 pending: no suitable node (2 nodes not available for new tasks; scheduling constraints not satisfied on 1 node)",
            ],
        );
        check(vec![], vec![replicated("alone", 1)], &["alone: | 1 pending: no suitable node"]);
    }

    #[test]
    fn host_mode_ports_conflict_across_services() {
        check(
            three_nodes(),
            vec![host_port("a", 2, 8080), host_port("b", 2, 8080)],
            &["a: 1 1 0", "b: 0 0 1 | 1 pending: no suitable node (host-mode port already in use on 3 nodes)"],
        );
    }

    #[test]
    fn max_replicas_per_node() {
        let mut s = replicated("capped", 4);
        s.spec.task_template.placement = Some(Placement { max_replicas: 2, ..Default::default() });
        check(vec![node("n1", "h1"), node("n2", "h2")], vec![s], &["capped: 2 2"]);
    }

    #[test]
    fn explain_sorts_by_failures_then_pipeline_order() {
        use Filter::*;
        assert_eq!(
            explain([Constraint, Ready, Constraint].into_iter()),
            "scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks"
        );
        assert_eq!(
            explain([HostPort, Ready].into_iter()),
            "1 node not available for new tasks; host-mode port already in use on 1 node"
        );
        assert_eq!(explain(std::iter::empty()), "");
    }
}
