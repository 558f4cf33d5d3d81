//! The static forwarding tables of a network's VXLAN device: FDB entries and neighbours.
//!
//! Per remote endpoint the VXLAN device holds a `self permanent` FDB entry (MAC → remote VTEP)
//! and the bridge a `master static` entry for the same MAC pointing at the VXLAN port, so the
//! bridge forwards to it directly instead of flooding to local ports. Per endpoint (remote and
//! local) a permanent neighbour entry (IP → MAC) on the VXLAN device lets its ARP proxy answer.
//! Both tables are dumped once per sync and only the differences are written. All-zero FDB
//! entries (flood lists) are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::links::{errno, nl};
use super::OverlayError;

pub(crate) type Mac = [u8; 6];

/// The MAC of flood-list FDB entries (`bridge fdb append 00:00:00:00:00:00 dst <vtep>`).
const FLOOD: Mac = [0; 6];

/// What one VXLAN device's tables should hold.
#[derive(Debug, Default)]
pub(crate) struct WantedTables {
    /// Remote MAC → its node's VTEP.
    pub fdb: BTreeMap<Mac, Ipv4Addr>,
    /// Endpoint IP → MAC (remote and local endpoints).
    pub neighbours: BTreeMap<Ipv4Addr, Mac>,
}

/// One dump of the FDB (bridge family) and IPv4 neighbour tables of the namespace.
pub(crate) struct Dumps {
    fdb: Vec<NeighbourMessage>,
    neighbours: Vec<NeighbourMessage>,
}

pub(crate) async fn dump(handle: &Handle) -> Result<Dumps, OverlayError> {
    let fdb = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing FDB entries"))?;
    let neighbours = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing neighbours"))?;
    Ok(Dumps { fdb, neighbours })
}

fn lladdr(message: &NeighbourMessage) -> Option<Mac> {
    message.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
        _ => None,
    })
}

