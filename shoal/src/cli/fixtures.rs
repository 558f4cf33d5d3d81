//! Nodes shaped like the seed transcript's three-node cluster, for output tests.

use chrono::{DateTime, Utc};
use control::objects::*;

pub fn node(id: &str, hostname: &str, leader: Option<bool>, state: NodeState) -> Node {
    let t: DateTime<Utc> = "2020-06-20T05:57:17.57684293Z".parse().unwrap();
    Node {
        id: id.into(),
        version: Version { index: 9 },
        created_at: t,
        updated_at: t,
        spec: NodeSpec {
            name: None,
            labels: Default::default(),
            role: if leader.is_some() { NodeRole::Manager } else { NodeRole::Worker },
            availability: NodeAvailability::Active,
        },
        description: NodeDescription {
            hostname: hostname.into(),
            platform: Platform { architecture: "x86_64".into(), os: "linux".into() },
            resources: Resources { nano_cpus: 4_000_000_000, memory_bytes: 3_958_075_392 },
            engine: EngineDescription { engine_version: "19.03.11".into(), ..Default::default() },
            tls_info: TlsInfo::default(),
        },
        status: NodeStatus { state, message: String::new(), addr: "192.168.0.41".into() },
        manager_status: leader.map(|leader| ManagerStatus {
            leader,
            reachability: Reachability::Reachable,
            addr: "192.168.0.41:2377".into(),
        }),
    }
}

/// The seed's `docker node ls` cluster, deliberately out of hostname order.
pub fn seed_cluster() -> Vec<Node> {
    vec![
        node("aeo8j7zit9qkoeeft3j0q1h0z", "docker-node03", Some(false), NodeState::Ready),
        node("ynz304mbltxx10v3i15ldkmj1", "docker-node01", Some(true), NodeState::Ready),
        node("tzkm0ymzjdmc1r8d54snievf1", "docker-node02", None, NodeState::Down),
    ]
}
