//! Wiring tasks into overlay networks: one veth per (task, network), host side on the network's
//! bridge, task side inside the task's namespace as `eth0`, `eth1`…; plus one on the gateway
//! bridge for egress.
//!
//! Attachment runs in two steps on two threads: in the node's namespace the host sides are
//! created or adopted and fresh task sides are moved into the task's namespace under their
//! temporary names; then in the task's namespace each one is found by its peer ifindex, renamed,
//! and given its MAC, address, MTU and routes (reply routing: [`routing`]). If a host side exists but its peer is not in the
//! task's namespace (the task got a new namespace), the pair is recreated once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::InfoKind;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::gateway;
use super::links::{self, nl, Link};
use super::names::{self, Owner, GATEWAY_BRIDGE};
use super::netns::in_netns;
use super::node::ensure_network;
use super::routing::{self, ReplyRoute};
use super::{OverlayError, OverlayNetwork, TaskInterface, Underlay};

/// One interface the task should have, as the node-side step leaves it for the task-side step.
#[derive(Clone, Debug)]
struct TaskSide {
    host_index: u32,
    /// The name the task side has until it is renamed (fresh pairs only).
    temp_name: String,
    ifname: String,
    mac: Option<[u8; 6]>,
    addr: Ipv4Addr,
    prefix_len: u8,
    mtu: u32,
    /// Default route through this gateway (the egress interface).
    default_via: Option<Ipv4Addr>,
    /// Replies from `addr` go through this gateway on this interface (see [`routing`]).
    reply_gateway: Option<Ipv4Addr>,
    /// The interface's position among the task's (`ethN`), which picks its reply table.
    position: usize,
}

/// One veth the node-side step must have: which bridge, which owner, which names.
struct Port {
    host_name: String,
    temp_name: String,
    owner: Owner,
    bridge: u32,
    mtu: u32,
    isolated: bool,
    side: TaskSide,
}

pub(crate) async fn attach(
    node_netns: Option<PathBuf>,
    underlay: &Underlay,
    task_id: &str,
    netns: &Path,
    nets: &[(OverlayNetwork, TaskInterface)],
    egress: bool,
) -> Result<(), OverlayError> {
    let mut recreate: Vec<u32> = Vec::new();
    for attempt in 0..2 {
        let (underlay, task, task_ns, nets, stale) =
            (underlay.clone(), task_id.to_owned(), netns.to_owned(), nets.to_vec(), recreate.clone());
        let sides = in_netns(node_netns.clone(), move |handle| async move {
            node_side(&handle, &underlay, &task, &task_ns, &nets, egress, &stale).await
        })
        .await?;
        let wanted = sides.clone();
        let missing =
            in_netns(Some(netns.to_owned()), move |handle| async move { task_side(&handle, &wanted).await }).await?;
        if missing.is_empty() {
            // Only return once the ports pass traffic: a task started right after would
            // otherwise lose its first packets.
            let hosts: Vec<u32> = sides.iter().map(|side| side.host_index).collect();
            return in_netns(node_netns, move |handle| async move {
                links::wait_ready(&handle, &hosts, |link| link.oper_up && link.port_forwarding, "bridge ports").await
            })
            .await;
        }
        if attempt == 1 {
            return Err(OverlayError::Unexpected(format!("the task side of {missing:?} in {}", netns.display())));
        }
        recreate = missing;
    }
    unreachable!("the loop returns")
}

