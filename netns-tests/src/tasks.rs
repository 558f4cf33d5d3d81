//! What a node's tasks leave on the machine, and removing all of it when a lab goes.
//!
//! Task processes deliberately outlive a `kill -9` of their daemon (a restarted agent adopts
//! them), and they live in namespaces of their own, so killing what runs in a node's network
//! namespace is not enough. The runtime records every task under `<data-root>/tasks/<task id>/`:
//! `state.json` names the task's PID 1 and its shim with their start times (a pid plus its start
//! time names one process for good), `init.json` names the task's cgroup directories. [`reap`]
//! kills those processes, empties and removes those cgroups, and [`unmount_under`] detaches any
//! mount left under a lab directory before it is deleted.
//!
//! The daemon mounts its cgroup hierarchies under `<data-root>/tasks/` inside its own mount
//! namespace (`ip netns exec` gives it one), so the recorded paths mean nothing in ours: they are
//! mapped onto this namespace's mount of the same hierarchy (cgroup2 has one hierarchy; a v1
//! hierarchy is named by its controllers, `cgroup-cpu-cpuacct`), mounting one under the lab
//! directory for the cleanup if this namespace has none.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::poll::try_poll_until;

/// How long the cleanup waits for killed processes to go and their cgroups to empty.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// One task directory of a node, as the runtime recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: String,
    pub dir: PathBuf,
    /// The task's PID 1 and its start time (`state.json`), once the task ran.
    pub pid: Option<(i32, u64)>,
    /// The shim's pid and start time.
    pub shim: Option<(i32, u64)>,
    /// The task's cgroup directories as the daemon named them (in its mount namespace).
    pub recorded_cgroups: Vec<PathBuf>,
    /// The same directories in this process's mount namespace, where they could be mapped.
    pub cgroups: Vec<PathBuf>,
}

impl TaskRecord {
    /// The recorded processes that still run (the same process, not a reused pid; zombies count
    /// as gone).
    pub fn live_pids(&self) -> Vec<i32> {
        [self.pid, self.shim]
            .into_iter()
            .flatten()
            .filter(|&(pid, start)| is_running(pid, start))
            .map(|(p, _)| p)
            .collect()
    }

    /// Whether the task's PID 1 still runs.
    pub fn task_running(&self) -> bool {
        self.pid.is_some_and(|(pid, start)| is_running(pid, start))
    }

    /// The task's cgroup directories that still exist (in this mount namespace).
    pub fn existing_cgroups(&self) -> Vec<PathBuf> {
        self.cgroups.iter().filter(|d| d.exists()).cloned().collect()
    }
}

/// `<data-root>/tasks`.
pub fn tasks_root(data_root: &Path) -> PathBuf {
    data_root.join("tasks")
}

