//! `--network` (create) and `--network-add`/`--network-rm` (update), after docker's
//! `opts/network.go` (`NetworkOpt`) and `updateNetworks`: the short form names a network, the
//! long form `name=NET,alias=A,driver-opt=k=v` adds aliases and driver options.
//!
//! Networks are looked up on the daemon before the spec is sent, so a missing one fails with
//! the daemon's `network x not found` as docker's does.

use std::collections::{HashMap, HashSet};

use control::objects::network::Network;
use control::objects::service::{NetworkAttachmentConfig, ServiceSpec};

use crate::client::{encode_component, Client};

/// docker's `NetworkOpt.Set` for one flag value. Like docker, the long form is lower-cased
/// (names, aliases and options alike) and `ip`, `ip6`, `mac-address`, `link-local-ip` and
/// `gw-priority` are accepted but mean nothing to a service.
pub fn network_attachment(value: &str) -> Result<NetworkAttachmentConfig, String> {
    if !is_long_syntax(value) {
        return Ok(NetworkAttachmentConfig { target: value.to_string(), ..Default::default() });
    }
    let mut attachment = NetworkAttachmentConfig::default();
    for field in csv_fields(value)? {
        let lower = field.to_lowercase();
        let Some((key, val)) = lower.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid field {field}"));
        };
        let (key, val) = (key.trim(), val.trim());
        match key {
            "name" => attachment.target = val.to_string(),
            "alias" => attachment.aliases.push(val.to_string()),
            "driver-opt" => {
                let Some((k, v)) = val.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    return Err("invalid key value pair format in driver options".into());
                };
                attachment.driver_opts.insert(k.trim().to_string(), v.trim().to_string());
            }
            "ip" | "ip6" | "mac-address" | "link-local-ip" | "gw-priority" => {}
            other => return Err(format!("invalid field key {other}")),
        }
    }
    if attachment.target.is_empty() {
        return Err("network name/id is not specified".into());
    }
    Ok(attachment)
}

/// docker's test for the long form: the regular expression `\w+=\w+(,\w+=\w+)*` found
/// anywhere in the value, i.e. some `=` with a word character on each side.
fn is_long_syntax(value: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = value.as_bytes();
    (1..bytes.len().saturating_sub(1)).any(|i| bytes[i] == b'=' && word(bytes[i - 1]) && word(bytes[i + 1]))
}

/// One line of CSV as Go's `encoding/csv` reads it: commas separate fields, a field may be
/// quoted (`""` inside quotes is one quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let mut column = 0;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            column += 1;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(format!(
                            "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                            column + 1
                        ))
                    }
                }
                column += 1;
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    column + 2
                ));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!("parse error on line 1, column {}: bare \" in non-quoted-field", column + 1));
                }
                field.push(c);
                chars.next();
                column += 1;
            }
        }
        fields.push(field);
        match chars.next() {
            Some(',') => column += 1,
            _ => return Ok(fields),
        }
    }
}

/// `GET /networks/{key}?scope=swarm`, as docker looks a service's network up.
async fn inspect_network(client: &Client, key: &str) -> anyhow::Result<Network> {
    Ok(client.get(&format!("/networks/{}?scope=swarm", encode_component(key))).await?)
}

/// docker's `convertNetworks` (create): every network must exist; targets stay as given, the
/// daemon resolves them; sorted by target.
pub async fn check_networks(client: &Client, networks: &mut [NetworkAttachmentConfig]) -> anyhow::Result<()> {
    for n in networks.iter() {
        inspect_network(client, &n.target).await?;
    }
    networks.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(())
}