/// The node-side step: devices of the networks, host veths, moves of fresh task sides.
async fn node_side(
    handle: &Handle,
    underlay: &Underlay,
    task: &str,
    task_ns: &Path,
    nets: &[(OverlayNetwork, TaskInterface)],
    egress: bool,
    recreate: &[u32],
) -> Result<Vec<TaskSide>, OverlayError> {
    let links = links::dump(handle).await?;
    let mut ports = Vec::new();
    for (position, (network, interface)) in nets.iter().enumerate() {
        let devices = ensure_network(handle, &links, underlay, network).await?;
        let (host_name, temp_name) = names::task_veth(task, &network.id);
        let mtu = network.effective_mtu(underlay);
        ports.push(Port {
            side: TaskSide {
                host_index: 0,
                temp_name: temp_name.clone(),
                ifname: names::task_ifname(position),
                mac: Some(interface.mac),
                addr: interface.ip,
                prefix_len: interface.prefix_len,
                mtu,
                default_via: None,
                reply_gateway: interface.reply_gateway,
                position,
            },
            host_name,
            temp_name,
            owner: Owner::TaskPort { task: task.to_owned(), network: network.id.clone() },
            bridge: devices.bridge,
            mtu,
            isolated: false,
        });
    }
    if egress {
        let bridge = links::by_name(handle, GATEWAY_BRIDGE)
            .await?
            .filter(gateway::is_ours)
            .ok_or_else(|| OverlayError::Unexpected(GATEWAY_BRIDGE.to_owned()))?;
        let addr = gateway::address_for(&links, task)?;
        let (host_name, temp_name) = names::gateway_veth(task);
        ports.push(Port {
            side: TaskSide {
                host_index: 0,
                temp_name: temp_name.clone(),
                ifname: names::task_ifname(nets.len()),
                mac: None,
                addr,
                prefix_len: gateway::SUBNET.1,
                mtu: underlay.mtu,
                default_via: Some(gateway::GATEWAY),
                reply_gateway: None,
                position: nets.len(),
            },
            host_name,
            temp_name,
            owner: Owner::GatewayPort { task: task.to_owned(), addr },
            bridge: bridge.index,
            mtu: underlay.mtu,
            isolated: true,
        });
    }

    // Ports of this task that are no longer wanted (it left a network, or lost egress).
    let wanted_names: BTreeSet<&str> = ports.iter().map(|port| port.host_name.as_str()).collect();
    for link in &links {
        let owner = link.alias.as_deref().and_then(Owner::parse);
        if owner.as_ref().and_then(Owner::task) == Some(task) && !wanted_names.contains(link.name.as_str()) {
            links::delete(handle, link.index).await?;
        }
    }

    let task_ns_file =
        std::fs::File::open(task_ns).map_err(|source| OverlayError::Netns { path: task_ns.to_owned(), source })?;
    let mut sides = Vec::new();
    for mut port in ports {
        let existing = links.iter().find(|link| link.name == port.host_name);
        port.side.host_index = match existing {
            Some(link) if adoptable(link, &port, recreate) => {
                fix_host_side(handle, link, &port).await?;
                link.index
            }
            _ => {
                if let Some(stale) = existing {
                    links::delete(handle, stale.index).await?;
                }
                create_pair(handle, &port, task_ns_file.as_raw_fd()).await?
            }
        };
        sides.push(port.side);
    }
    Ok(sides)
}

fn adoptable(link: &Link, port: &Port, recreate: &[u32]) -> bool {
    link.kind == Some(InfoKind::Veth)
        && link.alias.as_deref().and_then(Owner::parse).as_ref() == Some(&port.owner)
        && !recreate.contains(&link.index)
}

async fn fix_host_side(handle: &Handle, link: &Link, port: &Port) -> Result<(), OverlayError> {
    if link.mtu != port.mtu || link.master != Some(port.bridge) || !link.up {
        let fix = LinkUnspec::new_with_index(link.index).mtu(port.mtu).controller(port.bridge).up().build();
        links::set(handle, fix, &format!("fixing {}", port.host_name)).await?;
    }
    if port.isolated && link.port_isolated != Some(true) {
        links::set_port_flags(handle, link.index, None, Some(true)).await?;
    }
    Ok(())
}

/// Creates a veth pair, puts the host side on its bridge, and moves the task side (with its MAC
/// and MTU, still down, under its temporary name) into the task's namespace.
async fn create_pair(handle: &Handle, port: &Port, task_ns_fd: i32) -> Result<u32, OverlayError> {
    // A task side left in the node by an interrupted attach has lost its host side; drop it.
    if let Some(orphan) = links::by_name(handle, &port.temp_name).await? {
        links::delete(handle, orphan.index).await?;
    }
    let create = LinkVeth::new(&port.host_name, &port.temp_name).mtu(port.mtu).build();
    handle.link().add(create).execute().await.map_err(nl(format!("creating veth {}", port.host_name)))?;
    let host = links::by_name(handle, &port.host_name)
        .await?
        .ok_or_else(|| OverlayError::Unexpected(port.host_name.clone()))?;
    let finish = LinkUnspec::new_with_index(host.index).alias(port.owner.alias()).controller(port.bridge).up().build();
    links::set(handle, finish, &format!("attaching {} to its bridge", port.host_name)).await?;
    if port.isolated {
        links::set_port_flags(handle, host.index, None, Some(true)).await?;
    }
    let peer = links::by_name(handle, &port.temp_name)
        .await?
        .ok_or_else(|| OverlayError::Unexpected(port.temp_name.clone()))?;
    let mut prepare = LinkUnspec::new_with_index(peer.index).mtu(port.mtu);
    if let Some(mac) = port.side.mac {
        prepare = prepare.address(mac.to_vec());
    }
    links::set(handle, prepare.build(), &format!("preparing {}", port.temp_name)).await?;
    let move_in = LinkUnspec::new_with_index(peer.index).setns_by_fd(task_ns_fd).build();
    links::set(handle, move_in, &format!("moving {} into the task's namespace", port.temp_name)).await?;
    Ok(host.index)
}

