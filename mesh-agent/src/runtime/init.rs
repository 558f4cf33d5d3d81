//! The process side of a task: `shoal __task-init`, which the runtime starts from the agent's own
//! binary, so that forks and namespace changes happen in a fresh single-threaded process and never
//! in the multi-threaded agent.
//!
//! `run <task dir>` is the task's shim. It computes everything the task needs (command path,
//! user, environment) while it can still report errors, unshares a PID namespace and forks the
//! task's PID 1. PID 1 joins the task's cgroups, gets its own network (or joins the given one),
//! mount, UTS and IPC namespaces, mounts a fresh /proc and the task's /etc/resolv.conf and
//! /etc/hosts, raises `lo`, sets its hostname and identity and execs the command. A close-on-exec
//! pipe tells the shim whether that exec happened; the shim then prints `started <pid>` (or
//! `error <message>`) to the agent, copies the task's stdout and stderr into `task.log`, and
//! records the exit status in `exit.json` when PID 1 ends. The shim, not the agent, owns the
//! pipes, so a task and its logs outlive an agent restart.
//!
//! `exec <task dir> <argv>…` runs a command inside a running task; see [`super::health`].

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdout, execve, fork, pipe2, sethostname, setsid, ForkResult, Pid};
use nix::unistd::{getgrouplist, setgid, setgroups, setuid, Gid, Group, Uid, User};

use super::logs::{LogWriter, Stream};
use super::state::{self, ExitRecord, InitSpec, ShimState};
use super::sys;

/// Entry point of the hidden `shoal __task-init` subcommand.
pub fn task_init_main() -> ! {
    // SAFETY: SIG_IGN installs no handler code; the shim must survive the agent closing its pipe.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let args: Vec<String> = std::env::args().skip(2).collect();
    let code = match args.first().map(String::as_str) {
        Some("run") if args.len() == 2 => run_shim(Path::new(&args[1])),
        Some("exec") if args.len() >= 3 => super::health::exec_main(Path::new(&args[1]), &args[2..]),
        _ => {
            eprintln!("usage: shoal __task-init run <task dir> | exec <task dir> <timeout ms> <command>...");
            2
        }
    };
    std::process::exit(code)
}

/// The user a task runs as.
pub(super) struct Identity {
    uid: Uid,
    gid: Gid,
    /// Supplementary groups; `None` keeps the shim's (the default root user).
    groups: Option<Vec<Gid>>,
    pub(super) home: String,
}

/// A program ready for execve.
pub(super) struct Program {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

/// Everything PID 1 needs, computed before the fork so the child mostly makes system calls.
struct Plan {
    program: Program,
    identity: Identity,
    hostname: String,
    workdir: String,
    procs: Vec<PathBuf>,
    netns: Option<File>,
    resolv_conf: PathBuf,
    hosts: PathBuf,
    private_tmp: bool,
}

fn run_shim(dir: &Path) -> i32 {
    // Our own session: a terminal's Ctrl-C aimed at the agent must not reach its tasks.
    let _ = setsid();
    match start(dir) {
        Ok((child, out, err, log)) => supervise(dir, child, out, err, log),
        Err(message) => {
            report(&format!("error {}", message.trim().replace('\n', " ")));
            1
        }
    }
}

fn report(line: &str) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Forks the task's PID 1 and waits until it has exec'd the command (or failed to).
fn start(dir: &Path) -> Result<(Pid, OwnedFd, OwnedFd, File), String> {
    let spec: InitSpec = state::read_json(&dir.join(state::INIT)).map_err(|e| format!("cannot read task spec: {e}"))?;
    let plan = plan(dir, &spec)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(state::LOG))
        .map_err(|e| format!("cannot open task log: {e}"))?;
    let pipe = || pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let ((out_r, out_w), (err_r, err_w), (fail_r, fail_w)) = (pipe()?, pipe()?, pipe()?);
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("cannot create PID namespace: {e}"))?;
    // SAFETY: `shoal __task-init` is single-threaded (nothing before this point starts a thread),
    // so the child may allocate and run ordinary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop((out_r, err_r, fail_r));
            let Err(message) = become_task(&plan, out_w, err_w);
            let _ = File::from(fail_w).write_all(message.as_bytes());
            // SAFETY: _exit ends this forked copy without running the shim's exit handlers.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop((out_w, err_w, fail_w));
            let mut message = String::new();
            let _ = File::from(fail_r).read_to_string(&mut message);
            if !message.is_empty() {
                let _ = waitpid(child, None);
                return Err(message);
            }
            Ok((child, out_r, err_r, log))
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn plan(dir: &Path, spec: &InitSpec) -> Result<Plan, String> {
    let launch = &spec.launch;
    let identity = resolve_user(&launch.user)?;
    let env = state::environment(launch, &identity.home);
    let exe = match &spec.exe {
        Some(exe) => exe.clone(),
        None => resolve_exe(spec.argv.first().map_or("", String::as_str), &env)?,
    };
    let netns = match &launch.netns {
        Some(p) => Some(File::open(p).map_err(|e| format!("cannot open network namespace {}: {e}", p.display()))?),
        None => None,
    };
    Ok(Plan {
        program: program(&exe, &spec.argv, &env)?,
        identity,
        hostname: state::hostname(launch),
        workdir: if launch.dir.is_empty() { "/".to_string() } else { launch.dir.clone() },
        procs: spec.cgroup.procs_files(),
        netns,
        resolv_conf: dir.join(state::RESOLV_CONF),
        hosts: dir.join(state::HOSTS),
        private_tmp: spec.private_tmp,
    })
}

