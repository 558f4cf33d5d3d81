//! The in-memory index the handler answers from, built once per [`Records`] so a query is a couple
//! of hash lookups.
//!
//! Every name is indexed per network, so scoping is a filter on the asking task's networks. A name
//! the cluster knows but that is not on any of those networks answers NXDOMAIN and is never
//! forwarded: forwarding would leak that it exists elsewhere and could hand out another network's
//! answer from an upstream that happens to know it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::records::Records;

/// What a name means to the asking task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NameLookup {
    /// A cluster name on one of the asker's networks. Empty when it exists but has no address right
    /// now (a dnsrr service or `tasks.<service>` with no running task): NOERROR with no answer.
    Found(Vec<Ipv4Addr>),
    /// A cluster name, but not on the asker's networks, or `tasks.<unknown>`.
    NxDomain,
    /// Not a cluster name: the upstream resolvers decide.
    NotOurs,
}

/// What an address means to the asking task (PTR queries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PtrLookup {
    Found(Vec<String>),
    NxDomain,
    NotOurs,
}

/// Which meaning of a name wins when several claim it on the same network: a service (or its
/// alias) over a task name over a task alias, so a task alias can never hijack a service name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Service,
    TaskName,
    TaskAlias,
}

#[derive(Debug)]
struct NameEntry {
    rank: Rank,
    ips: Vec<Ipv4Addr>,
    /// Several addresses that stand for equal backends (tasks): rotated per query so clients that
    /// take the first address spread their load.
    rotate: bool,
}

/// Names and addresses by network. Keys are lower-case without a trailing dot.
#[derive(Debug, Default)]
pub(crate) struct Table {
    names: HashMap<String, HashMap<String, NameEntry>>,
    addrs: HashMap<Ipv4Addr, HashMap<String, Vec<String>>>,
}

impl Table {
    pub(crate) fn new(records: &Records) -> Table {
        let mut table = Table::default();

        // Running task addresses per (service, network): the answer of `tasks.<service>` and of a
        // dnsrr service. Sorted so the rotation starts from a stable order.
        let mut running: HashMap<(String, String), Vec<Ipv4Addr>> = HashMap::new();
        for task in &records.tasks {
            let group = running.entry((normalize(&task.service_name), task.network_id.clone())).or_default();
            if task.running {
                group.push(task.ip);
            }
        }
        for ips in running.values_mut() {
            ips.sort();
            ips.dedup();
        }

        for service in &records.services {
            let name = normalize(&service.name);
            let tasks = running.get(&(name.clone(), service.network_id.clone())).cloned().unwrap_or_default();
            let (ips, rotate) = match (service.dnsrr, service.vip) {
                (true, _) => (tasks.clone(), true),
                (false, Some(vip)) => (vec![vip], false),
                // A VIP service whose VIP is not allocated yet: the name exists, without an address.
                (false, None) => (Vec::new(), false),
            };
            for label in std::iter::once(&service.name).chain(&service.aliases) {
                let label = normalize(label);
                table.insert(&format!("tasks.{label}"), &service.network_id, Rank::Service, &tasks, true);
                table.insert(&label, &service.network_id, Rank::Service, &ips, rotate);
            }
            if let (false, Some(vip)) = (service.dnsrr, service.vip) {
                table.insert_ptr(vip, &service.network_id, &service.name);
            }
        }

        // `tasks.<service>` also exists for tasks whose service record has not arrived yet.
        for ((service, network), ips) in &running {
            table.insert(&format!("tasks.{service}"), network, Rank::Service, ips, true);
        }

        for task in &records.tasks {
            // Names of tasks that are not running stay known (NOERROR, no answer) so they are
            // never forwarded, but hand out no address: it may already belong to a successor.
            let ips: Vec<Ipv4Addr> = if task.running { vec![task.ip] } else { Vec::new() };
            table.insert(&normalize(&task.task_name), &task.network_id, Rank::TaskName, &ips, false);
            if let Some(slot) = &task.slot_name {
                table.insert(&normalize(slot), &task.network_id, Rank::TaskName, &ips, true);
            }
            for alias in &task.aliases {
                table.insert(&normalize(alias), &task.network_id, Rank::TaskAlias, &ips, true);
            }
            if task.running {
                table.insert_ptr(task.ip, &task.network_id, &task.task_name);
            }
        }
        table
    }

    fn insert(&mut self, name: &str, network: &str, rank: Rank, ips: &[Ipv4Addr], rotate: bool) {
        let per_network = self.names.entry(name.to_owned()).or_default();
        match per_network.get_mut(network) {
            None => {
                per_network.insert(network.to_owned(), NameEntry { rank, ips: ips.to_vec(), rotate });
            }
            Some(entry) if rank < entry.rank => *entry = NameEntry { rank, ips: ips.to_vec(), rotate },
            Some(entry) if rank == entry.rank => {
                for ip in ips {
                    if !entry.ips.contains(ip) {
                        entry.ips.push(*ip);
                    }
                }
                entry.rotate |= rotate;
            }
            Some(_) => {}
        }
    }

