//! Human-readable texts that follow docker's wording: the `swarm init` banner, join commands,
//! `node inspect --pretty`, `info` and `version`.

use chrono::{DateTime, Utc};
use control::objects::{Node, TlsInfo};
use serde_json::Value;

use super::duration::human_duration;
use super::format::{api_name, bytes_size, capitalize_first};

/// docker's `printJoinCommand` for one role (ends with a blank line).
pub fn join_command(role: &str, token: &str, manager_addr: &str) -> String {
    format!("To add a {role} to this swarm, run the following command:\n\n    shoal swarm join --token {token} {manager_addr}\n\n")
}

/// What `swarm init` prints. `worker_join` is [`join_command`] for workers, absent when the new
/// node has no manager status yet (docker then prints no join command either).
pub fn init_banner(node_id: &str, worker_join: Option<&str>) -> String {
    format!(
        "Swarm initialized: current node ({node_id}) is now a manager.\n\n{}To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n",
        worker_join.unwrap_or("")
    )
}

/// Go's `time.Time.String()` for a UTC time: `2020-06-20 05:57:17.57684293 +0000 UTC`.
pub fn go_time(t: &DateTime<Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_string() };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

/// `node inspect --pretty` for one node: docker's template, tabs included.
pub fn pretty_node(node: &Node) -> String {
    let mut l: Vec<String> = vec![format!("ID:\t\t\t{}", node.id)];
    if let Some(name) = node.spec.name.as_deref().filter(|n| !n.is_empty()) {
        l.push(format!("Name:\t\t\t{name}"));
    }
    if !node.spec.labels.is_empty() {
        l.push("Labels:".into());
        l.extend(node.spec.labels.iter().map(|(k, v)| label_line(k, v)));
    }
    let d = &node.description;
    l.push(format!("Hostname:              \t{}", d.hostname));
    l.push(format!("Joined at:             \t{}", capitalize_first(&go_time(&node.created_at))));
    l.push("Status:".into());
    l.push(format!(" State:\t\t\t{}", capitalize_first(&api_name(&node.status.state))));
    if !node.status.message.is_empty() {
        l.push(format!(" Message:              \t{}", capitalize_first(&node.status.message)));
    }
    l.push(format!(" Availability:         \t{}", capitalize_first(&api_name(&node.spec.availability))));
    if !node.status.addr.is_empty() {
        l.push(format!(" Address:\t\t{}", node.status.addr));
    }
    if let Some(ms) = &node.manager_status {
        l.push("Manager Status:".into());
        l.push(format!(" Address:\t\t{}", ms.addr));
        l.push(format!(" Raft Status:\t\t{}", capitalize_first(&api_name(&ms.reachability))));
        l.push(format!(" Leader:\t\t{}", if ms.leader { "Yes" } else { "No" }));
    }
    l.push("Platform:".into());
    l.push(format!(" Operating System:\t{}", d.platform.os));
    l.push(format!(" Architecture:\t\t{}", d.platform.architecture));
    l.push("Resources:".into());
    l.push(format!(" CPUs:\t\t\t{}", d.resources.nano_cpus / 1_000_000_000));
    let memory =
        if d.resources.memory_bytes == 0 { String::new() } else { bytes_size(d.resources.memory_bytes as f64) };
    l.push(format!(" Memory:\t\t{memory}"));
    if !d.engine.plugins.is_empty() {
        let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for p in &d.engine.plugins {
            by_type.entry(p.kind.as_str()).or_default().push(p.name.as_str());
        }
        l.push("Plugins:".into());
        l.extend(by_type.iter().map(|(k, names)| format!(" {k}:\t\t{}", names.join(", "))));
    }
    l.push(format!("Engine Version:\t\t{}", d.engine.engine_version));
    if !d.engine.labels.is_empty() {
        l.push("Engine Labels:".into());
        l.extend(d.engine.labels.iter().map(|(k, v)| label_line(k, v)));
    }
    if d.tls_info != TlsInfo::default() {
        l.push("TLS Info:".into());
        l.push(" TrustRoot:".into());
        l.push(d.tls_info.trust_root.clone());
        l.push(format!(" Issuer Subject:\t{}", d.tls_info.cert_issuer_subject));
        l.push(format!(" Issuer Public Key:\t{}", d.tls_info.cert_issuer_public_key));
    }
    let mut out = l.join("\n");
    out.push('\n');
    out
}

fn label_line(k: &str, v: &str) -> String {
    if v.is_empty() {
        format!(" - {k}")
    } else {
        format!(" - {k}={v}")
    }
}