/// Runs in the forked PID 1; returns only on failure, with the message for the agent.
fn become_task(plan: &Plan, out: OwnedFd, err: OwnedFd) -> Result<Infallible, String> {
    dup2_stdout(&out).and_then(|()| dup2_stderr(&err)).map_err(|e| format!("cannot redirect output: {e}"))?;
    drop((out, err));
    for procs in &plan.procs {
        fs::write(procs, "0").map_err(|e| format!("cannot join cgroup {}: {e}", procs.display()))?;
    }
    match &plan.netns {
        Some(ns) => setns(ns, CloneFlags::CLONE_NEWNET),
        None => unshare(CloneFlags::CLONE_NEWNET),
    }
    .map_err(|e| format!("cannot enter network namespace: {e}"))?;
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
        .map_err(|e| format!("cannot create namespaces: {e}"))?;
    // Nothing mounted from here on may leak back to the host.
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("cannot make mounts private: {e}"))?;
    for (file, target) in [(&plan.resolv_conf, "/etc/resolv.conf"), (&plan.hosts, "/etc/hosts")] {
        // A host without the file gets none in its tasks: we must not create files in its /etc.
        if Path::new(target).exists() {
            mount(Some(file.as_path()), target, none, MsFlags::MS_BIND, none)
                .map_err(|e| format!("cannot bind-mount {target}: {e}"))?;
        }
    }
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), quiet, none).map_err(|e| format!("cannot mount /proc: {e}"))?;
    // sysfs shows the network devices of the namespace that mounts it: the task's.
    mount(Some("sysfs"), "/sys", Some("sysfs"), quiet | MsFlags::MS_RDONLY, none)
        .map_err(|e| format!("cannot mount /sys: {e}"))?;
    if plan.private_tmp {
        mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
            .map_err(|e| format!("cannot mount /tmp: {e}"))?;
    }
    sethostname(&plan.hostname).map_err(|e| format!("cannot set hostname {:?}: {e}", plan.hostname))?;
    sys::loopback_up().map_err(|e| format!("cannot bring lo up: {e}"))?;
    exec_as(&plan.identity, &plan.workdir, &plan.program)
}

/// Takes on `identity`, changes to `workdir`, restores default signal handling and execs.
pub(super) fn exec_as(identity: &Identity, workdir: &str, program: &Program) -> Result<Infallible, String> {
    if let Some(groups) = &identity.groups {
        setgroups(groups).map_err(|e| format!("cannot set supplementary groups: {e}"))?;
    }
    setgid(identity.gid).map_err(|e| format!("cannot set gid {}: {e}", identity.gid))?;
    setuid(identity.uid).map_err(|e| format!("cannot set uid {}: {e}", identity.uid))?;
    nix::unistd::chdir(workdir)
        .map_err(|e| format!("cannot change to working directory {workdir:?}: {}", errno_text(e)))?;
    // Ignored signals stay ignored across execve, and Rust ignores SIGPIPE: undo that.
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let e = execve(&program.exe, &program.argv, &program.env).unwrap_err();
    Err(format!("exec: {:?}: {}", program.argv[0], errno_text(e)))
}

