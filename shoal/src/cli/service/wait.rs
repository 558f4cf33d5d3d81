//! Waiting for a service to converge after `create`, `update`, `scale` or `rollback`: docker's
//! polling loop (`GET /services/{id}`, `GET /tasks` with `_up-to-date`, `GET /nodes` every
//! 200 ms) feeding [`ServiceProgress`], drawn with indicatif when stderr is a terminal and as
//! plain changed lines otherwise.
//!
//! docker waits forever; so does this, unless tasks keep failing: after [`GIVE_UP_AFTER`]
//! without convergence and at least [`GIVE_UP_FAILURES`] failed tasks, it stops with their
//! errors. Ctrl-C leaves the operation running, as docker does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use control::objects::service::{Service, Task, TaskState};
use control::objects::{Node, NodeState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::progress::{Line, ServiceProgress};
use crate::client::{encode_component, Client};

const POLL: Duration = Duration::from_millis(200);
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
pub const GIVE_UP_FAILURES: usize = 3;

pub async fn wait_on_service(client: &Client, service: &str, quiet: bool) -> anyhow::Result<()> {
    let mut display = if quiet { Display::Quiet } else { Display::new() };
    let result = poll(client, service, &mut display).await;
    display.finish();
    result
}

async fn poll(client: &Client, name: &str, display: &mut Display) -> anyhow::Result<()> {
    let mut progress = ServiceProgress::new(name);
    let mut failures = Failures::new(Instant::now());
    // Registered once, so a Ctrl-C that arrives between two polls is not lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let service_path = format!("/services/{}", encode_component(name));
    loop {
        let service: Service = client.get(&service_path).await?;
        let now = Instant::now();
        if let Some(end) = progress.check(&service, now) {
            display.show(progress.take_lines());
            return end.map_err(anyhow::Error::msg);
        }
        let filters =
            format!(r#"{{"_up-to-date":{{"true":true}},"service":{{{}:true}}}}"#, serde_json::json!(service.id));
        let tasks: Vec<Task> = client.get(&format!("/tasks?filters={}", encode_component(&filters))).await?;
        let nodes: Vec<Node> = client.get("/nodes").await?;
        let active: HashSet<String> =
            nodes.into_iter().filter(|n| n.status.state != NodeState::Down).map(|n| n.id).collect();
        progress.update(&service, &tasks, &active, now).map_err(anyhow::Error::msg)?;
        display.show(progress.take_lines());
        failures.observe(&tasks);
        if !progress.converged() {
            if let Some(error) = failures.give_up(&service.id, now) {
                bail!(error);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = interrupt.recv() => {
                if !progress.converged() {
                    display.message("Operation continuing in background.");
                    display.message(&format!("Use `shoal service ps {name}` to check progress."));
                }
                return Ok(());
            }
        }
    }
}

/// Task failures seen while waiting, to stop a wait that cannot end.
struct Failures {
    since: Instant,
    errors: BTreeMap<String, String>,
}

impl Failures {
    fn new(since: Instant) -> Failures {
        Failures { since, errors: BTreeMap::new() }
    }

    fn observe(&mut self, tasks: &[Task]) {
        for t in tasks.iter().filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected)) {
            let error = if t.status.err.is_empty() { t.status.message.clone() } else { t.status.err.clone() };
            self.errors.entry(t.id.clone()).or_insert(error);
        }
    }

    fn give_up(&self, service_id: &str, now: Instant) -> Option<String> {
        if now.duration_since(self.since) < GIVE_UP_AFTER || self.errors.len() < GIVE_UP_FAILURES {
            return None;
        }
        let mut distinct: Vec<&String> = self.errors.values().collect();
        distinct.sort();
        distinct.dedup();
        let listed: String = distinct.iter().take(5).map(|e| format!("\n  {e}")).collect();
        Some(format!(
            "service {service_id} did not converge: {} tasks failed in {}s; task errors:{listed}\n\
             The service keeps trying; see `shoal service ps --no-trunc {service_id}`",
            self.errors.len(),
            GIVE_UP_AFTER.as_secs()
        ))
    }
}

/// Where progress goes: a redrawn terminal block, changed lines for logs, or nowhere (`-q`).
enum Display {
    Quiet,
    Plain { last: HashMap<String, String> },
    Terminal { multi: MultiProgress, bars: HashMap<String, ProgressBar>, wide: bool },
}

impl Display {
    fn new() -> Display {
        if !std::io::stderr().is_terminal() {
            return Display::Plain { last: HashMap::new() };
        }
        // docker draws bars only on terminals wider than 110 columns.
        let wide = console::Term::stderr().size_checked().is_none_or(|(_, columns)| columns > 110);
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Display::Terminal { multi, bars: HashMap::new(), wide }
    }

    fn show(&mut self, lines: Vec<Line>) {
        for line in lines {
            match self {
                Display::Quiet => {}
                Display::Plain { last } => {
                    if line.action.trim().is_empty() {
                        continue;
                    }
                    let text = line.plain_text();
                    if last.get(&line.id) != Some(&text) {
                        eprintln!("{text}");
                        last.insert(line.id.clone(), text);
                    }
                }
                Display::Terminal { multi, bars, wide } => {
                    let text = line.tty_text(*wide);
                    let bar = bars.entry(line.id.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(ProgressStyle::with_template("{msg}").expect("a static template"));
                        bar
                    });
                    bar.set_message(text);
                }
            }
        }
    }

    fn message(&mut self, text: &str) {
        match self {
            Display::Quiet => {}
            Display::Plain { .. } => eprintln!("{text}"),
            Display::Terminal { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Terminal { bars, .. } = self {
            for bar in bars.values() {
                bar.abandon();
            }
        }
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::service::fixtures::task;

    #[test]
    fn gives_up_only_on_repeated_failures_after_a_while() {
        let t0 = Instant::now();
        let mut f = Failures::new(t0);
        let failed = |id: &str| {
            let mut t = task(id, "svc", 1, "n1", TaskState::Failed, chrono::Duration::seconds(1));
            t.status.err = "starting container failed: no such file".into();
            t
        };
        f.observe(&[failed("a"), failed("b")]);
        f.observe(&[failed("a"), failed("b"), failed("c")]);
        assert_eq!(f.give_up("svc", t0 + Duration::from_secs(60)), None);
        let e = f.give_up("svc", t0 + GIVE_UP_AFTER).unwrap();
        assert!(e.starts_with("service svc did not converge: 3 tasks failed in 120s; task errors:\n  starting container failed: no such file\n"), "{e}");
        let mut g = Failures::new(t0);
        g.observe(&[failed("a")]);
        assert_eq!(g.give_up("svc", t0 + GIVE_UP_AFTER * 2), None);
    }
}
