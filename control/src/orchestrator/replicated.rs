//! Replicated services: keep `replicas` slots taken, each with one live task.
//!
//! A slot is *taken* while it has a live task, or while its last task stopped and is waiting for
//! (or was refused) a restart; it is *released* once its tasks are set to desired `remove`.
//! Scaling up fills the lowest free slot numbers, so a new service gets slots `1..=N`. Scaling
//! down releases slots the way swarmkit chooses them: prefer keeping running tasks, and remove
//! the copies on the nodes that hold the most copies of the service first (each task is ranked as
//! the n-th copy on its node, lowest slot first), so the survivors stay spread; with a balanced
//! spread that removes the highest slots. Slots without a single assigned live task go first.

use std::collections::{BTreeMap, HashSet};

use super::constraint::{parse_constraints, Constraint};
use super::liveness::{retire, sweep, Enforce};
use super::restart::{self, Decision};
use super::slot::{new_task, set_desired, Slot, SlotKey};
use super::{update, FastMap, Pass, ServiceWork};
use crate::objects::service::{Service, Task, TaskState};

pub(crate) fn replicas(service: &Service) -> u64 {
    service.spec.mode.replicated.as_ref().and_then(|r| r.replicas).unwrap_or(1)
}

pub(crate) fn constraints(service: &Service) -> Vec<Constraint> {
    let placement = service.spec.task_template.placement.as_ref();
    placement.map(|p| parse_constraints(&p.constraints).unwrap_or_default()).unwrap_or_default()
}

fn taken(slot: &Slot<'_>) -> bool {
    slot.has_live() || slot.newest().is_some_and(|t| t.desired_state != TaskState::Remove)
}

pub(crate) fn reconcile<'a>(pass: &mut Pass<'_>, service: &'a Service, tasks: Vec<&'a Task>) -> ServiceWork<'a> {
    let constraints = constraints(service);
    let mut slots: BTreeMap<u64, Slot<'a>> = BTreeMap::new();
    for task in tasks {
        slots.entry(task.slot).or_insert_with(|| Slot::new(SlotKey::Replica(task.slot), Vec::new())).add(task);
    }
    for slot in slots.values_mut() {
        for task in slot.tasks.iter_mut() {
            sweep(pass, task);
            retire(pass, task, &constraints, Enforce::Reject);
        }
    }

    let mut taken: Vec<u64> = slots.iter().filter(|(_, s)| taken(s)).map(|(n, _)| *n).collect();
    let want = replicas(service) as usize;
    if taken.len() > want {
        let keep: HashSet<u64> = survivors(&slots, &taken, want).into_iter().collect();
        for n in taken.iter().filter(|n| !keep.contains(n)) {
            for task in slots.get_mut(n).expect("taken slot").tasks.iter_mut() {
                set_desired(task, TaskState::Remove);
            }
        }
        taken.retain(|n| keep.contains(n));
    } else if taken.len() < want {
        let used: HashSet<u64> = taken.iter().copied().collect();
        let free = (1u64..).filter(|n| !used.contains(n)).take(want - taken.len()).collect::<Vec<_>>();
        for n in free {
            let key = SlotKey::Replica(n);
            let task = new_task(pass, service, &key);
            slots.entry(n).or_insert_with(|| Slot::new(key, Vec::new())).push(task);
            taken.push(n);
        }
    }

    for n in &taken {
        let slot = slots.get_mut(n).expect("taken slot");
        if !slot.has_live() && restart::decide(slot, pass.now) == Decision::Now {
            let task = new_task(pass, service, &slot.key);
            slot.push(task);
        }
    }

    taken.sort_unstable();
    let mut updatable: Vec<&mut Slot<'a>> =
        slots.iter_mut().filter(|(n, _)| taken.binary_search(n).is_ok()).map(|(_, slot)| slot).collect();
    let update_status = update::step(pass, service, &constraints, &mut updatable);

    ServiceWork { service, slots: slots.into_values().collect(), update_status }
}

