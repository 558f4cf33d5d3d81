//! Running commands inside a task: health checks (`--health-cmd`) and anything tests need.
//!
//! The agent starts `shoal __task-init exec <task dir> <argv>…`; that fresh process joins the
//! task's cgroups, enters its IPC, UTS, network, PID and mount namespaces (`setns` on
//! `/proc/PID/ns/*`; mount last, since it changes the root) and forks, because only children
//! enter a PID namespace. The child leads a new process group, takes the task's user, working
//! directory and environment and execs. The helper enforces the timeout itself: it SIGKILLs the
//! whole process group (so `sh -c 'sleep 99'` leaves no `sleep` behind) and exits with
//! [`EXEC_TIMEOUT`]. Should the helper itself be killed, a parent-death signal ends the child.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setpgid, ForkResult, Pid};
use tokio::io::AsyncReadExt;

use super::init::{exec_as, program, resolve_exe, resolve_user};
use super::state::{self, InitSpec, ShimState};
use super::{io_err, sys, Result, RunningTask, RuntimeError};

/// Docker keeps this much of a health check's output.
const MAX_OUTPUT: usize = 4096;

/// The helper's exit code when it killed the command on timeout (as coreutils `timeout`).
const EXEC_TIMEOUT: i32 = 124;

/// What a command run in a task produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code, or 128 + signal.
    pub code: i32,
    /// stdout then stderr, cut to 4 KiB like Docker's health-check log.
    pub output: String,
}

/// The argv of a Docker health-check `Test`: `["CMD", prog, args…]` or `["CMD-SHELL", script]`.
pub fn health_argv(test: &[String]) -> Result<Vec<String>> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(rest.to_vec()),
        Some((kind, [script])) if kind == "CMD-SHELL" => Ok(vec!["/bin/sh".into(), "-c".into(), script.clone()]),
        _ => Err(RuntimeError::BadHealthTest(test.to_vec())),
    }
}

impl RunningTask {
    /// Runs a health-check test inside the task and returns its exit code (0 = healthy).
    pub async fn exec_health(&self, test: &[String], timeout: Duration) -> Result<i32> {
        Ok(self.exec(&health_argv(test)?, timeout).await?.code)
    }

    /// Runs `argv` inside the task's namespaces and cgroup, as its user, in its working
    /// directory, with its environment; kills it after `timeout`.
    pub async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        if argv.is_empty() {
            return Err(RuntimeError::NoCommand);
        }
        if self.status().is_some() {
            return Err(RuntimeError::NotRunning);
        }
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&self.inner.exe)
            .args(["__task-init", "exec"])
            .arg(&self.inner.dir)
            .arg(timeout.as_millis().to_string())
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("cannot start exec helper"))?;
        let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let run = async move {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let _ = tokio::join!(out.read_to_end(&mut a), err.read_to_end(&mut b));
            let status = child.wait().await;
            (status, a, b)
        };
        // The helper times the command out itself; this only guards against a stuck helper.
        let guard = timeout + Duration::from_secs(2);
        let (status, mut bytes, err) =
            tokio::time::timeout(guard, run).await.map_err(|_| RuntimeError::Timeout(timeout))?;
        let status = status.map_err(io_err("cannot wait for exec helper"))?;
        use std::os::unix::process::ExitStatusExt;
        let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(255);
        if code == EXEC_TIMEOUT && started.elapsed() >= timeout {
            return Err(RuntimeError::Timeout(timeout));
        }
        bytes.extend_from_slice(&err);
        bytes.truncate(MAX_OUTPUT);
        Ok(ExecOutput { code, output: String::from_utf8_lossy(&bytes).into_owned() })
    }
}

