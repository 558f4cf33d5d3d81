//! Node-side devices of overlay networks (a bridge and its VXLAN port per network, the bridge
//! with the node's own address and MAC where it has one) and the reconciliation of the whole node
//! against a [`WantedOverlay`]. Runs on a thread inside the node's namespace (see
//! [`super::netns`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::InfoKind;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};

use super::links::{self, nl, Link};
use super::names::{self, Owner};
use super::tables::{self, WantedTables};
use super::{BridgeAddress, OverlayError, OverlayNetwork, Underlay, WantedOverlay};

/// The devices of one network on this node.
#[derive(Clone, Debug)]
pub(crate) struct NetworkDevices {
    pub bridge: u32,
    pub bridge_mac: Option<[u8; 6]>,
    pub vxlan: u32,
    pub vxlan_mac: Option<[u8; 6]>,
}

fn owned_by(link: &Link, owner: &Owner) -> bool {
    link.alias.as_deref().and_then(Owner::parse).as_ref() == Some(owner)
}

/// Whether `link` is the bridge `owner` names, as [`ensure_network`] leaves it.
pub(crate) fn is_bridge_of(link: &Link, owner: &Owner) -> bool {
    link.kind == Some(InfoKind::Bridge) && owned_by(link, owner)
}

/// Makes sure `network`'s bridge and VXLAN port exist and are right, adopting what is already
/// there when it matches and fixing (MTU, master, up) or recreating (VNI, port, local) what does
/// not. `links` is a dump of the namespace taken before.
pub(crate) async fn ensure_network(
    handle: &Handle,
    links: &[Link],
    underlay: &Underlay,
    network: &OverlayNetwork,
) -> Result<NetworkDevices, OverlayError> {
    let mtu = network.effective_mtu(underlay);
    let bridge_name = names::network_bridge(network.vni);
    let bridge_owner = Owner::NetworkBridge { network: network.id.clone() };
    let existing = links.iter().find(|link| link.name == bridge_name);
    let (bridge, bridge_mac) = match existing {
        Some(link) if is_bridge_of(link, &bridge_owner) => {
            if link.mtu != mtu || !link.up {
                let fix = LinkUnspec::new_with_index(link.index).mtu(mtu).up().build();
                links::set(handle, fix, &format!("fixing bridge {bridge_name}")).await?;
            }
            (link.index, link.mac)
        }
        _ => {
            if let Some(stale) = existing {
                links::delete(handle, stale.index).await?;
            }
            let create = LinkBridge::new(&bridge_name).mtu(mtu).build();
            handle.link().add(create).execute().await.map_err(nl(format!("creating bridge {bridge_name}")))?;
            let created =
                links::by_name(handle, &bridge_name).await?.ok_or(OverlayError::Unexpected(bridge_name.clone()))?;
            let finish = LinkUnspec::new_with_index(created.index).alias(bridge_owner.alias()).up().build();
            links::set(handle, finish, &format!("naming bridge {bridge_name}")).await?;
            (created.index, created.mac)
        }
    };

    let vxlan_name = names::network_vxlan(network.vni);
    let vxlan_owner = Owner::NetworkVxlan { network: network.id.clone() };
    let existing = links.iter().find(|link| link.name == vxlan_name);
    let params_ok = |link: &Link| {
        link.vxlan.as_ref().is_some_and(|p| {
            p.vni == network.vni
                && p.port == underlay.vxlan_port
                && p.local == Some(underlay.addr)
                && !p.learning
                && p.proxy
        })
    };
    let (vxlan, vxlan_mac) = match existing {
        Some(link) if owned_by(link, &vxlan_owner) && params_ok(link) => {
            if link.mtu != mtu || !link.up || link.master != Some(bridge) {
                let fix = LinkUnspec::new_with_index(link.index).mtu(mtu).controller(bridge).up().build();
                links::set(handle, fix, &format!("fixing VXLAN device {vxlan_name}")).await?;
            }
            if link.port_learning != Some(false) || link.master != Some(bridge) {
                links::set_port_flags(handle, link.index, Some(false), None).await?;
            }
            (link.index, link.mac)
        }
        _ => {
            if let Some(stale) = existing {
                links::delete(handle, stale.index).await?;
            }
            let create = LinkVxlan::new(&vxlan_name, network.vni)
                .port(underlay.vxlan_port)
                .local(underlay.addr)
                .dev(underlay.ifindex)
                .learning(false)
                .proxy(true)
                .mtu(mtu)
                .build();
            handle.link().add(create).execute().await.map_err(nl(format!("creating VXLAN device {vxlan_name}")))?;
            let created =
                links::by_name(handle, &vxlan_name).await?.ok_or(OverlayError::Unexpected(vxlan_name.clone()))?;
            let finish =
                LinkUnspec::new_with_index(created.index).alias(vxlan_owner.alias()).controller(bridge).up().build();
            links::set(handle, finish, &format!("attaching VXLAN device {vxlan_name}")).await?;
            // No learning on the bridge side either: remote MACs come only from the static table.
            links::set_port_flags(handle, created.index, Some(false), None).await?;
            (created.index, created.mac)
        }
    };
    Ok(NetworkDevices { bridge, bridge_mac, vxlan, vxlan_mac })
}