/// The `want` slots a scale-down keeps (swarmkit's `slotsByRunningState` then `slotsByIndex`).
fn survivors(slots: &BTreeMap<u64, Slot<'_>>, taken: &[u64], want: usize) -> Vec<u64> {
    let running = |n: &u64| slots[n].live().any(|t| t.status.state == TaskState::Running);
    let mut order: Vec<u64> = taken.to_vec();
    order.sort_by_key(|n| (!running(n), *n));
    let mut copies: FastMap<&str, usize> = FastMap::default();
    let mut ranked: Vec<(usize, u64)> = order
        .iter()
        .map(|n| {
            let mut live = slots[n].live();
            let rank = match (live.next(), live.next()) {
                (Some(task), None) if !task.node_id.is_empty() => {
                    let count = copies.entry(task.node_id.as_str()).or_default();
                    *count += 1;
                    *count
                }
                _ => usize::MAX,
            };
            (rank, *n)
        })
        .collect();
    // Stable: equal ranks keep the running-first, lowest-slot-first order.
    ranked.sort_by_key(|(rank, _)| *rank);
    ranked.into_iter().take(want).map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::service::RestartPolicy;
    use crate::objects::{NodeAvailability, NodeState};
    use crate::orchestrator::testkit::{node, replicated, Sim};

    fn three_nodes() -> Vec<crate::state::NodeRecord> {
        vec![node("n1", "h1"), node("n2", "h2"), node("n3", "h3")]
    }

    #[test]
    fn scale_six_to_nine_to_two() {
        let mut sim = Sim::new(three_nodes());
        let id = sim.create(replicated("web", 6));
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [2, 2, 2]);
        assert_eq!(sim.running_slots(&id), (1..=6).collect::<Vec<_>>());

        sim.scale(&id, 9);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [3, 3, 3]);
        assert_eq!(sim.running_slots(&id), (1..=9).collect::<Vec<_>>());

        sim.scale(&id, 2);
        sim.converge();
        assert_eq!(sim.running_slots(&id), [1, 2]);
        let per_node = sim.running_per_node(&id);
        assert_eq!(per_node.iter().filter(|n| **n == 1).count(), 2, "survivors on two nodes: {per_node:?}");
        // Removed tasks are deleted once stopped: nothing but the two survivors is left.
        assert_eq!(sim.tasks_of(&id).len(), 2);
    }

    #[test]
    fn scale_down_removes_copies_from_the_most_loaded_node_first() {
        let mut sim = Sim::new(vec![node("n1", "h1"), node("n2", "h2")]);
        let id = sim.create(replicated("web", 2));
        sim.converge();
        // Slot 1 moves to n2 while n1 drains; slot 3 then lands on the emptier n1.
        sim.set_availability("n1", NodeAvailability::Drain);
        sim.converge();
        sim.set_availability("n1", NodeAvailability::Active);
        sim.scale(&id, 3);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 2]);
        // Scaling to 2 removes n2's second copy (slot 2), not the highest slot.
        sim.scale(&id, 2);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 1]);
        assert_eq!(sim.running_slots(&id), [1, 3]);
    }

    #[test]
    fn drain_moves_every_task() {
        let mut sim = Sim::new(three_nodes());
        let id = sim.create(replicated("web", 6));
        sim.converge();
        sim.set_availability("n1", NodeAvailability::Drain);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [0, 3, 3]);
        assert!(sim
            .tasks_of(&id)
            .iter()
            .filter(|t| t.node_id == "n1")
            .all(|t| t.status.state == TaskState::Shutdown && t.desired_state == TaskState::Shutdown));
    }

    #[test]
    fn pause_keeps_tasks_but_places_nothing_new() {
        let mut sim = Sim::new(three_nodes());
        let id = sim.create(replicated("web", 3));
        sim.converge();
        sim.set_availability("n1", NodeAvailability::Pause);
        sim.scale(&id, 6);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [1, 3, 2]);
    }

    #[test]
    fn node_down_is_replaced_elsewhere_and_not_duplicated_when_it_returns() {
        let mut sim = Sim::new(three_nodes());
        let id = sim.create(replicated("web", 6));
        sim.converge();
        sim.set_node_state("n3", NodeState::Down);
        sim.converge();
        assert_eq!(sim.running_per_node(&id), [3, 3, 0]);
        // n3's old tasks still read running (a dead node reports nothing) but are desired shutdown.
        let on_n3: Vec<_> = sim.tasks_of(&id).into_iter().filter(|t| t.node_id == "n3").collect();
        assert_eq!(on_n3.len(), 2);
        assert!(on_n3.iter().all(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Shutdown));
        let live: Vec<_> = sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == TaskState::Running).collect();
        assert_eq!(live.len(), 6);
        assert!(live.iter().all(|t| t.node_id != "n3"));

        sim.set_node_state("n3", NodeState::Ready);
        sim.converge();
        // Back, n3's agent stops its old tasks; nothing moves back and nothing is duplicated.
        assert_eq!(sim.running_per_node(&id), [3, 3, 0]);
        let on_n3 = sim.tasks_of(&id).into_iter().filter(|t| t.node_id == "n3");
        assert!(on_n3.map(|t| t.status.state).all(|s| s == TaskState::Shutdown));
        let live = sim.tasks_of(&id).into_iter().filter(|t| t.desired_state == TaskState::Running).count();
        assert_eq!(live, 6);
    }

    #[test]
    fn restart_delay_and_max_attempts() {
        let mut sim = Sim::new(three_nodes());
        let mut service = replicated("crash", 1);
        service.spec.task_template.restart_policy =
            Some(RestartPolicy { delay: Some(2 * crate::objects::SECOND_NS), max_attempts: 2, ..Default::default() });
        service.spec.task_template.container_spec.image = "fails".into();
        let id = sim.create(service);
        sim.fail_image("fails");
        // Original + 2 restarts, each 2 s after the previous failure, then nothing more.
        sim.run_for(30.0);
        let tasks = sim.tasks_of(&id);
        assert_eq!(tasks.len(), 3);
        assert!(tasks.iter().all(|t| t.status.state == TaskState::Failed && t.desired_state == TaskState::Shutdown));
        let mut created: Vec<_> = tasks.iter().map(|t| (t.created_at, t.status.timestamp)).collect();
        created.sort();
        for pair in created.windows(2) {
            let gap = pair[1].0 - pair[0].1;
            assert!(gap >= chrono::Duration::seconds(2) && gap < chrono::Duration::milliseconds(2300), "{gap}");
        }
        assert!(sim.step().is_empty());
    }

    #[test]
    fn restart_condition_none_leaves_the_slot_stopped() {
        let mut sim = Sim::new(three_nodes());
        let mut service = replicated("once", 2);
        service.spec.task_template.restart_policy =
            Some(RestartPolicy { condition: crate::objects::service::RestartCondition::None, ..Default::default() });
        service.spec.task_template.container_spec.image = "fails".into();
        sim.fail_image("fails");
        let id = sim.create(service);
        sim.run_for(20.0);
        assert_eq!(sim.tasks_of(&id).len(), 2);
        assert!(sim.step().is_empty());
    }
}
