//! In-process scheduler/orchestrator benchmark: 1,000 nodes, 100 services × 1,000 replicas.
//!
//! swarmkit's scheduler microbenchmark placed 100,000 tasks on 1,000 nodes in 22.6 s
//! (swarmkit#193); the target for `control::orchestrator::reconcile` is ≤ 2 s. Run with
//! `cargo bench -p control --bench orchestrator`. It times, each on its own, one pass from empty
//! (create and place every task), a converged pass (must plan nothing), a pass after a node went
//! down (its tasks are replaced elsewhere), and the first step of a rolling update of every
//! service with parallelism 0 (all tasks replaced in one pass).

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use control::objects::service::{
    ReplicatedService, Service, ServiceMode, ServiceSpec, TaskState, UpdateConfig, UpdateState,
};
use control::objects::{Node, NodeDescription, NodeSpec, NodeState, NodeStatus, Version};
use control::orchestrator::reconcile;
use control::state::{ClusterState, Command, NodeRecord, Plan, Proposal};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const REPLICAS: u64 = 1_000;

fn node(i: usize) -> NodeRecord {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    NodeRecord {
        node: Node {
            id: format!("node{i:04}"),
            version: Version::default(),
            created_at: at,
            updated_at: at,
            spec: NodeSpec::default(),
            description: NodeDescription { hostname: format!("host{i:04}"), ..Default::default() },
            status: NodeStatus { state: NodeState::Ready, ..Default::default() },
            manager_status: None,
        },
        raft_id: None,
        manager_addr: String::new(),
    }
}

fn service(i: usize) -> Service {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut spec = ServiceSpec {
        name: format!("svc{i:03}"),
        mode: ServiceMode { replicated: Some(ReplicatedService { replicas: Some(REPLICAS) }), global: None },
        update_config: Some(UpdateConfig { parallelism: 0, ..Default::default() }),
        ..Default::default()
    };
    spec.task_template.container_spec.image = "shoal/echo".into();
    spec.task_template.container_spec.args = vec!["--port".into(), "8080".into()];
    Service {
        id: format!("service{i:03}"),
        version: Version::default(),
        created_at: at,
        updated_at: at,
        spec,
        previous_spec: None,
        endpoint: Default::default(),
        update_status: None,
        service_status: None,
    }
}

fn apply(state: &mut ClusterState, index: &mut u64, at: chrono::DateTime<Utc>, command: Command) {
    *index += 1;
    state.apply(*index, &Proposal { at, command }).expect("command applies");
}

/// Times one pass; returns the plan.
fn timed(label: &str, state: &ClusterState, now: chrono::DateTime<Utc>, ids: &mut u64) -> Plan {
    let start = Instant::now();
    let plan = reconcile(state, now, &mut || {
        *ids += 1;
        format!("task{ids:07}")
    });
    let elapsed = start.elapsed();
    println!(
        "{label:<42} {:>8.1} ms  ({} upserts, {} deletes, {} update statuses)",
        elapsed.as_secs_f64() * 1000.0,
        plan.upsert_tasks.len(),
        plan.delete_tasks.len(),
        plan.update_status.len()
    );
    plan
}

/// What the agents would report: every assigned task running, every task told to stop stopped.
fn agents_catch_up(state: &mut ClusterState, now: chrono::DateTime<Utc>) {
    for task in state.tasks.values_mut() {
        let down = state.nodes.get(&task.node_id).is_none_or(|n| n.node.status.state == NodeState::Down);
        if down || task.status.state < TaskState::Assigned || task.status.state.is_terminal() {
            continue;
        }
        let next = if task.desired_state > TaskState::Running { TaskState::Shutdown } else { TaskState::Running };
        if task.status.state != next {
            task.status.state = next;
            task.status.timestamp = now;
        }
    }
}

/// `SHOAL_BENCH_REPEAT=n` repeats the converged pass (for profiling); default 3.
fn converged_repeats() -> usize {
    std::env::var("SHOAL_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn main() {
    let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut state = ClusterState::default();
    let mut index = 0;
    for i in 0..NODES {
        apply(&mut state, &mut index, now, Command::AddNode { node: node(i) });
    }
    for i in 0..SERVICES {
        apply(&mut state, &mut index, now, Command::CreateService { service: Box::new(service(i)) });
    }
    println!("{NODES} nodes, {SERVICES} services x {REPLICAS} replicas");
    let mut ids = 0;

    let plan = timed("from empty: create and place 100,000 tasks", &state, now, &mut ids);
    assert_eq!(plan.upsert_tasks.len(), SERVICES * REPLICAS as usize);
    assert!(plan.upsert_tasks.iter().all(|t| t.status.state == TaskState::Assigned));
    apply(&mut state, &mut index, now, Command::ApplyPlan { plan: Box::new(plan) });
    let per_node = state.tasks.values().filter(|t| t.node_id == "node0000").count();
    assert_eq!(per_node, SERVICES * REPLICAS as usize / NODES, "spread evenly");

    now += Duration::seconds(1);
    agents_catch_up(&mut state, now);
    for _ in 0..converged_repeats() {
        let plan = timed("converged pass", &state, now, &mut ids);
        assert!(plan.is_empty(), "a converged cluster plans nothing");
    }

    now += Duration::seconds(1);
    let status = NodeStatus { state: NodeState::Down, ..Default::default() };
    let down = Command::SetNodeStatus { id: "node0007".into(), status, description: None };
    apply(&mut state, &mut index, now, down);
    let plan = timed("node down: replace its 100 tasks", &state, now, &mut ids);
    assert_eq!(plan.upsert_tasks.len(), 200);
    apply(&mut state, &mut index, now, Command::ApplyPlan { plan: Box::new(plan) });
    now += Duration::seconds(1);
    agents_catch_up(&mut state, now);

    for i in 0..SERVICES {
        let service = &state.services[&format!("service{i:03}")];
        let mut spec = service.spec.clone();
        spec.task_template.force_update = 1;
        let command = Command::UpdateService {
            id: service.id.clone(),
            version: service.version.index,
            spec: Box::new(spec),
            endpoint: service.endpoint.clone(),
        };
        apply(&mut state, &mut index, now, command);
    }
    let plan = timed("rolling update of every task (parallelism 0)", &state, now, &mut ids);
    assert_eq!(plan.update_status.len(), SERVICES);
    assert!(plan.update_status.iter().all(|(_, s)| s.as_ref().is_some_and(|s| s.state == UpdateState::Updating)));
    assert_eq!(plan.upsert_tasks.len(), 2 * SERVICES * REPLICAS as usize);
}
