//! Global services: one task on every node that can take one, including nodes that join later.
//!
//! A node gets a task when it is `ready`, `active` and meets the service's constraints. A node
//! that is removed, down, drained, or stops meeting the constraints has its task shut down; a
//! paused node keeps what it runs but gets nothing new, not even an update (swarmkit). The tasks
//! of a removed node are set to desired `remove` and reaped. The slot of a global task is its
//! node, so restarts and rolling updates work as for replicated services.

use std::collections::BTreeMap;

use super::constraint::node_matches;
use super::liveness::{retire, sweep, unusable, Enforce};
use super::replicated::constraints;
use super::restart::{self, Decision};
use super::slot::{is_live, new_task, set_desired, Slot, SlotKey};
use super::{update, Pass, ServiceWork};
use crate::objects::service::{Service, Task, TaskState};
use crate::objects::{NodeAvailability, NodeState};

pub(crate) fn reconcile<'a>(pass: &mut Pass<'_>, service: &'a Service, tasks: Vec<&'a Task>) -> ServiceWork<'a> {
    let constraints = constraints(service);
    let mut slots: BTreeMap<String, Slot<'a>> = BTreeMap::new();
    for task in tasks {
        let key = || Slot::new(SlotKey::Node(task.node_id.clone()), Vec::new());
        slots.entry(task.node_id.clone()).or_insert_with(key).add(task);
    }

    for (node_id, slot) in slots.iter_mut() {
        let node = pass.node(node_id);
        // Unlike the constraint enforcer, the global orchestrator checks paused nodes too.
        let fits = node.is_some_and(|n| node_matches(&constraints, &n.node));
        for task in slot.tasks.iter_mut() {
            sweep(pass, task);
            retire(pass, task, &constraints, Enforce::Shutdown);
            if !fits && is_live(task) {
                set_desired(task, TaskState::Shutdown);
            }
            // A removed node never comes back: its tasks leave the history (swarmkit deletes them).
            if node.is_none() {
                set_desired(task, TaskState::Remove);
            }
        }
    }

    let mut updatable: Vec<String> = Vec::new();
    for (node_id, record) in &pass.state.nodes {
        let node = &record.node;
        if unusable(Some(record)) || !node_matches(&constraints, node) {
            continue;
        }
        if node.spec.availability == NodeAvailability::Pause {
            continue;
        }
        let ready = node.status.state == NodeState::Ready;
        let slot =
            slots.entry(node_id.clone()).or_insert_with(|| Slot::new(SlotKey::Node(node_id.clone()), Vec::new()));
        let taken = slot.has_live() || slot.newest().is_some_and(|t| t.desired_state != TaskState::Remove);
        let create = if !taken { true } else { !slot.has_live() && restart::decide(slot, pass.now) == Decision::Now };
        if create && ready {
            let task = new_task(pass, service, &slot.key);
            slot.push(task);
        }
        if !slot.tasks.is_empty() {
            updatable.push(node_id.clone());
        }
    }

    let mut refs: Vec<&mut Slot<'a>> =
        slots.iter_mut().filter(|(n, _)| updatable.binary_search(n).is_ok()).map(|(_, s)| s).collect();
    let update_status = update::step(pass, service, &constraints, &mut refs);

    let slots = slots.into_values().filter(|s| !s.tasks.is_empty()).collect();
    ServiceWork { service, slots, update_status }
}

#[cfg(test)]
mod tests {
    use crate::objects::service::Placement;
    use crate::objects::{NodeAvailability, NodeState};
    use crate::orchestrator::testkit::{global, node, Sim};

    #[test]
    fn one_task_per_node_including_nodes_that_join_later() {
        let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")]);
        let id = sim.create(global("agent"));
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1, 1]);
        let names: Vec<String> = sim.tasks_of(&id).iter().map(|t| t.name.clone()).collect();
        assert!(names.iter().all(|n| n.starts_with("agent.n")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("agent.n2.")), "{names:?}");

        sim.add_node(node("n4", "h4"));
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1, 1, 1]);

        // A node that leaves for good takes its task's history with it.
        sim.set_node_state("n4", NodeState::Down);
        sim.apply(crate::state::Command::RemoveNode { id: "n4".into(), force: false });
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1, 1]);
        assert!(sim.tasks_of(&id).iter().all(|t| t.node_id != "n4"));
    }

    #[test]
    fn drain_down_and_constraints_shut_the_node_task_down() {
        let mut nodes = vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3"), node("n4", "h4")];
        for n in &mut nodes[..3] {
            n.node.spec.labels.insert("edge".into(), "yes".into());
        }
        let mut sim = Sim::new(nodes);
        let mut service = global("edge");
        service.spec.task_template.placement =
            Some(Placement { constraints: vec!["node.labels.edge==yes".into()], ..Default::default() });
        let id = sim.create(service);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1, 1, 0]);

        sim.set_availability("n1", NodeAvailability::Drain);
        sim.set_label("n2", "edge", "no");
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [0, 0, 1, 0]);

        sim.set_node_state("n3", NodeState::Down);
        sim.converge();
        let live =
            sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == crate::objects::service::TaskState::Running);
        assert_eq!(live.count(), 0);

        // Everything back: one new task per node, the old ones stay shut down.
        sim.set_availability("n1", NodeAvailability::Active);
        sim.set_label("n2", "edge", "yes");
        sim.set_node_state("n3", NodeState::Ready);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1, 1, 0]);
    }

    #[test]
    fn paused_nodes_get_nothing_new() {
        let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2")]);
        sim.set_availability("n2", NodeAvailability::Pause);
        let id = sim.create(global("agent"));
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 0]);
    }
}
