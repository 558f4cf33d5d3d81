use super::*;
use crate::cli::fixtures::seed_cluster;
use control::objects::{SwarmInfo, TlsInfo};

fn current(node_id: &str) -> SwarmInfo {
    SwarmInfo { node_id: node_id.into(), ..Default::default() }
}

#[test]
fn node_table_matches_docker_spacing() {
    let out = render_node_list(&seed_cluster(), &current("ynz304mbltxx10v3i15ldkmj1"), &node_list_format(None, false))
        .unwrap();
    let want = [
        "ID                            HOSTNAME        STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION",
        "ynz304mbltxx10v3i15ldkmj1 *   docker-node01   Ready     Active         Leader           19.03.11",
        "tzkm0ymzjdmc1r8d54snievf1     docker-node02   Down      Active                          19.03.11",
        "aeo8j7zit9qkoeeft3j0q1h0z     docker-node03   Ready     Active         Reachable        19.03.11",
        "",
    ]
    .join("\n");
    assert_eq!(out, want);
}

#[test]
fn node_table_with_no_nodes_is_just_the_header() {
    let out = render_node_list(&[], &current(""), NODE_TABLE_FORMAT).unwrap();
    assert_eq!(out, "ID        HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n");
}

#[test]
fn node_list_quiet_json_and_templates() {
    let nodes = seed_cluster();
    let quiet = render_node_list(&nodes, &current("x"), &node_list_format(None, true)).unwrap();
    assert_eq!(quiet, "ynz304mbltxx10v3i15ldkmj1\ntzkm0ymzjdmc1r8d54snievf1\naeo8j7zit9qkoeeft3j0q1h0z\n");

    let json =
        render_node_list(&nodes[1..2], &current("ynz304mbltxx10v3i15ldkmj1"), &node_list_format(Some("json"), false))
            .unwrap();
    assert_eq!(
        json,
        r#"{"Availability":"Active","EngineVersion":"19.03.11","Hostname":"docker-node01","ID":"ynz304mbltxx10v3i15ldkmj1","ManagerStatus":"Leader","Self":true,"Status":"Ready","TLSStatus":"Unknown"}"#
            .to_string()
            + "\n"
    );

    let custom = render_node_list(&nodes, &current(""), "{{.Hostname}}: {{.ManagerStatus}}").unwrap();
    assert_eq!(custom, "docker-node01: Leader\ndocker-node02: \ndocker-node03: Reachable\n");

    let table = render_node_list(&nodes, &current(""), "table {{.Hostname}}\\t{{.Status}}").unwrap();
    assert_eq!(table, "HOSTNAME        STATUS\ndocker-node01   Ready\ndocker-node02   Down\ndocker-node03   Ready\n");

    let e = render_node_list(&nodes, &current(""), "{{.Nope}}").unwrap_err();
    assert!(e.contains("can't evaluate field Nope"), "{e}");
}

#[test]
fn tabwriter_aligns_blocks_like_go() {
    assert_eq!(tabwrite("a\tb\nlonger cell\tc\n", 0, 1), "a           b\nlonger cell c\n");
    // A line without the column ends the block: widths restart below it.
    assert_eq!(tabwrite("aaaa\tx\nno tabs\nb\ty", 0, 1), "aaaa x\nno tabs\nb y");
    assert_eq!(tabwrite("a\tb", 10, 3), "a         b");
}

#[test]
fn natural_order() {
    let mut names = vec!["node10", "node2", "node1", "alpha", "node02"];
    names.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(names, ["alpha", "node1", "node2", "node02", "node10"]);
    assert_eq!(natural_cmp("docker-node01", "docker-node02"), std::cmp::Ordering::Less);
    // Digits sort before other characters, as in Go's sortorder.
    assert_eq!(natural_cmp("web2.1", "web.1"), std::cmp::Ordering::Less);
    assert_eq!(natural_cmp("a1", "ab"), std::cmp::Ordering::Less);
}

#[test]
fn inspect_json_uses_four_spaces_and_api_field_order() {
    let out = inspect_json(&seed_cluster()[1..2]);
    assert!(out.starts_with("[\n    {\n        \"ID\": \"ynz304mbltxx10v3i15ldkmj1\",\n        \"Version\": {\n            \"Index\": 9\n        },\n        \"CreatedAt\": \"2020-06-20T05:57:17.576842930Z\""), "{out}");
    assert!(out.ends_with("    }\n]\n"));
    assert_eq!(inspect_json::<Node>(&[]), "[]\n");
    let t = inspect_template("{{.Status.State}} {{.Spec.Role}} {{.Missing}}", &seed_cluster()[..1]).unwrap();
    assert_eq!(t, "ready manager <no value>\n");
}

#[test]
fn sizes_read_like_go_units() {
    assert_eq!(bytes_size(3_958_075_392.0), "3.686GiB");
    assert_eq!(bytes_size(0.0), "0B");
    assert_eq!(bytes_size(1536.0), "1.5KiB");
    assert_eq!(bytes_size(1024.0 * 1024.0), "1MiB");
    assert_eq!(bytes_size(25_165_824_000.0), "23.44GiB");
}

#[test]
fn tls_status_compares_with_the_cluster_root() {
    let tls =
        TlsInfo { trust_root: "root".into(), cert_issuer_subject: "s".into(), cert_issuer_public_key: "k".into() };
    let mut node = seed_cluster().remove(0);
    let mut swarm = current("");
    assert_eq!(tls_status(&node, &swarm), "Unknown");
    swarm.cluster = Some(serde_json::json!({"ID": "c", "TLSInfo": serde_json::to_value(&tls).unwrap()}));
    assert_eq!(tls_status(&node, &swarm), "Unknown");
    node.description.tls_info = tls.clone();
    assert_eq!(tls_status(&node, &swarm), "Ready");
    node.description.tls_info.trust_root = "old root".into();
    assert_eq!(tls_status(&node, &swarm), "Needs Rotation");
}

#[test]
fn capitalisation_follows_docker_pretty_print() {
    assert_eq!(capitalize_first("ready"), "Ready");
    assert_eq!(capitalize_first("2020-06-20 05:57:17 +0000 UTC"), "2020-06-20 05:57:17 +0000 utc");
    assert_eq!(capitalize_first("X"), "x");
    assert_eq!(capitalize_first(""), "");
}
