//! Published ports: docker's `PortOpt` syntax for `-p`, `--publish-add` and `--publish-rm`,
//! and `service update`'s merge of them into the current list.

use control::objects::service::{PortConfig, PortProtocol, PublishMode};

use crate::cli::format::api_name;

/// The ports one `-p` gives (a range gives several).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ports(pub Vec<PortConfig>);

/// The value parser of the port flags.
pub fn ports(value: &str) -> Result<Ports, String> {
    publish(value).map(Ports)
}

/// `-p/--publish`: docker's `PortOpt`, long form (`published=8080,target=80,protocol=udp,
/// mode=host`) or short form (`8080:80`, `8080-8081:80-81/udp`, `80`).
pub fn publish(value: &str) -> Result<Vec<PortConfig>, String> {
    // docker's test is the unanchored regexp `\w+=\w+(,\w+=\w+)*`: any `word=word` inside.
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let long = value
        .char_indices()
        .any(|(i, c)| c == '=' && word(value[..i].chars().last()) && word(value[i + 1..].chars().next()));
    if long {
        return publish_long(value).map(|p| vec![p]);
    }
    publish_short(value)
}

fn publish_long(value: &str) -> Result<PortConfig, String> {
    let mut port = PortConfig::default();
    for field in value.split(',') {
        let lower = field.to_ascii_lowercase();
        let (key, val) = lower.split_once('=').ok_or_else(|| format!("invalid field: {field}"))?;
        let number = |what: &str| {
            val.parse::<u16>().map(u32::from).map_err(|_| {
                let why = if !val.is_empty() && val.bytes().all(|b| b.is_ascii_digit()) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                format!("invalid {what} port ({val}): value must be an integer: {why}")
            })
        };
        match key {
            "protocol" => port.protocol = protocol(val).ok_or_else(|| format!("invalid protocol value '{val}'"))?,
            "mode" => {
                port.publish_mode = match val {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    _ => return Err(format!("invalid publish mode value ({val}): must be either 'ingress' or 'host'")),
                }
            }
            "target" => port.target_port = number("target")?,
            "published" => port.published_port = number("published")?,
            _ => return Err(format!("invalid field key: {key}")),
        }
    }
    if port.target_port == 0 {
        return Err("missing mandatory field 'target'".into());
    }
    Ok(port)
}

fn protocol(s: &str) -> Option<PortProtocol> {
    match s {
        "tcp" => Some(PortProtocol::Tcp),
        "udp" => Some(PortProtocol::Udp),
        "sctp" => Some(PortProtocol::Sctp),
        _ => None,
    }
}

/// `nat.ParsePortSpec` for the short form, without host IPs (`hostip is not supported`).
fn publish_short(value: &str) -> Result<Vec<PortConfig>, String> {
    let (spec, proto) = match value.rsplit_once('/') {
        Some((spec, p)) => (spec, protocol(&p.to_ascii_lowercase()).ok_or_else(|| format!("invalid proto: {p}"))?),
        None => (value, PortProtocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (published, target) = match parts.as_slice() {
        [target] => ("", *target),
        [published, target] => (*published, *target),
        [ip, _, _] if !ip.is_empty() => return Err("hostip is not supported".into()),
        [_, published, target] => (*published, *target),
        _ => return Err(format!("invalid port format for --publish: {value}")),
    };
    if target.is_empty() {
        return Err(format!("no port specified: {value}<empty>"));
    }
    let (t_start, t_end) = port_range(target).map_err(|_| format!("invalid containerPort: {target}"))?;
    let (p_start, p_end) = if published.is_empty() {
        (0, 0)
    } else {
        port_range(published).map_err(|_| format!("invalid hostPort: {published}"))?
    };
    let targets = t_end - t_start + 1;
    let publisheds = p_end - p_start + 1;
    if published.is_empty() || targets == publisheds {
        return Ok((0..targets)
            .map(|i| PortConfig {
                protocol: proto,
                target_port: t_start + i,
                published_port: if published.is_empty() { 0 } else { p_start + i },
                ..Default::default()
            })
            .collect());
    }
    if targets == 1 {
        // One target published on a range of ports.
        return Ok((p_start..=p_end)
            .map(|p| PortConfig { protocol: proto, target_port: t_start, published_port: p, ..Default::default() })
            .collect());
    }
    Err(format!("invalid ranges specified for container and host Ports: {target} and {published}"))
}

fn port_range(s: &str) -> Result<(u32, u32), ()> {
    let one = |p: &str| p.parse::<u16>().map(u32::from).map_err(drop);
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(());
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// docker's `updatePorts`: drop the ports `--publish-rm` names (target, protocol and mode),
/// add the new ones, sorted by `published:target/protocol/mode`.
pub fn update_ports(current: &[PortConfig], rm: &[PortConfig], add: &[PortConfig]) -> Vec<PortConfig> {
    let key = |p: &PortConfig| {
        format!("{}:{}/{}/{}", p.published_port, p.target_port, api_name(&p.protocol), api_name(&p.publish_mode))
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut ports: Vec<PortConfig> = Vec::new();
    for p in current {
        if !seen.insert(key(p)) {
            continue;
        }
        let removed = rm
            .iter()
            .any(|r| r.protocol == p.protocol && r.target_port == p.target_port && r.publish_mode == p.publish_mode);
        if !removed {
            ports.push(p.clone());
        }
    }
    for p in add {
        if seen.insert(key(p)) {
            ports.push(p.clone());
        }
    }
    ports.sort_by_key(|p| key(p));
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_short_and_long_forms() {
        let p = |s: &str| {
            publish(s).map(|ports| {
                ports.iter().map(|p| (p.published_port, p.target_port, p.protocol, p.publish_mode)).collect::<Vec<_>>()
            })
        };
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(p("8080:80"), Ok(vec![(8080, 80, Tcp, Ingress)]));
        assert_eq!(p("53:53/udp"), Ok(vec![(53, 53, Udp, Ingress)]));
        assert_eq!(p("80"), Ok(vec![(0, 80, Tcp, Ingress)]));
        assert_eq!(p("8080-8081:80-81"), Ok(vec![(8080, 80, Tcp, Ingress), (8081, 81, Tcp, Ingress)]));
        assert_eq!(p("target=80"), Ok(vec![(0, 80, Tcp, Ingress)]));
        assert_eq!(p("published=8080,target=80,mode=host"), Ok(vec![(8080, 80, Tcp, Host)]));
        assert_eq!(p("127.0.0.1:8080:80"), Err("hostip is not supported".into()));
        assert_eq!(p("target=80,protocol=icmp"), Err("invalid protocol value 'icmp'".into()));
        assert_eq!(p("target=x"), Err("invalid target port (x): value must be an integer: invalid syntax".into()));
        assert_eq!(
            p("target=80,mode=nat"),
            Err("invalid publish mode value (nat): must be either 'ingress' or 'host'".into())
        );
    }
}