/// Every task directory under `data_root` (those with an `init.json` or a `state.json`).
pub fn task_records(data_root: &Path) -> Vec<TaskRecord> {
    let root = tasks_root(data_root);
    let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
    let mut records: Vec<TaskRecord> = entries
        .flatten()
        .filter(|e| e.path().join("init.json").is_file() || e.path().join("state.json").is_file())
        .map(|e| read_record(&root, &e.file_name().to_string_lossy(), &e.path()))
        .collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn read_record(root: &Path, id: &str, dir: &Path) -> TaskRecord {
    let state = read_json(&dir.join("state.json"));
    let pair = |pid: &str, start: &str| {
        let s = state.as_ref()?;
        Some((s[pid].as_i64()? as i32, s[start].as_u64()?))
    };
    let init = read_json(&dir.join("init.json"));
    let cgroup = init.as_ref().map(|i| i["cgroup"].clone()).unwrap_or_default();
    let recorded_cgroups: Vec<PathBuf> = cgroup["v2"]
        .as_str()
        .into_iter()
        .chain(cgroup["v1"].as_array().into_iter().flatten().filter_map(|v| v.as_str()))
        .map(PathBuf::from)
        .collect();
    let cgroups = recorded_cgroups.iter().filter_map(|p| map_cgroup(root, p, None)).collect();
    TaskRecord {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        pid: pair("pid", "start_time"),
        shim: pair("shim_pid", "shim_start_time"),
        recorded_cgroups,
        cgroups,
    }
}

/// Kills every task process recorded under `data_root`, empties and removes their cgroups, and
/// returns what it could not clean (empty when all went). Call it once nothing can start tasks
/// any more (the daemon is dead), or a task started meanwhile is missed.
pub fn reap(data_root: &Path) -> Vec<String> {
    let records = task_records(data_root);
    if records.is_empty() {
        return Vec::new();
    }
    let root = tasks_root(data_root);
    let mut problems = Vec::new();
    // Mount a hierarchy ourselves only where this namespace has none (not the usual case).
    let mut own_mounts = Vec::new();
    let mut cgroups: Vec<PathBuf> = Vec::new();
    for record in &records {
        for recorded in &record.recorded_cgroups {
            match map_cgroup(&root, recorded, Some(&mut own_mounts)) {
                Some(dir) => cgroups.push(dir),
                None => problems.push(format!("cannot find cgroup {} in this namespace", recorded.display())),
            }
        }
    }
    for record in &records {
        for pid in record.live_pids() {
            // SAFETY: kill(2) has no memory effects; the pid was checked against the start time the
            // runtime recorded, so it is still the lab's task (or shim) process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for dir in &cgroups {
        kill_cgroup(dir);
    }
    let gone = try_poll_until(REAP_TIMEOUT, || {
        let live: Vec<i32> = records.iter().flat_map(TaskRecord::live_pids).collect();
        let left: Vec<&PathBuf> = cgroups.iter().filter(|d| !remove_cgroup(d)).collect();
        if live.is_empty() && left.is_empty() {
            Ok(())
        } else {
            for dir in &left {
                kill_cgroup(dir);
            }
            Err(format!("processes {live:?} still run, cgroups {left:?} remain"))
        }
    });
    if let Err(e) = gone {
        problems.push(e);
    }
    // The node's own group (`shoal/<node group>` in v2, `shoal` in v1) goes too once empty;
    // another node's tasks keep a shared parent busy, which rmdir(2) refuses: that is fine.
    for dir in &cgroups {
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    for at in own_mounts.iter().rev() {
        let _ = unmount(at);
        let _ = std::fs::remove_dir(at);
    }
    problems
}

/// [`reap`] for every node directory of a lab directory (`<dir>/node<i>/data`), then detaches
/// whatever is still mounted under it; returns what could not be cleaned.
pub fn reap_lab_dir(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let data_root = entry.path().join("data");
            if tasks_root(&data_root).is_dir() {
                problems.extend(reap(&data_root).into_iter().map(|p| format!("{}: {p}", data_root.display())));
            }
        }
    }
    problems.extend(unmount_under(dir).into_iter().map(|m| format!("cannot unmount {}", m.display())));
    problems
}

/// Kills every process of a cgroup: `cgroup.kill` (v2, kernel ≥ 5.14), else each pid in
/// `cgroup.procs`, recursively for child groups.
fn kill_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            kill_cgroup(&child.path());
        }
    }
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: kill(2) has no memory effects; the pid is a member of a task cgroup of this lab.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Removes a cgroup directory and its children; `true` once it is gone.
fn remove_cgroup(dir: &Path) -> bool {
    if !dir.exists() {
        return true;
    }
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            remove_cgroup(&child.path());
        }
    }
    // A cgroup directory goes with rmdir(2), never by deleting its files.
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

/// Maps a cgroup directory as a daemon recorded it onto this namespace (see [`split_recorded`]).
/// With `mount_missing`, a hierarchy this namespace lacks is mounted under the tasks root and
/// remembered there for unmounting.
fn map_cgroup(tasks_root: &Path, recorded: &Path, mount_missing: Option<&mut Vec<PathBuf>>) -> Option<PathBuf> {
    let (hierarchy, name, relative) = match split_recorded(tasks_root, recorded) {
        Ok(parts) => parts,
        Err(as_is) => return Some(as_is),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(at) = find_hierarchy(&mountinfo, &hierarchy) {
        return Some(at.join(relative));
    }
    let own = mount_missing?;
    let at = tasks_root.join(format!(".netns-tests-{name}"));
    if !own.contains(&at) {
        std::fs::create_dir_all(&at).ok()?;
        mount_hierarchy(&at, &hierarchy).ok()?;
        own.push(at.clone());
    }
    Some(at.join(relative))
}

/// A recorded path under the tasks root is `<tasks>/<hierarchy dir>/<path inside it>`: returns
/// the hierarchy, the directory's name and the inner path. Anything else (a hierarchy the daemon
/// found mounted elsewhere) comes back as `Err(path)`, to be used as it is.
fn split_recorded(tasks_root: &Path, recorded: &Path) -> Result<(Hierarchy, String, PathBuf), PathBuf> {
    let as_is = || recorded.to_path_buf();
    let rest = recorded.strip_prefix(tasks_root).map_err(|_| as_is())?;
    let mut parts = rest.components();
    let name = parts.next().ok_or_else(as_is)?.as_os_str().to_string_lossy().into_owned();
    let hierarchy = Hierarchy::from_dir_name(&name).ok_or_else(as_is)?;
    Ok((hierarchy, name, parts.collect()))
}

/// A cgroup hierarchy: the single v2 one, or a v1 one named by its controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hierarchy {
    V2,
    V1(BTreeSet<String>),
}

