//! Reply routing inside a task's namespace, for interfaces that answer through their node's bridge
//! address rather than the task's default route.
//!
//! The routing mesh delivers a client's packets to a task unchanged (no SNAT): the task sees the
//! client's own address, which is outside every overlay subnet, so its reply would follow the
//! default route out of the gateway bridge and never reach the node the client contacted. For
//! such an interface (position `n`, `ethn`) the task gets a source rule `from <its ip> lookup
//! <table>` at priority `TABLE_BASE + n` and that table holds the interface's subnet (on link) and
//! a default route via the node's bridge address on that interface. Anything sent from the
//! interface's address then leaves through it, where the mesh's tc program steers it; traffic from
//! the task's other addresses is untouched. The same rule makes strict reverse-path filtering
//! accept the clients' packets on that interface.
//!
//! Rules and tables in `TABLE_BASE..TABLE_BASE + MAX_INTERFACES` belong to this module (the task's
//! namespace is ours): they are dumped, compared and only the differences written, so attaching
//! again changes nothing, and an interface that lost its reply gateway loses its rule and table.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::links::{errno, nl};
use super::OverlayError;

/// The table (and rule priority) of a task's interface 0. Far below the main table's rule
/// (32766) so ours are consulted first, and above the 0–255 range tools and distributions use.
pub(crate) const TABLE_BASE: u32 = 1000;
/// Tables reserved per task namespace: one per possible interface.
const MAX_INTERFACES: u32 = 256;

/// One interface's reply routing as wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplyRoute {
    /// The interface's position (`ethN`), which picks its table.
    pub position: usize,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

impl ReplyRoute {
    pub(crate) fn table(&self) -> u32 {
        TABLE_BASE + self.position as u32
    }

    /// The routes its table holds: (destination, prefix length, gateway).
    fn routes(&self) -> [(Ipv4Addr, u8, Option<Ipv4Addr>); 2] {
        [(subnet_of(self.ip, self.prefix_len), self.prefix_len, None), (Ipv4Addr::UNSPECIFIED, 0, Some(self.gateway))]
    }
}

fn subnet_of(ip: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len.min(32))).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

fn ours(table: u32) -> bool {
    (TABLE_BASE..TABLE_BASE + MAX_INTERFACES).contains(&table)
}

/// Makes the namespace's rules and tables in our range exactly `wanted`.
pub(crate) async fn ensure(handle: &Handle, wanted: &[ReplyRoute]) -> Result<(), OverlayError> {
    ensure_routes(handle, wanted).await?;
    ensure_rules(handle, wanted).await
}

async fn ensure_routes(handle: &Handle, wanted: &[ReplyRoute]) -> Result<(), OverlayError> {
    let dump: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    let mut present = BTreeSet::new();
    for message in dump {
        let table = route_table(&message);
        if !ours(table) {
            continue;
        }
        let key = (
            table,
            route_addr(&message, |a| matches!(a, RouteAttribute::Destination(_))).unwrap_or(Ipv4Addr::UNSPECIFIED),
            message.header.destination_prefix_length,
            route_addr(&message, |a| matches!(a, RouteAttribute::Gateway(_))),
        );
        let oif = message.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        });
        let wanted_here = wanted
            .iter()
            .any(|w| w.table() == table && oif == Some(w.ifindex) && w.routes().contains(&(key.1, key.2, key.3)));
        if wanted_here && present.insert(key) {
            continue;
        }
        // Only what identifies the route: dumped messages carry cache info the kernel does not
        // want back.
        let mut delete = RouteMessage::default();
        delete.header = message.header.clone();
        delete.attributes = message
            .attributes
            .into_iter()
            .filter(|a| {
                matches!(
                    a,
                    RouteAttribute::Table(_)
                        | RouteAttribute::Destination(_)
                        | RouteAttribute::Gateway(_)
                        | RouteAttribute::Oif(_)
                )
            })
            .collect();
        match handle.route().del(delete).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ESRCH) => {}
            Err(e) => return Err(nl(format!("removing a stale route from table {table}"))(e)),
        }
    }
    for w in wanted {
        let table = w.table();
        for (dst, len, gateway) in w.routes() {
            if present.contains(&(table, dst, len, gateway)) {
                continue;
            }
            let builder = RouteMessageBuilder::<Ipv4Addr>::new().table_id(table).output_interface(w.ifindex);
            let route = match gateway {
                // The subnet first: the default route's gateway must be on link.
                None => builder.destination_prefix(dst, len).scope(RouteScope::Link).pref_source(w.ip).build(),
                Some(gateway) => builder.gateway(gateway).build(),
            };
            handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("adding {dst}/{len} via {gateway:?} to table {table}")))?;
        }
    }
    Ok(())
}

