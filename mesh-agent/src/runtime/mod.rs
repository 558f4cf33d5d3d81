//! Tasks as process trees in their own namespaces: the node side of a Shoal task.
//!
//! ```text
//! agent ──spawn──▶ shim: `shoal __task-init run <task dir>`   host namespaces, own session;
//!                    │   copies the task's stdout/stderr into task.log, records exit.json
//!                    └─fork─▶ task PID 1 ──execve──▶ the command
//!                             new PID, network (or a given one), mount, UTS, IPC namespaces;
//!                             the task's cgroup; private /proc, /etc/resolv.conf, /etc/hosts
//! ```
//!
//! There are no images yet: `shoal/echo` is the built-in [`crate::echo`] server (with a private
//! tmpfs on /tmp) and any other image name runs its command from the host filesystem, with
//! Docker's rules for `Command` and `Args`. Everything else a task sees of the filesystem is the
//! host's, except /proc, /sys, /etc/resolv.conf and /etc/hosts.
//!
//! **The reported pid.** [`RunningTask::pid`] is the host pid of the task's PID 1, which after
//! execve *is* the command — what Docker reports as `State.Pid` and swarm as
//! `ContainerStatus.PID`. `nsenter -t PID -n` (or `-m -u -p`) enters the task. As in Docker
//! without `--init`, PID 1 receives only signals it handles: a bare `sleep` ignores SIGTERM, so
//! [`RunningTask::stop`] falls back to SIGKILL after the grace period. When PID 1 dies the
//! kernel kills the rest of its PID namespace, and the namespaces and mounts go with it; the
//! runtime then removes the task's cgroups. Only the task directory (logs) stays until
//! [`Runtime::remove`].

mod cgroup;
mod health;
mod init;
pub mod logs;
mod state;
mod sys;
mod task;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use cgroup::Cgroups;
use state::{read_json, ExitRecord, InitSpec, ShimState};
use task::Waiter;

pub use health::{health_argv, ExecOutput};
pub use init::task_init_main;
pub use logs::{read_logs, read_logs_from, LogLine, Stream};
pub use state::is_echo_image;
pub use task::RunningTask;

/// How long a shim may take to report that its task started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to run one task; serialisable because it travels to the shim as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLaunch {
    pub task_id: String,
    /// `<service>.<slot>.<task id>`; also the default hostname.
    pub task_name: String,
    pub node_name: String,
    pub image: String,
    /// Replaces the image's entrypoint (Docker's `Command`).
    pub command: Vec<String>,
    /// Appended to the command (Docker's `Args`).
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory; empty means `/`.
    pub dir: String,
    /// `uid[:gid]` or `name[:group]`; empty means root.
    pub user: String,
    /// Empty means the task name.
    pub hostname: String,
    /// Bytes; 0 means no limit.
    pub memory_limit: i64,
    /// 10⁻⁹ CPUs; 0 means no limit.
    pub nano_cpus: i64,
    /// Contents of the task's /etc/resolv.conf; empty copies the host's.
    pub resolv_conf: String,
    /// Contents of the task's /etc/hosts; empty gives localhost entries and the hostname.
    pub hosts: String,
    /// A network namespace to join; `None` creates a new one with only `lo` (up).
    pub netns: Option<PathBuf>,
    pub stop_grace: Duration,
}

