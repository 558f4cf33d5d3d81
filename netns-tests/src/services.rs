//! Service helpers on a [`Lab`]: reading services and tasks back from the Engine API, waiting for
//! a service to converge, and reaching a task from the outside (its echo server through its
//! network namespace, its files through `nsenter`).
//!
//! Commands go through [`Node::service`] (the CLI a user types); state is read through the API,
//! whose JSON is what `service ps`/`inspect` render, so a check does not depend on column layout.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cmd::{run_timeout, CmdOutput};
use crate::node::{Node, CLI_TIMEOUT};
use crate::poll::poll_until;
use crate::{Lab, CLUSTER};

/// One task as `GET /tasks` shows it, with the fields tests look at pulled out.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub id: String,
    pub service_id: String,
    /// 0 for global tasks.
    pub slot: u64,
    pub node_id: String,
    /// `Status.State`: `new` … `running`, `complete`, `shutdown`, `failed`, `rejected`, `orphaned`.
    pub state: String,
    pub desired_state: String,
    /// `Status.ContainerStatus.PID`: the task's PID 1 on its node (0 before it runs).
    pub pid: i32,
    /// `CreatedAt`, as Unix nanoseconds.
    pub created_ns: i128,
    /// `Status.Timestamp` (when the task entered its current state), as Unix nanoseconds.
    pub status_ns: i128,
    pub message: String,
    pub err: String,
    pub exit_code: i64,
    pub json: Value,
}

impl TaskView {
    fn from_json(json: Value) -> TaskView {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let status = &json["Status"];
        TaskView {
            id: s(&json["ID"]),
            service_id: s(&json["ServiceID"]),
            slot: json["Slot"].as_u64().unwrap_or(0),
            node_id: s(&json["NodeID"]),
            state: s(&status["State"]),
            desired_state: s(&json["DesiredState"]),
            pid: status["ContainerStatus"]["PID"].as_i64().unwrap_or(0) as i32,
            created_ns: json["CreatedAt"].as_str().and_then(parse_time).unwrap_or(0),
            status_ns: status["Timestamp"].as_str().and_then(parse_time).unwrap_or(0),
            message: s(&status["Message"]),
            err: s(&status["Err"]),
            exit_code: status["ContainerStatus"]["ExitCode"].as_i64().unwrap_or(0),
            json,
        }
    }

