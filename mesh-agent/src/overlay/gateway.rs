//! The node's gateway bridge: where tasks on non-internal networks get their default route, and
//! from which the egress NAT rules of [`crate::nat`] masquerade them to the outside (like
//! `docker_gwbridge`). Task ports on it are isolated so two tasks of different networks cannot
//! talk through it; addresses are recorded in the task ports' aliases, so a restarted agent
//! never hands one out twice.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::InfoKind;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use super::links::{self, nl, Link};
use super::names::{Owner, GATEWAY_BRIDGE};
use super::netns::{in_netns, on_thread_in_netns};
use super::{OverlayError, Underlay};

/// The gateway subnet (`docker_gwbridge` uses the same one).
pub(crate) const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 18, 0, 0), 16);
/// The gateway bridge's own address, the tasks' default gateway.
pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

/// Makes sure the gateway bridge exists with its address, IPv4 forwarding is on in the node's
/// namespace, and (when `nat` is given) installs the egress rules isolating those pools.
pub(crate) async fn ensure(
    node_netns: Option<PathBuf>,
    underlay: &Underlay,
    nat: Option<&[(Ipv4Addr, u8)]>,
) -> Result<(), OverlayError> {
    let mtu = underlay.mtu;
    in_netns(node_netns.clone(), move |handle| async move { ensure_bridge(&handle, mtu).await }).await?;
    let rules = nat.map(|pools| crate::nat::EgressRules {
        gateway_ifname: GATEWAY_BRIDGE.to_owned(),
        gateway_subnet: SUBNET,
        isolated_pools: pools.to_vec(),
    });
    on_thread_in_netns(node_netns, move || {
        // /proc/sys/net resolves to the namespace of the thread that opens it.
        let path = "/proc/sys/net/ipv4/ip_forward";
        let fail = |source| OverlayError::Sysctl { path: path.to_owned(), source };
        if std::fs::read_to_string(path).map_err(fail)?.trim() != "1" {
            std::fs::write(path, "1").map_err(fail)?;
        }
        if let Some(rules) = rules {
            crate::nat::apply_egress(&rules).map_err(OverlayError::Nat)?;
        }
        Ok(())
    })
    .await
}

async fn ensure_bridge(handle: &Handle, mtu: u32) -> Result<u32, OverlayError> {
    let existing = links::by_name(handle, GATEWAY_BRIDGE).await?;
    let index = match existing {
        Some(link) if is_ours(&link) => {
            if link.mtu != mtu || !link.up {
                let fix = LinkUnspec::new_with_index(link.index).mtu(mtu).up().build();
                links::set(handle, fix, "fixing the gateway bridge").await?;
            }
            link.index
        }
        stale => {
            if let Some(stale) = stale {
                links::delete(handle, stale.index).await?;
            }
            let create = LinkBridge::new(GATEWAY_BRIDGE).mtu(mtu).build();
            handle.link().add(create).execute().await.map_err(nl("creating the gateway bridge"))?;
            let created = links::by_name(handle, GATEWAY_BRIDGE)
                .await?
                .ok_or_else(|| OverlayError::Unexpected(GATEWAY_BRIDGE.to_owned()))?;
            let finish = LinkUnspec::new_with_index(created.index).alias(Owner::GatewayBridge.alias()).up().build();
            links::set(handle, finish, "naming the gateway bridge").await?;
            created.index
        }
    };
    let addresses: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing the gateway bridge's addresses"))?;
    let has_gateway = addresses.iter().any(|message| {
        message.header.prefix_len == SUBNET.1
            && message.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) if *ip == GATEWAY))
    });
    if !has_gateway {
        handle
            .address()
            .add(index, IpAddr::V4(GATEWAY), SUBNET.1)
            .replace()
            .execute()
            .await
            .map_err(nl("adding the gateway address"))?;
    }
    Ok(index)
}

pub(crate) fn is_ours(link: &Link) -> bool {
    link.kind == Some(InfoKind::Bridge) && link.alias.as_deref().and_then(Owner::parse) == Some(Owner::GatewayBridge)
}

/// The gateway address of `task` if it has one, else the lowest address no task port uses.
pub(crate) fn address_for(links: &[Link], task: &str) -> Result<Ipv4Addr, OverlayError> {
    let mut used = BTreeSet::new();
    for link in links {
        if let Some(Owner::GatewayPort { task: owner, addr }) = link.alias.as_deref().and_then(Owner::parse) {
            if owner == task {
                return Ok(addr);
            }
            used.insert(addr);
        }
    }
    let base = u32::from(SUBNET.0);
    let size = 1u32 << (32 - SUBNET.1);
    // Host 0 is the network, 1 the gateway, the last one broadcast.
    (2..size - 1)
        .map(|host| Ipv4Addr::from(base + host))
        .find(|addr| !used.contains(addr))
        .ok_or(OverlayError::GatewayExhausted(SUBNET.0, SUBNET.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(task: &str, addr: Ipv4Addr) -> Link {
        Link { alias: Some(Owner::GatewayPort { task: task.into(), addr }.alias()), ..Link::default() }
    }

    #[test]
    fn addresses_are_reused_per_task_and_never_handed_out_twice() {
        let links = vec![port("t1", Ipv4Addr::new(172, 18, 0, 2)), port("t3", Ipv4Addr::new(172, 18, 0, 4))];
        assert_eq!(address_for(&links, "t1").unwrap(), Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(address_for(&links, "t2").unwrap(), Ipv4Addr::new(172, 18, 0, 3));
        assert_eq!(address_for(&[], "t2").unwrap(), Ipv4Addr::new(172, 18, 0, 2));
    }
}
