//! Shoal's node agent: what runs on every node under the daemon.
//!
//! It describes the host to the managers ([`host`]), runs tasks as processes in their own
//! namespaces and cgroups ([`runtime`], with the built-in `shoal/echo` image in [`echo`]) and
//! watches the other nodes by SWIM gossip on 7946 ([`gossip`]). Later issues add VXLAN, bridges
//! and FDB over netlink and feed the eBPF data plane.
//!
//! **Architecture invariant:** only this crate touches netlink, namespaces and the host.

pub mod echo;
pub mod gossip;
pub mod host;
pub mod runtime;
