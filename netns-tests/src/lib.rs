//! The netns lab: N Shoal nodes on one machine, each a network namespace running a real
//! `shoal daemon`, for the privileged end-to-end tests in `tests/` and for `cargo xtask
//! demo|lab|bench`.
//!
//! A [`Lab`] is one "lab" namespace holding the underlay bridge `br0` plus one namespace per
//! node, attached to the bridge by a veth pair whose node end is `eth0` with address
//! `198.18.0.N/15`. Both veth ends are created directly inside their namespaces, so the root
//! namespace's links, routes, sysctls and firewall are never touched; traffic only ever goes to
//! loopback or to addresses inside namespaces the lab made. Names carry the creating process's
//! pid and a counter (`shl-<pid>-<n>-lab`, `shl-<pid>-<n>-n1`), so tests run in parallel without
//! colliding, and a lab left behind by a crashed run is swept by the next one.
//!
//! Tests wait with [`poll_until`] (a condition and a deadline), never with fixed sleeps.
//!
//! Module map: [`lab`] (namespaces, lifetime, swarm helpers), [`node`] (one node: daemon,
//! faults, CLI/API access), [`swarm`] (forming a cluster, reading `node ls`), [`services`]
//! (services and tasks through the API, reaching into a task), [`tasks`] (task processes,
//! cgroups and mounts a node leaves behind, and removing them), [`netns`] (namespace plumbing),
//! [`http`] (a minimal Engine API client over the unix socket), [`table`] (parsing `node ls`
//! tables), [`cmd`] (running commands with a hang guard), [`poll`], [`binary`] (finding and
//! building `shoal`).

pub mod binary;
pub mod cmd;
pub mod dns;
pub mod http;
pub mod lab;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod overlay;
pub mod poll;
pub mod services;
pub mod swarm;
pub mod table;
pub mod tasks;

pub use cmd::CmdOutput;
pub use http::HttpResponse;
pub use lab::{Lab, LabOptions};
pub use node::Node;
pub use poll::{poll_until, time_until, Observation};
pub use services::TaskView;
pub use table::{parse_node_ls, NodeRow};

use std::time::Duration;

/// How long a lab waits for things that should be quick on an idle machine (a daemon answering
/// `/_ping`, a join completing). Generous because CI has 2 shared cores.
pub const SHORT: Duration = Duration::from_secs(30);

/// How long a lab waits for cluster-level convergence (a new leader, a node marked down, a
/// restarted manager becoming reachable again).
pub const CLUSTER: Duration = Duration::from_secs(90);
