//! Running commands with a hang guard and keeping everything they said.
//!
//! Every command a test runs gets a timeout: a CLI that hangs (say, waiting forever for a Raft
//! leader) must fail the test with what it printed, not stall CI. The timeout is a guard, not a
//! timing assertion; tests that promise speed assert on [`CmdOutput::elapsed`] separately.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout then stderr, for searching a message wherever the program put it.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics (with everything the command printed) unless it exited 0; returns `self` for chaining.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "`{}` failed ({}):\n{}", self.cmdline, self.status, self.describe());
        self
    }

    /// Panics unless the command failed and its output contains `needle`.
    #[track_caller]
    pub fn assert_fails_with(&self, needle: &str) -> &Self {
        assert!(
            !self.success(),
            "`{}` succeeded but should have failed with {needle:?}:\n{}",
            self.cmdline,
            self.describe()
        );
        assert!(
            self.combined().contains(needle),
            "`{}` failed as expected but without {needle:?}:\n{}",
            self.cmdline,
            self.describe()
        );
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(self.stdout.contains(needle), "`{}` printed no {needle:?}:\n{}", self.cmdline, self.describe());
        self
    }

    /// A multi-line description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- status: {} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Renders a command as a shell-like line for messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed; kills it and panics if it runs past `timeout`.
#[track_caller]
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    match try_run_timeout(cmd, timeout) {
        Ok(out) => out,
        Err(e) => panic!("{e:#}"),
    }
}

/// Like [`run_timeout`] but reports spawn failures and timeouts as errors.
pub fn try_run_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<CmdOutput> {
    let line = cmdline(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run `{line}`: {e}"))?;
    // Read both pipes on their own threads so a chatty command cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = start + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // Only this child is killed: it is ours and nothing else shares its pid.
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
            anyhow::bail!(
                "`{line}` did not finish within {timeout:?} (killed)\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput { cmdline: line, status, stdout, stderr, elapsed })
}

/// Runs a setup command (such as `ip …`) and turns a non-zero exit into an error that quotes it.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = try_run_timeout(&mut cmd, Duration::from_secs(30))?;
    if !out.success() {
        anyhow::bail!("`{}` failed ({}): {}", out.cmdline, out.status, out.stderr.trim());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out =
            run_timeout(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        out.assert_fails_with("err");
    }

    #[test]
    fn a_hanging_command_is_killed() {
        let err = try_run_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }
}
