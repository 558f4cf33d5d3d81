//! Band 40 (issue 2, test 4): join tokens. A wrong secret, a token pinning another cluster's
//! CA, and a rotated token are all refused, and a refused node stays outside the swarm; the
//! current token still works.
//!
//! The TLS and RPC layer is tested where the role table lives, in the control crate (`cargo test
//! -p control`; a lab would add nothing there but slowness):
//! - `control/tests/cluster.rs::three_managers_and_a_worker_form_a_swarm_and_enforce_identity`
//!   calls every RPC in `acl::RPC_ACL` over real mutual TLS with a worker certificate
//!   (manager-only ones → PermissionDenied), without a certificate (→ Unauthenticated), and with
//!   another cluster's certificate (handshake fails);
//! - `control/src/rpc/acl.rs` (`every_method_admits_exactly_its_roles`) checks the table itself.

use netns_tests::{poll_until, Lab, CLUSTER};

/// `SWMTKN-1-<digest>-<secret>` split into (digest, secret).
fn token_parts(token: &str) -> (&str, &str) {
    let rest = token.strip_prefix("SWMTKN-1-").unwrap_or_else(|| panic!("not a join token: {token}"));
    rest.rsplit_once('-').unwrap_or_else(|| panic!("not a join token: {token}"))
}

/// `digest` with its last base-36 digit one lower (or `1` for a trailing `0`).
fn off_by_one_last_digit(digest: &str) -> String {
    let (head, last) = digest.split_at(digest.len() - 1);
    let last = match last {
        "0" => "1".to_string(),
        "a" => "9".to_string(),
        c => char::from(c.as_bytes()[0] - 1).to_string(),
    };
    format!("{head}{last}")
}

/// A different secret of the same length and alphabet (base36 lower-case).
fn other_secret(secret: &str) -> String {
    secret
        .chars()
        .map(|c| {
            if c == 'z' {
                '0'
            } else if c == '9' {
                'a'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect()
}

/// Asserts node `i` is still outside any swarm and cluster A still has `nodes` nodes.
fn assert_refused_cleanly(lab: &Lab, i: usize, nodes: usize) {
    assert_eq!(lab.node(i).local_node_state(), "inactive", "node{i} after a refused join");
    assert_eq!(lab.node_ls(1).len(), nodes, "a refused join added a node");
}

#[test]
fn bad_foreign_and_rotated_tokens_are_refused() {
    let lab = Lab::with_daemons(3);
    // Cluster A on node1, cluster B on node2; node3 tries to join A.
    lab.init_swarm(1);
    lab.node(2).shoal(&["swarm", "init", "--advertise-addr", &lab.node(2).addr().to_string()]).assert_ok();
    let token_a = lab.join_token(1, false);
    let token_b = lab.join_token(2, false);
    let (digest_a, secret_a) = token_parts(&token_a);
    let (digest_b, _) = token_parts(&token_b);
    assert_ne!(digest_a, digest_b, "two clusters share a CA digest");

    // Right CA, wrong secret.
    let wrong = format!("SWMTKN-1-{digest_a}-{}", other_secret(secret_a));
    let out = lab.join_with_token(3, 1, &wrong);
    out.assert_fails_with("valid join token");
    assert_refused_cleanly(&lab, 3, 1);

    // Cluster B's CA digest with cluster A's secret: the joiner must stop at the CA check.
    let foreign = format!("SWMTKN-1-{digest_b}-{secret_a}");
    lab.join_with_token(3, 1, &foreign).assert_fails_with("remote CA does not match fingerprint");
    assert_refused_cleanly(&lab, 3, 1);

    // A corrupted digest of the right length fails the same way. Only its last base-36 digit
    // moves (by one), so it stays a valid 256-bit number: corrupting every digit can overflow
    // 2^256, which the token parser rightly refuses as "invalid join token" before any CA check.
    let corrupt = format!("SWMTKN-1-{}-{secret_a}", off_by_one_last_digit(digest_a));
    lab.join_with_token(3, 1, &corrupt).assert_fails_with("remote CA does not match fingerprint");
    assert_refused_cleanly(&lab, 3, 1);

    // Rotation: the old worker token stops working, the new one works.
    lab.node(1)
        .shoal(&["swarm", "join-token", "--rotate", "worker"])
        .assert_ok()
        .assert_stdout_contains("Successfully rotated worker join token.");
    let rotated = lab.join_token(1, false);
    assert_ne!(rotated, token_a);
    assert_eq!(token_parts(&rotated).0, digest_a, "rotating a token must not change the CA");
    lab.join_with_token(3, 1, &token_a).assert_fails_with("valid join token");
    assert_refused_cleanly(&lab, 3, 1);

    let out = lab.join_with_token(3, 1, &rotated);
    out.assert_ok().assert_stdout_contains("This node joined a swarm as a worker.");
    poll_until(CLUSTER, "node3 to appear in cluster A", || (lab.node_ls(1).len() == 2).then_some(()));
    // Cluster B never heard of node3.
    assert_eq!(lab.node_ls(2).len(), 1);
}