/// How a task's PID 1 ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal number when a signal killed it (Docker's `ExitCode`).
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Set when the status could not be learned (the shim died without recording it).
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no command specified")]
    NoCommand,
    #[error("invalid task id {0:?}")]
    BadTaskId(String),
    #[error("task {0} is already running")]
    AlreadyRunning(String),
    #[error("task {0} is still running")]
    StillRunning(String),
    #[error("task is not running")]
    NotRunning,
    /// The shim's or the task's own message, e.g. `exec: "x": executable file not found in $PATH`.
    #[error("starting container failed: {0}")]
    Start(String),
    #[error("cannot apply the {0} limit: this host has no {0} cgroup controller available")]
    NoController(&'static str),
    #[error("invalid health check test {0:?}")]
    BadHealthTest(Vec<String>),
    #[error("Health check exceeded timeout ({0:?})")]
    Timeout(Duration),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

/// Starts, finds and removes the tasks of one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

#[derive(Debug)]
struct RuntimeInner {
    root: PathBuf,
    exe: PathBuf,
    cgroups: Cgroups,
}

impl Runtime {
    /// A runtime keeping task directories under `root` (e.g. `<data-root>/tasks`), which starts
    /// shims from this very binary (`/proc/self/exe __task-init`).
    pub fn new(root: &Path) -> Result<Runtime> {
        Runtime::with_exe(root, Path::new("/proc/self/exe"))
    }

    /// Like [`Runtime::new`], with the binary that answers `__task-init` and `__echo` given.
    pub fn with_exe(root: &Path, exe: &Path) -> Result<Runtime> {
        fs::create_dir_all(root).map_err(io_err(format!("cannot create {}", root.display())))?;
        let cgroups = Cgroups::setup(root).map_err(io_err("cannot set up cgroups"))?;
        Ok(Runtime { inner: Arc::new(RuntimeInner { root: root.to_path_buf(), exe: exe.to_path_buf(), cgroups }) })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of cgroup2 group `path` (a path in the hierarchy, as /proc/<pid>/cgroup
    /// shows it: `/` is the root) in this mount namespace.
    pub fn cgroup2_dir(&self, path: &Path) -> PathBuf {
        self.inner.cgroups.v2_mount().join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The cgroup2 group all tasks of this runtime live in (one per node): where the node's
    /// socket-level service VIP programs attach.
    pub fn task_cgroup_parent(&self) -> &Path {
        self.inner.cgroups.v2_parent()
    }

    fn task_dir(&self, task_id: &str) -> Result<PathBuf> {
        let ok = !task_id.is_empty()
            && !task_id.starts_with(['.', '-'])
            && !task_id.starts_with("cgroup")
            && task_id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(RuntimeError::BadTaskId(task_id.to_string()));
        }
        Ok(self.inner.root.join(task_id))
    }

    /// Starts a task and returns once its command has been exec'd.
    pub async fn start(&self, launch: &TaskLaunch) -> Result<RunningTask> {
        let (exe, argv) = state::task_argv(launch)?;
        let dir = self.task_dir(&launch.task_id)?;
        if let Ok(st) = read_json::<ShimState>(&dir.join(state::STATE)) {
            if sys::is_alive(st.pid, st.start_time) {
                return Err(RuntimeError::AlreadyRunning(launch.task_id.clone()));
            }
        }
        // Leftovers of an earlier attempt under the same id go.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_err("cannot create task directory"))?;
        let resolv = match launch.resolv_conf.as_str() {
            "" => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            s => s.to_string(),
        };
        let hosts = match launch.hosts.as_str() {
            "" => state::default_hosts(&state::hostname(launch)),
            s => s.to_string(),
        };
        fs::write(dir.join(state::RESOLV_CONF), resolv).map_err(io_err("cannot write resolv.conf"))?;
        fs::write(dir.join(state::HOSTS), hosts).map_err(io_err("cannot write hosts"))?;
        let cgroup = self.inner.cgroups.create(&launch.task_id, launch.memory_limit, launch.nano_cpus)?;
        let private_tmp = exe.is_some();
        let spec = InitSpec { launch: launch.clone(), exe, argv, private_tmp, cgroup: cgroup.clone() };
        match self.spawn_shim(&dir, &spec).await {
            Ok((child, pid)) => Ok(RunningTask::track(self, &launch.task_id, dir, pid, cgroup, Waiter::Child(child))),
            Err(e) => {
                let _ = cgroup.destroy().await;
                Err(e)
            }
        }
    }

    async fn spawn_shim(&self, dir: &Path, spec: &InitSpec) -> Result<(tokio::process::Child, i32)> {
        state::write_json(&dir.join(state::INIT), spec).map_err(io_err("cannot write task spec"))?;
        let shim_log = File::create(dir.join(state::SHIM_LOG)).map_err(io_err("cannot create shim log"))?;
        let mut child = tokio::process::Command::new(&self.inner.exe)
            .args(["__task-init", "run"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(io_err(format!("cannot run {} __task-init", self.inner.exe.display())))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let line = line.trim_end();
        if let Some(pid) = line.strip_prefix("started ").and_then(|p| p.parse().ok()) {
            return Ok((child, pid));
        }
        if read.is_err() {
            let _ = child.start_kill();
        }
        let _ = child.wait().await;
        Err(RuntimeError::Start(match line.strip_prefix("error ") {
            Some(message) => message.to_string(),
            None => {
                let log = fs::read_to_string(dir.join(state::SHIM_LOG)).unwrap_or_default();
                format!("task shim failed: {}", log.trim())
            }
        }))
    }

    /// After an agent restart: the task `task_id` if it still runs. A task that ended meanwhile
    /// gets its cgroups removed and yields `None` (its status: [`Runtime::exit_status`]).
    pub async fn adopt(&self, task_id: &str) -> Option<RunningTask> {
        let dir = self.task_dir(task_id).ok()?;
        let spec: InitSpec = read_json(&dir.join(state::INIT)).ok()?;
        let st: ShimState = read_json(&dir.join(state::STATE)).ok()?;
        let pidfd = sys::pidfd_open(st.pid).ok().filter(|_| sys::is_alive(st.pid, st.start_time));
        let Some(pidfd) = pidfd else {
            let _ = spec.cgroup.destroy().await;
            return None;
        };
        let shim = sys::pidfd_open(st.shim_pid).ok().filter(|_| sys::is_alive(st.shim_pid, st.shim_start_time));
        let waiter = Waiter::Pidfd(shim.unwrap_or(pidfd));
        Some(RunningTask::track(self, task_id, dir, st.pid, spec.cgroup, waiter))
    }

    /// How a task that is no longer tracked ended, from its directory.
    pub fn exit_status(&self, task_id: &str) -> Option<ExitStatus> {
        let record: ExitRecord = read_json(&self.task_dir(task_id).ok()?.join(state::EXIT)).ok()?;
        Some(ExitStatus { code: record.code, signal: record.signal, oom_killed: false, error: None })
    }

    /// Ids of the tasks that have a directory (running or kept for their logs).
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.inner.root) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(state::INIT).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    /// Stops every task that still runs (the daemon's shutdown, a test's cleanup).
    pub async fn stop_all(&self, grace: Duration) {
        let mut stopping = tokio::task::JoinSet::new();
        for id in self.list() {
            if let Some(task) = self.adopt(&id).await {
                stopping.spawn(async move { task.stop(grace).await });
            }
        }
        while stopping.join_next().await.is_some() {}
    }

    /// Deletes a stopped task's directory and logs.
    pub async fn remove(&self, task_id: &str) -> Result<()> {
        let dir = self.task_dir(task_id)?;
        if let Ok(st) = read_json::<ShimState>(&dir.join(state::STATE)) {
            if sys::is_alive(st.pid, st.start_time) {
                return Err(RuntimeError::StillRunning(task_id.to_string()));
            }
        }
        if let Ok(spec) = read_json::<InitSpec>(&dir.join(state::INIT)) {
            let _ = spec.cgroup.destroy().await;
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove task directory")(e)),
            _ => Ok(()),
        }
    }
}