/// The task-side step. Returns the host ifindexes whose peer is not in this namespace.
async fn task_side(handle: &Handle, sides: &[TaskSide]) -> Result<Vec<u32>, OverlayError> {
    let mut links = links::dump(handle).await?;
    let mut missing = Vec::new();
    let mut replies = Vec::new();
    for side in sides {
        let peer = links.iter().find(|link| {
            link.link == Some(side.host_index) && (link.name == side.temp_name || link.name == side.ifname)
        });
        let Some(peer) = peer.cloned() else {
            missing.push(side.host_index);
            continue;
        };
        if peer.name != side.ifname {
            // Something else holds the name (left over from an earlier wiring): it goes.
            if let Some(squatter) = links.iter().find(|link| link.name == side.ifname) {
                links::delete(handle, squatter.index).await?;
            }
            let rename = LinkUnspec::new_with_index(peer.index).name(side.ifname.clone()).build();
            links::set(handle, rename, &format!("renaming {} to {}", side.temp_name, side.ifname)).await?;
        }
        if let Some(mac) = side.mac.filter(|mac| peer.mac != Some(*mac)) {
            // Most drivers refuse a new MAC while up.
            let down = LinkUnspec::new_with_index(peer.index).down().build();
            links::set(handle, down, &format!("taking {} down", side.ifname)).await?;
            let change = LinkUnspec::new_with_index(peer.index).address(mac.to_vec()).build();
            links::set(handle, change, &format!("setting the MAC of {}", side.ifname)).await?;
        }
        let fix = LinkUnspec::new_with_index(peer.index).mtu(side.mtu).up().build();
        links::set(handle, fix, &format!("bringing {} up", side.ifname)).await?;
        ensure_address(handle, peer.index, side).await?;
        if let Some(gateway) = side.default_via {
            let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(peer.index).build();
            handle.route().add(route).replace().execute().await.map_err(nl("adding the default route"))?;
        }
        if let Some(gateway) = side.reply_gateway {
            replies.push(ReplyRoute {
                position: side.position,
                ifindex: peer.index,
                ip: side.addr,
                prefix_len: side.prefix_len,
                gateway,
            });
        }
        links = links::dump(handle).await?;
    }
    if missing.is_empty() {
        // With an interface missing the attach is retried; routing is settled once all are here
        // (a partial list would drop the missing ones' rules only to add them back).
        routing::ensure(handle, &replies).await?;
    }
    if let Some(lo) = links.iter().find(|link| link.name == "lo" && !link.up) {
        links::set_up(handle, lo.index).await?;
    }
    let peers: Vec<u32> = links
        .iter()
        .filter(|link| sides.iter().any(|side| link.link == Some(side.host_index) && link.name == side.ifname))
        .map(|link| link.index)
        .collect();
    links::wait_ready(handle, &peers, |link| link.oper_up, "task interfaces").await?;
    Ok(missing)
}

/// Leaves exactly the wanted IPv4 address on the interface.
async fn ensure_address(handle: &Handle, index: u32, side: &TaskSide) -> Result<(), OverlayError> {
    let addresses: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("listing addresses of {}", side.ifname)))?;
    let mut present = false;
    for message in addresses {
        let ip = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip else { continue };
        if ip == side.addr && message.header.prefix_len == side.prefix_len {
            present = true;
        } else {
            handle.address().del(message).execute().await.map_err(nl(format!("removing {ip} from {}", side.ifname)))?;
        }
    }
    if !present {
        handle
            .address()
            .add(index, IpAddr::V4(side.addr), side.prefix_len)
            .execute()
            .await
            .map_err(nl(format!("adding {} to {}", side.addr, side.ifname)))?;
    }
    Ok(())
}

/// Removes every device of `task` on the node (a veth's removal takes its peer with it).
pub(crate) async fn detach(node_netns: Option<PathBuf>, task: String) -> Result<(), OverlayError> {
    in_netns(node_netns, move |handle| async move {
        for link in links::dump(&handle).await? {
            if link.alias.as_deref().and_then(Owner::parse).as_ref().and_then(Owner::task) == Some(task.as_str()) {
                links::delete(&handle, link.index).await?;
            }
        }
        Ok(())
    })
    .await
}

/// Task IDs with devices on the node.
pub(crate) async fn attached(node_netns: Option<PathBuf>) -> Result<Vec<String>, OverlayError> {
    in_netns(node_netns, move |handle| async move {
        let tasks: BTreeSet<String> = links::dump(&handle)
            .await?
            .iter()
            .filter_map(|link| link.alias.as_deref().and_then(Owner::parse)?.task().map(str::to_owned))
            .collect();
        Ok(tasks.into_iter().collect())
    })
    .await
}

/// The host-side ifindexes of `task`'s overlay interfaces, by network ID.
pub(crate) async fn veths(node_netns: Option<PathBuf>, task: String) -> Result<Vec<(String, u32)>, OverlayError> {
    in_netns(node_netns, move |handle| async move {
        let mut veths: Vec<(String, u32)> = links::dump(&handle)
            .await?
            .into_iter()
            .filter_map(|link| match link.alias.as_deref().and_then(Owner::parse)? {
                Owner::TaskPort { task: owner, network } if owner == task => Some((network, link.index)),
                _ => None,
            })
            .collect();
        veths.sort();
        Ok(veths)
    })
    .await
}