    fn insert_ptr(&mut self, ip: Ipv4Addr, network: &str, name: &str) {
        let names = self.addrs.entry(ip).or_default().entry(network.to_owned()).or_default();
        if !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }

    /// Resolves `name` for a task on `scope` (network IDs). `rotation` picks the first address of
    /// rotated answers; the caller passes a counter that moves on every query.
    pub(crate) fn resolve(&self, name: &str, scope: &[String], rotation: usize) -> NameLookup {
        let key = normalize(name);
        let Some(per_network) = self.names.get(&key) else {
            // Service names are single DNS labels, so `tasks.<label>` can only mean a service; a
            // longer `tasks.example.com` may be a real outside name and is forwarded.
            let is_tasks_of_label = key.strip_prefix("tasks.").is_some_and(|rest| !rest.contains('.'));
            return if is_tasks_of_label { NameLookup::NxDomain } else { NameLookup::NotOurs };
        };
        let mut found = false;
        let mut rotate = false;
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for network in scope {
            if let Some(entry) = per_network.get(network) {
                found = true;
                rotate |= entry.rotate;
                for ip in &entry.ips {
                    if !ips.contains(ip) {
                        ips.push(*ip);
                    }
                }
            }
        }
        if !found {
            return NameLookup::NxDomain;
        }
        if rotate && !ips.is_empty() {
            let shift = rotation % ips.len();
            ips.rotate_left(shift);
        }
        NameLookup::Found(ips)
    }

    /// Resolves an address (PTR) for a task on `scope`: task IPs give task names, VIPs the service.
    pub(crate) fn reverse(&self, ip: Ipv4Addr, scope: &[String]) -> PtrLookup {
        let Some(per_network) = self.addrs.get(&ip) else {
            return PtrLookup::NotOurs;
        };
        let mut names: Vec<String> = Vec::new();
        for network in scope {
            for name in per_network.get(network).into_iter().flatten() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        if names.is_empty() {
            PtrLookup::NxDomain
        } else {
            PtrLookup::Found(names)
        }
    }
}

/// DNS names compare case-insensitively and a trailing dot only says the name is absolute.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ServiceRecord, TaskRecord};

