//! Swarm helpers on a [`Lab`]: forming a cluster with the CLI the way a user would, and reading
//! its state back from `node ls` or the Engine API.
//!
//! Everything here goes through `shoal` commands or public API paths, so a helper that works
//! is itself evidence that the user-facing surface works.

use crate::cmd::CmdOutput;
use crate::poll::poll_until;
use crate::table::{parse_node_ls, NodeRow};
use crate::{Lab, CLUSTER};

impl Lab {
    /// `shoal swarm init --advertise-addr <node i>` ; asserts success and a join command with a
    /// `SWMTKN-1-` token in the banner. Later joins go through this node.
    #[track_caller]
    pub fn init_swarm(&self, i: usize) -> CmdOutput {
        self.init_swarm_with(i, &[])
    }

    /// [`Lab::init_swarm`] with extra flags (e.g. `--dispatcher-heartbeat 1s`).
    #[track_caller]
    pub fn init_swarm_with(&self, i: usize, extra: &[&str]) -> CmdOutput {
        let addr = self.node(i).addr().to_string();
        let mut args = vec!["swarm", "init", "--advertise-addr", &addr];
        args.extend_from_slice(extra);
        let out = self.node(i).shoal(&args);
        out.assert_ok().assert_stdout_contains("--token SWMTKN-1-");
        self.set_anchor(i);
        out
    }

    /// The current join token from manager `via` (`shoal swarm join-token -q worker|manager`).
    #[track_caller]
    pub fn join_token(&self, via: usize, manager: bool) -> String {
        let role = if manager { "manager" } else { "worker" };
        let out = self.node(via).shoal(&["swarm", "join-token", "-q", role]);
        out.assert_ok();
        let token = out.stdout.trim().to_string();
        assert!(token.starts_with("SWMTKN-1-"), "join-token -q {role} printed {token:?}");
        token
    }

    /// Joins node `i` through the node the swarm was initialised on.
    #[track_caller]
    pub fn join(&self, i: usize, as_manager: bool) -> CmdOutput {
        let via = self.anchor().expect("join before init_swarm");
        self.join_via(i, via, as_manager)
    }

    /// Joins node `i` with a token fetched from manager `via`, giving `via`'s address as the
    /// remote; asserts Docker's success line.
    #[track_caller]
    pub fn join_via(&self, i: usize, via: usize, as_manager: bool) -> CmdOutput {
        let token = self.join_token(via, as_manager);
        let out = self.join_with_token(i, via, &token);
        out.assert_ok();
        let role = if as_manager { "manager" } else { "worker" };
        out.assert_stdout_contains(&format!("This node joined a swarm as a {role}."));
        out
    }

    /// `shoal swarm join --token <token> --advertise-addr <node i> <node via>:2377`, unchecked.
    pub fn join_with_token(&self, i: usize, via: usize, token: &str) -> CmdOutput {
        let addr = self.node(i).addr().to_string();
        let remote = format!("{}:2377", self.node(via).addr());
        self.node(i).shoal(&["swarm", "join", "--token", token, "--advertise-addr", &addr, &remote])
    }

    /// Forms a swarm: node1 inits (with `init_extra`), nodes 2..=managers join as managers, the
    /// rest as workers; waits until node1's `node ls` shows every node Ready with one Leader.
    #[track_caller]
    pub fn form_swarm(&self, managers: usize, init_extra: &[&str]) -> Vec<NodeRow> {
        assert!(managers >= 1 && managers <= self.nodes().len());
        self.init_swarm_with(1, init_extra);
        for i in 2..=self.nodes().len() {
            self.join(i, i <= managers);
        }
        self.wait_node_ls(1, "every node Ready with one Leader", |rows| check_shape(rows, self.nodes().len(), managers))
    }

