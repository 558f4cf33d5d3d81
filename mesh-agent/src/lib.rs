//! Shoal's node agent: what runs on every node under the daemon.
//!
//! Today it describes the host to the managers ([`host`]); later issues add running tasks in
//! namespaces, programming VXLAN/bridges/FDB over netlink and feeding the eBPF data plane.
//!
//! **Architecture invariant:** only this crate touches netlink, namespaces and the host.

pub mod host;