impl Hierarchy {
    /// `cgroup2` → v2; `cgroup-cpu-cpuacct` → v1 {cpu, cpuacct} (the runtime's directory names).
    fn from_dir_name(name: &str) -> Option<Hierarchy> {
        if name == "cgroup2" {
            return Some(Hierarchy::V2);
        }
        let controllers: BTreeSet<String> = name.strip_prefix("cgroup-")?.split('-').map(str::to_string).collect();
        (!controllers.is_empty()).then_some(Hierarchy::V1(controllers))
    }
}

/// The mount point of a whole hierarchy (root `/`) in a mountinfo text.
/// The cgroup2 hierarchy in this mount namespace: the host's mount, else one of the lab's own
/// under `lab_dir` (which lab teardown unmounts).
pub(crate) fn cgroup2_mount(lab_dir: &Path) -> std::io::Result<PathBuf> {
    if let Some(at) = mounted_cgroup2() {
        return Ok(at);
    }
    let at = lab_dir.join(".cgroup2");
    std::fs::create_dir_all(&at)?;
    mount_hierarchy(&at, &Hierarchy::V2)?;
    Ok(at)
}

/// The cgroup2 hierarchy if this mount namespace has it mounted somewhere.
pub(crate) fn mounted_cgroup2() -> Option<PathBuf> {
    find_hierarchy(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, &Hierarchy::V2)
}

/// Kills what runs in the cgroup2 group `dir` and removes it (a lab node's host group).
pub(crate) fn kill_and_remove_cgroup(dir: &Path) {
    kill_cgroup(dir);
    // Killed processes leave the group asynchronously; rmdir succeeds once it is empty.
    let removed = try_poll_until(REAP_TIMEOUT, || remove_cgroup(dir).then_some(()).ok_or("busy"));
    if removed.is_err() {
        eprintln!("netns-tests: cannot remove the cgroup {}", dir.display());
    }
}

fn find_hierarchy(mountinfo: &str, wanted: &Hierarchy) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.get(3) != Some(&"/") {
            return None;
        }
        let found = match (right.first().copied()?, wanted) {
            ("cgroup2", Hierarchy::V2) => true,
            ("cgroup", Hierarchy::V1(controllers)) => {
                let options: BTreeSet<String> = right.get(2)?.split(',').map(str::to_string).collect();
                controllers.is_subset(&options)
            }
            _ => false,
        };
        if found {
            left.get(4).map(|p| PathBuf::from(unescape(p)))
        } else {
            None
        }
    })
}

fn mount_hierarchy(at: &Path, which: &Hierarchy) -> std::io::Result<()> {
    let (fstype, options) = match which {
        Hierarchy::V2 => ("cgroup2", String::new()),
        Hierarchy::V1(c) => ("cgroup", c.iter().cloned().collect::<Vec<_>>().join(",")),
    };
    let target = CString::new(at.as_os_str().as_bytes())?;
    let fs = CString::new(fstype)?;
    let data = CString::new(options)?;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call; it mounts a cgroup
    // hierarchy on a directory of the lab's own, which `reap` unmounts again.
    let r = unsafe { libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, data.as_ptr().cast()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn unmount(at: &Path) -> std::io::Result<()> {
    let target = CString::new(at.as_os_str().as_bytes())?;
    // SAFETY: umount2(2) with a NUL-terminated path that outlives the call.
    let r = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal (`\040`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points under `dir` in this process's mount namespace.
pub fn own_mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| PathBuf::from(unescape(m))))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Detaches every mount under `dir` in this namespace, deepest first; returns those that
/// refused.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    let mut mounts = own_mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts.into_iter().filter(|m| unmount(m).is_err() && own_mounts_under(m).contains(m)).collect()
}

/// Every mount, in any process's mount namespace, whose mount point or source path lies under
/// `dir`, as `pid: mount point`. Used to prove a lab left nothing mounted anywhere.
pub fn mounts_anywhere_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = BTreeSet::new();
    for pid in all_pids() {
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else { continue };
        for line in info.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
            let (root, point) = (unescape(root), unescape(point));
            if point.starts_with(&needle) || root.starts_with(&needle) {
                found.insert(format!("pid {pid}: {point} (root {root})"));
            }
        }
    }
    found.into_iter().collect()
}