    /// `shoal node ls` on node `i`, parsed; `Err` carries what the command said.
    pub fn try_node_ls(&self, i: usize) -> Result<Vec<NodeRow>, String> {
        let out = self.node(i).shoal(&["node", "ls"]);
        if !out.success() {
            return Err(format!("node ls failed: {}", out.combined().trim()));
        }
        parse_node_ls(&out.stdout)
    }

    /// `shoal node ls` on node `i`, parsed; panics if it fails.
    #[track_caller]
    pub fn node_ls(&self, i: usize) -> Vec<NodeRow> {
        self.try_node_ls(i).unwrap_or_else(|e| panic!("node{i}: {e}"))
    }

    /// `docker node ls` on node `i`, parsed; panics if it fails.
    #[track_caller]
    pub fn docker_node_ls(&self, i: usize) -> Vec<NodeRow> {
        let out = self.node(i).docker(&["node", "ls"]);
        out.assert_ok();
        parse_node_ls(&out.stdout).unwrap_or_else(|e| panic!("node{i}: docker node ls: {e}"))
    }

    /// Polls `shoal node ls` on node `observer` until `check` accepts the rows.
    #[track_caller]
    pub fn wait_node_ls(
        &self,
        observer: usize,
        what: &str,
        check: impl Fn(&[NodeRow]) -> Result<(), String>,
    ) -> Vec<NodeRow> {
        poll_until(CLUSTER, &format!("node{observer} `node ls`: {what}"), || {
            let rows = self.try_node_ls(observer)?;
            check(&rows).map_err(|e| format!("{e}; rows: {rows:#?}"))?;
            Ok::<_, String>(rows)
        })
    }

    /// The lab index of the node `hostname` names (`node3` → 3).
    pub fn index_of(&self, hostname: &str) -> Option<usize> {
        let i: usize = hostname.strip_prefix("node")?.parse().ok()?;
        (i >= 1 && i <= self.nodes().len()).then_some(i)
    }

    /// The leader as node `observer`'s `GET /nodes` reports it (lab index), if any.
    pub fn leader_via_api(&self, observer: usize) -> Option<usize> {
        let r = self.node(observer).api("GET", "/nodes", None).ok()?;
        if !r.is_success() {
            return None;
        }
        let nodes = r.json();
        let leader = nodes.as_array()?.iter().find(|n| n["ManagerStatus"]["Leader"].as_bool() == Some(true))?;
        self.index_of(leader["Description"]["Hostname"].as_str()?)
    }

    /// `GET /nodes/<id>` on node `via`.
    #[track_caller]
    pub fn inspect_node(&self, via: usize, id: &str) -> serde_json::Value {
        self.node(via).api_get(&format!("/nodes/{id}"))
    }
}

/// Checks a `node ls` for `total` rows, all Ready, exactly one Leader and `managers - 1`
/// Reachable, the rest workers (empty MANAGER STATUS).
pub fn check_shape(rows: &[NodeRow], total: usize, managers: usize) -> Result<(), String> {
    let count = |s: &str| rows.iter().filter(|r| r.manager_status == s).count();
    if rows.len() != total {
        return Err(format!("{} rows, want {total}", rows.len()));
    }
    if let Some(r) = rows.iter().find(|r| r.status != "Ready") {
        return Err(format!("{} is {}", r.hostname, r.status));
    }
    let (leaders, reachable, workers) = (count("Leader"), count("Reachable"), count(""));
    if (leaders, reachable, workers) != (1, managers - 1, total - managers) {
        return Err(format!(
            "{leaders} Leader, {reachable} Reachable, {workers} workers; want 1, {}, {}",
            managers - 1,
            total - managers
        ));
    }
    Ok(())
}

/// The row whose HOSTNAME is `hostname`.
pub fn row<'a>(rows: &'a [NodeRow], hostname: &str) -> Result<&'a NodeRow, String> {
    rows.iter().find(|r| r.hostname == hostname).ok_or_else(|| format!("no row for {hostname}"))
}
