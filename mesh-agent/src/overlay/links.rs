//! Links as this module sees them: one dump parsed into plain structs, and the few link
//! operations the overlay needs (set attributes, delete, look up by name).

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkUnspec};

use super::OverlayError;

/// The parameters of a VXLAN device that cannot change without recreating it (plus MTU-free ones
/// we check for adoption).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VxlanParams {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    pub learning: bool,
    pub proxy: bool,
}

/// One link of a dump.
#[derive(Clone, Debug, Default)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// The bridge (or other master) this link is a port of.
    pub master: Option<u32>,
    pub mtu: u32,
    pub kind: Option<InfoKind>,
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    /// IFLA_LINK: for a veth, its peer's ifindex (in the peer's namespace).
    pub link: Option<u32>,
    pub vxlan: Option<VxlanParams>,
    /// Bridge-port flags, when the link is a bridge port.
    pub port_learning: Option<bool>,
    pub port_isolated: Option<bool>,
    /// RFC 2863 operational state is up: the kernel's link watcher has seen the carrier and
    /// attached the queueing discipline, so frames sent now are not dropped.
    pub oper_up: bool,
    /// The bridge port is in the forwarding state.
    pub port_forwarding: bool,
}

impl Link {
    fn from_message(message: LinkMessage) -> Link {
        let mut link =
            Link { index: message.header.index, up: message.header.flags.contains(LinkFlags::Up), ..Link::default() };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => link.alias = Some(alias),
                LinkAttribute::Controller(master) => link.master = Some(master),
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::Link(peer) => link.link = Some(peer),
                LinkAttribute::Address(mac) => link.mac = mac.try_into().ok(),
                LinkAttribute::LinkInfo(infos) => link.parse_info(infos),
                LinkAttribute::OperState(state) => link.oper_up = state == netlink_packet_route::link::State::Up,
                _ => {}
            }
        }
        link
    }

    fn parse_info(&mut self, infos: Vec<LinkInfo>) {
        for info in infos {
            match info {
                LinkInfo::Kind(kind) => self.kind = Some(kind),
                LinkInfo::Data(InfoData::Vxlan(vxlan)) => {
                    let mut params = VxlanParams::default();
                    for item in vxlan {
                        match item {
                            InfoVxlan::Id(vni) => params.vni = vni,
                            InfoVxlan::Port(port) => params.port = port,
                            InfoVxlan::Local(local) => params.local = Some(local),
                            InfoVxlan::Learning(learning) => params.learning = learning,
                            InfoVxlan::Proxy(proxy) => params.proxy = proxy,
                            _ => {}
                        }
                    }
                    self.vxlan = Some(params);
                }
                LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                    use netlink_packet_route::link::InfoBridgePort;
                    for item in port {
                        match item {
                            InfoBridgePort::Learning(on) => self.port_learning = Some(on),
                            InfoBridgePort::Isolated(on) => self.port_isolated = Some(on),
                            InfoBridgePort::State(state) => {
                                self.port_forwarding = state == netlink_packet_route::link::BridgePortState::Forwarding
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The errno of a netlink error, if it is one.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

/// Wraps a netlink error with what we were doing.
pub(crate) fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> OverlayError {
    let context = context.into();
    move |source| OverlayError::Netlink { context, source }
}

/// Every link of the namespace.
pub(crate) async fn dump(handle: &Handle) -> Result<Vec<Link>, OverlayError> {
    let messages: Vec<LinkMessage> = handle.link().get().execute().try_collect().await.map_err(nl("listing links"))?;
    Ok(messages.into_iter().map(Link::from_message).collect())
}

/// The link called `name`, if there is one.
pub(crate) async fn by_name(handle: &Handle, name: &str) -> Result<Option<Link>, OverlayError> {
    let found: Result<Vec<LinkMessage>, _> =
        handle.link().get().match_name(name.to_owned()).execute().try_collect().await;
    match found {
        Ok(messages) => Ok(messages.into_iter().next().map(Link::from_message)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// Sets `IFF_UP` on a link.
pub(crate) async fn set_up(handle: &Handle, index: u32) -> Result<(), OverlayError> {
    let message = LinkUnspec::new_with_index(index).up().build();
    handle.link().set(message).execute().await.map_err(nl(format!("bringing link {index} up")))
}

/// Applies a prepared change to a link (MTU, master, alias, up…).
pub(crate) async fn set(handle: &Handle, message: LinkMessage, what: &str) -> Result<(), OverlayError> {
    handle.link().set(message).execute().await.map_err(nl(what.to_owned()))
}

/// Sets bridge-port flags on a port (`learning`, `isolated`).
pub(crate) async fn set_port_flags(
    handle: &Handle,
    index: u32,
    learning: Option<bool>,
    isolated: Option<bool>,
) -> Result<(), OverlayError> {
    use netlink_packet_route::link::InfoBridgePort;
    let mut builder = rtnetlink::LinkBridgePort::new(index).set_port_kind(InfoPortKind::Bridge);
    if let Some(on) = learning {
        builder = builder.append_info_data(InfoBridgePort::Learning(on));
    }
    if let Some(on) = isolated {
        builder = builder.append_info_data(InfoBridgePort::Isolated(on));
    }
    handle.link().set_port(builder.build()).execute().await.map_err(nl(format!("setting bridge port flags on {index}")))
}

/// Deletes a link; one that is already gone is not an error.
pub(crate) async fn delete(handle: &Handle, index: u32) -> Result<(), OverlayError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(format!("deleting link {index}"))(e)),
    }
}

/// Waits until every link in `indexes` satisfies `ready`, polling the link table: carrier
/// changes are applied by the kernel's link watcher asynchronously (up to a second later), and a
/// port used before that drops frames.
pub(crate) async fn wait_ready(
    handle: &Handle,
    indexes: &[u32],
    ready: impl Fn(&Link) -> bool,
    what: &str,
) -> Result<(), OverlayError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let links = dump(handle).await?;
        let pending: Vec<&Link> = links.iter().filter(|link| indexes.contains(&link.index) && !ready(link)).collect();
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<&str> = pending.iter().map(|link| link.name.as_str()).collect();
            return Err(OverlayError::NotReady(format!("{what}: {}", names.join(", "))));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
