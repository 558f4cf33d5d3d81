//! Task logs: every line a task writes becomes one line `<RFC 3339 time, ns> <stdout|stderr> <text>`
//! in its log file.
//!
//! The task shim (not the agent) writes the file, so logging carries on across agent restarts.
//! Times are UTC with nine fractional digits, so the file sorts as text. Like Docker's json-file
//! driver, a line longer than 16 KiB is split and a last line without a newline is still kept.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Docker splits longer lines into several messages; so do we.
const MAX_LINE: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of a task's output, without its newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: DateTime<Utc>,
    pub stream: Stream,
    pub line: String,
}

impl LogLine {
    /// Parses one line of a log file; `None` for anything malformed.
    pub fn parse(text: &str) -> Option<LogLine> {
        let (time, rest) = text.split_once(' ')?;
        let (stream, line) = rest.split_once(' ').unwrap_or((rest, ""));
        let stream = match stream {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => return None,
        };
        let timestamp = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        Some(LogLine { timestamp, stream, line: line.to_string() })
    }

    /// The line as stored in the log file, newline included.
    pub fn to_file_line(&self) -> String {
        format!(
            "{} {} {}\n",
            self.timestamp.to_rfc3339_opts(SecondsFormat::Nanos, true),
            self.stream.as_str(),
            self.line
        )
    }
}

/// Reads a task's log: the last `tail` lines (all when `None`), then only those at or after
/// `since` — the order Docker's json-file reader applies `--tail` and `--since` in.
/// A missing file reads as empty.
pub fn read_logs(path: &Path, tail: Option<usize>, since: Option<DateTime<Utc>>) -> Vec<LogLine> {
    let (mut lines, _) = read_logs_from(path, 0);
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    if let Some(since) = since {
        lines.retain(|l| l.timestamp >= since);
    }
    lines
}

/// Reads the complete lines after byte `offset` and returns them with the offset to pass next
/// time: the building block of `logs --follow`.
pub fn read_logs_from(path: &Path, offset: u64) -> (Vec<LogLine>, u64) {
    let Ok(mut file) = File::open(path) else { return (Vec::new(), offset) };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return (Vec::new(), offset);
    }
    // A line being written right now has no newline yet: leave it for the next call.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = String::from_utf8_lossy(&bytes[..complete]).lines().filter_map(LogLine::parse).collect();
    (lines, offset + complete as u64)
}

/// Turns the bytes of the two pipes into log lines (used by the task shim).
pub(crate) struct LogWriter {
    file: File,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    pub(crate) fn new(file: File) -> LogWriter {
        LogWriter { file, pending: [Vec::new(), Vec::new()] }
    }

    /// Appends what a pipe produced; whole lines are written at once, a partial one waits.
    pub(crate) fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[idx].len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending[idx].extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit(stream)?;
                }
                None if data.len() >= room => {
                    self.pending[idx].extend_from_slice(&data[..room]);
                    data = &data[room..];
                    self.emit(stream)?;
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// Writes out a last line that never got its newline.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.pending[stream as usize].is_empty() {
                self.emit(stream)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.pending[stream as usize]);
        let line = LogLine { timestamp: Utc::now(), stream, line: String::from_utf8_lossy(&bytes).into_owned() };
        // One write(2) per line, so a reader never sees half of one (the file is O_APPEND).
        self.file.write_all(line.to_file_line().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn writer(path: &Path) -> LogWriter {
        LogWriter::new(OpenOptions::new().create(true).append(true).open(path).unwrap())
    }

    #[test]
    fn lines_are_split_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.log");
        let mut w = writer(&path);
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ld\n\nlast").unwrap();
        w.finish().unwrap();
        let got: Vec<(Stream, String)> = read_logs(&path, None, None).into_iter().map(|l| (l.stream, l.line)).collect();
        let want = [(Stream::Stdout, "hello"), (Stream::Stderr, "oops"), (Stream::Stdout, "world")];
        let mut want: Vec<(Stream, String)> = want.iter().map(|(s, l)| (*s, l.to_string())).collect();
        want.push((Stream::Stdout, String::new()));
        want.push((Stream::Stdout, "last".to_string()));
        assert_eq!(got, want);
        let tail: Vec<String> = read_logs(&path, Some(2), None).into_iter().map(|l| l.line).collect();
        assert_eq!(tail, ["", "last"]);
    }

    #[test]
    fn long_lines_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.log");
        let mut w = writer(&path);
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        let lens: Vec<usize> = read_logs(&path, None, None).iter().map(|l| l.line.len()).collect();
        assert_eq!(lens, [MAX_LINE, 10]);
    }

    #[test]
    fn since_and_follow_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.log");
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let text = "2024-01-01T00:00:01.000000000Z stdout a\n\
                    2024-01-01T00:00:02.500000000Z stderr b c\n\
                    2024-01-01T00:00:03.000000000Z stdout d\n2024-01-01T00:00:04";
        std::fs::write(&path, text).unwrap();
        let since: Vec<String> =
            read_logs(&path, None, Some(t("2024-01-01T00:00:02.5Z"))).into_iter().map(|l| l.line).collect();
        assert_eq!(since, ["b c", "d"]);
        let (first, offset) = read_logs_from(&path, 0);
        assert_eq!(first.len(), 3);
        assert_eq!(offset, text.rfind('\n').unwrap() as u64 + 1);
        assert_eq!(read_logs_from(&path, offset).0, Vec::new());
        assert_eq!(first[1].to_file_line(), "2024-01-01T00:00:02.500000000Z stderr b c\n");
        assert!(read_logs(Path::new("/nonexistent/log"), None, None).is_empty());
    }
}