/// Prints a JSON scalar as Go's `fmt.Println` would print the typed field.
fn plain(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "0".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `Swarm:` section of `docker info` (`printSwarmInfo`), from `GET /info`'s `Swarm`.
pub fn swarm_section(swarm: &Value) -> String {
    let s = |k: &str| swarm.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = format!(" Swarm: {}\n", s("LocalNodeState"));
    if matches!(s("LocalNodeState"), "inactive" | "locked" | "") {
        return out;
    }
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("  NodeID: {}", s("NodeID")));
    if !s("Error").is_empty() {
        line(format!("  Error: {}", s("Error")));
    }
    let manager = swarm.get("ControlAvailable").and_then(Value::as_bool).unwrap_or(false);
    line(format!("  Is Manager: {manager}"));
    let cluster = swarm.get("Cluster").filter(|c| c.is_object());
    if let (Some(c), true, true) = (cluster, manager, s("Error").is_empty() && s("LocalNodeState") != "error") {
        let at = |p: &str| c.pointer(p);
        line(format!("  ClusterID: {}", plain(at("/ID"))));
        line(format!("  Managers: {}", plain(swarm.get("Managers"))));
        line(format!("  Nodes: {}", plain(swarm.get("Nodes"))));
        if let Some(pools) = at("/DefaultAddrPool").and_then(Value::as_array) {
            let pools: String = pools.iter().map(|p| format!("{}  ", p.as_str().unwrap_or(""))).collect();
            line(format!("  Default Address Pool: {pools}"));
            line(format!("  SubnetSize: {}", plain(at("/SubnetSize"))));
        }
        if at("/DataPathPort").and_then(Value::as_u64).unwrap_or(0) > 0 {
            line(format!("  Data Path Port: {}", plain(at("/DataPathPort"))));
        }
        line("  Orchestration:".into());
        line(format!(
            "   Task History Retention Limit: {}",
            plain(at("/Spec/Orchestration/TaskHistoryRetentionLimit"))
        ));
        line("  Raft:".into());
        line(format!("   Snapshot Interval: {}", plain(at("/Spec/Raft/SnapshotInterval"))));
        if let Some(keep) = at("/Spec/Raft/KeepOldSnapshots").filter(|v| !v.is_null()) {
            line(format!("   Number of Old Snapshots to Retain: {keep}"));
        }
        line(format!("   Heartbeat Tick: {}", plain(at("/Spec/Raft/HeartbeatTick"))));
        line(format!("   Election Tick: {}", plain(at("/Spec/Raft/ElectionTick"))));
        line("  Dispatcher:".into());
        let nanos = |p: &str| at(p).and_then(Value::as_i64).unwrap_or(0);
        line(format!("   Heartbeat Period: {}", human_duration(nanos("/Spec/Dispatcher/HeartbeatPeriod"))));
        line("  CA Configuration:".into());
        line(format!("   Expiry Duration: {}", human_duration(nanos("/Spec/CAConfig/NodeCertExpiry"))));
        line(format!("   Force Rotate: {}", plain(at("/Spec/CAConfig/ForceRotate"))));
        let autolock = at("/Spec/EncryptionConfig/AutoLockManagers").and_then(Value::as_bool).unwrap_or(false);
        line(format!("  Autolock Managers: {autolock}"));
        let rotating = at("/RootRotationInProgress").and_then(Value::as_bool).unwrap_or(false);
        line(format!("  Root Rotation In Progress: {rotating}"));
    }
    line(format!("  Node Address: {}", s("NodeAddr")));
    let mut managers: Vec<&str> = swarm
        .get("RemoteManagers")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|p| p.get("Addr").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if !managers.is_empty() {
        managers.sort_unstable();
        line("  Manager Addresses:".into());
        for m in managers {
            line(format!("   {m}"));
        }
    }
    out
}

/// `shoal info`: the client version and the server facts `docker info` shows that Shoal has.
pub fn info_text(info: &Value) -> String {
    let s = |k: &str| plain(info.get(k));
    let mut out = format!("Client:\n Version:    {}\n\nServer:\n", env!("CARGO_PKG_VERSION"));
    out.push_str(&format!(" Server Version: {}\n", s("ServerVersion")));
    out.push_str(&swarm_section(info.get("Swarm").unwrap_or(&Value::Null)));
    for (label, key) in [
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
    ] {
        out.push_str(&format!(" {label}: {}\n", s(key)));
    }
    out.push_str(&format!(" CPUs: {}\n", s("NCPU")));
    let mem = info.get("MemTotal").and_then(Value::as_f64).unwrap_or(0.0);
    out.push_str(&format!(" Total Memory: {}\n", bytes_size(mem)));
    out.push_str(&format!(" Name: {}\n ID: {}\n", s("Name"), s("ID")));
    out.push_str(&format!(" Shoal Root Dir: {}\n", s("DockerRootDir")));
    out.push_str(&format!(" Experimental: {}\n", s("ExperimentalBuild")));
    out
}

/// Go's `time.ANSIC` for an RFC 3339 build time (`Fri May 30 12:07:14 2025`).
fn ansic(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `shoal version`: the client, then the server's `/version` when the daemon answered.
pub fn version_text(server: Option<&Value>) -> String {
    let mut out = format!(
        "Client:\n Version:           {v}\n API version:       {api}\n Built:             {built}\n OS/Arch:           linux/{arch}\n",
        v = env!("CARGO_PKG_VERSION"),
        api = crate::api::API_VERSION,
        built = ansic(&crate::api::build_time()),
        arch = crate::api::go_arch(std::env::consts::ARCH),
    );
    match server {
        None => {}
        Some(v) => {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
            let name = v.pointer("/Platform/Name").and_then(Value::as_str).unwrap_or("");
            out.push_str(&format!("\nServer: {name}\n Engine:\n"));
            out.push_str(&format!("  Version:          {}\n", s("Version")));
            out.push_str(&format!(
                "  API version:      {} (minimum version {})\n",
                s("ApiVersion"),
                s("MinAPIVersion")
            ));
            out.push_str(&format!("  Built:            {}\n", ansic(s("BuildTime"))));
            out.push_str(&format!("  OS/Arch:          {}/{}\n", s("Os"), s("Arch")));
            out.push_str(&format!("  Kernel Version:   {}\n", s("KernelVersion")));
        }
    }
    out
}

#[cfg(test)]
mod tests;
