use super::*;
use crate::cli::fixtures::seed_cluster;
use serde_json::json;

const WORKER_TOKEN: &str = "SWMTKN-1-6difxlq3wc8emlwxzuw95gp8rmvbz2oq62kux3as0e4rbyqhk3-2m9x12n102ca4qlyjpseobzik";

#[test]
fn init_banner_is_dockers_with_shoal() {
    let join = join_command("worker", WORKER_TOKEN, "192.168.0.41:2377");
    let out = init_banner("ynz304mbltxx10v3i15ldkmj1", Some(&join));
    let want = "Swarm initialized: current node (ynz304mbltxx10v3i15ldkmj1) is now a manager.\n\
                \n\
                To add a worker to this swarm, run the following command:\n\
                \n    shoal swarm join --token SWMTKN-1-6difxlq3wc8emlwxzuw95gp8rmvbz2oq62kux3as0e4rbyqhk3-2m9x12n102ca4qlyjpseobzik 192.168.0.41:2377\n\
                \n\
                To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n";
    assert_eq!(out, want);
}

#[test]
fn join_command_for_managers() {
    assert_eq!(
        join_command("manager", "SWMTKN-1-x-y", "198.18.0.1:2377"),
        "To add a manager to this swarm, run the following command:\n\n    shoal swarm join --token SWMTKN-1-x-y 198.18.0.1:2377\n\n"
    );
}

#[test]
fn go_time_trims_fractions() {
    let t: DateTime<Utc> = "2020-06-20T05:57:17.57684293Z".parse().unwrap();
    assert_eq!(go_time(&t), "2020-06-20 05:57:17.57684293 +0000 UTC");
    let t: DateTime<Utc> = "2020-06-20T05:57:17Z".parse().unwrap();
    assert_eq!(go_time(&t), "2020-06-20 05:57:17 +0000 UTC");
}

#[test]
fn pretty_node_follows_dockers_template() {
    let mut node = seed_cluster().remove(1);
    node.spec.labels.insert("zone".into(), "a".into());
    node.spec.labels.insert("ssd".into(), "".into());
    let want = "ID:\t\t\tynz304mbltxx10v3i15ldkmj1\n\
                Labels:\n - ssd\n - zone=a\n\
                Hostname:              \tdocker-node01\n\
                Joined at:             \t2020-06-20 05:57:17.57684293 +0000 utc\n\
                Status:\n State:\t\t\tReady\n Availability:         \tActive\n Address:\t\t192.168.0.41\n\
                Manager Status:\n Address:\t\t192.168.0.41:2377\n Raft Status:\t\tReachable\n Leader:\t\tYes\n\
                Platform:\n Operating System:\tlinux\n Architecture:\t\tx86_64\n\
                Resources:\n CPUs:\t\t\t4\n Memory:\t\t3.686GiB\n\
                Engine Version:\t\t19.03.11\n";
    assert_eq!(pretty_node(&node), want);

    let worker = seed_cluster().remove(2);
    let out = pretty_node(&worker);
    assert!(!out.contains("Manager Status"), "{out}");
    assert!(out.contains(" State:\t\t\tDown\n"), "{out}");
}

fn manager_info() -> serde_json::Value {
    json!({
        "ServerVersion": "0.1.0", "KernelVersion": "6.18.0", "OperatingSystem": "Debian GNU/Linux 13 (trixie)",
        "OSType": "linux", "Architecture": "x86_64", "NCPU": 2, "MemTotal": 25_165_824_000u64,
        "Name": "node1", "ID": "e1", "DockerRootDir": "/var/lib/shoal", "ExperimentalBuild": false,
        "Swarm": {
            "NodeID": "ynz304mbltxx10v3i15ldkmj1", "NodeAddr": "192.168.0.41", "LocalNodeState": "active",
            "ControlAvailable": true, "Error": "", "Nodes": 3, "Managers": 1,
            "RemoteManagers": [{"NodeID": "ynz", "Addr": "192.168.0.41:2377"}],
            "Cluster": {
                "ID": "cl1", "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24, "DataPathPort": 4789,
                "RootRotationInProgress": false,
                "Spec": {
                    "Orchestration": {"TaskHistoryRetentionLimit": 5},
                    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "HeartbeatTick": 1, "ElectionTick": 10},
                    "Dispatcher": {"HeartbeatPeriod": 5_000_000_000u64},
                    "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000u64},
                    "EncryptionConfig": {"AutoLockManagers": false}
                }
            }
        }
    })
}

#[test]
fn info_shows_the_swarm_section_like_docker() {
    let out = info_text(&manager_info());
    let want = "Client:\n Version:    0.1.0\n\nServer:\n Server Version: 0.1.0\n Swarm: active\n  NodeID: ynz304mbltxx10v3i15ldkmj1\n  \
                Is Manager: true\n  ClusterID: cl1\n  Managers: 1\n  Nodes: 3\n  Default Address Pool: 10.0.0.0/8  \n  \
                SubnetSize: 24\n  Data Path Port: 4789\n  Orchestration:\n   Task History Retention Limit: 5\n  Raft:\n   \
                Snapshot Interval: 10000\n   Number of Old Snapshots to Retain: 0\n   Heartbeat Tick: 1\n   Election Tick: 10\n  \
                Dispatcher:\n   Heartbeat Period: 5 seconds\n  CA Configuration:\n   Expiry Duration: 3 months\n   \
                Force Rotate: 0\n  Autolock Managers: false\n  Root Rotation In Progress: false\n  Node Address: 192.168.0.41\n  \
                Manager Addresses:\n   192.168.0.41:2377\n Kernel Version: 6.18.0\n Operating System: Debian GNU/Linux 13 (trixie)\n \
                OSType: linux\n Architecture: x86_64\n CPUs: 2\n Total Memory: 23.44GiB\n Name: node1\n ID: e1\n \
                Shoal Root Dir: /var/lib/shoal\n Experimental: false\n";
    assert_eq!(out, want);
}

#[test]
fn info_for_workers_and_inactive_nodes() {
    let worker = json!({"LocalNodeState": "active", "NodeID": "w1", "ControlAvailable": false, "NodeAddr": "198.18.0.2",
        "RemoteManagers": [{"NodeID": "b", "Addr": "198.18.0.3:2377"}, {"NodeID": "a", "Addr": "198.18.0.1:2377"}]});
    assert_eq!(
        swarm_section(&worker),
        " Swarm: active\n  NodeID: w1\n  Is Manager: false\n  Node Address: 198.18.0.2\n  Manager Addresses:\n   198.18.0.1:2377\n   198.18.0.3:2377\n"
    );
    assert_eq!(swarm_section(&json!({"LocalNodeState": "inactive"})), " Swarm: inactive\n");
}

#[test]
fn version_shows_client_and_server() {
    let server = json!({"Platform": {"Name": "Shoal"}, "Version": "0.1.0", "ApiVersion": "1.51", "MinAPIVersion": "1.24",
        "BuildTime": "2025-05-30T12:07:14Z", "Os": "linux", "Arch": "amd64", "KernelVersion": "6.18.0"});
    let out = version_text(Some(&server));
    assert!(out.starts_with("Client:\n Version:           0.1.0\n API version:       1.51\n"), "{out}");
    assert!(
        out.ends_with(
            "\nServer: Shoal\n Engine:\n  Version:          0.1.0\n  API version:      1.51 (minimum version 1.24)\n  \
             Built:            Fri May 30 12:07:14 2025\n  OS/Arch:          linux/amd64\n  Kernel Version:   6.18.0\n"
        ),
        "{out}"
    );
    assert!(!version_text(None).contains("Server"));
}