async fn ensure_rules(handle: &Handle, wanted: &[ReplyRoute]) -> Result<(), OverlayError> {
    let dump: Vec<RuleMessage> =
        handle.rule().get(IpVersion::V4).execute().try_collect().await.map_err(nl("listing routing rules"))?;
    let mut present = BTreeSet::new();
    for message in dump {
        let table = rule_table(&message);
        if !ours(table) {
            continue;
        }
        let source = message.attributes.iter().find_map(|a| match a {
            RuleAttribute::Source(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let priority = message.attributes.iter().find_map(|a| match a {
            RuleAttribute::Priority(priority) => Some(*priority),
            _ => None,
        });
        // Exactly `from <ip>/32 lookup <table> priority <table>`, nothing more specific.
        let only_source = message.header.dst_len == 0
            && message.attributes.iter().all(|a| {
                matches!(
                    a,
                    RuleAttribute::Source(_)
                        | RuleAttribute::Priority(_)
                        | RuleAttribute::Table(_)
                        | RuleAttribute::Protocol(_)
                        | RuleAttribute::SuppressPrefixLen(u32::MAX)
                        | RuleAttribute::SuppressIfGroup(u32::MAX)
                )
            });
        let right = wanted.iter().any(|w| {
            w.table() == table
                && source == Some(w.ip)
                && message.header.src_len == 32
                && priority == Some(table)
                && message.header.action == RuleAction::ToTable
        });
        if right && only_source && present.insert(table) {
            continue;
        }
        match handle.rule().del(message).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(nl(format!("removing a stale rule for table {table}"))(e)),
        }
    }
    for w in wanted.iter().filter(|w| !present.contains(&w.table())) {
        handle
            .rule()
            .add()
            .v4()
            .source_prefix(w.ip, 32)
            .table_id(w.table())
            .priority(w.table())
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(nl(format!("adding the rule from {} to table {}", w.ip, w.table())))?;
    }
    Ok(())
}

fn route_table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

fn route_addr(message: &RouteMessage, which: impl Fn(&RouteAttribute) -> bool) -> Option<Ipv4Addr> {
    message.attributes.iter().filter(|a| which(a)).find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) | RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

fn rule_table(message: &RuleMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::route::RouteHeader;

    use super::*;

    #[test]
    fn tables_hold_the_subnet_and_a_default_via_the_gateway() {
        let route = ReplyRoute {
            position: 2,
            ifindex: 7,
            ip: Ipv4Addr::new(10, 0, 3, 9),
            prefix_len: 22,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        };
        assert_eq!(route.table(), 1002);
        assert_eq!(
            route.routes(),
            [(Ipv4Addr::new(10, 0, 0, 0), 22, None), (Ipv4Addr::UNSPECIFIED, 0, Some(Ipv4Addr::new(10, 0, 0, 1)))]
        );
        assert_eq!(subnet_of(Ipv4Addr::new(10, 1, 2, 3), 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(subnet_of(Ipv4Addr::new(10, 1, 2, 3), 32), Ipv4Addr::new(10, 1, 2, 3));
        assert!(ours(TABLE_BASE) && !ours(u32::from(RouteHeader::RT_TABLE_MAIN)) && !ours(TABLE_BASE + 256));
    }
}