    /// Whether the orchestrator wants this task running (it is the slot's current task).
    pub fn is_current(&self) -> bool {
        self.desired_state == "running"
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// `ContainerSpec.Args` of the spec this task runs.
    pub fn args(&self) -> Vec<String> {
        let args = self.json["Spec"]["ContainerSpec"]["Args"].as_array().cloned().unwrap_or_default();
        args.iter().filter_map(|a| a.as_str().map(str::to_string)).collect()
    }

    /// A short description for failure messages.
    pub fn brief(&self) -> String {
        let id = &self.id[..self.id.len().min(12)];
        let err = if self.err.is_empty() { String::new() } else { format!(" err={:?}", self.err) };
        format!(
            "{id} slot {} on {} {}/{} pid {}{err}",
            self.slot,
            short(&self.node_id),
            self.state,
            self.desired_state,
            self.pid
        )
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Parses an RFC 3339 UTC timestamp as the API writes it (`2026-11-23T14:14:13.884826803Z`,
/// fraction optional, `Z` or `+00:00`) into Unix nanoseconds.
pub fn parse_time(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse().ok()?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

/// Seconds from `a` to `b` (Unix nanoseconds).
pub fn secs_between(a: i128, b: i128) -> f64 {
    (b - a) as f64 / 1e9
}

/// `?filters=…` for the Engine API: `{"key": ["value", …]}`, URL-encoded.
pub fn filters_query(pairs: &[(&str, &str)]) -> String {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k).or_default().push(v);
    }
    let json = serde_json::to_string(&map).expect("serialize filters");
    let encoded: String = json
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("?filters={encoded}")
}

impl Node {
    /// Runs `shoal service …` the way a user would: `node.service(&["create", "-d", …])`. (The
    /// real docker CLI's service commands are exercised by `t87_docker_cli_services`.)
    pub fn service(&self, args: &[&str]) -> CmdOutput {
        let mut full = vec!["service"];
        full.extend_from_slice(args);
        self.shoal(&full)
    }

    /// The task directories the runtime keeps under this node's data root.
    pub fn task_records(&self) -> Vec<crate::tasks::TaskRecord> {
        crate::tasks::task_records(self.data_root())
    }

    /// The tasks whose processes run on this node right now (by their recorded pid and start
    /// time), as `(task id, pid)`.
    pub fn running_task_processes(&self) -> Vec<(String, i32)> {
        self.task_records()
            .into_iter()
            .filter(|r| r.task_running())
            .filter_map(|r| Some((r.id.clone(), r.pid?.0)))
            .collect()
    }
}

impl Lab {
    /// `GET /tasks` on node `via`, optionally filtered; `Err` says what the API answered.
    pub fn try_tasks(&self, via: usize, filters: &[(&str, &str)]) -> Result<Vec<TaskView>, String> {
        let path = if filters.is_empty() { "/tasks".to_string() } else { format!("/tasks{}", filters_query(filters)) };
        let r = self.node(via).api("GET", &path, None).map_err(|e| format!("GET {path}: {e}"))?;
        if !r.is_success() {
            return Err(format!("GET {path}: {} {}", r.status, r.text()));
        }
        let list = r.json().as_array().cloned().ok_or_else(|| format!("GET {path}: not a list: {}", r.text()))?;
        let mut tasks: Vec<TaskView> = list.into_iter().map(TaskView::from_json).collect();
        tasks.sort_by(|a, b| (a.slot, &a.node_id, a.created_ns).cmp(&(b.slot, &b.node_id, b.created_ns)));
        Ok(tasks)
    }

    /// Every task of `service` (current and history) as node `via` reports them.
    #[track_caller]
    pub fn tasks(&self, via: usize, service: &str) -> Vec<TaskView> {
        self.try_tasks(via, &[("service", service)]).unwrap_or_else(|e| panic!("node{via}: {e}"))
    }

    /// `GET /services/<name>` on node `via`.
    pub fn try_inspect_service(&self, via: usize, name: &str) -> Result<Value, String> {
        let r = self.node(via).api("GET", &format!("/services/{name}"), None).map_err(|e| e.to_string())?;
        if !r.is_success() {
            return Err(format!("{} {}", r.status, r.text()));
        }
        Ok(r.json())
    }

    #[track_caller]
    pub fn inspect_service(&self, via: usize, name: &str) -> Value {
        self.try_inspect_service(via, name).unwrap_or_else(|e| panic!("node{via}: GET /services/{name}: {e}"))
    }

    /// Node ID → hostname, from node `via`'s `GET /nodes`.
    #[track_caller]
    pub fn hostnames(&self, via: usize) -> HashMap<String, String> {
        let nodes = self.node(via).api_get("/nodes");
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let id = n["ID"].as_str().unwrap_or_default().to_string();
                (id, n["Description"]["Hostname"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// How many of `tasks` each node runs, by hostname (nodes without any are absent).
    #[track_caller]
    pub fn placement(&self, via: usize, tasks: &[TaskView]) -> BTreeMap<String, usize> {
        let names = self.hostnames(via);
        let mut out = BTreeMap::new();
        for t in tasks {
            let host = names.get(&t.node_id).cloned().unwrap_or_else(|| format!("?{}", short(&t.node_id)));
            *out.entry(host).or_insert(0) += 1;
        }
        out
    }

    /// Polls node `via`'s tasks of `service` until `check` accepts them.
    #[track_caller]
    pub fn wait_tasks(
        &self,
        via: usize,
        service: &str,
        what: &str,
        check: impl Fn(&[TaskView]) -> Result<(), String>,
    ) -> Vec<TaskView> {
        poll_until(CLUSTER, &format!("service {service}: {what}"), || {
            let tasks = self.try_tasks(via, &[("service", service)])?;
            check(&tasks)
                .map_err(|e| format!("{e}; tasks: {:#?}", tasks.iter().map(TaskView::brief).collect::<Vec<_>>()))?;
            Ok::<_, String>(tasks)
        })
    }

    /// Waits until `service` has exactly `n` current tasks, all running, and returns them.
    #[track_caller]
    pub fn wait_converged(&self, via: usize, service: &str, n: usize) -> Vec<TaskView> {
        let tasks = self.wait_tasks(via, service, &format!("{n} current tasks, all running"), |tasks| {
            let current: Vec<&TaskView> = tasks.iter().filter(|t| t.is_current()).collect();
            let running = current.iter().filter(|t| t.is_running()).count();
            if current.len() == n && running == n {
                Ok(())
            } else {
                Err(format!("{} current, {running} running", current.len()))
            }
        });
        tasks.into_iter().filter(TaskView::is_current).collect()
    }

    /// Waits until every node runs exactly the task processes of `service` that node `via`'s API
    /// says it runs (current tasks in state running; processes found through the runtime's
    /// records on each node), and returns how many each node runs (nodes running none are
    /// absent). Catches both a task the API forgot and a process the API thinks is gone.
    #[track_caller]
    pub fn wait_processes_match_api(&self, via: usize, service: &str) -> BTreeMap<String, usize> {
        poll_until(CLUSTER, &format!("{service}: task processes on the nodes to match the API"), || {
            let tasks = self.try_tasks(via, &[("service", service)])?;
            let names = self.hostnames(via);
            let mut by_node = BTreeMap::new();
            for node in self.nodes() {
                let mut running: Vec<String> = node.running_task_processes().into_iter().map(|(id, _)| id).collect();
                running.retain(|id| tasks.iter().any(|t| &t.id == id));
                running.sort();
                let mut want: Vec<String> = tasks
                    .iter()
                    .filter(|t| t.is_current() && t.is_running())
                    .filter(|t| names.get(&t.node_id).map(String::as_str) == Some(node.hostname()))
                    .map(|t| t.id.clone())
                    .collect();
                want.sort();
                if running != want {
                    return Err(format!("{} runs {running:?}, the API says {want:?}", node.hostname()));
                }
                if !running.is_empty() {
                    by_node.insert(node.hostname().to_string(), running.len());
                }
            }
            Ok(by_node)
        })
    }

    /// Polls `GET /services/<name>` on node `via` until `check` accepts it.
    #[track_caller]
    pub fn wait_service(
        &self,
        via: usize,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> Result<(), String>,
    ) -> Value {
        poll_until(CLUSTER, &format!("service {name}: {what}"), || {
            let service = self.try_inspect_service(via, name)?;
            check(&service).map_err(|e| format!("{e}; UpdateStatus {}", service["UpdateStatus"]))?;
            Ok::<_, String>(service)
        })
    }
}

/// One HTTP GET to `127.0.0.1:<port><path>` from inside the network namespace of process `pid`
/// (a task's PID 1): what `nsenter -t PID -n curl` does, without curl. Returns status and body.
pub fn task_http_get(pid: i32, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let ns = format!("/proc/{pid}/ns/net");
    crate::netns::in_netns_at(Path::new(&ns), || {
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: task\r\nConnection: close\r\n\r\n")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no HTTP status in {head:?}"))
        })?;
        Ok((status, body.to_string()))
    })
}

/// Runs `cmd` inside namespaces of process `pid` (`ns` as nsenter flags, e.g. `["-m"]` for the
/// task's mount namespace and so its private /tmp).
pub fn nsenter(pid: i32, ns: &[&str], cmd: &[&str]) -> CmdOutput {
    let mut c = Command::new("nsenter");
    c.arg("-t").arg(pid.to_string()).args(ns).arg("--").args(cmd);
    run_timeout(&mut c, CLI_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_timestamps() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-02T00:00:01.5Z"), Some(86_401_500_000_000));
        let a = parse_time("2026-11-23T14:14:13.884826803Z").unwrap();
        let b = parse_time("2026-11-23T14:14:15.000000003+00:00").unwrap();
        assert_eq!(b - a, 1_115_173_200);
        // 2000-03-01 is day 11017 (a leap-year February before it).
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(11_017 * 86_400 * 1_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("0001-01-01T00:00:00"), None, "no zone");
    }

    #[test]
    fn filters_are_json_and_url_encoded() {
        assert_eq!(filters_query(&[("service", "web")]), "?filters=%7B%22service%22%3A%5B%22web%22%5D%7D");
        let q = filters_query(&[("node", "a"), ("desired-state", "running"), ("node", "b")]);
        assert_eq!(
            q,
            "?filters=%7B%22desired-state%22%3A%5B%22running%22%5D%2C%22node%22%3A%5B%22a%22%2C%22b%22%5D%7D"
        );
    }
}
