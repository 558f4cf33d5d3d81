//! Several daemons in one process on loopback: swarm formation, writes through followers, the
//! join-token and certificate checks, and the RPC permission table against real connections.
//! (The netns lab in `netns-tests/` runs the same flows with real processes on separate hosts.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use control::daemon::{Daemon, DaemonConfig};
use control::objects::{InitRequest, JoinRequest, NodeRole, NodeSpec, SwarmSpec, SECOND_NS};
use control::rpc::{acl, pb, transport};
use control::{tls, SwarmApi};

struct Node {
    daemon: Arc<Daemon>,
    addr: String,
    _dir: tempfile::TempDir,
}

/// A loopback address of its own for every node, on the real manager port. A port picked by binding
/// 127.0.0.1:0 and closing again is an ephemeral port, so another test's outgoing connection can take
/// it before the daemon listens (that failed CI with "Address already in use"); 2377 is outside the
/// ephemeral range and the address is unique to this process and node.
fn node_addr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("127.{}.{}.{}:2377", 100 + pid % 150, (pid / 150) % 250, n)
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(DaemonConfig {
        data_root: dir.path().to_path_buf(),
        dns_upstreams: Vec::new(),
        bpffs: None,
        host_cgroup: None,
    })
    .await
    .unwrap();
    Node { daemon, addr: node_addr(), _dir: dir }
}