/// `shoal __task-init exec <dir> <timeout ms> <argv>…`: the command's exit code, 126/127 if it
/// could not run, [`EXEC_TIMEOUT`] if it was killed on timeout.
pub(crate) fn exec_main(dir: &Path, args: &[String]) -> i32 {
    let (Some(Ok(timeout_ms)), Some(argv)) = (args.first().map(|t| t.parse::<u64>()), args.get(1..)) else {
        eprintln!("usage: shoal __task-init exec <task dir> <timeout ms> <command>...");
        return 2;
    };
    if argv.is_empty() {
        eprintln!("no command specified");
        return 2;
    }
    match enter_and_run(dir, Duration::from_millis(timeout_ms), argv) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("{message}");
            code
        }
    }
}

fn enter_and_run(dir: &Path, timeout: Duration, argv: &[String]) -> std::result::Result<i32, (i32, String)> {
    let fail = |e: String| (126, e);
    let spec: InitSpec = state::read_json(&dir.join(state::INIT)).map_err(|e| fail(format!("no task spec: {e}")))?;
    let st: ShimState = state::read_json(&dir.join(state::STATE)).map_err(|e| fail(format!("no task state: {e}")))?;
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces = Vec::new();
    for (name, kind) in kinds {
        let path = format!("/proc/{}/ns/{name}", st.pid);
        namespaces.push((File::open(&path).map_err(|e| fail(format!("cannot open {path}: {e}")))?, kind));
    }
    // Opened the files first, checked the process after: the namespaces are the task's.
    if !sys::is_alive(st.pid, st.start_time) {
        return Err(fail("task is not running".into()));
    }
    for procs in spec.cgroup.procs_files() {
        fs::write(&procs, "0").map_err(|e| fail(format!("cannot join cgroup {}: {e}", procs.display())))?;
    }
    for (file, kind) in &namespaces {
        setns(file, *kind).map_err(|e| fail(format!("cannot enter {kind:?}: {e}")))?;
    }
    let identity = resolve_user(&spec.launch.user).map_err(fail)?;
    let env = state::environment(&spec.launch, &identity.home);
    let exe = resolve_exe(&argv[0], &env).map_err(|e| (127, e))?;
    let program = program(&exe, argv, &env).map_err(fail)?;
    let workdir = if spec.launch.dir.is_empty() { "/" } else { spec.launch.dir.as_str() };
    // SAFETY: `shoal __task-init` is single-threaded, so the child may run ordinary code.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let Err(message) = exec_as(&identity, workdir, &program);
            eprintln!("{message}");
            // SAFETY: _exit ends this forked copy without running the helper's exit handlers.
            unsafe { libc::_exit(126) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(fail(format!("fork: {e}"))),
    };
    // Both sides set the group, so it exists whichever runs first.
    let _ = setpgid(child, child);
    let timed_out = !exited_within(child, timeout);
    if timed_out {
        eprintln!("Health check exceeded timeout ({timeout:?})");
    }
    // Also ends what the command left running in the background.
    let _ = killpg(child, Signal::SIGKILL);
    let code = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            other => return Err(fail(format!("unexpected wait status {other:?}"))),
        }
    };
    Ok(if timed_out { EXEC_TIMEOUT } else { code })
}

/// Waits up to `timeout` for `child` to exit, without reaping it.
fn exited_within(child: Pid, timeout: Duration) -> bool {
    let Ok(pidfd) = sys::pidfd_open(child.as_raw()) else { return true };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) if left.is_zero() => return false,
            Ok(0) | Err(Errno::EINTR) => continue,
            _ => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn health_tests_map_to_argv() {
        assert_eq!(health_argv(&s(&["CMD", "curl", "-f", "x"])).unwrap(), s(&["curl", "-f", "x"]));
        assert_eq!(health_argv(&s(&["CMD-SHELL", "exit 1"])).unwrap(), s(&["/bin/sh", "-c", "exit 1"]));
        for bad in [s(&[]), s(&["NONE"]), s(&["CMD"]), s(&["CMD-SHELL", "a", "b"]), s(&["curl"])] {
            assert!(health_argv(&bad).is_err(), "{bad:?}");
        }
    }
}