/// Reconciles the node's overlay devices and tables with `wanted`.
pub(crate) async fn sync_node(
    handle: &Handle,
    underlay: &Underlay,
    wanted: &WantedOverlay,
) -> Result<(), OverlayError> {
    // Checked before anything changes: a map that names a network without wanting it is a bug
    // upstream, and half-applying it would only hide that.
    for address in &wanted.bridge_addrs {
        if !wanted.networks.iter().any(|network| network.id == address.network_id) {
            return Err(OverlayError::BridgeWithoutNetwork { network: address.network_id.clone(), ip: address.ip });
        }
    }
    let links = links::dump(handle).await?;
    let mut devices = BTreeMap::new();
    for network in &wanted.networks {
        devices.insert(network.id.clone(), ensure_network(handle, &links, underlay, network).await?);
    }

    // Networks no longer wanted go, unless a local task still has a port on them: the map that
    // dropped the network may predate the task.
    let in_use: BTreeSet<String> = links
        .iter()
        .filter_map(|link| match link.alias.as_deref().and_then(Owner::parse) {
            Some(Owner::TaskPort { network, .. }) => Some(network),
            _ => None,
        })
        .collect();
    for link in &links {
        let network = match link.alias.as_deref().and_then(Owner::parse) {
            Some(Owner::NetworkBridge { network }) | Some(Owner::NetworkVxlan { network }) => network,
            _ => continue,
        };
        if !devices.contains_key(&network) && !in_use.contains(&network) {
            links::delete(handle, link.index).await?;
        }
    }

    let addresses: Vec<AddressMessage> =
        handle.address().get().execute().try_collect().await.map_err(nl("listing addresses"))?;
    for (network, device) in &devices {
        let address = wanted.bridge_addrs.iter().find(|address| address.network_id == *network);
        ensure_bridge_address(handle, device, &addresses, address).await?;
    }

    let mut wanted_tables: BTreeMap<&str, WantedTables> =
        devices.keys().map(|network| (network.as_str(), WantedTables::default())).collect();
    for endpoint in &wanted.remote {
        if let Some(tables) = wanted_tables.get_mut(endpoint.network_id.as_str()) {
            tables.fdb.insert(endpoint.mac, endpoint.vtep);
            tables.neighbours.insert(endpoint.ip, endpoint.mac);
        }
    }
    for endpoint in &wanted.local {
        if let Some(tables) = wanted_tables.get_mut(endpoint.network_id.as_str()) {
            tables.neighbours.insert(endpoint.ip, endpoint.mac);
        }
    }
    let dumps = tables::dump(handle).await?;
    for (network, tables) in wanted_tables {
        let device = &devices[network];
        let diff = tables::diff(&dumps, device.vxlan, device.vxlan_mac, &tables);
        if !diff.is_empty() {
            tables::apply(handle, device.vxlan, diff).await?;
        }
    }
    Ok(())
}

/// Leaves exactly `wanted` (or no IPv4 address) on a network's bridge, and gives the bridge the
/// wanted MAC. `addresses` is a dump of the namespace's addresses. IPv6 addresses (the kernel's
/// link-local one) are not ours and stay. A MAC no longer wanted stays too: without an address
/// the bridge is a plain switch and its MAC names nothing any peer uses.
async fn ensure_bridge_address(
    handle: &Handle,
    device: &NetworkDevices,
    addresses: &[AddressMessage],
    wanted: Option<&BridgeAddress>,
) -> Result<(), OverlayError> {
    if let Some(wanted) = wanted.filter(|wanted| device.bridge_mac != Some(wanted.mac)) {
        // A bridge takes a new MAC while up, and keeps a set one when ports come and go.
        let change = LinkUnspec::new_with_index(device.bridge).address(wanted.mac.to_vec()).build();
        links::set(handle, change, &format!("setting the MAC of bridge {}", device.bridge)).await?;
    }
    let mut present = false;
    for message in addresses.iter().filter(|message| message.header.index == device.bridge) {
        let Some(ip) = ipv4_of(message) else { continue };
        if wanted.is_some_and(|wanted| wanted.ip == ip && wanted.prefix_len == message.header.prefix_len) {
            present = true;
        } else {
            handle
                .address()
                .del(message.clone())
                .execute()
                .await
                .map_err(nl(format!("removing {ip} from bridge {}", device.bridge)))?;
        }
    }
    if let Some(wanted) = wanted.filter(|_| !present) {
        handle
            .address()
            .add(device.bridge, IpAddr::V4(wanted.ip), wanted.prefix_len)
            .execute()
            .await
            .map_err(nl(format!("adding {}/{} to bridge {}", wanted.ip, wanted.prefix_len, device.bridge)))?;
    }
    Ok(())
}

fn ipv4_of(message: &AddressMessage) -> Option<Ipv4Addr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })
}
