//! What a task's directory holds, shared by the agent and the task shim, and the pure rules that
//! turn a [`TaskLaunch`] into a command line, an environment and a hostname.
//!
//! `<root>/<task id>/` holds `init.json` (written by the agent: what to run), `state.json` (by the
//! shim once the task runs: its pids), `exit.json` (by the shim when it ends), `task.log`,
//! `shim.log` (the shim's own stderr) and the files bind-mounted over /etc/resolv.conf and /etc/hosts.

use std::fs;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::cgroup::TaskCgroup;
use super::{RuntimeError, TaskLaunch};

pub(crate) const INIT: &str = "init.json";
pub(crate) const STATE: &str = "state.json";
pub(crate) const EXIT: &str = "exit.json";
pub(crate) const LOG: &str = "task.log";
pub(crate) const SHIM_LOG: &str = "shim.log";
pub(crate) const RESOLV_CONF: &str = "resolv.conf";
pub(crate) const HOSTS: &str = "hosts";

/// Docker's default PATH for containers whose image sets none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `sethostname(2)` refuses longer names.
const HOST_NAME_MAX: usize = 64;

/// What the agent hands the shim (`init.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct InitSpec {
    pub(crate) launch: TaskLaunch,
    /// The program to execve; `None` means look `argv[0]` up in the task's PATH.
    pub(crate) exe: Option<String>,
    pub(crate) argv: Vec<String>,
    /// Built-in images get a private tmpfs on /tmp; host commands share the host's /tmp.
    pub(crate) private_tmp: bool,
    pub(crate) cgroup: TaskCgroup,
}

/// The task's processes, as the shim records them (`state.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShimState {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
    pub(crate) shim_pid: i32,
    pub(crate) shim_start_time: u64,
}

/// How the task's PID 1 ended (`exit.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    /// The exit code, or 128 + the signal number, as Docker reports it.
    pub(crate) code: i32,
    pub(crate) signal: Option<i32>,
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
    serde_json::from_slice(&fs::read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes via a temporary file and rename, so a reader never sees half a file.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(value).map_err(io::Error::other)?)?;
    fs::rename(tmp, path)
}

/// Whether `image` names the built-in echo server: `shoal/echo`, with any tag or digest.
pub fn is_echo_image(image: &str) -> bool {
    let name = image.strip_prefix("docker.io/").unwrap_or(image);
    let name = name.split('@').next().unwrap_or(name);
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    name == "shoal/echo"
}

/// The program and argv of a task, with Docker's rules: `command` replaces the image's entrypoint
/// and `args` follow it. The echo image's entrypoint is this binary's hidden `__echo`; every other
/// image has neither entrypoint nor default command, so it needs a command.
pub(crate) fn task_argv(launch: &TaskLaunch) -> Result<(Option<String>, Vec<String>), RuntimeError> {
    if launch.command.is_empty() && is_echo_image(&launch.image) {
        // /proc/self/exe in the task's PID 1 is still this binary: the shim forks, then execs.
        let argv = ["shoal-echo", "__echo"].iter().map(|s| s.to_string()).chain(launch.args.iter().cloned());
        return Ok((Some("/proc/self/exe".to_string()), argv.collect()));
    }
    let argv: Vec<String> = launch.command.iter().chain(&launch.args).cloned().collect();
    if argv.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    Ok((None, argv))
}

/// The task's hostname: `--hostname`, else the task name, cut to what the kernel accepts.
pub(crate) fn hostname(launch: &TaskLaunch) -> String {
    let name = if launch.hostname.is_empty() { &launch.task_name } else { &launch.hostname };
    let mut end = name.len().min(HOST_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The task's environment: Docker's defaults (PATH, HOSTNAME, HOME), Shoal's task facts, then
/// `--env` entries, which win. Entries without `=` are ignored (the CLI resolves `-e NAME`).
pub(crate) fn environment(launch: &TaskLaunch, home: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname(launch)),
        ("HOME".into(), home.into()),
        ("SHOAL_TASK_ID".into(), launch.task_id.clone()),
        ("SHOAL_TASK_NAME".into(), launch.task_name.clone()),
        ("SHOAL_NODE_NAME".into(), launch.node_name.clone()),
    ];
    for entry in &launch.env {
        let Some((key, value)) = entry.split_once('=') else { continue };
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `/etc/hosts` for a task whose launch brings none: loopback names and its own hostname.
pub(crate) fn default_hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(image: &str, command: &[&str], args: &[&str]) -> TaskLaunch {
        TaskLaunch {
            task_id: "t1".into(),
            task_name: "web.1.t1".into(),
            node_name: "node-1".into(),
            image: image.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..TaskLaunch::default()
        }
    }

    #[test]
    fn argv_follows_docker_cmd_rules() {
        type Want<'a> = Result<(Option<&'a str>, Vec<&'a str>), ()>;
        let cases: &[(&str, &[&str], &[&str], Want)] = &[
            ("shoal/echo", &[], &[], Ok((Some("/proc/self/exe"), vec!["shoal-echo", "__echo"]))),
            ("shoal/echo:1.2", &[], &["--http"], Ok((Some("/proc/self/exe"), vec!["shoal-echo", "__echo", "--http"]))),
            ("shoal/echo", &["sleep"], &["5"], Ok((None, vec!["sleep", "5"]))),
            ("busybox", &["sh", "-c"], &["echo hi"], Ok((None, vec!["sh", "-c", "echo hi"]))),
            ("busybox", &[], &["sleep", "1"], Ok((None, vec!["sleep", "1"]))),
            ("busybox", &[], &[], Err(())),
            ("shoal/echoes", &[], &[], Err(())),
        ];
        for (image, command, args, want) in cases {
            let got = task_argv(&launch(image, command, args));
            let got = got.as_ref().map(|(e, a)| (e.as_deref(), a.iter().map(String::as_str).collect::<Vec<_>>()));
            assert_eq!(got.map_err(|_| ()), want.clone(), "{image} {command:?} {args:?}");
        }
        assert_eq!(task_argv(&launch("busybox", &[], &[])).unwrap_err().to_string(), "no command specified");
    }

    #[test]
    fn echo_image_names() {
        for yes in ["shoal/echo", "shoal/echo:latest", "docker.io/shoal/echo:v2", "shoal/echo@sha256:abc"] {
            assert!(is_echo_image(yes), "{yes}");
        }
        for no in ["shoal/echo2", "echo", "registry:5000/shoal/echo", "nginx:latest"] {
            assert!(!is_echo_image(no), "{no}");
        }
    }

    #[test]
    fn environment_defaults_then_overrides() {
        let mut l = launch("busybox", &["true"], &[]);
        l.env = vec!["PATH=/bin".into(), "A=1=2".into(), "NOEQ".into(), "B=".into()];
        let env = environment(&l, "/root");
        assert_eq!(
            env,
            [
                "PATH=/bin",
                "HOSTNAME=web.1.t1",
                "HOME=/root",
                "SHOAL_TASK_ID=t1",
                "SHOAL_TASK_NAME=web.1.t1",
                "SHOAL_NODE_NAME=node-1",
                "A=1=2",
                "B="
            ]
        );
    }

    #[test]
    fn hostname_is_cut_to_64_bytes() {
        let mut l = launch("busybox", &["true"], &[]);
        l.task_name = "s".repeat(80);
        assert_eq!(hostname(&l).len(), 64);
        l.hostname = "custom".into();
        assert_eq!(hostname(&l), "custom");
    }
}
