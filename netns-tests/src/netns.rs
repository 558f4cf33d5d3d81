//! Named network namespaces (`ip netns`): creating, emptying, deleting, sweeping, and running
//! code inside one.
//!
//! Lab namespaces are named `shl-<pid>-<counter>-<role>`; the pid lets a later run tell a
//! crashed run's leftovers (pid gone) from a parallel run's live lab (pid alive). Persistent labs
//! made by `cargo xtask demo|lab` use a non-numeric second field (`shl-demo-…`) and are never
//! swept; they are removed by [`delete_with_prefix`].

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cmd::sh;

/// The prefix every lab namespace and lab directory starts with.
pub const PREFIX: &str = "shl-";

/// Creates the named namespace.
pub fn create(name: &str) -> anyhow::Result<()> {
    sh("ip", &["netns", "add", name]).map(drop)
}

/// Names of all named namespaces (`ip netns list`).
pub fn list() -> anyhow::Result<Vec<String>> {
    let out = sh("ip", &["netns", "list"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// Pids of the processes inside the namespace (`ip netns pids`).
pub fn pids(name: &str) -> Vec<i32> {
    sh("ip", &["netns", "pids", name])
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILLs every process in the namespace (daemons, task shims; not the tasks themselves, which
/// have network namespaces of their own: see [`crate::tasks::reap`]).
pub fn kill_all(name: &str) {
    for pid in pids(name) {
        // SAFETY: kill(2) has no memory effects; the pid comes from `ip netns pids` for a
        // namespace this harness created, so it is a process the lab started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// SIGKILLs every process in the namespace, then deletes it. Deleting a namespace that still has
/// processes would only remove its name and keep the namespace (and its veths) alive.
pub fn kill_all_and_delete(name: &str) -> anyhow::Result<()> {
    kill_all(name);
    sh("ip", &["netns", "del", name]).map(drop)
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid a `shl-<pid>-<counter>…` name was made by, if it has that shape.
pub fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some(pid)
}

/// Removes namespaces and lab directories left by runs whose process is gone, with the task
/// processes, cgroups and mounts of their nodes. Errors are ignored: a parallel run may be
/// sweeping the same leftovers.
pub fn sweep_stale(lab_dir_parent: &Path) {
    let me = std::process::id() as i32;
    let stale = |name: &str| owner_pid(name).is_some_and(|pid| pid != me && !pid_alive(pid));
    for name in list().unwrap_or_default() {
        if stale(&name) {
            eprintln!("netns-tests: sweeping stale namespace {name}");
            let _ = kill_all_and_delete(&name);
        }
    }
    if let Ok(entries) = std::fs::read_dir(lab_dir_parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if stale(&name) {
                let _ = crate::tasks::reap_lab_dir(&entry.path());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    // The nodes' host cgroups (`/shoal-lab/<node namespace>`, see `Node::host_cgroup`).
    let groups = crate::tasks::mounted_cgroup2().map(|m| m.join("shoal-lab"));
    for entry in groups.and_then(|g| std::fs::read_dir(g).ok()).into_iter().flatten().flatten() {
        if entry.path().is_dir() && stale(&entry.file_name().to_string_lossy()) {
            crate::tasks::kill_and_remove_cgroup(&entry.path());
        }
    }
}

/// Deletes every namespace whose name starts with `prefix` (for persistent labs).
pub fn delete_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    assert!(prefix.starts_with(PREFIX), "refusing to delete namespaces outside {PREFIX}*");
    let mut deleted = Vec::new();
    // Node namespaces first, the lab (bridge) namespace last, so veths go away with their node.
    let mut names: Vec<String> = list()?.into_iter().filter(|n| n.starts_with(prefix)).collect();
    names.sort_by_key(|n| n.ends_with("-lab"));
    for name in names {
        kill_all_and_delete(&name)?;
        deleted.push(name);
    }
    Ok(deleted)
}

/// Runs `f` on a fresh thread that has entered the named network namespace, and returns its
/// result. Only that thread moves; the caller and the rest of the process stay where they are.
/// Sockets opened inside `f` stay bound to the namespace even after the thread ends.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    in_netns_at(Path::new(&format!("/run/netns/{name}")), f)
}

/// [`in_netns`] for a namespace named by a path: `/run/netns/<name>`, or `/proc/<pid>/ns/net`
/// for the namespace of a process (a task's, say).
pub fn in_netns_at<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            // SAFETY: setns(2) on a valid namespace fd; it changes only this thread's network
            // namespace, and this thread is ours and ends when `f` returns.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns into {}: {}", path.display(), std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_lab_names() {
        assert_eq!(owner_pid("shl-123-4-lab"), Some(123));
        assert_eq!(owner_pid("shl-123-4-n2"), Some(123));
        assert_eq!(owner_pid("shl-123-4"), Some(123));
        assert_eq!(owner_pid("shl-demo-lab"), None);
        assert_eq!(owner_pid("shl-123"), None);
        assert_eq!(owner_pid("other-123-4-lab"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(std::process::id() as i32));
    }
}
