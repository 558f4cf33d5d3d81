//! Shoal's eBPF data plane: C programs (cgroup socket hooks for east-west VIPs, tc/tcx for the
//! routing mesh) compiled by clang at build time from `bpf/`, the Rust mirror of the types they
//! share with user space (`types`), Maglev table generation (`maglev`) and the aya loader
//! (`mesh`), which loads or adopts the programs and pinned maps and feeds them services.
//!
//! **Architecture invariant:** `mesh-ebpf` knows nothing about Raft or the API; it is given
//! backends and services and programs maps.

mod bpffs;
pub mod maglev;
mod mesh;
mod sys;
mod tc;
pub mod types;

#[cfg(test)]
mod testns;

pub use bpffs::ensure_bpffs;
pub use mesh::{
    flow_table_entries, flow_table_entries_here, pin_dir, Backend, Mesh, MeshError, NodeConfig, Proto, ServiceCounters,
    ServiceKey, PIN_LAYOUT_VERSION,
};
pub use sys::netns_cookie;
pub use tc::MeshStats;

/// The VXLAN UDP port overlays use unless `swarm init --data-path-port` says otherwise.
pub const DEFAULT_DATA_PATH_PORT: u16 = 4789;

/// Bytes VXLAN adds to every frame (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;

/// The MTU of an overlay on an underlay of `underlay_mtu` bytes.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_tables_grow_with_memory_within_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(super::flow_table_entries(GIB), 65_536);
        assert_eq!(super::flow_table_entries(8 * GIB), 131_072);
        assert_eq!(super::flow_table_entries(24 * GIB), 524_288);
        assert_eq!(super::flow_table_entries(1024 * GIB), 4_194_304);
    }

    #[test]
    fn overlay_mtu_leaves_room_for_vxlan() {
        assert_eq!(super::overlay_mtu(1500), 1450);
        assert_eq!(super::overlay_mtu(1400), 1350);
        assert_eq!(super::overlay_mtu(10), 0);
    }
}
