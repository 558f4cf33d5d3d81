//! Shoal's eBPF data plane: C programs (tc/tcx, XDP where it pays, cgroup socket hooks) compiled
//! by clang at build time, the Rust mirror of the types they share with user space, and the aya
//! loader. The programs arrive with the routing-mesh issue; the constants every data-plane part
//! agrees on live here from the start.
//!
//! **Architecture invariant:** `mesh-ebpf` knows nothing about Raft or the API; it is given
//! backends and services and programs maps.

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
    fn overlay_mtu_leaves_room_for_vxlan() {
        assert_eq!(super::overlay_mtu(1500), 1450);
        assert_eq!(super::overlay_mtu(1400), 1350);
        assert_eq!(super::overlay_mtu(10), 0);
    }
}
