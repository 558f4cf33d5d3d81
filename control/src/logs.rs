//! Task logs: each node serves its tasks' log files (`Agent.TaskLogs` on its 2377 listener, to
//! managers only); the manager answering the API call fans out to the nodes running the tasks
//! and merges their streams.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use mesh_agent::runtime::{read_logs_from, LogLine, Stream as LogStream};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::api::{LogMessage, LogOptions, LogsApi};
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::executor::task_log_path;
use crate::objects::service::Task;
use crate::rpc::pb;
use crate::rpc::services::Services;
use crate::service_api::find_service;

/// How often a followed log file is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

fn wire(task_id: &str, line: LogLine) -> LogMessage {
    LogMessage {
        node_id: String::new(),
        service_id: String::new(),
        task_id: task_id.to_string(),
        stream: match line.stream {
            LogStream::Stdout => 1,
            LogStream::Stderr => 2,
        },
        timestamp: line.timestamp,
        line: line.line,
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_server::Agent for Services {
    type TaskLogsStream = ChunkStream;

    async fn task_logs(&self, req: Request<pb::LogsRequest>) -> Result<Response<ChunkStream>, Status> {
        let req = req.into_inner();
        let since = match req.since.as_str() {
            "" => None,
            s => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| Status::invalid_argument(format!("bad since: {e}")))?
                    .with_timezone(&chrono::Utc),
            ),
        };
        let tail = (req.tail > 0).then_some(req.tail as usize);
        let paths: Vec<(String, std::path::PathBuf)> =
            req.task_ids.iter().map(|id| (id.clone(), task_log_path(&self.core, id))).collect();
        let (tx, mut rx) = mpsc::channel::<Result<pb::LogChunk, Status>>(16);
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for (id, path) in &paths {
                let (lines, offset) = read_logs_from(path, 0);
                let mut lines: Vec<LogLine> =
                    lines.into_iter().filter(|l| since.is_none_or(|s| l.timestamp >= s)).collect();
                if let Some(tail) = tail {
                    lines.drain(..lines.len().saturating_sub(tail));
                }
                offsets.push(offset);
                if !send(&tx, id, lines).await {
                    return;
                }
            }
            if !req.follow {
                return;
            }
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                for ((id, path), offset) in paths.iter().zip(offsets.iter_mut()) {
                    let (lines, next) = read_logs_from(path, *offset);
                    *offset = next;
                    if !send(&tx, id, lines).await {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Sends lines in chunks; `false` once the caller has gone away.
async fn send(tx: &mpsc::Sender<Result<pb::LogChunk, Status>>, id: &str, lines: Vec<LogLine>) -> bool {
    for chunk in lines.chunks(256) {
        let messages: Vec<LogMessage> = chunk.iter().cloned().map(|l| wire(id, l)).collect();
        let Ok(bytes) = serde_json::to_vec(&messages) else { return false };
        if tx.send(Ok(pb::LogChunk { lines: bytes })).await.is_err() {
            return false;
        }
    }
    !tx.is_closed()
}

impl Daemon {
    /// Asks every node running some of `tasks` for their lines and merges the answers.
    async fn gather_logs(&self, tasks: Vec<Task>, options: LogOptions) -> ApiResult<mpsc::Receiver<LogMessage>> {
        let manager = self.require_manager()?;
        let peers = self.core.peers().ok_or_else(ApiError::not_in_swarm)?;
        let state = manager.state();
        let mut by_node: BTreeMap<String, Vec<Task>> = BTreeMap::new();
        for task in tasks.into_iter().filter(|t| !t.node_id.is_empty()) {
            by_node.entry(task.node_id.clone()).or_default().push(task);
        }
        let (tx, rx) = mpsc::channel(256);
        for (node_id, tasks) in by_node {
            let Some(addr) = state.nodes.get(&node_id).map(|n| n.manager_addr.clone()).filter(|a| !a.is_empty()) else {
                continue;
            };
            let channel = peers.node(&addr, &node_id).map_err(|e| ApiError::internal(format!("{e:#}")))?;
            let services: BTreeMap<String, String> =
                tasks.iter().map(|t| (t.id.clone(), t.service_id.clone())).collect();
            let request = pb::LogsRequest {
                task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
                follow: options.follow,
                tail: options.tail.unwrap_or(0),
                since: options.since.map(|s| s.to_rfc3339()).unwrap_or_default(),
            };
            let tx = tx.clone();
            let options = options.clone();
            tokio::spawn(async move {
                let mut client = pb::agent_client::AgentClient::new(channel);
                let mut stream = match client.task_logs(request).await {
                    Ok(reply) => reply.into_inner(),
                    Err(status) => {
                        tracing::warn!("logs from node {node_id} at {addr}: {}", status.message());
                        return;
                    }
                };
                while let Ok(Some(chunk)) = stream.message().await {
                    let Ok(lines) = serde_json::from_slice::<Vec<LogMessage>>(&chunk.lines) else { return };
                    for mut line in lines {
                        let wanted = (line.stream == 1 && options.stdout) || (line.stream == 2 && options.stderr);
                        if !wanted {
                            continue;
                        }
                        line.node_id = node_id.clone();
                        line.service_id = services.get(&line.task_id).cloned().unwrap_or_default();
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        Ok(rx)
    }
}

#[async_trait]
impl LogsApi for Daemon {
    async fn service_logs(&self, key: &str, options: LogOptions) -> ApiResult<mpsc::Receiver<LogMessage>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let state = manager.state();
        let service = find_service(&state, key)?;
        let tasks: Vec<Task> = state.tasks.values().filter(|t| t.service_id == service.id).cloned().collect();
        self.gather_logs(tasks, options).await
    }

    async fn task_logs(&self, key: &str, options: LogOptions) -> ApiResult<mpsc::Receiver<LogMessage>> {
        let manager = self.require_manager()?;
        manager.read_barrier().await?;
        let task = crate::service_api::find_task(&manager.state(), key)?.clone();
        self.gather_logs(vec![task], options).await
    }
}