async fn poll<T>(what: &str, wait: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn init(n: &Node) -> String {
    let mut spec = SwarmSpec::default();
    spec.dispatcher.heartbeat_period = SECOND_NS;
    n.daemon
        .init(InitRequest {
            listen_addr: n.addr.clone(),
            advertise_addr: n.addr.clone(),
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn join(n: &Node, token: &str, manager: &Node) -> Result<(), control::ApiError> {
    n.daemon
        .join(JoinRequest {
            listen_addr: n.addr.clone(),
            advertise_addr: n.addr.clone(),
            remote_addrs: vec![manager.addr.clone()],
            join_token: token.to_string(),
            ..Default::default()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_and_a_worker_form_a_swarm_and_enforce_identity() {
    let (m1, m2, m3, w1) = (node().await, node().await, node().await, node().await);
    let leader_id = init(&m1).await;
    let swarm = m1.daemon.inspect_swarm().await.unwrap();
    join(&m2, &swarm.join_tokens.manager, &m1).await.unwrap();
    join(&m3, &swarm.join_tokens.manager, &m1).await.unwrap();
    join(&w1, &swarm.join_tokens.worker, &m2).await.unwrap();

    // Every node is listed, ready, with exactly one leader and two reachable managers.
    let nodes = poll("4 ready nodes", Duration::from_secs(20), async || {
        let nodes = m3.daemon.list_nodes().await.ok()?;
        (nodes.len() == 4 && nodes.iter().all(|n| n.status.state == control::objects::NodeState::Ready))
            .then_some(nodes)
    })
    .await;
    let leaders: Vec<_> = nodes.iter().filter(|n| n.manager_status.as_ref().is_some_and(|m| m.leader)).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].id, leader_id);
    assert_eq!(nodes.iter().filter(|n| n.manager_status.is_some()).count(), 3);
    assert_eq!(nodes.iter().filter(|n| n.spec.role == NodeRole::Worker).count(), 1);

    // A write through a follower lands and is visible on every manager.
    let target = nodes.iter().find(|n| n.spec.role == NodeRole::Worker).unwrap();
    let mut spec: NodeSpec = target.spec.clone();
    spec.labels.insert("zone".into(), "a".into());
    m2.daemon.update_node(&target.id, target.version.index, spec.clone()).await.unwrap();
    for m in [&m1, &m2, &m3] {
        let seen = m.daemon.inspect_node(&target.id).await.unwrap();
        assert_eq!(seen.spec.labels.get("zone").map(String::as_str), Some("a"));
    }
    // The same stale version is refused.
    let err = m3.daemon.update_node(&target.id, target.version.index, spec).await.unwrap_err();
    assert!(err.message.contains("update out of sequence"), "{}", err.message);

    // A worker cannot read cluster state.
    let err = w1.daemon.list_nodes().await.unwrap_err();
    assert!(err.message.contains("Worker nodes can't be used"), "{}", err.message);
    let info = w1.daemon.info().await;
    assert_eq!(info.remote_managers.unwrap().len(), 3);

    // Join tokens: a wrong secret, another cluster's CA, and a rotated token are refused.
    let stranger = node().await;
    let t = &swarm.join_tokens.worker;
    let wrong_secret = format!("{}{}", &t[..t.len() - 25], "0000000000000000000000001");
    let err = join(&stranger, &wrong_secret, &m1).await.unwrap_err();
    assert!(err.message.contains("A valid join token is necessary"), "{}", err.message);
    let other = node().await;
    init(&other).await;
    let foreign = other.daemon.inspect_swarm().await.unwrap().join_tokens.worker;
    let err = join(&stranger, &foreign, &m1).await.unwrap_err();
    assert!(err.message.contains("remote CA does not match fingerprint"), "{}", err.message);
    let before = m1.daemon.inspect_swarm().await.unwrap();
    m1.daemon
        .update_swarm(
            before.version.index,
            before.spec.clone(),
            control::objects::RotateTokens { worker: true, manager: false },
        )
        .await
        .unwrap();
    let err = join(&stranger, &before.join_tokens.worker, &m1).await.unwrap_err();
    assert!(err.message.contains("A valid join token is necessary"), "{}", err.message);
    let after = m1.daemon.inspect_swarm().await.unwrap();
    assert_ne!(after.join_tokens.worker, before.join_tokens.worker);
    join(&stranger, &after.join_tokens.worker, &m1).await.unwrap();

    // A worker certificate on every manager-only RPC gets PermissionDenied; no certificate gets
    // Unauthenticated; a certificate from another cluster's CA fails the TLS handshake.
    let root = std::fs::read_to_string(w1._dir.path().join("swarm/certificates/swarm-root-ca.crt")).unwrap();
    let cert = std::fs::read_to_string(w1._dir.path().join("swarm/certificates/swarm-node.crt")).unwrap();
    let key = std::fs::read_to_string(w1._dir.path().join("swarm/certificates/swarm-node.key")).unwrap();
    let worker_cfg = tls::client_config(&root, Some((&cert, &key))).unwrap();
    let anon_cfg = tls::client_config(&root, None).unwrap();
    let mut checked = 0;
    for (path, admits) in acl::RPC_ACL {
        let code = raw_call(&m1.addr, worker_cfg.clone(), path).await;
        match admits {
            acl::Admits::Managers => {
                assert_eq!(code, tonic::Code::PermissionDenied, "{path} with a worker certificate");
                checked += 1;
            }
            _ => assert_ne!(code, tonic::Code::PermissionDenied, "{path} must admit workers"),
        }
        let code = raw_call(&m1.addr, anon_cfg.clone(), path).await;
        if *admits != acl::Admits::Anyone {
            assert_eq!(code, tonic::Code::Unauthenticated, "{path} without a certificate");
        }
    }
    assert!(checked >= 8, "every manager-only RPC is enumerated");
    let other_dir = other._dir.path().join("swarm/certificates");
    let foreign_cert = std::fs::read_to_string(other_dir.join("swarm-node.crt")).unwrap();
    let foreign_key = std::fs::read_to_string(other_dir.join("swarm-node.key")).unwrap();
    let foreign_cfg = tls::client_config(&root, Some((&foreign_cert, &foreign_key))).unwrap();
    let code = raw_call(&m1.addr, foreign_cfg, "/shoal.Raft/Vote").await;
    assert!(
        matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
        ),
        "a foreign certificate must fail the handshake, got {code:?}"
    );

    for n in [&m1, &m2, &m3, &w1, &stranger, &other] {
        n.daemon.shutdown().await;
    }
}

/// Calls `path` with an empty body and returns the gRPC status code.
async fn raw_call(addr: &str, config: Arc<rustls::ClientConfig>, path: &'static str) -> tonic::Code {
    let channel = transport::channel(addr, config, tls::MANAGER_SERVER_NAME).unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(status) = grpc.ready().await {
        return tonic::Status::from_error(Box::new(status)).code();
    }
    let codec = tonic_prost::ProstCodec::<pb::Empty, pb::Empty>::default();
    let mut request = tonic::Request::new(pb::Empty {});
    request.set_timeout(Duration::from_secs(5));
    match grpc.unary(request, http::uri::PathAndQuery::from_static(path), codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

async fn restart(n: &Node) -> Arc<Daemon> {
    Daemon::start(DaemonConfig {
        data_root: n._dir.path().to_path_buf(),
        dns_upstreams: Vec::new(),
        bpffs: None,
        host_cgroup: None,
    })
    .await
    .unwrap()
}

async fn leader_of(n: &Arc<Daemon>) -> Option<String> {
    let nodes = n.list_nodes().await.ok()?;
    nodes.into_iter().find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader)).map(|n| n.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_quorum_loss_and_force_new_cluster() {
    let mut nodes = vec![node().await, node().await, node().await];
    let first = init(&nodes[0]).await;
    let token = nodes[0].daemon.inspect_swarm().await.unwrap().join_tokens.manager;
    join(&nodes[1], &token, &nodes[0]).await.unwrap();
    join(&nodes[2], &token, &nodes[0]).await.unwrap();
    poll("3 managers", Duration::from_secs(20), async || {
        let n = nodes[2].daemon.list_nodes().await.ok()?;
        (n.iter().filter(|n| n.manager_status.is_some()).count() == 3).then_some(())
    })
    .await;

    // The leader stops: another manager leads and takes writes; the old one comes back from disk.
    nodes[0].daemon.shutdown().await;
    let new_leader = poll("a new leader", Duration::from_secs(10), async || {
        leader_of(&nodes[1].daemon).await.filter(|l| *l != first)
    })
    .await;
    let n1 = nodes[1].daemon.inspect_node(&first).await.unwrap();
    let mut spec = n1.spec.clone();
    spec.labels.insert("after".into(), "failover".into());
    nodes[1].daemon.update_node(&first, n1.version.index, spec).await.unwrap();
    nodes[0].daemon = restart(&nodes[0]).await;
    poll("the old leader back and caught up", Duration::from_secs(20), async || {
        let me = nodes[0].daemon.inspect_node(&first).await.ok()?;
        (me.spec.labels.get("after").is_some() && leader_of(&nodes[0].daemon).await == Some(new_leader.clone()))
            .then_some(())
    })
    .await;

    // Two of three stop: writes on the survivor fail fast with Docker's message.
    nodes[1].daemon.shutdown().await;
    nodes[2].daemon.shutdown().await;
    let started = Instant::now();
    let me = nodes[0].daemon.info().await.node_id;
    let err = nodes[0].daemon.update_node(&me, 1, NodeSpec::default()).await.unwrap_err();
    assert!(err.message.contains("The swarm does not have a leader"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(10), "a write without quorum must not hang");
    let err = nodes[0].daemon.list_nodes().await.unwrap_err();
    assert!(err.message.contains("The swarm does not have a leader"), "{}", err.message);

    // --force-new-cluster on the survivor keeps every node and label and takes writes.
    nodes[0].daemon.init(InitRequest { force_new_cluster: true, ..Default::default() }).await.unwrap();
    let listed = poll("the new single-manager cluster", Duration::from_secs(10), async || {
        nodes[0].daemon.list_nodes().await.ok()
    })
    .await;
    assert_eq!(listed.len(), 3);
    let me_node = listed.iter().find(|n| n.id == me).unwrap();
    assert!(me_node.manager_status.as_ref().unwrap().leader);
    assert_eq!(listed.iter().filter(|n| n.manager_status.is_some()).count(), 1);
    let labelled = listed.iter().find(|n| n.id == first).unwrap();
    assert_eq!(labelled.spec.labels.get("after").map(String::as_str), Some("failover"));
    let mut spec = me_node.spec.clone();
    spec.labels.insert("survivor".into(), "yes".into());
    nodes[0].daemon.update_node(&me, me_node.version.index, spec).await.unwrap();
    nodes[0].daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_demote_and_node_rm_rules() {
    let (m1, w1, w2) = (node().await, node().await, node().await);
    init(&m1).await;
    let token = m1.daemon.inspect_swarm().await.unwrap().join_tokens.worker;
    join(&w1, &token, &m1).await.unwrap();
    join(&w2, &token, &m1).await.unwrap();
    let w1_id = w1.daemon.info().await.node_id;
    let w2_id = w2.daemon.info().await.node_id;
    let m1_id = m1.daemon.info().await.node_id;

    // Promote: the worker becomes a reachable Raft member and can serve cluster reads.
    let n = m1.daemon.inspect_node(&w1_id).await.unwrap();
    m1.daemon.update_node(&w1_id, n.version.index, NodeSpec { role: NodeRole::Manager, ..n.spec }).await.unwrap();
    poll("w1 promoted", Duration::from_secs(20), async || {
        let n = m1.daemon.inspect_node(&w1_id).await.ok()?;
        let reachable = n.manager_status?.reachability == control::objects::Reachability::Reachable;
        (reachable && w1.daemon.list_nodes().await.is_ok()).then_some(())
    })
    .await;

    // A manager can't be removed, even with --force.
    let err = m1.daemon.remove_node(&w1_id, true).await.unwrap_err();
    assert!(err.message.contains("must be demoted to worker before removal"), "{}", err.message);

    // Demote: it leaves the Raft group and stops serving cluster reads.
    let n = m1.daemon.inspect_node(&w1_id).await.unwrap();
    m1.daemon.update_node(&w1_id, n.version.index, NodeSpec { role: NodeRole::Worker, ..n.spec }).await.unwrap();
    poll("w1 demoted", Duration::from_secs(20), async || {
        let n = m1.daemon.inspect_node(&w1_id).await.ok()?;
        let gone = n.manager_status.is_none();
        let refused = w1.daemon.list_nodes().await.is_err_and(|e| e.message.contains("Worker nodes"));
        (gone && refused).then_some(())
    })
    .await;

    // The last manager can't be demoted.
    let n = m1.daemon.inspect_node(&m1_id).await.unwrap();
    let err = m1
        .daemon
        .update_node(&m1_id, n.version.index, NodeSpec { role: NodeRole::Worker, ..n.spec })
        .await
        .unwrap_err();
    assert!(err.message.contains("last manager"), "{}", err.message);

    // A live worker is refused without --force; a stopped one goes down and is removed.
    let err = m1.daemon.remove_node(&w2_id, false).await.unwrap_err();
    assert!(err.message.contains("is not down and can't be removed"), "{}", err.message);
    w2.daemon.shutdown().await;
    poll("w2 down", Duration::from_secs(20), async || {
        let n = m1.daemon.inspect_node(&w2_id).await.ok()?;
        (n.status.state == control::objects::NodeState::Down).then_some(())
    })
    .await;
    m1.daemon.remove_node(&w2_id, false).await.unwrap();
    let err = m1.daemon.inspect_node(&w2_id).await.unwrap_err();
    assert_eq!(err.message, format!("node {w2_id} not found"));

    // --force removes a live worker, which then finds itself out of the swarm.
    m1.daemon.remove_node(&w1_id, true).await.unwrap();
    poll("w1 out of the swarm", Duration::from_secs(20), async || {
        (w1.daemon.info().await.local_node_state == control::objects::LocalNodeState::Inactive).then_some(())
    })
    .await;
    for n in [&m1, &w1] {
        n.daemon.shutdown().await;
    }
}
