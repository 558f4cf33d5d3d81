//! Shoal's node agent: what runs on every node under the daemon.
//!
//! It describes the host to the managers ([`host`]), runs tasks as processes in their own
//! namespaces and cgroups ([`runtime`], with the built-in `shoal/echo` image in [`echo`]) and
//! watches the other nodes by SWIM gossip on 7946 ([`gossip`]), and programs the overlay data plane:
//! VXLAN, bridges, veths, FDB and neighbours over rtnetlink ([`overlay`]) and egress NAT through
//! nf_tables over netlink ([`nat`]).
//!
//! **Architecture invariant:** only this crate touches netlink, namespaces and the host.

pub mod echo;
pub mod gossip;
pub mod host;
pub mod nat;
pub mod overlay;
pub mod runtime;