fn destination(message: &NeighbourMessage) -> Option<Ipv4Addr> {
    message.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        // The parser types NDA_DST by the message's family: in a bridge-family (FDB) dump the
        // VTEP comes back as raw bytes. Reading it as "no destination" made every sync delete
        // and re-add every FDB entry.
        NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
            <[u8; 4]>::try_from(bytes.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

/// A clean request for one entry (dumped messages carry cache info the kernel does not want back).
fn entry(
    family: AddressFamily,
    ifindex: u32,
    flags: NeighbourFlags,
    mac: Option<Mac>,
    dst: Option<Ipv4Addr>,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = ifindex;
    message.header.flags = flags;
    if let Some(mac) = mac {
        message.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    if let Some(dst) = dst {
        message.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    }
    message
}

async fn delete(handle: &Handle, message: NeighbourMessage) -> Result<(), OverlayError> {
    match handle.neighbours().del(message).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(nl("deleting a stale FDB or neighbour entry")(e)),
    }
}

/// The changes that make one VXLAN device's tables equal `wanted`, computed from the dumps.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TableDiff {
    pub fdb_self_add: Vec<(Mac, Ipv4Addr)>,
    pub fdb_self_del: Vec<(Mac, Option<Ipv4Addr>)>,
    pub fdb_master_add: Vec<Mac>,
    pub fdb_master_del: Vec<Mac>,
    pub neigh_add: Vec<(Ipv4Addr, Mac)>,
    pub neigh_del: Vec<Ipv4Addr>,
}

impl TableDiff {
    pub(crate) fn is_empty(&self) -> bool {
        *self == TableDiff::default()
    }
}

/// Compares the dumped entries of device `ifindex` (whose own MAC is `own_mac`) with `wanted`.
pub(crate) fn diff(dumps: &Dumps, ifindex: u32, own_mac: Option<Mac>, wanted: &WantedTables) -> TableDiff {
    let mut diff = TableDiff::default();
    let mut self_ok = BTreeSet::new();
    let mut master_ok = BTreeSet::new();
    for message in dumps.fdb.iter().filter(|m| m.header.ifindex == ifindex) {
        let Some(mac) = lladdr(message) else { continue };
        // All-zero entries are flood lists (BUM traffic to every listed VTEP). Nothing here
        // wants them today (the ARP proxy answers from the neighbour table), but they are how
        // broadcast will reach peers, so whoever adds them owns them.
        if mac == FLOOD {
            continue;
        }
        // The bridge's entries carry NDA_MASTER (their header flags are not reliable: the dump
        // does not set NTF_MASTER); the VXLAN device's own carry NTF_SELF.
        let master = message.header.flags.contains(NeighbourFlags::Controller)
            || message.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Controller(_)));
        if !master && message.header.flags.contains(NeighbourFlags::Own) {
            let dst = destination(message);
            if dst.is_some()
                && wanted.fdb.get(&mac).copied() == dst
                && message.header.state == NeighbourState::Permanent
            {
                self_ok.insert(mac);
            } else {
                diff.fdb_self_del.push((mac, dst));
            }
        } else if master {
            // The bridge's entry for the port's own address is the kernel's, not ours.
            if Some(mac) == own_mac && message.header.state == NeighbourState::Permanent {
                continue;
            }
            if wanted.fdb.contains_key(&mac) && message.header.state == NeighbourState::Noarp {
                master_ok.insert(mac);
            } else if !wanted.fdb.contains_key(&mac) {
                diff.fdb_master_del.push(mac);
            }
        }
    }
    for (mac, vtep) in &wanted.fdb {
        if !self_ok.contains(mac) {
            diff.fdb_self_add.push((*mac, *vtep));
        }
        if !master_ok.contains(mac) {
            diff.fdb_master_add.push(*mac);
        }
    }
    let mut neigh_ok = BTreeSet::new();
    for message in dumps.neighbours.iter().filter(|m| m.header.ifindex == ifindex) {
        let Some(ip) = destination(message) else { continue };
        match wanted.neighbours.get(&ip) {
            Some(mac) if lladdr(message) == Some(*mac) && message.header.state == NeighbourState::Permanent => {
                neigh_ok.insert(ip);
            }
            Some(_) => {}
            None => diff.neigh_del.push(ip),
        }
    }
    for (ip, mac) in &wanted.neighbours {
        if !neigh_ok.contains(ip) {
            diff.neigh_add.push((*ip, *mac));
        }
    }
    diff
}

