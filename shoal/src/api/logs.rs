//! `/services/{id}/logs` and `/tasks/{id}/logs`: task output in Docker's multiplexed stream.
//!
//! Each frame is `[stream, 0, 0, 0, len (u32 BE)]` then the payload: `[<RFC3339Nano> ]` with
//! `timestamps`, then with `details` the swarm attributes (`com.docker.swarm.node.id=…,…`, sorted,
//! query-escaped, as dockerd writes them; the docker CLI's `service logs` always asks for them
//! and parses them back into `task@node` prefixes), then the line and a newline.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use control::{LogMessage, LogOptions};

use super::errors::{HttpError, Params};
use super::AppState;

pub async fn service_logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, HttpError> {
    let (options, format) = parse(&params)?;
    let lines = st.logs.service_logs(&id, options).await?;
    Ok(stream(lines, format))
}

pub async fn task_logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, HttpError> {
    let (options, format) = parse(&params)?;
    let lines = st.logs.task_logs(&id, options).await?;
    Ok(stream(lines, format))
}

/// How each line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineFormat {
    pub timestamps: bool,
    pub details: bool,
}

fn parse(params: &Params) -> Result<(LogOptions, LineFormat), HttpError> {
    let stdout = params.parse_bool("stdout")?;
    let stderr = params.parse_bool("stderr")?;
    if !stdout && !stderr {
        return Err(HttpError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let tail = match params.get("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => Some(n.parse::<i64>().map_err(|_| HttpError::bad_request(format!("invalid tail value: {n}")))?)
            .filter(|n| *n >= 0)
            .map(|n| n as u64),
    };
    let since = match params.get("since") {
        None | Some("") | Some("0") => None,
        Some(raw) => Some(parse_unix_time(raw).ok_or_else(|| HttpError::bad_request(format!("invalid since: {raw}")))?),
    };
    let options = LogOptions { follow: params.parse_bool("follow")?, tail, since, stdout, stderr };
    let format = LineFormat { timestamps: params.parse_bool("timestamps")?, details: params.parse_bool("details")? };
    Ok((options, format))
}

/// The docker CLI sends `since` as Unix seconds with an optional fraction (`1700000000.5`).
fn parse_unix_time(raw: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, "0"));
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    DateTime::from_timestamp(secs, nanos)
}

/// One frame of the multiplexed stream for `message`.
pub fn frame(message: &LogMessage, format: LineFormat) -> Vec<u8> {
    let mut payload = String::new();
    if format.timestamps {
        payload.push_str(&message.timestamp.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string());
        payload.push(' ');
    }
    if format.details {
        let attrs = [
            ("com.docker.swarm.node.id", &message.node_id),
            ("com.docker.swarm.service.id", &message.service_id),
            ("com.docker.swarm.task.id", &message.task_id),
        ];
        let rendered: Vec<String> = attrs.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect();
        payload.push_str(&rendered.join(","));
        payload.push(' ');
    }
    payload.push_str(&message.line);
    payload.push('\n');
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(if message.stream == 2 { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
    out
}

/// Go's `url.QueryEscape` for the characters that can appear in IDs and attribute names.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn stream(mut lines: tokio::sync::mpsc::Receiver<LogMessage>, format: LineFormat) -> Response {
    let body = futures::stream::poll_fn(move |cx| {
        lines.poll_recv(cx).map(|next| next.map(|m| Ok::<_, std::convert::Infallible>(Bytes::from(frame(&m, format)))))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.docker.multiplexed-stream")
        .body(Body::from_stream(body))
        .expect("static response parts")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every logs call answers two lines of task `t1` on `n1`.
    pub(crate) struct FakeLogs;

    #[async_trait::async_trait]
    impl control::LogsApi for FakeLogs {
        async fn service_logs(
            &self,
            key: &str,
            _options: LogOptions,
        ) -> control::ApiResult<tokio::sync::mpsc::Receiver<LogMessage>> {
            if key == "nope" {
                return Err(control::ApiError::not_found("service nope not found"));
            }
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(message(1, "first")).await.unwrap();
            tx.send(message(2, "second")).await.unwrap();
            Ok(rx)
        }
        async fn task_logs(
            &self,
            key: &str,
            options: LogOptions,
        ) -> control::ApiResult<tokio::sync::mpsc::Receiver<LogMessage>> {
            self.service_logs(key, options).await
        }
    }

    fn message(stream: u8, line: &str) -> LogMessage {
        LogMessage {
            node_id: "node1".into(),
            service_id: "svc".into(),
            task_id: "task".into(),
            stream,
            timestamp: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            line: line.into(),
        }
    }

    #[test]
    fn frames_follow_dockers_multiplexed_format() {
        let plain = frame(&message(1, "hello"), LineFormat { timestamps: false, details: false });
        assert_eq!(plain, b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n");
        let full = frame(&message(2, "oops"), LineFormat { timestamps: true, details: true });
        assert_eq!(full[0], 2);
        let payload = String::from_utf8(full[8..].to_vec()).unwrap();
        assert_eq!(
            payload,
            "2023-11-14T22:13:20.000000005Z com.docker.swarm.node.id=node1,com.docker.swarm.service.id=svc,\
             com.docker.swarm.task.id=task oops\n"
        );
        assert_eq!(u32::from_be_bytes(full[4..8].try_into().unwrap()) as usize, payload.len());
    }

    #[test]
    fn since_accepts_unix_seconds_with_fraction() {
        assert_eq!(parse_unix_time("1700000000").unwrap().timestamp(), 1_700_000_000);
        assert_eq!(parse_unix_time("1700000000.5").unwrap().timestamp_subsec_nanos(), 500_000_000);
        assert!(parse_unix_time("yesterday").is_none());
    }
}
