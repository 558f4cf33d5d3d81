//! Band 60 (issue 2, test 6): bad input gets Docker's status codes and messages, as JSON
//! `{"message": …}`: malformed JSON → 400, unknown node → 404 `node X not found`, a stale
//! `version` → "update out of sequence", `swarm init` twice → "already part of a swarm".

use netns_tests::Lab;
use serde_json::json;

#[test]
fn bad_requests_get_dockers_errors() {
    let lab = Lab::with_daemons(1);
    lab.init_swarm(1);
    let node = lab.node(1);
    let id = node.node_id();
    let current = lab.inspect_node(1, &id);
    let version = current["Version"]["Index"].as_u64().expect("Version.Index");

    // Malformed JSON.
    let r = node.api("POST", &format!("/nodes/{id}/update?version={version}"), Some(b"{\"Role\": ")).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().is_some_and(|m| !m.is_empty()), "no JSON message: {:?}", r.text());
    assert_eq!(r.header("Content-Type").map(|c| c.starts_with("application/json")), Some(true), "{:?}", r.headers);

    // Unknown node, with and without an API version prefix.
    for prefix in ["", "/v1.24", "/v1.51"] {
        let r = node.api("GET", &format!("{prefix}/nodes/nope"), None).unwrap();
        assert_eq!((r.status, r.message().as_deref()), (404, Some("node nope not found")), "{prefix}: {}", r.text());
    }
    node.shoal(&["node", "inspect", "nope"]).assert_fails_with("node nope not found");

    // A stale version: update once (the version moves on), then reuse the old one.
    let mut spec = current["Spec"].clone();
    spec["Labels"] = json!({"first": "1"});
    let r = node.api_post(&format!("/nodes/{id}/update?version={version}"), &spec);
    assert_eq!(r.status, 200, "{}", r.text());
    spec["Labels"] = json!({"second": "2"});
    let r = node.api_post(&format!("/nodes/{id}/update?version={version}"), &spec);
    assert!(!r.is_success(), "a stale version was accepted: {}", r.text());
    assert!(r.message().unwrap_or_default().contains("update out of sequence"), "{}", r.text());
    assert_eq!(lab.inspect_node(1, &id)["Spec"]["Labels"], json!({"first": "1"}), "the stale update was applied");

    // init twice.
    let addr = node.addr().to_string();
    node.shoal(&["swarm", "init", "--advertise-addr", &addr]).assert_fails_with("This node is already part of a swarm");
    let r = node.api_post("/swarm/init", &json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": addr}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.message().unwrap_or_default().starts_with("This node is already part of a swarm"), "{}", r.text());
}
