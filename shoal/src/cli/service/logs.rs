//! `shoal service logs`: task output from every node, prefixed `task@node    | ` like docker's.
//!
//! The daemon sends Docker's multiplexed stream with the swarm details in front of each line
//! (`com.docker.swarm.node.id=…,…`); [`Demux`] cuts frames and [`LogLine::parse`] reads a
//! payload, both pure and tested; names are resolved once per task and node.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use clap::Args;
use control::objects::service::{Service, Task};
use control::objects::Node;
use http_body_util::BodyExt;

use crate::cli::duration::parse_go_duration;
use crate::client::{encode_component, Client, ClientError};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Do not include task IDs in output
    #[arg(long)]
    no_task_ids: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Do not neatly format logs
    #[arg(long)]
    raw: bool,
    #[arg(value_name = "SERVICE|TASK")]
    target: String,
}

/// Cuts the multiplexed stream into `(stream, payload)` frames as bytes arrive.
#[derive(Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while self.buf.len() >= 8 {
            let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            let payload = self.buf[8..8 + len].to_vec();
            frames.push((self.buf[0], payload));
            self.buf.drain(..8 + len);
        }
        frames
    }
}

/// One payload: `[timestamp ]details message`.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: Option<String>,
    pub node_id: String,
    pub task_id: String,
    pub message: String,
}

impl LogLine {
    pub fn parse(payload: &str, timestamps: bool) -> LogLine {
        let mut rest = payload;
        let mut timestamp = None;
        if timestamps {
            if let Some((ts, tail)) = rest.split_once(' ') {
                timestamp = Some(ts.to_string());
                rest = tail;
            }
        }
        let (details, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut node_id = String::new();
        let mut task_id = String::new();
        for pair in details.split(',') {
            match pair.split_once('=') {
                Some(("com.docker.swarm.node.id", v)) => node_id = v.to_string(),
                Some(("com.docker.swarm.task.id", v)) => task_id = v.to_string(),
                _ => {}
            }
        }
        LogLine { timestamp, node_id, task_id, message: message.to_string() }
    }
}

/// docker's `--since`: RFC 3339, Unix seconds, or a duration before now.
pub fn since_param(since: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) {
        return Ok(format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos()));
    }
    if since.split_once('.').map_or(since, |(s, _)| s).parse::<i64>().is_ok() {
        return Ok(since.to_string());
    }
    let ago = parse_go_duration(since).map_err(|e| anyhow::anyhow!("invalid value for \"since\": {e}"))?;
    let t = now - chrono::Duration::nanoseconds(ago);
    Ok(format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos()))
}

pub async fn run(client: &Client, args: LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut query = format!("stdout=1&stderr=1&details=1&tail={}", encode_component(&args.tail));
    if args.follow {
        query.push_str("&follow=1");
    }
    if args.timestamps {
        query.push_str("&timestamps=1");
    }
    if let Some(since) = &args.since {
        query.push_str(&format!("&since={}", since_param(since, chrono::Utc::now())?));
    }
    let target = encode_component(&args.target);
    let body = match client.get_stream(&format!("/services/{target}/logs?{query}")).await {
        Err(ClientError::Daemon { status, .. }) if status == http::StatusCode::NOT_FOUND => {
            client.get_stream(&format!("/tasks/{target}/logs?{query}")).await?
        }
        other => other?,
    };
    let mut names = Names::default();
    let mut demux = Demux::default();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading logs")?;
        let Some(data) = frame.data_ref() else { continue };
        for (stream, payload) in demux.push(data) {
            let line = LogLine::parse(&String::from_utf8_lossy(&payload), args.timestamps);
            let text = if args.raw {
                line.message.clone()
            } else {
                let prefix = names.prefix(client, &line, &args).await;
                match &line.timestamp {
                    Some(ts) => format!("{ts} {prefix}    | {}", line.message),
                    None => format!("{prefix}    | {}", line.message),
                }
            };
            if stream == 2 {
                eprint!("{text}");
            } else {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

/// Task and node names, fetched once each.
#[derive(Default)]
struct Names {
    tasks: HashMap<String, String>,
    nodes: HashMap<String, String>,
}

impl Names {
    async fn prefix(&mut self, client: &Client, line: &LogLine, args: &LogsArgs) -> String {
        if !self.tasks.contains_key(&line.task_id) {
            let name = match client.get::<Task>(&format!("/tasks/{}", encode_component(&line.task_id))).await {
                Ok(task) => {
                    let service = client
                        .get::<Service>(&format!("/services/{}", encode_component(&task.service_id)))
                        .await
                        .map(|s| s.spec.name)
                        .unwrap_or_else(|_| task.service_id.clone());
                    let slot = if task.slot > 0 { task.slot.to_string() } else { task.node_id.clone() };
                    task_name(&service, &slot, &task.id, args.no_task_ids, args.no_trunc)
                }
                Err(_) => line.task_id.clone(),
            };
            self.tasks.insert(line.task_id.clone(), name);
        }
        if !self.nodes.contains_key(&line.node_id) {
            let name = client
                .get::<Node>(&format!("/nodes/{}", encode_component(&line.node_id)))
                .await
                .map(|n| n.description.hostname)
                .unwrap_or_else(|_| line.node_id.clone());
            self.nodes.insert(line.node_id.clone(), name);
        }
        format!("{}@{}", self.tasks[&line.task_id], self.nodes[&line.node_id])
    }
}

/// docker's task name in log prefixes: `service.slot.id` (id cut to 12 unless `--no-trunc`).
pub fn task_name(service: &str, slot: &str, id: &str, no_task_ids: bool, no_trunc: bool) -> String {
    if no_task_ids {
        return format!("{service}.{slot}");
    }
    let id = if no_trunc { id } else { &id[..id.len().min(12)] };
    format!("{service}.{slot}.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_cuts_frames_across_reads() {
        let mut frame = vec![1u8, 0, 0, 0, 0, 0, 0, 3];
        frame.extend_from_slice(b"hi\n");
        let mut demux = Demux::default();
        assert!(demux.push(&frame[..5]).is_empty());
        assert_eq!(demux.push(&frame[5..]), vec![(1, b"hi\n".to_vec())]);
    }

    #[test]
    fn payloads_give_task_node_and_message() {
        let line = LogLine::parse(
            "2026-01-01T00:00:00.000000000Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s,com.docker.swarm.task.id=t1 hello world\n",
            true,
        );
        assert_eq!(line.timestamp.as_deref(), Some("2026-01-01T00:00:00.000000000Z"));
        assert_eq!((line.node_id.as_str(), line.task_id.as_str()), ("n1", "t1"));
        assert_eq!(line.message, "hello world\n");
    }

    #[test]
    fn task_names_and_since_follow_docker() {
        assert_eq!(task_name("web", "1", "abcdefghijklmnop", false, false), "web.1.abcdefghijkl");
        assert_eq!(task_name("web", "1", "abcdefghijklmnop", false, true), "web.1.abcdefghijklmnop");
        assert_eq!(task_name("web", "1", "abc", true, false), "web.1");
        let now = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(since_param("10s", now).unwrap(), "990.000000000");
        assert_eq!(since_param("1970-01-01T00:00:05Z", now).unwrap(), "5.000000000");
        assert_eq!(since_param("123", now).unwrap(), "123");
        assert!(since_param("soon", now).is_err());
    }
}