/// docker's `updateNetworks`: drop the networks `rm` names, add those `add` names (by ID),
/// refusing one already attached.
pub async fn update_networks(
    client: &Client,
    spec: &mut ServiceSpec,
    add: &[NetworkAttachmentConfig],
    rm: &[String],
) -> anyhow::Result<()> {
    if add.is_empty() && rm.is_empty() {
        return Ok(());
    }
    let mut remove_ids = HashSet::new();
    for key in rm {
        remove_ids.insert(inspect_network(client, key).await?.id);
    }
    // The daemon stores IDs; a target it kept as a name is resolved so both forms compare.
    let mut current_ids = HashMap::new();
    for n in &spec.task_template.networks {
        if let Ok(network) = inspect_network(client, &n.target).await {
            current_ids.insert(n.target.clone(), network.id);
        }
    }
    let mut resolved = Vec::new();
    for n in add {
        resolved.push((n.clone(), inspect_network(client, &n.target).await?.id));
    }
    spec.task_template.networks = merge_networks(&spec.task_template.networks, &current_ids, &remove_ids, resolved)
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The pure part of [`update_networks`]: `current_ids` maps current targets to network IDs,
/// `add` pairs each new attachment with its network's ID.
pub fn merge_networks(
    current: &[NetworkAttachmentConfig],
    current_ids: &HashMap<String, String>,
    remove_ids: &HashSet<String>,
    add: Vec<(NetworkAttachmentConfig, String)>,
) -> Result<Vec<NetworkAttachmentConfig>, String> {
    let id_of = |target: &String| current_ids.get(target).unwrap_or(target).clone();
    let mut kept: Vec<NetworkAttachmentConfig> =
        current.iter().filter(|n| !remove_ids.contains(&id_of(&n.target))).cloned().collect();
    let mut attached: HashSet<String> = kept.iter().map(|n| id_of(&n.target)).collect();
    for (mut n, id) in add {
        if !attached.insert(id.clone()) {
            return Err(format!("service is already attached to network {}", n.target));
        }
        n.target = id;
        kept.push(n);
    }
    kept.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(kept)
}

/// Names of a service's networks for `inspect --pretty` (docker's `resolveNetworks`): a
/// network that cannot be looked up shows as its target.
pub async fn network_names(client: &Client, spec: &ServiceSpec) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for n in &spec.task_template.networks {
        if let Ok(network) = inspect_network(client, &n.target).await {
            names.insert(n.target.clone(), network.name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn attach(target: &str) -> NetworkAttachmentConfig {
        NetworkAttachmentConfig { target: target.into(), ..Default::default() }
    }

    #[test]
    fn short_and_long_forms() {
        assert_eq!(network_attachment("appnet"), Ok(attach("appnet")));
        assert_eq!(network_attachment("my-net"), Ok(attach("my-net")));
        let long =
            network_attachment("name=docknet1,alias=web1,alias=web2,driver-opt=field1=value1,driver-opt=field2=value2")
                .unwrap();
        assert_eq!(long.target, "docknet1");
        assert_eq!(long.aliases, ["web1", "web2"]);
        assert_eq!(
            long.driver_opts,
            BTreeMap::from([("field1".to_string(), "value1".to_string()), ("field2".into(), "value2".into())])
        );
        // docker lower-cases the long form, names included.
        assert_eq!(
            network_attachment("name=AppNet,alias=Web").unwrap(),
            NetworkAttachmentConfig { target: "appnet".into(), aliases: vec!["web".into()], ..Default::default() }
        );
        assert_eq!(network_attachment(r#""name=a,b",alias=x"#).unwrap().target, "a,b");
        assert_eq!(network_attachment("name=n,ip=10.0.0.5").unwrap(), attach("n"));
    }

    #[test]
    fn bad_long_forms_get_dockers_messages() {
        let err = |v: &str| network_attachment(v).unwrap_err();
        assert_eq!(err("invalidField=docknet1"), "invalid field key invalidfield");
        assert_eq!(err("name=docknet1,invalid=web"), "invalid field key invalid");
        assert_eq!(err("name=docknet1,alias"), "invalid field alias");
        assert_eq!(err("driver-opt=field1=value1,driver-opt=field2=value2"), "network name/id is not specified");
        assert_eq!(err("name=n,driver-opt=x"), "invalid key value pair format in driver options");
        assert_eq!(err(r#"name=n,alias=a"b"#), r#"parse error on line 1, column 15: bare " in non-quoted-field"#);
    }

    #[test]
    fn update_adds_by_id_and_removes_by_name_or_id() {
        let current = vec![attach("appnetid"), attach("backend")];
        // `backend` was stored by name; the lookup gives its ID.
        let ids =
            HashMap::from([("appnetid".to_string(), "appnetid".to_string()), ("backend".into(), "backid".into())]);
        let merged = merge_networks(
            &current,
            &ids,
            &HashSet::from(["backid".to_string()]),
            vec![(
                NetworkAttachmentConfig { target: "spare".into(), aliases: vec!["s".into()], ..Default::default() },
                "spareid".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            merged,
            vec![
                attach("appnetid"),
                NetworkAttachmentConfig { target: "spareid".into(), aliases: vec!["s".into()], ..Default::default() }
            ]
        );
        let e = merge_networks(&current, &ids, &HashSet::new(), vec![(attach("backend"), "backid".into())]);
        assert_eq!(e, Err("service is already attached to network backend".into()));
    }
}
