//! The tables the resolver is fed: what the cluster knows about services and tasks on each network.
//!
//! These are plain data, decided elsewhere (the daemon derives them from the replicated state and
//! the node's view of task health); the resolver only indexes them. They derive serde so a table can
//! be loaded from JSON by the `serve` example and by benchmarks.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Everything the resolver answers from. Replaced as a whole by [`crate::Resolver::set_records`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
}

/// A service on one network. One per (service, network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service's name, e.g. `web`.
    pub name: String,
    /// The network this record is about; only tasks attached to it see the name.
    pub network_id: String,
    /// The service's virtual IP on this network; `None` in `dnsrr` mode.
    #[serde(default)]
    pub vip: Option<Ipv4Addr>,
    /// `--endpoint-mode dnsrr`: `<service>` answers with the running task IPs instead of a VIP.
    #[serde(default)]
    pub dnsrr: bool,
    /// Network aliases of the service on this network; each answers like the service name.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A task's attachment to one network. One per (task, network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The name of the service the task belongs to.
    pub service_name: String,
    /// The network this attachment is on.
    pub network_id: String,
    /// The task's address on this network.
    pub ip: Ipv4Addr,
    /// `<service>.<slot>.<task-id>` (global services: `<service>.<node-id>.<task-id>`).
    pub task_name: String,
    /// `<service>.<slot>` for replicated services, `None` for global ones.
    #[serde(default)]
    pub slot_name: Option<String>,
    /// Running and healthy: only such tasks are handed out by `tasks.<service>`, dnsrr service
    /// names and task names.
    pub running: bool,
    /// Aliases of this task's endpoint on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
}