    fn service(name: &str, network: &str, vip: Option<[u8; 4]>, aliases: &[&str]) -> ServiceRecord {
        ServiceRecord {
            name: name.into(),
            network_id: network.into(),
            vip: vip.map(Ipv4Addr::from),
            dnsrr: false,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn task(service: &str, slot: u32, id: &str, network: &str, ip: [u8; 4], running: bool) -> TaskRecord {
        TaskRecord {
            service_name: service.into(),
            network_id: network.into(),
            ip: ip.into(),
            task_name: format!("{service}.{slot}.{id}"),
            slot_name: Some(format!("{service}.{slot}")),
            running,
            aliases: Vec::new(),
        }
    }

    /// A small cluster: `web` (VIP, alias `www`) on net-a with three tasks (one stopped), `db`
    /// (dnsrr) on net-a with two tasks, `secret` only on net-b, `api` on both networks, and a
    /// global service `agent` whose tasks carry a task alias.
    fn cluster() -> Table {
        let mut db = service("db", "net-a", None, &[]);
        db.dnsrr = true;
        let mut agent_task = task("agent", 0, "g1", "net-a", [10, 0, 1, 40], true);
        agent_task.task_name = "agent.node1.g1".into();
        agent_task.slot_name = None;
        agent_task.aliases = vec!["collector".into()];
        Table::new(&Records {
            services: vec![
                service("web", "net-a", Some([10, 0, 1, 2]), &["www"]),
                db,
                service("secret", "net-b", Some([10, 0, 2, 2]), &[]),
                service("api", "net-a", Some([10, 0, 1, 3]), &[]),
                service("api", "net-b", Some([10, 0, 2, 3]), &[]),
            ],
            tasks: vec![
                task("web", 1, "t1", "net-a", [10, 0, 1, 10], true),
                task("web", 2, "t2", "net-a", [10, 0, 1, 11], true),
                task("web", 3, "t3", "net-a", [10, 0, 1, 12], false),
                task("db", 1, "d1", "net-a", [10, 0, 1, 21], true),
                task("db", 2, "d2", "net-a", [10, 0, 1, 20], true),
                task("secret", 1, "s1", "net-b", [10, 0, 2, 10], true),
                agent_task,
            ],
        })
    }

    /// Formats a lookup the way the cases below spell their expectations.
    fn check(table: &Table, scope: &[&str], name: &str, rotation: usize, expected: &str) {
        let scope: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
        let got = match table.resolve(name, &scope, rotation) {
            NameLookup::Found(ips) if ips.is_empty() => "NODATA".to_owned(),
            NameLookup::Found(ips) => ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(" "),
            NameLookup::NxDomain => "NXDOMAIN".to_owned(),
            NameLookup::NotOurs => "forward".to_owned(),
        };
        assert_eq!(got, expected, "{name} on {scope:?}");
    }

    #[test]
    fn names_resolve_on_the_askers_networks() {
        let table = cluster();
        let cases: &[(&[&str], &str, &str)] = &[
            (&["net-a"], "web", "10.0.1.2"),
            (&["net-a"], "WEB.", "10.0.1.2"),
            (&["net-a"], "www", "10.0.1.2"),
            (&["net-a"], "tasks.web", "10.0.1.10 10.0.1.11"),
            (&["net-a"], "tasks.www", "10.0.1.10 10.0.1.11"),
            (&["net-a"], "Tasks.Web.", "10.0.1.10 10.0.1.11"),
            (&["net-a"], "db", "10.0.1.20 10.0.1.21"),
            (&["net-a"], "tasks.db", "10.0.1.20 10.0.1.21"),
            (&["net-a"], "web.1.t1", "10.0.1.10"),
            (&["net-a"], "web.2", "10.0.1.11"),
            (&["net-a"], "agent.node1.g1", "10.0.1.40"),
            (&["net-a"], "collector", "10.0.1.40"),
            // A stopped task's names exist but hand out nothing.
            (&["net-a"], "web.3.t3", "NODATA"),
            (&["net-a"], "web.3", "NODATA"),
            // Isolation: cluster names of other networks are NXDOMAIN, never forwarded.
            (&["net-a"], "secret", "NXDOMAIN"),
            (&["net-a"], "tasks.secret", "NXDOMAIN"),
            (&["net-a"], "secret.1.s1", "NXDOMAIN"),
            (&["net-b"], "web", "NXDOMAIN"),
            (&[], "web", "NXDOMAIN"),
            // A service on several networks answers with the VIP of each network the asker shares.
            (&["net-a"], "api", "10.0.1.3"),
            (&["net-b"], "api", "10.0.2.3"),
            (&["net-a", "net-b"], "api", "10.0.1.3 10.0.2.3"),
            (&["net-a"], "tasks.nothing", "NXDOMAIN"),
            (&["net-a"], "tasks.example.com", "forward"),
            (&["net-a"], "example.com", "forward"),
            (&["net-a"], "web.example.com", "forward"),
        ];
        for (scope, name, expected) in cases {
            check(&table, scope, name, 0, expected);
        }
    }

    #[test]
    fn task_addresses_rotate_and_vips_do_not() {
        let table = cluster();
        check(&table, &["net-a"], "tasks.web", 1, "10.0.1.11 10.0.1.10");
        check(&table, &["net-a"], "tasks.web", 2, "10.0.1.10 10.0.1.11");
        check(&table, &["net-a"], "db", 1, "10.0.1.21 10.0.1.20");
        check(&table, &["net-a"], "web", 1, "10.0.1.2");
        check(&table, &["net-a", "net-b"], "api", 1, "10.0.1.3 10.0.2.3");
    }

    #[test]
    fn dnsrr_service_without_running_tasks_has_no_address() {
        let mut db = service("db", "net-a", None, &[]);
        db.dnsrr = true;
        let table = Table::new(&Records {
            services: vec![db],
            tasks: vec![task("db", 1, "d1", "net-a", [10, 0, 1, 9], false)],
        });
        check(&table, &["net-a"], "db", 0, "NODATA");
        check(&table, &["net-a"], "tasks.db", 0, "NODATA");
    }

    #[test]
    fn a_task_alias_cannot_take_a_service_name() {
        let mut rogue = task("other", 1, "o1", "net-a", [10, 0, 1, 99], true);
        rogue.aliases = vec!["web".into()];
        let table = Table::new(&Records {
            services: vec![service("web", "net-a", Some([10, 0, 1, 2]), &[])],
            tasks: vec![rogue],
        });
        check(&table, &["net-a"], "web", 0, "10.0.1.2");
    }

    #[test]
    fn tasks_name_exists_before_its_service_record() {
        let table =
            Table::new(&Records { services: vec![], tasks: vec![task("late", 1, "l1", "net-a", [10, 0, 1, 5], true)] });
        check(&table, &["net-a"], "tasks.late", 0, "10.0.1.5");
        check(&table, &["net-b"], "tasks.late", 0, "NXDOMAIN");
    }

    #[test]
    fn addresses_reverse_to_task_and_service_names() {
        let table = cluster();
        let a = ["net-a".to_string()];
        let b = ["net-b".to_string()];
        assert_eq!(table.reverse([10, 0, 1, 10].into(), &a), PtrLookup::Found(vec!["web.1.t1".into()]));
        assert_eq!(table.reverse([10, 0, 1, 2].into(), &a), PtrLookup::Found(vec!["web".into()]));
        assert_eq!(table.reverse([10, 0, 2, 10].into(), &a), PtrLookup::NxDomain);
        assert_eq!(table.reverse([10, 0, 2, 10].into(), &b), PtrLookup::Found(vec!["secret.1.s1".into()]));
        // A stopped task's address may already be someone else's: no PTR for it.
        assert_eq!(table.reverse([10, 0, 1, 12].into(), &a), PtrLookup::NotOurs);
        assert_eq!(table.reverse([8, 8, 8, 8].into(), &a), PtrLookup::NotOurs);
    }
}