/// `uid[:gid]` or `name[:group]`, as `--user` takes them; empty means root.
pub(super) fn resolve_user(user: &str) -> Result<Identity, String> {
    if user.is_empty() {
        return Ok(Identity { uid: Uid::from_raw(0), gid: Gid::from_raw(0), groups: None, home: "/root".into() });
    }
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let entry = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => Some(
            User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("unable to find user {name}: no matching entries in passwd file"))?,
        ),
    };
    let uid = entry.as_ref().map_or_else(|| Uid::from_raw(name.parse().unwrap_or(0)), |u| u.uid);
    let gid = match group {
        None => entry.as_ref().map_or(Gid::from_raw(0), |u| u.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) => {
                Group::from_name(g)
                    .ok()
                    .flatten()
                    .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?
                    .gid
            }
        },
    };
    // Like Docker: a passwd user also gets the groups /etc/group lists it in.
    let mut groups = match &entry {
        Some(u) => CString::new(u.name.as_str()).ok().and_then(|n| getgrouplist(&n, gid).ok()).unwrap_or_default(),
        None => Vec::new(),
    };
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    let home = entry.map_or_else(|| "/".to_string(), |u| u.dir.to_string_lossy().into_owned());
    Ok(Identity { uid, gid, groups: Some(groups), home })
}

/// Finds `name` the way the task's shell would: as a path if it has a slash, else in PATH.
pub(super) fn resolve_exe(name: &str, env: &[String]) -> Result<String, String> {
    if name.contains('/') {
        return match fs::metadata(name) {
            Ok(_) => Ok(name.to_string()),
            Err(e) => Err(format!("exec: {name:?}: stat {name}: {}", io_text(&e))),
        };
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(state::DEFAULT_PATH);
    let found = path
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false));
    match (name.is_empty(), found) {
        (false, Some(p)) => Ok(p.to_string_lossy().into_owned()),
        _ => Err(format!("exec: {name:?}: executable file not found in $PATH")),
    }
}

pub(super) fn program(exe: &str, argv: &[String], env: &[String]) -> Result<Program, String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("argument {s:?} contains a NUL byte"));
    Ok(Program {
        exe: c(exe)?,
        argv: argv.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
        env: env.iter().map(|e| c(e)).collect::<Result<_, _>>()?,
    })
}

/// Copies the task's output into its log, then reaps PID 1 and records how it ended.
fn supervise(dir: &Path, child: Pid, out: OwnedFd, err: OwnedFd, log: File) -> i32 {
    let pid = child.as_raw();
    let me = std::process::id() as i32;
    let shim_state = ShimState {
        pid,
        start_time: sys::start_time(pid).unwrap_or(0),
        shim_pid: me,
        shim_start_time: sys::start_time(me).unwrap_or(0),
    };
    if let Err(e) = state::write_json(&dir.join(state::STATE), &shim_state) {
        eprintln!("cannot record task state: {e}");
    }
    report(&format!("started {pid}"));
    // Nobody reads our stdout from now on; the agent may even be gone.
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        let _ = dup2_stdout(&null);
    }
    pump(out, err, LogWriter::new(log));
    let status = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let record = match status {
        Ok(WaitStatus::Exited(_, code)) => ExitRecord { code, signal: None },
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitRecord { code: 128 + sig as i32, signal: Some(sig as i32) },
        other => {
            eprintln!("unexpected wait status for task PID 1: {other:?}");
            ExitRecord { code: 255, signal: None }
        }
    };
    if let Err(e) = state::write_json(&dir.join(state::EXIT), &record) {
        eprintln!("cannot record exit status: {e}");
    }
    0
}

/// Reads both pipes until every writer (the whole task) has closed them.
fn pump(out: OwnedFd, err: OwnedFd, mut log: LogWriter) {
    let mut open = vec![(Stream::Stdout, out), (Stream::Stderr, err)];
    let mut buf = vec![0u8; 64 * 1024];
    while !open.is_empty() {
        let mut fds: Vec<PollFd> = open.iter().map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("poll: {e}");
                break;
            }
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, (stream, fd)) in open.iter().enumerate().filter(|(i, _)| ready[*i]) {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    // A full disk must not block the task: keep draining even if writes fail.
                    let _ = log.write(*stream, &buf[..n]);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            open.remove(i);
        }
    }
    let _ = log.finish();
}

/// Go-style error text (`no such file or directory`), as Docker's messages show it.
fn errno_text(e: Errno) -> String {
    let text = e.desc();
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

fn io_text(e: &std::io::Error) -> String {
    e.raw_os_error().map(|n| errno_text(Errno::from_raw(n))).unwrap_or_else(|| e.to_string())
}
