//! Band 87 (issue 3, test 8): the real docker CLI (28.x, unmodified) drives services on a Shoal
//! manager: `service create` (attached, with its progress display, and detached), `ls`, `ps`,
//! `inspect [--pretty]`, `logs`, `scale`, `update`, `rollback`, `rm`, and `node ps`; each exits 0
//! with what Docker would print, and the API agrees with what it did.

use netns_tests::table::parse_table;
use netns_tests::{poll_until, CmdOutput, Lab, CLUSTER};

/// A table the docker CLI printed, as rows of `column → cell`.
fn rows(out: &CmdOutput) -> Vec<std::collections::HashMap<String, String>> {
    let (names, rows) = parse_table(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
    rows.into_iter().map(|r| names.iter().cloned().zip(r).collect()).collect()
}

#[test]
fn docker_cli_drives_services() {
    let lab = Lab::with_daemons(3);
    lab.form_swarm(1, &[]);
    let n1 = lab.node(1);

    // Attached create: the ID, Docker's progress lines, then convergence.
    let out = n1.docker(&["service", "create", "--name", "web", "--replicas", "3", "shoal/echo", "--http"]);
    out.assert_ok();
    let id = lab.inspect_service(1, "web")["ID"].as_str().unwrap().to_string();
    assert_eq!(out.stdout.lines().next(), Some(id.as_str()), "{}", out.describe());
    out.assert_stdout_contains("overall progress: 3 out of 3 tasks").assert_stdout_contains("converged");
    let tasks = lab.wait_converged(1, "web", 3);

    // ls: Docker's columns and REPLICAS running/desired.
    let ls = n1.docker(&["service", "ls"]);
    ls.assert_ok();
    let table = rows(&ls);
    assert_eq!(table.len(), 1, "{}", ls.describe());
    let web = &table[0];
    assert_eq!((web["ID"].as_str(), web["NAME"].as_str(), web["MODE"].as_str()), (&id[..12], "web", "replicated"));
    assert_eq!((web["REPLICAS"].as_str(), web["IMAGE"].as_str()), ("3/3", "shoal/echo:latest"));
    assert_eq!(n1.docker(&["service", "ls", "-q"]).assert_ok().stdout.trim(), &id[..12]);

    // ps: one row per task, named web.<slot>, on the node the API says.
    let ps = n1.docker(&["service", "ps", "web"]);
    ps.assert_ok();
    let names = lab.hostnames(1);
    let table = rows(&ps);
    assert_eq!(table.len(), 3, "{}", ps.describe());
    for t in &tasks {
        let row =
            table.iter().find(|r| r["ID"] == t.id[..12]).unwrap_or_else(|| panic!("{}: {}", t.brief(), ps.stdout));
        assert_eq!(row["NAME"], format!("web.{}", t.slot));
        assert_eq!(row["NODE"], names[&t.node_id]);
        assert_eq!(row["DESIRED STATE"], "Running");
        assert!(row["CURRENT STATE"].starts_with("Running"), "{row:?}");
    }

    // inspect: JSON and --pretty.
    let inspect = n1.docker(&["service", "inspect", "web"]);
    let json: serde_json::Value = serde_json::from_str(&inspect.assert_ok().stdout).expect("inspect prints JSON");
    assert_eq!(json[0]["ID"], id.as_str());
    assert_eq!(json[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(json[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"], serde_json::json!(["--http"]));
    let pretty = n1.docker(&["service", "inspect", "--pretty", "web"]);
    pretty.assert_ok().assert_stdout_contains("Name:\t\tweb").assert_stdout_contains(" Replicas:\t3");

    // logs: every task's line, prefixed as Docker does.
    poll_until(CLUSTER, "docker service logs to show all 3 tasks", || {
        let out = n1.docker(&["service", "logs", "web"]);
        let text = out.combined();
        let missing: Vec<String> = tasks
            .iter()
            .map(|t| format!("web.{}.{}@{}", t.slot, &t.id[..12], names[&t.node_id]))
            .filter(|p| !text.lines().any(|l| l.starts_with(p.as_str()) && l.contains("| shoal-echo: ")))
            .collect();
        (out.success() && missing.is_empty()).then_some(()).ok_or(format!("missing {missing:?}: {}", out.describe()))
    });

    // scale.
    n1.docker(&["service", "scale", "-d", "web=5"]).assert_ok().assert_stdout_contains("web scaled to 5");
    lab.wait_converged(1, "web", 5);

    // update (attached: it waits for the rolling update and says so), then rollback.
    let out = n1.docker(&["service", "update", "--env-add", "COLOR=blue", "web"]);
    out.assert_ok().assert_stdout_contains("web").assert_stdout_contains("converged");
    let service = lab.inspect_service(1, "web");
    assert_eq!(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"], serde_json::json!(["COLOR=blue"]));
    assert_eq!(service["UpdateStatus"]["State"], "completed", "{}", service["UpdateStatus"]);
    n1.docker(&["service", "rollback", "-d", "web"]).assert_ok().assert_stdout_contains("web");
    lab.wait_service(1, "web", "rolled back", |s| {
        let env = &s["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"];
        let done = s["UpdateStatus"]["State"] == "rollback_completed";
        (done && env.as_array().is_none_or(|e| e.is_empty())).then_some(()).ok_or(format!("Env {env}"))
    });
    lab.wait_converged(1, "web", 5);

    // node ps: the tasks of one node, and of the node the CLI talks to.
    let on2 = n1.docker(&["node", "ps", "node2"]);
    on2.assert_ok();
    let table = rows(&on2);
    assert!(!table.is_empty(), "{}", on2.describe());
    assert!(table.iter().all(|r| r["NODE"] == "node2"), "{}", on2.stdout);
    let current_on2 = lab
        .tasks(1, "web")
        .into_iter()
        .filter(|t| t.is_current() && names[&t.node_id] == "node2")
        .map(|t| t.id[..12].to_string())
        .collect::<Vec<_>>();
    for id in &current_on2 {
        assert!(table.iter().any(|r| &r["ID"] == id), "node ps node2 lacks {id}: {}", on2.stdout);
    }
    let own = n1.docker(&["node", "ps"]);
    assert!(rows(own.assert_ok()).iter().all(|r| r["NODE"] == "node1"), "{}", own.stdout);

    // rm.
    n1.docker(&["service", "rm", "web"]).assert_ok().assert_stdout_contains("web");
    assert_eq!(n1.docker(&["service", "ls", "-q"]).assert_ok().stdout.trim(), "");
    n1.docker(&["service", "inspect", "web"]).assert_fails_with("no such service: web");
    poll_until(CLUSTER, "web's task processes to end on every node", || {
        let left: Vec<_> = lab.nodes().iter().flat_map(|n| n.running_task_processes()).collect();
        left.is_empty().then_some(()).ok_or(left)
    });
}
