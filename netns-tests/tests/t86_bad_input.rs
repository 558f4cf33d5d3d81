//! Band 86 (issue 3, test 7): bad service input gets Docker's messages and changes nothing.
//! `--replicas -1`, a malformed constraint, an unknown network, `--mode global` with
//! `--replicas`, and an update carrying a stale version are each tried through `shoal service`,
//! the real docker CLI and the raw Engine API; afterwards `GET /services` and every task are
//! exactly as before.

use netns_tests::{HttpResponse, Lab, Node};
use serde_json::{json, Value};

/// What must not change: every service (spec, version, status) and every task.
fn snapshot(lab: &Lab) -> (Value, Vec<String>) {
    let services = lab.node(1).api_get("/services?status=true");
    let mut tasks: Vec<String> =
        lab.try_tasks(1, &[]).unwrap().iter().map(|t| format!("{} {} {}", t.id, t.state, t.desired_state)).collect();
    tasks.sort();
    (services, tasks)
}

fn create_raw(node: &Node, spec: &Value) -> HttpResponse {
    node.api_post("/services/create", spec)
}

fn echo_spec(name: &str) -> Value {
    json!({"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "shoal/echo"}}})
}

#[track_caller]
fn assert_refused(r: &HttpResponse, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let message = r.message().unwrap_or_else(|| panic!("no JSON message: {}", r.text()));
    assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
}

#[test]
fn bad_service_input_gets_dockers_messages_and_changes_nothing() {
    let lab = Lab::with_daemons(2);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.service(&["create", "-d", "--name", "base", "--replicas", "2", "shoal/echo", "--http"]).assert_ok();
    lab.wait_converged(1, "base", 2);
    let before = snapshot(&lab);

    // --replicas -1: both CLIs refuse the flag as Docker's does; the API refuses the JSON.
    let flag = r#"invalid argument "-1" for "--replicas" flag"#;
    n1.service(&["create", "-d", "--name", "bad", "--replicas", "-1", "shoal/echo"]).assert_fails_with(flag);
    n1.docker(&["service", "create", "-d", "--name", "bad", "--replicas=-1", "shoal/echo"]).assert_fails_with(flag);
    let mut spec = echo_spec("bad");
    spec["Mode"] = json!({"Replicated": {"Replicas": -1}});
    assert_refused(&create_raw(n1, &spec), 400, "-1");

    // A malformed constraint: swarmkit's parser message, from the daemon.
    let constraint = "constraint expected one operator from ==, !=";
    for expr in ["garbage", "node.role~manager"] {
        n1.service(&["create", "-d", "--name", "bad", "--constraint", expr, "shoal/echo"])
            .assert_fails_with(constraint);
        n1.docker(&["service", "create", "-d", "--name", "bad", "--constraint", expr, "shoal/echo"])
            .assert_fails_with(constraint);
    }
    let mut spec = echo_spec("bad");
    spec["TaskTemplate"]["Placement"] = json!({"Constraints": ["node.role=manager"]});
    assert_refused(&create_raw(n1, &spec), 400, constraint);
    n1.service(&["update", "-d", "--constraint-add", "garbage", "base"]).assert_fails_with(constraint);

    // An unknown network.
    n1.service(&["create", "-d", "--name", "bad", "--network", "nosuchnet", "shoal/echo"])
        .assert_fails_with("network nosuchnet not found");
    let mut spec = echo_spec("bad");
    spec["TaskTemplate"]["Networks"] = json!([{"Target": "nosuchnet"}]);
    assert_refused(&create_raw(n1, &spec), 404, "network nosuchnet not found");

    // Global with replicas: the CLIs refuse the combination, the API a spec with two modes.
    let modes = "replicas can only be used with replicated or replicated-job mode";
    n1.service(&["create", "-d", "--name", "bad", "--mode", "global", "--replicas", "2", "shoal/echo"])
        .assert_fails_with(modes);
    n1.docker(&["service", "create", "-d", "--name", "bad", "--mode", "global", "--replicas", "2", "shoal/echo"])
        .assert_fails_with(modes);
    let mut spec = echo_spec("bad");
    spec["Mode"] = json!({"Global": {}, "Replicated": {"Replicas": 2}});
    assert_refused(&create_raw(n1, &spec), 400, "must specify only one service mode");

    // A second service with a taken name.
    n1.service(&["create", "-d", "--name", "base", "shoal/echo"]).assert_fails_with("already exists");

    assert_eq!(snapshot(&lab), before, "a refused request changed services or tasks");

    // A stale version: one update moves the version on; the same version again is refused.
    let service = lab.inspect_service(1, "base");
    let version = service["Version"]["Index"].as_u64().expect("Version.Index");
    let path = format!("/services/{}/update?version={version}", service["ID"].as_str().unwrap());
    let mut spec = service["Spec"].clone();
    spec["Labels"] = json!({"first": "1"});
    let r = n1.api_post(&path, &spec);
    assert_eq!(r.status, 200, "{}", r.text());
    let updated = lab.inspect_service(1, "base");
    spec["Labels"] = json!({"second": "2"});
    let r = n1.api_post(&path, &spec);
    assert!(!r.is_success(), "a stale version was accepted: {}", r.text());
    assert!(r.message().unwrap_or_default().contains("update out of sequence"), "{}", r.text());
    let after = lab.inspect_service(1, "base");
    assert_eq!(after["Spec"], updated["Spec"], "the stale update was applied");
    assert_eq!(after["Version"], updated["Version"]);
    assert_eq!(after["Spec"]["Labels"], json!({"first": "1"}));
}

#[test]
fn docker_cli_unknown_network_gets_dockers_message() {
    // The docker CLI looks the network up itself (`GET /networks/nosuchnet`) before creating
    // the service, and prints the daemon's 404 message.
    let lab = Lab::with_daemons(1);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);
    n1.docker(&["service", "create", "-d", "--name", "bad", "--network", "nosuchnet", "shoal/echo"])
        .assert_fails_with("network nosuchnet not found");
    assert_eq!(n1.service(&["ls", "-q"]).assert_ok().stdout.trim(), "", "a service was created");
}