/// Pids of every process on the machine (numeric entries of /proc).
pub fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`) and its
/// state letter, or `None` when there is no such process.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

/// Whether `pid` is the process that started at `start` and has not exited (a zombie has).
pub fn is_running(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(s, state)| s == start && state != 'Z' && state != 'X')
}

/// A namespace of a process, as `(kind, inode)`: `ns_of(pid, "net")`.
pub fn ns_of(pid: i32, kind: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// What keeps a namespace (`net:[4026532246]`, as [`ns_of`] returns it) alive: processes in it,
/// open file descriptors to it, and nsfs bind mounts of it, as `(pid, what)`. Empty once the
/// namespace is gone. Namespace inode numbers are reused, so a test that runs beside other labs
/// should only count holders that belong to it (see [`process_mentions`]).
pub fn namespace_holders(ns: &str) -> Vec<(i32, String)> {
    let kind = ns.split(':').next().unwrap_or_default();
    let mut holders = Vec::new();
    for pid in all_pids() {
        if ns_of(pid, kind).as_deref() == Some(ns) && stat(pid).is_some_and(|(_, s)| s != 'Z') {
            holders.push((pid, format!("pid {pid} ({}) runs in it", comm(pid))));
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == ns) {
                    holders.push((pid, format!("pid {pid} ({}) holds it open as fd {:?}", comm(pid), fd.file_name())));
                }
            }
        }
        if let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            if info.lines().any(|l| l.split(' ').nth(3) == Some(ns)) {
                holders.push((pid, format!("pid {pid} ({}) has it mounted", comm(pid))));
            }
        }
    }
    holders.sort();
    holders.dedup();
    holders
}

/// Whether process `pid`'s command line or cgroup membership mentions any of `needles` (a lab
/// directory, task IDs): how a test tells its own processes (daemons, shims, tasks, health
/// checks) from those of labs running beside it.
pub fn process_mentions(pid: i32, needles: &[&str]) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    needles.iter().any(|n| !n.is_empty() && (cmdline.contains(n) || cgroup.contains(n)))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_named_by_directory_and_found_by_options() {
        assert_eq!(Hierarchy::from_dir_name("cgroup2"), Some(Hierarchy::V2));
        assert_eq!(
            Hierarchy::from_dir_name("cgroup-cpu-cpuacct"),
            Some(Hierarchy::V1(["cpu", "cpuacct"].map(String::from).into()))
        );
        assert_eq!(Hierarchy::from_dir_name("l5id2l3mlna80211a8nehtrt3"), None);
        let info = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
            35 31 0:32 /sub /elsewhere rw,relatime - cgroup cgroup rw,memory\n\
            36 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
            44 27 0:38 / /tmp/x\\040y/cgroup2 rw - cgroup2 cgroup2 rw\n";
        assert_eq!(find_hierarchy(info, &Hierarchy::V2), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let memory = Hierarchy::from_dir_name("cgroup-memory").unwrap();
        assert_eq!(find_hierarchy(info, &memory), Some(PathBuf::from("/sys/fs/cgroup/memory")));
        let cpu = Hierarchy::from_dir_name("cgroup-cpu-cpuacct").unwrap();
        assert_eq!(find_hierarchy(info, &cpu), Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(find_hierarchy(&info[..0], &Hierarchy::V2), None);
    }

    #[test]
    fn recorded_paths_split_into_hierarchy_and_inner_path() {
        let root = Path::new("/tmp/shl-1-0/node1/data/tasks");
        let (h, name, inner) = split_recorded(root, &root.join("cgroup2/shoal/abc")).unwrap();
        assert_eq!((h, name.as_str(), inner.as_path()), (Hierarchy::V2, "cgroup2", Path::new("shoal/abc")));
        let (h, _, inner) = split_recorded(root, &root.join("cgroup-memory/shoal/abc")).unwrap();
        assert_eq!((h, inner.as_path()), (Hierarchy::from_dir_name("cgroup-memory").unwrap(), Path::new("shoal/abc")));
        let outside = Path::new("/sys/fs/cgroup/memory/shoal/abc");
        assert_eq!(split_recorded(root, outside), Err(outside.to_path_buf()));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }

    #[test]
    fn this_process_runs_and_a_wrong_start_time_does_not() {
        let me = std::process::id() as i32;
        let (start, state) = stat(me).unwrap();
        assert!(is_running(me, start), "state {state}");
        assert!(!is_running(me, start + 1));
        assert!(namespace_holders(&ns_of(me, "net").unwrap()).iter().any(|(pid, _)| *pid == me));
        let exe = std::env::current_exe().unwrap();
        assert!(process_mentions(me, &[exe.to_str().unwrap()]));
        assert!(!process_mentions(me, &["no-such-needle-anywhere"]));
    }
}