/// Writes a diff to device `ifindex`.
pub(crate) async fn apply(handle: &Handle, ifindex: u32, diff: TableDiff) -> Result<(), OverlayError> {
    for (mac, dst) in diff.fdb_self_del {
        delete(handle, entry(AddressFamily::Bridge, ifindex, NeighbourFlags::Own, Some(mac), dst)).await?;
    }
    for mac in diff.fdb_master_del {
        delete(handle, entry(AddressFamily::Bridge, ifindex, NeighbourFlags::Controller, Some(mac), None)).await?;
    }
    for ip in diff.neigh_del {
        delete(handle, entry(AddressFamily::Inet, ifindex, NeighbourFlags::empty(), None, Some(ip))).await?;
    }
    for (mac, vtep) in diff.fdb_self_add {
        handle
            .neighbours()
            .add_bridge(ifindex, &mac)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .destination(IpAddr::V4(vtep))
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding FDB entry {} → {vtep}", fmt_mac(&mac))))?;
    }
    for mac in diff.fdb_master_add {
        // `static` (NUD_NOARP), not `permanent`: a permanent bridge entry would mean "this MAC is
        // the bridge's own" and deliver the frames locally.
        handle
            .neighbours()
            .add_bridge(ifindex, &mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding bridge FDB entry {}", fmt_mac(&mac))))?;
    }
    for (ip, mac) in diff.neigh_add {
        handle
            .neighbours()
            .add(ifindex, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding neighbour {ip} → {}", fmt_mac(&mac))))?;
    }
    Ok(())
}

pub(crate) fn fmt_mac(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VX: u32 = 7;
    const OWN: Mac = [0x02, 0, 0, 0, 0, 0xee];
    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const NODE2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const NODE3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

    /// An FDB entry as a dump parses it: the VTEP as raw bytes, since the family is the bridge's.
    fn fdb(flags: NeighbourFlags, state: NeighbourState, mac: Mac, dst: Option<Ipv4Addr>) -> NeighbourMessage {
        let mut message = entry(AddressFamily::Bridge, VX, flags, Some(mac), None);
        if let Some(dst) = dst {
            let raw = NeighbourAddress::Other(dst.octets().to_vec());
            message.attributes.push(NeighbourAttribute::Destination(raw));
        }
        message.header.state = state;
        message
    }

    fn neigh(ip: Ipv4Addr, mac: Mac, state: NeighbourState) -> NeighbourMessage {
        let mut message = entry(AddressFamily::Inet, VX, NeighbourFlags::empty(), Some(mac), Some(ip));
        message.header.state = state;
        message
    }

    fn wanted(fdb: &[(Mac, Ipv4Addr)], neighbours: &[(Ipv4Addr, Mac)]) -> WantedTables {
        WantedTables { fdb: fdb.iter().copied().collect(), neighbours: neighbours.iter().copied().collect() }
    }

    #[test]
    fn matching_tables_need_nothing_and_the_ports_own_entry_and_flood_lists_stay() {
        let dumps = Dumps {
            fdb: vec![
                fdb(NeighbourFlags::Own, NeighbourState::Permanent, A, Some(NODE2)),
                fdb(NeighbourFlags::Controller, NeighbourState::Noarp, A, None),
                fdb(NeighbourFlags::Controller, NeighbourState::Permanent, OWN, None),
                // Flood lists are not ours to remove.
                fdb(NeighbourFlags::Own, NeighbourState::Permanent, FLOOD, Some(NODE3)),
                // Another device's entries are not ours to judge.
                {
                    let mut m = fdb(NeighbourFlags::Own, NeighbourState::Permanent, B, Some(NODE3));
                    m.header.ifindex = 99;
                    m
                },
            ],
            neighbours: vec![neigh(Ipv4Addr::new(10, 0, 1, 2), A, NeighbourState::Permanent)],
        };
        let diff = diff(&dumps, VX, Some(OWN), &wanted(&[(A, NODE2)], &[(Ipv4Addr::new(10, 0, 1, 2), A)]));
        assert!(diff.is_empty(), "{diff:?}");
    }

    #[test]
    fn moved_stale_and_missing_entries_are_fixed() {
        let ip_a = Ipv4Addr::new(10, 0, 1, 2);
        let ip_b = Ipv4Addr::new(10, 0, 1, 3);
        let ip_old = Ipv4Addr::new(10, 0, 1, 9);
        let dumps = Dumps {
            fdb: vec![
                // A moved from node 3 to node 2.
                fdb(NeighbourFlags::Own, NeighbourState::Permanent, A, Some(NODE3)),
                fdb(NeighbourFlags::Controller, NeighbourState::Noarp, A, None),
                // B is gone.
                fdb(NeighbourFlags::Own, NeighbourState::Permanent, B, Some(NODE3)),
                fdb(NeighbourFlags::Controller, NeighbourState::Noarp, B, None),
            ],
            neighbours: vec![
                neigh(ip_a, B, NeighbourState::Permanent),
                neigh(ip_b, B, NeighbourState::Reachable),
                neigh(ip_old, B, NeighbourState::Permanent),
            ],
        };
        let diff = diff(&dumps, VX, Some(OWN), &wanted(&[(A, NODE2)], &[(ip_a, A), (ip_b, B)]));
        assert_eq!(
            diff,
            TableDiff {
                fdb_self_add: vec![(A, NODE2)],
                fdb_self_del: vec![(A, Some(NODE3)), (B, Some(NODE3))],
                fdb_master_add: vec![],
                fdb_master_del: vec![B],
                neigh_add: vec![(ip_a, A), (ip_b, B)],
                neigh_del: vec![ip_old],
            }
        );
    }
}
