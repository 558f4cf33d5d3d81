//! A started task as the agent holds it: its pid, a pidfd to signal it safely, and a monitor that
//! notices its end (the shim exiting), reads the recorded exit status and removes its cgroups.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::cgroup::TaskCgroup;
use super::state::{self, read_json, ExitRecord};
use super::{io_err, sys, ExitStatus, Result, Runtime, RuntimeError};

/// What the monitor waits on before the task counts as ended.
pub(super) enum Waiter {
    /// The shim we spawned (reaping it too).
    Child(tokio::process::Child),
    /// An adopted task's shim, or its PID 1 if the shim is gone.
    Pidfd(OwnedFd),
}

/// A started (or adopted) task. Clones share the task.
#[derive(Clone, Debug)]
pub struct RunningTask {
    pub(super) inner: Arc<TaskInner>,
}

#[derive(Debug)]
pub(super) struct TaskInner {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) pid: i32,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) cgroup: TaskCgroup,
    pub(super) exe: PathBuf,
    pub(super) status: watch::Receiver<Option<ExitStatus>>,
}

impl RunningTask {
    pub(super) fn track(
        rt: &Runtime,
        id: &str,
        dir: PathBuf,
        pid: i32,
        cgroup: TaskCgroup,
        waiter: Waiter,
    ) -> RunningTask {
        let pidfd = sys::pidfd_open(pid).ok();
        let (tx, status) = watch::channel(None);
        let task_fd = pidfd.as_ref().and_then(|fd| fd.try_clone().ok());
        tokio::spawn(monitor(waiter, task_fd, dir.clone(), cgroup.clone(), tx));
        let exe = rt.inner.exe.clone();
        RunningTask { inner: Arc::new(TaskInner { id: id.to_string(), dir, pid, pidfd, cgroup, exe, status }) }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The host pid of the task's PID 1 (the command itself); `nsenter -t PID -n` enters its netns.
    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    /// The task's directory: logs, state and the files behind /etc/resolv.conf and /etc/hosts.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log file (see [`super::read_logs`]).
    pub fn logs(&self) -> PathBuf {
        self.inner.dir.join(state::LOG)
    }

    /// The exit status if the task has ended and been cleaned up.
    pub fn status(&self) -> Option<ExitStatus> {
        self.inner.status.borrow().clone()
    }

    /// Waits for the task to end; by then its processes and cgroups are gone.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.inner.status.clone();
        let status = rx.wait_for(Option::is_some).await.map(|s| s.clone());
        match status {
            Ok(Some(status)) => status,
            _ => ExitStatus {
                code: 255,
                signal: None,
                oom_killed: false,
                error: Some("the runtime that watched this task has shut down".into()),
            },
        }
    }

    /// Sends `signal` to PID 1 (through a pidfd, so never to a reused pid).
    pub fn signal(&self, signal: i32) -> Result<()> {
        let fd = self.inner.pidfd.as_ref().ok_or(RuntimeError::NotRunning)?;
        sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => RuntimeError::NotRunning,
            _ => io_err("cannot signal task")(e),
        })
    }

    /// SIGTERM, then SIGKILL to everything in the task after `grace`; returns once it is gone.
    pub async fn stop(&self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.status() {
            return status;
        }
        let _ = self.signal(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        let _ = self.signal(libc::SIGKILL);
        self.inner.cgroup.kill();
        self.wait().await
    }

    /// The memory limit in force, in bytes, read back from the cgroup.
    pub fn memory_limit(&self) -> Option<u64> {
        self.inner.cgroup.memory_limit()
    }

    /// The CPU limit in force as `(quota, period)` in microseconds.
    pub fn cpu_limit(&self) -> Option<(i64, i64)> {
        self.inner.cgroup.cpu_limit()
    }

    /// The task's cgroup directories (all removed once it has ended).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.inner.cgroup.dirs()
    }

    /// Rewrites the task's /etc/resolv.conf in place (a bind mount follows the inode, not the name).
    pub fn set_resolv_conf(&self, contents: &str) -> io::Result<()> {
        fs::write(self.inner.dir.join(state::RESOLV_CONF), contents)
    }

    /// Rewrites the task's /etc/hosts in place.
    pub fn set_hosts(&self, contents: &str) -> io::Result<()> {
        fs::write(self.inner.dir.join(state::HOSTS), contents)
    }
}

async fn monitor(
    waiter: Waiter,
    task_fd: Option<OwnedFd>,
    dir: PathBuf,
    cgroup: TaskCgroup,
    tx: watch::Sender<Option<ExitStatus>>,
) {
    match waiter {
        Waiter::Child(mut child) => {
            let _ = child.wait().await;
        }
        Waiter::Pidfd(fd) => wait_exit(fd).await,
    }
    // The shim outlives PID 1; if someone killed the shim, PID 1 may still run.
    if let Some(fd) = task_fd {
        wait_exit(fd).await;
    }
    let record: Option<ExitRecord> = read_json(&dir.join(state::EXIT)).ok();
    let oom_killed = cgroup.oom_killed();
    if let Err(e) = cgroup.destroy().await {
        tracing::warn!(dir = %dir.display(), "cannot remove task cgroup: {e}");
    }
    let status = match record {
        Some(r) => ExitStatus { code: r.code, signal: r.signal, oom_killed, error: None },
        None => ExitStatus {
            code: 255,
            signal: None,
            oom_killed,
            error: Some("exit status unknown: the task shim ended without recording it".into()),
        },
    };
    let _ = tx.send(Some(status));
}

/// Waits until the process behind a pidfd has exited.
async fn wait_exit(fd: OwnedFd) {
    let fd = match sys::async_pidfd(fd) {
        Ok(afd) => {
            let _ = afd.readable().await;
            return;
        }
        Err((fd, e)) => {
            tracing::warn!("cannot register a pidfd with the reactor, polling it: {e}");
            fd
        }
    };
    loop {
        let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).map_or(true, |n| n > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
